"""Environment preprocessing against the authors' wrappers, over a fixed action sequence with the same seeds:
observations, rewards and terminated/truncated, step by step.

- MR.Q's `env_preprocessing.py` (it runs on the installed gymnasium, dm_control and ale-py) against `envs/` for
  Gym, DMC states, DMC pixels and Atari (`atari:`).
- The BCQ / LAP-PAL Atari wrapper (`discrete_BCQ/utils.py` `AtariPreprocessing`, old gym API, adapted by a shim
  below) against `dqn-atari:`.

Seeding is the one documented difference: the authors seed once and let the generators run on across episodes,
we draw each episode's seed from the env's generator (envs/dmc.py, envs/atari.py docstrings). The test hands their
side our draw, so every compared value must be equal: exactly for the simulators' outputs."""

import builtins
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before dm_control is first imported (by theirs or ours): headless

import gymnasium as gym
import numpy as np
import pytest

from envs.gym import SeedEnvs
from tests.parity.harness import Parity, gym_stub, load_authors

# Actions on a grid of k/8: exact in float32 and float64 and under every affine [-1, 1] map, so the authors'
# float32 cast of DMC actions and our float64 scaling give the simulator the same numbers.
GRID = np.arange(-8, 9) / 8.0


def first_draw(seed: int) -> int:
    """The seed our envs hand the simulator at a seeded reset: the first integers(2**31) of reset(seed=seed)."""
    rng, _ = gym.utils.seeding.np_random(seed)
    return int(rng.integers(2**31))


def mrq_preprocessing():
    return load_authors("MRQ", "env_preprocessing", subdir="MRQ")


@pytest.mark.authors("MRQ")
@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Hopper-v4"])
def test_gym_matches_mrq(env_id):
    """Pendulum (200-step truncation, asymmetric action scaling [-2, 2]) and Hopper (terminations). The authors'
    `GymPreprocessing` resets once with the seed when built and again at the episode start, so their first
    episode is our second (the same generator, one reset on)."""
    pre = mrq_preprocessing()
    seed, rng = 3, np.random.default_rng(0)
    theirs = pre.Env(f"Gym-{env_id}", seed)
    ours = SeedEnvs(env_id, [seed])
    ours.reset()
    while True:  # our first episode: the one their constructor's seeded reset burns
        step = ours.step(rng.choice(GRID, (1, ours.action_dim)))
        if step.terminated[0] or step.truncated[0]:
            break
    p = Parity("envs (gym)", f"MR.Q GymPreprocessing: {env_id}, one episode", tol=0.0)
    s = theirs.reset()
    p.check(obs=np.max(np.abs(step.obs[0] - s.astype(np.float32))))
    low, high = ours.low, ours.high
    t = 0
    while True:
        a = rng.choice(GRID, (1, ours.action_dim))
        step = ours.step(a)
        s, r, term, trunc = theirs.step(low + (a[0] + 1.0) * 0.5 * (high - low))
        t += 1
        p.check(it=t, obs=np.max(np.abs(step.next_obs[0] - s.astype(np.float32))),
                reward=abs(step.reward[0] - np.float32(r)),
                flags=float((step.terminated[0], step.truncated[0]) != (term, trunc and not term)))
        if term or trunc:
            break
    ours.close()
    assert (env_id == "Pendulum-v1") == bool(trunc) and t > 5
    p.finish(t, note="exact (tol 0); their first episode is our second: one seeded reset burnt by their constructor")


def _dmc_pair(pixels: bool, seed: int):
    pre = mrq_preprocessing()
    name = "Dmc-visual-cartpole-balance" if pixels else "Dmc-cartpole-balance"
    theirs = pre.DmcPreprocessing(name, seed)
    theirs.env.task._random = np.random.RandomState(first_draw(seed))  # our per-episode draw (envs/dmc.py)
    ours = SeedEnvs(("dmc-pixels:" if pixels else "dmc:") + "cartpole-balance", [seed], pixels_ok=pixels)
    return theirs, ours


@pytest.mark.authors("MRQ")
@pytest.mark.parametrize("pixels", [False, True], ids=["states", "pixels"])
def test_dmc_matches_mrq(pixels):
    """DMC states over a whole 500-step episode (action repeat 2, summed rewards, the truncation), pixels over
    the first steps (3-frame stack filled at reset with copies, 84x84, camera 0)."""
    seed, rng = 5, np.random.default_rng(1)
    theirs, ours = _dmc_pair(pixels, seed)
    p = Parity("envs (dmc)", f"MR.Q DmcPreprocessing: cartpole-balance {'pixels' if pixels else 'states'}", tol=0.0)
    o = ours.reset()[0]
    s, _ = theirs.reset()
    p.check(obs=np.max(np.abs(o.astype(np.float64) - s.astype(np.float32 if not pixels else np.uint8))))
    steps = 12 if pixels else 500
    for t in range(1, steps + 1):
        a = rng.choice(GRID, (1, ours.action_dim))
        step = ours.step(a)
        s, r, term, trunc, _ = theirs.step(a[0].astype(np.float32))
        ref = s.astype(np.uint8) if pixels else s.astype(np.float32)
        p.check(it=t, obs=np.max(np.abs(step.next_obs[0].astype(np.float64) - ref)),
                reward=abs(float(step.reward[0]) - np.float32(r)),
                flags=float((bool(step.terminated[0]), bool(step.truncated[0])) != (term, trunc)))
    ours.close()
    if not pixels:
        assert trunc and step.truncated[0]  # both end the episode at agent step 500 (1000 physics steps)
    p.finish(steps, note="exact (tol 0); each episode's task seed handed to theirs")


