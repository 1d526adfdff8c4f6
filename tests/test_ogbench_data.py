"""OGBench's manipulation datasets generated with the packaged oracles (envs/ogbench_data.py, through
``python -m envs.collect --recipe ogbench-play|ogbench-noisy``).

* One run at the real episode length (2 episodes of 1,001 steps, + 1 val episode) into $OGBENCH_DATA_DIR:
  the fields and dtypes, terminals at episode ends only, the splits, the metadata, the qpos / qvel rows
  against the observation they belong to, and OGBench's own loader reading it back and relabelling the
  rewards of a single task (checked against the task's goal written here by hand).
* Shortened episodes (the module's EPISODE_STEPS patched to 101): the puzzle's button states and their
  relabelled reward, determinism for a seed, noisy against play, the numpy global RNG left as it was.
* The scene health rule on hand-made states, the random-action probabilities of commands.sh.
* CLI errors: one line, exit 2, nothing written.
"""

import importlib.metadata
import json
import os

import numpy as np
import pytest

from envs import collect, ogbench_data
from envs.ogbench import npz_metadata
from tests.helpers import snapshot

pytest.importorskip("ogbench")
# OGBench's envs build float64 Box bounds on every space access (gymnasium warns each time)
pytestmark = pytest.mark.filterwarnings("ignore:.*precision lowered by casting:UserWarning")

CUBE_ID = "ogbench:cube-single-play-singletask-task2-v0"
XYZ_CENTER = np.array([0.425, 0.0, 0.0])  # OGBench's observation: (xyz - center) * 10
CUBE_TASK4_GOAL = np.array([0.50, 0.2, 0.02])  # cube-single task4_diagonal1 goal_xyzs (cube_env.py task table)
PUZZLE3_TASK1_GOAL = np.array([1, 1, 0, 1, 0, 1, 0, 1, 1])  # puzzle-3x3 task1 goal_button_states, row by row
FILE_KEYS = {"observations", "actions", "terminals", "qpos", "qvel", "fujimoto_jax"}


