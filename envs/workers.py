"""Env worker processes: ``SeedEnvs(..., workers=W)`` and ``Evaluator(..., workers=W)`` with W > 1.

The seeds are split into W contiguous blocks; worker ``k`` is a process holding a plain serial
``SeedEnvs`` (or ``Evaluator``) over block ``k``, built from the same arguments with ``workers=1``.
The parent sends each worker its slice of a call's arguments, every worker runs the call at the
same time, and the parent concatenates the replies in block order. Nothing of the stepping logic is
repeated here, so any W gives the serial results bit for bit (tests/test_parallel_envs.py).

* Processes come from the ``forkserver`` context (``spawn`` where there is none): forking the
  parent itself, whose JAX runtime has started threads, can deadlock the child. The fork server is a
  fresh interpreter, started once per parent at the first pool, that imports ``envs.gym`` (jax,
  gymnasium, mujoco: ~2 s) and no JAX backend; each worker is forked from it in a fraction of a
  second, then imports the parent's main module as ``__mp_main__`` (as multiprocessing always does;
  the algorithm files start nothing at import). Spawning every worker from scratch took 5-8 s per
  pool on the loaded 2-core test machine, forking from the fork server 0.5-1.4 s (2-4 workers) once
  it runs. The fork server stays, idle, until the parent exits.
* A gymnasium id registered only in the parent (a test's env, a user's script) is sent along as its
  ``EnvSpec`` and registered in the worker.
* Workers are daemon processes that ignore Ctrl-C (the parent handles it) and leave when their pipe
  closes, so they end with the parent however it ends. ``close()`` ends them and waits.
* An exception in a worker comes back as the same exception type with its message (``UserError``
  stays a one-line error, exit status 2), with the worker's traceback as a note. The parent waits for
  every worker's reply before raising, so the pipes stay in step. A worker that dies (killed,
  crashed in C) is a ``RuntimeError`` naming its seeds and exit code.
* Arrays travel pickled over pipes. Pixel observations (9x84x84 uint8 per seed) cost ~150 us per
  seed and step there and back (4.7 ms for 32 seeds), against ~33 ms for one rendered dmc-pixels
  step on the same machine, so there is no shared memory (results/bench/envs_step_cpu.md).
"""

from __future__ import annotations

import multiprocessing
import operator
import pickle
import signal
import traceback
import weakref
from typing import Any, Sequence

import gymnasium as gym

from envs.runs import UserError


def check_workers(workers, num: int) -> int:
    """``workers`` as an int in [1, num]: an integer >= 1, or a UserError; more workers than seeds is
    clamped to the number of seeds (a worker with no seed would do nothing)."""
    try:
        count = None if isinstance(workers, bool) else operator.index(workers)
    except TypeError:
        count = None
    if count is None or count < 1:
        raise UserError(f"--env-workers must be an integer >= 1, got {workers!r}")
    return min(count, max(num, 1))


def blocks(num: int, workers: int) -> list[slice]:
    """Contiguous blocks of ``range(num)``, sizes differing by at most one, larger ones first."""
    size, extra = divmod(num, workers)
    out, lo = [], 0
    for k in range(workers):
        hi = lo + size + (k < extra)
        out.append(slice(lo, hi))
        lo = hi
    return out


def mp_context():
    """The multiprocessing context of the workers (see the module docstring)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["envs.gym"])  # read when the server starts, i.e. at the first pool
    return ctx


def _spec_bytes(env_id: str) -> bytes | None:
    """The parent's registration of a plain gymnasium id, for a worker that may not have it."""
    spec = gym.registry.get(env_id)
    if spec is None:
        return None
    try:
        return pickle.dumps(spec)
    except Exception:  # an entry point the worker could not import anyway: it fails with "unknown id"
        return None


def _portable(exc: BaseException, where: str) -> BaseException:
    """``exc`` with the worker's traceback as a note, or a RuntimeError if it would not survive pickling."""
    note = f"in env worker {where}:\n" + "".join(traceback.format_exception(exc)).rstrip()
    try:
        exc.add_note(note)
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        out = RuntimeError(f"{type(exc).__name__}: {exc}")
        out.add_note(note)
        return out