class _AtariShim:
    """Old gym's `<Game>NoFrameskip-v0` (frameskip 1, sticky 0.25, minimal actions) over ale-py's gymnasium env:
    `reset()` -> obs and a 4-tuple `step`, `.ale`; the one seeded reset uses our draw."""

    def __init__(self, game: str, seed: int):
        import ale_py
        gym.register_envs(ale_py)
        self._env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.25, obs_type="grayscale",
                             full_action_space=False)
        self._seed = first_draw(seed)
        self.env = self
        self.action_space = self._env.action_space
        self.observation_space = self._env.observation_space
        self.ale = self._env.unwrapped.ale

    def reset(self):
        obs, _ = self._env.reset(seed=self._seed)
        self._seed = None
        return obs

    def step(self, a):
        obs, r, term, trunc, info = self._env.step(int(a))
        return obs, r, term or trunc, info


@pytest.mark.authors("BCQ")
@pytest.mark.parametrize("cap", [100, 2000], ids=["cap", "game-over"])
def test_dqn_atari_matches_bcq_lap_pal_wrapper(cap):
    """`dqn-atari:` against BCQ's (and LAP-PAL's, the same class) AtariPreprocessing: zero-padded stack with the
    newest frame at index 0 (ours last: a permutation), raw summed rewards (clipped copy in their info), a max
    over the last two of 4 frames. The 27k cap lowered to 100 steps on both sides ends one run (their done=True
    with a real-terminal flag of 0; ours truncated); in the other, random play loses Breakout's 5 lives at step
    217 (a termination on both sides)."""
    from envs.atari import clip_reward
    utils = load_authors("BCQ", "utils", subdir="discrete_BCQ", stubs={"gym": gym_stub()})
    seed, rng = 2, np.random.default_rng(2)
    theirs = utils.AtariPreprocessing(_AtariShim("Breakout", seed), max_episode_timesteps=cap)
    ours = SeedEnvs("dqn-atari:Breakout", [seed], discrete_ok=True, pixels_ok=True, env_kwargs={"max_steps": cap})
    p = Parity("envs (atari)", f"BCQ/LAP-PAL AtariPreprocessing: dqn-atari:Breakout, one episode, cap {cap}", tol=0.0)
    o = ours.reset()[0]
    p.check(obs=np.max(np.abs(o.astype(int) - theirs.reset()[::-1].astype(int))))
    t, ends = 0, []
    while True:
        a = int(rng.integers(ours.action_dim))
        step = ours.step(np.array([a]))
        s, r, done, (r_clipped, done_float) = theirs.step(a)
        t += 1
        term, trunc = bool(step.terminated[0]), bool(step.truncated[0])
        p.check(it=t, reward=abs(step.reward[0] - r), clipped=abs(clip_reward(step.reward[0]) - r_clipped),
                terminated=float(term != bool(done_float)), done=float((term or trunc) != done))
        if not term:  # documented: at a game over inside the 4 frames they keep the previous step's frames
            p.check(it=t, obs=np.max(np.abs(step.next_obs[0].astype(int) - s[::-1].astype(int))))
        if done:
            ends.append((term, trunc))
            break
    ours.close()
    assert ends == [(False, True)] if cap == 100 else ends == [(True, False)]
    p.finish(t, note=f"exact (tol 0); episode ended at step {t} by {'termination' if ends[0][0] else 'the cap'}")


@pytest.mark.authors("MRQ")
def test_atari_matches_mrq():
    """`atari:` against MR.Q's AtariPreprocessing (history 4 filled with the first frame, max-pool of the last two
    frames, raw rewards, sticky actions 0.25) with the frame cap lowered to 240 frames on both sides (60 steps).
    Their training env is built with `eval_env=eval`, the builtin, so it takes random actions with probability
    eval_eps = 0.001 (docs/facts.md#mrq-known-quirks); that draw is turned off here and the quirk asserted."""
    pre = mrq_preprocessing()
    seed, steps, rng = 4, 60, np.random.default_rng(3)
    theirs = pre.AtariPreprocessing("Atari-Pong-v5", seed, eval, hp={"max_ep_frames": 4 * steps, "eval_eps": 0.0})
    assert theirs.eval is builtins.eval  # the quirk: truthy, so `step` applies eval_eps on every env
    inner_reset = theirs.env.reset
    theirs.env.reset = lambda **kw: inner_reset(seed=first_draw(seed))
    ours = SeedEnvs("atari:Pong", [seed], discrete_ok=True, pixels_ok=True, env_kwargs={"max_steps": steps})
    p = Parity("envs (atari)", "MR.Q AtariPreprocessing: atari:Pong, to the lowered cap", tol=0.0)
    o = ours.reset()[0]
    s, _ = theirs.reset()
    p.check(obs=np.max(np.abs(o.astype(int) - s.astype(int))))
    for t in range(1, steps + 1):
        a = int(rng.integers(ours.action_dim))
        step = ours.step(np.array([a]))
        s, r, term, trunc, _ = theirs.step(a)
        p.check(it=t, obs=np.max(np.abs(step.next_obs[0].astype(int) - s.astype(int))), reward=abs(step.reward[0] - r),
                flags=float((bool(step.terminated[0]), bool(step.truncated[0])) != (term, trunc)))
    assert trunc and step.truncated[0]
    ours.close()
    p.finish(steps, note="exact (tol 0); the cap reached on both sides at the same step")
