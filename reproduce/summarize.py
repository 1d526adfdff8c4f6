"""results/SUMMARY.md, results/summary.csv and results/plots/ from the runs' eval.csv files.

`python -m reproduce.summarize` (also run at the end of `make reproduce[-quick]`). For every paper
grid and scale: our statistic (the one the reference reports, computed the same way over our
seeds) with a 95% percentile bootstrap CI over seeds, beside each reference row of
results/reference/, with a verdict; the paper's aggregates, each with a head-to-head table (per env
and budget, both algorithms' means and their difference, e.g. DR.Q against our MR.Q); learning curves
against the reference points. Nothing here is typed by hand: every number comes from a CSV.

Offline runs (grids whose scale names datasets) are reported with their return and, when eval.csv
has it, the D4RL normalised score. A run on a dataset collected by the launcher is never compared
("not comparable (self-collected dataset)"); a run on an external D4RL/Minari copy is compared
with its paper's reference rows for that dataset name (statistics prefixed `normalized_` read the
normalised score).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np

from envs import runs as run_contract
from envs.runs import git_info, write_atomic
from reproduce.grid import GRID_DIR, ROOT, Aggregate, Paper, load_papers

RUN_ROOTS = {"full": os.path.join(ROOT, "results", "runs", "reproduce"),
             "quick": os.path.join(ROOT, "results", "runs", "reproduce-quick")}
SCALE_TITLES = {"full": "full (`make reproduce`: the papers' budgets and seeds)",
                "quick": "quick (`make reproduce-quick`: a REDUCED grid, fewer envs, seeds and steps)"}
BOOTSTRAP = 10_000  # resamples for every CI
REFERENCE_HEADER = ["paper", "algo", "env", "budget", "statistic", "mean", "spread", "spread_kind", "seeds", "source"]
SUMMARY_HEADER = ["scale", "paper", "algo", "env", "budget", "statistic", "ours_mean", "ours_lo", "ours_hi", "seeds",
                  "reference_env", "reference_mean", "reference_lo", "reference_hi", "reference_source", "verdict"]


def versions() -> dict:
    return run_contract.versions(extra=("rliable", "matplotlib"))


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
def load_reference(path: str) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != REFERENCE_HEADER:
            raise ValueError(f"{path}: header must be {','.join(REFERENCE_HEADER)}, got {reader.fieldnames}")
        rows = []
        for i, row in enumerate(reader, start=2):
            if None in row:  # an unquoted comma split a field
                raise ValueError(f"{path} line {i}: {len(row[None])} field(s) too many (quote a source with commas)")
            try:
                row["budget"], row["mean"] = int(row["budget"]), float(row["mean"])
                row["spread"] = float(row["spread"]) if row["spread"] else None
                row["seeds"] = int(row["seeds"]) if row["seeds"] else None
            except ValueError as e:
                raise ValueError(f"{path} line {i}: {e}") from e
            if run_statistic(row["statistic"]) is None and row["statistic"] not in REFERENCE_ONLY:
                raise ValueError(f"{path} line {i}: unknown statistic {row['statistic']!r}")
            if row["spread"] is not None and row["spread_kind"] not in ("std", "ci95"):
                raise ValueError(f"{path} line {i}: spread_kind must be std or ci95, got {row['spread_kind']!r}")
            if not row["source"]:
                raise ValueError(f"{path} line {i}: every reference row names its source")
            rows.append(row)
    return rows


@dataclass
class RunData:
    algo: str
    env: str
    run_dir: str
    config: dict
    steps: np.ndarray  # (T,) evaluation steps every seed has
    returns: np.ndarray  # (seeds, T)
    normalized: np.ndarray | None = None  # (seeds, T) D4RL normalised scores of offline runs, if eval.csv has them

    @property
    def seeds(self) -> int:
        return self.returns.shape[0]

    def upto(self, budget: int, normalized: bool = False) -> np.ndarray | None:
        """(seeds, T') returns (or normalised scores) at the evaluations <= budget; None unless budget
        itself was evaluated (or the run has no normalised scores)."""
        m = self.normalized if normalized else self.returns
        if m is None or budget not in set(self.steps.tolist()):
            return None
        return m[:, self.steps <= budget]


def run_files(run_dir: str) -> tuple[list[str], str]:
    """(eval.csv paths, config.json path) of a run folder; a --distributed run's process-<i> folders (each
    a run of its block of seeds, envs/devices.py) are read as one run, with process-0's config."""
    if os.path.exists(os.path.join(run_dir, "eval.csv")) or not os.path.isdir(run_dir):
        return [os.path.join(run_dir, "eval.csv")], os.path.join(run_dir, "config.json")
    parts = sorted((p for p in os.listdir(run_dir) if re.fullmatch(r"process-\d+", p)), key=lambda p: int(p[8:]))
    return [os.path.join(run_dir, p, "eval.csv") for p in parts], os.path.join(run_dir, *parts[:1], "config.json")


def load_run(run_dir: str) -> RunData | None:
    eval_paths, config_path = run_files(run_dir)
    if not (eval_paths and all(os.path.exists(p) for p in eval_paths) and os.path.exists(config_path)):
        return None
    with open(config_path) as f:
        config = json.load(f)
    by_seed: dict[int, dict[int, tuple[float, float]]] = {}
    has_norm = True
    for eval_path in eval_paths:
        with open(eval_path, newline="") as f:
            reader = csv.DictReader(f)
            has_norm = has_norm and "normalized_score" in (reader.fieldnames or [])
            for row in reader:
                norm = float(row["normalized_score"]) if has_norm and row["normalized_score"] else math.nan
                by_seed.setdefault(int(row["seed"]), {})[int(row["step"])] = (float(row["return"]), norm)
    if not by_seed:
        return None
    common = sorted(set.intersection(*(set(v) for v in by_seed.values())))
    seeds = sorted(by_seed)
    both = np.array([[by_seed[s][t] for t in common] for s in seeds], dtype=np.float64).reshape(len(seeds), -1, 2)
    normalized = both[..., 1] if has_norm and np.isfinite(both[..., 1]).all() else None
    return RunData(config.get("algo", os.path.basename(os.path.dirname(run_dir))), config["args"]["env_id"],
                   run_dir, config, np.array(common, dtype=np.int64), both[..., 0], normalized)


