"""Gymnasium (MuJoCo and classic-control) adapter: one env per seed, stepped together on the host.

Gymnasium 1.x vector envs reset a finished sub-env on the *next* call to ``step`` and hide the
final observation; we do not use them. Each seed owns a plain ``gym.make`` env and this module
resets it explicitly right after an episode ends, so the caller gets the true final observation
(``EnvStep.next_obs``) and the next episode's first observation (``EnvStep.obs``) in one step.

Many seeds (issue 16): ``SeedEnvs(..., workers=W)`` and ``Evaluator(..., workers=W)`` split the
seeds into W contiguous blocks stepped at the same time in W worker *processes* (envs/workers.py),
each holding a plain serial ``SeedEnvs`` / ``Evaluator`` of this module over its block, so any W
gives the same results bit for bit, resume replay included (tests/test_parallel_envs.py). W = 1, the
default, is the in-process code, unchanged. Processes rather than threads: about two thirds of a
Hopper-v4 step is MuJoCo's C ``mj_step``, which releases the GIL, the rest is gymnasium's Python,
which holds it; threads overlap only the C part and pay a pool hand-off per env, and a thread pool
was slower than serial on the 2-core test machine. A worker process overlaps both parts for one pipe
round trip per worker and step (~70-120 us there) and ~30-50% more CPU per seed-step in all, so it
pays with several seeds per worker and a free host core per worker; on the shared 2-core machine it
did not (the critical path shrinks, the wall time did not). Figures and their reading:
results/bench/envs_step_cpu.md (``benchmarks/envs_step.py``).
"""

from __future__ import annotations

import difflib
import importlib
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np

from envs.errors import Diverged, SpaceError, UserError
from envs.workers import check_workers, pool_for


SUITE_PREFIXES = ("gymnasium ids as they are (Hopper-v4), dmc:<domain>-<task>, dmc-pixels:<domain>-<task>, "
                  "atari:<Game>, dqn-atari:<Game>, minatar:<game>, ogbench:<env>-<play|noisy>-singletask-task<k>-v0")
_PREFIXED = ("dmc:", "dmc-pixels:", "atari:", "dqn-atari:", "minatar:", "ogbench:")


def _make_suite_env(env_id: str, **kwargs) -> gym.Env:
    """gymnasium id, or a prefixed DeepMind Control / Atari / MinAtar / OGBench id (envs/dmc.py, atari.py,
    minatar.py, ogbench.py)."""
    if env_id.startswith(("dmc:", "dmc-pixels:")):
        from envs.dmc import DMCEnv
        return DMCEnv(env_id, **kwargs)
    if env_id.startswith("atari:"):
        from envs.atari import AtariEnv
        return AtariEnv(env_id, **kwargs)
    if env_id.startswith("dqn-atari:"):
        from envs.atari import DQNAtariEnv
        return DQNAtariEnv(env_id, **kwargs)
    if env_id.startswith("minatar:"):
        from envs.minatar import MinAtarEnv
        return MinAtarEnv(env_id, **kwargs)
    if env_id.startswith("ogbench:"):
        from envs.ogbench import OGBenchEnv
        return OGBenchEnv(env_id, **kwargs)
    _check_gym_id(env_id)
    with warnings.catch_warnings():  # the papers' -v4 MuJoCo versions are used on purpose
        warnings.filterwarnings("ignore", message=".*is out of date.*")
        return gym.make(env_id, disable_env_checker=True, **kwargs)


