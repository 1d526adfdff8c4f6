"""DeepMind Control, Atari and MinAtar adapters (envs/dmc.py, envs/atari.py, envs/minatar.py) on the real suites."""

import inspect
import os

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")  # the `dmc`, `atari` and `minatar` extras are part of `make test`'s install

import envs  # noqa: E402


# ---------------------------------------------------------------------------------------------
# DeepMind Control
# ---------------------------------------------------------------------------------------------
def test_dmc_states_shape_action_repeat_and_500_step_truncation():
    env = envs.make_env("dmc:cartpole-balance")
    inner = env._env
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (5,)  # position (3) + velocity (2), flattened
    flat = np.concatenate([np.ravel(v) for v in inner.task.get_observation(inner.physics).values()])
    np.testing.assert_allclose(obs, flat, rtol=1e-6)
    t0 = inner.physics.data.time
    env.step(np.zeros(1))
    assert inner.physics.data.time - t0 == pytest.approx(2 * inner.control_timestep())  # action repeat 2
    steps, term, trunc = 1, False, False
    while not (term or trunc):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        steps += 1
    assert (steps, term, trunc) == (500, False, True)  # a time limit, never a termination


def test_dmc_reward_is_summed_over_the_repeat(monkeypatch):
    env = envs.make_env("dmc:cartpole-balance")
    env.reset(seed=0)
    calls = []
    real = env._env.step

    def step(a):
        calls.append(1)
        return real(a)._replace(reward=0.25)

    monkeypatch.setattr(env._env, "step", step)
    _, reward, *_ = env.step(np.zeros(1))
    assert len(calls) == 2 and reward == 0.5


def test_dmc_seeding_and_resume_replay():
    a, b = envs.make_env("dmc:cheetah-run"), envs.make_env("dmc:cheetah-run")
    np.testing.assert_array_equal(a.reset(seed=3)[0], b.reset(seed=3)[0])
    first = a.reset()[0]
    assert not np.array_equal(first, b.reset(seed=4)[0])
    # SeedEnvs resumes an episode by replaying it: the env state must follow exactly
    run = envs.SeedEnvs("dmc:cartpole-swingup", [0, 1])
    run.reset()
    rng = np.random.default_rng(0)
    for _ in range(520):  # past one episode end, so the replay starts from a drawn (unseeded) reset
        step = run.step(rng.uniform(-1, 1, (2, 1)).astype(np.float32))  # float32, as a policy acts
    state = run.get_state()
    again = envs.SeedEnvs("dmc:cartpole-swingup", [0, 1])
    np.testing.assert_array_equal(again.set_state(state), step.obs)
    action = rng.uniform(-1, 1, (2, 1)).astype(np.float32)
    np.testing.assert_array_equal(again.step(action).obs, run.step(action).obs)


def test_dmc_pixels_history_and_camera():
    env = envs.make_env("dmc-pixels:cartpole-swingup", pixels_ok=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (9, 84, 84) and obs.dtype == np.uint8 and obs.max() > obs.min()
    np.testing.assert_array_equal(obs[0:3], obs[3:6])  # the reset fills the history with the first frame
    np.testing.assert_array_equal(obs[3:6], obs[6:9])
    nxt = env.step(np.ones(1))[0]
    np.testing.assert_array_equal(nxt[0:6], obs[3:9])  # oldest frame out, the new one last
    assert not np.array_equal(nxt[6:9], obs[6:9])
    np.testing.assert_array_equal(nxt[6:9], env._env.physics.render(84, 84, camera_id=0).transpose(2, 0, 1))
    assert envs.dmc.DMCEnv("dmc-pixels:quadruped-walk").camera == 2


def test_dmc_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match=r"dmc:cartpole-balance"):
        envs.make_env("dmc:cartpole-balanc")
    with pytest.raises(TypeError, match="image observations need an algorithm that takes them"):
        envs.make_env("dmc-pixels:cartpole-balance")
    with pytest.raises(ValueError, match="env ids are: gymnasium ids as they are"):
        envs.make_env("dcm:cartpole-balance")


