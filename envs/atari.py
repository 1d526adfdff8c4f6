"""Atari 2600 (ale-py) as gymnasium envs, preprocessed as MR.Q does (``atari:``) or as the DQN-era
repos do (``dqn-atari:``, ``DQNAtariEnv`` below).

``--env-id atari:<Game>`` (e.g. ``atari:Pong``) builds ``ALE/<Game>-v5`` with frameskip 1 and
sticky actions 0.25 and applies, per agent step:

* the action repeated on 4 frames, rewards summed (stopping early when the game ends), no reward
  clipping;
* a max over the last two grayscale frames, resized to 84x84 (OpenCV INTER_AREA), uint8;
* a history of the last 4 frames, channels first (4 x 84 x 84); a reset fills it with copies of
  the first frame; no no-op starts, no life-loss terminals, the minimal action set;
* 27,000 agent steps (108,000 frames) end an episode as a truncation; a game over is a termination;
* ``epsilon``: probability of replacing the agent's action by a uniform random one (MR.Q evaluates
  with 0.001 and trains with 0; the authors' code also applies 0.001 to the training env by
  accident: facebookresearch/MRQ @ 8a44a7d, docs/facts.md#mrq-known-quirks).

Seeding: ``reset(seed=s)`` seeds the env's generator; every reset draws the ALE seed (sticky
actions, game randomness) from it, so an episode is fixed by that generator's state and the actions
(what ``SeedEnvs`` relies on to resume). The authors seed the ALE once and let it run on across
episodes: the same distribution, another stream.
"""

from __future__ import annotations

import difflib

import gymnasium as gym
import numpy as np

from envs.errors import UserError

PREFIX = "atari:"
DQN_PREFIX = "dqn-atari:"
FRAME_SKIP = 4
SIZE = 84
FRAME_HISTORY = 4
MAX_AGENT_STEPS = 27_000
STICKY = 0.25


def _imports():
    try:
        import ale_py
        import cv2
    except ImportError as e:
        raise UserError("Atari envs need ale-py and opencv: pip install -e '.[atari]'") from e
    gym.register_envs(ale_py)
    return cv2


def parse_id(env_id: str) -> str:
    """'atari:Pong' (or 'dqn-atari:Pong') -> 'ALE/Pong-v5', checked against the installed ROMs."""
    _imports()
    prefix = DQN_PREFIX if env_id.startswith(DQN_PREFIX) else PREFIX
    game = env_id[len(prefix):]
    games = sorted(k[4:-3] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5"))
    if game not in games:
        close = difflib.get_close_matches(game, games, n=4, cutoff=0.5)
        hint = f" Did you mean: {', '.join(prefix + c for c in close)}?" if close else f" Valid games: {', '.join(games)}."
        raise UserError(f"Unknown Atari game {env_id!r} (ids are {prefix}<Game>, e.g. {prefix}Pong).{hint}")
    return f"ALE/{game}-v5"


class AtariEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, env_id: str, epsilon: float = 0.0, max_steps: int = MAX_AGENT_STEPS,
                 render_mode: str | None = None):
        self._cv2 = _imports()
        self.env_id, self.epsilon, self.max_steps = env_id, float(epsilon), max_steps
        self.render_mode = render_mode
        self._env = gym.make(parse_id(env_id), frameskip=1, repeat_action_probability=STICKY, obs_type="grayscale",
                             full_action_space=False, max_num_frames_per_episode=FRAME_SKIP * max_steps,
                             render_mode=render_mode)
        self.action_space = self._env.action_space  # Discrete(n), the game's minimal action set
        self.observation_space = gym.spaces.Box(0, 255, (FRAME_HISTORY, SIZE, SIZE), np.uint8)
        self.frame_history = FRAME_HISTORY
        self._frames: list[np.ndarray] = []
        self._t = 0

    def _process(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        pooled = np.maximum(a, b)
        return self._cv2.resize(pooled, (SIZE, SIZE), interpolation=self._cv2.INTER_AREA)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        frame, info = self._env.reset(seed=int(self.np_random.integers(2**31)))
        self._t = 0
        self._frames = [self._process(frame, frame)] * FRAME_HISTORY
        return np.stack(self._frames), info

    def step(self, action):
        action = int(action)
        if self.epsilon > 0 and self.np_random.random() < self.epsilon:
            action = int(self.np_random.integers(self.action_space.n))
        reward, terminated, truncated = 0.0, False, False
        last = prev = None
        for _ in range(FRAME_SKIP):
            frame, r, terminated, truncated, info = self._env.step(action)
            reward += r
            prev, last = last, frame
            if terminated or truncated:
                break
        self._t += 1
        truncated = (truncated or self._t >= self.max_steps) and not terminated
        self._frames = self._frames[1:] + [self._process(last, last if prev is None else prev)]
        return np.stack(self._frames), reward, terminated, truncated, info

    def render(self):
        return self._env.render()

    def close(self):
        self._env.close()


# ---------------------------------------------------------------------------------------------
# dqn-atari: the DQN-era preprocessing of discrete BCQ, LAP/PAL (discrete) and SR-DICE (Atari)
# ---------------------------------------------------------------------------------------------
REWARD_CLIP = 1.0


def clip_reward(r):
    """The reward the DQN-era algorithms train on: the raw summed reward clipped to [-1, 1]."""
    return np.clip(r, -REWARD_CLIP, REWARD_CLIP)


class DQNAtariEnv(AtariEnv):
    """``--env-id dqn-atari:<Game>`` (e.g. ``dqn-atari:Pong``): the Atari preprocessing of the discrete
    BCQ and LAP/PAL repos (sfujim/BCQ discrete_BCQ/utils.py ``AtariPreprocessing``),
    docs/facts.md#discrete-bcq-atari-preprocessing. The authors use old gym's ``<Game>NoFrameskip-v0`` ids: frameskip 1,
    sticky actions 0.25 (the -v0 setting; -v4 ids have 0), the minimal action set. The same ALE
    settings as ``atari:``, so this class differs from ``AtariEnv`` only where the authors do:

    * the frame history at a reset is zeros plus the first frame (frames before the episode start
      are zeros); ``atari:`` repeats the first frame;
    * the history is channels first [4, 84, 84] with the newest frame LAST; the authors put the
      newest at index 0, an equivalent permutation of the input channels;
    * the step reward is the RAW reward summed over the 4 frames; the algorithms train on
      ``clip_reward(r)`` (clipped to [-1, 1], as the authors store it) and evaluation reports raw
      returns;
    * the step reaching ``max_steps`` (27,000 agent steps = 108k frames) reports truncated=True,
      terminated=False (a game over on that step is a termination); the authors do not store
      such a capped transition, which is the algorithms' business;
    * no ``epsilon`` here: the algorithms act epsilon-greedily themselves.

    At a game over inside the 4 frames the authors' wrapper keeps the frames of the previous step;
    this class max-pools the frames it saw (as ``atari:``): only a terminal next state differs,
    which is never bootstrapped from. Seeding as ``atari:`` (module docstring).
    """

    def __init__(self, env_id: str, max_steps: int = MAX_AGENT_STEPS, render_mode: str | None = None):
        super().__init__(env_id, epsilon=0.0, max_steps=max_steps, render_mode=render_mode)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = super().reset(seed=seed, options=options)
        self._frames = [np.zeros((SIZE, SIZE), np.uint8)] * (FRAME_HISTORY - 1) + self._frames[-1:]
        return np.stack(self._frames), info
