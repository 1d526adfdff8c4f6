"""Offline datasets: the loaders (envs/offline.py) and the dataset recipes tool (envs/collect.py).

* Round trips: a tiny TD3 run with --save-model on Pendulum-v1, every recipe of ``python -m envs.collect``
  written as a Minari dataset (and once as a D4RL file), read back with ``envs.offline.load`` and checked
  against the episodes Minari stores, Pendulum's own dynamics, the checkpoint's replay buffer and the
  metadata the tool records.
* Hand-made files with terminations and time-outs (Hopper-v4): D4RL drop mode against a reference copy of
  ``d4rl.qlearning_dataset``'s loop, bootstrap mode with and without ``next_observations``, Minari
  truncations with their true final observation.
* Malformed files: one-line ``UserError`` naming the key, nothing written.
* The normalised score against hand values, and in eval.csv of TD3+BC runs.
* The collection tool's user errors.
"""

import csv
import json
import os
import subprocess
import sys
import warnings
from types import SimpleNamespace

import gymnasium as gym
import h5py
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from algos import td3
from envs import collect, offline
from envs.runs import UserError
from tests.helpers import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOPPER_REF = (-20.272305, 3234.3)  # d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE of hopper
D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
pytestmark = pytest.mark.xdist_group("offline_data")  # the module fixtures (TD3 runs, collections) run once

@pytest.fixture(scope="module", autouse=True)
def minari_root(tmp_path_factory):
    """Every Minari dataset of this module lives in its own root (MINARI_DATASETS_PATH), for the
    subprocesses (which inherit the environment) and for the in-process loads."""
    root = tmp_path_factory.mktemp("minari")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINARI_DATASETS_PATH", str(root))
    yield root
    mp.undo()


