"""The run contract (envs/runs.py): one-line user errors, checkpoints (round trip, incremental replay,
refusals, damaged files), --resume extension, provenance."""

import csv
import dataclasses
import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from algos import td3, td7
from envs import runs
from test_runs import _eval_rows, _flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(env_id="Pendulum-v1", total_timesteps=600, learning_starts=200, eval_freq=300, eval_episodes=1,
            batch_size=32, hidden_dim=16)


def _cli_error(capsys, argv, module=td3):
    """Run a file's CLI in-process; returns the single stderr line of its user error (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        runs.cli(module.Args, module.train, module.evaluate_checkpoint, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------------------------
# User errors: one line, exit 2, no run folder left behind
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags,message", [
    (["--discount", "1.5"], "error: --discount must be in (0, 1], got 1.5"),
    (["--tau", "0"], "--tau must be in (0, 1], got 0.0"),
    (["--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--policy-noise", "-0.1"], "--policy-noise must be >= 0"),
    (["--expl-noise", "nan"], "--expl-noise must be >= 0, got nan"),
    (["--actor-lr", "0"], "--actor-lr must be > 0"),
    (["--num-seeds", "0"], "--num-seeds must be >= 1"),
    (["--eval-episodes", "0"], "--eval-episodes must be >= 1"),
    (["--policy-freq", "0"], "--policy-freq must be >= 1"),
    (["--batch-size", "512", "--buffer-size", "256"], "--batch-size (512) must be <= --buffer-size (256)"),
    (["--capture-video"], "--capture-video only works with --eval-only"),
    (["--eval-only"], "--eval-only needs --checkpoint"),
    (["--save-model", "--checkpoint-freq", "450"], "--checkpoint-freq must be a positive multiple of --eval-freq (300)"),
    (["--env-id", "Hoper-v4"], "Did you mean: Hopper-v4"),
    (["--env-id", "CartPole-v1"], "continuous (Box) action space"),
    (["--env-id", "nosuite:thing"], "Unknown env id prefix"),
])
def test_bad_flags_get_one_line_and_exit_2(capsys, tmp_path, flags, message):
    results = tmp_path / "results"
    argv = ["--results-dir", str(results), *_flags({k: v for k, v in TINY.items() if k != "env_id"})]
    argv = (["--env-id", "Pendulum-v1"] if "--env-id" not in flags else []) + argv + flags
    assert message in _cli_error(capsys, argv)
    assert not results.exists()  # no half-made run folder


def test_unwritable_results_dir_and_existing_run(capsys, tmp_path):
    (tmp_path / "a_file").write_text("")
    err = _cli_error(capsys, ["--env-id", "Pendulum-v1", "--results-dir", str(tmp_path / "a_file" / "runs")])
    assert "--results-dir" in err and "not writable" in err
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "config.json").write_text("{}")
    err = _cli_error(capsys, ["--env-id", "Pendulum-v1", "--results-dir", str(tmp_path / "runs"), "--run-name", "taken"])
    assert "already holds a run" in err and "--resume" in err
    assert os.listdir(tmp_path / "runs" / "taken") == ["config.json"]  # untouched


def test_missing_extra_is_a_user_error_and_leaves_no_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if the `tb` extra were not installed
    argv = ["--env-id", "Pendulum-v1", "--results-dir", str(tmp_path / "r"), "--tb", "--hidden-dim", "8"]
    assert "--tb needs tensorboardX: pip install -e '.[tb]'" in _cli_error(capsys, argv)
    assert not (tmp_path / "r").exists()


def test_default_run_name_has_no_colon_and_the_folder_is_printed(tmp_path, capsys):
    run = runs.Run("td3", td3.Args(env_id="dmc:cartpole-swingup", results_dir=str(tmp_path)), td3.Args)
    assert ":" not in os.path.basename(run.dir) and "dmc-cartpole-swingup" in run.dir
    assert not os.path.exists(run.dir)  # nothing is created before start()


def test_cli_subprocess_error_has_no_traceback_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "algos", "td7.py"), "--env-id", "Pendulum-v1",
                           "--discount", "1.5", "--results-dir", str(tmp_path / "r")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --discount must be in (0, 1], got 1.5"
    assert not (tmp_path / "r").exists()


def test_help_has_no_doubled_defaults_and_names_dmc():
    for module in ("td3", "ddpg", "td7", "mrq", "drq", "td3_lap", "td3_pal", "td3_per"):
        out = subprocess.run([sys.executable, os.path.join(ROOT, "algos", f"{module}.py"), "--help"],
                             capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="400")).stdout
        for line in out.splitlines():
            assert line.count("(default") <= 1, line
        assert "dmc:" in out, module


# ---------------------------------------------------------------------------------------------
# Checkpoints: round trip, incremental replay with wrap-around, refusals, damaged files
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class FakeArgs(runs.RunArgs):
    env_id: str = "Fake-v0"
    seed: int = 0
    num_seeds: int = 2
    total_timesteps: int = 100
    eval_freq: int = 10
    eval_episodes: int = 1
    width: int = 3


def _ring(n, cap, written, width=3):
    """A buffer whose slot holds the counter that wrote it: [n, cap, width] and [n, cap]."""
    obs, tag = np.full((n, cap, width), -1.0, np.float32), np.full((n, cap), -1, np.int32)
    for i, w in enumerate(written):
        for c in range(max(0, w - cap), w):
            obs[i, c % cap] = c + 1000 * i
            tag[i, c % cap] = c
    return {"obs": jnp.asarray(obs), "tag": jnp.asarray(tag)}


def _run(tmp_path, **kw):
    run = runs.Run("fake", FakeArgs(results_dir=str(tmp_path), run_name="r", save_model=True, **kw), FakeArgs)
    run.start({"capacity": 8})
    return run


def test_checkpoint_round_trip_with_incremental_wrapping_replay(tmp_path):
    cap, run = 8, _run(tmp_path)
    learner = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.array([3, 4], jnp.int32)}
    sizes, schedule = [], [[3, 5], [9, 6], [14, 20], [15, 21]]  # seeds write at their own pace, wrapping twice
    for k, written in enumerate(schedule):
        host = {"t": np.array(written), "rng": np.random.default_rng(k).bit_generator.state, "list": [1, (2, 3)]}
        sizes.append(run.save(k, {"learner": learner}, host, ring=_ring(2, cap, written), written=written))
    # each save wrote only the slots written since the previous one (at most the capacity)
    assert sizes[-1]["chunk_bytes"] < sizes[2]["chunk_bytes"]
    meta = json.load(open(tmp_path / "r" / "checkpoint" / "meta.json"))
    assert [(c["start"], c["end"]) for c in meta["ring"]["chunks"]] == [([3, 5], [9, 6]), ([9, 12], [14, 20]),
                                                                        ([14, 20], [15, 21])]
    # chunks whose every slot was overwritten are gone from the meta and from the disk
    files = sorted(os.listdir(tmp_path / "r" / "replay"))
    assert files == sorted(c["file"] for c in meta["ring"]["chunks"]) and "chunk-000001.npz" not in files
    ckpt = runs.Checkpoint(str(tmp_path / "r"), "fake")
    template = _ring(2, cap, [0, 0])
    trees, ring = ckpt.load({"learner": learner}, template)
    expected = _ring(2, cap, schedule[-1])
    for k in ("obs", "tag"):
        np.testing.assert_array_equal(ring[k], expected[k])
    np.testing.assert_array_equal(trees["learner"]["w"], learner["w"])
    assert ckpt.step == 3 and ckpt.host["t"].dtype == np.array([1]).dtype
    np.testing.assert_array_equal(ckpt.host["t"], [15, 21])
    assert ckpt.host["rng"] == np.random.default_rng(3).bit_generator.state and ckpt.host["list"] == [1, [2, 3]]
    assert not any(f.endswith(".pkl") for _, _, fs in os.walk(tmp_path) for f in fs)


def test_a_grown_buffer_loads_into_a_larger_capacity(tmp_path):
    run = _run(tmp_path)
    prio = {"value": jnp.arange(12.0).reshape(2, 6).at[:, 5:].set(0.0)}  # slots past the written ones are empty
    weights = {"w": jnp.ones((2, 6, 3))}  # shaped like a per-slot array, but not one: saved whole
    run.save(5, {"prio": prio, "learner": weights}, {}, ring=_ring(2, 6, [5, 4]), written=[5, 4], per_slot=("prio",))
    trees, ring = runs.Checkpoint(str(tmp_path / "r"), "fake").load({"prio": {"value": jnp.zeros((2, 10))}},
                                                                     _ring(2, 10, [0, 0]))
    np.testing.assert_array_equal(trees["prio"]["value"][:, :6], prio["value"])
    learner = runs.Checkpoint(str(tmp_path / "r"), "fake").load({"learner": weights})[0]["learner"]
    np.testing.assert_array_equal(learner["w"], weights["w"])
    assert not np.any(trees["prio"]["value"][:, 6:])
    expected = np.asarray(_ring(2, 10, [5, 4])["tag"])
    np.testing.assert_array_equal(ring["tag"], np.where(expected < 0, 0, expected))  # unwritten slots are zeros


def test_checkpoint_refusals_and_damaged_files(tmp_path):
    run = _run(tmp_path)
    learner = {"w": jnp.ones((2, 3))}
    run.save(10, {"learner": learner}, {"t": 10}, ring=_ring(2, 8, [10, 10]), written=[10, 10])
    run_dir = str(tmp_path / "r")
    with pytest.raises(runs.UserError, match="holds a fake checkpoint, not a td3 one"):
        runs.Checkpoint(run_dir, "td3")
    ckpt = runs.Checkpoint(run_dir, "fake")
    with pytest.raises(runs.UserError, match=r"does not fit: learner\['w'\] is float32\[2, 3\] there, "
                                             r"float32\[2, 4\] here; flags that differ: --width 4 \(saved: 3\)"):
        ckpt.load({"learner": {"w": jnp.ones((2, 4))}}, args=FakeArgs(width=4))
    with pytest.raises(runs.UserError, match="no run folder"):
        runs.Checkpoint(str(tmp_path / "nope"), "fake")
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.UserError, match="no checkpoint in .*--save-model"):
        runs.Checkpoint(str(tmp_path / "empty"), "fake")
    # a truncated array file, then a damaged chunk, then a damaged meta.json: one line each
    state = tmp_path / "r" / "checkpoint" / "state.npz"
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    with pytest.raises(runs.UserError, match="damaged checkpoint: .*state.npz has"):
        ckpt.load({"learner": learner})
    state.write_bytes(data[:-40] + b"\0" * 40)  # same size, broken zip directory
    with pytest.raises(runs.UserError, match="damaged checkpoint: cannot read .*state.npz"):
        ckpt.load({"learner": learner})
    state.write_bytes(data)
    chunk = tmp_path / "r" / "replay" / "chunk-000001.npz"
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(runs.UserError, match="damaged checkpoint: .*chunk-000001.npz has 100 bytes"):
        ckpt.load({"learner": learner}, _ring(2, 8, [0, 0]))
    (tmp_path / "r" / "checkpoint" / "meta.json").write_text('{"format": "fujimoto-jax checkpoint 1", "alg')
    with pytest.raises(runs.UserError, match="damaged checkpoint: cannot read .*meta.json"):
        runs.Checkpoint(run_dir, "fake")
    # an old pickle checkpoint is refused, never unpickled
    old = tmp_path / "old" / "checkpoint"
    old.mkdir(parents=True)
    (old / "host.pkl").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(runs.UserError, match="old pickle format, which is not loaded"):
        runs.Checkpoint(str(tmp_path / "old"), "fake")


def test_eval_only_reports_are_named_by_step_and_never_overwritten(tmp_path, capsys):
    paths = [runs.write_eval_report(str(tmp_path), 600, {"mean": k}) for k in range(3)]
    assert [os.path.basename(p) for p in paths] == ["eval_only_step600.json", "eval_only_step600-2.json",
                                                    "eval_only_step600-3.json"]
    assert [json.load(open(p))["mean"] for p in paths] == [0, 1, 2]


def test_eval_only_of_a_folder_without_checkpoint(capsys, tmp_path):
    (tmp_path / "run").mkdir()
    err = _cli_error(capsys, ["--eval-only", "--checkpoint", str(tmp_path / "run")])
    assert "no checkpoint in" in err
    assert os.listdir(tmp_path / "run") == []


# ---------------------------------------------------------------------------------------------
# --resume: extension, refusal of changed flags, completion; time_s across resumes
# ---------------------------------------------------------------------------------------------
def _rows(run_dir):
    with open(os.path.join(run_dir, "eval.csv")) as f:
        return list(csv.DictReader(f))


def test_resume_extends_a_finished_run_to_the_same_results_as_one_long_run(tmp_path, capsys):
    short = td3.train(td3.Args(**TINY, results_dir=str(tmp_path), run_name="short", save_model=True))
    run_dir = short["run_dir"]
    # complete: says so and changes nothing
    with pytest.raises(runs.RunComplete, match="is complete \\(600 steps\\); pass --total-timesteps"):
        td3.train(td3.Args(resume=run_dir))
    with pytest.raises(runs.UserError, match="--batch-size 64 differs from the run's 32"):
        td3.train(td3.Args(resume=run_dir, batch_size=64))
    with pytest.raises(runs.UserError, match="--total-timesteps may only extend a run: 300 is below the run's 600"):
        td3.train(td3.Args(resume=run_dir, total_timesteps=300))
    td3.train(td3.Args(resume=run_dir, total_timesteps=1200))
    long = td3.train(td3.Args(**dict(TINY, total_timesteps=1200), results_dir=str(tmp_path), run_name="long"))
    assert _eval_rows(run_dir) == _eval_rows(long["run_dir"])
    times = [float(r["time_s"]) for r in _rows(run_dir)]
    assert times == sorted(times) and times[-1] > times[2]  # wall time summed over the two sessions
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["args"]["total_timesteps"] == 1200 and config["resumed"][0]["step"] == 600


def test_killed_run_with_a_wrapping_buffer_and_checkpoint_freq_resumes_identically(tmp_path, monkeypatch):
    """buffer 400 < run 1500: the incremental chunks wrap; checkpoints every 600 steps only."""
    cfg = dict(TINY, total_timesteps=1500, buffer_size=400)
    full = td3.train(td3.Args(**cfg, results_dir=str(tmp_path), run_name="full"))
    saves, original = [], runs.Run.save

    def crash_after_second_save(self, step, *a, **kw):
        saves.append(step)
        out = original(self, step, *a, **kw)
        if len(saves) == 2:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(runs.Run, "save", crash_after_second_save)
    with pytest.raises(KeyboardInterrupt):
        td3.train(td3.Args(**cfg, results_dir=str(tmp_path), run_name="killed", save_model=True, checkpoint_freq=600))
    monkeypatch.setattr(runs.Run, "save", original)
    assert saves == [600, 1200]
    meta = json.load(open(tmp_path / "killed" / "checkpoint" / "meta.json"))
    assert [(c["start"], c["end"]) for c in meta["ring"]["chunks"]] == [([800], [1200])]  # 600..800 overwritten
    td3.train(td3.Args(resume=str(tmp_path / "killed")))
    assert _eval_rows(tmp_path / "killed") == _eval_rows(full["run_dir"])


def test_divergence_names_the_seed_value(tmp_path):
    with pytest.raises(runs.Diverged, match=r"non-finite (loss|action) .*for --seed 7, --seed 8"):
        td3.train(td3.Args(**TINY, seed=7, num_seeds=2, critic_lr=1e30, results_dir=str(tmp_path), run_name="nan"))
    rows = _rows(tmp_path / "nan")
    assert rows and {r["seed"] for r in rows} == {"7", "8"} and all(np.isfinite(float(r["return"])) for r in rows)


def test_provenance_ignores_results_changes(tmp_path):
    """git_info's dirty flag reads tracked files outside results/ only."""
    repo = tmp_path / "repo"
    (repo / "results").mkdir(parents=True)
    (repo / "envs").mkdir()
    for path in ("results/summary.csv", "envs/x.py"):
        (repo / path).write_text("a\n")
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "x", "--allow-empty")
    git("add", ".")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "y")
    fake = str(repo / "envs" / "runs.py")
    orig = runs.__file__
    try:
        runs.__file__ = fake
        (repo / "results" / "summary.csv").write_text("b\n")
        assert runs.git_info()["dirty"] is False
        (repo / "envs" / "x.py").write_text("b\n")
        assert runs.git_info()["dirty"] is True
    finally:
        runs.__file__ = orig