def load_runs(root: str) -> dict[tuple[str, str], RunData]:
    """(algo, run folder name) -> run: the folder is the env id, or an offline run's dataset name."""
    runs = {}
    if not os.path.isdir(root):
        return runs
    for algo in sorted(os.listdir(root)):
        if algo.startswith(".") or algo in ("logs", "datasets") or not os.path.isdir(os.path.join(root, algo)):
            continue
        for env in sorted(os.listdir(os.path.join(root, algo))):
            run = load_run(os.path.join(root, algo, env))
            if run is not None:
                runs[(algo, env)] = run
    return runs


# ---------------------------------------------------------------------------------------------
# Statistics: each maps a (seeds, T) matrix of returns at evaluations <= budget to a number, and
# works on a stack of bootstrap resamples (..., seeds, T) as well.
# ---------------------------------------------------------------------------------------------
STATISTICS = {
    "mean_at_budget": lambda m: m[..., -1].mean(-1),
    "max_of_mean_curve": lambda m: m.mean(-2).max(-1),
    "mean_last_10_evals": lambda m: m[..., -10:].mean((-1, -2)),
}
# Reference rows that are not a per-run statistic: aggregates of a paper (compared in the aggregate
# tables) and the fixed normalisers of its TD3-normalised score, (return - random) / (TD3 - random),
# one row per env with budget 0 (used at every budget).
REFERENCE_ONLY = {"mean_pct_gain_over_td3", "mean_td3_normalised", "normaliser_td3", "normaliser_random"}
STAT_TITLES = {"mean_at_budget": "mean at budget", "max_of_mean_curve": "max of mean curve",
               "mean_last_10_evals": "mean of last 10 evals", "mean_pct_gain_over_td3": "mean % gain over TD3",
               "mean_td3_normalised": "mean TD3-normalised score"}
NORMALIZED = "normalized_"  # a statistic of the D4RL normalised scores: normalized_mean_at_budget, ...
STAT_TITLES.update({NORMALIZED + k: "normalised score, " + STAT_TITLES[k] for k in STATISTICS})
SELF_COLLECTED = "self-collected dataset"


def run_statistic(name: str):
    """(statistic function, on normalised scores?) of a per-run statistic's name, else None."""
    if name in STATISTICS:
        return STATISTICS[name], False
    if name.startswith(NORMALIZED) and name[len(NORMALIZED):] in STATISTICS:
        return STATISTICS[name[len(NORMALIZED):]], True
    return None