# ---------------------------------------------------------------------------------------------
# Atari
# ---------------------------------------------------------------------------------------------
def test_atari_shapes_sticky_actions_frame_skip_and_history():
    env = envs.make_env("atari:Pong", discrete_ok=True, pixels_ok=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.action_space.n == 6  # Pong's minimal action set
    ale = env._env.unwrapped.ale
    assert ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert all(np.array_equal(obs[0], f) for f in obs)  # the reset fills the history
    frames = ale.getEpisodeFrameNumber()
    nxt = env.step(0)[0]
    assert ale.getEpisodeFrameNumber() - frames == 4
    np.testing.assert_array_equal(nxt[:3], obs[1:])


def test_atari_reward_sum_max_pool_and_truncation(monkeypatch):
    import cv2

    env = envs.make_env("atari:Pong", discrete_ok=True, pixels_ok=True, max_steps=3)
    env.reset(seed=0)
    frames = [np.full((210, 160), v, np.uint8) for v in (10, 20, 30, 40)]
    frames[2][:50] = 200  # the max over the last two frames keeps this band
    seen = []

    def step(action):
        seen.append(action)
        return frames[(len(seen) - 1) % 4], 1.5, False, False, {}

    monkeypatch.setattr(env._env, "step", step)
    obs, reward, term, trunc, _ = env.step(2)
    assert seen == [2, 2, 2, 2] and reward == 6.0 and (term, trunc) == (False, False)  # no reward clipping
    pooled = np.maximum(frames[2], frames[3])
    np.testing.assert_array_equal(obs[-1], cv2.resize(pooled, (84, 84), interpolation=cv2.INTER_AREA))
    env.step(2)
    *_, term, trunc, _ = env.step(2)
    assert (term, trunc) == (False, True)  # 3 agent steps = this env's limit: a truncation


def test_atari_game_over_terminates_early(monkeypatch):
    env = envs.make_env("atari:Pong", discrete_ok=True, pixels_ok=True)
    env.reset(seed=0)
    calls = []

    def step(action):
        calls.append(action)
        return np.zeros((210, 160), np.uint8), 1.0, len(calls) == 2, False, {}

    monkeypatch.setattr(env._env, "step", step)
    _, reward, term, trunc, _ = env.step(1)
    assert len(calls) == 2 and reward == 2.0 and (term, trunc) == (True, False)


def test_atari_epsilon_replaces_actions(monkeypatch):
    env = envs.make_env("atari:Pong", discrete_ok=True, pixels_ok=True, epsilon=1.0)
    env.reset(seed=0)
    seen = []

    def step(action):
        seen.append(action)
        return np.zeros((210, 160), np.uint8), 0.0, False, False, {}

    monkeypatch.setattr(env._env, "step", step)
    for _ in range(20):
        env.step(0)
    assert len(set(seen)) > 1 and all(seen[4 * i] == seen[4 * i + 3] for i in range(20))  # per agent step


def test_atari_errors():
    with pytest.raises(ValueError, match="atari:Pong"):
        envs.make_env("atari:Pongg")
    with pytest.raises(TypeError, match="Discrete action space"):
        envs.make_env("atari:Pong")


# ---------------------------------------------------------------------------------------------
# dqn-atari: the DQN-era preprocessing of discrete BCQ and LAP/PAL
# ---------------------------------------------------------------------------------------------
def test_dqn_atari_zero_padded_stack_and_raw_rewards_against_the_ale_frame_by_frame():
    import cv2
    import gymnasium as gym

    from envs.atari import clip_reward

    env = envs.make_env("dqn-atari:SpaceInvaders", discrete_ok=True, pixels_ok=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and env.unwrapped.frame_history == 4
    assert env._env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)  # NoFrameskip-v0
    assert env.action_space.n == 6  # SpaceInvaders' minimal action set
    # the same ALE stepped one frame at a time, seeded as the env seeds it at a reset
    ref = gym.make("ALE/SpaceInvaders-v5", frameskip=1, repeat_action_probability=0.25, full_action_space=False,
                   obs_type="grayscale")
    first, _ = ref.reset(seed=int(gym.utils.seeding.np_random(0)[0].integers(2**31)))

    def resize(frame):
        return cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA)

    assert not obs[:3].any()  # zeros before the episode start, the first frame last
    np.testing.assert_array_equal(obs[3], resize(first))
    rng, rewards = np.random.default_rng(0), []
    for _ in range(80):
        action = int(rng.integers(6))
        nxt, reward, term, trunc, _ = env.step(action)
        frames = [ref.step(action) for _ in range(4)]
        assert reward == sum(f[1] for f in frames) and (term, trunc) == (False, False)
        np.testing.assert_array_equal(nxt[:3], obs[1:])  # oldest out, the newest last
        np.testing.assert_array_equal(nxt[3], resize(np.maximum(frames[2][0], frames[3][0])))
        obs = nxt
        rewards.append(reward)
    assert max(rewards) > 1  # raw: a shot invader scores 5 to 30
    np.testing.assert_array_equal(clip_reward(np.array([-5.0, -0.5, 0.0, 0.3, 30.0])), [-1, -0.5, 0, 0.3, 1])


