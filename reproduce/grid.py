"""The papers' grids (grids/*.toml) and their expansion into runs.

A paper file names its reference CSV, one grid per scale (`full` = the paper's budgets and seeds,
`quick` = the reduced grid) and optional aggregates. A grid expands to algorithm x env runs; its
budgets are evaluation points read from each run's eval.csv, so one run of the largest budget
serves them all. Runs that several papers share (same algorithm, env and protocol) are run once,
with the most steps and seeds any of them asks for.

Offline papers name datasets instead of envs: a `[dataset.<name>]` table is either collected by
`python -m envs.collect` from a run of the same scale (recipe, source, [source2], steps, [seed]) or
an external copy: a D4RL file (d4rl, looked up under the launcher's --d4rl-dir) or a local Minari
dataset (minari). Its offline runs are named algo/<dataset name> and evaluate on its `env`.
A collected dataset with `source_args` has a behaviour policy of its own: the source algorithm on
the env with these flags, trained with the protocol of the offline runs on the dataset (their
steps, seeds and evaluation, as one main.py drives both in the BCQ repo), as the run
<algo>/<env>+<dataset name> (folder <env>+<dataset name>) instead of the grid's plain <algo>/<env>.
"""

from __future__ import annotations

import glob
import os
import re
import sys
from dataclasses import dataclass, field, replace

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID_DIR = os.path.join(ROOT, "reproduce", "grids")
SCALES = ("full", "quick")
SCALE_KEYS = {"algos", "envs", "seeds", "budgets", "eval_freq", "eval_episodes", "args", "env_args"}
DATASET_KEYS = {"env", "recipe", "source", "source2", "source_args", "steps", "seed", "d4rl", "minari"}
RECIPES = ("random", "medium", "expert", "medium-replay", "medium-expert", "imperfect",
           "behavioural", "sr-dice")  # envs.collect.RECIPES
SOURCE_ALGOS = ("td3", "td7", "ddpg", "ddqn", "ddqn_lap", "ddqn_pal",
                "ddqn_per")  # envs.collect.POLICY_ALGOS: the saved policies it can roll out
DATASET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # a folder name and a Minari dataset name; never an env id
MINARI_ID = re.compile(r"^[\w-]+(/[\w-]+)*-v\d+$")


@dataclass(frozen=True)
class Dataset:
    """The data of offline runs: collected from a run of the scale (recipe) or external (d4rl / minari)."""

    name: str
    env: str  # gymnasium id of the evaluations (and of the collection)
    recipe: str = ""
    source: str = ""  # "algo/env": the run whose checkpoint acts (medium, expert, ...)
    source2: str = ""  # medium-expert: the expert run
    steps: int = 0
    seed: int = 0
    d4rl: str = ""  # file name under --d4rl-dir, or an absolute path
    minari: str = ""  # id of a local Minari dataset
    scale: str = ""  # set by expand(): a collected dataset exists once per scale
    source_args: tuple[str, ...] = ()  # flags of the dataset's own source run (see the module docstring)

    @property
    def collected(self) -> bool:
        return bool(self.recipe)

    @property
    def sources(self) -> tuple[str, ...]:
        """Names of the runs whose checkpoints act: the grid's runs, or the dataset's own source run."""
        if self.source_args:
            return (f"{self.source}+{self.name}",)
        return tuple(s for s in (self.source, self.source2) if s)

    @property
    def minari_id(self) -> str:
        """Id of a collected dataset (under <run root>/datasets), or of the external Minari dataset."""
        if not self.collected:
            return self.minari
        family = self.env.split("/")[-1].split("-v")[0].replace(":", "-").lower()
        return f"fujimoto-jax-{self.scale}/{family}/{self.name}-v0"


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
    datasets: dict = field(default_factory=dict, hash=False)  # name -> Dataset


@dataclass(frozen=True)
class Run:
    """One process: `seeds` agents of `algo` on `env` for `steps` env steps (offline: `env` is the
    dataset's name, `steps` are gradient steps and env_id is the dataset's env)."""

    algo: str
    env: str
    steps: int
    seeds: int
    eval_freq: int
    eval_episodes: int
    args: tuple[str, ...]
    papers: tuple[str, ...]
    cost: float = 1.0
    dataset: Dataset | None = None

    @property
    def env_id(self) -> str:
        return self.dataset.env if self.dataset else self.env.split("+")[0]  # <env>+<dataset>: a source of its own

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