def bootstrap_ci(m: np.ndarray, stat, reps: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """Point value and 95% percentile bootstrap CI of stat(m), resampling the rows (seeds) of m."""
    m = np.asarray(m, dtype=np.float64)
    point = float(stat(m))
    n = m.shape[0]
    rng = np.random.default_rng(seed)
    values = []
    chunk = max(1, min(reps, 20_000_000 // max(1, m.size)))  # bound the memory of the resample stack
    for start in range(0, reps, chunk):
        idx = rng.integers(0, n, size=(min(chunk, reps - start), n))
        values.append(stat(m[idx]))
    values = np.concatenate(values)
    return point, float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def t975(dof: int) -> float:
    """97.5% quantile of Student's t: the 95% CI of a mean of n = dof + 1 seeds is mean +- t975 * std / sqrt(n)."""
    from scipy.stats import t
    return float(t.ppf(0.975, dof))


def reference_interval(ref: dict) -> tuple[float, float] | None:
    if ref["spread"] is None:
        return None
    if ref["spread_kind"] == "ci95":
        return ref["mean"] - ref["spread"], ref["mean"] + ref["spread"]
    if not ref["seeds"] or ref["seeds"] < 2:
        return None
    half = t975(ref["seeds"] - 1) * ref["spread"] / math.sqrt(ref["seeds"])
    return ref["mean"] - half, ref["mean"] + half


def verdict(mean: float, lo: float, hi: float, ref: dict, not_comparable: str | None = None) -> str:
    """inside / above / below the reference's 95% CI (mean +- t(0.975, n-1) std/sqrt(n), or the printed CI).
    A reference without a spread is compared with our CI instead ('reference inside our CI')."""
    interval = reference_interval(ref)
    if interval is not None:
        v = "inside" if interval[0] <= mean <= interval[1] else ("above" if mean > interval[1] else "below")
    else:
        v = "reference inside our CI" if lo <= ref["mean"] <= hi else ("above" if lo > ref["mean"] else "below")
    v = f"not comparable ({not_comparable}); would be: {v}" if not_comparable else v
    return v + " (third-party sanity range)" if "third-party" in ref.get("source", "") else v


def env_base(env: str) -> str:
    return re.sub(r"-v\d+$", "", env)


def comparability(ref_env: str, run_env: str) -> str | None:
    if ref_env == run_env:
        return None
    a, b = re.search(r"-(v\d+)$", ref_env), re.search(r"-(v\d+)$", run_env)
    if a and b:
        return f"{a.group(1)} reference, {b.group(1)} run"
    return f"reference env {ref_env}, run env {run_env}"


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def fmt(x: float | None) -> str:
    if x is None or not np.isfinite(x):
        return "—"
    return f"{x:.1f}" if abs(x) < 1e5 else f"{x:.4g}"


def fmt_ci(mean, lo, hi) -> str:
    return f"{fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"


def fmt_norm(x: float | None) -> str:
    """Normalised scores (around 1) need two decimals."""
    return "—" if x is None or not np.isfinite(x) else f"{x:.2f}"


def fmt_norm_ci(mean, lo, hi) -> str:
    return f"{fmt_norm(mean)} [{fmt_norm(lo)}, {fmt_norm(hi)}]"


def fmt_budget(b: int) -> str:
    if b < 1000 or b % 1000:
        return f"{b:,}"
    return f"{b // 1_000_000}M" if b % 1_000_000 == 0 else (f"{b / 1e6:g}M" if b >= 1_000_000 else f"{b // 1000}k")


def compare_rows(scale: str, paper: Paper, refs: list[dict], runs: dict) -> tuple[list[dict], list[dict]]:
    """One row per reference row whose env belongs to this scale's grid; then our own rows at the
    scale's budgets (our statistics even where no reference exists)."""
    grid = paper.scales[scale]
    bases = {env_base(e): e for e in grid.envs if env_base(e) != e}  # another version of a versioned env or dataset
    rows = []
    for ref in refs:
        env = ref["env"] if ref["env"] in grid.envs else bases.get(env_base(ref["env"]))
        if run_statistic(ref["statistic"]) is None or env is None:
            continue
        stat, normalized = run_statistic(ref["statistic"])
        dataset = paper.datasets.get(env)
        row = {"scale": scale, "paper": paper.id, "algo": ref["algo"], "env": env, "budget": ref["budget"],
               "statistic": ref["statistic"], "ours_mean": None, "ours_lo": None, "ours_hi": None, "seeds": 0,
               "reference_env": ref["env"], "reference_mean": ref["mean"], "reference_lo": None, "reference_hi": None,
               "reference_source": ref["source"]}
        interval = reference_interval(ref)
        if interval:
            row["reference_lo"], row["reference_hi"] = interval
        run = runs.get((ref["algo"], env))
        if not os.path.exists(os.path.join(ROOT, "algos", f"{ref['algo']}.py")):
            row["verdict"] = f"no run: there is no algos/{ref['algo']}.py in this repo"
        elif run is None:
            row["verdict"] = "no run yet"
        elif normalized and run.normalized is None:
            row["seeds"] = run.seeds
            row["verdict"] = "not comparable (the run's eval.csv has no normalized_score)"
        elif run.upto(ref["budget"]) is None:
            row["seeds"] = run.seeds
            reached = int(run.steps.max()) if len(run.steps) else 0
            env_reason = comparability(ref["env"], env)
            row["verdict"] = (f"not comparable (budget {fmt_budget(ref['budget'])} not reached: the run ends at "
                              f"{fmt_budget(reached)}{'; ' + env_reason if env_reason else ''})")
        elif ref["statistic"].endswith("mean_last_10_evals") and run.upto(ref["budget"]).shape[1] < 10:
            row["seeds"] = run.seeds
            row["verdict"] = "not comparable (fewer than 10 evaluations up to this budget)"
        else:
            m = run.upto(ref["budget"], normalized)
            mean, lo, hi = bootstrap_ci(m, stat)
            row.update(ours_mean=mean, ours_lo=lo, ours_hi=hi, seeds=run.seeds)
            reason = SELF_COLLECTED if dataset and dataset.collected else comparability(ref["env"], env)
            row["verdict"] = verdict(mean, lo, hi, ref, reason)
        rows.append(row)
    ours = []
    for algo in grid.algos:
        for env in grid.envs:
            run = runs.get((algo, env))
            for budget in grid.budgets:
                m = run.upto(budget) if run else None
                r = {"algo": algo, "env": env, "budget": budget, "seeds": run.seeds if run else 0}
                for stat in ("mean_at_budget", "max_of_mean_curve"):
                    r[stat] = bootstrap_ci(m, STATISTICS[stat]) if m is not None else None
                n = run.upto(budget, normalized=True) if run else None
                r["normalized_mean_at_budget"] = bootstrap_ci(n, STATISTICS["mean_at_budget"]) if n is not None else None
                ours.append(r)
    return rows, ours


def offline_note(paper: Paper, algo: str, env: str, rows: list[dict]) -> str:
    """How an offline run relates to the paper: self-collected data is never comparable."""
    ds = paper.datasets[env]
    if ds.collected:
        return f"not comparable ({SELF_COLLECTED})"
    if any(r["algo"] == algo and r["env"] == env for r in rows):
        return "compared above"
    return f"no reference number in {paper.reference}"


def dataset_line(ds, root: str | None = None) -> str:
    if ds.collected:
        source = f" from {' then '.join(ds.sources)} of this scale" if ds.sources else ""
        size = f"{ds.steps:,} transitions" if ds.steps else "its whole replay buffer"
        return (f"- `{ds.name}`: collected here by `python -m envs.collect --recipe {ds.recipe}`{source} ({size}, "
                f"in the runs folder's `datasets/`), evaluated on {ds.env}: *{SELF_COLLECTED}*, never compared "
                "with a paper" + behaviour_note(ds, root))
    src = f"D4RL file `{ds.d4rl}` (--d4rl-dir)" if ds.d4rl else f"local Minari dataset `{ds.minari}`"
    return f"- `{ds.name}`: {src}, evaluated on {ds.env}"


def behaviour_note(ds, root: str | None) -> str:
    """What the data's behaviour returned, from the facts envs.collect wrote into the dataset's metadata ('' before
    it is collected): each source policy's evaluation return and the mean return of the collected episodes."""
    try:
        with open(os.path.join(root or "", "datasets", ds.minari_id, "data", "metadata.json")) as f:
            facts = json.loads(json.load(f).get("fujimoto_jax") or "{}")
    except (OSError, ValueError, TypeError, AttributeError):
        return ""
    policies = [f"{p['algo']} step {p['step']:,} returned {p['return']:.1f}" for p in facts.get("policies", [])]
    eps = f" (epsilon {facts['eval_eps']})" if facts.get("eval_eps") is not None else ""
    parts = ([f"its source policy: {', '.join(policies)}{eps}"] if policies else []) + (
        [f"its episodes: mean return {facts['mean_episode_return']:.1f}"]
        if facts.get("mean_episode_return") is not None else [])
    return f"; behaviour data: {'; '.join(parts)}" if parts else ""


def aggregate_rows(scale: str, paper: Paper, agg: Aggregate, refs: list[dict], runs: dict) -> list[dict]:
    """Per budget: IQM and mean of baseline-normalised scores (rliable, stratified bootstrap) and the
    mean % gain over the baseline, on the aggregate's envs that both algorithms reached."""
    out = []
    for budget in paper.scales[scale].budgets:
        envs, cols, ratios_algo, ratios_base = [], [], [], []
        for env in agg.envs:
            a, b = runs.get((agg.algo, env)), runs.get((agg.baseline, env))
            ma, mb = (a.upto(budget) if a else None), (b.upto(budget) if b else None)
            if ma is None or mb is None:
                continue
            base = mb[:, -1].mean()
            if base <= 0:
                continue  # a ratio to a non-positive baseline means nothing
            envs.append(env)
            cols.append(ma[:, -1] / base)
            ratios_algo.append(ma[:, -1])
            ratios_base.append(mb[:, -1])
        row = {"budget": budget, "envs": envs, "missing": [e for e in agg.envs if e not in envs]}
        if envs:
            row.update(iqm_and_mean(cols))
            row["gain"] = gain_ci(ratios_algo, ratios_base)
            compare(row, "gain", refs, "mean_pct_gain_over_td3", agg, budget)
        out.append(row)
    return out


def iqm_and_mean(cols: list[np.ndarray]) -> dict:
    """IQM and mean over (seed, env) of per-env score columns, with stratified bootstrap 95% CIs (rliable)."""
    from rliable import library as rly
    from rliable import metrics

    n = min(len(c) for c in cols)  # rliable needs as many runs per task: the first n seeds of each
    scores = np.stack([c[:n] for c in cols], axis=1)  # (runs, tasks)
    with warnings.catch_warnings():  # arch warns about rliable's RandomState; it is what makes CIs repeatable
        warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
        point, ci = rly.get_interval_estimates(
            {"x": scores}, lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)]),
            reps=BOOTSTRAP, random_state=np.random.RandomState(0))
    return {"iqm": (float(point["x"][0]), *map(float, ci["x"][:, 0])),
            "mean": (float(point["x"][1]), *map(float, ci["x"][:, 1])), "seeds": n}