def _serve(conn, factory, kwargs: dict, env_id: str, spec: bytes | None, where: str):
    """A worker's life: build ``factory(**kwargs)``, report its spaces, then run calls until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if spec is not None and env_id not in gym.registry:
            gym.registry[env_id] = pickle.loads(spec)
        obj = factory(**kwargs)
        reply = ("ok", obj.space_args)
    except BaseException as e:
        conn.send(("err", _portable(e, where)))
        return
    conn.send(reply)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):  # the parent has gone
            break
        if msg is None:
            break
        name, args, attrs = msg
        try:
            result = getattr(obj, name)(*args)
            reply = ("ok", (result, {a: getattr(obj, a) for a in attrs}))
        except BaseException as e:
            reply = ("err", _portable(e, where))
        try:
            conn.send(reply)
        except (EOFError, OSError):
            break
        except Exception as e:  # a result that does not pickle
            conn.send(("err", _portable(e, where)))
    try:
        obj.close()
    finally:
        conn.close()


def _shutdown(conns: list, procs: list, timeout: float = 5.0):
    for conn in conns:
        try:
            conn.send(None)
        except (OSError, ValueError):
            pass
    for proc in procs:
        proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout)
    for conn in conns:
        conn.close()


class WorkerPool:
    """``len(kwargs)`` worker processes, worker ``k`` holding ``factory(**kwargs[k])`` (``names[k]``
    says which seeds, for errors). Construction waits until every worker has built its envs and
    raises the first worker's error, if any, after ending them all."""

    def __init__(self, factory, kwargs: Sequence[dict], env_id: str, names: Sequence[str]):
        ctx = mp_context()
        spec = _spec_bytes(env_id)
        self.names, self.conns, self.procs = list(names), [], []
        self._busy = False  # a call whose replies were not all read (interrupted): the pipes are out of step
        self._finalize = weakref.finalize(self, _shutdown, self.conns, self.procs)
        try:
            for kw, name in zip(kwargs, self.names):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, factory, kw, env_id, spec, name), daemon=True,
                                   name=f"env-worker {name}")
                proc.start()
                child.close()
                self.conns.append(parent)
                self.procs.append(proc)
            self.spaces = self._gather(range(len(self.conns)))[0]
        except BaseException:
            self.close()
            raise

    def _gather(self, which) -> list:
        """Every reply of the workers ``which``, in order; then the first error, if any."""
        out, error = [], None
        for k in which:
            try:
                status, value = self.conns[k].recv()
            except (EOFError, OSError):
                self.procs[k].join(1.0)
                status, value = "err", RuntimeError(
                    f"env worker {self.names[k]} died (exit code {self.procs[k].exitcode})")
            if status == "err" and error is None:
                error = value
            out.append(value)
        self._busy = False  # every reply read (a KeyboardInterrupt before here leaves the pool refusing calls)
        if error is not None:
            raise error
        return out

    def call(self, name: str, args: Sequence[tuple], attrs: Sequence[str] = (), which=None) -> list:
        """Run ``obj.name(*args[i])`` on the workers ``which`` (default all) at the same time; returns
        ``(result, {attr: value})`` per worker, in order."""
        if self._busy:
            raise RuntimeError("env workers: an earlier call was interrupted before all its replies were read")
        self._busy = True
        which = range(len(self.conns)) if which is None else list(which)
        sent = []
        for k, a in zip(which, args):
            try:
                self.conns[k].send((name, a, tuple(attrs)))
            except (OSError, ValueError):  # a dead worker's pipe; _gather reports it
                pass
            sent.append(k)
        return self._gather(sent)

    def close(self):
        self._finalize()

    @property
    def alive(self) -> list[int]:
        """Process ids of the workers still running."""
        return [p.pid for p in self.procs if p.is_alive()]


def pool_for(cls, env_id: str, seeds: Sequence[Any], workers: int, kwargs_of) -> tuple[WorkerPool, list[slice]]:
    """A pool of ``workers`` ``cls`` objects over contiguous blocks of ``seeds``; ``kwargs_of(block)``
    gives the constructor arguments of a block (a slice of the seed indices)."""
    bl = blocks(len(seeds), workers)
    names = [f"{k} (seeds {seeds[b.start]}..{seeds[b.stop - 1]})" for k, b in enumerate(bl)]
    return WorkerPool(cls, [kwargs_of(b) for b in bl], env_id, names), bl


__all__ = ["WorkerPool", "blocks", "check_workers", "mp_context", "pool_for"]
