"""`python -m reproduce.launch --backend slurm` through submitit. No SLURM here: the jobs run with
submitit's LocalExecutor (`--backend submitit-local`), the sbatch script is checked as submitit
writes it, and the SLURM submissions themselves are recorded by a stand-in executor."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from reproduce import grid, launch, summarize

TINY = '["--learning-starts", "100", "--hidden-dim", "32", "--batch-size", "32", "--checkpoint-freq", "500"]'


def write_grid(folder, body, name="t", extra=""):
    folder.mkdir(exist_ok=True)
    ref = folder / "ref.csv"
    ref.write_text(",".join(summarize.REFERENCE_HEADER) + "\n")
    (folder / f"{name}.toml").write_text(f'[paper]\nid = "{name}"\ntitle = "{name}"\nreference = "{ref}"\n'
                                         f'[scale.quick]\n{body}\n{extra}')
    return str(folder)


def tiny_grid(tmp_path, envs='["Pendulum-v1"]', steps=2000):
    return write_grid(tmp_path / "g", f'algos = ["td3"]\nenvs = {envs}\nseeds = 1\nbudgets = [{steps}]\n'
                                      f'eval_freq = 500\neval_episodes = 1\nargs = {TINY}')


def fake_done(root, run):
    """A completed run on disk, as the algorithms write it."""
    run_dir = run.run_dir(root)
    os.makedirs(run_dir)
    args = {"env_id": run.env_id, "seed": 0, "num_seeds": run.seeds, "total_timesteps": run.steps,
            "eval_freq": run.eval_freq, "eval_episodes": run.eval_episodes, **launch.parse_flags(run.args)}
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"algo": run.algo, "args": args}, f)
    with open(os.path.join(run_dir, "eval.csv"), "w") as f:
        f.write("algo,env,seed,step,return,time_s\n" + "".join(
            f"{run.algo},{run.env_id},0,{t},-1000,1.0\n" for t in range(0, run.steps + 1, run.eval_freq)))


def eval_rows(run_dir):
    with open(os.path.join(run_dir, "eval.csv"), newline="") as f:
        return [{k: v for k, v in r.items() if k != "time_s"} for r in csv.DictReader(f)]


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def test_a_local_executor_job_interrupted_after_its_checkpoint_is_requeued_and_resumes(tmp_path):
    """One TD3 run (1 seed, 2,000 steps, a checkpoint every 500) as a submitit job, launched with --wait.
    Once its first checkpoint exists the job gets submitit's preemption/timeout signal (USR2), sent to the
    job's task as the LocalExecutor's controller does it near a time limit (LocalJob._interrupt signals the
    controller itself, which has no handler for it). GridJob.checkpoint stops the training process, submitit
    requeues the job in place (exit code 144: the controller starts the task again), and the job, which
    builds its command at start, resumes the run with --resume. The result equals an uninterrupted run of
    the same command, time_s aside, and config.json records one resume."""
    d = tiny_grid(tmp_path)
    root, ref_root = str(tmp_path / "runs"), str(tmp_path / "ref")
    (run,) = grid.expand(grid.load_papers(d), "quick")
    ref = subprocess.Popen(launch.command(run, ref_root, launch.State("todo")), cwd=grid.ROOT,
                           env=launch.process_env(ref_root), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    out, result = io.StringIO(), {}
    cluster = launch.Cluster("submitit-local", time_min=10, gpus=0, wait=True)
    thread = threading.Thread(target=lambda: result.update(launch.launch("quick", root, d, poll_s=0.5, out=out,
                                                                         cluster=cluster)))
    thread.start()
    try:
        run_dir, deadline = run.run_dir(root), time.time() + 120
        while not launch.has_checkpoint(run_dir) and thread.is_alive() and time.time() < deadline:
            time.sleep(0.05)
        assert launch.has_checkpoint(run_dir) and launch.run_state(run, root).kind == "resume", out.getvalue()
        with open(os.path.join(root, "launches.json")) as f:
            controller = int(json.load(f)[-1]["submitted"][run.name])
        (task,) = children(controller)
        os.kill(task, signal.SIGUSR2)
    finally:
        thread.join(180)
        ref.wait(120)
    log = out.getvalue()
    assert result == {run.name: "done"}, log
    assert "[grid] done  td3/Pendulum-v1" in log and "[grid] finished: done 1, failed 0" in log
    job_log = open(os.path.join(root, "logs", "slurm", f"{controller}_0_log.out")).read()
    assert "interrupted; requeued" in job_log and "start td3/Pendulum-v1 (resume from its last checkpoint" in job_log
    run_log = open(os.path.join(root, "logs", "td3__Pendulum-v1.log")).read()
    assert run_log.count("\n# ") == 2 and f"--resume {run_dir}" in run_log  # one start, one resume
    assert eval_rows(run_dir) == eval_rows(run.run_dir(ref_root))
    assert [int(r["step"]) for r in eval_rows(run_dir)] == [0, 500, 1000, 1500, 2000]
    with open(os.path.join(run_dir, "config.json")) as f:
        assert len(json.load(f)["resumed"]) == 1
    assert not launch.has_checkpoint(run_dir)  # dropped once complete, as with the local backend


def test_dry_run_lists_the_jobs_without_submitit(tmp_path, monkeypatch, capsys):
    """--dry-run prints each job (name, resources, command) and needs no submitit; a done run is no job."""
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` raises ImportError
    d = tiny_grid(tmp_path, '["Pendulum-v1", "MountainCarContinuous-v0"]')
    root = str(tmp_path / "runs")
    done, todo = grid.expand(grid.load_papers(d), "quick")
    fake_done(root, done)
    assert launch.main(["--grid-dir", d, "--root", root, "--backend", "slurm", "--partition", "gpu", "--time-min",
                        "120", "--gpus-per-job", "1", "--cpus-per-job", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"job {todo.name}" in out and f"job {done.name}" not in out and f"{done.name:40s}" in out
    assert "[1 GPU, 8 CPU, 120 min, partition gpu]" in out
    assert " ".join(launch.command(todo, root, launch.State("todo"))) in out
    assert sorted(os.listdir(root)) == ["td3"]  # nothing submitted, nothing written


def test_missing_submitit_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)
    d = tiny_grid(tmp_path)
    assert launch.main(["--grid-dir", d, "--root", str(tmp_path / "runs"), "--backend", "slurm"]) == 2
    assert capsys.readouterr().err == "error: --backend slurm needs submitit: pip install -e '.[cluster]'\n"


class FakeExecutor:
    """Records what would go to SLURM: the jobs and the ids they wait for (afterok)."""
    log: list = []

    def __init__(self, after):
        self.after = after

    def submit_array(self, fns):
        jobs = []
        for fn in fns:
            FakeExecutor.log.append((launch.task_name(fn.task), self.after))
            jobs.append(type("Job", (), {"job_id": f"{os.getpid()}" if FakeExecutor.alive else f"9{len(self.log)}"})())
        return jobs


def test_submission_skips_done_and_queued_runs_and_chains_collections(tmp_path, monkeypatch):
    """Done runs are not submitted; a run whose job is still queued is not submitted twice; a dataset
    collection waits for its source run's job and the runs on it for the collection's job."""
    monkeypatch.setattr(launch, "_executor", lambda submitit, cluster, folder, name, after: FakeExecutor(after))
    FakeExecutor.log, FakeExecutor.alive = [], True
    d = tiny_grid(tmp_path, '["Pendulum-v1", "MountainCarContinuous-v0"]')
    root = str(tmp_path / "runs")
    done, todo = grid.expand(grid.load_papers(d), "quick")
    fake_done(root, done)
    local = launch.Cluster("submitit-local")
    out = io.StringIO()
    assert launch.launch("quick", root, d, out=out, cluster=local) == {done.name: "done", todo.name: "submitted"}
    assert FakeExecutor.log == [(todo.name, [])] and "1 jobs submitted" in out.getvalue()
    assert json.load(open(os.path.join(root, "launches.json")))[-1]["submitted"] == {todo.name: str(os.getpid())}
    out = io.StringIO()  # its job (this process's id here) is alive: queued, not submitted again
    assert launch.launch("quick", root, d, out=out, cluster=local) == {done.name: "done", todo.name: "queued"}
    assert len(FakeExecutor.log) == 1 and f"[queued: job {os.getpid()}]" in out.getvalue()

    # an offline grid: TD3 on Pendulum, then the dataset collected from it, then TD3+BC on the dataset
    FakeExecutor.log, FakeExecutor.alive = [], False
    d = write_grid(tmp_path / "o", 'algos = ["td3"]\nenvs = ["Pendulum-v1"]\nseeds = 1\nbudgets = [400]\n'
                   'eval_freq = 200\neval_episodes = 1', "on")
    write_grid(tmp_path / "o", 'algos = ["td3_bc"]\nenvs = ["pend"]\nseeds = 1\nbudgets = [200]\neval_freq = 100\n'
               'eval_episodes = 1', "off", '[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", '
               'source = "td3/Pendulum-v1", steps = 400 }\n')
    root = str(tmp_path / "runs2")
    assert launch.launch("quick", root, d, out=io.StringIO(), cluster=launch.Cluster()) == {
        "td3/Pendulum-v1": "submitted", "collect:pend": "submitted", "td3_bc/pend": "submitted"}
    assert FakeExecutor.log == [("td3/Pendulum-v1", []), ("collect:pend", ["91"]), ("td3_bc/pend", ["92"])]
    # submitit-local jobs cannot wait for one another: the runs on the dataset are unavailable there
    out = io.StringIO()
    result = launch.launch("quick", str(tmp_path / "runs3"), d, out=out, cluster=local)
    assert result == {"td3/Pendulum-v1": "submitted", "collect:pend": "unavailable", "td3_bc/pend": "unavailable"}
    assert "cannot make jobs wait for a collection" in out.getvalue()


def test_the_sbatch_script_has_the_resources_the_dependency_and_the_requeue_signal(tmp_path, monkeypatch):
    """submitit's own SLURM executor (srun faked present) writes the job's sbatch script."""
    submitit = pytest.importorskip("submitit")
    monkeypatch.setattr(submitit.slurm.slurm.shutil, "which", lambda name: f"/usr/bin/{name}")
    cluster = launch.Cluster(partition="gpu", time_min=120, gpus=1, cpus=8, array_parallelism=4)
    ex = launch._executor(submitit, cluster, str(tmp_path), "fujimoto-jax-quick", ["12_0", "13"])
    script = ex._executor._make_submission_file_text("python -m submitit.core._submit x", "uid")
    for line in ("--partition=gpu", "--time=120", "--gpus-per-node=1", "--cpus-per-task=8", "--signal=USR2@90",
                 "--dependency=afterok:12_0:13", "--kill-on-invalid-dep=yes", "--job-name=fujimoto-jax-quick"):
        assert f"#SBATCH {line}\n" in script, script
    assert ex._executor.max_num_timeout == cluster.max_requeues and ex._executor.parameters["array_parallelism"] == 4
