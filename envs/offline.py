"""Offline datasets: one ``--dataset`` flag, three formats, the same flat transitions.

* ``minari:<dataset id>``: a local Minari dataset (under ``MINARI_DATASETS_PATH``, else Minari's
  default root ``~/.minari/datasets``): per-episode observations of length T+1, actions, rewards,
  terminations and truncations. Every transition has its true next observation.
* ``d4rl:<path to .hdf5>``: a D4RL file with the keys observations, actions, rewards, terminals,
  timeouts (optional next_observations).
* ``ogbench:<single-task name>`` (``cube-single-play-singletask-task2-v0``: the file
  ``<envs.ogbench.dataset_dir()>/cube-single-play-v0.npz``, env ``ogbench:`` + the name) or
  ``ogbench:<path to .npz>`` (env from ``--env-id``, else the env id ``envs.collect`` recorded in the
  file): an OGBench dataset in OGBench's own layout, with its ``-val.npz`` split beside it, read by
  ``ogbench.make_env_and_datasets`` itself (see "OGBench" below).

All give ``Transitions``: obs, action (mapped from the env's bounds onto [-1, 1], as the
algorithms act), reward, next_obs, terminated. A termination never bootstraps. Time-limit ends
of Minari and D4RL data follow the algorithm (``timeouts``); OGBench data has its own convention:

* ``"drop"``: ``d4rl.qlearning_dataset`` exactly (TD3+BC and TD7 load their data with it). The
  transition flagged as a timeout is dropped, every other one bootstraps unless terminal, the
  next observation of a D4RL file is ``observations[i + 1]`` (D4RL ignores a stored
  ``next_observations``). The two differ after terminals, which do not bootstrap, and at any
  other episode boundary the file does not flag (an episode cut by the collector without a
  timeout): there ``observations[i + 1]`` is the next episode's first observation, as in
  ``qlearning_dataset``. The file's last row is dropped. For Minari, the truncated last step of an episode is dropped.
* ``"bootstrap"``: the time-limit transition is kept with terminated = 0 and its true final
  observation (BCQ stores its own buffer that way). A D4RL file needs ``next_observations`` for
  that; without it those transitions are dropped, and the loader says how many.
* OGBench (``timeouts`` ignored): OGBench's regular dataset. A trajectory of T rows (1,001 in the
  generated sets) gives T - 1 transitions (its last row has no next observation); the reward is the
  single-task relabelling (satisfied subtasks minus their count, of the state s_t: the env's
  ``success_timing='pre'``) and ``terminated = 1 - masks``: only a goal state does not bootstrap, a
  trajectory's last transition does (the truncation contract).

Bad data (missing keys, length mismatches, NaN/inf, dimensions that do not match ``--env-id``,
actions outside the env's bounds) raises ``UserError`` with one line naming the key.

Discrete actions (``load_discrete``, discrete BCQ): integer actions in [0, n) and observations kept
in their dtype (uint8 images stay uint8), as ``Frames``: every observation of an episode is stored
once in a table and a transition holds row indices of its observation and next observation. For a
frame-stacked env (``frame_history`` k > 1, dqn-atari:) the rows are single frames, a transition
holds k indices per observation (oldest first) and row 0 is a zero frame, the frames before an
episode's start; ``envs.collect`` writes such datasets with one frame per step (the newest) and
records it in its metadata. A continuous algorithm given a discrete dataset, and the reverse, is a
``UserError``.

``episode_returns`` (config.json's mean_episode_return) holds the returns of the episodes the env
ended; those that ``envs.collect`` cut at its step budget (listed in its metadata) are left out.

Small data (``load(..., max_transitions=N)``: ``first_transitions``, an algorithm's --max-transitions):
Sparse-Reg's protocol (its code SaminYeasar/sparse_reg@6ceeadb, data_utils.d4rl_subsample_trajectories
with --buffer_size N): the first N transitions in the dataset's stored order (not a random sample), cut
before anything else, then every trajectory of <= 10 transitions dropped (the code keeps those of more
than 10). A trajectory is a chain of transitions whose next observation is the following transition's
observation, ended by a termination or a break of the chain (a time limit, an episode boundary); the
trajectory the cut runs through is kept, its last transition bootstrapping, when it is long enough. Two
differences from the code, which reads D4RL's raw rows: N counts the loader's transitions, after its
time-limit handling (the code counts rows, time-limit rows included: at most one row per 1,000-step
episode on D4RL's locomotion files), and the first transition of each trajectory after the first is kept
(the code's action-repeat loop skips it at repeat 1, a side effect we do not copy). ``N = 0``: the whole
dataset, unchanged.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from envs.errors import UserError, require

# D4RL reference returns (d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE), the same for -v0/-v1/-v2
# of each locomotion task; keyed by the gymnasium env family. See docs/facts.md#d4rl-normalised-scores.
D4RL_REF = {
    "HalfCheetah": (-280.178953, 12135.0),
    "Hopper": (-20.272305, 3234.3),
    "Walker2d": (1.629008, 4592.3),
    "Ant": (-325.6, 3879.7),
}
D4RL_KEYS = ("observations", "actions", "rewards", "terminals")  # and "timeouts" (older -v0 files lack it)
ACTION_TOL = 1e-4  # actions this far outside the bounds (in units of the half-range) are clipped, beyond: error


def d4rl_reference(env_id: str) -> Optional[tuple[float, float]]:
    """D4RL's (random, expert) returns for a locomotion env id of any version, else None."""
    family = env_id.split("/")[-1].split("-v")[0]
    return D4RL_REF.get(family)


def normalized_score(ret, ref: tuple[float, float]):
    """D4RL's normalised score: 100 * (return - random) / (expert - random)."""
    lo, hi = ref
    return 100.0 * (np.asarray(ret, np.float64) - lo) / (hi - lo)


