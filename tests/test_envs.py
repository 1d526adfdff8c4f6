"""The envs adapter: truncation contract, action scaling, seeding, evaluation, bad input."""

import csv
import math
import os

import gymnasium as gym
import numpy as np
import pytest

import envs
from algos import ddpg, td3


# ---------------------------------------------------------------------------------------------
# Truncation contract
# ---------------------------------------------------------------------------------------------
def test_step_reports_final_obs_and_separate_flags():
    e = envs.SeedEnvs("CountEnv-v0", [0, 1, 2, 3])
    obs = e.reset()
    seen_term = seen_trunc = False
    for _ in range(30):
        before = obs.copy()
        s = e.step(np.zeros((4, 1), np.float32))
        for i in range(4):
            terminating, t = before[i, 0], before[i, 1]
            # s' is always the continuation of s, also when the episode ended
            np.testing.assert_array_equal(s.next_obs[i], [terminating, t + 1, before[i, 2]])
            assert s.terminated[i] == (terminating == 1 and t + 1 == 3)
            assert s.truncated[i] == (terminating == 0 and t + 1 == 5)
            if s.terminated[i] or s.truncated[i]:
                assert s.obs[i, 1] == 0  # the next episode's first observation
                assert any(j == i for j, _, _ in s.episodes)
            else:
                np.testing.assert_array_equal(s.obs[i], s.next_obs[i])
        seen_term |= s.terminated.any()
        seen_trunc |= s.truncated.any()
        obs = s.obs
    assert seen_term and seen_trunc


