"""OGBench (envs/ogbench.py, envs/offline.py): the ``ogbench:`` env suite, its truncation contract,
``Evaluator.successes``, and ``--dataset ogbench:...`` read through OGBench's own loader and relabelling.

The datasets here are tiny and made by the tests themselves: short trajectories (30 steps, not OGBench's
1,001) of the real cube-single env in OGBench's layout, recording ``info["prev_qpos"]`` / ``prev_qvel`` as
OGBench's generator does (the state the step started from). One trajectory starts with the cube put on
task 2's goal, (0.5, 0, 0.02) in OGBench's task table, and zero actions leave it there: its rewards are 0
and its transitions terminal; the random-action ones are -1 and bootstrap.
"""

import csv
import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from tests.helpers import snapshot

pytest.importorskip("ogbench")

import envs  # noqa: E402
from envs import offline, runs  # noqa: E402
from envs.runs import UserError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV2 = "ogbench:cube-single-play-singletask-task2-v0"
NAME2 = "cube-single-play-singletask-task2-v0"
GOAL2 = np.array([0.5, 0.0, 0.02])  # cube-single task 2's goal (ogbench/manipspace/envs/cube_env.py task_infos)
STEPS = 30  # rows per trajectory (OGBench's sets have 1,001; the loader must not assume it)
CUBE = slice(14, 17)  # the cube's xyz in qpos (after the arm's 6 + gripper's 8 joints)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
def _to_goal(env) -> np.ndarray:
    """Put the cube on its goal (the task's target mocap), at rest; returns the new observation."""
    import mujoco
    u = env.unwrapped
    joint = u._data.joint("object_joint_0")
    joint.qpos[:3] = u._data.mocap_pos[u._cube_target_mocap_ids[0]]
    joint.qvel[:] = 0.0
    mujoco.mj_forward(u._model, u._data)
    return u.compute_observation().astype(np.float32)


def _trajectory(env, seed: int, steps: int, at_goal: bool, rng) -> dict:
    """One trajectory in OGBench's layout (plus the env's own rewards), random actions or zeros at the goal."""
    out = {k: [] for k in ("observations", "actions", "terminals", "qpos", "qvel", "env_rewards")}
    ob, _ = env.reset(seed=seed)
    if at_goal:
        ob = _to_goal(env)
    for t in range(steps):
        action = np.zeros(5, np.float32) if at_goal else rng.uniform(-1, 1, 5).astype(np.float32)
        next_ob, reward, _, _, info = env.step(action)
        for key, value in (("observations", ob), ("actions", action), ("terminals", t == steps - 1),
                           ("qpos", info["prev_qpos"]), ("qvel", info["prev_qvel"]), ("env_rewards", reward)):
            out[key].append(value)
        ob = next_ob
    return {k: np.asarray(v) for k, v in out.items()}


def _save(path, trajectories, env_id=ENV2, meta=True, **override):
    arrays = {k: np.concatenate([t[k] for t in trajectories]) for k in ("observations", "actions", "terminals",
                                                                          "qpos", "qvel")}
    arrays = {k: v.astype(bool if k == "terminals" else np.float32) for k, v in arrays.items()}
    arrays.update(override)
    if meta:
        arrays["fujimoto_jax"] = np.array(json.dumps({"recipe": "test", "env_id": env_id}))
    np.savez_compressed(path, **arrays)
    return str(path)


def _fake(n_obs: int, n_qpos: int, rows: int = 6) -> list:
    """A trajectory of zeros with another env's dimensions (cube-double: 37 observed, 28 qpos)."""
    return [{"observations": np.zeros((rows, n_obs)), "actions": np.zeros((rows, 5)),
             "terminals": np.arange(rows) == rows - 1, "qpos": np.zeros((rows, n_qpos)),
             "qvel": np.zeros((rows, n_qpos - 6))}]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """$OGBENCH_DATA_DIR with cube-single-play-v0.npz (3 trajectories, the 2nd at the goal) and -val.npz (1)."""
    root = tmp_path_factory.mktemp("ogbench")
    mp = pytest.MonkeyPatch()
    mp.setenv("OGBENCH_DATA_DIR", str(root))
    env = envs.make_env(ENV2, terminate_at_goal=False)  # trajectories run on through the goal, as OGBench's
    rng = np.random.default_rng(0)
    trajs = [_trajectory(env, seed, STEPS, seed == 1, rng) for seed in range(4)]
    env.close()
    _save(root / "cube-single-play-v0.npz", trajs[:3])
    _save(root / "cube-single-play-v0-val.npz", trajs[3:])
    yield root, trajs
    mp.undo()