@dataclass
class Transitions:
    """Flat transitions, host numpy. Actions in [-1, 1]."""

    obs: np.ndarray  # [N, obs_dim] float32
    action: np.ndarray  # [N, action_dim] float32 in [-1, 1]
    reward: np.ndarray  # [N] float32
    next_obs: np.ndarray  # [N, obs_dim] float32
    terminated: np.ndarray  # [N] float32, 1 = do not bootstrap
    source: str = ""  # the --dataset value
    ref: Optional[tuple[float, float]] = None  # (random, expert) returns for the normalised score
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))  # returns of the whole episodes
    info: dict = field(default_factory=dict)  # format facts for config.json
    start_obs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # [E, obs_dim] episode starts

    def __len__(self) -> int:
        return len(self.reward)

    def arrays(self) -> tuple:
        return self.obs, self.action, self.reward, self.next_obs, self.terminated

    def fingerprint(self) -> str:
        """A short digest of the arrays (a resumed run refuses another dataset)."""
        return digest(*self.arrays())


def digest(*arrays) -> str:
    """16 hex digits of the sha256 of the arrays' bytes: a dataset's fingerprint in a checkpoint."""
    import hashlib
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def normalization(obs: np.ndarray, eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """TD3+BC's state statistics: mean and std over the dataset's observations, std + eps."""
    obs = np.asarray(obs, np.float64)
    return obs.mean(0).astype(np.float32), (obs.std(0) + eps).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The flag
# ---------------------------------------------------------------------------------------------
KINDS = "minari:<dataset id> or d4rl:<path to .hdf5>, or ogbench:<single-task name or path to .npz>"


def parse(spec: str) -> tuple[str, str]:
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("minari", "d4rl", "ogbench") or not rest:
        raise UserError(f"--dataset {spec!r}: expected {KINDS}")
    return kind, rest


def env_id_of(spec: str) -> Optional[str]:
    """The env id a Minari dataset was collected on (its env spec, else the env id envs.collect
    recorded: suites without a gymnasium spec, dmc: or dqn-atari:), an OGBench dataset's (``ogbench:`` +
    its single-task name, or the env id envs.collect recorded in the .npz), else None."""
    kind, rest = parse(spec)
    if kind == "ogbench":
        return _ogbench_source(spec).env_id
    if kind != "minari":
        return None
    dataset = _minari_open(rest)
    env_spec = dataset.spec.env_spec
    return env_spec.id if env_spec is not None else _collect_facts(dataset).get("env_id")


def _collect_facts(dataset) -> dict:
    """The facts envs.collect wrote (metadata key fujimoto_jax), {} for another dataset."""
    import json
    try:
        facts = json.loads(dataset.storage.metadata.get("fujimoto_jax") or "{}")
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


def collection_facts(spec: str) -> dict:
    """What envs.collect recorded about a dataset (recipe, policies, ...): a Minari dataset's metadata or a D4RL
    file's attribute fujimoto_jax; {} for another dataset or one that cannot be read (the loader says why)."""
    import json
    kind, rest = parse(spec)
    try:
        if kind == "ogbench":
            return _ogbench_source(spec).facts
        if kind == "minari":
            return _collect_facts(_minari_open(rest))
        import h5py
        with h5py.File(rest, "r") as f:
            facts = json.loads(f.attrs.get("fujimoto_jax", "{}"))
        return facts if isinstance(facts, dict) else {}
    except (OSError, ValueError, UserError, ImportError):
        return {}


DISCRETE_ALGOS = "algos/discrete_bcq.py"
CONTINUOUS_ALGOS = "algos/td3_bc.py, algos/bcq.py or algos/td7.py --offline"


def dataset_actions(spec: str) -> Optional[str]:
    """"discrete" or "continuous": the kind of the dataset's actions (a Minari dataset's action space, a
    D4RL file's actions key: integers of shape [N] are discrete), None when it cannot be told here."""
    kind, rest = parse(spec)
    if kind == "ogbench":
        return "continuous"  # OGBench's manipulation envs act in [-1, 1]^5
    if kind == "minari":
        space = _minari_open(rest).spec.action_space
        import gymnasium as gym
        return "discrete" if isinstance(space, gym.spaces.Discrete) else "continuous"
    require("h5py", "--dataset d4rl:...", "offline")
    import h5py
    try:
        with h5py.File(rest, "r") as f:
            a = f.get("actions")
            if not isinstance(a, h5py.Dataset):
                return None
            return "discrete" if a.dtype.kind in "iu" and a.ndim == 1 else "continuous"
    except (OSError, ValueError):
        return None  # the loader says why


def check_action_kind(spec: str, wanted: str) -> None:
    """One line when the dataset's actions are not of the kind the algorithm takes."""
    got = dataset_actions(spec)
    if got is not None and got != wanted:
        other = DISCRETE_ALGOS if got == "discrete" else CONTINUOUS_ALGOS
        raise UserError(f"--dataset {spec}: holds {'Discrete' if got == 'discrete' else 'continuous (Box)'} actions, "
                        f"but this algorithm takes {'Discrete' if wanted == 'discrete' else 'continuous (Box)'} ones "
                        f"(train {other} on it)")


def load(spec: str, env_id: str, timeouts: str = "drop", max_transitions: int = 0) -> Transitions:
    """Read ``--dataset`` and check it against the env ``env_id``: see the module docstring. ``max_transitions``
    > 0: only the first that many transitions, short trajectories dropped (``first_transitions``)."""
    if timeouts not in ("drop", "bootstrap"):
        raise ValueError(timeouts)
    if max_transitions < 0:
        raise UserError(f"--max-transitions must be >= 0 (0: the whole dataset), got {max_transitions}")
    import envs
    kind, rest = parse(spec)
    check_action_kind(spec, "continuous")
    if kind == "ogbench":  # the files and the env's name first: no env is built for a refused dataset
        source = _ogbench_source(spec, env_id)
        oid = _check_ogbench_env(spec, source, env_id)
    env = envs.make_env(env_id)
    try:
        low, high = np.asarray(env.action_space.low, np.float64), np.asarray(env.action_space.high, np.float64)
        obs_dim = env.observation_space.shape[0]
        max_steps = env.spec.max_episode_steps if env.spec is not None else None
        if kind == "ogbench":  # relabelled by this env (its task)
            data = _load_ogbench(spec, source, oid, env)
    finally:
        env.close()
    if kind == "d4rl":
        data = _load_d4rl(rest, timeouts, max_steps)
        data.ref = d4rl_reference(env_id)
    elif kind == "minari":
        data = _load_minari(rest, timeouts)
    data.source = spec
    where = f"--dataset {spec}"
    if len(data) == 0:
        raise UserError(f"{where}: no transitions left after dropping time-limit ends")
    for key, arr in (("observations", data.obs), ("next observations", data.next_obs)):
        if arr.ndim != 2 or arr.shape[1] != obs_dim:
            raise UserError(f"{where}: {key} have shape {arr.shape[1:]} but {env_id} observes ({obs_dim},)")
    if data.action.ndim != 2 or data.action.shape[1] != len(low):
        raise UserError(f"{where}: actions have shape {data.action.shape[1:]} but {env_id} acts in ({len(low)},)")
    half = 0.5 * (high - low)
    unit = (data.action.astype(np.float64) - low) / half - 1.0  # env bounds -> [-1, 1]
    worst = np.max(np.abs(unit), axis=0)
    if np.any(worst > 1.0 + ACTION_TOL):
        j = int(np.argmax(worst))
        raise UserError(f"{where}: actions lie outside {env_id}'s bounds (dimension {j} reaches "
                        f"{data.action[np.argmax(np.abs(unit[:, j])), j]:.4g}, bounds [{low[j]:.4g}, {high[j]:.4g}])")
    # OGBench's actions are [-1, 1] already: kept bit for bit (the map is exact only up to rounding)
    data.action = np.clip(data.action if kind == "ogbench" else unit, -1.0, 1.0).astype(np.float32)
    if max_transitions:
        data = first_transitions(data, max_transitions)
        if len(data) == 0:
            raise UserError(f"{where}: no trajectory of more than {MIN_TRAJECTORY} transitions in its first "
                            f"{max_transitions} (--max-transitions)")
    return data


# ---------------------------------------------------------------------------------------------
# Small data: the first N transitions, short trajectories dropped (Sparse-Reg's protocol)
# ---------------------------------------------------------------------------------------------
MIN_TRAJECTORY = 10  # trajectories of at most this many transitions are dropped (the code keeps len > 10)


def trajectory_ends(obs: np.ndarray, next_obs: np.ndarray, terminated: np.ndarray) -> np.ndarray:
    """[N] bool: transition i ends a trajectory (a termination, the last transition, or a next observation
    that is not transition i + 1's observation: a time limit or an episode boundary broke the chain)."""
    ends = terminated.astype(bool).copy()
    if len(ends):
        ends[:-1] |= np.any(next_obs[:-1] != obs[1:], axis=tuple(range(1, obs.ndim)))
        ends[-1] = True
    return ends


def first_transitions(data: Transitions, n: int, min_len: int = MIN_TRAJECTORY) -> Transitions:
    """The first ``n`` transitions of ``data`` in its stored order, every trajectory of <= ``min_len``
    transitions dropped (the module docstring's "Small data"). The facts go in ``info["max_transitions"]``;
    ``episode_returns`` becomes the reward sums of the kept trajectories that end within the cut (a transition
    the loader dropped at a time limit is not in them), ``start_obs`` the kept trajectories' first observations."""
    full_ends = trajectory_ends(data.obs, data.next_obs, data.terminated)
    cut = max(0, min(n, len(data)))
    ends = full_ends[:cut].copy()
    ends[-1:] = True  # the cut closes the trajectory it runs through
    stop = np.nonzero(ends)[0] + 1  # [T] one past each trajectory's last transition
    start = stop - np.diff(np.r_[0, stop])  # [T] each trajectory's first transition
    length = stop - start
    kept = length > min_len
    keep = np.repeat(kept, length)  # [cut] bool per transition
    whole = kept & ((stop < cut) | full_ends[stop - 1])  # ended within the cut, not by it
    rewards = np.add.reduceat(data.reward[:cut].astype(np.float64), start) if cut else np.zeros(0)
    info = {**data.info, "max_transitions": {
        "n": int(n), "cut": int(cut), "trajectories": int(len(length)), "trajectories_kept": int(kept.sum()),
        "dropped_short": int(np.sum(~kept)), "dropped_transitions": int(np.sum(length[~kept])),
        "min_length": int(min_len + 1), "transitions": int(keep.sum()), "of": int(len(data))}}
    pick = lambda x: x[:cut][keep]  # noqa: E731
    return Transitions(pick(data.obs), pick(data.action), pick(data.reward), pick(data.next_obs),
                       pick(data.terminated), source=data.source, ref=data.ref,
                       episode_returns=rewards[whole].astype(np.float64), info=info,
                       start_obs=data.obs[start[kept]])


def _check_finite(where: str, key: str, arr: np.ndarray) -> None:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise UserError(f"{where}: {key} holds NaN or inf (first at index {tuple(int(i) for i in bad)})")


# ---------------------------------------------------------------------------------------------
# D4RL HDF5
# ---------------------------------------------------------------------------------------------
def _step_count_timeouts(terminals: np.ndarray, max_steps: int) -> np.ndarray:
    """qlearning_dataset's rule for a file without "timeouts": a step is final when its counter reaches
    max_episode_steps - 1. The counter restarts at 0 after a final step, and after a terminal at 0 + 1
    (its increment follows the reset), so D4RL counts the episode after a terminal one step ahead."""
    final, count = np.zeros(len(terminals), bool), 0
    for i, done in enumerate(terminals):
        if count == max_steps - 1:
            final[i], count = True, 0
            continue
        if done:
            count = 0
        count += 1
    return final


def _load_d4rl(path: str, timeouts: str, max_steps=None, discrete: bool = False) -> Transitions:
    """``discrete``: actions and uint8 observations keep their dtype (else both become float32)."""
    require("h5py", "--dataset d4rl:...", "offline")
    import h5py
    where = f"--dataset d4rl:{path}"
    if not os.path.isfile(path):
        raise UserError(f"{where}: no such file")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in D4RL_KEYS if k not in f]
            if missing:
                raise UserError(f"{where}: missing key {missing[0]!r} (a D4RL file has {', '.join(D4RL_KEYS)}, "
                                "timeouts)")
            raw = {}
            for k in D4RL_KEYS + ("timeouts", "next_observations"):
                if k in f:
                    if not isinstance(f[k], h5py.Dataset):
                        raise UserError(f"{where}: key {k!r} is an HDF5 {type(f[k]).__name__}, not an array")
                    raw[k] = np.asarray(f[k][()])
                    if raw[k].ndim == 0:
                        raise UserError(f"{where}: key {k!r} holds a single value, not an array of rows")
    except UserError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise UserError(f"{where}: not a readable HDF5 file ({e})") from None
    n = len(raw["rewards"])
    for k, v in raw.items():
        if len(v) != n:
            raise UserError(f"{where}: key {k!r} has {len(v)} rows but 'rewards' has {n}")
        if v.dtype.kind not in "fiub":
            raise UserError(f"{where}: key {k!r} has non-numeric dtype {v.dtype}")
        _check_finite(where, repr(k), v)
    for k in ("rewards", "terminals", "timeouts"):
        if k in raw and raw[k].ndim != 1:
            raise UserError(f"{where}: key {k!r} has shape {raw[k].shape}, expected ({n},)")
    if n < 2:
        raise UserError(f"{where}: {n} rows; need at least 2")
    obs_dtype = np.uint8 if discrete and raw["observations"].dtype == np.uint8 else np.float32
    obs = raw["observations"].astype(obs_dtype)
    has_next = "next_observations" in raw
    term = raw["terminals"].astype(bool)
    if "timeouts" in raw:
        tout = raw["timeouts"].astype(bool)
    elif max_steps:  # older (-v0) files: qlearning_dataset counts steps against the env's time limit
        tout = _step_count_timeouts(term, max_steps)
    else:
        raise UserError(f"{where}: no 'timeouts' key, and the env has no time limit to count episode steps against")
    i = np.arange(n - 1)  # qlearning_dataset iterates range(N - 1): the last row never makes a transition
    if timeouts == "bootstrap" and has_next:
        i = np.arange(n)
    next_obs = raw["next_observations"].astype(obs_dtype)[i] if timeouts == "bootstrap" and has_next else obs[i + 1]
    keep = ~tout[i] if (timeouts == "drop" or not has_next) else np.ones(len(i), bool)
    ends = term | tout
    starts = np.r_[0, np.nonzero(ends)[0] + 1]
    returns = np.array([raw["rewards"][a:b + 1].sum() for a, b in zip(starts[:-1], np.nonzero(ends)[0])])
    info = {"format": "d4rl", "rows": n, "has_next_observations": has_next, "timeouts": timeouts,
            "timeouts_from": "file" if "timeouts" in raw else f"step count (max_episode_steps {max_steps})",
            "dropped_timeouts": int(np.sum(~keep)), "dropped_last_row": int(len(i) < n)}
    i = i[keep]
    actions = raw["actions"][i] if discrete else raw["actions"][i].astype(np.float32)
    return Transitions(obs[i], actions, raw["rewards"][i].astype(np.float32),
                       next_obs[keep], term[i].astype(np.float32), episode_returns=returns, info=info,
                       start_obs=obs[starts[starts < n]])