def test_td7_resume_extension_continues_every_seed(tmp_path):
    cfg = dict(env_id="CountEnv-v0", num_seeds=2, total_timesteps=80, learning_starts=20, eval_freq=40,
               eval_episodes=1, batch_size=8, zs_dim=8, enc_hdim=8, critic_hdim=8, actor_hdim=8)
    out = td7.train(td7.Args(**cfg, results_dir=str(tmp_path), run_name="r", save_model=True))
    td7.train(td7.Args(resume=out["run_dir"], total_timesteps=160))
    steps = sorted({(r["seed"], int(r["step"])) for r in _rows(out["run_dir"])})
    assert steps == [(s, k) for s in ("0", "1") for k in (0, 40, 80, 120, 160)]
    assert runs.Checkpoint(out["run_dir"], "td7").step == 160


def test_ctrl_c_says_how_to_resume(tmp_path):
    import signal
    import time

    run_dir = tmp_path / "r"
    flags = _flags(dict(TINY, total_timesteps=100_000))
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "algos", "td3.py"), *flags, "--results-dir",
                             str(tmp_path), "--run-name", "r", "--save-model"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run_dir / "checkpoint" / "meta.json").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"--resume {run_dir}" in err and "Traceback" not in err


def test_mrq_resume_extension_grows_the_replay_and_matches_one_long_run(tmp_path):
    """MR.Q's replay is split: pointer-written fields in chunks, priorities and masks whole (up to the
    filled slots); a longer run has more slots, and the extended run equals one long run."""
    from algos import mrq

    cfg = dict(env_id="Hopper-v4", max_episode_steps=30, num_seeds=2, learning_starts=30, eval_freq=20,
               eval_episodes=2, target_update_freq=10, batch_size=8, zs_dim=32, zsa_dim=32, za_dim=16, enc_hdim=32,
               value_hdim=32, policy_hdim=32)
    short = mrq.train(mrq.Args(**cfg, total_timesteps=100, results_dir=str(tmp_path), run_name="short",
                               save_model=True))
    extended = mrq.train(mrq.Args(resume=short["run_dir"], total_timesteps=160))
    long = mrq.train(mrq.Args(**cfg, total_timesteps=160, results_dir=str(tmp_path), run_name="long"))
    assert extended["replay"].obs.shape[1] > short["replay"].obs.shape[1]  # the buffer grew
    assert _eval_rows(short["run_dir"]) == _eval_rows(long["run_dir"])