def _check_gym_id(env_id: str):
    """A UserError for an id that is neither prefixed (dmc:, atari:, ...) nor registered with gymnasium, or
    registered but not makeable here (a moved v2/v3 MuJoCo id, a missing extra)."""
    if env_id.startswith("ogbench:"):  # checked by name only (no import): antmaze & co. are refused here
        from envs.ogbench import parse_id
        parse_id(env_id)
    if env_id.startswith(_PREFIXED):
        return
    if env_id.startswith("HBench-"):  # DR.Q's HumanoidBench ids: no silent fallback to something else
        raise UserError(f"{env_id!r}: HumanoidBench is not available here: its humanoid_bench package does not "
                        "install from PyPI (checked 2026-12-01), so no HBench-<task> id can be made.")
    if ":" in env_id.split("/")[0] and env_id not in gym.registry:
        raise UserError(f"Unknown env id prefix in {env_id!r}; env ids are: {SUITE_PREFIXES}.")
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=10, cutoff=0.6)
        close = [i for i in close if _why_not(i) is None][:5]  # ids that can be made (not Hopper-v3: moved)
        hint = f" Did you mean: {', '.join(close)}?" if close else " See `gymnasium.pprint_registry()`."
        raise UserError(f"Unknown env id {env_id!r}.{hint} Other suites: {SUITE_PREFIXES}.")
    entry = gym.registry[env_id].entry_point
    if getattr(entry, "__name__", "") == "_raise_mujoco_py_error":  # gymnasium's stub for the v2/v3 MuJoCo ids
        name = gym.registry[env_id].name
        now = [i for i in gym.registry if gym.registry[i].name == name and _why_not(i) is None]
        raise UserError(f"{env_id!r} has moved: gymnasium's MuJoCo v2/v3 envs need mujoco-py and now live in "
                        f"gymnasium-robotics; use {' or '.join(sorted(now)) or 'a -v4 or -v5 id'} (this project's "
                        "defaults and results use -v4).")
    why = _why_not(env_id)
    if why is not None:
        raise UserError(f"{env_id!r} cannot be made here: {why}")


def _why_not(env_id: str) -> str | None:
    """Why a registered gymnasium id cannot be made here, else None: gymnasium's stub of a moved id (an
    entry point that raises, e.g. _raise_mujoco_py_error) or an entry point whose module does not import
    (a missing extra such as box2d). The first line of the error says which."""
    entry = gym.registry[env_id].entry_point
    try:
        if callable(entry):
            if getattr(entry, "__name__", "").startswith("_raise_"):
                entry()
            return None
        importlib.import_module(str(entry).split(":")[0])
    except Exception as e:
        return (str(e).strip().splitlines() or [type(e).__name__])[0]
    return None


def make_env(env_id: str, discrete_ok: bool = False, pixels_ok: bool = False, **kwargs) -> gym.Env:
    """An env of any suite, with the checks an algorithm needs, failing with clear errors.

    By default the action space must be a continuous 1-D Box and observations 1-D vectors (TD3,
    TD7, ...); ``discrete_ok`` also accepts Discrete actions, ``pixels_ok`` uint8 images [C, H, W].
    """
    env = _make_suite_env(env_id, **kwargs)
    act, obs = env.action_space, env.observation_space
    if isinstance(act, gym.spaces.Discrete) and discrete_ok:
        pass
    elif not isinstance(act, gym.spaces.Box):
        env.close()
        raise SpaceError(
            f"{env_id} has a {type(act).__name__} action space; this algorithm needs a continuous "
            "(Box) action space."
        )
    elif len(act.shape) != 1 or not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        env.close()
        raise SpaceError(f"{env_id}: the action space must be a 1-D Box with finite bounds, got {act}.")
    is_pixels = isinstance(obs, gym.spaces.Box) and len(obs.shape) == 3 and obs.dtype == np.uint8
    if not isinstance(obs, gym.spaces.Box) or not (len(obs.shape) == 1 or (pixels_ok and is_pixels)):
        env.close()
        what = "image" if is_pixels else "non-vector"
        raise SpaceError(f"{env_id}: the observation space must be a 1-D Box, got {obs}"
                        + (f" ({what} observations need an algorithm that takes them, e.g. MR.Q)." if is_pixels else "."))
    return env


GL_BACKENDS = ("egl", "osmesa")  # tried in this order when MUJOCO_GL is unset (then glfw, with a display)


def _gl_probe(backend: str) -> str | None:
    """Why MuJoCo cannot render with MUJOCO_GL=backend here, else None. Tried in a subprocess: a failed GL
    context can abort the process or poison its OpenGL state."""
    code = ("import mujoco; m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size=\"1\"/></worldbody>"
            "</mujoco>'); r = mujoco.Renderer(m, 8, 8); r.update_scene(mujoco.MjData(m)); r.render()")
    try:
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "MUJOCO_GL": backend},
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return str(e)
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    return None if done.returncode == 0 else (lines[-1][:120] if lines else f"exit status {done.returncode}")