def _load(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _meta(data):
    return json.loads(str(data["fujimoto_jax"][()]))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ogbench_data")
    mp = pytest.MonkeyPatch()
    mp.setenv("OGBENCH_DATA_DIR", str(root))
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def cube_play(data_dir):
    """The CLI at the real length, default output folder: 2 training episodes, 1 val episode."""
    collect.main(["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--episodes", "2", "--seed", "3"])
    return data_dir / "cube-single-play-v0.npz", data_dir / "cube-single-play-v0-val.npz"


@pytest.fixture
def short(monkeypatch):
    """Episodes of 101 steps (the CLI's are 1,001)."""
    monkeypatch.setattr(ogbench_data, "EPISODE_STEPS", 101)


def _collect(recipe, env_id, out, episodes=2, seed=0):
    collect.main(["--recipe", recipe, "--env-id", env_id, "--episodes", str(episodes), "--seed", str(seed),
                  "--out", str(out)])
    return _load(out), _load(str(out).replace(".npz", "-val.npz"))


# ---------------------------------------------------------------------------------------------
# The real-length run
# ---------------------------------------------------------------------------------------------
def test_fields_dtypes_terminals_and_splits(cube_play):
    train, val = (_load(p) for p in cube_play)
    assert set(train) == set(val) == FILE_KEYS  # cube-single has no buttons
    # cube-single: 6 joint pos + 6 joint vel + 3 effector xyz + cos, sin yaw + gripper opening, contact
    # + cube xyz, quaternion, cos, sin yaw = 28; qpos 6 arm + 8 gripper + 7 cube = 21; qvel 6 + 8 + 6 = 20
    for data, rows in ((train, 2 * 1001), (val, 1001)):
        assert data["observations"].shape == (rows, 28) and data["actions"].shape == (rows, 5)
        assert data["terminals"].shape == (rows,)
        assert data["qpos"].shape == (rows, 21) and data["qvel"].shape == (rows, 20)
        for k in ("observations", "actions", "terminals", "qpos", "qvel"):
            assert data[k].dtype == np.float32, k
        assert np.all(np.abs(data["actions"]) <= 1)
        ends = np.flatnonzero(data["terminals"])  # 1 at the last step of each episode, 0 elsewhere
        assert list(ends) == list(range(1000, rows, 1001)) and set(np.unique(data["terminals"])) == {0.0, 1.0}
        assert data["fujimoto_jax"].shape == () and data["fujimoto_jax"].dtype.kind == "U"
    assert not np.array_equal(train["observations"][:1001], val["observations"])  # val: other seeds
    meta, val_meta = _meta(train), _meta(val)
    assert {k: meta[k] for k in ("recipe", "env_id", "dataset_name", "env", "mode", "dataset_type", "episodes",
                                 "val_episodes", "steps_per_episode", "train_steps", "val_steps", "seed",
                                 "p_random_action", "oracles")} == {
        "recipe": "ogbench-play", "env_id": CUBE_ID, "dataset_name": "cube-single-play-v0", "env": "cube-single-v0",
        "mode": "data_collection", "dataset_type": "play", "episodes": 2, "val_episodes": 1,
        "steps_per_episode": 1001, "train_steps": 2002, "val_steps": 1001, "seed": 3, "p_random_action": 0.0,
        "oracles": {"cube": "CubePlanOracle"}}
    assert meta["seeds"]["train"] != meta["seeds"]["val"]
    for pkg in ("ogbench", "mujoco", "numpy"):
        assert meta["versions"][pkg] == importlib.metadata.version(pkg)
    assert "not byte-identical" in meta["note"] and "statistically equivalent" in meta["note"]
    assert (meta["split"], val_meta["split"]) == ("train", "val")
    assert npz_metadata(str(cube_play[0]))["env_id"] == CUBE_ID


def test_qpos_and_qvel_rows_are_the_observed_state(cube_play):
    """Row t's qpos / qvel are the state observation t shows (not the state after its action): the
    relabelling reads them as the state of observation t."""
    d = _load(cube_play[0])
    obs, qpos, qvel = d["observations"], d["qpos"], d["qvel"]
    np.testing.assert_array_equal(obs[:, :6], qpos[:, :6])  # arm joint positions
    np.testing.assert_array_equal(obs[:, 6:12], qvel[:, :6])  # arm joint velocities
    np.testing.assert_allclose(obs[:, 19:22], (qpos[:, 14:17] - XYZ_CENTER) * 10, atol=1e-5)  # cube xyz
    np.testing.assert_array_equal(obs[:, 22:26], qpos[:, 17:21])  # cube quaternion
    assert np.abs(np.diff(qpos[:1001, :6], axis=0)).max() > 0  # the arm moves: a shifted row would not match


def test_ogbench_loader_reads_it_back_and_relabels_the_task(cube_play, tmp_path):
    import ogbench
    env, train, val = ogbench.make_env_and_datasets("cube-single-play-singletask-task4-v0",
                                                    dataset_path=str(cube_play[0]))
    env.close()
    raw = _load(cube_play[0])
    keep = raw["terminals"] == 0  # the loader drops each episode's last row (it has no next observation)
    assert len(train["observations"]) == 2 * 1000 and len(val["observations"]) == 1000
    np.testing.assert_array_equal(train["observations"], raw["observations"][keep])
    np.testing.assert_array_equal(train["next_observations"][:999], raw["observations"][1:1000])
    np.testing.assert_array_equal(train["next_observations"][1000:1999], raw["observations"][1002:2001])
    # the trajectory boundary: 1 at each episode's last transition
    assert list(np.flatnonzero(train["terminals"])) == [999, 1999]
    # single-task reward: 0 where the cube is within 4 cm of task4's goal, else -1; masks 1 - success
    success = np.linalg.norm(raw["qpos"][keep][:, 14:17] - CUBE_TASK4_GOAL, axis=1) <= 0.04
    np.testing.assert_array_equal(train["rewards"], success.astype(np.float32) - 1)
    np.testing.assert_array_equal(train["masks"], 1 - success.astype(np.float32))

    # successes by construction: the cube put 3 cm (inside) and 5 cm (outside) from the goal in a copy
    raw["qpos"][10:20, 14:17] = CUBE_TASK4_GOAL + [0.03, 0, 0]
    raw["qpos"][20:30, 14:17] = CUBE_TASK4_GOAL + [0, 0.05, 0]
    for name in ("copy.npz", "copy-val.npz"):
        np.savez(tmp_path / name, **raw)
    _, copy, _ = ogbench.make_env_and_datasets("cube-single-play-singletask-task4-v0",
                                               dataset_path=str(tmp_path / "copy.npz"))
    np.testing.assert_array_equal(copy["rewards"][10:20], np.zeros(10))
    np.testing.assert_array_equal(copy["rewards"][20:30], -np.ones(10))


# ---------------------------------------------------------------------------------------------
# Shortened episodes
# ---------------------------------------------------------------------------------------------
def test_puzzle_button_states_and_their_relabelled_reward(short, tmp_path):
    import ogbench
    train, _ = _collect("ogbench-play", "ogbench:puzzle-3x3-play-singletask-task1-v0", tmp_path / "p.npz")
    assert set(train) == FILE_KEYS | {"button_states"}
    b, obs = train["button_states"], train["observations"]
    assert b.shape == (202, 9) and b.dtype == np.int64 and set(np.unique(b)) <= {0, 1}
    # observation: 19 proprio dims, then per button a one-hot state (2), its position and velocity
    np.testing.assert_array_equal(obs[:, 19 + 4 * np.arange(9) + 1], b)
    assert _meta(train)["oracles"] == {"button": "ButtonPlanOracle"}
    _, t, _ = ogbench.make_env_and_datasets("puzzle-3x3-play-singletask-task1-v0", dataset_path=str(tmp_path / "p.npz"))
    keep = train["terminals"] == 0
    matches = (b[keep] == PUZZLE3_TASK1_GOAL).sum(axis=1)  # reward: buttons in their goal state minus 9
    np.testing.assert_array_equal(t["rewards"], matches - 9.0)
    np.testing.assert_array_equal(t["masks"], (matches < 9).astype(np.float32))


def test_same_seed_same_data_other_seed_other_data(short, tmp_path):
    a, a_val = _collect("ogbench-play", CUBE_ID, tmp_path / "a.npz", seed=5)
    b, b_val = _collect("ogbench-play", CUBE_ID, tmp_path / "b.npz", seed=5)
    c, _ = _collect("ogbench-play", CUBE_ID, tmp_path / "c.npz", seed=6)
    for k in FILE_KEYS - {"fujimoto_jax"}:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a_val[k], b_val[k])
    assert not np.array_equal(a["actions"], c["actions"])
    assert _meta(a)["seeds"] == _meta(b)["seeds"] != _meta(c)["seeds"]