def test_resume_reads_the_flags_given_on_the_command_line(tmp_path, capsys):
    """A flag given at its default value still counts: --total-timesteps 100 (FakeArgs' default) extends a
    50-step run, and --num-seeds 1 (the default) is refused for a 2-seed run."""
    run = runs.Run("fake", FakeArgs(results_dir=str(tmp_path), run_name="r", save_model=True, total_timesteps=50),
                   FakeArgs)
    run.start({})
    run.save(50, {"learner": {"w": jnp.ones((2, 3))}}, {})
    seen = []
    train = lambda a: seen.append(runs.Run("fake", a, FakeArgs).args)  # noqa: E731
    runs.cli(FakeArgs, train, train, ["--resume", run.dir, "--total-timesteps", "100"])
    assert seen[-1].total_timesteps == 100 and seen[-1].num_seeds == 2
    with pytest.raises(runs.RunComplete):  # from Python, a value at its default is not "given"
        runs.Run("fake", FakeArgs(resume=run.dir, total_timesteps=100), FakeArgs)
    with pytest.raises(SystemExit) as exc:
        runs.cli(FakeArgs, train, train, ["--resume", run.dir, "--num-seeds", "1"])
    assert exc.value.code == 2 and "--num-seeds 1 differs from the run's 2" in capsys.readouterr().err
    runs.cli(FakeArgs, train, train, ["--resume", run.dir])
    assert "is complete (50 steps)" in capsys.readouterr().out