def _one_line(spec, env_id, needles, snapshot_dirs=()):
    before = snapshot(*snapshot_dirs)
    with pytest.raises(UserError) as exc:
        offline.load(spec, env_id)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"--dataset {spec}: "), msg
    for needle in needles:
        assert needle in msg, msg
    assert snapshot(*snapshot_dirs) == before
    return msg


# ---------------------------------------------------------------------------------------------
# The env suite and its truncation contract
# ---------------------------------------------------------------------------------------------
def test_env_spaces_time_limit_task_and_refusals(monkeypatch):
    env = envs.make_env(ENV2)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (28,) and env.observation_space.dtype == np.float32
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (5,), np.float32)
    assert env.spec.max_episode_steps == 200
    u = env.unwrapped
    assert (u._reward_task_id, u._terminate_at_goal, u._success_timing) == (2, True, "pre")
    np.testing.assert_allclose(u._data.mocap_pos[u._cube_target_mocap_ids[0]], GOAL2)
    env.close()
    env = envs.make_env("ogbench:cube-single-noisy-singletask-task2-v0", render_mode="rgb_array")  # same env
    np.testing.assert_array_equal(env.reset(seed=0)[0], obs)
    frame = env.render()  # --capture-video's frames (EGL, headless)
    assert frame.shape == (200, 200, 3) and frame.dtype == np.uint8 and frame.max() > frame.min()
    env.close()
    for env_id, needle in [("ogbench:antmaze-large-navigate-singletask-task1-v0", "cannot be downloaded here"),
                           ("ogbench:humanoidmaze-medium-navigate-singletask-v0", "need OGBench's expert policies"),
                           ("ogbench:cube-triple-play-singletask-task1-v0", "unknown OGBench env 'cube-triple'"),
                           ("ogbench:cube-single-expert-singletask-task1-v0", "unknown dataset type 'expert'"),
                           ("ogbench:cube-single-play-task1-v0", "expected ogbench:<env>-<play|noisy>-singletask")]:
        with pytest.raises(UserError, match=needle):
            envs.make_env(env_id)
        with pytest.raises(UserError, match=needle):  # refused before any worker process starts
            envs.Evaluator(env_id, [0, 1], 1, workers=2)
    monkeypatch.setitem(sys.modules, "ogbench", None)  # as if the `ogbench` extra were not installed
    with pytest.raises(UserError, match=r"^--env-id needs ogbench: pip install -e '\.\[ogbench\]'$"):
        envs.make_env(ENV2)


def test_truncation_bootstraps_goal_termination_does_not_final_obs_kept():
    """SeedEnvs on the real env against a twin env stepped by hand with the same seeds and actions."""
    run = envs.SeedEnvs(ENV2, [0, 1])
    first = run.reset().copy()
    run.obs[0] = _to_goal(run.envs[0])  # seed 0 starts on the goal: step 1 (from a goal state) terminates
    zeros = np.zeros((2, 5), np.float32)
    steps = [run.step(zeros) for _ in range(200)]
    assert steps[0].reward.tolist() == [0.0, -1.0] and not steps[0].terminated.any()
    assert steps[1].terminated.tolist() == [True, False] and not steps[1].truncated.any()
    assert steps[1].reward[0] == 0.0 and steps[1].episodes == [(0, 0.0, 2)]
    # seed 1 (zero actions, the cube away from the goal) runs into the 200-step limit: a truncation
    assert [t for t, s in enumerate(steps, 1) if s.truncated[1] or s.terminated[1]] == [200]
    assert steps[-1].truncated[1] and steps[-1].episodes == [(1, -200.0, 200)]
    twin = envs.make_env(ENV2)
    np.testing.assert_array_equal(twin.reset(seed=0)[0], first[0])
    _to_goal(twin)
    twin.step(zeros[0])
    final = twin.step(zeros[0])
    assert final[2] and not final[3] and final[1] == 0.0  # terminated, reward 0, on the same step
    np.testing.assert_array_equal(steps[1].next_obs[0], final[0])  # the true final observation ...
    np.testing.assert_array_equal(steps[1].obs[0], twin.reset()[0])  # ... and the next episode's first
    np.testing.assert_array_equal(twin.reset(seed=1)[0], first[1])
    for _ in range(200):
        final = twin.step(zeros[1])
    assert final[3] and not final[2]
    np.testing.assert_array_equal(steps[-1].next_obs[1], final[0])
    np.testing.assert_array_equal(steps[-1].obs[1], twin.reset()[0])
    run.close()
    twin.close()