# ---------------------------------------------------------------------------------------------
# Minari
# ---------------------------------------------------------------------------------------------
def minari_root() -> str:
    """Minari's datasets folder (its get_dataset_path creates the folder, which a failed load must not)."""
    return os.environ.get("MINARI_DATASETS_PATH") or os.path.join(os.path.expanduser("~"), ".minari", "datasets")


def _minari_open(dataset_id: str):
    require("minari", "--dataset minari:...", "offline")
    import minari
    root = minari_root()
    if not re.fullmatch(r"[\w./-]+", dataset_id):
        raise UserError(f"--dataset minari:{dataset_id}: not a Minari dataset id")
    path = os.path.join(root, dataset_id, "data")
    if not os.path.isdir(path):
        local = sorted(minari.list_local_datasets()) if os.path.isdir(root) else []
        raise UserError(f"--dataset minari:{dataset_id}: no such local dataset under {root} (MINARI_DATASETS_PATH); "
                        + (f"local ones: {', '.join(local[:8])}" if local else "none is stored there"))
    try:
        return minari.load_dataset(dataset_id)
    except Exception as e:  # minari raises many types for a damaged folder
        raise UserError(f"--dataset minari:{dataset_id}: damaged dataset ({type(e).__name__}: {e})") from None


def _episode_fields(where: str, ep) -> tuple[dict, int]:
    """A Minari episode's arrays and step count, checked: array spaces, one count for actions, rewards and
    flags, one more observation row than steps."""
    name = f"episode {ep.id}"
    fields = {"observations": ep.observations, "actions": ep.actions, "rewards": ep.rewards,
              "terminations": ep.terminations, "truncations": ep.truncations}
    for k, v in fields.items():
        if not isinstance(v, np.ndarray):
            raise UserError(f"{where}: {name} {k} is a {type(v).__name__}; only array (Box, Discrete) spaces are "
                            "supported")
    t = len(ep.rewards)
    for k in ("actions", "terminations", "truncations"):
        if len(fields[k]) != t:
            raise UserError(f"{where}: {name} {k} has {len(fields[k])} steps but rewards has {t}")
    if len(ep.observations) != t + 1:
        raise UserError(f"{where}: {name} observations has {len(ep.observations)} rows, expected {t + 1} (steps + 1)")
    return fields, t


