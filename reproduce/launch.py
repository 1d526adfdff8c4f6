"""Run a scale of the papers' grids: `python -m reproduce.launch --scale quick [--jobs 2]`.

Each (algo, env) is one process training all its seeds (`--num-seeds`), with `--save-model` so a
killed run resumes from its last evaluation. Re-running the launcher skips completed runs, resumes
killed ones and retries failed ones; a failure is reported and the other runs go on. Results go to
results/runs/<reproduce|reproduce-quick>/<algo>/<env>/ (eval.csv, train_episodes.csv,
config.json; the large checkpoints are deleted once a run completes), logs to <root>/logs/.
At the end results/SUMMARY.md is regenerated (reproduce.summarize).

Offline runs train on a dataset (grid.Dataset). A collected one is written once per scale to
<root>/datasets (a Minari root: MINARI_DATASETS_PATH of the collection and of its runs) by
`python -m envs.collect`, as soon as its source run is done; the source keeps its checkpoint until
every dataset that needs it is written. The data is git-ignored; its facts (envs.collect's
fujimoto_jax metadata: source policies and their returns, episodes, command) are copied into
<root>/datasets.json, committed with the runs, when the collection completes (record_dataset).
An OGBench dataset (recipe ogbench-play / ogbench-noisy) needs no source: `python -m envs.collect
--recipe ogbench-<type> --env-id <its env's task1 id> --episodes N --out <root>/datasets/ogbench/<env>-<type>-v0.npz` writes it (and its -val.npz) once,
before any run on it, and every algorithm and every task of that env reads the same file
(`--dataset ogbench:<that path> --env-id <the run's task>`). External D4RL files are looked up under
--d4rl-dir. A dataset that cannot be had makes its runs "unavailable", with what to do.

`--backend slurm` (the `cluster` extra: submitit) submits each pending task as a submitit job
instead, with --partition, --time-min, --gpus-per-job and --cpus-per-job; the runs that can start
form one job array (--array-parallelism at once). The skip/resume/conflict rules are the local
ones (`plan`); a task whose job from an earlier launch is still queued or running (launches.json
records the job ids; squeue) is not submitted twice. A job builds its command when it starts, from
the disk, so a job requeued after a preemption or its time limit resumes from the run's checkpoint
(GridJob.checkpoint stops the training process with SIGINT; submitit requeues the job, at most
--max-requeues times for time limits). A dataset collection is a job that waits for its source runs'
jobs (SLURM afterok dependencies), and the runs on the dataset wait for it. Process logs go to
<root>/logs/ as with the local backend, submitit's job logs to --slurm-folder (default
<root>/logs/slurm). The launcher submits and returns; `--wait` waits for the jobs and then
regenerates the summary. `--dry-run` prints the jobs and needs no submitit. `--backend
submitit-local` runs the jobs with submitit's LocalExecutor (for the tests; its jobs cannot wait
for each other, so runs on a dataset not collected yet are unavailable there).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from envs.runs import UserError, write_atomic
from reproduce.grid import GRID_DIR, ONLINE_DATA_ALGOS, ROOT, SCALES, Dataset, Run, expand, load_papers

RUN_ROOTS = {"full": os.path.join(ROOT, "results", "runs", "reproduce"),
             "quick": os.path.join(ROOT, "results", "runs", "reproduce-quick")}
CHECKPOINT_DIRS = ("checkpoint", "checkpoint.old", "checkpoint.tmp")
ACTIVE = ("todo", "resume", "restart")  # the states of a run that the launcher runs
D4RL_DIR = os.path.join(os.path.expanduser("~"), ".d4rl", "datasets")  # where D4RL itself downloads


# ---------------------------------------------------------------------------------------------
# State of a run on disk
# ---------------------------------------------------------------------------------------------
@dataclass
class State:
    kind: str  # done | todo | resume | restart | conflict | unavailable
    detail: str = ""
    step: int = 0  # last evaluated step common to all seeds


def algo_path(algo: str) -> str:
    return os.path.join(ROOT, "algos", f"{algo}.py")


def eval_steps(run_dir: str) -> dict[int, set[int]]:
    """seed -> set of evaluated steps in run_dir/eval.csv."""
    out: dict[int, set[int]] = {}
    path = os.path.join(run_dir, "eval.csv")
    if not os.path.exists(path):
        return out
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                out.setdefault(int(row["seed"]), set()).add(int(row["step"]))
            except (KeyError, TypeError, ValueError):
                continue
    return out


def last_common_step(run_dir: str, seeds: list[int]) -> int:
    steps = eval_steps(run_dir)
    common = set.intersection(*(steps.get(s, set()) for s in seeds)) if seeds else set()
    return max(common, default=0)


def has_checkpoint(run_dir: str) -> bool:
    return any(os.path.exists(os.path.join(run_dir, d, "meta.json")) for d in CHECKPOINT_DIRS[:2])


def run_state(run: Run, root: str) -> State:
    if not os.path.exists(algo_path(run.algo)):
        return State("unavailable", f"algos/{run.algo}.py does not exist yet")
    run_dir = run.run_dir(root)
    config_path = os.path.join(run_dir, "config.json")
    if not os.path.exists(config_path):
        return State("restart", "no config.json") if os.path.exists(run_dir) and os.listdir(run_dir) else State("todo")
    try:
        with open(config_path) as f:
            args = json.load(f)["args"]
    except (OSError, ValueError, KeyError) as e:
        return State("conflict", f"unreadable {config_path}: {e}")
    exact = {"env_id": run.env_id, "eval_freq": run.eval_freq, "eval_episodes": run.eval_episodes, **parse_flags(run.args)}
    diff = {k: (args.get(k, "<absent>"), v) for k, v in exact.items() if not _same(args.get(k), v)}
    key = DATASET_FLAG.get(run.algo, "--dataset")[2:].replace("-", "_")  # its config.json name
    if run.dataset and _dataset_key(str(args.get(key))) != _dataset_key(dataset_spec(run.dataset, root=root)):
        diff[key] = (args.get(key, "<absent>"), dataset_spec(run.dataset, root=root))
    diff.update({k: (args.get(k), v) for k, v in (("total_timesteps", run.steps), ("num_seeds", run.seeds))
                 if not isinstance(args.get(k), int) or args[k] < v})  # a larger run serves a smaller grid
    if diff:
        return State("conflict", "the run on disk differs from the grid (on disk, grid): "
                     + ", ".join(f"{k} {a} vs {b}" for k, (a, b) in diff.items())
                     + f"; move {run_dir} away to rerun it")
    seeds = [args.get("seed", 0) + i for i in range(args["num_seeds"])]
    step = last_common_step(run_dir, seeds)
    if step >= run.steps:
        return State("done", step=step)
    if has_checkpoint(run_dir):
        return State("resume", f"from its last checkpoint (evaluated up to step {step})", step=step)
    return State("restart", f"stopped at step {step} without a checkpoint", step=step)


def parse_flags(flags: tuple[str, ...]) -> dict:
    """('--learning-starts', '1000', '--no-checkpoints') -> {'learning_starts': '1000', 'checkpoints': False}."""
    out, i = {}, 0
    while i < len(flags):
        name = flags[i]
        if not name.startswith("--"):
            raise ValueError(f"grid args must be --flag [value] pairs, got {name!r} in {flags}")
        key = name[2:].replace("-", "_")
        if i + 1 < len(flags) and not flags[i + 1].startswith("--"):
            out[key], i = flags[i + 1], i + 2
        else:
            out[key[3:] if key.startswith("no_") else key], i = not key.startswith("no_"), i + 1
    return out


def _same(on_disk, wanted) -> bool:
    if isinstance(wanted, bool) or isinstance(on_disk, bool):
        return on_disk is wanted
    try:
        return float(on_disk) == float(wanted)
    except (TypeError, ValueError):
        return str(on_disk) == str(wanted)


DATASET_FLAG = ONLINE_DATA_ALGOS  # algorithms that read their dataset through another flag


def command(run: Run, root: str, state: State, d4rl_dir: str = D4RL_DIR) -> list[str]:
    if state.kind == "resume":
        return [sys.executable, algo_path(run.algo), "--resume", run.run_dir(root)]
    data = [DATASET_FLAG.get(run.algo, "--dataset"), dataset_spec(run.dataset, d4rl_dir, root)] if run.dataset else []
    return [sys.executable, algo_path(run.algo), *data, "--env-id", run.env_id, "--num-seeds", str(run.seeds),
            "--total-timesteps", str(run.steps), "--eval-freq", str(run.eval_freq),
            "--eval-episodes", str(run.eval_episodes), "--save-model",
            "--results-dir", os.path.join(root, run.algo), "--run-name", run.env, *run.args]


def process_env(root: str, dataset: Dataset | None = None) -> dict:
    """The children's environment: the repo importable; a collected dataset's Minari root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    if dataset is not None and dataset.collected and not dataset.ogbench:  # an OGBench file is named by its path
        env["MINARI_DATASETS_PATH"] = datasets_root(root)
    return env