def _is_mujoco(env_id: str) -> bool:
    if env_id.startswith(("dmc:", "dmc-pixels:", "ogbench:")):
        return True
    spec = gym.registry.get(env_id)
    return spec is not None and isinstance(spec.entry_point, str) and spec.entry_point.startswith("gymnasium.envs.mujoco")


def _gl_for_video(env_id: str) -> None:
    """Before recording a MuJoCo env: keep a MUJOCO_GL that renders, or pick the first of egl, osmesa (glfw
    with a display) that does when it is unset; else one UserError line naming MUJOCO_GL."""
    if not _is_mujoco(env_id):
        return
    given = os.environ.get("MUJOCO_GL")
    if given:
        why = _gl_probe(given)
        if why is None:
            return
        raise UserError(f"--capture-video: MuJoCo cannot render with MUJOCO_GL={given} here ({why}); unset it to "
                        "try egl and osmesa, or install one (apt-get install libegl1 libegl-mesa0, or libosmesa6) and "
                        "set MUJOCO_GL=egl or MUJOCO_GL=osmesa")
    tried = []
    for backend in GL_BACKENDS + (("glfw",) if os.environ.get("DISPLAY") else ()):
        why = _gl_probe(backend)
        if why is None:
            os.environ["MUJOCO_GL"] = backend
            print(f"--capture-video: MUJOCO_GL was unset; rendering with MUJOCO_GL={backend}")
            return
        tried.append(f"{backend}: {why}")
    raise UserError(f"--capture-video: MuJoCo cannot render here with MUJOCO_GL unset (tried {'; '.join(tried)}); "
                    "install one (apt-get install libegl1 libegl-mesa0, or libosmesa6) and set MUJOCO_GL=egl or "
                    "MUJOCO_GL=osmesa")


@dataclass
class EnvStep:
    """What one step of all seeds returns. Arrays have a leading seed axis ``[N, ...]``."""

    obs: np.ndarray  # [N, *obs_shape] observation to act on next (a reset obs where an episode ended)
    next_obs: np.ndarray  # [N, *obs_shape] true s' of this transition (the final obs where one ended)
    reward: np.ndarray  # [N] float32
    terminated: np.ndarray  # [N] bool: s' is terminal, do not bootstrap
    truncated: np.ndarray  # [N] bool: time limit, bootstrap from next_obs
    episodes: list[tuple[int, float, int]] = field(default_factory=list)  # (seed idx, return, length)


def _scale_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """[-1, 1] -> [low, high], affinely (a * max_action for symmetric boxes)."""
    return low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)


class _Spaces:
    """What the algorithm sees of an env: observation shape/dtype (float32 vectors, or uint8 images
    [C, H, W] when ``pixels_ok``) and actions: ``[N, action_dim]`` in [-1, 1] for a Box, or ``[N]``
    integer indices for a Discrete space (``discrete``; ``action_dim`` is then the number of actions)."""

    def __init__(self, space: gym.Space, obs: gym.Space, frame_history: int = 1):
        self.space_args = (space, obs, frame_history)  # what a worker process sends its parent
        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.obs_shape = tuple(int(d) for d in obs.shape)
        self.obs_dtype = np.dtype(np.uint8) if obs.dtype == np.uint8 and len(obs.shape) == 3 else np.dtype(np.float32)
        self.obs_dim = self.obs_shape[0]
        self.frame_history = frame_history  # frames stacked in one observation
        if self.discrete:
            self.action_dim, self.action_shape = int(space.n), ()
        else:
            self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
            self.action_dim = int(space.shape[0])
            self.action_shape = (self.action_dim,)

    def to_env_action(self, action: np.ndarray):
        return int(action) if self.discrete else _scale_action(action, self.low, self.high)


def _space_args(env: gym.Env) -> tuple:
    return env.action_space, env.observation_space, int(getattr(env.unwrapped, "frame_history", 1))


_COUNTERS = ("ep_return", "ep_length")  # SeedEnvs state the parent mirrors from its workers