def _load_minari(dataset_id: str, timeouts: str) -> Transitions:
    dataset = _minari_open(dataset_id)
    where = f"--dataset minari:{dataset_id}"
    parts = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "start_obs")}
    returns, dropped = [], 0
    try:
        episodes = list(dataset.iterate_episodes())
    except Exception as e:
        raise UserError(f"{where}: damaged episode data ({type(e).__name__}: {e})") from None
    if not episodes:
        raise UserError(f"{where}: holds no episodes")
    cut = set(_collect_facts(dataset).get("cut_episodes") or ())  # ended by envs.collect's budget, not the env
    for ep in episodes:
        name = f"episode {ep.id}"
        fields, t = _episode_fields(where, ep)
        for k, v in fields.items():
            _check_finite(where, f"{name} {k}", v)
        term, trunc = np.asarray(ep.terminations, bool), np.asarray(ep.truncations, bool)
        obs = np.asarray(ep.observations, np.float32)
        keep = ~trunc if timeouts == "drop" else np.ones(t, bool)
        if t and (term[-1] or trunc[-1]) and ep.id not in cut:
            returns.append(float(np.sum(ep.rewards)))
        dropped += int(np.sum(~keep))
        parts["obs"].append(obs[:-1][keep])
        parts["start_obs"].append(obs[:1])
        parts["next_obs"].append(obs[1:][keep])
        parts["action"].append(np.asarray(ep.actions, np.float32)[keep])
        parts["reward"].append(np.asarray(ep.rewards, np.float32)[keep])
        parts["terminated"].append(term[keep].astype(np.float32))
    meta = dataset.storage.metadata
    ref = None
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        ref = (float(meta["ref_min_score"]), float(meta["ref_max_score"]))
    info = {"format": "minari", "episodes": len(episodes), "timeouts": timeouts, "dropped_timeouts": dropped,
            "env_spec": dataset.spec.env_spec.id if dataset.spec.env_spec else None,
            "minari_version": meta.get("minari_version")}
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return Transitions(cat["obs"], cat["action"], cat["reward"], cat["next_obs"], cat["terminated"], ref=ref,
                       episode_returns=np.asarray(returns), info=info, start_obs=cat["start_obs"])