def test_noisy_is_the_markov_oracle_with_noise_not_the_play_data(short, tmp_path):
    play, _ = _collect("ogbench-play", CUBE_ID, tmp_path / "play.npz")
    noisy, _ = _collect("ogbench-noisy", "ogbench:cube-single-noisy-singletask-task2-v0", tmp_path / "noisy.npz")
    meta = _meta(noisy)
    assert meta["oracles"] == {"cube": "CubeMarkovOracle"} and meta["p_random_action"] == 0.1
    assert meta["dataset_name"] == "cube-single-noisy-v0"
    assert not np.array_equal(play["actions"], noisy["actions"])
    # the same seeds place the env's first state identically; the actors differ from the first action on
    np.testing.assert_array_equal(play["qpos"][0], noisy["qpos"][0])
    assert np.all(np.abs(noisy["actions"]) <= 1)


def test_generation_leaves_numpys_global_rng_as_it_was():
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    ogbench_data.generate_split("cube-single", "noisy", 1, ogbench_data.split_seeds(0, 0), episode_steps=11)
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_scene_health_rule_on_hand_made_states():
    def qpos(y, z):
        q = np.zeros((3, 25), np.float32)
        q[1, 14:17] = (0.4, y, z)
        return q
    assert ogbench_data.healthy(qpos(0.0, 0.02))
    assert not ogbench_data.healthy(qpos(0.29, 0.02))  # off the table to the right
    assert ogbench_data.healthy(qpos(-0.31, 0.07))  # in the drawer
    assert not ogbench_data.healthy(qpos(-0.31, 0.02))  # left, below the drawer
    assert not ogbench_data.healthy(qpos(-0.31, 0.09))  # left, above the drawer