class SeedEnvs(_Spaces):
    """``len(seeds)`` independent copies of ``env_id``, env ``i`` seeded ``seeds[i]``.
    ``env_kwargs``, ``discrete_ok`` and ``pixels_ok`` go to ``make_env``.

    Resumable: ``get_state`` records, per seed, the reset RNG state at the start of the current
    episode and the actions taken since; ``set_state`` rebuilds the exact env state by replaying
    them (gymnasium envs are deterministic given their RNG and actions), so no simulator state
    has to be pickled.

    ``workers`` (an integer >= 1, else a UserError; more than the number of seeds is clamped to it):
    with 1, the envs live in this process (``.envs``) and step one after another. With W > 1 the
    seeds are split into W contiguous blocks, each a serial ``SeedEnvs`` in its own process
    (envs/workers.py), stepped at the same time; every method and attribute (``obs``, ``ep_return``,
    ``ep_length``, the spaces) is the same bit for bit, there is just no ``.envs``. Actions are
    checked here first, so a bad action raises the same error and steps nothing. Call ``close()``.
    """

    def __init__(self, env_id: str, seeds: Sequence[int], discrete_ok: bool = False, pixels_ok: bool = False,
                 env_kwargs: dict | None = None, workers: int = 1):
        self.env_id, self.seeds = env_id, [int(s) for s in seeds]
        self.num = len(self.seeds)
        self.workers = check_workers(workers, self.num)
        self._pool = None
        if self.workers == 1:
            self.envs = [make_env(env_id, discrete_ok, pixels_ok, **(env_kwargs or {})) for _ in self.seeds]
            super().__init__(*_space_args(self.envs[0]))
        else:
            _check_gym_id(env_id)  # here, before any worker starts
            self._pool, self._blocks = pool_for(SeedEnvs, env_id, self.seeds, self.workers, lambda b: dict(
                env_id=env_id, seeds=self.seeds[b], discrete_ok=discrete_ok, pixels_ok=pixels_ok,
                env_kwargs=env_kwargs))
            super().__init__(*self._pool.spaces)

    def _on_workers(self, name: str, args: list[tuple]) -> list:
        """``name(*args[k])`` on every worker; its results, with the episode counters copied here."""
        replies = self._pool.call(name, args, _COUNTERS)
        for attr in _COUNTERS:
            setattr(self, attr, np.concatenate([counters[attr] for _, counters in replies]))
        return [result for result, _ in replies]

    def _reset_one(self, i: int, seed: int | None = None) -> np.ndarray:
        env = self.envs[i]
        self._reset_rng[i] = None if seed is not None else env.unwrapped.np_random.bit_generator.state
        self._actions[i] = []
        self.ep_return[i], self.ep_length[i] = 0.0, 0
        obs, _ = env.reset(seed=seed)
        return np.asarray(obs, dtype=self.obs_dtype)

    def reset(self) -> np.ndarray:
        """First reset of every env, seeded. Returns ``[N, *obs_shape]``."""
        if self._pool is not None:
            self.obs = np.concatenate(self._on_workers("reset", [()] * self.workers))
            return self.obs
        self._reset_rng: list[dict | None] = [None] * self.num
        self._actions: list[list[np.ndarray]] = [[] for _ in range(self.num)]
        self.ep_return = np.zeros(self.num, np.float64)
        self.ep_length = np.zeros(self.num, np.int64)
        self.obs = np.stack([self._reset_one(i, seed=s) for i, s in enumerate(self.seeds)])
        return self.obs

    def step(self, action: np.ndarray, active: np.ndarray | None = None) -> EnvStep:
        """Step every env with ``action`` in ``[-1, 1]``, shape ``[N, action_dim]`` (``[N]`` indices if discrete).

        ``active`` ([N] bool, default all) steps only those envs: the others keep their
        observation, report reward 0 and no episode end, and their actions are ignored.
        """
        action, active = self._check_action(action, active)
        if self._pool is not None:
            return self._step_workers(action, active)
        next_obs = np.empty((self.num, *self.obs_shape), self.obs_dtype)
        obs = np.empty_like(next_obs)
        reward = np.empty(self.num, np.float32)
        terminated = np.zeros(self.num, bool)
        truncated = np.zeros(self.num, bool)
        episodes = []
        for i, env in enumerate(self.envs):
            if not active[i]:
                obs[i] = next_obs[i] = self.obs[i]
                reward[i] = 0.0
                continue
            self._actions[i].append(action[i].copy())
            o, r, term, trunc, _ = env.step(self.to_env_action(action[i]))
            next_obs[i], reward[i] = o, r
            terminated[i], truncated[i] = term, trunc and not term
            self.ep_return[i] += r
            self.ep_length[i] += 1
            if term or trunc:
                episodes.append((i, float(self.ep_return[i]), int(self.ep_length[i])))
                obs[i] = self._reset_one(i)
            else:
                obs[i] = o
        self.obs = obs
        return EnvStep(obs, next_obs, reward, terminated, truncated, episodes)

    def _check_action(self, action, active) -> tuple[np.ndarray, np.ndarray]:
        action = np.asarray(action)
        if action.shape != (self.num, *self.action_shape):
            raise ValueError(f"expected actions of shape {(self.num, *self.action_shape)}, got {action.shape}")
        active = np.ones(self.num, bool) if active is None else np.asarray(active, bool)
        if self.discrete:
            if np.any((action[active] < 0) | (action[active] >= self.action_dim)):
                raise ValueError(f"discrete actions must be in [0, {self.action_dim}), got {action}")
        elif not np.all(np.isfinite(action[active])):
            bad = sorted({self.seeds[i] for i in np.nonzero(~np.isfinite(action) & active[:, None])[0]})
            raise Diverged("non-finite action for " + ", ".join(f"--seed {s}" for s in bad)
                           + ": the policy has diverged (NaN/inf)")
        return action, active

    def _step_workers(self, action: np.ndarray, active: np.ndarray) -> EnvStep:
        steps = self._on_workers("step", [(action[b], active[b]) for b in self._blocks])
        fields = ("obs", "next_obs", "reward", "terminated", "truncated")
        obs, next_obs, reward, terminated, truncated = (np.concatenate([getattr(s, f) for s in steps]) for f in fields)
        episodes = [(b.start + i, ret, length) for s, b in zip(steps, self._blocks) for i, ret, length in s.episodes]
        self.obs = obs
        return EnvStep(obs, next_obs, reward, terminated, truncated, episodes)

    # Checkpointing ----------------------------------------------------------------------------
    def get_state(self) -> dict:
        if self._pool is not None:
            parts = [part for part, _ in self._pool.call("get_state", [()] * self.workers)]
            return {"env_id": self.env_id, "seeds": list(self.seeds),
                    **{key: [x for part in parts for x in part[key]] for key in ("reset_rng", "actions")}}
        return {
            "env_id": self.env_id,
            "seeds": list(self.seeds),
            "reset_rng": list(self._reset_rng),
            "actions": [np.asarray(a, np.int64 if self.discrete else np.float32).reshape(-1, *self.action_shape)
                        for a in self._actions],
        }

    def set_state(self, state: dict) -> np.ndarray:
        """Restore the envs to ``state`` (from ``get_state``); returns the current observations."""
        if state["env_id"] != self.env_id or list(state["seeds"]) != self.seeds:
            raise ValueError(
                f"env state is for {state['env_id']} seeds {state['seeds']}, not {self.env_id} seeds {self.seeds}"
            )
        if self._pool is not None:
            self.obs = np.concatenate(self._on_workers("set_state", [(
                {"env_id": self.env_id, "seeds": self.seeds[b], "reset_rng": list(state["reset_rng"][b]),
                 "actions": list(state["actions"][b])},) for b in self._blocks]))
            return self.obs
        self.reset()
        obs = []
        for i, env in enumerate(self.envs):
            o = self.obs[i]
            if state["reset_rng"][i] is not None:  # not the first (seeded) episode
                env.unwrapped.np_random.bit_generator.state = state["reset_rng"][i]
                o = self._reset_one(i)
            for a in state["actions"][i]:
                self._actions[i].append(a.copy())
                o, r, term, trunc, _ = env.step(self.to_env_action(a))
                self.ep_return[i] += r
                self.ep_length[i] += 1
                if term or trunc:
                    raise RuntimeError(f"{self.env_id}: replaying seed {self.seeds[i]}'s episode ended it early")
            obs.append(np.asarray(o, self.obs_dtype))
        self.obs = np.stack(obs)
        return self.obs

    def close(self):
        if self._pool is not None:
            self._pool.close()
            return
        for env in self.envs:
            env.close()