# ---------------------------------------------------------------------------------------------
# OGBench (.npz in OGBench's layout, read by ogbench itself)
# ---------------------------------------------------------------------------------------------
OGBENCH_KEYS = ("observations", "actions", "terminals", "qpos", "qvel")  # + button_states (scene, puzzles)


@dataclass
class _OGBenchSource:
    path: str  # the train split
    val_path: str  # OGBench's rule: the path with .npz -> -val.npz
    env_id: Optional[str]  # the dataset's own env: ogbench: + its single-task name, or the one collect recorded
    named: bool  # given as a single-task name (the name fixes the task), not as a path
    facts: dict  # envs.collect's metadata (key fujimoto_jax), {} for another file


def _collect_command(dataset_type: str, env_id: Optional[str], out: Optional[str]) -> str:
    env_id = env_id or f"ogbench:<env>-{dataset_type}-singletask-task1-v0"
    return (f"python -m envs.collect --recipe ogbench-{dataset_type} --env-id {env_id}"
            + (f" --out {out}" if out else ""))


def _ogbench_source(spec: str, env_id: Optional[str] = None) -> _OGBenchSource:
    """Where ``ogbench:<X>`` lies and which env it names; one line when a file is missing (with the
    command that makes it). ``env_id`` (--env-id, if given) only completes that command."""
    from envs import ogbench as og
    _, rest = parse(spec)
    where = f"--dataset {spec}"
    named = not ("/" in rest or rest.endswith(".npz"))
    if named:  # a single-task name: the shared file of its dataset in dataset_dir()
        try:
            oid = og.parse_id(rest)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None
        path, own = os.path.join(og.dataset_dir(), f"{oid.dataset_name}.npz"), og.PREFIX + rest
    else:
        path, own = os.path.expanduser(rest), None
        if not path.endswith(".npz"):
            raise UserError(f"{where}: an OGBench dataset is an .npz file (with its -val.npz beside it)")
    val_path = path.replace(".npz", "-val.npz")  # as ogbench.make_env_and_datasets derives it
    facts = og.npz_metadata(path) if os.path.isfile(path) else {}
    recorded = facts.get("env_id")
    if not named and isinstance(recorded, str):
        own = recorded
    for p, what in ((path, "no such file"), (val_path, "no val split")):
        if not os.path.isfile(p):
            known = own or (env_id if env_id and env_id.startswith(og.PREFIX) else None)
            dataset_type = og.parse_id(known).dataset_type if known and _parses(known) else "play"
            raise UserError(f"{where}: {what} {p} (make the dataset with: "
                            f"{_collect_command(dataset_type, known, None if named else path)})")
    return _OGBenchSource(path, val_path, own, named, facts)


def _parses(env_id: str) -> bool:
    from envs import ogbench as og
    try:
        og.parse_id(env_id)
        return True
    except UserError:
        return False