def _dataset(path: str, name: str, d: dict) -> Dataset:
    where = f"[dataset.{name}]"
    if not DATASET_NAME.match(name):
        _fail(path, f"{where}: a dataset name is lower-case letters, digits, '-' and '_' (it names folders)")
    if not isinstance(d, dict):
        _fail(path, f"{where} must be a table")
    unknown = sorted(set(d) - DATASET_KEYS)
    if unknown:
        _fail(path, f"{where} unknown keys {unknown} (valid: {', '.join(sorted(DATASET_KEYS))})")
    kinds = [k for k in ("recipe", "d4rl", "minari") if k in d]
    if "env" not in d or len(kinds) != 1:
        _fail(path, f"{where} needs 'env' and exactly one of 'recipe' (collected here), 'd4rl' or 'minari' "
                    f"(external), got {kinds or 'none'}")
    source_args = d.get("source_args", [])
    if not (isinstance(source_args, list) and all(isinstance(a, str) for a in source_args)):
        _fail(path, f"{where}: source_args must be a list of strings (flags of the source algorithm)")
    ds = Dataset(name, str(d["env"]), str(d.get("recipe", "")), str(d.get("source", "")), str(d.get("source2", "")),
                 int(d.get("steps", 0)), int(d.get("seed", 0)), str(d.get("d4rl", "")), str(d.get("minari", "")),
                 source_args=tuple(source_args))
    if not ds.collected:
        extra = sorted({"source", "source2", "source_args", "steps", "seed"} & set(d))
        if extra:
            _fail(path, f"{where}: {extra} describe a collection; an external dataset has only env and {kinds[0]}")
        if ds.minari and not MINARI_ID.match(ds.minari):
            _fail(path, f"{where}: minari = {ds.minari!r} is not a Minari id (namespace/env/name-vN)")
        return ds
    if ds.recipe not in RECIPES:
        _fail(path, f"{where}: unknown recipe {ds.recipe!r} (valid: {', '.join(RECIPES)})")
    wanted = {"random": 0, "medium-expert": 2}.get(ds.recipe, 1)
    named = tuple(s for s in (ds.source, ds.source2) if s)
    if len(named) != wanted or (ds.source2 and not ds.source):
        what = {0: "no source", 1: "a source (and no source2)", 2: "source (medium) and source2 (expert)"}[wanted]
        _fail(path, f"{where}: recipe {ds.recipe} takes {what}")
    for src in named:
        algo, _, env = src.partition("/")
        if algo not in SOURCE_ALGOS or env != ds.env:
            _fail(path, f"{where}: source {src!r} must be a run 'algo/{ds.env}' of one of {', '.join(SOURCE_ALGOS)} "
                        "(a saved policy on the dataset's env)")
    if "source_args" in d and (len(named) != 1 or not source_args):
        _fail(path, f"{where}: source_args (a non-empty list) gives the one source run its flags")
    if ds.recipe == "medium-replay" and "steps" in d:
        _fail(path, f"{where}: medium-replay takes the source's whole replay buffer, no 'steps'")
    if ds.recipe != "medium-replay" and ds.steps < 1:
        _fail(path, f"{where}: needs steps >= 1 (transitions to collect)")
    return ds


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
    unknown = sorted(set(data) - {"paper", "scale", "cost", "aggregate", "dataset"})
    if unknown:
        _fail(path, f"unknown tables {unknown}")
    datasets = {name: _dataset(path, name, d) for name, d in data.get("dataset", {}).items()}
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
        named = [e in datasets for e in s["envs"]]
        if any(named) and not all(named):
            _fail(path, f"[scale.{name}] envs mixes dataset names and env ids: "
                        f"{[e for e in s['envs'] if e not in datasets]} are not [dataset] tables of this file")
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
                 int(meta.get("year", 0)), datasets)


