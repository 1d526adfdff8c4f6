"""OGBench (Park et al., ICLR 2025; package ``ogbench``, extra ``ogbench``): the single-task ids.

``ogbench:<env>-<dataset type>-singletask[-task<k>]-v0``, e.g. ``ogbench:cube-single-play-singletask-task2-v0``:
OGBench's own environment of that task (``ogbench.make_env_and_datasets(..., env_only=True)``, ``OGBenchEnv``),
with its reward (number of satisfied subtasks minus their count) and termination at the goal, both of the
state before the action (OGBench's ``success_timing='pre'`` for single-task envs), and its time limit (a
truncation: cube-single 200 steps). ``info["success"]`` at an episode's last step is its success, which
``envs.Evaluator.successes`` averages into OGBench's success rate. Without ``-task<k>`` OGBench's default
task is meant (``DEFAULT_TASK``: task2 for cube and scene, task4 for puzzle). The dataset type does not change the env; it names
the data (``--dataset ogbench:...``, envs/offline.py).

The datasets are OGBench's ``.npz`` layout (``<env>-<type>-v0.npz`` and ``-val.npz``), generated here by
``python -m envs.collect --recipe ogbench-play|ogbench-noisy`` into ``dataset_dir()`` (``$OGBENCH_DATA_DIR``,
else OGBench's own default ``~/.ogbench/data``, so ``ogbench.make_env_and_datasets`` finds them too).
Antmaze, humanoidmaze, antsoccer and pointmaze are refused: their data needs expert policies.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from envs.errors import UserError, require

PREFIX = "ogbench:"
# The manipulation envs whose data OGBench's packaged oracles generate (ogbench.manipspace.oracles).
MANIPULATION = ("cube-single", "cube-double", "scene", "puzzle-3x3", "puzzle-4x4")
# The task of an id without -task<k>: ogbench 1.2.2's own defaults (cube_env.py, scene_env.py, puzzle_env.py).
DEFAULT_TASK = {"cube": 2, "scene": 2, "puzzle": 4}
DATASET_TYPES = ("play", "noisy")
# Envs whose datasets need expert policies (or SAC runs) that cannot be downloaded here.
NEEDS_EXPERTS = ("antmaze", "humanoidmaze", "antsoccer", "pointmaze")
_ID = re.compile(r"^(?P<env>[a-z0-9x-]+?)-(?P<type>[a-z]+)-singletask(?:-task(?P<task>[1-5]))?-v0$")


@dataclass(frozen=True)
class OGBenchId:
    env: str  # cube-single
    dataset_type: str  # play
    task: int  # 1..5 (OGBench's default: DEFAULT_TASK)

    @property
    def name(self) -> str:
        """OGBench's single-task name, task explicit: cube-single-play-singletask-task2-v0."""
        return f"{self.env}-{self.dataset_type}-singletask-task{self.task}-v0"

    @property
    def env_id(self) -> str:
        return PREFIX + self.name

    @property
    def dataset_name(self) -> str:
        """The dataset's file stem: cube-single-play-v0 (shared by the five tasks)."""
        return f"{self.env}-{self.dataset_type}-v0"


def parse_id(env_id: str) -> OGBenchId:
    """``ogbench:<env>-<type>-singletask[-task<k>]-v0`` -> OGBenchId, else one UserError line."""
    name = env_id[len(PREFIX):] if env_id.startswith(PREFIX) else env_id
    for family in NEEDS_EXPERTS:
        if name.startswith(family):
            raise UserError(f"{env_id!r}: {family} datasets need OGBench's expert policies (or SAC runs of 400k-40M "
                            f"steps), which cannot be downloaded here; the suite covers {', '.join(MANIPULATION)}")
    m = _ID.match(name)
    if m is None:
        raise UserError(f"{env_id!r}: expected ogbench:<env>-<play|noisy>-singletask-task<1-5>-v0 with <env> one of "
                        f"{', '.join(MANIPULATION)} (e.g. ogbench:cube-single-play-singletask-task2-v0)")
    if m["env"] not in MANIPULATION:
        raise UserError(f"{env_id!r}: unknown OGBench env {m['env']!r}; the suite covers {', '.join(MANIPULATION)}")
    if m["type"] not in DATASET_TYPES:
        raise UserError(f"{env_id!r}: unknown dataset type {m['type']!r}; expected one of {', '.join(DATASET_TYPES)}")
    return OGBenchId(m["env"], m["type"], int(m["task"] or DEFAULT_TASK[m["env"].split("-")[0]]))


