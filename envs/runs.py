"""The run contract, written once: everything an algorithm file does around its algorithm.

* **Errors.** ``UserError`` (defined in envs/errors.py, below the adapters, and re-exported here) is a
  mistake of the user's (a bad flag value, an unknown env, a bad
  checkpoint, a missing extra, a diverged run); ``cli`` prints it as one line ``error: ...`` and
  exits with status 2. Every check runs before ``Run.start`` creates the folder, so a refused run
  leaves none behind. Internal errors keep their traceback. Ctrl-C prints how to resume.
* **Checks.** ``check_args`` validates the flags every algorithm shares and the ranges it names.
* **The run folder** (``Run``): config.json (args, versions, machine, and under ``git`` the algorithm file
  that ran: its sha256, the commit of the repository holding it and whether it equals the file there), eval.csv
  (rewritten atomically at each evaluation), train_episodes.csv and any extra CSV (appended,
  flushed at each evaluation), TensorBoard / W&B, the progress bar, and ``--resume``.
* **Checkpoints** (``Run.save``, ``Checkpoint``): no pickle. Arrays go in ``.npz`` files, host
  state (counters, RNG states, env replay) in ``meta.json`` with the algorithm, args, array shapes
  and versions. The replay buffer is saved incrementally: each checkpoint writes only the slots
  written since the previous one, as a chunk in ``<run>/replay/``.
* **Compilation cache** (``compile_cache``): ``cli`` turns on JAX's persistent compilation cache in
  ``.cache/jax`` of the project (git-ignored), so a second start of the same program and shapes
  skips XLA's compilation. ``FUJIMOTO_JAX_CACHE=<dir>`` moves it, ``FUJIMOTO_JAX_CACHE=off`` turns it
  off; a ``JAX_COMPILATION_CACHE_DIR`` of the user's own is left as it is.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import importlib
import importlib.util
import importlib.metadata
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from typing import Annotated, Callable, Optional

import jax
import numpy as np
import tyro.conf

from envs.errors import Diverged, SpaceError, UserError, require  # noqa: F401 (re-exported)

EVAL_HEADER = ["algo", "env", "seed", "step", "return", "time_s"]
EPISODE_HEADER = ["algo", "env", "seed", "step", "episode_return", "episode_length"]
FORMAT = "fujimoto-jax checkpoint 1"
CHECKPOINT_DIRS = ("checkpoint", "checkpoint.old")  # .old survives a crash between the two renames of a save


# A flag whose help text says in words what its unset value ('' or -1) means: tyro shows "(optional)" there,
# not a "(default: '')" or "(default: -1)" that contradicts the words (tests/test_rough_edges.py).
UnsetStr = Annotated[str, tyro.conf.arg(help_behavior_hint="(optional)")]
UnsetInt = Annotated[int, tyro.conf.arg(help_behavior_hint="(optional)")]


@dataclasses.dataclass
class RunArgs:
    """The flags of the run contract, shared by every algorithm's ``Args`` (which subclasses this)."""

    # Run folder, checkpoints, logging
    results_dir: str = "results/runs"
    """where run folders are created"""
    run_name: Optional[str] = None
    """run folder name; unset: <algo>__<env>__<seed>x<num_seeds>__<date-time>, with ':' written '-'"""
    save_model: bool = False
    """checkpoint the whole learner state (params, optimisers, buffer, keys, counters) for --resume"""
    checkpoint_freq: Optional[int] = None
    """with --save-model: checkpoint every this many steps, a multiple of --eval-freq; unset: every evaluation"""
    resume: Optional[str] = None
    """run folder of a --save-model run to continue (its checkpoint supplies every flag); with a larger
    --total-timesteps, extends it"""
    eval_only: bool = False
    """evaluate the policy saved in --checkpoint instead of training"""
    checkpoint: Optional[str] = None
    """run folder whose checkpoint --eval-only evaluates"""
    capture_video: bool = False
    """with --eval-only: record the first seed's evaluation episodes to <checkpoint>/videos (needs the `video` extra)"""
    tb: bool = False
    """log to TensorBoard in the run folder (needs the `tb` extra)"""
    track: bool = False
    """log to Weights & Biases (needs the `track` extra)"""
    wandb_project: str = "fujimoto-jax"
    """W&B project for --track"""
    # Scale (envs/devices.py): where the seeds run; none of these changes a seed's numbers
    devices: Optional[int] = None
    """local devices the seed axis is split over (each trains an equal block of seeds); unset: the most
    local devices that divide --num-seeds"""
    distributed: bool = False
    """one process of a multi-process run (jax.distributed; needs --run-name): process i trains block i of
    --num-seeds into <results-dir>/<run-name>/process-<i>"""
    env_workers: int = 1
    """subprocesses stepping the training and evaluation envs in parallel (1: in this process)"""


# ---------------------------------------------------------------------------------------------
# Errors (UserError, SpaceError, Diverged and require live in envs/errors.py, below every adapter)
# ---------------------------------------------------------------------------------------------
class RunComplete(Exception):
    """--resume of a run that has nothing left to do."""


_RUN_FLAGS = {f.name for f in dataclasses.fields(RunArgs)} | {"total_timesteps"}  # not the learner's shape
_ACTIVE: list["Run"] = []


PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository's root