def test_resume_replay_is_exact():
    run = envs.SeedEnvs("ogbench:puzzle-3x3-noisy-singletask-task4-v0", [3])  # 500-step limit, buttons
    run.reset()
    rng = np.random.default_rng(0)
    for _ in range(40):
        step = run.step(rng.uniform(-1, 1, (1, 5)).astype(np.float32))
    again = envs.SeedEnvs("ogbench:puzzle-3x3-noisy-singletask-task4-v0", [3])
    np.testing.assert_array_equal(again.set_state(run.get_state()), step.obs)
    action = rng.uniform(-1, 1, (1, 5)).astype(np.float32)
    np.testing.assert_array_equal(again.step(action).obs, run.step(action).obs)
    run.close()
    again.close()


# ---------------------------------------------------------------------------------------------
# Evaluator.successes
# ---------------------------------------------------------------------------------------------
def test_evaluator_success_rate_of_the_real_env():
    """Seed 100's first episode starts on the goal: 2 steps of reward 0, success; every other episode (zero
    actions, cube away from the goal) runs 200 steps of reward -1, no success."""
    ev = envs.Evaluator(ENV2, [100, 101], episodes=2)
    calls = []

    def policy(obs):
        if not calls:
            _to_goal(ev.envs[0])
        calls.append(1)
        return np.zeros((2, 5), np.float32)

    np.testing.assert_array_equal(ev(policy), [(0.0 - 200.0) / 2, -200.0])
    np.testing.assert_array_equal(ev.successes, [0.5, 0.0])
    calls.clear()
    ev(policy, active=np.array([True, False]))
    np.testing.assert_array_equal(ev.successes, [0.5, np.nan])
    ev.close()