def _python(*args, check=True, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _assert_one_line_error(spec, env_id, needles, mode="drop"):
    """Loading ``spec`` fails with one line that starts with the flag and holds every needle."""
    with pytest.raises(UserError) as exc:
        offline.load(spec, env_id, mode)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(f"--dataset {spec}: "), msg
    for needle in needles:
        assert needle in msg, msg


def _episodes(spec, seed=0, obs_dim=11, action_dim=3, bound=1.0):
    """Random episodes, ``spec`` a list of (steps, end): end "term" (terminated), "trunc" (time limit),
    "both" (a terminal row that is also a timeout, as some D4RL files have) or "cut" (neither: the data
    ends). Observations have steps + 1 rows."""
    rng = np.random.default_rng(seed)
    out = []
    for t, end in spec:
        term, trunc = np.zeros(t, bool), np.zeros(t, bool)
        term[-1], trunc[-1] = end in ("term", "both"), end in ("trunc", "both")
        out.append({"obs": rng.normal(size=(t + 1, obs_dim)).astype(np.float32),
                    "act": rng.uniform(-bound, bound, (t, action_dim)).astype(np.float32),
                    "rew": rng.normal(size=t).astype(np.float32), "term": term, "trunc": trunc})
    return out


def _d4rl_arrays(eps, next_obs=True) -> dict:
    """The D4RL layout of episodes: flat rows, timeouts at time-limit ends."""
    out = {"observations": np.concatenate([e["obs"][:-1] for e in eps]),
           "actions": np.concatenate([e["act"] for e in eps]),
           "rewards": np.concatenate([e["rew"] for e in eps]),
           "terminals": np.concatenate([e["term"] for e in eps]),
           "timeouts": np.concatenate([e["trunc"] for e in eps])}
    if next_obs:
        out["next_observations"] = np.concatenate([e["obs"][1:] for e in eps])
    return out


def _write_h5(path, arrays: dict) -> str:
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return str(path)


def _minari(dataset_id, eps, env="Hopper-v4", **kw) -> str:
    buffers = [EpisodeBuffer(id=k, observations=e["obs"], actions=e["act"], rewards=e["rew"].astype(np.float64),
                             terminations=e["term"], truncations=e["trunc"], infos={}) for k, e in enumerate(eps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(dataset_id, buffers, env=env, algorithm_name="test", **kw)
    return f"minari:{dataset_id}"


def _qlearning_dataset(raw: dict) -> dict:
    """d4rl.qlearning_dataset's loop (terminate_on_end=False, the file's timeouts), written again here. D4RL
    takes s' from observations[i + 1] even when the file stores next_observations (docs/facts.md#d4rl-dataset-keys)."""
    obs, next_obs, action, reward, terminal = [], [], [], [], []
    n = raw["rewards"].shape[0]
    for i in range(n - 1):
        if bool(raw["timeouts"][i]):
            continue
        obs.append(raw["observations"][i].astype(np.float32))
        next_obs.append(raw["observations"][i + 1].astype(np.float32))  # D4RL never reads next_observations
        action.append(raw["actions"][i].astype(np.float32))
        reward.append(np.float32(raw["rewards"][i]))
        terminal.append(bool(raw["terminals"][i]))
    return {"obs": np.array(obs), "next_obs": np.array(next_obs), "action": np.array(action),
            "reward": np.array(reward), "terminated": np.array(terminal, np.float32)}


def _assert_transitions(data, expected: dict, action_atol=0.0):
    assert len(data) == len(expected["reward"])
    for k in ("obs", "next_obs", "reward", "terminated"):
        np.testing.assert_array_equal(getattr(data, k), expected[k], err_msg=k)
    np.testing.assert_allclose(data.action, expected["action"], atol=action_atol, rtol=0)


def _pendulum_step(obs, torque):
    """Pendulum-v1's step (g = 10, m = l = 1, dt = 0.05) from its observation [cos, sin, thdot]."""
    obs, u = obs.astype(np.float64), np.clip(torque[:, 0].astype(np.float64), -2.0, 2.0)
    th, thdot = np.arctan2(obs[:, 1], obs[:, 0]), obs[:, 2]  # th already in [-pi, pi]
    reward = -(th ** 2 + 0.1 * thdot ** 2 + 0.001 * u ** 2)
    new_thdot = np.clip(thdot + (3 * 10.0 / 2 * np.sin(th) + 3.0 * u) * 0.05, -8.0, 8.0)
    new_th = th + new_thdot * 0.05
    return np.stack([np.cos(new_th), np.sin(new_th), new_thdot], 1), reward


def _reset_obs(seed):
    env = gym.make("Pendulum-v1")
    obs = env.reset(seed=seed)[0]
    env.close()
    return obs


def _last_eval_return(run_dir) -> float:
    with open(os.path.join(run_dir, "eval.csv")) as f:
        return float(list(csv.DictReader(f))[-1]["return"])


# ---------------------------------------------------------------------------------------------
# Round trips through the collection tool (Pendulum-v1: never terminates, 200-step limit, bounds +-2)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def td3_runs(tmp_path_factory):
    """Two tiny TD3 runs with checkpoints: "expert" (600 steps) and "medium" (400 steps)."""
    results = tmp_path_factory.mktemp("td3")
    out = {}
    for name, total, freq in (("expert", 600, 300), ("medium", 400, 200)):  # in-process: no JAX start-up each
        td3.train(td3.Args(env_id="Pendulum-v1", total_timesteps=total, learning_starts=200, eval_freq=freq,
                           eval_episodes=1, batch_size=32, hidden_dim=16, save_model=True, results_dir=str(results),
                           run_name=name))
        out[name] = str(results / name)
    return out


# recipe -> (flags, collection seed, episode lengths in the order written, (policy run, step) per policy,
# the seed of each episode's first reset or None where the env reset on its own).
# 2 envs share --steps; episodes cut by the budget end truncated, like those at Pendulum's 200-step limit.
def _recipes(runs):
    expert, medium = runs["expert"], runs["medium"]
    return {
        # 501 steps: env 0 takes 251, env 1 250 -> 200 + 51 and 200 + 50; both 200s end at the same step
        "random": (["--env-id", "Pendulum-v1", "--steps", "501"], 0, [200, 200, 51, 50], [], [0, 1, None, None]),
        "medium": (["--checkpoint", expert, "--steps", "300"], 0, [150, 150], [(expert, 600)], [0, 1]),
        # the whole replay buffer of the 600-step run: 3 episodes of 200
        "medium-replay": (["--checkpoint", expert, "--steps", "300"], 0, [200, 200, 200], [(expert, 600)],
                          [0, None, None]),
        "imperfect": (["--checkpoint", expert, "--steps", "300", "--seed", "3"], 3, [150, 150], [(expert, 600)],
                      [3, 4]),
        # 300 steps of each policy, the expert's envs seeded seed + 1000
        "medium-expert": (["--checkpoint", medium, expert, "--steps", "300"], 0, [150, 150, 150, 150],
                          [(medium, 400), (expert, 600)], [0, 1, 1000, 1001]),
    }


@pytest.fixture(scope="module")
def collected(td3_runs, tmp_path_factory):
    recipes = _recipes(td3_runs)
    for recipe, (flags, *_) in recipes.items():  # in-process, through the CLI's own parser
        collect.main(["--recipe", recipe, *flags, "--eval-episodes", "1", "--num-envs", "2"])
    d4rl = str(tmp_path_factory.mktemp("d4rl") / "medium.hdf5")
    collect.main(["--recipe", "medium", "--checkpoint", td3_runs["expert"], "--steps", "300",
                  "--eval-episodes", "1", "--num-envs", "2", "--d4rl-out", d4rl])
    return SimpleNamespace(recipes=recipes, d4rl=d4rl, runs=td3_runs,
                           ids={r: f"fujimoto-jax/pendulum/{r}-v0" for r in recipes})


RECIPE_NAMES = ("random", "medium", "medium-replay", "imperfect", "medium-expert")


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_collected_dataset_round_trip(collected, recipe):
    _, _, lengths, _, reset_seeds = collected.recipes[recipe]
    spec = f"minari:{collected.ids[recipe]}"
    episodes = list(minari.load_dataset(collected.ids[recipe]).iterate_episodes())
    assert [len(e.rewards) for e in episodes] == lengths
    for e in episodes:  # Pendulum never terminates: every episode ends with its one truncation
        assert not np.any(e.terminations) and e.truncations[-1] and not np.any(e.truncations[:-1])
        assert np.all(np.abs(e.actions) <= 2.0)  # stored in the env's units
    for e, seed in zip(episodes, reset_seeds):
        if seed is not None:
            np.testing.assert_array_equal(e.observations[0], _reset_obs(seed))

    boot = offline.load(spec, "Pendulum-v1", "bootstrap")
    drop = offline.load(spec, "Pendulum-v1", "drop")
    assert len(boot) == sum(lengths)
    assert len(drop) == sum(lengths) - len(lengths)  # exactly the truncated last steps
    assert boot.info["dropped_timeouts"] == 0 and drop.info["dropped_timeouts"] == len(lengths)
    a = b = 0
    for e in episodes:
        t = len(e.rewards)
        obs, next_obs = boot.obs[a:a + t], boot.next_obs[a:a + t]
        np.testing.assert_array_equal(obs, e.observations[:-1])
        np.testing.assert_array_equal(next_obs, e.observations[1:])  # the truncated step keeps its true s'
        np.testing.assert_array_equal(next_obs[:-1], obs[1:])  # s' of t is s of t + 1 within the episode
        np.testing.assert_allclose(boot.action[a:a + t], e.actions / 2.0, atol=1e-6, rtol=0)  # bounds +-2
        np.testing.assert_array_equal(boot.reward[a:a + t], e.rewards.astype(np.float32))
        # drop mode: the same episode without its last (truncated) step
        np.testing.assert_array_equal(drop.obs[b:b + t - 1], obs[:-1])
        np.testing.assert_array_equal(drop.next_obs[b:b + t - 1], next_obs[:-1])
        np.testing.assert_array_equal(drop.action[b:b + t - 1], boot.action[a:a + t - 1])
        a, b = a + t, b + t - 1
    assert np.all(np.abs(boot.action) <= 1.0) and not np.any(boot.terminated) and not np.any(drop.terminated)
    # every transition, the time-limit ones too, follows Pendulum's dynamics from s and 2 * action
    pred_next, pred_reward = _pendulum_step(boot.obs, 2.0 * boot.action)
    np.testing.assert_allclose(boot.next_obs, pred_next, atol=2e-4, rtol=0)
    np.testing.assert_allclose(boot.reward, pred_reward, atol=2e-4, rtol=1e-5)
    if recipe == "random":  # uniform actions over the env's bounds, not [-1, 1]
        assert np.abs(np.concatenate([e.actions for e in episodes])).max() > 1.5
        assert abs(float(np.mean(boot.action))) < 0.15 and np.abs(boot.action).max() > 0.9


@pytest.mark.parametrize("recipe", RECIPE_NAMES)
def test_collected_metadata(collected, recipe):
    _, seed, lengths, policies, _ = collected.recipes[recipe]
    dataset = minari.load_dataset(collected.ids[recipe])
    facts = json.loads(dataset.storage.metadata["fujimoto_jax"])
    assert facts["recipe"] == recipe and facts["env_id"] == "Pendulum-v1" and facts["collection_seed"] == seed
    assert facts["num_envs"] == 2 and facts["steps"] == sum(lengths) and facts["episodes"] == len(lengths)
    assert [(p["run"], p["step"], p["algo"], p["seed"], p["env_id"]) for p in facts["policies"]] == \
        [(os.path.abspath(run), step, "td3", 0, "Pendulum-v1") for run, step in policies]
    for (run, _), p in zip(policies, facts["policies"]):
        assert np.isfinite(p["return"])
        if seed == 0:  # measured on an env seeded seed + 100, as the run's own final evaluation
            assert p["return"] == pytest.approx(_last_eval_return(run), rel=1e-5)
    assert facts["noise"] == (0.1 if recipe in ("medium", "medium-expert") else None)
    assert (facts["p_random"], facts["imperfect_noise"]) == ((0.3, 0.3) if recipe == "imperfect" else (None, None))
    assert np.isfinite(facts["random_return"]) and facts["random_return"] < 0
    assert dataset.spec.env_spec.id == "Pendulum-v1" and offline.env_id_of(f"minari:{collected.ids[recipe]}") == \
        "Pendulum-v1"
    # Pendulum is no D4RL task: references only from an expert better than uniform random actions
    ref = None
    if recipe == "medium-expert" and facts["policies"][-1]["return"] > facts["random_return"]:
        ref = (facts["random_return"], facts["policies"][-1]["return"])
    assert (facts["ref_min_score"], facts["ref_max_score"]) == (ref or (None, None))
    meta = dataset.storage.metadata
    assert (meta.get("ref_min_score"), meta.get("ref_max_score")) == (ref or (None, None))
    assert offline.load(f"minari:{collected.ids[recipe]}", "Pendulum-v1").ref == ref


def test_medium_replay_is_the_checkpoints_replay_buffer_in_order(collected):
    run = collected.runs["expert"]
    meta = json.load(open(os.path.join(run, "checkpoint", "meta.json")))
    total = json.load(open(os.path.join(run, "config.json")))["args"]["total_timesteps"]
    names = [path.strip(".") for path, _ in meta["ring"]["fields"]]
    parts = {name: [] for name in names}
    for chunk in meta["ring"]["chunks"]:  # oldest first; the buffer never wrapped
        with np.load(os.path.join(run, "replay", chunk["file"])) as f:
            for k, name in enumerate(names):
                parts[name].append(f[f"0.{k}"])
    ring = {k: np.concatenate(v) for k, v in parts.items()}
    assert len(ring["reward"]) == total == 600
    data = offline.load(f"minari:{collected.ids['medium-replay']}", "Pendulum-v1", "bootstrap")
    assert len(data) == total
    for k in ("obs", "next_obs", "reward", "terminated"):
        np.testing.assert_array_equal(getattr(data, k), ring[k], err_msg=k)
    np.testing.assert_allclose(data.action, ring["action"], atol=1e-6, rtol=0)


def test_medium_acts_with_the_checkpoints_policy_plus_noise(collected):
    from algos import td3
    from envs import runs

    ckpt = runs.Checkpoint(collected.runs["expert"], "td3")
    data = offline.load(f"minari:{collected.ids['medium']}", "Pendulum-v1", "bootstrap")
    policy, _ = td3.saved_policy(ckpt.make_args(td3.Args), SimpleNamespace(obs_dim=3, action_dim=1), ckpt, False, 0,
                                 len(data))
    pi = np.asarray(policy(data.obs), np.float64)[:, 0]
    residual = data.action[:, 0] - pi  # clip(pi + noise, -1, 1) - pi, noise ~ N(0, 0.1^2)
    assert np.all(np.abs(residual) < 0.6)  # 6 sigma
    # clipping cannot hide noise < -0.1 where pi > -0.9, nor noise > 0.1 where pi < 0.9: each tail has
    # probability P(z > 1) = 0.1587 (binomial std about 0.02 over >= 300 draws)
    low, high = residual[pi > -0.9] < -0.1, residual[pi < 0.9] > 0.1
    assert low.size + high.size >= 300
    assert 0.09 < (low.sum() + high.sum()) / (low.size + high.size) < 0.23
    # the uniform random dataset is far from this policy
    rand = offline.load(f"minari:{collected.ids['random']}", "Pendulum-v1", "bootstrap")
    policy, _ = td3.saved_policy(ckpt.make_args(td3.Args), SimpleNamespace(obs_dim=3, action_dim=1), ckpt, False, 0,
                                 len(rand))
    assert float(np.std(rand.action - np.asarray(policy(rand.obs)))) > 0.3


def test_d4rl_out_holds_the_same_transitions_as_the_minari_dataset(collected):
    with h5py.File(collected.d4rl, "r") as f:
        assert set(f.keys()) == {*D4RL_KEYS, "next_observations"}
        facts = json.loads(f.attrs["fujimoto_jax"])
        rows = len(f["rewards"])
    assert facts["recipe"] == "medium" and facts["env_id"] == "Pendulum-v1" and facts["collection_seed"] == 0
    assert [(p["run"], p["step"]) for p in facts["policies"]] == [(os.path.abspath(collected.runs["expert"]), 600)]
    assert rows == 300 and not os.path.exists(collected.d4rl + ".partial")
    for mode in ("bootstrap", "drop"):
        d4rl = offline.load(f"d4rl:{collected.d4rl}", "Pendulum-v1", mode)
        mini = offline.load(f"minari:{collected.ids['medium']}", "Pendulum-v1", mode)
        assert len(d4rl) == (300 if mode == "bootstrap" else 298)
        for name, x, y in zip(("obs", "action", "reward", "next_obs", "terminated"), d4rl.arrays(), mini.arrays()):
            np.testing.assert_array_equal(x, y, err_msg=f"{mode} {name}")
        assert d4rl.ref is None  # Pendulum has no D4RL reference


# ---------------------------------------------------------------------------------------------
# Terminations and time-outs, by hand (Hopper-v4: obs 11, actions 3 in [-1, 1])
# ---------------------------------------------------------------------------------------------
# rows: ep0 0-4 term | ep1 5-8 timeout | ep2 9-11 terminal and timeout | ep3 12-17 timeout | ep4 18-19 term |
# ep5 20-22 cut by the end of the file
D4RL_SPEC = [(5, "term"), (4, "trunc"), (3, "both"), (6, "trunc"), (2, "term"), (3, "cut")]
TERMINAL_ROWS, TIMEOUT_ROWS, N_ROWS = [4, 11, 19], [8, 11, 17], 23


@pytest.mark.parametrize("with_next", [True, False])
def test_d4rl_drop_mode_is_qlearning_dataset(tmp_path, with_next):
    eps = _episodes(D4RL_SPEC, seed=1)
    raw = _d4rl_arrays(eps, next_obs=with_next)
    assert len(raw["rewards"]) == N_ROWS and list(np.nonzero(raw["terminals"])[0]) == TERMINAL_ROWS
    assert list(np.nonzero(raw["timeouts"])[0]) == TIMEOUT_ROWS
    path = _write_h5(tmp_path / "hopper.hdf5", raw)
    data = offline.load(f"d4rl:{path}", "Hopper-v4", "drop")
    expected = _qlearning_dataset(raw)
    assert len(expected["reward"]) == N_ROWS - 1 - 3  # the last row and the three timeouts
    _assert_transitions(data, expected, action_atol=1e-6)
    # the one terminal left (row 11 is a timeout too, dropped) bootstrap nothing; rows 4 and 19 terminate
    assert data.terminated.sum() == 2
    assert data.ref == HOPPER_REF and data.source == f"d4rl:{path}"
    # returns of the whole episodes (ended by a terminal or a timeout), not the cut one
    np.testing.assert_allclose(data.episode_returns, [e["rew"].sum() for e in eps[:5]], rtol=1e-5)
    assert data.info["dropped_timeouts"] == 3 and data.info["dropped_last_row"] == 1


def test_d4rl_bootstrap_keeps_timeouts_with_their_true_final_observation(tmp_path):
    eps = _episodes(D4RL_SPEC, seed=2)
    raw = _d4rl_arrays(eps, next_obs=True)
    data = offline.load(f"d4rl:{_write_h5(tmp_path / 'h.hdf5', raw)}", "Hopper-v4", "bootstrap")
    assert len(data) == N_ROWS  # every row has its s', the last one too
    expected = {"obs": raw["observations"], "next_obs": raw["next_observations"], "action": raw["actions"],
                "reward": raw["rewards"], "terminated": raw["terminals"].astype(np.float32)}
    _assert_transitions(data, expected, action_atol=1e-6)
    assert list(np.nonzero(data.terminated)[0]) == TERMINAL_ROWS  # timeouts bootstrap, terminals do not
    ends = np.cumsum([t for t, _ in D4RL_SPEC]) - 1
    for k in (1, 3):  # the timeouts' s' is the episode's final observation, not the next episode's first
        np.testing.assert_array_equal(data.next_obs[ends[k]], eps[k]["obs"][-1])
        assert not np.array_equal(data.next_obs[ends[k]], raw["observations"][ends[k] + 1])
    assert data.info["dropped_timeouts"] == 0 and data.info["dropped_last_row"] == 0


def test_d4rl_bootstrap_without_next_observations_drops_the_timeouts_and_says_how_many(tmp_path):
    raw = _d4rl_arrays(_episodes(D4RL_SPEC, seed=3), next_obs=False)
    data = offline.load(f"d4rl:{_write_h5(tmp_path / 'h.hdf5', raw)}", "Hopper-v4", "bootstrap")
    _assert_transitions(data, _qlearning_dataset(raw), action_atol=1e-6)  # s' = observations[i + 1] is wrong there
    assert data.info["dropped_timeouts"] == 3 and data.info["has_next_observations"] is False


MINARI_SPEC = [(5, "term"), (4, "trunc"), (3, "term"), (6, "trunc")]


def test_minari_terminations_and_truncations(tmp_path):
    eps = _episodes(MINARI_SPEC, seed=4)
    spec = _minari("test/hopper/ends-v0", eps)
    boot, drop = offline.load(spec, "Hopper-v4", "bootstrap"), offline.load(spec, "Hopper-v4", "drop")
    cat = lambda f: np.concatenate([f(e) for e in eps])  # noqa: E731
    expected = {"obs": cat(lambda e: e["obs"][:-1]), "next_obs": cat(lambda e: e["obs"][1:]),
                "action": cat(lambda e: e["act"]), "reward": cat(lambda e: e["rew"]),
                "terminated": cat(lambda e: e["term"]).astype(np.float32)}
    _assert_transitions(boot, expected, action_atol=1e-6)
    # rows 4 and 11 terminate; the truncated rows 8 and 17 keep their true final observation
    assert list(np.nonzero(boot.terminated)[0]) == [4, 11]
    np.testing.assert_array_equal(boot.next_obs[[8, 17]], np.stack([eps[1]["obs"][-1], eps[3]["obs"][-1]]))
    keep = np.ones(18, bool)
    keep[[8, 17]] = False
    _assert_transitions(drop, {k: v[keep] for k, v in expected.items()}, action_atol=1e-6)
    assert list(np.nonzero(drop.terminated)[0]) == [4, 10]
    assert boot.info["dropped_timeouts"] == 0 and drop.info["dropped_timeouts"] == 2
    assert boot.info["episodes"] == 4 and boot.info["env_spec"] == "Hopper-v4"
    np.testing.assert_allclose(boot.episode_returns, [e["rew"].sum() for e in eps], rtol=1e-5)
    assert boot.ref is None and offline.env_id_of(spec) == "Hopper-v4"


def test_actions_are_mapped_from_the_env_bounds_and_clipped_within_tolerance(tmp_path):
    eps = _episodes([(6, "term")], seed=5, obs_dim=3, action_dim=1, bound=2.0)
    eps[0]["act"][:3, 0] = [2.0, -2.0, 2.0 + 1e-4]  # the last just outside, within 1e-4 of the half-range
    data = offline.load(f"d4rl:{_write_h5(tmp_path / 'p.hdf5', _d4rl_arrays(eps))}", "Pendulum-v1", "bootstrap")
    np.testing.assert_allclose(data.action[:, 0], np.clip(eps[0]["act"][:, 0] / 2.0, -1, 1), atol=1e-6, rtol=0)
    assert data.action[:3, 0].tolist() == [1.0, -1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Malformed data: one line naming the key, nothing written
# ---------------------------------------------------------------------------------------------
def _raw():
    return _d4rl_arrays(_episodes([(5, "term"), (4, "trunc"), (3, "cut")], seed=6))


def _without(key):
    def f(raw):
        del raw[key]
    return f


def _setitem(key, value_of):
    def f(raw):
        raw[key] = value_of(raw)
    return f


def _poke(key, index, value):
    def f(raw):
        raw[key] = raw[key].copy()
        raw[key][index] = value
    return f


MALFORMED = [
    *[(f"missing-{k}", _without(k), [f"missing key {k!r}"]) for k in D4RL_KEYS[:4]],  # timeouts may be absent
    ("short-actions", _setitem("actions", lambda r: r["actions"][:-1]), ["'actions'", "11 rows", "12"]),
    ("short-next-obs", _setitem("next_observations", lambda r: r["next_observations"][:-2]),
     ["'next_observations'", "10 rows"]),
    ("nan-rewards", _poke("rewards", 3, np.nan), ["'rewards'", "NaN"]),
    ("inf-observations", _poke("observations", (2, 5), np.inf), ["'observations'", "inf", "(2, 5)"]),
    ("nan-next-observations", _poke("next_observations", (7, 0), np.nan), ["'next_observations'", "NaN"]),
    ("obs-dim", _setitem("observations", lambda r: r["observations"][:, :10]), ["observations", "(10,)", "(11,)"]),
    ("action-dim", _setitem("actions", lambda r: r["actions"][:, :2]), ["actions", "(2,)", "(3,)"]),
    ("action-bounds", _poke("actions", (4, 1), 1.5), ["actions", "outside", "bounds", "1.5"]),
    ("2d-rewards", _setitem("rewards", lambda r: r["rewards"][:, None]), ["'rewards'", "shape"]),
    ("text-terminals", _setitem("terminals", lambda r: np.array([b"x"] * len(r["terminals"]))), ["'terminals'"]),
    # a key holding one number instead of a row per step
    ("scalar-rewards", _setitem("rewards", lambda r: np.float32(1.0)), ["'rewards'"]),
]


@pytest.mark.parametrize("name,mutate,needles", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_d4rl_file_is_one_line_naming_the_key(tmp_path, name, mutate, needles):
    raw = _raw()
    mutate(raw)
    path = _write_h5(tmp_path / "bad.hdf5", raw)
    before = snapshot(tmp_path)
    for mode in ("drop", "bootstrap"):
        _assert_one_line_error(f"d4rl:{path}", "Hopper-v4", needles, mode)
    assert snapshot(tmp_path) == before


def test_a_key_that_is_an_hdf5_group_is_a_user_error(tmp_path):
    raw = _raw()
    del raw["rewards"]
    path = _write_h5(tmp_path / "bad.hdf5", raw)
    with h5py.File(path, "a") as f:
        f.create_group("rewards")
    with pytest.raises(UserError, match="rewards"):
        offline.load(f"d4rl:{path}", "Hopper-v4")


@pytest.mark.parametrize("case", ["garbage", "missing", "folder"])
def test_unreadable_d4rl_paths(tmp_path, case):
    path = tmp_path / "x.hdf5"
    if case == "garbage":
        path.write_bytes(b"\x00not an hdf5 file\xff" * 64)
    elif case == "folder":
        path.mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(UserError) as exc:
        offline.load(f"d4rl:{path}", "Hopper-v4")
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    assert ("not a readable HDF5 file" if case == "garbage" else "no such file") in msg
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("spec", ["foo:x", "hopper.hdf5", "d4rl:", "minari:", "Minari:x"])
def test_unknown_dataset_prefix(spec):
    with pytest.raises(UserError) as exc:
        offline.load(spec, "Hopper-v4")
    assert repr(spec) in str(exc.value) and "minari:<dataset id> or d4rl:<path to .hdf5>" in str(exc.value)


def test_missing_minari_dataset_names_the_root_and_writes_nothing(minari_root):
    _minari("test/hopper/present-v0", _episodes([(3, "term")], seed=7))
    before = snapshot(minari_root)
    with pytest.raises(UserError) as exc:
        offline.load("minari:test/hopper/absent-v0", "Hopper-v4")
    msg = str(exc.value)
    assert "\n" not in msg and "test/hopper/absent-v0" in msg and "no such local dataset" in msg
    assert str(minari_root) in msg
    assert msg.split("local ones: ")[1] == ", ".join(sorted(minari.list_local_datasets())[:8])
    assert "test/hopper/present-v0" in minari.list_local_datasets()
    with pytest.raises(UserError, match="not a Minari dataset id"):
        offline.load("minari:has space", "Hopper-v4")
    assert snapshot(minari_root) == before


def test_loading_from_a_missing_minari_root_creates_no_folder(tmp_path, monkeypatch):
    """A mistyped MINARI_DATASETS_PATH: the load fails with its one line, and leaves no new folder."""
    root = tmp_path / "typo" / "datasets"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    with pytest.raises(UserError, match="no such local dataset"):
        offline.load("minari:test/hopper/x-v0", "Hopper-v4")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case", ["short-observations", "nan-rewards", "inf-actions", "obs-dim", "action-bounds"])
def test_malformed_minari_episode(minari_root, case):
    eps = _episodes([(4, "term"), (5, "trunc")], seed=8)
    e = eps[1]
    needles = {"short-observations": ["episode 1 observations", "5 rows", "expected 6"],
               "nan-rewards": ["episode 1 rewards", "NaN"], "inf-actions": ["episode 1 actions", "inf"],
               "obs-dim": ["observations", "(11,)", "Pendulum-v1", "(3,)"],
               "action-bounds": ["actions", "bounds"]}[case]
    env_id = "Pendulum-v1" if case == "obs-dim" else "Hopper-v4"
    if case == "short-observations":
        e["obs"] = e["obs"][:-1]
    elif case == "nan-rewards":
        e["rew"][2] = np.nan
    elif case == "inf-actions":
        e["act"][1, 2] = -np.inf
    elif case == "action-bounds":
        e["act"][0, 0] = 1.01
    spec = _minari(f"test/hopper/bad-{case}-v0", eps)
    before = snapshot(minari_root)
    _assert_one_line_error(spec, env_id, needles)
    assert snapshot(minari_root) == before


def test_td3_bc_cli_with_a_bad_file_is_one_line_and_no_run_folder(tmp_path):
    raw = _raw()
    del raw["rewards"]
    path = _write_h5(tmp_path / "bad.hdf5", raw)
    results = tmp_path / "results"
    proc = _python(os.path.join(ROOT, "algos", "td3_bc.py"), "--dataset", f"d4rl:{path}", "--env-id", "Hopper-v4",
                   "--results-dir", str(results), check=False, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert "missing key 'rewards'" in lines[0] and path in lines[0]
    assert not results.exists()


# ---------------------------------------------------------------------------------------------
# The normalised score
# ---------------------------------------------------------------------------------------------
def test_d4rl_reference_and_normalized_score_by_hand():
    for env_id in ("Hopper-v4", "Hopper-v5", "Hopper-v2"):
        assert offline.d4rl_reference(env_id) == HOPPER_REF
    assert offline.d4rl_reference("HalfCheetah-v4") == (-280.178953, 12135.0)
    assert offline.d4rl_reference("Walker2d-v4") == (1.629008, 4592.3)
    assert offline.d4rl_reference("Ant-v4") == (-325.6, 3879.7)
    for env_id in ("Pendulum-v1", "Humanoid-v4", "dmc:hopper-hop", "InvertedPendulum-v4"):
        assert offline.d4rl_reference(env_id) is None
    assert float(offline.normalized_score(3234.3, HOPPER_REF)) == pytest.approx(100.0, abs=1e-9)
    assert float(offline.normalized_score(-20.272305, HOPPER_REF)) == pytest.approx(0.0, abs=1e-9)
    # halfway between -20.272305 and 3234.3 is 1607.0138475
    assert float(offline.normalized_score(1607.0138475, HOPPER_REF)) == pytest.approx(50.0, abs=1e-9)
    # a quarter of the way: -20.272305 + 3254.572305 / 4 = 793.37077125; 1000 is 1020.272305 above random
    np.testing.assert_allclose(offline.normalized_score([793.37077125, 1000.0], HOPPER_REF),
                               [25.0, 100.0 * 1020.272305 / 3254.572305], rtol=1e-12)


def _td3_bc(dataset, env_id, tmp_path, name):
    from algos import td3_bc
    out = td3_bc.train(td3_bc.Args(dataset=dataset, env_id=env_id, total_timesteps=2, eval_freq=2, eval_episodes=1,
                                   batch_size=8, hidden_dim=8, results_dir=str(tmp_path), run_name=name))
    with open(os.path.join(out["run_dir"], "eval.csv")) as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _assert_scores(rows, ref):
    assert [int(r["step"]) for r in rows] == [0, 2]
    for r in rows:
        expected = 100.0 * (float(r["return"]) - ref[0]) / (ref[1] - ref[0])
        assert float(r["normalized_score"]) == pytest.approx(expected, rel=1e-3, abs=1e-3)


def test_td3_bc_eval_csv_normalized_score_of_a_d4rl_hopper_file(tmp_path):
    eps = _episodes([(10, "term"), (8, "trunc"), (12, "term"), (6, "cut")], seed=9)
    path = _write_h5(tmp_path / "hopper.hdf5", _d4rl_arrays(eps, next_obs=False))
    header, rows = _td3_bc(f"d4rl:{path}", "Hopper-v4", tmp_path, "d4rl")
    assert "normalized_score" in header
    _assert_scores(rows, HOPPER_REF)


@pytest.mark.parametrize("refs", [True, False])
def test_td3_bc_eval_csv_normalized_score_of_a_minari_dataset(tmp_path, refs):
    eps = _episodes([(10, "term"), (8, "trunc"), (12, "term")], seed=10)
    kw = dict(ref_min_score=-50.0, ref_max_score=450.0) if refs else {}
    spec = _minari(f"test/hopper/scores{int(refs)}-v0", eps, **kw)
    assert offline.load(spec, "Hopper-v4").ref == ((-50.0, 450.0) if refs else None)
    header, rows = _td3_bc(spec, "", tmp_path, "minari")  # --env-id from the dataset's env spec
    assert {r["env"] for r in rows} == {"Hopper-v4"}
    if refs:  # the dataset's own references, not D4RL's hopper ones
        assert "normalized_score" in header
        _assert_scores(rows, (-50.0, 450.0))
    else:
        assert "normalized_score" not in header and len(rows) == 2


# ---------------------------------------------------------------------------------------------
# envs.collect: user errors
# ---------------------------------------------------------------------------------------------
def _collect_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        collect.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_collect_flag_errors(capsys, tmp_path, minari_root):
    (tmp_path / "empty_run").mkdir()
    before = snapshot(minari_root, tmp_path)
    cases = [
        (["--recipe", "bogus", "--env-id", "Pendulum-v1"], ["--recipe 'bogus'", "medium-replay"]),
        (["--recipe", "medium"], ["--recipe medium takes one --checkpoint, got 0"]),
        (["--recipe", "medium", "--checkpoint", "a", "b"], ["--recipe medium takes one --checkpoint, got 2"]),
        (["--recipe", "medium-expert", "--checkpoint", "a"], ["two --checkpoint", "got 1"]),
        (["--recipe", "medium-expert", "--checkpoint", "a", "b", "c"], ["two --checkpoint", "got 3"]),
        (["--recipe", "random", "--env-id", "Pendulum-v1", "--checkpoint", "a"], ["takes no --checkpoint, got 1"]),
        (["--recipe", "random"], ["--recipe random needs --env-id"]),
        (["--recipe", "random", "--env-id", "Pendulum-v1", "--steps", "0"], ["--steps must be >= 1"]),
        (["--recipe", "random", "--env-id", "Pendulum-v1", "--p-random", "1.5"], ["--p-random"]),
        (["--recipe", "random", "--env-id", "Pendulum-v1", "--ref-min-score", "0"], ["--ref-max-score"]),
        (["--recipe", "medium", "--checkpoint", str(tmp_path / "empty_run")], ["no checkpoint in", "--save-model"]),
        (["--recipe", "medium", "--checkpoint", str(tmp_path / "nowhere")], ["no run folder"]),
        (["--recipe", "random", "--env-id", "Pendulum-v1", "--steps", "10", "--eval-episodes", "1", "--dataset-id",
          "not an id!"], ["--dataset-id 'not an id!'"]),
    ]
    for argv, needles in cases:
        err = _collect_error(capsys, argv)
        for needle in needles:
            assert needle in err, (argv, err)
    assert snapshot(minari_root, tmp_path) == before


def test_collect_refuses_an_existing_dataset_id_and_d4rl_path(capsys, tmp_path, minari_root):
    _minari("test/pendulum/taken-v0", _episodes([(4, "trunc")], seed=11, obs_dim=3, action_dim=1, bound=2.0),
            env="Pendulum-v1")
    existing = tmp_path / "taken.hdf5"
    existing.write_bytes(b"keep me")
    before = snapshot(minari_root, tmp_path)
    listed = sorted(minari.list_local_datasets())
    err = _collect_error(capsys, ["--recipe", "random", "--env-id", "Pendulum-v1", "--steps", "10",
                                  "--eval-episodes", "1", "--dataset-id", "test/pendulum/taken-v0"])
    assert "test/pendulum/taken-v0 already exists" in err
    err = _collect_error(capsys, ["--recipe", "random", "--env-id", "Pendulum-v1", "--steps", "10",
                                  "--eval-episodes", "1", "--d4rl-out", str(existing)])
    assert f"--d4rl-out {existing} already exists" in err
    assert snapshot(minari_root, tmp_path) == before and sorted(minari.list_local_datasets()) == listed
    assert existing.read_bytes() == b"keep me"
    assert len(offline.load("minari:test/pendulum/taken-v0", "Pendulum-v1", "bootstrap")) == 4


def test_collect_refuses_a_checkpoint_of_another_env(capsys, td3_runs, minari_root):
    before = snapshot(minari_root)
    err = _collect_error(capsys, ["--recipe", "medium", "--checkpoint", td3_runs["expert"], "--env-id",
                                  "MountainCarContinuous-v0", "--steps", "10", "--eval-episodes", "1"])
    assert "was trained on Pendulum-v1, not MountainCarContinuous-v0" in err
    assert snapshot(minari_root) == before


def test_collect_d4rl_out_into_a_missing_folder(capsys, tmp_path):
    """--d4rl-out in a folder that does not exist: either refused up front with its one line, or written
    (the folder made); never a traceback after the collection."""
    path = tmp_path / "nodir" / "x.hdf5"
    argv = ["--recipe", "random", "--env-id", "Pendulum-v1", "--steps", "10", "--num-envs", "2", "--eval-episodes",
            "1", "--d4rl-out", str(path)]
    try:
        collect.main(argv)
    except SystemExit as e:
        assert e.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --d4rl-out") and "\n" not in err, err
        assert not path.exists()
    else:
        assert len(offline.load(f"d4rl:{path}", "Pendulum-v1", "bootstrap")) == 10


def test_d4rl_file_without_timeouts_counts_steps_as_qlearning_dataset_does(tmp_path):
    """Older (-v0) files have no timeouts: D4RL flags step i final when its episode_step counter reaches
    max_episode_steps - 1 (Pendulum-v1: 200), resetting the counter to 0 there and to 0 then + 1 after
    a terminal. Written out literally here and compared row by row."""
    rng = np.random.default_rng(5)
    n = 520
    raw = {"observations": rng.normal(size=(n, 3)).astype(np.float32),
           "actions": rng.uniform(-2, 2, (n, 1)).astype(np.float32), "rewards": rng.normal(size=n),
           "terminals": np.isin(np.arange(n), [50, 300])}
    path = _write_h5(tmp_path / "v0.hdf5", raw)
    data = offline.load(f"d4rl:{path}", "Pendulum-v1", "drop")
    keep, step = [], 0
    for i in range(n - 1):
        final = step == 200 - 1
        if final:
            step = 0
            continue
        if raw["terminals"][i] or final:
            step = 0
        keep.append(i)
        step += 1
    np.testing.assert_array_equal(data.obs, raw["observations"][keep])
    np.testing.assert_array_equal(data.next_obs, raw["observations"][np.array(keep) + 1])
    np.testing.assert_array_equal(data.terminated, raw["terminals"][keep].astype(np.float32))
    # by hand: the terminal at row 50 restarts the counter at 1 on row 51, so row i counts i - 50 and
    # row 249 is final (dropped; the counter restarts at 0 on row 250); the terminal at row 300 restarts
    # it at 1 on row 301, so row 499 is final. A counter without the quirk would drop 250 and 500.
    assert sorted(set(range(n - 1)) - set(keep)) == [249, 499]
    assert data.info["timeouts_from"].startswith("step count")


def test_collect_leaves_nothing_behind_when_writing_fails(monkeypatch, tmp_path, minari_root):
    """A failure (or Ctrl-C) while Minari or h5py writes removes the half-written dataset or file, so
    the next try is not refused as existing nor loaded as damaged."""
    before = snapshot(minari_root, tmp_path)

    def fail(*a, **k):  # noqa: ARG001
        os.makedirs(os.path.join(str(minari_root), "test", "pendulum", "broken-v0", "data"))  # as Minari would
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", fail)
    with pytest.raises(SystemExit) as e:
        collect.main(["--recipe", "random", "--env-id", "Pendulum-v1", "--steps", "10", "--eval-episodes", "1",
                      "--dataset-id", "test/pendulum/broken-v0"])
    assert e.value.code == 130
    monkeypatch.setattr(collect, "_write_d4rl_file", lambda tmp, *a: (open(tmp, "w").close(), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        collect.main(["--recipe", "random", "--env-id", "Pendulum-v1", "--steps", "10", "--eval-episodes", "1",
                      "--d4rl-out", str(tmp_path / "x.hdf5")])
    after = snapshot(minari_root, tmp_path)
    assert not [k for k in after if "broken-v0" in k or "x.hdf5" in k], after  # no dataset, no .partial
    assert {k: v for k, v in after.items() if os.path.isfile(k)} == {k: v for k, v in before.items() if os.path.isfile(k)}


def test_collect_damaged_checkpoint_meta_is_one_line(capsys, tmp_path):
    run = tmp_path / "run" / "checkpoint"
    run.mkdir(parents=True)
    for text in ("{bad", "[1]"):
        (run / "meta.json").write_text(text)
        err = _collect_error(capsys, ["--recipe", "medium", "--checkpoint", str(tmp_path / "run"), "--steps", "10"])
        assert "checkpoint" in err and "\n" not in err.strip(), err
