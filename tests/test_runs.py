"""Whole runs: seed independence, reproducibility, kill-and-resume, eval-only, results files, CLI."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algos import ddpg, td3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A small Pendulum run: 300 random steps, then training; evaluations every 300 steps.
PENDULUM = dict(env_id="Pendulum-v1", total_timesteps=1200, learning_starts=300, eval_freq=300, eval_episodes=2,
                batch_size=64, hidden_dim=64)


def _eval_rows(run_dir):
    with open(os.path.join(run_dir, "eval.csv")) as f:
        return [(r["seed"], int(r["step"]), float(r["return"])) for r in csv.DictReader(f)]


def _cli(script, *args, **kwargs):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "algos", script), *args], cwd=kwargs.pop("cwd", ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def _kill_after_first_checkpoint(proc, run_dir, timeout=240) -> int:
    """SIGKILL a --save-model CLI run as soon as its first checkpoint exists; returns its step."""
    host = run_dir / "checkpoint" / "meta.json"
    deadline = time.time() + timeout
    while not host.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(host) as f:
        return json.load(f)["step"]


def _kill_and_resume(script, cfg, tmp_path, full_run_dir):
    """Run `script` with `cfg` and --save-model as run "killed", SIGKILL it after its first checkpoint,
    resume it, and check its eval.csv and train_episodes.csv against the uninterrupted run's (rows
    written after the checkpoint, if any, are dropped on resume). Returns (run_dir, killed step)."""
    run_dir = tmp_path / "killed"
    proc = _cli(script, *_flags(cfg), "--results-dir", str(tmp_path), "--run-name", "killed", "--save-model")
    killed_at = _kill_after_first_checkpoint(proc, run_dir)
    assert 0 < killed_at < cfg["total_timesteps"]
    resumed = _cli(script, "--resume", str(run_dir))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert _eval_rows(run_dir) == _eval_rows(full_run_dir)
    with open(run_dir / "train_episodes.csv") as f, open(os.path.join(full_run_dir, "train_episodes.csv")) as g:
        assert f.read() == g.read()
    return run_dir, killed_at


def _flags(d):
    return [x for k, v in d.items() for x in (f"--{k.replace('_', '-')}", str(v))]


@pytest.mark.parametrize("algo", [td3, ddpg])
def test_seeds_have_own_params_and_own_sampled_indices(algo):
    args = algo.Args(batch_size=32, hidden_dim=16, total_timesteps=1000)
    agent = algo.make_agent(args, 3, 1)
    learner, buffer = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)]))
    for leaf in jax.tree.leaves((learner.actor, learner.critic)):
        assert not np.array_equal(leaf[0], leaf[1])
    assert not np.array_equal(learner.key[0], learner.key[1])
    update = (lambda l: agent.update(l, buffer, jnp.int32(1000), True)) if algo is td3 else \
        (lambda l: agent.update(l, buffer, jnp.int32(1000)))
    for _ in range(2):
        learner, metrics = update(learner)
        idx = np.asarray(metrics["idx"])
        assert idx.shape == (2, 32) and (idx[0] != idx[1]).mean() > 0.9


def test_seed_i_of_a_vmapped_run_is_seed_plus_i():
    """The agent keys follow the seed, so --seed 1 alone and seed index 1 of --seed 0 start alike."""
    args = td3.Args(**PENDULUM)
    agent = td3.make_agent(args, 3, 1)
    both, _ = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in (0, 1)]))
    alone, _ = agent.init(jnp.stack([jax.random.PRNGKey(1)]))
    for a, b in zip(jax.tree.leaves(both.actor), jax.tree.leaves(alone.actor)):
        np.testing.assert_array_equal(a[1], b[0])


def test_same_seed_twice_gives_identical_eval_csv(tmp_path):
    runs = [td3.train(td3.Args(**PENDULUM, num_seeds=2, results_dir=str(tmp_path), run_name=f"r{k}"))
            for k in range(2)]
    a, b = (_eval_rows(r["run_dir"]) for r in runs)
    assert a == b
    assert [s for s, _, _ in a] == ["0", "1"] * 5 and sorted({st for _, st, _ in a}) == [0, 300, 600, 900, 1200]
    # the two seeds learn different things
    assert a[-1][2] != a[-2][2]


def test_killed_run_resumes_to_the_same_returns(tmp_path):
    cfg = dict(PENDULUM, total_timesteps=2400, num_seeds=2)
    full = td3.train(td3.Args(**cfg, results_dir=str(tmp_path), run_name="full"))
    run_dir, killed_at = _kill_and_resume("td3.py", cfg, tmp_path, full["run_dir"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["resumed"][0]["step"] == killed_at


def test_results_files_and_eval_only(tmp_path):
    out = ddpg.train(ddpg.Args(**dict(PENDULUM, total_timesteps=600), results_dir=str(tmp_path), run_name="r",
                               save_model=True, tb=True))
    run_dir = out["run_dir"]
    rows = _eval_rows(run_dir)
    with open(os.path.join(run_dir, "eval.csv")) as f:
        assert f.readline().strip().split(",")[:5] == ["algo", "env", "seed", "step", "return"]
    config = json.loads(open(os.path.join(run_dir, "config.json")).read())
    assert config["algo"] == "ddpg" and config["args"]["total_timesteps"] == 600
    assert {"jax", "flax", "optax", "gymnasium", "mujoco", "numpy"} <= set(config["versions"])
    assert "commit" in config["git"] and config["command"]
    # Pendulum: obs 3 + action 1 + reward 1 + next_obs 3 + terminated 1 float32 = 36 bytes
    assert config["replay_buffer"]["bytes_per_transition"] == 36 and config["replay_buffer"]["capacity"] == 600
    assert any(name.startswith("events") for name in os.listdir(os.path.join(run_dir, "tb")))
    # the saved policy evaluates to the last logged return (same eval seeds, deterministic policy)
    proc = _cli("ddpg.py", "--eval-only", "--checkpoint", run_dir, "--eval-episodes", "2", "--capture-video",
                env=dict(os.environ, SDL_VIDEODRIVER="dummy"))
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, text
    report = json.load(open(os.path.join(run_dir, "eval_only_step600.json")))
    assert report["step"] == 600
    assert report["returns"]["0"] == pytest.approx(rows[-1][2], rel=1e-4)
    videos = sorted(os.listdir(os.path.join(run_dir, "videos")))  # seed 0's two episodes
    assert len(videos) == 2 and all(os.path.getsize(os.path.join(run_dir, "videos", v)) > 1000 for v in videos)


def test_nan_loss_stops_with_a_clear_error_and_keeps_results(tmp_path):
    with pytest.raises(FloatingPointError, match="non-finite"):
        td3.train(td3.Args(**dict(PENDULUM, total_timesteps=600), critic_lr=1e30, results_dir=str(tmp_path),
                           run_name="nan"))
    rows = _eval_rows(tmp_path / "nan")
    assert rows and all(np.isfinite(r) for _, _, r in rows)


@pytest.mark.parametrize("script", ["td3.py", "td7.py"])
def test_cli_rejects_unknown_env_and_discrete_actions(script):
    for env_id, message in (("Hoper-v4", "Did you mean: Hopper-v4"), ("CartPole-v1", "continuous")):
        proc = _cli(script, "--env-id", env_id, "--results-dir", "/tmp/never-written")
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 2 and message in out
        assert out.strip().count("\n") == 0 and out.startswith("error: ")  # one line, no traceback
        assert not os.path.exists("/tmp/never-written")


@pytest.mark.parametrize("script,extra", [("td3.py", []), ("td7.py", ["--num-seeds", "2", "--batch-size", "32",
                                                                     "--zs-dim", "16", "--enc-hdim", "16",
                                                                     "--critic-hdim", "16", "--actor-hdim", "16"])])
def test_a_copied_algorithm_file_runs_on_its_own(tmp_path, script, extra):
    """The fork promise: copy one file anywhere, keep `envs` importable, run it."""
    shutil.copy(os.path.join(ROOT, "algos", script), tmp_path / f"my_{script}")
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, f"my_{script}", "--env-id", "Pendulum-v1", "--total-timesteps", "300",
                           "--learning-starts", "100", "--eval-freq", "300", "--eval-episodes", "1",
                           "--results-dir", "out", *extra], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run,) = os.listdir(tmp_path / "out")
    seeds = 2 if script == "td7.py" else 1
    assert len(_eval_rows(tmp_path / "out" / run)) == 2 * seeds  # steps 0 and 300


def test_compile_cache_folder_env_override_and_off(tmp_path):
    """cli's persistent compilation cache: FUJIMOTO_JAX_CACHE moves it (created, and jax's config points
    there), 'off' turns it off, a JAX_COMPILATION_CACHE_DIR of the user's wins; an unwritable folder is
    one warning line, not a crash."""
    code = ("import os, jax; from envs import runs\n"
            "os.environ['FUJIMOTO_JAX_CACHE'] = 'off'; print(runs.compile_cache())\n"
            f"os.environ['FUJIMOTO_JAX_CACHE'] = {str(tmp_path / 'c')!r}; print(runs.compile_cache())\n"
            "print(jax.config.jax_compilation_cache_dir)\n"
            "os.environ['FUJIMOTO_JAX_CACHE'] = '/proc/nope'; print(runs.compile_cache())\n"
            "os.environ['JAX_COMPILATION_CACHE_DIR'] = '/elsewhere'; print(runs.compile_cache())\n")
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", str(tmp_path / "c"), str(tmp_path / "c"), "None", "/elsewhere"]
    assert (tmp_path / "c").is_dir()
    assert out.stderr.count("warning: no compilation cache (/proc/nope") == 1


def test_a_ctrl_c_swallowed_inside_a_del_is_raised_again():
    """Python ignores an exception raised in __del__, a Ctrl-C included; cli's handler records it and the
    Run's per-step calls (advance, episode, evaluation) raise it again."""
    from envs import runs

    class Finalised:
        def __del__(self):
            runs._on_sigint(signal.SIGINT, None)

    runs._INTERRUPTED.clear()
    try:
        Finalised()  # its KeyboardInterrupt is printed as "Exception ignored in ..." and dropped
        assert runs._INTERRUPTED
        with pytest.raises(KeyboardInterrupt):
            runs._raise_if_interrupted()
    finally:
        runs._INTERRUPTED.clear()
    runs._raise_if_interrupted()  # nothing pending: no-op


def test_algo_file_at_a_commit_loads_and_a_bad_commit_is_one_line(tmp_path):
    """The benchmarks' before/after loader: algos/<algo>.py of a commit, imported by path."""
    from envs import runs

    module = runs.load_file(runs.algo_file_at("HEAD", "td3", str(tmp_path)), "td3_at_head")
    assert module.Args().env_id and callable(module.make_agent)
    with pytest.raises(runs.UserError, match="cannot read algos/td3.py of commit no-such-commit"):
        runs.algo_file_at("no-such-commit", "td3", str(tmp_path))