def compare(row: dict, key: str, refs: list[dict], statistic: str, agg: Aggregate, budget: int) -> None:
    """Attach the paper's aggregate at this budget, if any, and the verdict of row[key] against it."""
    ref = next((r for r in refs if r["statistic"] == statistic and r["algo"] == agg.algo
                and r["budget"] == budget and r["env"] == agg.reference_env), None)
    if ref is not None:
        envs = row["envs"]
        reason = None if set(envs) == set(agg.envs) else f"{len(envs)} of the paper's {len(agg.envs)} envs"
        row["reference"] = ref
        row["verdict"] = verdict(*row[key], ref, reason)


def normalisers(refs: list[dict], envs) -> dict[str, tuple[float, float]] | None:
    """env -> (TD3 score, random score) from the reference's normaliser rows, if it has both for every env."""
    td3 = {r["env"]: r["mean"] for r in refs if r["statistic"] == "normaliser_td3"}
    rnd = {r["env"]: r["mean"] for r in refs if r["statistic"] == "normaliser_random"}
    if not all(e in td3 and e in rnd and td3[e] != rnd[e] for e in envs):
        return None
    return {e: (td3[e], rnd[e]) for e in envs}


def fixed_normalised_rows(scale: str, paper: Paper, agg: Aggregate, refs: list[dict], runs: dict) -> list[dict]:
    """The paper's own normalisation (MR.Q): per budget, IQM and mean over env x seed of
    (return - random) / (TD3 - random) with the reference's fixed TD3 and random scores, so no TD3
    run of ours is needed; compared with the paper's reported mean. [] without normaliser rows."""
    norm = normalisers(refs, agg.envs)
    if norm is None:
        return []
    out = []
    for budget in paper.scales[scale].budgets:
        envs, cols = [], []
        for env in agg.envs:
            run = runs.get((agg.algo, env))
            m = run.upto(budget) if run else None
            if m is None:
                continue
            td3, rnd = norm[env]
            envs.append(env)
            cols.append((m[:, -1] - rnd) / (td3 - rnd))
        row = {"budget": budget, "envs": envs}
        if envs:
            row.update(iqm_and_mean(cols))
            compare(row, "mean", refs, "mean_td3_normalised", agg, budget)
        out.append(row)
    return out


