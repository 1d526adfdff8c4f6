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
* No pickle: every message is a JSON header plus the raw bytes of its numpy arrays (``encode`` /
  ``decode``; arrays, numbers, strings, lists, tuples, dicts, a dataclass's fields (``EnvStep``, which
  arrives as a namespace of them), Box/Discrete spaces, and exceptions as type name + message, rebuilt
  only as a known type), sent with ``send_bytes``. The process start passes a pipe, a name and the class
  to build (``SeedEnvs`` or ``Evaluator``, by reference, as multiprocessing starts any process: this module
  imports nothing of ``envs.gym``, which sits above it); its arguments come as the first message. Arrays travel
  copied over pipes, without shared memory (round trips: results/bench/envs_step_cpu.md).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import operator
import signal
import traceback
import types
import weakref
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from envs.errors import Diverged, SpaceError, UserError


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


# ---------------------------------------------------------------------------------------------
# Messages without pickle
# ---------------------------------------------------------------------------------------------
# exceptions a worker's error comes back as (by name); any other becomes a RuntimeError naming its type
_ERRORS = {e.__name__: e for e in (UserError, SpaceError, Diverged, ValueError, TypeError, KeyError, IndexError,
                                    RuntimeError, FloatingPointError, NotImplementedError, AssertionError)}


def encode(obj) -> bytes:
    """``obj`` as bytes: an 8-byte header length, a JSON header, then the arrays' raw bytes."""
    arrays: list[np.ndarray] = []

    def enc(x):
        if isinstance(x, (np.ndarray, np.generic)):  # before float: np.float64 is a float too
            a = np.asarray(x)  # tobytes() writes C order
            if a.dtype.hasobject:
                raise TypeError("object arrays cannot be sent to or from an env worker")
            arrays.append(a)
            return {"nd": [len(arrays) - 1, a.dtype.str, list(a.shape), isinstance(x, np.generic)]}
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        if isinstance(x, (list, tuple)):
            return {"list" if isinstance(x, list) else "tuple": [enc(v) for v in x]}
        if isinstance(x, dict):
            return {"dict": [[enc(k), enc(v)] for k, v in x.items()]}
        if isinstance(x, gym.spaces.Discrete):
            return {"Discrete": [int(x.n), int(x.start)]}
        if isinstance(x, gym.spaces.Box):
            return {"Box": [enc(x.low), enc(x.high), x.dtype.str]}
        if dataclasses.is_dataclass(x) and not isinstance(x, type):  # EnvStep
            return {"fields": enc({f.name: getattr(x, f.name) for f in dataclasses.fields(x)})}
        if isinstance(x, BaseException):
            message = x.args[0] if len(x.args) == 1 and isinstance(x.args[0], str) else str(x)
            return {"error": [type(x).__name__, message, list(getattr(x, "__notes__", []))]}
        raise TypeError(f"{type(x).__name__} cannot be sent to or from an env worker")

    header = json.dumps({"tree": enc(obj), "nbytes": [a.nbytes for a in arrays]}).encode()
    return b"".join([len(header).to_bytes(8, "little"), header, *(a.tobytes() for a in arrays)])