# ---------------------------------------------------------------------------------------------
# Datasets of offline runs
# ---------------------------------------------------------------------------------------------
def datasets_root(root: str) -> str:
    return os.path.join(root, "datasets")


def d4rl_path(ds: Dataset, d4rl_dir: str = D4RL_DIR) -> str:
    return os.path.join(d4rl_dir, ds.d4rl)  # an absolute ds.d4rl stays itself


def ogbench_paths(ds: Dataset, root: str) -> tuple[str, str]:
    """(train, val) files of an OGBench dataset: one pair per env and dataset type, shared by its tasks."""
    stem = os.path.join(datasets_root(root), "ogbench", ds.ogbench_file)
    return f"{stem}.npz", f"{stem}-val.npz"


def dataset_spec(ds: Dataset, d4rl_dir: str = D4RL_DIR, root: str | None = None) -> str:
    """The algorithms' --dataset value (an OGBench file's path needs the run root)."""
    if ds.ogbench:
        if root is None:
            raise ValueError(f"dataset {ds.name}: an OGBench file's path needs the run root")
        return f"ogbench:{ogbench_paths(ds, root)[0]}"
    return f"d4rl:{d4rl_path(ds, d4rl_dir)}" if ds.d4rl else f"minari:{ds.minari_id}"


def _dataset_key(spec: str) -> str:
    """A D4RL file is the same dataset wherever --d4rl-dir puts it, an OGBench file wherever its root is."""
    for prefix in ("d4rl:", "ogbench:"):
        if spec.startswith(prefix) and (prefix == "d4rl:" or "/" in spec or spec.endswith(".npz")):
            return prefix + os.path.basename(spec[len(prefix):])
    return spec


def minari_dir(ds: Dataset, root: str) -> str:
    base = datasets_root(root) if ds.collected else (
        os.environ.get("MINARI_DATASETS_PATH") or os.path.join(os.path.expanduser("~"), ".minari", "datasets"))
    return os.path.join(base, ds.minari_id)


def is_collected(ds: Dataset, root: str) -> bool:
    """Complete: envs.collect writes its facts (key fujimoto_jax) into metadata.json last; an OGBench
    dataset's train and val files are each renamed into place whole (envs.collect writes them atomically)."""
    if ds.ogbench:
        return all(os.path.isfile(p) for p in ogbench_paths(ds, root))
    try:
        with open(os.path.join(minari_dir(ds, root), "data", "metadata.json")) as f:
            return "fujimoto_jax" in json.load(f)
    except (OSError, ValueError):
        return False


DATASET_FACTS = "datasets.json"  # <root>/datasets.json: committed, unlike <root>/datasets/


def dataset_facts_key(ds: Dataset) -> str:
    """Where envs.collect wrote a collected dataset's facts, relative to the run root (the key in datasets.json)."""
    if ds.ogbench:
        return f"datasets/ogbench/{ds.ogbench_file}.npz"
    return f"datasets/{ds.minari_id}/data/metadata.json"


def read_dataset_facts(ds: Dataset, root: str) -> dict | None:
    """envs.collect's facts (key fujimoto_jax) of a collected dataset, from the git-ignored files; None if absent."""
    path = os.path.join(root, *dataset_facts_key(ds).split("/"))
    try:
        if ds.ogbench:
            import numpy as np
            with np.load(path, allow_pickle=False) as f:
                return json.loads(str(f["fujimoto_jax"][()]))
        with open(path) as f:
            facts = json.load(f)["fujimoto_jax"]
        return json.loads(facts) if isinstance(facts, str) else facts
    except (OSError, KeyError, ValueError, TypeError):
        return None