def gain_ci(algo: list[np.ndarray], base: list[np.ndarray], reps: int = BOOTSTRAP, seed: int = 0):
    """100 * (mean over envs of mean(algo) / mean(baseline) - 1), seeds resampled within each env."""
    def stat(a_means, b_means):
        return 100 * (np.mean(a_means / b_means, axis=0) - 1)
    point = float(stat(np.array([a.mean() for a in algo]), np.array([b.mean() for b in base])))
    rng = np.random.default_rng(seed)
    a_bs = np.array([a[rng.integers(0, len(a), (reps, len(a)))].mean(1) for a in algo])  # (envs, reps)
    b_bs = np.array([b[rng.integers(0, len(b), (reps, len(b)))].mean(1) for b in base])
    values = stat(a_bs, b_bs)
    return point, float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def difference_ci(a: np.ndarray, b: np.ndarray, reps: int = BOOTSTRAP, seed: int = 0):
    """mean(a) - mean(b) of two independent sets of seeds, each resampled on its own; 95% percentile CI."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = (a[rng.integers(0, len(a), (reps, len(a)))].mean(1) - b[rng.integers(0, len(b), (reps, len(b)))].mean(1))
    return float(a.mean() - b.mean()), float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def reference_mean(refs_by_paper: dict, algo: str, env: str, budget: int, first: str) -> tuple[float, str] | None:
    """(mean, paper id) of a mean_at_budget reference row of `algo` on exactly `env` at `budget`; the
    paper `first` is searched first, then the others in publication order."""
    for pid in sorted(refs_by_paper, key=lambda p: p != first):
        for r in refs_by_paper[pid]:
            if (r["algo"], r["env"], r["budget"], r["statistic"]) == (algo, env, budget, "mean_at_budget"):
                return r["mean"], pid
    return None


def head_to_head_rows(scale: str, paper: Paper, agg: Aggregate, refs_by_paper: dict, runs: dict) -> list[dict]:
    """Per env and budget of the scale that both algorithms' runs reached: the mean at the budget of
    each with its 95% bootstrap CI over seeds, their difference (algo - baseline) with its CI, and
    the difference of the references' means (any paper's reference file) where both have one."""
    stat = STATISTICS["mean_at_budget"]
    out = []
    for env in agg.envs:
        a, b = runs.get((agg.algo, env)), runs.get((agg.baseline, env))
        for budget in paper.scales[scale].budgets:
            ma, mb = (a.upto(budget) if a else None), (b.upto(budget) if b else None)
            if ma is None or mb is None:
                continue
            diff = difference_ci(ma[:, -1], mb[:, -1])
            if min(a.seeds, b.seeds) < 2:
                reading = "one seed: no interval"
            else:
                reading = "higher" if diff[1] > 0 else "lower" if diff[2] < 0 else "CI contains 0"
            ra, rb = (reference_mean(refs_by_paper, x, env, budget, paper.id) for x in (agg.algo, agg.baseline))
            out.append({"env": env, "budget": budget, "seeds": (a.seeds, b.seeds), "algo": bootstrap_ci(ma, stat),
                        "baseline": bootstrap_ci(mb, stat), "difference": diff, "reading": reading,
                        "reference_difference": (ra[0] - rb[0], ra[1], rb[1]) if ra and rb else None})
    return out


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------
def plot(path: str, scale: str, paper: Paper, refs: list[dict], runs: dict) -> bool:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = paper.scales[scale]
    envs = [e for e in grid.envs if any((a, e) in runs for a in grid.algos)]
    if not envs:
        return False
    cols = min(3, len(envs))
    rows = math.ceil(len(envs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.5, 5 * cols), 3.6 * rows + 0.5), squeeze=False)
    colours = {a: f"C{i}" for i, a in
               enumerate(sorted({r["algo"] for r in refs if r["statistic"] in STATISTICS} | set(grid.algos)))}
    rng = np.random.default_rng(0)
    for ax, env in zip(axes.flat, envs):
        for algo in grid.algos:
            run = runs.get((algo, env))
            if run is None or not len(run.steps):
                continue
            m = run.returns
            boot = m[rng.integers(0, m.shape[0], (BOOTSTRAP, m.shape[0]))].mean(1)  # (reps, T)
            ax.plot(run.steps, m.mean(0), color=colours[algo], label=f"{algo} (ours, {run.seeds} seeds)")
            ax.fill_between(run.steps, *np.percentile(boot, [2.5, 97.5], axis=0), color=colours[algo], alpha=0.2)
        xmax = max(int(runs[(a, env)].steps.max()) for a in grid.algos if (a, env) in runs)
        beyond = {}
        for ref in refs:
            if env_base(ref["env"]) != env_base(env) or ref["statistic"] not in STATISTICS:
                continue
            if ref["budget"] > 1.05 * xmax:  # would squash our curves into a corner
                beyond[ref["budget"]] = fmt_budget(ref["budget"])
                continue
            interval = reference_interval(ref)
            yerr = None if interval is None else [[ref["mean"] - interval[0]], [interval[1] - ref["mean"]]]
            marker = {"mean_at_budget": "o", "max_of_mean_curve": "^", "mean_last_10_evals": "s"}[ref["statistic"]]
            ax.errorbar([ref["budget"]], [ref["mean"]], yerr=yerr, fmt=marker, color=colours[ref["algo"]],
                        mfc="none", capsize=3, label=f"{ref['algo']} ref {ref['env']}: {STAT_TITLES[ref['statistic']]}")
        if beyond:
            ax.text(0.02, 0.98, f"reference points at {', '.join(beyond[b] for b in sorted(beyond))} lie beyond "
                    f"this run's {fmt_budget(xmax)} steps (see the table)", transform=ax.transAxes, fontsize=6,
                    va="top")
        ax.set_title(env)
        ax.set_xlabel("gradient steps" if any(e in paper.datasets for e in grid.envs) else "env steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=6)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.suptitle(textwrap.fill(f"{paper.title}, {scale} scale: ours (mean, 95% bootstrap CI over seeds) vs "
                               "reference points (95% CI)", 90), fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.text(0.99, 0.005, f"python -m reproduce.summarize, commit {(git_info()['commit'] or '?')[:10]}; "
             f"runs: {os.path.relpath(next(iter(runs.values())).run_dir, ROOT).rsplit(os.sep, 2)[0]}",
             ha="right", va="bottom", fontsize=6, color="grey")
    fig.savefig(path, dpi=110, metadata={"Software": "fujimoto-jax reproduce.summarize"})
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# Off-policy evaluation runs (sr_dice): log squared errors of each estimator, not returns
# ---------------------------------------------------------------------------------------------
def ope_curves(run: RunData) -> dict | None:
    """{estimator: (seeds, T) log10 squared errors}, the steps, the truth and each final estimate, from an
    eval.csv with log_se_<estimator> columns (None for other runs)."""
    eval_paths, _ = run_files(run.run_dir)
    by = {}
    for path in eval_paths:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            names = [c[len("log_se_"):] for c in reader.fieldnames or [] if c.startswith("log_se_")]
            if not names:
                return None
            for row in reader:
                by.setdefault(int(row["seed"]), {})[int(row["step"])] = row
    seeds = sorted(by)
    steps = sorted(set.intersection(*(set(v) for v in by.values())))
    curves = {e: np.array([[float(by[s][t][f"log_se_{e}"]) for t in steps] for s in seeds]) for e in names}
    final = {e: np.array([float(by[s][steps[-1]][e]) for s in seeds]) for e in names}
    truth = run.config.get("replay_buffer", {}).get("truth", {})
    return {"steps": np.array(steps), "curves": curves, "truth": float(by[seeds[0]][steps[0]]["truth"]),
            "stderr": truth.get("stderr"), "episodes": truth.get("episodes"), "final": final, "seeds": len(seeds)}


def ope_section(grid, curves: dict) -> list[str]:
    md = ["Off-policy evaluation: log10 of the squared error (estimate − truth)² per seed, mean over seeds [95% "
          "bootstrap CI over seeds] at each budget (estimation iterations), per estimator; the truth is "
          "(1 − γ) × the mean discounted return of the evaluated policy (config.json of the run). Lower is better.", "",
          "The truth's standard error over its episodes is given beside it: an error below log10(stderr²) is not "
          "resolved by that many episodes.", "",
          "| dataset | estimator | truth ± stderr (episodes) | " + " | ".join(f"log10 SE at {fmt_budget(b)}" for b in grid.budgets)
          + " | final estimates per seed |", "|---|---|---|" + "---|" * len(grid.budgets) + "---|"]
    for (algo, env), o in curves.items():
        for e, m in o["curves"].items():
            cells = []
            for b in grid.budgets:
                cols = o["steps"] == b
                cells.append(fmt_ci(*bootstrap_ci(m[:, cols], lambda x: x[..., -1].mean(-1))) if cols.any()
                             else "budget not reached")
            se = f" ± {o['stderr']:.2g} ({o['episodes']}), floor {2 * math.log10(o['stderr']):.2f}" if o["stderr"] else ""
            md.append(f"| {env} | {e} | {o['truth']:.4g}{se} | " + " | ".join(cells) + " | "
                      + ", ".join(f"{v:.3g}" for v in o["final"][e]) + " |")
    return md + [""]


def ope_plot(path: str, scale: str, paper: Paper, curves: dict) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(max(6.5, 5.5 * len(curves)), 4.0), squeeze=False)
    for ax, ((algo, env), o) in zip(axes.flat, curves.items()):
        for i, (e, m) in enumerate(o["curves"].items()):
            ax.plot(o["steps"], m.mean(0), color=f"C{i}", label=f"{e} ({o['seeds']} seeds)")
            ax.fill_between(o["steps"], m.min(0), m.max(0), color=f"C{i}", alpha=0.2)
        if o["stderr"]:
            ax.axhline(2 * math.log10(o["stderr"]), color="grey", ls="--", lw=1,
                       label=f"log10 stderr² of the truth ({o['episodes']} episodes)")
        ax.set_title(f"{env} (truth {o['truth']:.4g})")
        ax.set_xlabel("estimation iterations")
        ax.set_ylabel("log10 (estimate - truth)^2")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(textwrap.fill(f"{paper.title}, {scale} scale: mean over seeds, band = min-max of the seeds", 80),
                 fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": "fujimoto-jax reproduce.summarize"})
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# SUMMARY.md
# ---------------------------------------------------------------------------------------------
def runs_table(runs: dict, root: str) -> list[str]:
    lines = ["| run | seeds | steps evaluated | command | commit | jax / gymnasium / mujoco | machine | wall |",
             "|---|---|---|---|---|---|---|---|"]
    for (algo, env), run in sorted(runs.items()):
        c = run.config
        v, g, mach = c.get("versions", {}), c.get("git", {}), c.get("machine", {})
        commit = (g.get("commit") or "?")[:10] + (" (dirty)" if g.get("dirty") else "")
        resumed = len(c.get("resumed", []))
        wall = ""
        try:
            with open(run_files(run.run_dir)[0][0], newline="") as f:
                rows = sorted((int(r["step"]), float(r["time_s"])) for r in csv.DictReader(f)
                              if int(r["seed"]) == int(c["args"].get("seed", 0)))
            # time_s restarts at 0 when a run is resumed: add up the segments
            total = sum(t0 for (_, t0), (_, t1) in zip(rows, rows[1:]) if t1 < t0) + rows[-1][1]
            wall = f"{total / 60:.0f} min"
        except (OSError, ValueError, KeyError, IndexError):
            pass
        cmd = c.get("command", "?").replace("|", "\\|")
        cmd = re.sub(r"\S*/(algos/\S+\.py)", r"\1", re.sub(r"--results-dir \S+", "--results-dir ...", cmd))
        cmd = re.sub(r"d4rl:\S*/", "d4rl:.../", cmd)  # the --d4rl-dir of that machine
        lines.append(f"| {os.path.relpath(run.run_dir, ROOT)} | {run.seeds} | {int(run.steps.max()):,} | `{cmd}`"
                     + (f" (resumed {resumed}x)" if resumed else "")
                     + f" | {commit} | {v.get('jax')} / {v.get('gymnasium')} / {v.get('mujoco')} | "
                     f"{mach.get('platform', '?')}, {mach.get('cpu_count', '?')} CPUs, "
                     f"{', '.join(mach.get('jax_devices', [])) or '?'} | {wall} |")
    return lines


def summarize(grid_dir: str = GRID_DIR, roots: dict | None = None, out_md: str | None = None,
              out_csv: str | None = None, plots_dir: str | None = None, ref_root: str = ROOT) -> list[dict]:
    roots = roots or RUN_ROOTS
    results = os.path.join(ROOT, "results")
    out_md = out_md or os.path.join(results, "SUMMARY.md")
    out_csv = out_csv or os.path.join(results, "summary.csv")
    plots_dir = plots_dir or os.path.join(results, "plots")
    papers = load_papers(grid_dir)
    refs = {p.id: load_reference(os.path.join(ref_root, p.reference)) for p in papers}
    git = git_info()
    md = ["# Reproduction summary", "",
          f"Generated by `python -m reproduce.summarize` (run by `make reproduce` and `make reproduce-quick`) "
          f"on {time.strftime('%Y-%m-%d')}, repo commit {(git['commit'] or '?')[:10]}"
          f"{' (dirty)' if git['dirty'] else ''}; do not edit by hand. The runs' own provenance (command, "
          "commit, versions, machine) is in the runs table of each scale and in each run's config.json; "
          "each scale's launches are in its launches.json.", "",
          f"Summary computed with {', '.join(f'{k} {v}' for k, v in versions().items() if k in ('python', 'numpy', 'rliable', 'matplotlib'))} "
          f"on {platform.platform()}.", "",
          "How to read it:",
          "- **ours** = the statistic the reference reports, computed the same way from our eval.csv: mean over "
          f"seeds [95% percentile bootstrap CI over seeds, {BOOTSTRAP:,} resamples].",
          "- **reference** = results/reference/*.csv, each row with its source; its 95% CI is mean ± "
          "t·std/√n (t = the 97.5% Student-t quantile with n−1 degrees of freedom, 2.26 for n = 10) when the source gives a std over n seeds, the printed interval when it gives a CI.",
          "- **verdict** = where our mean falls: *inside* / *above* / *below* the reference's CI. A reference "
          "without a spread is tested against our CI (*reference inside our CI* / *above* / *below*). "
          "*not comparable* (different env version, budget not reached, a subset of the paper's envs) is "
          "always followed by what the verdict would be when both numbers exist. References from third "
          "parties are marked *(third-party sanity range)*.",
          "- **offline runs** (TD3+BC, BCQ, TD7 --offline) train on a dataset: their budgets are gradient steps, "
          "and the D4RL normalised score (100·(return − random) / (expert − random)) is shown beside the return "
          "when the dataset has reference scores. A dataset the launcher collected from our own runs is "
          f"*not comparable ({SELF_COLLECTED})* to any paper; runs on a D4RL/Minari copy are compared where the "
          "reference has a number.",
          "- `results/summary.csv` holds the same comparison rows; `results/summary.json` says which command, "
          "commit, versions and machine generated both.", ""]
    all_rows = []
    for scale in ("full", "quick"):
        root = roots.get(scale)
        runs = load_runs(root) if root else {}
        md += [f"## Scale: {SCALE_TITLES[scale]}", ""]
        if not runs:
            md += [f"No runs yet (`make reproduce{'-quick' if scale == 'quick' else ''}`).", ""]
            continue
        if scale == "quick":
            md += ["**Reduced grid**: fewer envs, seeds and env steps than the papers (see reproduce/grids/*.toml, "
                   "`[scale.quick]`). Its budgets are far below the papers', so its rows against the references "
                   "are mostly *not comparable*; it checks that the pipeline runs and shows early learning, not "
                   "that the paper's numbers are reproduced. With 2-3 seeds a percentile bootstrap CI is much "
                   "too narrow (it cannot see beyond the seeds it has): read those CIs as the spread of the "
                   "seeds, not as a 95% interval.", ""]
        md += ["### Runs", ""] + runs_table(runs, root) + [""]
        for paper in papers:
            if scale not in paper.scales:
                continue
            grid = paper.scales[scale]
            rows, ours = compare_rows(scale, paper, refs[paper.id], runs)
            all_rows += rows
            offline = any(e in paper.datasets for e in grid.envs)
            unit = "gradient steps" if offline else "steps"
            md += [f"### {paper.title}", "", f"Paper protocol: {paper.protocol}", "",
                   f"This scale: {', '.join(grid.algos)} on {'datasets ' if offline else ''}{', '.join(grid.envs)}; "
                   f"{grid.seeds} seeds; budgets {', '.join(fmt_budget(b) for b in grid.budgets)} {unit}; evaluation "
                   f"every {grid.eval_freq:,} {unit}, {grid.eval_episodes} episodes. Grid: "
                   f"`{os.path.relpath(paper.path, ROOT)}`; references: `{paper.reference}`. A run shared with "
                   "another paper's grid may have more seeds or steps; the seeds column says how many were used.", ""]
            if offline:
                md += ["Datasets:", ""] + [dataset_line(replace(paper.datasets[e], scale=scale), root)
                                           for e in grid.envs] + [""]
            if rows:
                md += ["| algo | env (ours / reference) | budget | statistic | ours [95% CI] | seeds | reference "
                       "[95% CI] | verdict | source |", "|---|---|---|---|---|---|---|---|---|"]
                for r in rows:
                    ref_ci = (fmt_ci(r["reference_mean"], r["reference_lo"], r["reference_hi"])
                              if r["reference_lo"] is not None else fmt(r["reference_mean"]))
                    ours_s = fmt_ci(r["ours_mean"], r["ours_lo"], r["ours_hi"]) if r["ours_mean"] is not None else "—"
                    md.append(f"| {r['algo']} | {r['env']} / {r['reference_env']} | {fmt_budget(r['budget'])} | "
                              f"{STAT_TITLES[r['statistic']]} | {ours_s} | {r['seeds'] or '—'} | {ref_ci} | "
                              f"**{r['verdict']}** | {r['reference_source']} |")
                md.append("")
            ope = {(a, e): c for a in grid.algos for e in grid.envs  # {(algo, dataset): its errors}
                   if (a, e) in runs and (c := ope_curves(runs[(a, e)])) is not None}
            if ope:  # off-policy evaluation: its errors, not returns (eval.csv's return is an estimate)
                ours = []
            stats = ("mean_at_budget", "max_of_mean_curve") + (("normalized_mean_at_budget",) if offline else ())
            head = ["algo", "dataset" if offline else "env", "budget", "seeds", "mean at budget [95% CI]",
                    "max of mean curve [95% CI]"]
            head += ["D4RL normalised score at budget [95% CI]", "comparison"] if offline else []
            md += ["Our results at this scale's budgets:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)] \
                if ours else []
            for r in ours:
                cells = [fmt_ci(*r[s]) if r[s] else "no run" if not r["seeds"] else "budget not reached"
                         if not r["mean_at_budget"] else "not in eval.csv" for s in stats]
                if offline:
                    cells.append(offline_note(paper, r["algo"], r["env"], rows))
                md.append(f"| {r['algo']} | {r['env']} | {fmt_budget(r['budget'])} | {r['seeds'] or '—'} | "
                          + " | ".join(cells) + " |")
            md += [""] if ours else []
            for agg in paper.aggregates:
                md += [f"Aggregate, {agg.name}: {agg.algo} normalised by {agg.baseline} (our runs of both, same "
                       "scale), per seed return / baseline seed-mean at the budget; IQM and mean over env x seed "
                       "with stratified bootstrap 95% CIs (rliable); gain = 100·(mean over envs of "
                       f"{agg.algo} mean / {agg.baseline} mean − 1).", "",
                       "| budget | envs | seeds | IQM [95% CI] | mean [95% CI] | gain % [95% CI] | reference gain % "
                       "| verdict |", "|---|---|---|---|---|---|---|---|"]
                for a in aggregate_rows(scale, paper, agg, refs[paper.id], runs):
                    if not a["envs"]:
                        md.append(f"| {fmt_budget(a['budget'])} | none of {', '.join(agg.envs)} has both runs at "
                                  "this budget | — | — | — | — | — | — |")
                        continue
                    ref = a.get("reference")
                    md.append(f"| {fmt_budget(a['budget'])} | {', '.join(a['envs'])} | {a['seeds']} | "
                              f"{fmt_ci(*a['iqm'])} | {fmt_ci(*a['mean'])} | {fmt_ci(*a['gain'])} | "
                              f"{fmt(ref['mean']) + ' (' + ref['source'] + ')' if ref else '—'} | "
                              f"{a.get('verdict', 'no reference at this budget')} |")
                md.append("")
                md += [f"Head to head, {agg.name}: per env, mean at the budget of our {agg.algo} and our "
                       f"{agg.baseline} runs [95% bootstrap CI over seeds] and the difference {agg.algo} − "
                       f"{agg.baseline} (each run's seeds resampled on their own); *higher* / *lower* when its CI "
                       "excludes 0. Reference difference: the same difference of the reference files' means "
                       "(results/reference/<paper>.csv, paper ids in brackets), where both have one.", "",
                       f"| env | budget | seeds ({agg.algo} / {agg.baseline}) | {agg.algo} [95% CI] | "
                       f"{agg.baseline} [95% CI] | difference [95% CI] | reading | reference difference |",
                       "|---|---|---|---|---|---|---|---|"]
                h2h = head_to_head_rows(scale, paper, agg, refs, runs)
                for h in h2h:
                    rd = h["reference_difference"]
                    md.append(f"| {h['env']} | {fmt_budget(h['budget'])} | {h['seeds'][0]} / {h['seeds'][1]} | "
                              f"{fmt_ci(*h['algo'])} | {fmt_ci(*h['baseline'])} | {fmt_ci(*h['difference'])} | "
                              f"{h['reading']} | {fmt(rd[0]) + f' ({rd[1]} − {rd[2]})' if rd else '—'} |")
                if not h2h:
                    md.append(f"| none of {', '.join(agg.envs)} has both runs at this scale's budgets "
                              "| — | — | — | — | — | — | — |")
                md.append("")
                fixed = fixed_normalised_rows(scale, paper, agg, refs[paper.id], runs)
                if fixed:
                    md += [f"Aggregate, {agg.name}, normalised as the paper does: per seed (return − random) / "
                           f"({agg.baseline} − random) at the budget, with the paper's fixed {agg.baseline} and "
                           f"random scores (`{paper.reference}`, statistics normaliser_td3 and normaliser_random), "
                           "so no run of the baseline is needed; IQM and mean over env x seed with stratified "
                           "bootstrap 95% CIs (rliable).", "",
                           "| budget | envs | seeds | IQM [95% CI] | mean [95% CI] | reference mean | verdict |",
                           "|---|---|---|---|---|---|---|"]
                    for a in fixed:
                        if not a["envs"]:
                            md.append(f"| {fmt_budget(a['budget'])} | none of {', '.join(agg.envs)} has a "
                                      f"{agg.algo} run at this budget | — | — | — | — | — |")
                            continue
                        ref = a.get("reference")
                        md.append(f"| {fmt_budget(a['budget'])} | {', '.join(a['envs'])} | {a['seeds']} | "
                                  f"{fmt_norm_ci(*a['iqm'])} | {fmt_norm_ci(*a['mean'])} | "
                                  f"{fmt_norm(ref['mean']) + ' (' + ref['source'] + ')' if ref else '—'} | "
                                  f"{a.get('verdict', 'no reference at this budget')} |")
                    md.append("")
            png = os.path.join(plots_dir, scale, f"{paper.id}.png")
            if ope:
                md += ope_section(grid, ope)
                if ope_plot(png, scale, paper, ope):
                    md += [f"![{paper.id} {scale}]({os.path.relpath(png, os.path.dirname(out_md))})", ""]
            elif plot(png, scale, paper, refs[paper.id], runs):
                md += [f"![{paper.id} {scale}]({os.path.relpath(png, os.path.dirname(out_md))})", ""]
    os.makedirs(os.path.dirname(out_md), exist_ok=True)
    provenance = {"command": "python -m reproduce.summarize", "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "git": git, "versions": versions(), "machine": platform.platform(),
                  "outputs": [os.path.relpath(p, ROOT) for p in (out_md, out_csv)],
                  "runs": {scale: os.path.relpath(root, ROOT) for scale, root in roots.items()},
                  "note": "the runs' own provenance is in each run's config.json"}
    out_json = os.path.splitext(out_csv)[0] + ".json"
    for path, text in ((out_md, "\n".join(md) + "\n"), (out_csv, _csv(all_rows)),
                       (out_json, json.dumps(provenance, indent=2) + "\n")):
        write_atomic(path, text)
    return all_rows


def _csv(rows: list[dict]) -> str:
    import io
    buf = io.StringIO()
    w = csv.DictWriter(buf, SUMMARY_HEADER, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in SUMMARY_HEADER})
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid-dir", default=GRID_DIR)
    p.add_argument("--out", default=None, help="markdown output (default results/SUMMARY.md)")
    a = p.parse_args(argv)
    rows = summarize(a.grid_dir, out_md=a.out)
    print(f"[summary] {len(rows)} comparison rows -> {a.out or 'results/SUMMARY.md'}, results/summary.csv, "
          "results/plots/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
