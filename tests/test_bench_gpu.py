"""`make bench-gpu` (benchmarks/gpu_suite.py, issue 16) runs end to end: --tiny on this machine's backend."""

import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUITE = os.path.join(ROOT, "benchmarks", "gpu_suite.py")


def _suite(out, *flags):
    proc = subprocess.run([sys.executable, SUITE, "--tiny", "--out", str(out), *flags], cwd=ROOT, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (path,) = glob.glob(os.path.join(str(out), "gpu_suite_*_tiny.json"))
    with open(path) as f:
        report = json.load(f)
    with open(path[:-len(".json")] + ".md") as f:
        return report, f.read()


def test_tiny_suite_reports_every_config(tmp_path):
    """One subprocess per (algo, seeds), here TD3 on Hopper and MR.Q on DMC pixels with 2 seeds in 2 env workers
    (the test's subset of the 4 algos x 3 seed counts): a row each with its rate, compile time and memory column,
    and the machine, versions and commit; then a zero budget skips every config with a note instead of overrunning."""
    report, md = _suite(tmp_path / "run", "--algos", "td3", "mrq-pixels", "--seeds", "2", "--env-workers", "2")
    rows = {(r["algo"], r["num_seeds"]): r for r in report["rows"]}
    assert set(rows) == {("td3", 2), ("mrq-pixels", 2)}
    for r in rows.values():
        assert "error" not in r, r["error"]
        assert r["loop_steps_per_s"] > 0 and r["seed_steps_per_s"] == 2 * r["loop_steps_per_s"]
        assert r["compile_s"] > 0 and r["process_s"] > 0 and r["replay_mb_per_seed"] > 0
        assert r["env_workers"] == 2  # the files' --env-workers: the seeds' envs step in 2 worker processes
        if r["device"]["platform"] == "cpu":
            assert r["peak_mb_per_seed"] is None  # no memory stats on the CPU: "n/a"
    assert rows[("mrq-pixels", 2)]["env_id"] == "dmc-pixels:walker-walk"
    assert rows[("mrq-pixels", 2)]["args"]["target_update_freq"] == 2  # timed window: whole target periods
    assert report["machine"]["host_cpus"] and report["git"]["commit"] and report["versions"]["jax"]
    assert report["tiny"] and "NOT a speed measurement" in md
    assert sum(line.startswith(("| td3 |", "| mrq-pixels |")) for line in md.splitlines()) == 2
    assert "TD3, 2 seeds x 1M steps on Hopper-v4" in md

    report, md = _suite(tmp_path / "skip", "--algos", "td3", "--seeds", "1", "--budget", "0")
    assert report["rows"] == [] and "td3 with 1 seed skipped" in report["notes"][0] and "skipped" in md