class Evaluator(_Spaces):
    """Deterministic evaluation as the TD3 repo does it: per seed, ``episodes`` episodes run one
    after another on a separate env whose first reset of *every* evaluation is seeded
    ``eval_seed`` (so every evaluation sees the same initial states). Seeds step together so the
    policy is called once per step for all of them.

    ``successes`` ([N], after each call): per seed, the mean over its episodes of ``info["success"]`` at
    the episode's last step (OGBench's success rate, as its evaluation reads the final info), NaN for a
    seed whose env reported no success (every suite but ogbench:) or that was not evaluated.

    ``workers`` as for ``SeedEnvs``: with W > 1 contiguous blocks of seeds step in W processes
    (the video, if any, is recorded by the first), with the same returns bit for bit.
    """

    def __init__(self, env_id: str, eval_seeds: Sequence[int], episodes: int, video_dir: str | None = None,
                 discrete_ok: bool = False, pixels_ok: bool = False, env_kwargs: dict | None = None,
                 workers: int = 1):
        if episodes < 1:
            raise UserError(f"--eval-episodes must be >= 1, got {episodes}")
        self.eval_seeds, self.episodes = [int(s) for s in eval_seeds], episodes
        self.successes = np.full(len(self.eval_seeds), np.nan)
        self.workers = check_workers(workers, len(self.eval_seeds))
        self._pool = None
        if self.workers > 1:
            _check_gym_id(env_id)
            self._pool, self._blocks = pool_for(Evaluator, env_id, self.eval_seeds, self.workers, lambda b: dict(
                env_id=env_id, eval_seeds=self.eval_seeds[b], episodes=episodes,
                video_dir=video_dir if b.start == 0 else None, discrete_ok=discrete_ok, pixels_ok=pixels_ok,
                env_kwargs=env_kwargs))
            super().__init__(*self._pool.spaces)
            return
        if video_dir:
            _gl_for_video(env_id)
        self.envs = [make_env(env_id, discrete_ok, pixels_ok, **(env_kwargs or {}),
                              **({"render_mode": "rgb_array"} if video_dir and i == 0 else {}))
                     for i in range(len(self.eval_seeds))]
        if video_dir:
            self.envs[0] = gym.wrappers.RecordVideo(self.envs[0], video_dir, episode_trigger=lambda _: True,
                                                    disable_logger=True)
        super().__init__(*_space_args(self.envs[0]))

    def __call__(self, policy: Callable[[np.ndarray], np.ndarray], active: np.ndarray | None = None) -> np.ndarray:
        """``policy``: ``[N, *obs_shape]`` -> ``[N, action_dim]`` in [-1, 1] (``[N]`` indices if discrete).
        Returns ``[N]`` mean returns (and sets ``successes``).

        ``active`` ([N] bool, default all) evaluates only those seeds; the others get NaN.
        """
        n = len(self.eval_seeds)
        active = np.ones(n, bool) if active is None else np.asarray(active, bool)
        if self._pool is None:
            obs, finished = self._begin(active)
            while not finished:
                obs, finished = self._advance(np.asarray(policy(obs)))
            return self._result()
        begun = [r for r, _ in self._pool.call("_begin", [(active[b],) for b in self._blocks])]
        obs = np.concatenate([o for o, _ in begun])
        todo = [k for k, (_, finished) in enumerate(begun) if not finished]
        while todo:
            action = np.asarray(policy(obs))
            advanced = self._pool.call("_advance", [(action[self._blocks[k]],) for k in todo], which=todo)
            for k, ((o, _), _) in zip(todo, advanced):
                obs[self._blocks[k]] = o
            todo = [k for k, ((_, finished), _) in zip(todo, advanced) if not finished]
        results = self._pool.call("_result", [()] * self.workers, ("successes",))
        self.successes = np.concatenate([attrs["successes"] for _, attrs in results])
        return np.concatenate([r for r, _ in results])

    # One evaluation as three steps, so that a worker process can run it for its block of seeds.
    def _begin(self, active: np.ndarray) -> tuple[np.ndarray, bool]:
        self._active = active
        self._obs = np.stack([np.asarray(env.reset(seed=s)[0], self.obs_dtype) if a else
                              np.zeros(self.obs_shape, self.obs_dtype)
                              for env, s, a in zip(self.envs, self.eval_seeds, active)])
        self._done_eps = np.where(active, 0, self.episodes).astype(np.int64)
        self._totals = np.zeros(len(self.envs), np.float64)
        self._success_sum = np.zeros(len(self.envs), np.float64)
        self._success_eps = np.zeros(len(self.envs), np.int64)  # episodes whose last step reported a success
        return self._obs, not np.any(self._done_eps < self.episodes)

    def _advance(self, action: np.ndarray) -> tuple[np.ndarray, bool]:
        obs, done_eps, totals = self._obs, self._done_eps, self._totals
        for i, env in enumerate(self.envs):
            if done_eps[i] >= self.episodes:
                continue
            o, r, term, trunc, info = env.step(self.to_env_action(action[i]))
            totals[i] += r
            if term or trunc:
                if "success" in info:
                    self._success_sum[i] += float(info["success"])
                    self._success_eps[i] += 1
                done_eps[i] += 1
                if done_eps[i] < self.episodes:
                    o, _ = env.reset()
            obs[i] = o
        return obs, not np.any(done_eps < self.episodes)

    def _result(self) -> np.ndarray:
        reported = self._active & (self._success_eps > 0)
        self.successes = np.where(reported, self._success_sum / np.maximum(self._success_eps, 1), np.nan)
        return np.where(self._active, self._totals / self.episodes, np.nan)

    def close(self):
        if self._pool is not None:
            self._pool.close()
            return
        for env in self.envs:
            env.close()