def test_random_action_probabilities_follow_commands_sh():
    assert ogbench_data.p_random_action("cube-double", "play") == 0.0
    assert ogbench_data.p_random_action("scene", "noisy") == 0.1
    assert ogbench_data.p_random_action("puzzle-4x4", "noisy") == 0.2
    assert [ogbench_data.val_episodes(n) for n in (1, 9, 10, 1000)] == [1, 1, 1, 100]


# ---------------------------------------------------------------------------------------------
# CLI errors: one line, exit 2, nothing written
# ---------------------------------------------------------------------------------------------
def _error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as e:
        collect.main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("argv, needle", [
    (["--recipe", "ogbench-play", "--env-id", "ogbench:antmaze-large-navigate-singletask-v0"], "expert policies"),
    (["--recipe", "ogbench-play", "--env-id", "ogbench:cube-single-noisy-singletask-task2-v0"],
     "--recipe ogbench-noisy"),
    (["--recipe", "ogbench-noisy", "--env-id", CUBE_ID], "--recipe ogbench-play"),
    (["--recipe", "ogbench-play", "--env-id", "ogbench:cube-triple-play-singletask-v0"], "unknown OGBench env"),
    (["--recipe", "ogbench-play"], "needs --env-id"),
    (["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--episodes", "0"], "--episodes must be >= 1"),
    (["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--steps", "10"], "does not take --steps"),
    (["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--out", "OUT/x.hdf5"], "must end in .npz"),
    (["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--out", "OUT/x.npz/y.npz"], "must end in .npz"),
    (["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--out", "OUT/missing/x.npz"], "does not exist"),
    (["--recipe", "random", "--env-id", "Pendulum-v1", "--episodes", "3"], "does not take --episodes"),
])
def test_cli_errors(capsys, tmp_path, monkeypatch, argv, needle):
    monkeypatch.setenv("OGBENCH_DATA_DIR", str(tmp_path))
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    before = snapshot(tmp_path)
    assert needle in _error(capsys, argv)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("existing", ["x.npz", "x-val.npz"])
def test_cli_refuses_an_existing_output(capsys, tmp_path, existing):
    (tmp_path / existing).write_bytes(b"keep")
    before = snapshot(tmp_path)
    err = _error(capsys, ["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--out", str(tmp_path / "x.npz")])
    assert "already exists" in err and existing in err
    assert snapshot(tmp_path) == before


def test_a_failed_write_leaves_neither_file(monkeypatch, tmp_path):
    fake = {"observations": np.zeros((3, 2), np.float32), "terminals": np.array([0, 0, 1], np.float32)}
    monkeypatch.setattr(ogbench_data, "generate_split", lambda *a, **k: (fake, {
        "unhealthy_retries": 0, "steps": 3, "collected_steps": 3, "oracles": {}}))
    calls = []

    def savez(f, **arrays):  # the train file is written, then the val file fails half-way
        calls.append(f.name)
        f.write(b"partial")
        if len(calls) == 2:
            raise KeyboardInterrupt
    monkeypatch.setattr(np, "savez_compressed", savez)
    with pytest.raises(SystemExit) as e:
        collect.main(["--recipe", "ogbench-play", "--env-id", CUBE_ID, "--out", str(tmp_path / "x.npz")])
    assert e.value.code == 130 and len(calls) == 2
    assert os.listdir(tmp_path) == []