class SuccessEnv(gym.Env):
    """Two-step episodes, obs [t, episodes since the seeded reset]; the last step reports success = action > 0."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k, self.t = (0 if seed is not None else self.k + 1), 0
        return np.array([0, self.k], np.float32), {}

    def step(self, action):
        self.t += 1
        done = self.t == 2
        return np.array([self.t, self.k], np.float32), 0.0, done, False, {"success": bool(action[0] > 0)} if done else {}


if "SuccessEnv-v0" not in gym.registry:
    gym.register("SuccessEnv-v0", entry_point=SuccessEnv)


@pytest.mark.parametrize("workers", [1, 2])
def test_evaluator_successes_per_seed_and_through_workers(workers):
    # seed 100 always succeeds, 101 on its even episodes (1 of 2), 102 never, 103 is not evaluated
    def policy(obs):
        yes = np.array([True, obs[1, 1] % 2 == 0, False, False])
        return np.where(yes, 1.0, -1.0)[:, None].astype(np.float32)

    ev = envs.Evaluator("SuccessEnv-v0", [100, 101, 102, 103], episodes=2, workers=workers)
    try:
        returns = ev(policy, active=np.array([True, True, True, False]))
        np.testing.assert_array_equal(ev.successes, [1.0, 0.5, 0.0, np.nan])
        np.testing.assert_array_equal(returns, [0.0, 0.0, 0.0, np.nan])
    finally:
        ev.close()
    ev = envs.Evaluator("Pendulum-v1", [0, 1], episodes=1, workers=workers)  # reports no success
    try:
        ev(lambda obs: np.zeros((2, 1), np.float32))
        assert np.isnan(ev.successes).all() and ev.successes.shape == (2,)
    finally:
        ev.close()


# ---------------------------------------------------------------------------------------------
# --dataset ogbench:...
# ---------------------------------------------------------------------------------------------
def test_named_dataset_fields_relabelled_rewards_and_bootstrapping(data):
    root, trajs = data
    d = offline.load(f"ogbench:{NAME2}", ENV2)
    n = STEPS - 1  # a trajectory's last row has no next observation
    assert len(d) == 3 * n and d.obs.shape == (3 * n, 28) and d.action.shape == (3 * n, 5)
    assert all(a.dtype == np.float32 for a in d.arrays())
    cat = lambda key, rows: np.concatenate([t[key][rows] for t in trajs[:3]])  # noqa: E731
    np.testing.assert_array_equal(d.obs, cat("observations", slice(0, n)))
    np.testing.assert_array_equal(d.next_obs, cat("observations", slice(1, STEPS)))
    np.testing.assert_array_equal(d.action, cat("actions", slice(0, n)))
    # the relabelled reward is the env's own reward on the same state (success_timing 'pre') ...
    np.testing.assert_array_equal(d.reward, cat("env_rewards", slice(0, n)))
    # ... and by hand: -1 unless the cube lies within 4 cm of task 2's goal
    at_goal = np.linalg.norm(cat("qpos", slice(0, n))[:, CUBE] - GOAL2, axis=1) <= 0.04
    np.testing.assert_array_equal(d.reward, np.where(at_goal, 0.0, -1.0))
    assert d.reward[n:2 * n].tolist() == [0.0] * n and d.reward[:n].tolist() == [-1.0] * n
    # terminated = 1 - masks: a goal state does not bootstrap; every other one does, trajectory ends included
    np.testing.assert_array_equal(d.terminated, at_goal.astype(np.float32))
    assert d.terminated[[n - 1, 3 * n - 1]].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(d.start_obs, np.stack([t["observations"][0] for t in trajs[:3]]))
    info = d.info
    assert (info["format"], info["task"], info["trajectories"], info["goal_transitions"]) == ("ogbench", 2, 3, n)
    assert (info["val_transitions"], info["val_trajectories"]) == (n, 1)  # the -val.npz split, read too
    assert info["path"] == str(root / "cube-single-play-v0.npz") and info["collect"]["env_id"] == ENV2
    assert offline.eval_header(d, ["seed", "step", "return"]) == ["seed", "step", "return", "success"]
    rows = offline.eval_rows(d, [0, 1], 5, [-3.0, -4.0], np.array([0.25, np.nan]))
    assert [r["success"] for r in rows] == ["0.25", "nan"]


def test_path_dataset_env_from_metadata_and_another_task_relabels(data, tmp_path):
    root, trajs = data
    path = _save(tmp_path / "mine.npz", trajs[:3])
    _save(tmp_path / "mine-val.npz", trajs[3:])
    spec = f"ogbench:{path}"
    assert offline.env_id_of(spec) == ENV2  # the env id collect recorded
    args = type("A", (), dict(resume=False, dataset=spec, env_id=""))()
    offline.resolve_env(args)
    assert args.env_id == ENV2
    # task 1 (goal elsewhere) on the same data: every reward -1, nothing terminal
    d = offline.load(spec, "ogbench:cube-single-play-singletask-task1-v0")
    assert d.reward.tolist() == [-1.0] * len(d) and not d.terminated.any() and d.info["task"] == 1
    bare = _save(tmp_path / "bare.npz", trajs[:1], meta=False)
    _save(tmp_path / "bare-val.npz", trajs[3:], meta=False)
    assert offline.env_id_of(f"ogbench:{bare}") is None
    args = type("A", (), dict(resume=False, dataset=f"ogbench:{bare}", env_id=""))()
    with pytest.raises(UserError, match="does not name its env; pass --env-id"):
        offline.resolve_env(args)
    assert len(offline.load(f"ogbench:{bare}", ENV2)) == STEPS - 1


def test_dataset_errors_are_one_line_and_write_nothing(data, tmp_path):
    root, trajs = data
    double = "ogbench:cube-double-play-singletask-task1-v0"
    for stem, meta in (("double", True), ("double_bare", False)):
        _save(tmp_path / f"{stem}.npz", _fake(37, 28), env_id=double, meta=meta)
        _save(tmp_path / f"{stem}-val.npz", _fake(37, 28), env_id=double, meta=meta)
    keep = (root, tmp_path)
    _one_line(f"ogbench:{tmp_path}/double.npz", ENV2, [f"was collected on {double}, but --env-id is {ENV2}"], keep)
    _one_line(f"ogbench:{tmp_path}/double_bare.npz", ENV2,
              [f"double_bare.npz holds another env's data: observations of 37 dims, but {ENV2} has 28"], keep)
    _one_line(f"ogbench:{NAME2}", "ogbench:cube-single-play-singletask-task3-v0",
              [f"names {ENV2}, but --env-id is ogbench:cube-single-play-singletask-task3-v0"], keep)
    _one_line(f"ogbench:{NAME2}", "ogbench:cube-single-noisy-singletask-task2-v0", ["but --env-id is"], keep)
    _one_line(f"ogbench:{NAME2}", "Hopper-v4", ["evaluated on its own env, an ogbench: id", "not --env-id Hopper-v4"])
    _one_line("ogbench:cube-triple-play-singletask-task1-v0", "Hopper-v4", ["unknown OGBench env 'cube-triple'"])
    _one_line("ogbench:antmaze-large-navigate-singletask-task1-v0", "Hopper-v4",
              ["antmaze datasets need OGBench's expert policies", "cannot be downloaded here"])
    noisy = "ogbench:cube-single-noisy-singletask-task4-v0"
    _one_line("ogbench:cube-single-noisy-singletask-task4-v0", noisy,
              [f"no such file {root}/cube-single-noisy-v0.npz (make the dataset with: python -m envs.collect "
               f"--recipe ogbench-noisy --env-id {noisy})"], keep)
    lone = _save(tmp_path / "lone.npz", trajs[:1])
    _one_line(f"ogbench:{lone}", ENV2, [f"no val split {tmp_path}/lone-val.npz", f"--out {lone}"], keep)
    _one_line(f"ogbench:{tmp_path}/absent.npz", ENV2, [f"no such file {tmp_path}/absent.npz",
                                                       f"--env-id {ENV2} --out {tmp_path}/absent.npz"], keep)
    cut = _save(tmp_path / "cut.npz", trajs[:1], terminals=np.zeros(STEPS, bool))  # no trajectory end
    _save(tmp_path / "cut-val.npz", trajs[3:])
    _one_line(f"ogbench:{cut}", ENV2, ["key 'terminals' must be 0/1 with 1 on the last row"], keep)
    short = _save(tmp_path / "short.npz", trajs[:1], qvel=np.zeros((STEPS - 1, 15), np.float32))
    _save(tmp_path / "short-val.npz", trajs[3:])
    _one_line(f"ogbench:{short}", ENV2, ["key 'qvel' has 29 rows but 'observations' has 30"], keep)
    (tmp_path / "junk.npz").write_text("not a zip")
    (tmp_path / "junk-val.npz").write_text("not a zip")
    _one_line(f"ogbench:{tmp_path}/junk.npz", ENV2, ["is not a readable .npz file"], keep)
    with pytest.raises(UserError, match="'ogbench:': expected minari:<dataset id> or d4rl:<path to .hdf5>, or "
                                        "ogbench:<single-task name or path to .npz>"):
        offline.load("ogbench:", ENV2)
    with pytest.raises(UserError, match="holds continuous .Box. actions, but this algorithm takes Discrete"):
        offline.load_discrete(f"ogbench:{NAME2}", "CartPole-v1")


# ---------------------------------------------------------------------------------------------
# The offline algorithms on OGBench data
# ---------------------------------------------------------------------------------------------
def _cli(module, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        runs.cli(module.Args, module.train, module.evaluate_checkpoint, argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: --dataset ogbench:") and "\n" not in err, err
    return err


def test_cli_errors_exit_2_and_write_nothing(data, tmp_path, capsys):
    from algos import td3_bc, td7
    results = tmp_path / "results"
    common = ["--results-dir", str(results)]
    assert "names ogbench:cube-single-play-singletask-task2-v0, but --env-id is" in _cli(
        td3_bc, ["--dataset", f"ogbench:{NAME2}", "--env-id", "ogbench:cube-double-play-singletask-task2-v0",
                 *common], capsys)
    assert "no such file" in _cli(td7, ["--offline", "--dataset", "ogbench:scene-play-singletask-task2-v0", *common],
                                  capsys)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "algos", "td3_bc.py"), "--dataset",
                           "ogbench:antmaze-large-navigate-singletask-task1-v0", *common], cwd=ROOT,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "cannot be downloaded here" in lines[0], proc.stderr
    assert not results.exists()


@pytest.mark.parametrize("name", ["td3_bc", "td7"])
def test_offline_algorithms_run_and_log_the_success_rate(name, data, tmp_path, capsys):
    from algos import td3_bc, td7
    if name == "td3_bc":
        args = td3_bc.Args(dataset=f"ogbench:{NAME2}", total_timesteps=2, eval_freq=2, eval_episodes=1,
                           batch_size=8, hidden_dim=8, results_dir=str(tmp_path), run_name="run", save_model=True)
        out = td3_bc.train(args)
    else:
        args = td7.Args(offline=True, dataset=f"ogbench:{NAME2}", env_id="", total_timesteps=2, eval_freq=2,
                        eval_episodes=1, target_update_rate=2, batch_size=8, zs_dim=8, enc_hdim=8, critic_hdim=8,
                        actor_hdim=8, results_dir=str(tmp_path), run_name="run")
        out = td7.train(args)
    with open(os.path.join(out["run_dir"], "eval.csv")) as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    assert "success" in header and "normalized_score" not in header
    assert [int(r["step"]) for r in rows] == [0, 2] and {r["env"] for r in rows} == {ENV2}
    logged = " ".join(capsys.readouterr().out.split())  # each evaluation's log line gives the success rate too
    assert logged.count("success rate per seed: ") == 2, logged
    assert f"success rate per seed: {float(rows[-1]['success']):.2f} (mean " in logged, logged
    for r in rows:  # one episode: its success is 0 or 1, and a success ends it early with a return above -200
        assert r["success"] in ("0", "1") and (r["success"] == "1") == (float(r["return"]) > -200.0), r
    with open(os.path.join(out["run_dir"], "config.json")) as f:
        dataset = json.load(f)["replay_buffer"]["dataset"]
    assert (dataset["format"], dataset["transitions"], dataset["val_transitions"]) == ("ogbench", 87, 29)
    if name == "td3_bc":  # --eval-only replays the last evaluation and reports its success rate too
        td3_bc.evaluate_checkpoint(td3_bc.Args(eval_only=True, checkpoint=out["run_dir"], eval_episodes=1))
        with open(os.path.join(out["run_dir"], "eval_only_step2.json")) as f:
            report = json.load(f)
        assert report["successes"] == {"0": float(rows[-1]["success"])}, report


@pytest.mark.parametrize("env", ["cube-single", "scene", "puzzle-3x3"])
def test_id_without_task_is_ogbench_default_task(env):
    """An id without -task<k> means the task OGBench itself picks (its env, reset, is the oracle)."""
    import ogbench

    from envs.ogbench import parse_id
    raw = ogbench.make_env_and_datasets(f"{env}-play-singletask-v0", env_only=True)
    try:
        raw.reset(seed=0)
        assert parse_id(f"ogbench:{env}-play-singletask-v0").task == raw.unwrapped._reward_task_id
    finally:
        raw.close()