MEND_RECORD = ("it holds the collected datasets' facts: restore it (it is committed), or delete it and launch "
               "again to record the facts of the datasets still on disk")


def read_datasets_record(root: str) -> dict:
    """<root>/datasets.json as {key: {"dataset", "facts"}} ({} when there is none yet); a file that cannot be read
    or is not such a record is a UserError naming it, never taken for an empty one."""
    path = os.path.join(root, DATASET_FACTS)
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}: {e}); {MEND_RECORD}") from None
    datasets = record.get("datasets") if isinstance(record, dict) else None
    if not isinstance(datasets, dict) or not all(isinstance(v, dict) for v in datasets.values()):
        raise UserError(f"{path} has no \"datasets\" object of entries; {MEND_RECORD}")
    return datasets


def record_dataset(ds: Dataset, root: str) -> bool:
    """Copy a collected dataset's facts into <root>/datasets.json, which is committed with the runs (the data
    itself is not), so the summary reads them on any clone. Written only when they changed; True if written.
    A datasets.json that does not read is left as it is (UserError), not replaced by this one entry."""
    if not ds.collected or (facts := read_dataset_facts(ds, root)) is None:
        return False
    import fcntl
    os.makedirs(root, exist_ok=True)
    lock = os.open(root, os.O_RDONLY)  # cluster jobs may finish collections at once: one writer at a time
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        datasets = read_datasets_record(root)
        entry = {"dataset": ds.name, "facts": facts}
        if datasets.get(dataset_facts_key(ds)) == entry:
            return False
        datasets[dataset_facts_key(ds)] = entry
        record = {"note": "envs.collect's facts (fujimoto_jax) of each collected dataset, keyed by its file under this "
                          "folder (git-ignored datasets/); written by reproduce.launch when a collection completes",
                  "datasets": dict(sorted(datasets.items()))}
        write_atomic(os.path.join(root, DATASET_FACTS), json.dumps(record, indent=1, sort_keys=False) + "\n")
        return True
    finally:
        os.close(lock)


def external_missing(ds: Dataset, root: str, d4rl_dir: str) -> str:
    """'' when an external dataset is there, else what to do."""
    if ds.d4rl:
        path = d4rl_path(ds, d4rl_dir)
        return "" if os.path.isfile(path) else f"needs {path} (set --d4rl-dir / D4RL_DIR)"
    path = minari_dir(ds, root)
    return "" if os.path.isdir(os.path.join(path, "data")) else \
        f"needs the local Minari dataset {ds.minari} at {path} (set MINARI_DATASETS_PATH)"


def collect_command(ds: Dataset, root: str) -> list[str]:
    if ds.ogbench:  # the file of the env: its task1 id (the data does not depend on the task)
        return [sys.executable, "-m", "envs.collect", "--recipe", ds.recipe, "--env-id", ds.collection.env,
                "--episodes", str(ds.episodes), "--seed", str(ds.seed), "--out", ogbench_paths(ds, root)[0]]
    cmd = [sys.executable, "-m", "envs.collect", "--recipe", ds.recipe, "--env-id", ds.env,
           "--dataset-id", ds.minari_id, "--seed", str(ds.seed)]
    if ds.steps:
        cmd += ["--steps", str(ds.steps)]
    if ds.noise is not None:
        cmd += ["--noise", str(ds.noise)]
    if ds.sources:
        cmd += ["--checkpoint", *(os.path.join(root, *src.split("/")) for src in ds.sources)]
    return cmd


def collect_state(ds: Dataset, root: str, sources: dict[str, Run], active: set[str]) -> State:
    """done | todo (its sources are done, with checkpoints) | wait (for sources this launch runs) | unavailable."""
    if is_collected(ds, root):
        return State("done")
    waits = []
    for name in ds.sources:
        src = sources[name]
        st = run_state(src, root)
        src_dir = os.path.relpath(src.run_dir(root), ROOT)
        if st.kind == "done" and not has_checkpoint(src.run_dir(root)):
            return State("unavailable", f"{name} is done but has no checkpoint to roll out (deleted once a run "
                                        f"completes, never committed): move {src_dir} away and launch again to rerun it")
        if st.kind != "done" and name in active:
            waits.append(name)
        elif st.kind != "done":
            why = f" ({st.kind}: {st.detail})" if st.kind in ("conflict", "unavailable") else " (not in this launch)"
            return State("unavailable", f"needs {name} run first{why}")
    return State("wait", f"after {', '.join(waits)}") if waits else State("todo")


POLICY_EVAL_ALGOS = ("sr_dice",)  # offline runs that also load their dataset's source policy (the evaluated one)


def needed_sources(runs: list[Run], root: str) -> set[str]:
    """Runs whose checkpoint must stay: sources of datasets not written yet that an unfinished run uses, and
    the evaluated policies of unfinished off-policy evaluation runs."""
    return {src for r in runs if r.dataset and r.dataset.collected and run_state(r, root).kind != "done"
            and (r.algo in POLICY_EVAL_ALGOS or not is_collected(r.dataset, root)) for src in r.dataset.sources}


def freed_by(task: Run | Dataset) -> list[str]:
    """Runs whose checkpoints a finished task may free (drop_done keeps those still needed): a dataset's
    sources; a run itself, and an off-policy evaluation run's evaluated policy (its dataset's source)."""
    if isinstance(task, Dataset):
        return list(task.sources)
    return [task.name] + (list(task.dataset.sources) if task.algo in POLICY_EVAL_ALGOS and task.dataset else [])


