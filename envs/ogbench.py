"""OGBench (Park et al., ICLR 2025; package ``ogbench``, extra ``ogbench``): the single-task ids.

``ogbench:<env>-<dataset type>-singletask[-task<k>]-v0``, e.g. ``ogbench:cube-single-play-singletask-task2-v0``:
OGBench's own environment of that task (``ogbench.make_env_and_datasets(..., env_only=True)``), with its
reward (number of satisfied subtasks minus their count) and termination at the goal; ``info["success"]``
is the episode's success, which the evaluations report as the success rate. Without ``-task<k>`` OGBench's
default task is meant (``task1`` for every manipulation env).

The datasets are OGBench's ``.npz`` layout (``<env>-<type>-v0.npz`` and ``-val.npz``), generated here by
``python -m envs.collect --recipe ogbench-play|ogbench-noisy`` into ``dataset_dir()`` (``$OGBENCH_DATA_DIR``,
else OGBench's own default ``~/.ogbench/data``, so ``ogbench.make_env_and_datasets`` finds them too).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from envs.runs import UserError, require

PREFIX = "ogbench:"
# The manipulation envs whose data OGBench's packaged oracles generate (ogbench.manipspace.oracles).
MANIPULATION = ("cube-single", "cube-double", "scene", "puzzle-3x3", "puzzle-4x4")
DATASET_TYPES = ("play", "noisy")
# Envs whose datasets need expert policies (or SAC runs) that cannot be downloaded here.
NEEDS_EXPERTS = ("antmaze", "humanoidmaze", "antsoccer", "pointmaze")
_ID = re.compile(r"^(?P<env>[a-z0-9x-]+?)-(?P<type>[a-z]+)-singletask(?:-task(?P<task>[1-5]))?-v0$")


@dataclass(frozen=True)
class OGBenchId:
    env: str  # cube-single
    dataset_type: str  # play
    task: int  # 1..5 (OGBench's default task is 1)

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
    return OGBenchId(m["env"], m["type"], int(m["task"] or 1))


def dataset_dir() -> str:
    return os.path.expanduser(os.environ.get("OGBENCH_DATA_DIR") or "~/.ogbench/data")


def require_ogbench(flag: str) -> None:
    require("ogbench", flag, "ogbench")