def _check_ogbench_env(spec: str, source: _OGBenchSource, env_id: str):
    """The env of the evaluations must be the dataset's: same OGBench env and dataset type (any of the five
    tasks for a file, as the tasks share their data; the named one for a single-task name)."""
    from envs import ogbench as og
    where = f"--dataset {spec}"
    if not env_id.startswith(og.PREFIX):
        raise UserError(f"{where}: OGBench data is evaluated on its own env, an ogbench: id "
                        f"({source.env_id or 'ogbench:<env>-<type>-singletask-task<k>-v0'}), not --env-id {env_id}")
    oid = og.parse_id(env_id)
    recorded = source.facts.get("env_id")
    checks = [(source.env_id, "names" if source.named else "was collected on", source.named)]
    if source.named and isinstance(recorded, str):
        checks.append((recorded, "was collected on", False))
    for own, verb, same_task in checks:
        if own is None:
            continue
        if not _parses(own):
            raise UserError(f"{where}: {verb} {own!r}, not an OGBench single-task id")
        theirs = og.parse_id(own)
        if (theirs.env, theirs.dataset_type) != (oid.env, oid.dataset_type) or (same_task and theirs.task != oid.task):
            raise UserError(f"{where}: {verb} {theirs.env_id}, but --env-id is {oid.env_id}")
    return oid


def _npz_headers(where: str, path: str) -> dict:
    """{key: (shape, dtype)} of an .npz's arrays, from their headers only (nothing decompressed beyond them)."""
    import zipfile
    fmt = np.lib.format
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    version = fmt.read_magic(f)
                    read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = read(f)
                out[name[:-4]] = (tuple(shape), np.dtype(dtype))
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{where}: {path} is not a readable .npz file ({e})") from None
    return out


def _check_ogbench_file(where: str, path: str, env_id: str, dims: dict) -> None:
    """OGBench's keys, one row count, the env's dimensions (another env's data fails here), terminals that
    end the last trajectory (OGBench's loader aligns next observations on them)."""
    heads = _npz_headers(where, path)
    n = None
    for key, dim in dims.items():
        if key not in heads:
            raise UserError(f"{where}: {path} has no key {key!r} (an OGBench dataset of {env_id} holds "
                            f"{', '.join(dims)})")
        shape, dtype = heads[key]
        if dtype.kind not in "fiub" or len(shape) != (1 if key == "terminals" else 2):
            raise UserError(f"{where}: {path} key {key!r} has shape {shape} and dtype {dtype}")
        if n is not None and shape[0] != n:
            raise UserError(f"{where}: {path} key {key!r} has {shape[0]} rows but 'observations' has {n}")
        n = shape[0] if n is None else n
        if dim is not None and shape[1] != dim:
            raise UserError(f"{where}: {path} holds another env's data: {key} of {shape[1]} dims, but {env_id} "
                            f"has {dim}")
    with np.load(path, allow_pickle=False) as f:
        terminals = np.asarray(f["terminals"])
    if n < 2 or not np.all((terminals == 0) | (terminals == 1)) or terminals[-1] != 1:
        raise UserError(f"{where}: {path} key 'terminals' must be 0/1 with 1 on the last row of each trajectory "
                        f"({n} rows, last {terminals[-1] if n else None})")


def _load_ogbench(spec: str, source: _OGBenchSource, oid, env) -> Transitions:
    """Read both splits through ``ogbench.make_env_and_datasets`` (its loading and single-task relabelling, on
    ``env``'s task) after checking the files against ``env``."""
    from envs import ogbench as og
    where = f"--dataset {spec}"
    _, info = env.reset(seed=0)
    dims = dict(zip(OGBENCH_KEYS, (env.observation_space.shape[0], env.action_space.shape[0], None,
                                   len(info["qpos"]), len(info["qvel"]))))  # row widths; terminals are 1-D
    if "button_states" in info:
        dims["button_states"] = len(info["button_states"])
    for path in (source.path, source.val_path):
        _check_ogbench_file(where, path, oid.env_id, dims)
    ogbench = og._import_ogbench(f"--dataset {spec}")
    try:
        train, val = ogbench.make_env_and_datasets(oid.name, dataset_path=source.path, dataset_only=True,
                                                   cur_env=env)
    except Exception as e:  # a damaged archive raises many types
        raise UserError(f"{where}: OGBench cannot read it ({type(e).__name__}: {e})") from None
    for key in ("observations", "actions", "next_observations"):
        _check_finite(where, key, train[key])
    ends = np.nonzero(train["terminals"])[0]  # the last transition of each trajectory
    terminated = (1.0 - train["masks"]).astype(np.float32)
    facts = source.facts
    info = {"format": "ogbench", "path": source.path, "val_path": source.val_path, "task": oid.task,
            "trajectories": len(ends), "goal_transitions": int(terminated.sum()),
            "val_transitions": len(val["rewards"]), "val_trajectories": int(np.sum(val["terminals"])),
            "timeouts": "trajectory ends bootstrap (1 - OGBench's masks)", "collect": facts or None,
            "ogbench_version": importlib.metadata.version("ogbench")}
    return Transitions(train["observations"], train["actions"], train["rewards"].astype(np.float32),
                       train["next_observations"], terminated, info=info,
                       start_obs=train["observations"][np.r_[0, ends[:-1] + 1]])


# ---------------------------------------------------------------------------------------------
# Discrete actions: every observation stored once, transitions as row indices
# ---------------------------------------------------------------------------------------------
@dataclass
class Frames:
    """Discrete-action transitions, host numpy. Observation i is ``table[obs_idx[i]]`` reshaped to
    ``obs_shape`` (``stacks``): k frames oldest first (k = frame_history > 1), or one whole row (k = 1)."""

    table: np.ndarray  # [M, *row_shape] frames or whole observations, dtype kept (uint8 images); row 0 zeros
    obs_idx: np.ndarray  # [N, k] int32 rows of s
    next_idx: np.ndarray  # [N, k] int32 rows of s'
    action: np.ndarray  # [N] int32 in [0, num_actions)
    reward: np.ndarray  # [N] float32, as stored (Atari: unclipped)
    terminated: np.ndarray  # [N] float32, 1 = do not bootstrap
    obs_shape: tuple = ()
    num_actions: int = 0
    source: str = ""
    ref: Optional[tuple[float, float]] = None
    episode_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    info: dict = field(default_factory=dict)
    start_idx: np.ndarray = field(default_factory=lambda: np.zeros((0, 1), np.int32))  # [E, k] rows of episode starts

    def __len__(self) -> int:
        return len(self.reward)

    def arrays(self) -> tuple:
        return self.table, self.obs_idx, self.next_idx, self.action, self.reward, self.terminated

    def stacks(self, idx: np.ndarray) -> np.ndarray:
        """Observations of index rows idx [B, k] -> [B, *obs_shape]."""
        return self.table[idx].reshape(len(idx), *self.obs_shape)

    fingerprint = Transitions.fingerprint