def load_file(path: str, name: str):
    """Import the Python file at `path` as module `name` (an algorithm file loaded by path, or an older
    version of one); it is registered in sys.modules, where dataclasses look their module up."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def algo_file_at(commit: str, algo: str, folder: str) -> str:
    """algos/<algo>.py as of `commit` (git show), written into `folder`; returns the file's path."""
    try:
        text = subprocess.run(["git", "show", f"{commit}:algos/{algo}.py"], cwd=PROJECT, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise UserError(f"cannot read algos/{algo}.py of commit {commit}: {(getattr(e, 'stderr', '') or str(e)).strip()}") from None
    path = os.path.join(folder, f"{algo}_{commit[:10]}.py")
    with open(path, "w") as f:
        f.write(text)
    return path


COMPILE_CACHE = os.path.join(PROJECT, ".cache", "jax")


def compile_cache() -> Optional[str]:
    """Turn on JAX's persistent compilation cache (see the module docstring); returns its folder, or
    None when it is off. Only compilations of 1 s or more are stored."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]  # the user's own: jax reads it itself
    where = os.environ.get("FUJIMOTO_JAX_CACHE", COMPILE_CACHE)
    if where.lower() in ("", "0", "off", "none"):
        return None
    try:
        os.makedirs(where, exist_ok=True)
    except OSError as e:
        print(f"warning: no compilation cache ({where}: {e.strerror}); set FUJIMOTO_JAX_CACHE to a writable "
              "folder, or off", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return where


_INTERRUPTED: list = []  # Ctrl-C seen by cli's handler


def _on_sigint(signum, frame):
    _INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def _raise_if_interrupted() -> None:
    """Python drops a KeyboardInterrupt raised inside a __del__ or weakref callback ("Exception
    ignored in ..."), so a Ctrl-C could be lost; the Run's per-step calls raise it again."""
    if _INTERRUPTED:
        raise KeyboardInterrupt


def cli(Args, train: Callable, evaluate: Callable, argv: Optional[list[str]] = None) -> None:
    """Parse ``Args`` with tyro and run ``train`` (or ``evaluate`` with --eval-only) as a program."""
    import signal

    import tyro

    args = tyro.cli(Args, args=argv)
    compile_cache()
    _INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, _on_sigint) if _main_thread() else None  # signals need the main thread
    try:
        _cli_run(args, Args, train, evaluate, argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _cli_run(args, Args, train: Callable, evaluate: Callable, argv) -> None:
    # the flags on the command line (a --resume refuses any but --total-timesteps, even at its default)
    names = {f.name for f in dataclasses.fields(Args)}
    tokens = sys.argv[1:] if argv is None else argv
    given = {a[2:].split("=")[0].replace("-", "_") for a in tokens if a.startswith("--")}
    object.__setattr__(args, "_flags_given", {n[3:] if n.startswith("no_") and n[3:] in names else n for n in given})
    try:
        (evaluate if getattr(args, "eval_only", False) else train)(args)
    except RunComplete as e:
        print(e)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        run = _ACTIVE[-1] if _ACTIVE else None
        if run is None:
            print("\ninterrupted", file=sys.stderr)
        elif Checkpoint.exists(run.dir):
            print(f"\ninterrupted; continue from the last checkpoint with: python {sys.argv[0]} --resume {run.dir}",
                  file=sys.stderr)
        else:
            print(f"\ninterrupted; {run.dir} has no checkpoint to resume from (train with --save-model)",
                  file=sys.stderr)
        sys.exit(130)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_args(args, counts=(), nonneg=(), positive=(), unit=()) -> None:
    """Range checks; raises UserError naming the flag. Shared flags are always checked; the algorithm
    names its own: ``counts`` >= 1, ``nonneg`` >= 0, ``positive`` > 0, ``unit`` in (0, 1]."""
    counts = ("num_seeds", "total_timesteps", "eval_freq", "eval_episodes", *counts)
    nonneg = ("seed", *nonneg)
    for names, ok, what in ((counts, lambda v: v >= 1, "be >= 1"), (nonneg, lambda v: v >= 0, "be >= 0"),
                            (positive, lambda v: v > 0, "be > 0"), (unit, lambda v: 0 < v <= 1, "be in (0, 1]")):
        for name in names:
            value = getattr(args, name)
            if value is not None and not (np.isfinite(value) and ok(value)):
                raise UserError(f"{flag(name)} must {what}, got {value}")
    if getattr(args, "checkpoint_freq", None) is not None and args.eval_freq is not None:
        if args.checkpoint_freq < 1 or args.checkpoint_freq % args.eval_freq:
            raise UserError(f"--checkpoint-freq must be a positive multiple of --eval-freq ({args.eval_freq}), "
                            f"got {args.checkpoint_freq}")
    if hasattr(args, "batch_size") and hasattr(args, "buffer_size") and args.batch_size > args.buffer_size:
        raise UserError(f"--batch-size ({args.batch_size}) must be <= --buffer-size ({args.buffer_size})")
    if args.capture_video and not args.eval_only:
        raise UserError("--capture-video only works with --eval-only --checkpoint RUN_DIR")
    if args.eval_only and not args.checkpoint:
        raise UserError("--eval-only needs --checkpoint RUN_DIR")
    if args.checkpoint and not args.eval_only:
        raise UserError("--checkpoint is read by --eval-only; to continue a run use --resume RUN_DIR")
    if args.run_name is not None and (args.run_name in ("", ".", "..") or os.sep in args.run_name):
        raise UserError(f"--run-name must be a folder name without '{os.sep}', got {args.run_name!r}")


# ---------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------
def versions(extra: tuple = ()) -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco", "tyro", *extra):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def git_info(where: Optional[str] = None) -> dict:
    """The commit of the repository holding the folder ``where`` (default: this project's), and whether
    tracked code differs from it. Changes under results/ (``make summary`` rewrites tracked files there)
    do not make a run dirty."""
    here = where or os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                 ":(top,exclude)results"], cwd=here, capture_output=True, text=True, timeout=10)
        if commit.returncode == 0 and status.returncode == 0:
            return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def algo_provenance(path: str) -> dict:
    """What ran: the algorithm file ``path``, its sha256, the commit of the repository that contains it
    (not necessarily this project: a copy elsewhere is described by its own repository, or by none) and
    ``algo_matches_commit``: whether its bytes equal the file at that commit (None outside a repository).
    When the file is not in this project, ``envs`` holds the project's commit (the plumbing it imported)."""
    import hashlib

    path = os.path.realpath(path)
    with open(path, "rb") as f:
        data = f.read()
    folder = os.path.dirname(path)
    out = {**git_info(folder), "algo_file": path, "algo_sha256": hashlib.sha256(data).hexdigest(),
           "algo_matches_commit": None}
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=folder, capture_output=True, text=True,
                             timeout=10)
        top = os.path.realpath(top.stdout.strip()) if top.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        top = None
    if out["commit"] is None or top is None:
        out["commit"] = out["dirty"] = None
        out["note"] = f"{path} is in no git repository: no commit to compare it with; algo_sha256 identifies it"
    else:
        rel = os.path.relpath(path, top).replace(os.sep, "/")
        try:
            shown = subprocess.run(["git", "show", f"{out['commit']}:{rel}"], cwd=top, capture_output=True, timeout=10)
            out["algo_matches_commit"] = shown.returncode == 0 and shown.stdout == data
            if shown.returncode != 0:
                out["note"] = f"{rel} is not in commit {out['commit'][:10]} of {top}"
        except (OSError, subprocess.SubprocessError):
            pass
    if top != os.path.realpath(PROJECT):
        out["envs"] = git_info()
    return out