def dataset_dir() -> str:
    return os.path.expanduser(os.environ.get("OGBENCH_DATA_DIR") or "~/.ogbench/data")


def npz_metadata(path: str) -> dict:
    """The JSON ``envs.collect`` stores under an .npz's key ``fujimoto_jax`` (a 0-d unicode array), {} for a
    file without it (a hosted one) or one that cannot be read (the loader then says why)."""
    import json
    import zipfile
    try:
        with np.load(path, allow_pickle=False) as f:
            if "fujimoto_jax" not in f.files:
                return {}
            facts = json.loads(str(f["fujimoto_jax"][()]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return {}
    return facts if isinstance(facts, dict) else {}


def require_ogbench(flag: str) -> None:
    require("ogbench", flag, "ogbench")


# ---------------------------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------------------------
def _import_ogbench(flag: str):
    """``ogbench``, imported quietly: headless, MuJoCo's default GL backend (GLFW) warns that DISPLAY is
    missing; EGL needs no display (and renders for --capture-video), as for dmc: (envs/dmc.py)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
    require_ogbench(flag)
    import ogbench
    return ogbench


@contextlib.contextmanager
def _no_cast_warnings():
    """OGBench builds its Box spaces from float64 bounds at every access (its reset samples from one);
    gymnasium warns about the cast to float32 each time."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        yield


def make_ogbench_env(oid: OGBenchId, flag: str = "--env-id", **kwargs) -> gym.Env:
    """OGBench's own single-task env (its registration: time limit, task, success timing), no env checker."""
    ogbench = _import_ogbench(flag)
    with _no_cast_warnings():
        return ogbench.make_env_and_datasets(oid.name, env_only=True, disable_env_checker=True, **kwargs)


class OGBenchEnv(gym.Wrapper):
    """``ogbench:<env>-<type>-singletask-task<k>-v0`` as the adapters need it: float32 observations (OGBench
    returns float64), everything else OGBench's own. Its single-task envs are registered with
    ``success_timing='pre'``: a step's reward (satisfied subtasks minus their count), ``info["success"]`` and
    ``terminated`` (``terminate_at_goal``) describe the state *before* the action, so the step taken from a
    goal state ends the episode with reward 0, and ``next_obs`` is the true state after it. The time limit
    (cube-single 200 steps, cube-double 500, scene 750, puzzles 500) is gymnasium's ``TimeLimit``: a
    truncation. ``kwargs`` go to OGBench's env (e.g. ``terminate_at_goal=False``); ``render_mode="rgb_array"``
    (--capture-video) renders its front camera."""

    def __init__(self, env_id: str, render_mode: str | None = None, **kwargs):
        self.oid = parse_id(env_id)
        self.env_id = self.oid.env_id
        super().__init__(make_ogbench_env(self.oid, **kwargs))
        self.env.unwrapped.render_mode = render_mode  # OGBench takes it but does not keep it
        with _no_cast_warnings():
            shape = self.env.observation_space.shape  # OGBench's property resets the env once to see one
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (5,), np.float32)  # OGBench's, built once here

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        with _no_cast_warnings():
            obs, info = self.env.reset(seed=seed, options=options)
        # OGBench's task reset steps the scene twice with an unseeded action_space.sample() (to record the
        # goal) and restores the state, but not MuJoCo's warm start: zero it, as mj_resetData leaves it, so
        # that a seed fixes the episode bit for bit (resume replay, env workers).
        self.env.unwrapped._data.qacc_warmstart[:] = 0.0
        return np.asarray(obs, np.float32), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return np.asarray(obs, np.float32), float(reward), bool(terminated), bool(truncated), info

    def close(self):
        # OGBench never frees its renderer; its EGL context would otherwise fail noisily at interpreter exit
        inner = self.env.unwrapped
        if getattr(inner, "_renderer", None) is not None:
            inner._renderer.close()
            inner._renderer = None
        super().close()
