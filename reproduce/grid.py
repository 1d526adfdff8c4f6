"""The papers' grids (grids/*.toml) and their expansion into runs.

A paper file names its reference CSV, one grid per scale (`full` = the paper's budgets and seeds,
`quick` = the reduced grid) and optional aggregates. A grid expands to algorithm x env runs; its
budgets are evaluation points read from each run's eval.csv, so one run of the largest budget
serves them all. Runs that several papers share (same algorithm, env and protocol) are run once,
with the most steps and seeds any of them asks for.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID_DIR = os.path.join(ROOT, "reproduce", "grids")
SCALES = ("full", "quick")
SCALE_KEYS = {"algos", "envs", "seeds", "budgets", "eval_freq", "eval_episodes", "args", "env_args"}


@dataclass(frozen=True)
class Scale:
    algos: tuple[str, ...]
    envs: tuple[str, ...]
    seeds: int
    budgets: tuple[int, ...]
    eval_freq: int
    eval_episodes: int
    args: tuple[str, ...] = ()
    env_args: dict = field(default_factory=dict, hash=False)  # env -> extra flags for that env only

    def run_args(self, env: str) -> tuple[str, ...]:
        return self.args + tuple(self.env_args.get(env, ()))


@dataclass(frozen=True)
class Aggregate:
    name: str
    algo: str
    baseline: str
    envs: tuple[str, ...]
    reference_env: str | None = None


@dataclass(frozen=True)
class Paper:
    id: str
    title: str
    reference: str  # path relative to the repo root
    protocol: str
    scales: dict = field(hash=False)  # scale name -> Scale
    cost: dict = field(hash=False)  # algo -> relative cost of one env step of one seed
    aggregates: tuple[Aggregate, ...] = ()
    path: str = ""
    year: int = 0


@dataclass(frozen=True)
class Run:
    """One process: `seeds` agents of `algo` on `env` for `steps` env steps."""

    algo: str
    env: str
    steps: int
    seeds: int
    eval_freq: int
    eval_episodes: int
    args: tuple[str, ...]
    papers: tuple[str, ...]
    cost: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.algo}/{self.env}"

    def run_dir(self, root: str) -> str:
        return os.path.join(root, self.algo, self.env)

    @property
    def work(self) -> float:
        """Relative amount of compute, for progress and ETA."""
        return self.steps * self.seeds * self.cost


def _fail(path: str, msg: str):
    raise ValueError(f"{path}: {msg}")


def load_paper(path: str) -> Paper:
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            _fail(path, f"not valid TOML ({e})")
    for key in ("paper", "scale"):
        if key not in data:
            _fail(path, f"missing [{key}] table")
    meta = data["paper"]
    for key in ("id", "title", "reference"):
        if key not in meta:
            _fail(path, f"[paper] needs '{key}'")
    scales = {}
    for name, s in data["scale"].items():
        if name not in SCALES:
            _fail(path, f"unknown scale '{name}' (valid: {', '.join(SCALES)})")
        unknown = set(s) - SCALE_KEYS
        missing = SCALE_KEYS - {"args", "env_args"} - set(s)
        if unknown or missing:
            _fail(path, f"[scale.{name}] unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
        budgets = tuple(int(b) for b in s["budgets"])
        if not budgets or any(b < 1 for b in budgets):
            _fail(path, f"[scale.{name}] budgets must be positive env-step counts")
        if any(b % int(s["eval_freq"]) for b in budgets):
            _fail(path, f"[scale.{name}] every budget must be a multiple of eval_freq={s['eval_freq']}, "
                        f"so the run evaluates exactly there")
        if int(s["seeds"]) < 1 or not s["algos"] or not s["envs"]:
            _fail(path, f"[scale.{name}] needs seeds >= 1, at least one algo and one env")
        env_args = {k: tuple(v) for k, v in s.get("env_args", {}).items()}
        if set(env_args) - set(s["envs"]):
            outside = sorted(set(env_args) - set(s["envs"]))
            _fail(path, f"[scale.{name}.env_args] names envs outside the grid: {outside}")
        scales[name] = Scale(tuple(s["algos"]), tuple(s["envs"]), int(s["seeds"]), tuple(sorted(budgets)),
                             int(s["eval_freq"]), int(s["eval_episodes"]), tuple(s.get("args", ())), env_args)
    aggregates = []
    for a in data.get("aggregate", []):
        for key in ("name", "algo", "baseline", "envs"):
            if key not in a:
                _fail(path, f"[[aggregate]] needs '{key}'")
        aggregates.append(Aggregate(a["name"], a["algo"], a["baseline"], tuple(a["envs"]), a.get("reference_env")))
    return Paper(meta["id"], meta["title"], meta["reference"], meta.get("protocol", ""), scales,
                 {k: float(v) for k, v in data.get("cost", {}).items()}, tuple(aggregates), path,
                 int(meta.get("year", 0)))


def load_papers(grid_dir: str = GRID_DIR, only: list[str] | None = None) -> list[Paper]:
    paths = sorted(glob.glob(os.path.join(grid_dir, "*.toml")))
    if not paths:
        raise FileNotFoundError(f"no grid files (*.toml) in {grid_dir}")
    papers = sorted((load_paper(p) for p in paths), key=lambda p: (p.year, p.id))  # in publication order
    ids = [p.id for p in papers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate paper ids in {grid_dir}: {ids}")
    if only:
        unknown = sorted(set(only) - set(ids))
        if unknown:
            raise ValueError(f"unknown paper(s) {unknown}; valid: {', '.join(ids)}")
        papers = [p for p in papers if p.id in only]
    return papers


def expand(papers: list[Paper], scale: str, algos: list[str] | None = None,
           envs: list[str] | None = None) -> list[Run]:
    """algo x env runs of every paper at `scale`, merged across papers, in a stable order."""
    merged: dict[tuple[str, str], dict] = {}
    for paper in papers:
        s = paper.scales.get(scale)
        if s is None:
            continue
        for algo in s.algos:
            if algos and algo not in algos:
                continue
            for env in s.envs:
                if envs and env not in envs:
                    continue
                key = (algo, env)
                protocol = (s.eval_freq, s.eval_episodes, s.run_args(env))
                if key in merged:
                    m = merged[key]
                    if m["protocol"] != protocol:
                        raise ValueError(f"{algo} on {env} is asked for with two protocols "
                                         f"(eval_freq, eval_episodes, args): {m['protocol']} in {m['papers']} "
                                         f"and {protocol} in {paper.id}; make them agree")
                    m["steps"] = max(m["steps"], max(s.budgets))
                    m["seeds"] = max(m["seeds"], s.seeds)
                    m["papers"].append(paper.id)
                    m["cost"] = max(m["cost"], paper.cost.get(algo, 1.0))
                else:
                    merged[key] = {"steps": max(s.budgets), "seeds": s.seeds, "protocol": protocol,
                                   "papers": [paper.id], "cost": paper.cost.get(algo, 1.0)}
    return [Run(algo, env, m["steps"], m["seeds"], *m["protocol"], tuple(m["papers"]), m["cost"])
            for (algo, env), m in merged.items()]