def _algo_file(Args) -> Optional[str]:
    """The file that defines ``Args`` (the algorithm file that runs, ``__main__`` included), if any."""
    module = sys.modules.get(getattr(Args, "__module__", ""), None)
    path = getattr(module, "__file__", None)
    return path if path and os.path.isfile(path) else None


def take_seed(tree, index: int, copies: int = 1):
    """Seed ``index`` of a tree stacked on the seed axis, repeated ``copies`` times on that axis."""
    return jax.tree.map(lambda x: jax.numpy.repeat(x[index:index + 1], copies, 0), tree)


def write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _keep(row: dict, limit) -> bool:
    """Is a results row at or before the checkpoint? limit: a step, or {seed: step} when seeds progress apart."""
    if None in row or None in row.values() or not row["step"].isdigit():
        return False  # a line cut short by a kill, or one with extra fields
    if isinstance(limit, dict):
        return row.get("seed", "").isdigit() and int(row["step"]) <= limit.get(int(row["seed"]), -1)
    return int(row["step"]) <= limit


def _read_rows(path: str, limit) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if _keep(row, limit)]


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


# ---------------------------------------------------------------------------------------------
# Host state as JSON (numpy arrays and scalars tagged, nothing else)
# ---------------------------------------------------------------------------------------------
def to_json(x):
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype), "shape": list(x.shape)}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"cannot store a {type(x).__name__} in a checkpoint's host state")