def decode(data: bytes):
    """The inverse of ``encode``: builds only the types it lists, so a message can run no code."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    offset_of = (8 + n + np.cumsum([0, *header["nbytes"]])).tolist()  # where array i starts

    def dec(x):
        if not isinstance(x, dict):
            return x
        (kind, v), = x.items()
        if kind == "nd":
            index, dtype, shape, scalar = v
            a = np.frombuffer(data, np.dtype(dtype), int(np.prod(shape)), int(offset_of[index])).reshape(shape).copy()
            return a[()] if scalar else a
        if kind == "list":
            return [dec(i) for i in v]
        if kind == "tuple":
            return tuple(dec(i) for i in v)
        if kind == "dict":
            return {dec(k): dec(i) for k, i in v}
        if kind == "Discrete":
            return gym.spaces.Discrete(v[0], start=v[1])
        if kind == "Box":
            return gym.spaces.Box(dec(v[0]), dec(v[1]), dtype=np.dtype(v[2]))
        if kind == "fields":
            return types.SimpleNamespace(**dec(v))
        if kind == "error":
            name, message, notes = v
            err = _ERRORS[name](message) if name in _ERRORS else RuntimeError(f"{name}: {message}")
            for note in notes:
                err.add_note(note)
            return err
        raise ValueError(f"unknown message part {kind!r}")

    return dec(header["tree"])


def _send(conn, obj) -> None:
    conn.send_bytes(encode(obj))


def _recv(conn):
    return decode(conn.recv_bytes())


def _spec_json(env_id: str) -> str | None:
    """The parent's registration of a plain gymnasium id (a test's or a script's own env), as JSON, for
    a worker that may not have it; a class or function entry point goes as "module:name"."""
    spec = gym.registry.get(env_id)
    if spec is None:
        return None
    try:
        if callable(spec.entry_point):
            spec = dataclasses.replace(spec, entry_point=f"{spec.entry_point.__module__}:"
                                                         f"{spec.entry_point.__qualname__}")
        return spec.to_json()
    except Exception:  # kwargs that are not JSON: the worker fails with "unknown env id" instead
        return None


def _with_note(exc: BaseException, where: str) -> BaseException:
    exc.add_note(f"in env worker {where}:\n" + "".join(traceback.format_exception(exc)).rstrip())
    return exc


def _serve(conn, where: str, factory):
    """A worker's life: read the arguments of ``factory`` (the first message), build it, report its
    spaces, then run calls until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        kwargs, env_id, spec = _recv(conn)
        if spec is not None and env_id not in gym.registry:
            gym.registry[env_id] = gym.envs.registration.EnvSpec.from_json(spec)
        obj = factory(**kwargs)
        reply = ("ok", obj.space_args)
    except BaseException as e:
        _send(conn, ("err", _with_note(e, where)))
        return
    _send(conn, reply)
    while True:
        try:
            msg = _recv(conn)
        except (EOFError, OSError):  # the parent has gone
            break
        if msg is None:
            break
        name, args, attrs = msg
        try:
            result = getattr(obj, name)(*args)
            reply = encode(("ok", (result, {a: getattr(obj, a) for a in attrs})))
        except BaseException as e:  # a failed call, or a result that cannot be sent
            reply = encode(("err", _with_note(e, where)))
        try:
            conn.send_bytes(reply)
        except (EOFError, OSError):
            break
    try:
        obj.close()
    finally:
        conn.close()


def _shutdown(conns: list, procs: list, timeout: float = 5.0):
    for conn in conns:
        try:
            _send(conn, None)
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

    def __init__(self, factory: type, kwargs: Sequence[dict], env_id: str, names: Sequence[str]):
        ctx = mp_context()
        spec = _spec_json(env_id)
        self.names, self.conns, self.procs = list(names), [], []
        self._busy = False  # a call whose replies were not all read (interrupted): the pipes are out of step
        self._finalize = weakref.finalize(self, _shutdown, self.conns, self.procs)
        try:
            for kw, name in zip(kwargs, self.names):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, name, factory), daemon=True,
                                   name=f"env-worker {name}")
                proc.start()
                child.close()
                _send(parent, (kw, env_id, spec))
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
                status, value = _recv(self.conns[k])
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
                _send(self.conns[k], (name, tuple(a), tuple(attrs)))
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
    """A pool of ``workers`` ``cls`` objects (SeedEnvs or Evaluator) over contiguous blocks of ``seeds``;
    ``kwargs_of(block)`` gives the constructor arguments of a block (a slice of the seed indices)."""
    bl = blocks(len(seeds), workers)
    names = [f"{k} (seeds {seeds[b.start]}..{seeds[b.stop - 1]})" for k, b in enumerate(bl)]
    return WorkerPool(cls, [kwargs_of(b) for b in bl], env_id, names), bl


__all__ = ["WorkerPool", "blocks", "check_workers", "decode", "encode", "mp_context", "pool_for"]