@pytest.mark.parametrize("algo", [td3, ddpg])
def test_training_path_stores_truncation_contract(algo, tiny_td3_args):
    """Run the real training loop on CountEnv and check every stored transition."""
    out = algo.train(algo.Args(**tiny_td3_args))
    buf = [np.asarray(x[0]) for x in out["buffer"]]  # seed 0
    obs, action, reward, next_obs, terminated = buf
    n = tiny_td3_args["total_timesteps"]
    assert obs.shape == (n, 3)
    ends = 0
    for i in range(n):
        # s' continues s: same episode, one step later (the true final obs at episode ends)
        np.testing.assert_array_equal(next_obs[i], obs[i] + [0, 1, 0])
        ended_by_termination = obs[i, 0] == 1 and next_obs[i, 1] == 3
        ended_by_time_limit = obs[i, 0] == 0 and next_obs[i, 1] == 5
        assert terminated[i] == float(ended_by_termination), i  # time-limit ends bootstrap
        if i + 1 < n:
            if ended_by_termination or ended_by_time_limit:
                ends += 1
                assert obs[i + 1, 1] == 0  # after an end, the reset observation
            else:
                np.testing.assert_array_equal(obs[i + 1], next_obs[i])
        # reward == env action: [-1, 1] mapped affinely onto [0, 4]
        np.testing.assert_allclose(reward[i], (np.clip(action[i, 0], -1, 1) + 1) * 2, rtol=1e-5)
    assert terminated.sum() >= 1 and ends > terminated.sum()  # both kinds of ending were stored
    with open(os.path.join(out["run_dir"], "train_episodes.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == ends + (obs[-1, 1] + 1 == (3 if obs[-1, 0] else 5))
    assert {int(r["episode_length"]) for r in rows} <= {3, 5}


def test_env_state_replay_restores_exactly():
    for env_id in ("CountEnv-v0", "Hopper-v4"):
        a, b = envs.SeedEnvs(env_id, [3, 4]), envs.SeedEnvs(env_id, [3, 4])
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (60, 2, a.action_dim)).astype(np.float32)
        a.reset()
        for act in actions[:37]:
            a.step(act)
        obs_b = b.set_state(a.get_state())
        np.testing.assert_array_equal(obs_b, a.obs)
        for act in actions[37:]:
            sa, sb = a.step(act), b.step(act)
            np.testing.assert_array_equal(sa.next_obs, sb.next_obs)
            np.testing.assert_array_equal(sa.reward, sb.reward)
            assert sa.episodes == sb.episodes



def test_inactive_seeds_do_not_step_and_replay_stays_exact():
    """`active` steps a subset (TD7's per-seed schedules): the others keep their observation and
    their env is untouched, so each seed's stream equals stepping it alone; NaN actions of
    inactive seeds are ignored; checkpoint replay still restores the state exactly."""
    masked, alone = envs.SeedEnvs("Hopper-v4", [3, 4]), envs.SeedEnvs("Hopper-v4", [4])
    masked.reset(), alone.reset()
    rng = np.random.default_rng(1)
    for k in range(80):
        act = rng.uniform(-1, 1, (2, masked.action_dim)).astype(np.float32)
        active = np.array([True, k % 3 == 0])
        before = masked.obs.copy()
        act[~active] = np.nan  # ignored where inactive
        s = masked.step(act, active)
        if not active[1]:
            np.testing.assert_array_equal(s.obs[1], before[1])
            np.testing.assert_array_equal(s.next_obs[1], before[1])
            assert s.reward[1] == 0.0 and not s.terminated[1] and not s.truncated[1]
        else:
            a = alone.step(act[1:])
            np.testing.assert_array_equal(s.next_obs[1], a.next_obs[0])
            assert s.reward[1] == a.reward[0]
    copy = envs.SeedEnvs("Hopper-v4", [3, 4])
    np.testing.assert_array_equal(copy.set_state(masked.get_state()), masked.obs)
    with pytest.raises(FloatingPointError, match=r"--seed 3\b"):
        masked.step(np.full((2, masked.action_dim), np.nan, np.float32), np.array([True, False]))


def test_evaluator_evaluates_only_active_seeds():
    ev = envs.Evaluator("CountEnv-v0", [100, 101, 102], episodes=3)
    policy = lambda obs: np.full((obs.shape[0], 1), 0.5, np.float32)  # noqa: E731
    full = ev(policy)
    part = ev(policy, active=np.array([False, True, False]))
    assert np.isnan(part[0]) and np.isnan(part[2]) and part[1] == full[1]

# ---------------------------------------------------------------------------------------------
# Actions, seeding
# ---------------------------------------------------------------------------------------------
def test_action_scaling_humanoid_bounds_and_td3_noise_in_max_action_units():
    e = envs.SeedEnvs("Humanoid-v4", [0])
    assert np.allclose(e.high, 0.4) and np.allclose(e.low, -0.4)
    a = np.linspace(-1, 1, e.action_dim)
    np.testing.assert_allclose(e.to_env_action(a), 0.4 * a, atol=1e-7)
    np.testing.assert_allclose(e.to_env_action(np.full(e.action_dim, 3.0)), e.high)  # out of range is clipped
    # TD3's target smoothing noise (0.2, clipped at 0.5, in [-1, 1] units) is 0.2 * max_action in env units
    import jax
    import jax.numpy as jnp

    noisy = td3.smoothed_target_action(jax.random.PRNGKey(0), jnp.zeros((200_000, 1)), 0.2, 0.5)
    env_noise = e.to_env_action(np.repeat(np.asarray(noisy), e.action_dim, 1))[:, 0]
    assert np.abs(env_noise).max() <= 0.5 * 0.4 + 1e-6
    assert np.abs(env_noise).max() > 0.5 * 0.4 - 1e-3  # the clip is reached
    k = 2.5  # the clip at 0.5 is 2.5 sigma; std of a standard normal clipped at +-k:
    pdf, tail = math.exp(-k * k / 2) / math.sqrt(2 * math.pi), 0.5 * math.erfc(k / math.sqrt(2))
    clipped_std = math.sqrt(1 - 2 * tail - 2 * k * pdf + 2 * k * k * tail)
    assert env_noise.std() == pytest.approx(0.2 * 0.4 * clipped_std, rel=5e-3)


def test_seeds_are_seed_plus_i_and_differ():
    e = envs.SeedEnvs("Hopper-v4", [7, 8])
    obs = e.reset()
    ref = gym.make("Hopper-v4").reset(seed=8)[0]
    np.testing.assert_allclose(obs[1], ref, rtol=1e-6)
    assert not np.allclose(obs[0], obs[1])
    assert obs.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------
def test_evaluator_is_deterministic_per_seed_mean():
    seeds = [100, 101, 102]
    ev = envs.Evaluator("CountEnv-v0", seeds, episodes=3)
    calls = []

    def policy(obs):
        calls.append(obs.shape)
        return np.full((obs.shape[0], 1), 0.5, np.float32)  # env action 3.0 -> reward 3 per step

    r1 = ev(policy)
    r2 = ev(policy)
    np.testing.assert_array_equal(r1, r2)  # every evaluation re-seeds: same initial states
    for s, r in zip(seeds, r1):
        env = gym.make("CountEnv-v0")
        lengths = []
        for k in range(3):
            o, _ = env.reset(seed=s if k == 0 else None)
            lengths.append(3 if o[0] == 1 else 5)
        assert r == pytest.approx(3.0 * np.mean(lengths))
    assert all(shape == (3, 3) for shape in calls)  # one batched policy call per step for all seeds


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
def test_unknown_env_id_names_close_matches():
    with pytest.raises(ValueError, match=r"Unknown env id 'Hoper-v4'.*Hopper-v4"):
        envs.make_env("Hoper-v4")


def test_discrete_action_space_is_rejected():
    with pytest.raises(TypeError, match="Discrete action space.*continuous"):
        envs.make_env("CartPole-v1")


def test_nan_action_is_a_clear_error():
    e = envs.SeedEnvs("CountEnv-v0", [0, 1])
    e.reset()
    with pytest.raises(FloatingPointError, match=r"--seed 1\b.*diverged"):
        e.step(np.array([[0.0], [np.nan]], np.float32))