def test_dqn_atari_cap_is_a_truncation_and_a_game_over_on_it_a_termination(monkeypatch):
    env = envs.make_env("dqn-atari:Pong", discrete_ok=True, pixels_ok=True, max_steps=5)
    env.reset(seed=0)
    assert [env.step(0)[2:4] for _ in range(5)] == [(False, False)] * 4 + [(False, True)]
    env.reset()
    for _ in range(4):
        env.step(0)
    monkeypatch.setattr(env._env, "step", lambda a: (np.zeros((210, 160), np.uint8), 0.0, True, False, {}))
    assert env.step(0)[2:4] == (True, False)


@pytest.mark.parametrize("env_id", ["dqn-atari:Pong", "minatar:breakout"])
def test_dqn_atari_and_minatar_resume_replay_in_worker_processes(env_id):
    kwargs = dict(discrete_ok=True, pixels_ok=True, env_kwargs={"max_steps": 25})
    run = envs.SeedEnvs(env_id, [0, 1], workers=2, **kwargs)
    run.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):  # past episode ends, so the replay starts from a drawn (unseeded) reset
        step = run.step(rng.integers(run.action_dim, size=2))
    state = run.get_state()
    assert all(r is not None for r in state["reset_rng"])
    again = envs.SeedEnvs(env_id, [0, 1], **kwargs)  # in this process: the same, bit for bit
    np.testing.assert_array_equal(again.set_state(state), step.obs)
    for _ in range(30):
        action = rng.integers(run.action_dim, size=2)
        a, b = run.step(action), again.step(action)
        for f in ("obs", "next_obs", "reward", "terminated", "truncated"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    run.close()
    again.close()


# ---------------------------------------------------------------------------------------------
# MinAtar
# ---------------------------------------------------------------------------------------------
def test_minatar_shapes_actions_sticky_seeding_and_cap():
    for game, (channels, actions) in {"asterix": (4, 5), "breakout": (4, 3), "freeway": (7, 3), "seaquest": (10, 6),
                                      "space_invaders": (6, 4)}.items():
        env = envs.make_env(f"minatar:{game}", discrete_ok=True, pixels_ok=True)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (channels, 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 1}
        assert env.action_space.n == actions and env.unwrapped.frame_history == 1
        np.testing.assert_array_equal(obs, env._game.state().transpose(2, 0, 1))
    import minatar

    defaults = inspect.signature(minatar.Environment.__init__).parameters  # the installed package's own defaults
    assert env._game.sticky_action_prob == defaults["sticky_action_prob"].default  # env: the last game above
    assert env._game.env.ramping == defaults["difficulty_ramping"].default
    runs = []
    for seed in (0, 0, 1):
        env = envs.make_env("minatar:space_invaders", discrete_ok=True, pixels_ok=True, max_steps=50)
        obs = [env.reset(seed=seed)[0]]
        rng = np.random.default_rng(0)
        for _ in range(50):
            o, r, term, trunc, _ = env.step(int(rng.integers(4)))
            obs.append(o)
        runs.append(np.stack(obs))
        assert (term, trunc) == (False, True)  # the cap: a truncation
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_dqn_atari_and_minatar_errors(monkeypatch):
    import sys

    from envs.runs import UserError

    with pytest.raises(UserError, match="Did you mean: dqn-atari:Pong"):
        envs.make_env("dqn-atari:Pongg", discrete_ok=True, pixels_ok=True)
    with pytest.raises(UserError, match="Did you mean minatar:breakout.*Valid games: minatar:asterix, .*invaders"):
        envs.make_env("minatar:breakot", discrete_ok=True, pixels_ok=True)
    with pytest.raises(TypeError, match="Discrete action space"):
        envs.make_env("minatar:breakout")
    monkeypatch.setitem(sys.modules, "minatar", None)  # the package missing
    with pytest.raises(UserError, match=r"pip install -e '\.\[minatar\]'"):
        envs.make_env("minatar:breakout", discrete_ok=True, pixels_ok=True)