def discounted_value(env_id: str, policy, episodes: int, seed: int, discount: float, tol: float = 1e-4,
                     num_envs: int = 10, reward_fn=None, discrete_ok: bool = False, pixels_ok: bool = False) -> dict:
    """Ground truth of off-policy evaluation: (1 - discount) * the mean over ``episodes`` episodes of
    sum_t discount^t r_t, acting with ``policy`` (obs [K, ...] -> actions [K, ...] as for ``SeedEnvs.step``;
    any noise is the caller's). ``num_envs`` envs seeded seed + i step together, each running a fixed share
    of the episodes (waiting for the first ``episodes`` ends would favour short episodes). An episode stops
    at its end or once discount^t < ``tol`` (the rest weighs at most tol * max |r| on this scale).
    ``reward_fn`` maps the env's rewards first (e.g. the DQN-era clip). Returns value, its standard error,
    the per-episode discounted sums, the horizon and the mean episode length."""
    if episodes < 1:
        raise UserError(f"ground truth: episodes must be >= 1, got {episodes}")
    if not 0.0 < discount < 1.0:
        raise UserError(f"ground truth: discount must be in (0, 1), got {discount}")
    horizon = int(np.ceil(np.log(tol) / np.log(discount))) if tol > 0 else None
    k = min(num_envs, episodes)
    quota = np.array([episodes // k + (i < episodes % k) for i in range(k)])
    envs_ = SeedEnvs(env_id, [seed + i for i in range(k)], discrete_ok=discrete_ok, pixels_ok=pixels_ok)
    try:
        obs = envs_.reset()
        acc, weight, t = np.zeros(k), np.ones(k), np.zeros(k, np.int64)
        done, sums, lengths = np.zeros(k, np.int64), [], []
        while np.any(done < quota):
            active = done < quota
            step = envs_.step(np.asarray(policy(obs)), active)
            reward = np.asarray(reward_fn(step.reward) if reward_fn else step.reward, np.float64)
            acc += np.where(active, weight * reward, 0.0)
            weight, t = weight * discount, t + active
            for i in np.nonzero(active)[0]:
                cut = horizon is not None and t[i] >= horizon
                if step.terminated[i] or step.truncated[i] or cut:
                    sums.append(acc[i])
                    lengths.append(int(t[i]))
                    acc[i], weight[i], t[i], done[i] = 0.0, 1.0, 0, done[i] + 1
                    if cut and not (step.terminated[i] or step.truncated[i]):
                        step.obs[i] = envs_.obs[i] = envs_._reset_one(i)
            obs = step.obs
    finally:
        envs_.close()
    sums = np.asarray(sums)
    return {"value": float((1 - discount) * sums.mean()),
            "stderr": float((1 - discount) * sums.std(ddof=1) / np.sqrt(len(sums))) if len(sums) > 1 else None,
            "episodes": len(sums), "horizon": horizon, "mean_length": float(np.mean(lengths)), "sums": sums}