class _Table:
    """Fills the table episode by episode: an episode's T + 1 observations (or frames) take T + 1
    consecutive rows; before its start, rows are padded with the zero row 0 or its first row."""

    def __init__(self, rows: int, row_shape: tuple, dtype, k: int, padding: str):
        self.table = np.zeros((rows + 1, *row_shape), dtype)
        self.k, self.padding, self.n = k, padding, 1
        self.obs_idx, self.next_idx, self.start_idx = [], [], []

    def add(self, obs: np.ndarray, keep: np.ndarray) -> None:
        t, start = len(obs) - 1, self.n
        self.table[start:start + t + 1] = obs
        self.n += t + 1
        pos = np.arange(t + 1)[:, None] + np.arange(1 - self.k, 1)[None]  # [T + 1, k] episode positions of s_t's frames
        pad = 0 if self.padding == "zeros" else start
        rows = np.where(pos >= 0, start + pos, pad).astype(np.int32)
        self.obs_idx.append(rows[:-1][keep])
        self.next_idx.append(rows[1:][keep])
        self.start_idx.append(rows[:1])

    def indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros((0, self.k), np.int32)  # noqa: E731
        return cat(self.obs_idx), cat(self.next_idx), cat(self.start_idx)


def load_discrete(spec: str, env_id: str, timeouts: str = "drop") -> Frames:
    """Read a discrete-action ``--dataset`` for ``env_id`` as ``Frames`` (module docstring). ``timeouts``:
    "drop" the time-limit transition (the authors' Atari buffer), or "bootstrap" it (their other buffers)."""
    if timeouts not in ("drop", "bootstrap"):
        raise ValueError(timeouts)
    import gymnasium as gym

    import envs
    kind, rest = parse(spec)
    where = f"--dataset {spec}"
    check_action_kind(spec, "discrete")
    env = envs.make_env(env_id, discrete_ok=True, pixels_ok=True)
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise UserError(f"{where}: --env-id {env_id} has a {type(env.action_space).__name__} action space; "
                            "this algorithm needs Discrete actions")
        num_actions, obs_space = int(env.action_space.n), env.observation_space
        history = int(getattr(env.unwrapped, "frame_history", 1))
        max_steps = env.spec.max_episode_steps if env.spec is not None else None
    finally:
        env.close()
    obs_shape = tuple(int(d) for d in obs_space.shape)
    obs_dtype = np.dtype(np.uint8) if obs_space.dtype == np.uint8 and len(obs_shape) == 3 else np.dtype(np.float32)
    if kind == "d4rl":
        flat = _load_d4rl(rest, timeouts, max_steps, discrete=True)
        for key, arr in (("observations", flat.obs), ("next observations", flat.next_obs)):
            _check_obs(where, key, arr, obs_shape, obs_dtype, env_id)
        n = len(flat)
        table = np.concatenate([np.zeros((1, *obs_shape), obs_dtype), flat.obs.astype(obs_dtype),
                                flat.next_obs.astype(obs_dtype), flat.start_obs.astype(obs_dtype)])
        e = len(flat.start_obs)
        data = Frames(table, np.arange(1, n + 1, dtype=np.int32)[:, None],
                      np.arange(n + 1, 2 * n + 1, dtype=np.int32)[:, None], flat.action, flat.reward,
                      flat.terminated, episode_returns=flat.episode_returns,
                      info={**flat.info, "frames": None, "table_rows": len(table)},
                      start_idx=np.arange(2 * n + 1, 2 * n + 1 + e, dtype=np.int32)[:, None])
        data.ref = d4rl_reference(env_id)
    else:
        data = _load_minari_frames(rest, timeouts, obs_shape, obs_dtype, history, env_id)
    data.source, data.obs_shape, data.num_actions = spec, obs_shape, num_actions
    if len(data) == 0:
        raise UserError(f"{where}: no transitions left after dropping time-limit ends")
    if data.action.ndim != 1 or data.action.dtype.kind not in "iu":
        raise UserError(f"{where}: actions have dtype {data.action.dtype} and shape {data.action.shape[1:]}; "
                        "Discrete actions are integers, one per step")
    bad = (data.action < 0) | (data.action >= num_actions)
    if np.any(bad):
        raise UserError(f"{where}: action {int(data.action[np.argmax(bad)])} at transition {int(np.argmax(bad))} "
                        f"is outside {env_id}'s {num_actions} actions")
    data.action = data.action.astype(np.int32)
    return data


def _check_obs(where: str, key: str, arr: np.ndarray, shape: tuple, dtype, env_id: str) -> None:
    if tuple(arr.shape[1:]) != shape:
        raise UserError(f"{where}: {key} have shape {tuple(arr.shape[1:])} but {env_id} observes {shape}")
    if dtype == np.uint8 and arr.dtype != np.uint8:
        raise UserError(f"{where}: {key} have dtype {arr.dtype} but {env_id} observes uint8 images")
    if arr.dtype.kind not in "fiub":
        raise UserError(f"{where}: {key} have non-numeric dtype {arr.dtype}")