def load_papers(grid_dir: str = GRID_DIR, only: list[str] | None = None) -> list[Paper]:
    paths = sorted(glob.glob(os.path.join(grid_dir, "*.toml")))
    if not paths:
        raise FileNotFoundError(f"no grid files (*.toml) in {grid_dir}")
    papers = sorted((load_paper(p) for p in paths), key=lambda p: (p.year, p.id))  # in publication order
    ids = [p.id for p in papers]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate paper ids in {grid_dir}: {ids}")
    check_datasets(papers)
    if only:
        unknown = sorted(set(only) - set(ids))
        if unknown:
            raise ValueError(f"unknown paper(s) {unknown}; valid: {', '.join(ids)}")
        papers = [p for p in papers if p.id in only]
    return papers


def check_datasets(papers: list[Paper]) -> None:
    """Across all grid files: one definition per dataset name, and every source is a run of the scale
    that uses the dataset."""
    seen: dict[str, tuple[Dataset, str]] = {}
    for p in papers:
        for name, ds in p.datasets.items():
            if name in seen and seen[name][0] != ds:
                _fail(p.path, f"[dataset.{name}] differs from its definition in {seen[name][1]}; one name, one dataset")
            seen.setdefault(name, (ds, p.path))
    for p in papers:
        for scale, s in p.scales.items():
            online = {f"{a}/{e}" for q in papers if scale in q.scales for a in q.scales[scale].algos
                      for e in q.scales[scale].envs if e not in q.datasets}
            for env in s.envs:
                ds = p.datasets.get(env)
                for src in ds.sources if ds and not ds.source_args else ():  # source_args: expand() makes it
                    if src not in online:
                        _fail(p.path, f"[dataset.{env}] source {src!r} is not a run of scale '{scale}' in any grid "
                                      "file (the launcher trains it and rolls out its checkpoint)")


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
                dataset = replace(paper.datasets[env], scale=scale) if env in paper.datasets else None
                protocol = (s.eval_freq, s.eval_episodes, s.run_args(env), dataset)
                if key in merged:
                    m = merged[key]
                    if m["protocol"] != protocol:
                        raise ValueError(f"{algo} on {env} is asked for with two protocols "
                                         f"(eval_freq, eval_episodes, args, dataset): {m['protocol']} in {m['papers']} "
                                         f"and {protocol} in {paper.id}; make them agree")
                    m["steps"] = max(m["steps"], max(s.budgets))
                    m["seeds"] = max(m["seeds"], s.seeds)
                    m["papers"].append(paper.id)
                    m["cost"] = max(m["cost"], paper.cost.get(algo, 1.0))
                else:
                    merged[key] = {"steps": max(s.budgets), "seeds": s.seeds, "protocol": protocol,
                                   "papers": [paper.id], "cost": paper.cost.get(algo, 1.0)}
    runs = []
    for (algo, env), m in merged.items():
        eval_freq, eval_episodes, args, dataset = m["protocol"]
        runs.append(Run(algo, env, m["steps"], m["seeds"], eval_freq, eval_episodes, args, tuple(m["papers"]),
                        m["cost"], dataset))
    return runs + own_sources(papers, runs, algos)


def own_sources(papers: list[Paper], runs: list[Run], algos: list[str] | None = None) -> list[Run]:
    """The source runs of the datasets with source_args that `runs` train on: each with those flags and the
    protocol of the offline runs on it (the most steps and seeds they ask for), after the others."""
    cost = {a: c for p in papers for a, c in p.cost.items()}
    out: dict[str, Run] = {}
    for r in runs:
        ds = r.dataset
        if not (ds and ds.source_args):
            continue
        algo = ds.source.partition("/")[0]
        if algos and algo not in algos:
            continue
        (name,) = ds.sources
        run = Run(algo, name.partition("/")[2], r.steps, r.seeds, r.eval_freq, r.eval_episodes, ds.source_args,
                  r.papers, cost.get(algo, 1.0))
        if name in out:
            old = out[name]
            if (old.eval_freq, old.eval_episodes) != (run.eval_freq, run.eval_episodes):
                raise ValueError(f"{name} (the source of dataset {ds.name}) is asked for with two evaluation "
                                 f"protocols: {old.eval_freq}/{old.eval_episodes} and {run.eval_freq}/"
                                 f"{run.eval_episodes}; make the runs on {ds.name} agree")
            run = replace(old, steps=max(old.steps, run.steps), seeds=max(old.seeds, run.seeds),
                          papers=tuple(dict.fromkeys(old.papers + run.papers)))
        out[name] = run
    return list(out.values())