def from_json(x):
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return np.array(x["__ndarray__"], dtype=x["dtype"]).reshape(x["shape"])
        return {k: from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [from_json(v) for v in x]
    return x


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------
def _leaves(tree) -> list[tuple[str, object]]:
    return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _spec(x) -> list:
    return [list(np.shape(x)), str(np.dtype(x.dtype))]


@jax.jit
def _gather(leaf, i, slots):
    return leaf[i, slots]


def _ring_take(leaf, i: int, a: int, b: int) -> np.ndarray:
    """Seed i's slots of counters [a, b) (counter c lives in slot c % capacity), as numpy."""
    if b <= a:
        return np.zeros((0, *leaf.shape[2:]), leaf.dtype)
    return np.asarray(_gather(leaf, i, np.arange(a, b) % leaf.shape[1]))


def _load_npz(path: str, size: Optional[int]) -> dict:
    """Every array of an .npz (no pickle), or a UserError naming the damaged file."""
    if not os.path.exists(path):
        raise UserError(f"damaged checkpoint: {path} is missing")
    if size is not None and os.path.getsize(path) != size:
        raise UserError(f"damaged checkpoint: {path} has {os.path.getsize(path)} bytes, its checkpoint says {size}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise UserError(f"damaged checkpoint: cannot read {path} ({type(e).__name__}: {e})") from None


def _save_npz(path: str, arrays: dict) -> int:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return os.path.getsize(path)


class Checkpoint:
    """A run folder's checkpoint, read and checked: ``meta`` (algorithm, args, step, shapes, versions,
    host state) and ``load`` for the arrays."""

    place: Callable = staticmethod(jax.numpy.asarray)  # numpy -> device array; a Run puts seeds on its devices

    def __init__(self, run_dir: str, algo: str):
        self.run_dir = run_dir
        if not os.path.isdir(run_dir):
            raise UserError(f"no run folder {run_dir!r}")
        path = self.find(run_dir)
        if path is None:
            if any(os.path.exists(os.path.join(run_dir, d, "host.pkl")) for d in CHECKPOINT_DIRS):
                raise UserError(f"{run_dir} holds a checkpoint in the old pickle format, which is not loaded "
                                "(a pickle can run code); retrain it with this version")
            raise UserError(f"no checkpoint in {run_dir} (was it trained with --save-model?)")
        self.path = path
        try:
            with open(os.path.join(path, "meta.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"damaged checkpoint: cannot read {path}/meta.json ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise UserError(f"damaged checkpoint: {path}/meta.json is not a {FORMAT!r} file")
        if meta.get("algo") != algo:
            raise UserError(f"{run_dir} holds a {meta.get('algo')} checkpoint, not a {algo} one")
        self.meta, self.algo, self.step = meta, meta["algo"], int(meta["step"])
        self.host = from_json(meta["host"])

    @staticmethod
    def find(run_dir: str) -> Optional[str]:
        for name in CHECKPOINT_DIRS:
            if os.path.exists(os.path.join(run_dir, name, "meta.json")):
                return os.path.join(run_dir, name)
        return None

    @classmethod
    def exists(cls, run_dir: str) -> bool:
        return cls.find(run_dir) is not None

    def make_args(self, Args):
        """The saved args as this file's Args."""
        try:
            return Args(**self.meta["args"])
        except TypeError as e:
            raise UserError(f"the checkpoint in {self.run_dir} was saved with other flags than this file has ({e})"
                            ) from None

    def _mismatch(self, what: str, args=None) -> UserError:
        hint = ""
        if args is not None:
            diff = [f"{flag(k)} {v} (saved: {self.meta['args'].get(k)})" for k, v in dataclasses.asdict(args).items()
                    if k in self.meta["args"] and self.meta["args"][k] != v and k not in _RUN_FLAGS]
            hint = f"; flags that differ: {', '.join(diff)}" if diff else ""
        return UserError(f"the checkpoint in {self.run_dir} does not fit: {what}{hint}")

    def load(self, trees: dict, ring=None, args=None):
        """Arrays shaped like the templates: ``trees`` (name -> pytree, saved whole) and ``ring`` (a
        pytree of [N, capacity, ...] buffers, rebuilt from its chunks). Returns (trees, ring)."""
        files = self.meta.get("files", {})
        data = _load_npz(os.path.join(self.path, "state.npz"), files.get("state.npz"))
        # per-slot arrays ([N, capacity, ...], e.g. priorities) were saved up to the filled slots and are
        # zero-padded back; a longer --total-timesteps may also have grown the capacity
        sliced, caps = self.meta.get("sliced", {}), None
        if ring is not None and self.meta.get("ring"):
            caps = (self.meta["ring"]["capacity"], np.shape(jax.tree_util.tree_leaves(ring)[0])[1])
        out = {}
        for name, template in trees.items():
            saved = self.meta["trees"].get(name)
            if saved is None:
                raise self._mismatch(f"it has no {name!r}")
            leaves, treedef = jax.tree_util.tree_flatten(template)
            paths = _leaves(template)
            if len(saved) != len(leaves):
                raise self._mismatch(f"{name} has {len(saved)} arrays there, {len(leaves)} here", args)
            arrays = []
            for k, ((path, x), (saved_path, spec)) in enumerate(zip(paths, saved)):
                here, key = _spec(x), f"{name}.{k}"
                grown = key in sliced and caps is not None and (spec[0][1], here[0][1]) == caps and caps[1] > caps[0] \
                    and here[1] == spec[1] and here[0][:1] + here[0][2:] == spec[0][:1] + spec[0][2:]
                if here != spec and not grown:
                    raise self._mismatch(f"{name}{path} is {spec[1]}{spec[0]} there, {here[1]}{here[0]} here", args)
                stored = list(spec[0]) if key not in sliced else [spec[0][0], sliced[key], *spec[0][2:]]
                if key not in data or list(data[key].shape) != stored:
                    raise UserError(f"damaged checkpoint: {self.path}/state.npz lacks {name}{path}")
                if key in sliced:
                    full = np.zeros(here[0], data[key].dtype)
                    full[:, :sliced[key]] = data[key]
                    arrays.append(full)
                else:
                    arrays.append(data[key])
            out[name] = jax.tree_util.tree_unflatten(treedef, [self.place(a) for a in arrays])
        if ring is None:
            return out, None
        return out, self._load_ring(ring, args)

    def _load_ring(self, template, args):
        info = self.meta.get("ring")
        if info is None:
            raise self._mismatch("it has no replay buffer")
        paths, treedef = _leaves(template), jax.tree_util.tree_structure(template)
        n, cap = np.shape(paths[0][1])[:2]
        written = np.asarray(info["written"], np.int64)
        if [p for p, _ in paths] != [p for p, _ in info["fields"]] or len(written) != n:
            raise self._mismatch("its replay buffer has other fields or seeds", args)
        for (path, x), (_, spec) in zip(paths, info["fields"]):
            if list(np.shape(x)[2:]) != spec[0] or str(x.dtype) != spec[1]:
                raise self._mismatch(f"replay{path} is {spec[1]}{spec[0]} per slot there, "
                                     f"{x.dtype}{list(np.shape(x)[2:])} here", args)
        if cap != info["capacity"] and written.max() > min(cap, info["capacity"]):
            raise self._mismatch(f"its replay buffer holds {info['capacity']} slots and wrapped, this one {cap}", args)
        out = [np.zeros(np.shape(x), x.dtype) for _, x in paths]
        for chunk in info["chunks"]:
            data = _load_npz(os.path.join(self.run_dir, "replay", chunk["file"]), chunk.get("bytes"))
            for i in range(n):
                a, b = chunk["start"][i], chunk["end"][i]
                lo = max(a, written[i] - cap)
                if b <= lo:
                    continue
                slots = np.arange(lo, b) % cap
                for k, arr in enumerate(out):
                    part = data.get(f"{i}.{k}")
                    if part is None or len(part) != b - a:
                        raise UserError(f"damaged checkpoint: replay/{chunk['file']} lacks seed {i}'s slots")
                    arr[i, slots] = part[lo - a:]
        return jax.tree_util.tree_unflatten(treedef, [self.place(a) for a in out])


# ---------------------------------------------------------------------------------------------
# The run folder
# ---------------------------------------------------------------------------------------------
class Run:
    """One run folder. ``Run(...)`` resolves the args (a --resume reads them from the checkpoint)
    and checks the folder, creating nothing; ``start`` creates it once the setup has succeeded."""

    def __init__(self, algo: str, args, Args, eval_header=EVAL_HEADER, csvs: Optional[dict] = None):
        self.algo, self.eval_header, self.csv_headers = algo, eval_header, {"train_episodes": EPISODE_HEADER,
                                                                            **(csvs or {})}
        self.algo_file = _algo_file(Args)
        self.git = None  # provenance, read once by start
        self.checkpoint: Optional[Checkpoint] = None
        process = ""
        if getattr(args, "distributed", False):  # this process's block of seeds, in its own folder
            from envs.devices import init_distributed

            index, count = init_distributed()
            process = f"process-{index}"
            if args.resume:
                args = dataclasses.replace(args, resume=os.path.join(args.resume, process))
            elif args.run_name is None:
                raise UserError("--distributed needs --run-name: every process writes <run-name>/process-<i>")
            elif args.num_seeds % count:
                raise UserError(f"--num-seeds {args.num_seeds} must be a multiple of the {count} processes")
            else:
                block = args.num_seeds // count
                args = dataclasses.replace(args, seed=args.seed + index * block, num_seeds=block)
        if args.resume:
            self.dir = args.resume
            self.checkpoint = Checkpoint(args.resume, algo)
            args = self._resume_args(args, Args)
        else:
            default = f"{algo}__{args.env_id}__{args.seed}x{args.num_seeds}__{time.strftime('%Y%m%d-%H%M%S')}"
            self.dir = os.path.join(args.results_dir, args.run_name or default.replace(":", "-").replace("/", "-"),
                                    *([process] if process else []))
            if os.path.exists(os.path.join(self.dir, "config.json")):
                raise UserError(f"{self.dir} already holds a run; use --resume {self.dir} or another --run-name")
            parent = _nearest_existing(args.results_dir)
            if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"--results-dir {args.results_dir} is not writable ({parent})")
        self.args = args
        self.seeds = [args.seed + i for i in range(args.num_seeds)]
        from envs.devices import SeedDevices

        self.devices = SeedDevices(len(self.seeds), getattr(args, "devices", None))
        if self.checkpoint is not None:
            self.checkpoint.place = self.devices.place
        self._chunks = list(self.checkpoint.meta["ring"]["chunks"]) if self.checkpoint and \
            self.checkpoint.meta.get("ring") else []
        self._ring_saved = np.asarray(self.checkpoint.meta["ring"]["written"], np.int64) if self._chunks else None
        self._saves = int(self.checkpoint.meta.get("saves", 0)) if self.checkpoint else 0
        self.tb = self.wandb = self.progress = None

    def _resume_args(self, args, Args):
        """The checkpoint's args; only --total-timesteps may change (to extend the run)."""
        saved = self.checkpoint.make_args(Args)
        values = dataclasses.asdict(args)
        flags = getattr(args, "_flags_given", None)  # from the command line; called from Python: non-defaults
        defaults = dataclasses.asdict(Args())
        given = {k: v for k, v in values.items() if (k in flags if flags is not None else v != defaults[k])}
        for k, v in given.items():
            if k not in ("resume", "total_timesteps", "save_model", "devices", "env_workers") and getattr(saved, k) != v:
                raise UserError(f"--resume continues a run with its own flags: {flag(k)} {v} differs from the run's "
                                f"{getattr(saved, k)} (only --total-timesteps may change, to extend it, and where it runs: "
                                "--devices, --env-workers)")
        total = given.get("total_timesteps", saved.total_timesteps)
        done = self.checkpoint.step
        if total < saved.total_timesteps:
            raise UserError(f"--total-timesteps may only extend a run: {total} is below the run's "
                            f"{saved.total_timesteps} ({done} done)")
        if total == done and self.checkpoint.meta.get("complete", True):
            raise RunComplete(f"{self.dir} is complete ({done} steps); pass --total-timesteps N > {done} to extend it")
        where = {k: given[k] for k in ("devices", "env_workers") if k in given}  # this machine's, not the run's
        return dataclasses.replace(saved, resume=args.resume, save_model=True, total_timesteps=total, **where)

    # Start ------------------------------------------------------------------------------------
    def start(self, info: dict, keep_eval=None, keep_rows=None) -> None:
        """Create the folder: config.json (with ``info``, e.g. the replay size), the results CSVs (on a
        resume, cut to the checkpoint's step: ``keep_eval`` / ``keep_rows``, a step or {seed: step}),
        TensorBoard / W&B. Call it once every check has passed: what fails later keeps the folder."""
        args = self.args
        tb_module = require("tensorboardX", "--tb", "tb") if args.tb else None
        wandb = require("wandb", "--track", "track") if args.track else None
        if not os.path.exists(self.dir):
            try:
                os.makedirs(self.dir)
            except OSError as e:
                raise UserError(f"cannot create the run folder {self.dir} ({e.strerror})") from None
        resume = self.checkpoint is not None
        step = self.checkpoint.step if resume else -1
        self.eval_path = os.path.join(self.dir, "eval.csv")
        self.eval_rows = _read_rows(self.eval_path, step if keep_eval is None else keep_eval)
        self.files, self.writers = {}, {}
        for name, header in self.csv_headers.items():
            path = os.path.join(self.dir, f"{name}.csv")
            buf = io.StringIO()
            writer = csv.DictWriter(buf, header)
            writer.writeheader()
            writer.writerows(_read_rows(path, step if keep_rows is None else keep_rows))
            write_atomic(path, buf.getvalue())
            self.files[name] = open(path, "a", newline="")
            self.writers[name] = csv.writer(self.files[name])
        self.git = algo_provenance(self.algo_file) if self.algo_file else git_info()
        self._write_config(info)
        if tb_module:
            self.tb = tb_module.SummaryWriter(os.path.join(self.dir, "tb"))
        if wandb:
            name = os.path.basename(os.path.normpath(self.dir))
            self.wandb = wandb.init(project=args.wandb_project, name=name, config=dataclasses.asdict(args),
                                    dir=self.dir, resume="allow", id=name)
        self.time_offset = float(self.checkpoint.meta.get("elapsed_s", 0.0)) if resume else 0.0
        self.t_start = time.time()
        _ACTIVE.append(self)
        print(f"[{self.algo} {args.env_id}] run folder: {self.dir}" + (f" (resumed at step {step})" if resume else ""))
        if self.devices.count > 1 or jax.process_count() > 1:
            print(f"[{self.algo} {args.env_id}] {self.devices.describe()}"
                  + (f", process {jax.process_index()} of {jax.process_count()}" if jax.process_count() > 1 else ""))

    def _write_config(self, info: dict) -> None:
        path = os.path.join(self.dir, "config.json")
        command = " ".join([os.path.basename(sys.executable)] + sys.argv)
        if self.checkpoint is not None and os.path.exists(path):
            with open(path) as f:
                config = json.load(f)
            config["args"] = dataclasses.asdict(self.args)  # a longer --total-timesteps
            config.setdefault("resumed", []).append({"step": self.checkpoint.step, "at": _now(), "command": command,
                                                     "versions": versions(), "git": self.git})
        else:
            config = {"algo": self.algo, "args": dataclasses.asdict(self.args), "versions": versions(),
                      "git": self.git, "command": command, "cwd": os.getcwd(),
                      "machine": {"platform": platform.platform(), "processor": platform.machine(),
                                  "cpu_count": os.cpu_count(), "jax_devices": [str(d) for d in jax.devices()],
                                  "seed_devices": self.devices.describe(), "process": [jax.process_index(),
                                                                                       jax.process_count()]},
                      "replay_buffer": info, "started": _now(), "resumed": []}
        write_atomic(path, json.dumps(config, indent=2) + "\n")

    def elapsed(self) -> float:
        """Wall time of the run, summed over its resumes."""
        return self.time_offset + time.time() - self.t_start

    # Progress bar -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def progress_bar(self, completed: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[sps]} steps/s"), TextColumn("ETA"), TimeRemainingColumn(),
                                 TextColumn("{task.fields[evals]}"), refresh_per_second=2)
        self._task = self.progress.add_task(self.algo, total=self.args.total_timesteps, completed=completed, sps="-",
                                            evals="")
        with self.progress:
            yield self
        self.progress.update(self._task, completed=self.args.total_timesteps)

    def advance(self, completed: int, sps: Optional[float] = None) -> None:
        _raise_if_interrupted()
        if self.progress is not None:
            self.progress.update(self._task, completed=completed, **({"sps": f"{sps:.0f}"} if sps else {}))

    def print(self, text: str) -> None:
        text = f"[{self.algo} {self.args.env_id}] {text}"
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)  # never wrapped
        else:
            print(text)

    # Results ------------------------------------------------------------------------------------
    def episode(self, seed: int, step: int, ret: float, length: int, extra: Optional[dict] = None) -> None:
        """One training episode: a train_episodes.csv row (``extra``: more columns, in the order of the extra
        header names the algorithm gave ``csvs``) and TensorBoard scalars train/<name>_seed<seed>."""
        _raise_if_interrupted()
        extra = extra or {}
        self.writers["train_episodes"].writerow([self.algo, self.args.env_id, seed, step, f"{ret:.6g}", length,
                                                 *(f"{v:.6g}" for v in extra.values())])
        if self.tb:
            self.tb.add_scalar(f"train/episode_return_seed{seed}", ret, step)
            for name, v in extra.items():
                self.tb.add_scalar(f"train/{name}_seed{seed}", float(v), step)

    def write(self, name: str, row: list) -> None:
        """Append a row to an extra CSV named in ``csvs``."""
        self.writers[name].writerow(row)

    def check_finite(self, metrics: dict, step) -> None:
        """Stop on a non-finite loss, naming the seeds (by value) and what is saved."""
        bad = sorted({self.seeds[i] for v in metrics.values() for i in np.nonzero(~np.isfinite(np.asarray(v)))[0]})
        if bad:
            names = sorted(k for k, v in metrics.items() if not np.all(np.isfinite(v)))
            saved = max((int(r["step"]) for r in self.eval_rows), default=0)
            raise Diverged(f"non-finite loss ({', '.join(names)}) at step {step} for "
                           + ", ".join(f"--seed {s}" for s in bad)
                           + f"; the results up to step {saved} are kept in {self.dir}")

    def evaluation(self, rows: list[dict], metrics: dict) -> None:
        """Log one evaluation: ``rows`` holds, per seed evaluated now, its seed, step and return (and any
        extra eval column); ``metrics`` the latest losses per seed. Rewrites eval.csv atomically."""
        _raise_if_interrupted()
        self.check_finite(metrics, max(r["step"] for r in rows))
        for r in rows:
            self.eval_rows.append({"algo": self.algo, "env": self.args.env_id, **r, "return": f"{r['return']:.6g}",
                                   "time_s": f"{self.elapsed():.1f}"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.eval_header)
        writer.writeheader()
        writer.writerows(self.eval_rows)
        write_atomic(self.eval_path, buf.getvalue())
        for f in self.files.values():
            f.flush()
            os.fsync(f.fileno())
        returns = {r["seed"]: r["return"] for r in rows}
        steps = sorted({r["step"] for r in rows})
        scalars = {f"eval/return_seed{s}": float(v) for s, v in returns.items()}
        if len(steps) == 1:
            scalars["eval/return_mean"] = float(np.mean(list(returns.values())))
        successes = {r["seed"]: float(r["success"]) for r in rows if "success" in r}  # OGBench's success rate
        successes = {k: v for k, v in successes.items() if not np.isnan(v)}
        scalars.update({f"eval/success_seed{s}": v for s, v in successes.items()})
        scalars.update({f"losses/{k}_mean": float(np.mean(v)) for k, v in metrics.items()})
        if self.tb:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, steps[-1])
        if self.wandb:
            self.wandb.log(scalars, step=steps[-1])
        if self.progress is not None:
            self.progress.update(self._task, evals="eval " + " ".join(f"{v:.0f}" for v in returns.values()))
        self.print(f"step {'/'.join(map(str, steps)):>8s}  eval return per seed: "
                   + " ".join(f"{returns[s]:9.2f}" if s in returns else "        -" for s in self.seeds)
                   + f"  (mean {np.mean(list(returns.values())):.2f})"
                   + (f"; success rate per seed: {' '.join(f'{v:.2f}' for v in successes.values())} "
                      f"(mean {np.mean(list(successes.values())):.2f})" if successes else ""))

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    # Checkpoints --------------------------------------------------------------------------------
    def checkpoint_due(self, step: int) -> bool:
        """At an evaluation of ``step``: is a checkpoint due (--save-model, every --checkpoint-freq, and at the end)?"""
        freq = getattr(self.args, "checkpoint_freq", None) or self.args.eval_freq
        return self.args.save_model and (step % freq == 0 or step >= self.args.total_timesteps)

    def save(self, step: int, trees: dict, host: dict, ring=None, written=None, per_slot: tuple = (),
             complete=None) -> dict:
        """Write <run>/checkpoint atomically (a new folder renamed over the old one). ``trees``: name ->
        pytree saved whole; ``host``: JSON-able state (numpy arrays allowed); ``ring``: a pytree of
        [N, capacity, ...] buffers where seed i's counter c lives in slot c % capacity, and ``written``
        [N] its counters: only the slots written since the last save go to a new chunk. The [N, capacity, ...]
        arrays of the trees named in ``per_slot`` (priorities, masks) are saved up to the filled slots (zero
        beyond). Returns sizes."""
        final, tmp, old = (os.path.join(self.dir, n) for n in ("checkpoint", "checkpoint.tmp", "checkpoint.old"))
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        self._saves += 1
        meta = {"format": FORMAT, "algo": self.algo, "args": dataclasses.asdict(self.args), "step": int(step),
                "complete": bool(step >= self.args.total_timesteps if complete is None else complete),
                "saves": self._saves, "saved_at": _now(), "elapsed_s": self.elapsed(), "versions": versions(),
                "git": self.git or git_info(), "trees": {}, "files": {}}
        arrays, meta["sliced"] = {}, {}
        n, cap = np.shape(jax.tree_util.tree_leaves(ring)[0])[:2] if ring is not None else (None, None)
        filled = min(int(np.max(written)), cap) if ring is not None else None
        for name, tree in trees.items():
            leaves = _leaves(jax.device_get(tree))
            meta["trees"][name] = [[path, _spec(x)] for path, x in leaves]
            for k, (_, x) in enumerate(leaves):
                x = np.asarray(x)
                if name in per_slot and x.ndim >= 2 and x.shape[:2] == (n, cap):  # the filled slots only
                    x, meta["sliced"][f"{name}.{k}"] = x[:, :filled], filled
                arrays[f"{name}.{k}"] = x
        meta["files"]["state.npz"] = _save_npz(os.path.join(tmp, "state.npz"), arrays)
        chunk_bytes = 0
        if ring is not None:
            chunk_bytes = self._save_ring(meta, ring, np.asarray(written, np.int64))
        meta["host"] = to_json(host)
        write_atomic(os.path.join(tmp, "meta.json"), json.dumps(meta) + "\n")
        if os.path.exists(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        # chunks no longer referenced (overwritten slots, or left by a killed run) go after the commit
        keep = {c["file"] for c in self._chunks}
        replay_dir = os.path.join(self.dir, "replay")
        for f in os.listdir(replay_dir) if os.path.isdir(replay_dir) else []:
            if f not in keep:
                os.remove(os.path.join(replay_dir, f))
        return {"state_bytes": meta["files"]["state.npz"], "chunk_bytes": chunk_bytes}

    def _save_ring(self, meta: dict, ring, written: np.ndarray) -> int:
        paths = _leaves(ring)
        n, cap = np.shape(paths[0][1])[:2]
        prev = self._ring_saved if self._ring_saved is not None else np.zeros(n, np.int64)
        start = np.maximum(prev, written - cap)
        nbytes = 0
        if np.any(written > start):
            arrays = {f"{i}.{k}": _ring_take(x, i, int(start[i]), int(written[i]))
                      for i in range(n) for k, (_, x) in enumerate(paths)}
            name = f"chunk-{self._saves:06d}.npz"
            os.makedirs(os.path.join(self.dir, "replay"), exist_ok=True)
            nbytes = _save_npz(os.path.join(self.dir, "replay", name), arrays)
            self._chunks.append({"file": name, "start": start.tolist(), "end": written.tolist(), "bytes": nbytes})
        # a chunk whose every slot has been overwritten since is dropped
        self._chunks = [c for c in self._chunks if np.any(np.asarray(c["end"]) > written - cap)]
        self._ring_saved = written.copy()
        meta["ring"] = {"capacity": int(cap), "written": written.tolist(), "chunks": list(self._chunks),
                        "fields": [[path, [list(np.shape(x)[2:]), str(x.dtype)]] for path, x in paths]}
        return nbytes


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved policy
# ---------------------------------------------------------------------------------------------
def evaluate_saved(algo: str, args, Args, policy_from: Callable, evaluator_kwargs: Optional[Callable] = None):
    """--eval-only: evaluate the policy of --checkpoint on fresh evaluation envs (seeded seed + 100, as in
    training) and write <run>/eval_only_step<N>.json. ``policy_from(saved_args, evaluator, checkpoint)``
    builds the algorithm's policy from the checkpoint; ``evaluator_kwargs(saved_args)`` adds env options."""
    from envs.gym import Evaluator

    if args.capture_video:
        require("moviepy", "--capture-video", "video")
    ckpt = Checkpoint(args.checkpoint, algo)
    saved = ckpt.make_args(Args)
    seeds = [saved.seed + i for i in range(saved.num_seeds)]
    video_dir = os.path.join(args.checkpoint, "videos") if args.capture_video else None
    existed = video_dir is not None and os.path.isdir(video_dir)
    try:
        evaluator = Evaluator(saved.env_id, [s + 100 for s in seeds], args.eval_episodes, video_dir=video_dir,
                              **(evaluator_kwargs(saved) if evaluator_kwargs else {}))
        returns = evaluator(policy_from(saved, evaluator, ckpt))
        successes = evaluator.successes  # NaN where the env reports no success (only OGBench's do)
        evaluator.close()
    finally:  # a recording that failed leaves no empty videos/ folder behind
        if video_dir and not existed and os.path.isdir(video_dir) and not os.listdir(video_dir):
            os.rmdir(video_dir)
    t = ckpt.host.get("t")
    step = {str(s): int(x) for s, x in zip(seeds, t)} if isinstance(t, np.ndarray) else ckpt.step  # seeds apart (TD7)
    write_eval_report(args.checkpoint, int(np.max(t)) if isinstance(t, np.ndarray) else ckpt.step, {
        "env": saved.env_id, "step": step, "episodes": args.eval_episodes,
        "returns": {str(s): float(r) for s, r in zip(seeds, returns)}, "mean": float(np.mean(returns)),
        **({"successes": {str(s): float(x) for s, x in zip(seeds, successes)}, "success_mean": float(np.mean(successes))}
           if not np.all(np.isnan(successes)) else {})})
    return returns


def write_eval_report(run_dir: str, step: int, report: dict) -> str:
    """<run>/eval_only_step<step>.json; a second report of the same step gets a -2, -3, ... suffix."""
    path, k = os.path.join(run_dir, f"eval_only_step{step}.json"), 1
    while os.path.exists(path):
        k += 1
        path = os.path.join(run_dir, f"eval_only_step{step}-{k}.json")
    write_atomic(path, json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"written to {path}")
    return path