def _load_minari_frames(dataset_id: str, timeouts: str, obs_shape: tuple, obs_dtype, history: int,
                        env_id: str) -> Frames:
    dataset = _minari_open(dataset_id)
    where = f"--dataset minari:{dataset_id}"
    frames = _collect_facts(dataset).get("frames") or None  # {"history": k, "padding": "zeros" | "first"}
    if frames:
        if frames.get("history") != history or history < 2 or frames.get("padding") not in ("zeros", "first"):
            raise UserError(f"{where}: stores frames of a {frames.get('history')}-frame history "
                            f"(padding {frames.get('padding')!r}), but {env_id} stacks {history}")
        k, row_shape, padding = history, (obs_shape[0] // history, *obs_shape[1:]), frames["padding"]
    else:
        k, row_shape, padding = 1, obs_shape, "zeros"
    try:
        rows = int(dataset.total_steps) + int(dataset.total_episodes)
    except Exception as e:
        raise UserError(f"{where}: damaged episode metadata ({type(e).__name__}: {e})") from None
    if rows == 0:
        raise UserError(f"{where}: holds no episodes")
    table = _Table(rows, row_shape, obs_dtype, k, padding)
    parts = {k_: [] for k_ in ("action", "reward", "terminated")}
    returns, dropped, episodes = [], 0, 0
    cut = set(_collect_facts(dataset).get("cut_episodes") or ())  # ended by envs.collect's budget, not the env
    try:
        for ep in dataset.iterate_episodes():
            name = f"episode {ep.id}"
            fields, t = _episode_fields(where, ep)
            _check_obs(where, f"{name} observations" + (" (one frame per step)" if k > 1 else ""), ep.observations,
                       row_shape, obs_dtype, env_id + (f"'s {k}-frame stacks" if k > 1 else ""))
            for key in ("observations", "rewards"):
                _check_finite(where, f"{name} {key}", fields[key])
            if table.n + t + 1 > len(table.table):
                raise UserError(f"{where}: damaged: the episodes hold more steps than its metadata says")
            term, trunc = np.asarray(ep.terminations, bool), np.asarray(ep.truncations, bool)
            keep = ~trunc if timeouts == "drop" else np.ones(t, bool)
            if t and (term[-1] or trunc[-1]) and ep.id not in cut:
                returns.append(float(np.sum(ep.rewards)))
            dropped += int(np.sum(~keep))
            table.add(np.asarray(ep.observations), keep)
            parts["action"].append(np.asarray(ep.actions)[keep])
            parts["reward"].append(np.asarray(ep.rewards, np.float32)[keep])
            parts["terminated"].append(term[keep].astype(np.float32))
            episodes += 1
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{where}: damaged episode data ({type(e).__name__}: {e})") from None
    if not episodes:
        raise UserError(f"{where}: holds no episodes")
    meta = dataset.storage.metadata
    ref = None
    if meta.get("ref_min_score") is not None and meta.get("ref_max_score") is not None:
        ref = (float(meta["ref_min_score"]), float(meta["ref_max_score"]))
    obs_idx, next_idx, start_idx = table.indices()
    info = {"format": "minari", "episodes": episodes, "timeouts": timeouts, "dropped_timeouts": dropped,
            "env_spec": dataset.spec.env_spec.id if dataset.spec.env_spec else None,
            "minari_version": meta.get("minari_version"), "frames": frames, "table_rows": table.n}
    cat = {key: np.concatenate(v) for key, v in parts.items()}
    return Frames(table.table[:table.n], obs_idx, next_idx, cat["action"], cat["reward"], cat["terminated"],
                  ref=ref, episode_returns=np.asarray(returns), info=info, start_idx=start_idx)


# ---------------------------------------------------------------------------------------------
# What an offline algorithm file calls
# ---------------------------------------------------------------------------------------------
def resolve_env(args) -> None:
    """Before the run folder is named: --dataset is required, and --env-id defaults to a Minari
    dataset's own env or an OGBench dataset's (a D4RL file does not record one)."""
    if args.resume:
        return
    if not args.dataset:
        raise UserError(f"--dataset is required: {KINDS} (make one with python -m envs.collect)")
    if not args.env_id:
        env_id = env_id_of(args.dataset)
        if not env_id:
            raise UserError(f"--dataset {args.dataset} does not name its env; pass --env-id")
        args.env_id = env_id


def is_ogbench(data) -> bool:
    return data.info.get("format") == "ogbench"


def eval_header(data: Transitions, base: list) -> list:
    """eval.csv gains a normalized_score column when the dataset has reference scores, and a success
    column (the success rate over the evaluation episodes, OGBench's score) for OGBench data."""
    return base + (["normalized_score"] if data.ref else []) + (["success"] if is_ogbench(data) else [])


def eval_rows(data: Transitions, seeds, step: int, returns, successes=None) -> list[dict]:
    """One row per seed; ``successes`` ([N], ``envs.Evaluator.successes``) fills the success column."""
    rows = [{"seed": s, "step": step, "return": r} for s, r in zip(seeds, returns)]
    if data.ref:
        for row in rows:
            row["normalized_score"] = f"{float(normalized_score(row['return'], data.ref)):.4g}"
    if is_ogbench(data):
        successes = np.full(len(rows), np.nan) if successes is None else successes
        for row, rate in zip(rows, successes):
            row["success"] = f"{float(rate):.4g}"
    return rows


def describe(data: Transitions, device_bytes: int) -> dict:
    """The dataset's entry of config.json."""
    return {"source": data.source, "transitions": len(data), "fingerprint": data.fingerprint(),
            "ref_scores": list(data.ref) if data.ref else None, "episodes_whole": len(data.episode_returns),
            "mean_episode_return": float(np.mean(data.episode_returns)) if len(data.episode_returns) else None,
            "device_mb": round(device_bytes / 1e6, 1), **data.info}


def check_resume(data: Transitions, host: dict) -> None:
    """A resumed run must read the dataset it started with."""
    if host.get("dataset") != data.fingerprint():
        raise UserError(f"--dataset {data.source} is not the dataset this run was trained on "
                        f"(fingerprint {data.fingerprint()}, the checkpoint's {host.get('dataset')})")