def set_aside(run: Run, root: str) -> str:
    """Move an unresumable partial run to <root>/.incomplete/ (kept, never deleted)."""
    dest = os.path.join(root, ".incomplete", f"{run.algo}__{run.env}__{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.move(run.run_dir(root), dest)
    return dest


def drop_checkpoints(run_dir: str) -> None:
    for d in (*CHECKPOINT_DIRS, "replay"):  # replay/: the checkpoints' incremental buffer chunks
        shutil.rmtree(os.path.join(run_dir, d), ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# One task (a run or a dataset collection), shared by the local and the cluster backends
# ---------------------------------------------------------------------------------------------
def task_name(task: Run | Dataset) -> str:
    return f"collect:{task.name}" if isinstance(task, Dataset) else task.name


def log_path(task: Run | Dataset, root: str) -> str:
    name = f"collect__{task.name}" if isinstance(task, Dataset) else f"{task.algo}__{task.env}"
    return os.path.join(root, "logs", f"{name}.log")


def prepare(task: Run | Dataset, root: str, d4rl_dir: str, say) -> tuple[list[str], dict, str, str]:
    """(command, environment, log file, label) of a task as the disk is now: a resume command when the
    run has a checkpoint. An incomplete dataset is removed and an unresumable run set aside first."""
    name = task_name(task)
    if isinstance(task, Dataset):
        if task.ogbench:  # a killed collection may have renamed the train file and not the val file
            for partial in ogbench_paths(task, root):
                if os.path.exists(partial):
                    os.remove(partial)
                    say(f"[grid] {name}: removed the incomplete dataset file {os.path.relpath(partial, ROOT)}")
            os.makedirs(os.path.dirname(ogbench_paths(task, root)[0]), exist_ok=True)  # envs.collect wants the folder
            label = f"{task.recipe} dataset, {task.episodes:,} episodes"
            return collect_command(task, root), process_env(root, task), log_path(task, root), label
        partial = minari_dir(task, root)
        if os.path.exists(partial):  # left by a killed collection: envs.collect never overwrites
            shutil.rmtree(partial)
            say(f"[grid] {name}: removed the incomplete dataset {os.path.relpath(partial, ROOT)}")
        return collect_command(task, root), process_env(root, task), log_path(task, root), f"{task.recipe} dataset"
    state = run_state(task, root)
    if state.kind == "restart" and os.path.exists(task.run_dir(root)):
        say(f"[grid] {name}: {state.detail}; moved to {set_aside(task, root)} and restarted")
        state = State("todo")
    label = state.kind + (" " + state.detail if state.detail else "")
    return command(task, root, state, d4rl_dir), process_env(root, task.dataset), log_path(task, root), label


def start_process(cmd: list[str], env: dict, log_file: str, preexec_fn=None) -> subprocess.Popen:
    """Start a task's process, its output appended to its log (the launcher never imports an algorithm)."""
    os.makedirs(os.path.dirname(log_file), exist_ok=True)
    with open(log_file, "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%dT%H:%M:%S%z')} {' '.join(cmd)}\n")
        log.flush()
        return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=preexec_fn or _die_with_parent)


def task_done(task: Run | Dataset, root: str) -> bool:
    return is_collected(task, root) if isinstance(task, Dataset) else run_state(task, root).kind == "done"


def drop_done(names, root: str, every: list[Run], keep_checkpoints: bool = False) -> None:
    """Delete completed runs' checkpoints, except those a dataset still needs."""
    if keep_checkpoints:
        return
    keep = needed_sources(every, root)
    for name in names:
        if name not in keep:
            drop_checkpoints(os.path.join(root, *name.split("/")))


def log_tail(path: str, n: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            tail = f.readlines()[-n:]
    except OSError:
        return f"no log at {os.path.relpath(path, ROOT)}"
    return f"last lines of {os.path.relpath(path, ROOT)}:\n    " + "    ".join(tail)


def record_launch(root: str, argv: list[str] | None, **facts) -> None:
    """Append this launch (command, versions, commit, machine and `facts`) to <root>/launches.json."""
    prov_path = os.path.join(root, "launches.json")
    history = []
    if os.path.exists(prov_path):
        with open(prov_path) as f:
            history = json.load(f)
    history.append({**_provenance(argv or [sys.executable, "-m", "reproduce.launch"] + sys.argv[1:]), **facts})
    write_atomic(prov_path, json.dumps(history, indent=2))


# ---------------------------------------------------------------------------------------------
# Progress over the grid
# ---------------------------------------------------------------------------------------------
def fmt_duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Progress:
    """Work = env steps x seeds x the algorithm's relative cost. The ETA extrapolates the rate of the
    last `window_s` seconds, so a fast phase (random warm-up steps) does not linger in it."""

    def __init__(self, runs: list[Run], start_steps: dict[str, int], window_s: float = 900.0):
        self.runs = {r.name: r for r in runs}
        self.total = sum(r.work for r in runs) or 1.0
        self.start = {n: min(start_steps.get(n, 0), self.runs[n].steps) / self.runs[n].steps * self.runs[n].work
                      for n in self.runs}
        self.now = dict(self.start)
        self.t0 = time.time()
        self.window_s = window_s
        self.samples = [(self.t0, sum(self.start.values()))]  # (time, work done)

    def update(self, name: str, step: int) -> None:
        run = self.runs[name]
        self.now[name] = max(self.now[name], min(step, run.steps) / run.steps * run.work)

    def drop(self, name: str) -> None:
        """A run that turned out unavailable is no longer part of the work."""
        if name in self.runs:
            self.total = max(1.0, self.total - self.runs.pop(name).work)
            self.start.pop(name)
            self.now.pop(name)

    def line(self, done: int, running: list[str], failed: int, total_runs: int) -> str:
        work, now = sum(self.now.values()), time.time()
        self.samples.append((now, work))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.pop(0)  # keep one sample at least window_s old
        t_old, w_old = self.samples[0]
        eta = (self.total - work) * (now - t_old) / (work - w_old) if work > w_old else None
        running_s = ", ".join(f"{n} {int(self.now[n] / self.runs[n].work * self.runs[n].steps):,}/"
                              f"{self.runs[n].steps:,}" for n in running)
        return (f"[grid] {done}/{total_runs} runs done, {failed} failed | {100 * work / self.total:.0f}% of the work"
                f" | elapsed {fmt_duration(now - self.t0)}, ETA {fmt_duration(eta)}"
                + (f" | running: {running_s}" if running_s else ""))


# ---------------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------------
def _provenance(argv: list[str]) -> dict:
    import platform

    from envs.runs import git_info
    from reproduce.summarize import versions
    return {"command": " ".join(argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "versions": versions(), "git": git_info()}


def plan(runs: list[Run], every: list[Run], root: str, d4rl_dir: str) -> tuple[dict, dict]:
    """The runs' states and the collections their datasets need: {dataset name: (Dataset, State)}.
    `every` is the scale's whole grid (a source may belong to a paper outside the selection)."""
    states = {r.name: run_state(r, root) for r in runs}
    active = {n for n, st in states.items() if st.kind in ("todo", "resume", "restart")}
    sources = {r.name: r for r in every}
    collects: dict[str, tuple[Dataset, State]] = {}
    for r in runs:
        ds = r.dataset and r.dataset.collection  # OGBench: the tasks of an env share one collection
        if ds is None or r.name not in active:
            continue
        if ds.collected:
            if ds.name not in collects:
                collects[ds.name] = (ds, collect_state(ds, root, sources, active))
            c = collects[ds.name][1]
            if c.kind == "unavailable":
                states[r.name] = State("unavailable", f"dataset {ds.name}: {c.detail}")
        elif missing := external_missing(ds, root, d4rl_dir):
            states[r.name] = State("unavailable", missing)
    return states, collects


def launch(scale: str, root: str | None = None, grid_dir: str = GRID_DIR, jobs: int = 1,
           papers: list[str] | None = None, algos: list[str] | None = None, envs: list[str] | None = None,
           keep_checkpoints: bool = False, dry_run: bool = False, poll_s: float = 2.0, report_s: float = 60.0,
           argv: list[str] | None = None, out=None, d4rl_dir: str | None = None,
           cluster: Cluster | None = None) -> dict:
    """Run every pending run of the grid (and the dataset collections they need); returns
    {run name or 'collect:<dataset>': final state kind or 'failed'}. With `cluster`, submit them as
    jobs instead (see Cluster): 'submitted' or 'queued', or their final state with cluster.wait."""
    root = root or RUN_ROOTS[scale]
    d4rl_dir = d4rl_dir or os.environ.get("D4RL_DIR") or D4RL_DIR
    every = expand(load_papers(grid_dir), scale)
    runs = expand(load_papers(grid_dir, papers), scale, algos, envs)
    if not runs:
        raise ValueError(f"the selection expands to no run at scale '{scale}'")
    states, collects = plan(runs, every, root, d4rl_dir)
    queued = queued_jobs(root, cluster.backend) if cluster else {}
    for name, job_id in queued.items():  # submitted by an earlier launch, still in the queue: not again
        if name in states and states[name].kind in ACTIVE:
            states[name] = State("queued", f"job {job_id}")
        elif name.startswith("collect:") and name[8:] in collects and collects[name[8:]][1].kind in ("todo", "wait"):
            collects[name[8:]] = (collects[name[8:]][0], State("queued", f"job {job_id}"))

    def say(msg):
        print(msg, file=out or sys.stdout, flush=True)

    say(f"[grid] scale '{scale}': {len(runs)} runs under {os.path.relpath(root, ROOT)}")
    for r in runs:
        st = states[r.name]
        coll = r.dataset and r.dataset.collection.name
        after = coll and coll in collects and collects[coll][1].kind != "done"
        detail = f": {st.detail}" if st.detail else (f", after collect {coll}" if after else "")
        say(f"  {r.name:40s} {r.seeds:>2d} seeds x {r.steps:>9,d} steps  [{st.kind}{detail}]  ({', '.join(r.papers)})")
    for ds, st in collects.values():
        what = f"{ds.recipe}, " + (f"{ds.episodes:,} episodes of OGBench's oracle" if ds.ogbench else
                                   f"{ds.steps:,} transitions" if ds.steps else "whole replay buffer") \
            + (f" of {' + '.join(ds.sources)}" if ds.sources else "")
        detail = f": {st.detail}" if st.detail else ""
        say(f"  {'collect ' + ds.name:40s} {what} -> {dataset_spec(ds, root=root)}  [{st.kind}{detail}]")
    if cluster:
        groups = job_groups(runs, states, collects, cluster, queued, say)
        for tasks, after in groups:
            for t in tasks:
                cmd = prepare_dry(t, root, d4rl_dir)
                say(f"  job {task_name(t):36s} [{cluster.resources()}"
                    + (f"; after {', '.join(after)}" if after else "") + f"]\n      {' '.join(cmd)}")
    if dry_run:
        return {**{n: s.kind for n, s in states.items()}, **{f"collect:{n}": c[1].kind for n, c in collects.items()}}

    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    lock = _acquire_lock(root)
    try:
        if cluster:
            return _submit(groups, runs, every, states, collects, scale, root, d4rl_dir, cluster, keep_checkpoints,
                           queued, poll_s, argv, say)
        return _launch(runs, every, states, collects, scale, root, d4rl_dir, jobs, keep_checkpoints, poll_s,
                       report_s, argv, say)
    finally:
        os.remove(lock)


def _launch(runs, every, states, collects, scale, root, d4rl_dir, jobs, keep_checkpoints, poll_s, report_s, argv,
            say) -> dict:
    record_launch(root, argv, scale=scale, jobs=jobs, runs=[asdict(r) for r in runs])

    result = {n: s.kind for n, s in states.items() if s.kind in ("done", "unavailable", "conflict")}
    for ds, st in collects.values():
        states[f"collect:{ds.name}"] = st
        if st.kind in ("done", "unavailable"):
            result[f"collect:{ds.name}"] = st.kind
    # collections first: each starts as soon as its sources are done, and unblocks its runs
    pending = [ds for ds, st in collects.values() if st.kind in ("todo", "wait")] + \
              [r for r in runs if states[r.name].kind in ("todo", "resume", "restart")]
    progress = Progress([r for r in runs if states[r.name].kind not in ("unavailable", "conflict")],
                        {n: (s.step if s.kind != "done" else 10 ** 12) for n, s in states.items()})
    sources = {r.name: r for r in every}
    running: dict[str, tuple[Run | Dataset, subprocess.Popen, str]] = {}
    last_report = 0.0

    name_of = task_name

    def drop(names) -> None:
        drop_done(names, root, every, keep_checkpoints)

    drop([r.name for r in runs if states[r.name].kind == "done"])
    for ds, st in collects.values():  # collected by an earlier launch: its facts into datasets.json
        if st.kind == "done":
            record_dataset(ds, root)

    def readiness(task) -> State:
        """todo = start it now; wait; unavailable; done (a dataset that appeared meanwhile)."""
        if isinstance(task, Dataset):
            failed = [src for src in task.sources if result.get(src) == "failed"]
            if failed:
                return State("unavailable", f"its source {', '.join(failed)} failed (see {root}/logs)")
            active = {name_of(t) for t in pending if isinstance(t, Run)} | set(running)
            return collect_state(task, root, sources, active)
        ds = task.dataset and task.dataset.collection
        if ds is None or not ds.collected or is_collected(ds, root):
            return State("todo")
        if ds in pending or f"collect:{ds.name}" in running:
            return State("wait")
        collect = states[f"collect:{ds.name}"]
        return State("unavailable", f"dataset {ds.name} was not collected ({collect.kind}: {collect.detail})")

    def start(task) -> None:
        name = name_of(task)
        cmd, env, log_file, label = prepare(task, root, d4rl_dir, say)
        running[name] = (task, start_process(cmd, env, log_file), log_file)
        say(f"[grid] start {name} ({label}); log {os.path.relpath(log_file, ROOT)}")

    def report():
        done = sum(result.get(n) == "done" for n in progress.runs)
        failed = sum(v == "failed" for v in result.values())
        say(progress.line(done, [n for n in running if n in progress.runs], failed, len(progress.runs)))

    try:
        while pending or running:
            for task in list(pending):
                if len(running) >= jobs:
                    break
                st = readiness(task)
                if st.kind == "wait":
                    continue
                pending.remove(task)
                if st.kind == "todo":
                    start(task)
                    continue
                name = name_of(task)
                result[name], states[name] = st.kind, st
                progress.drop(name)
                if st.kind == "unavailable":
                    say(f"[grid] {name} unavailable: {st.detail}")
            if pending and not running:  # only waiting tasks, and nothing that could unblock them
                for task in pending:
                    result[name_of(task)] = "unavailable"
                    states[name_of(task)] = State("unavailable", "waited for a dataset that no task writes")
                pending.clear()
            time.sleep(poll_s if running else 0)
            for name, (task, proc, log_path) in list(running.items()):
                if isinstance(task, Run):
                    progress.update(name, _progress_step(task, root))
                rc = proc.poll()
                if rc is None:
                    continue
                del running[name]
                ok = is_collected(task, root) if isinstance(task, Dataset) else run_state(task, root).kind == "done"
                if ok:
                    result[name] = "done"
                    if isinstance(task, Dataset):
                        record_dataset(task, root)
                    if rc != 0:
                        say(f"[grid] warning: {name} exited with code {rc} after writing its last evaluation")
                    drop(freed_by(task))
                    say(f"[grid] done  {name}")
                else:
                    result[name], states[name] = "failed", State("failed", f"see {os.path.relpath(log_path, ROOT)}")
                    say(f"[grid] FAILED {name} (exit code {rc}); {log_tail(log_path)}")
                report()
                last_report = time.time()
            if time.time() - last_report > report_s:
                report()
                last_report = time.time()
    except BaseException:  # Ctrl-C, SIGTERM, a bug: stop the children, which resume on the next launch
        for _, proc, _ in running.values():
            proc.terminate()
        for _, proc, _ in running.values():
            proc.wait()
        say(f"[grid] interrupted; stopped {', '.join(running) or 'nothing'}; launch again to resume")
        raise

    report_end(result, states, say)
    return result


def report_end(result: dict, states: dict, say, kinds=("done", "failed", "conflict", "unavailable")) -> None:
    say("[grid] finished: " + ", ".join(f"{k} {sum(v == k for v in result.values())}" for k in kinds))
    for name, kind in result.items():
        if kind in ("failed", "conflict", "unavailable"):
            say(f"  {kind.upper()}: {name}: {states[name].detail}")


# ---------------------------------------------------------------------------------------------
# Cluster backend: one submitit job per task
# ---------------------------------------------------------------------------------------------
@dataclass
class Cluster:
    """Job resources. backend 'slurm' submits to SLURM; 'submitit-local' is submitit's LocalExecutor
    (jobs are local processes, for the tests: no partition, and no job waits for another)."""
    backend: str = "slurm"
    partition: str | None = None
    time_min: int = 1440
    gpus: int = 1
    cpus: int = 4
    array_parallelism: int | None = None
    folder: str | None = None  # submitit's folder (job scripts, pickles, job logs); default <root>/logs/slurm
    max_requeues: int = 20  # times a job is requeued after reaching time_min (preemptions do not count)
    wait: bool = False

    def resources(self) -> str:
        return f"{self.gpus} GPU, {self.cpus} CPU, {self.time_min} min" + \
            (f", partition {self.partition}" if self.partition else "")


STOP_GRACE_S = 60.0  # a stopped training process gets this long to exit (SLURM signals 90 s before the end)


class GridJob:
    """One task of the grid as a submitit job. It builds its command when it starts, from the disk
    (`prepare`), so a requeued job resumes from the run's checkpoint with --resume. submitit requeues a
    callable that has a `checkpoint` method (helpers.Checkpointable's protocol) when its job is preempted
    or reaches its time limit: that method stops the training process (SIGINT, as Ctrl-C: the run keeps
    its last checkpoint) and hands submitit a fresh copy of the job to run again."""

    def __init__(self, task: Run | Dataset, root: str, d4rl_dir: str, every: list[Run], keep_checkpoints: bool):
        self.task, self.root, self.d4rl_dir, self.every, self.keep_checkpoints = task, root, d4rl_dir, every, \
            keep_checkpoints
        self._proc: subprocess.Popen | None = None

    def __call__(self) -> str:
        name = task_name(self.task)
        if not task_done(self.task, self.root):
            if isinstance(self.task, Run) and (st := run_state(self.task, self.root)).kind not in ACTIVE:
                raise RuntimeError(f"{name} is {st.kind}: {st.detail}")
            cmd, env, log_file, label = prepare(self.task, self.root, self.d4rl_dir, print)
            print(f"[grid] start {name} ({label}); log {log_file}", flush=True)
            sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
            self._proc = start_process(cmd, env, log_file, lambda: _job_child(sig))
            while (rc := self._proc.poll()) is None:
                time.sleep(1.0)
            if not task_done(self.task, self.root):
                raise RuntimeError(f"{name} failed (exit code {rc}); {log_tail(log_file)}")
        if isinstance(self.task, Dataset):
            record_dataset(self.task, self.root)
        drop_done(freed_by(self.task), self.root, self.every, self.keep_checkpoints)
        return "done"

    def checkpoint(self):
        from submitit.helpers import DelayedSubmission

        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            deadline = time.time() + STOP_GRACE_S
            while proc.poll() is None and time.time() < deadline:  # poll, not wait: this runs in a signal handler
                time.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
        print(f"[grid] {task_name(self.task)} interrupted; requeued, to resume from its last checkpoint", flush=True)
        return DelayedSubmission(GridJob(self.task, self.root, self.d4rl_dir, self.every, self.keep_checkpoints))


def _job_child(preempt_signal) -> None:
    """In a job's training process: the preemption signal is the job's to handle (SLURM sends it to every
    process of the job); the job stops this process with SIGINT."""
    _die_with_parent()
    signal.signal(preempt_signal, signal.SIG_IGN)


def prepare_dry(task: Run | Dataset, root: str, d4rl_dir: str) -> list[str]:
    """The command a job would run now (a job computes its own when it starts)."""
    if isinstance(task, Dataset):
        return collect_command(task, root)
    st = run_state(task, root)
    return command(task, root, st if st.kind == "resume" else State("todo"), d4rl_dir)


def job_groups(runs, states, collects, cluster: Cluster, queued: dict, say) -> list[tuple[list, list[str]]]:
    """[(tasks, names of the tasks they wait for)], in submission order: the runs that can start (one job
    array), then each dataset collection after its source runs, then the runs on it after it. On the
    submitit-local backend, runs that need a collection are unavailable (its jobs cannot wait)."""
    pending = {ds.name for ds, st in collects.values() if st.kind in ("todo", "wait", "queued")}
    ready = [r for r in runs if states[r.name].kind in ACTIVE]
    first = [r for r in ready if not (r.dataset and r.dataset.collection.name in pending)]
    groups = [(first, [])] if first else []
    for ds, st in list(collects.values()):
        if ds.name not in pending:
            continue
        on_it = [r for r in ready if r.dataset and r.dataset.collection.name == ds.name]
        if cluster.backend != "slurm":
            why = f"the {cluster.backend} backend cannot make jobs wait for a collection"
            collects[ds.name] = (ds, State("unavailable", why))
            for r in on_it:
                states[r.name] = State("unavailable", f"dataset {ds.name} is not collected yet, and {why}")
                say(f"[grid] {r.name} unavailable: {states[r.name].detail}")
            continue
        if st.kind != "queued":
            names = {r.name for r in first} | set(queued)
            groups.append(([ds], [s for s in ds.sources if s in names]))
        if on_it:
            groups.append((on_it, [f"collect:{ds.name}"]))
    return groups


def queued_jobs(root: str, backend: str) -> dict[str, str]:
    """{task name: job id} of the tasks earlier launches submitted whose job is still queued or running."""
    last: dict[str, str] = {}
    try:
        with open(os.path.join(root, "launches.json")) as f:
            for entry in json.load(f):
                if entry.get("backend") == backend:
                    last.update(entry.get("submitted", {}))
    except (OSError, ValueError):
        return {}
    if not last:
        return {}
    if backend == "slurm":
        import getpass
        try:
            out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i"], capture_output=True,
                                 text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return {}  # no SLURM here (a dry run on another machine)
        alive = set(out.stdout.split())
    else:  # submitit-local: a job id is its controller's pid
        alive = {i for i in last.values() if _pid_alive(int(i))}
    return {name: i for name, i in last.items() if i in alive}


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone
    except (OSError, IndexError):
        return False


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ValueError("--backend slurm needs submitit: pip install -e '.[cluster]'") from None
    return submitit


def _executor(submitit, cluster: Cluster, folder: str, name: str, after: list[str]):
    if cluster.backend == "submitit-local":
        ex = submitit.LocalExecutor(folder, max_num_timeout=cluster.max_requeues)
        ex.update_parameters(timeout_min=cluster.time_min, gpus_per_node=cluster.gpus)
        return ex
    ex = submitit.AutoExecutor(folder, cluster="slurm", slurm_max_num_timeout=cluster.max_requeues)
    extra = {"slurm_dependency": "afterok:" + ":".join(after),
             "slurm_additional_parameters": {"kill-on-invalid-dep": "yes"}} if after else {}
    ex.update_parameters(name=name, timeout_min=cluster.time_min, gpus_per_node=cluster.gpus,
                         cpus_per_task=cluster.cpus, slurm_partition=cluster.partition,
                         slurm_array_parallelism=cluster.array_parallelism, **extra)
    return ex


def _submit(groups, runs, every, states, collects, scale, root, d4rl_dir, cluster: Cluster, keep_checkpoints,
            queued, poll_s, argv, say) -> dict:
    submitit = _submitit()
    from reproduce.launch import GridJob  # not __main__'s: a job unpickles it by name, without its globals
    folder = cluster.folder or os.path.join(root, "logs", "slurm")
    ids = dict(queued)
    jobs: dict[str, object] = {}
    try:
        # the jobs import reproduce from this checkout; submitit's jobs inherit the submitter's environment
        with submitit.helpers.environment_variables(PYTHONPATH=process_env(root)["PYTHONPATH"]):
            for tasks, after in groups:
                ex = _executor(submitit, cluster, folder, f"fujimoto-jax-{scale}", [ids[a] for a in after])
                for task, job in zip(tasks, ex.submit_array([GridJob(t, root, d4rl_dir, every, keep_checkpoints)
                                                             for t in tasks])):
                    jobs[task_name(task)] = job
                    ids[task_name(task)] = job.job_id
                    say(f"[grid] submitted {task_name(task)}: job {job.job_id}")
    except (RuntimeError, subprocess.CalledProcessError) as e:  # no srun/sbatch, sbatch refused the job
        raise ValueError(f"submission failed: {e}") from None
    finally:
        if jobs:  # so that the next launch knows them
            record_launch(root, argv, scale=scale, backend=cluster.backend, resources=asdict(cluster),
                          submitted={n: j.job_id for n, j in jobs.items()}, runs=[asdict(r) for r in runs])
    for ds, st in collects.values():
        states[f"collect:{ds.name}"] = st
    result = {n: st.kind for n, st in states.items() if st.kind not in ACTIVE}
    result.update({n: "submitted" for n in jobs})
    if not cluster.wait:
        watch = "squeue -u $USER" if cluster.backend == "slurm" else "ps"
        say(f"[grid] {len(jobs)} jobs submitted; watch them with `{watch}`, their logs in "
            f"{os.path.relpath(folder, ROOT)} and {os.path.relpath(os.path.join(root, 'logs'), ROOT)}; "
            "launch again to see the runs' states (queued jobs are not submitted twice), `make summary` once done")
        return result
    say(f"[grid] waiting for {len(jobs)} jobs")
    names = {id(j): n for n, j in jobs.items()}
    for job in submitit.helpers.as_completed(list(jobs.values()), poll_frequency=poll_s):
        name = names[id(job)]
        try:
            job.result()
            result[name] = "done"
            say(f"[grid] done  {name}")
        except Exception as e:  # the job's error, with its traceback
            result[name], states[name] = "failed", State("failed", f"see {job.paths.stdout} and {job.paths.stderr}")
            say(f"[grid] FAILED {name} (job {job.job_id}): {str(e).strip().splitlines()[-1]}")
    report_end(result, states, say, ("done", "failed", "queued", "conflict", "unavailable"))
    return result


def _acquire_lock(root: str) -> str:
    """One launcher per results folder: two would run the same runs into the same folders."""
    path = os.path.join(root, ".launcher.pid")
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = f.read().strip()
                os.kill(int(holder), 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                if os.path.exists(path):
                    os.remove(path)  # stale: that launcher is gone
                continue
            except PermissionError:
                pass
            raise ValueError(f"another launcher (pid {holder}) is using {root}; wait for it or stop it")
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return path
    raise ValueError(f"could not take the lock {path}")


def _libc_prctl():
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()  # resolved here: the child between fork and exec should import nothing


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the launcher dies, even by SIGKILL (Linux), so no orphan keeps
    writing a run that the next launcher resumes."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _progress_step(run: Run, root: str) -> int:
    """Last evaluated step of a running run (every seed evaluates at the same steps)."""
    steps = eval_steps(run.run_dir(root))
    return max((max(v) for v in steps.values() if v), default=0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=SCALES, default="quick",
                   help="full = the papers' budgets and seeds (meant for a GPU); quick = the reduced grid")
    p.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", 1)),
                   help="processes run at once (default $JOBS or 1)")
    p.add_argument("--papers", nargs="*", help="only these paper ids (grid file ids)")
    p.add_argument("--algos", nargs="*", help="only these algorithms")
    p.add_argument("--envs", nargs="*", help="only these env ids (offline runs: dataset names)")
    p.add_argument("--d4rl-dir", default=None,
                   help="folder of the D4RL .hdf5 files the offline grids name (default $D4RL_DIR or ~/.d4rl/datasets)")
    p.add_argument("--root", help="results folder of this scale (default results/runs/reproduce[-quick])")
    p.add_argument("--grid-dir", default=GRID_DIR, help="folder of the paper grid files")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep completed runs' checkpoints (large)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state, run nothing")
    p.add_argument("--no-summary", action="store_true", help="do not regenerate results/SUMMARY.md at the end")
    c = p.add_argument_group("cluster", "--backend slurm: one submitit job per run (pip install -e '.[cluster]')")
    c.add_argument("--backend", choices=("local", "slurm", "submitit-local"), default="local",
                   help="local = processes on this machine (default); slurm = submit jobs and return (or --wait); "
                        "submitit-local = submitit's local executor, for the tests")
    c.add_argument("--partition", help="SLURM partition (default: the cluster's)")
    c.add_argument("--time-min", type=int, default=Cluster.time_min,
                   help="time limit of a job in minutes; a job that reaches it is requeued and resumes "
                        "(default %(default)s)")
    c.add_argument("--gpus-per-job", type=int, default=Cluster.gpus, help="GPUs per job (default %(default)s)")
    c.add_argument("--cpus-per-job", type=int, default=Cluster.cpus, help="CPUs per job (default %(default)s)")
    c.add_argument("--array-parallelism", type=int, help="jobs of an array running at once (default submitit's, 256)")
    c.add_argument("--max-requeues", type=int, default=Cluster.max_requeues,
                   help="times a job is requeued after reaching --time-min (default %(default)s)")
    c.add_argument("--slurm-folder", help="submitit's folder: job scripts and logs (default <root>/logs/slurm)")
    c.add_argument("--wait", action="store_true", help="wait for the jobs, then regenerate the summary")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the children are stopped too
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    cluster = None if a.backend == "local" else Cluster(
        a.backend, a.partition, a.time_min, a.gpus_per_job, a.cpus_per_job, a.array_parallelism, a.slurm_folder,
        a.max_requeues, a.wait)
    try:
        result = launch(a.scale, a.root, a.grid_dir, a.jobs, a.papers, a.algos, a.envs, a.keep_checkpoints,
                        a.dry_run, argv=[sys.executable, "-m", "reproduce.launch"] + (argv or sys.argv[1:]),
                        d4rl_dir=a.d4rl_dir, cluster=cluster)
        if not a.dry_run and not a.no_summary and (cluster is None or cluster.wait):
            from reproduce import summarize
            if a.root:  # a custom results folder gets its own summary, beside it
                summarize.summarize(a.grid_dir, {a.scale: a.root}, os.path.join(a.root, "SUMMARY.md"),
                                    os.path.join(a.root, "summary.csv"), os.path.join(a.root, "plots"))
            elif summarize.main(["--grid-dir", a.grid_dir]):
                return 2  # it said why, in one line
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if any(v in ("failed", "conflict") for v in result.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
