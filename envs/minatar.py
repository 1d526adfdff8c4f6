"""MinAtar (Young & Tian 2019; the ``minatar`` package, extra ``minatar``) as gymnasium envs.

``--env-id minatar:<game>``, games asterix, breakout, freeway, seaquest, space_invaders:

* observations: the game's 10x10 state, channels first [C, 10, 10], uint8 with values 0/1 (not 0/255);
  C = 4 (asterix, breakout), 7 (freeway), 10 (seaquest), 6 (space_invaders); one frame, no history;
* actions: Discrete over the game's minimal action set (3 to 6 actions);
* the package's defaults otherwise: sticky actions with probability 0.1 (the previous action is
  repeated), difficulty ramping on; rewards raw, as the game returns them;
* the game's end is a termination, Freeway's clock included (its own game over, at agent step
  2,501); ``max_steps`` agent steps (default 10,000; the other games have no limit) end an
  episode as a truncation.

Seeding: ``reset(seed=s)`` seeds the env's generator; every reset draws the seed of MinAtar's
RandomState (sticky actions and the game's randomness) from it and sets the sticky "previous action"
to no-op (the package carries it over from the last episode; the ALE resets it), so an episode is
fixed by that generator's state and the actions (what ``SeedEnvs`` relies on to resume).
"""

from __future__ import annotations

import colorsys
import difflib

import gymnasium as gym
import numpy as np

from envs.errors import UserError

PREFIX = "minatar:"
GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
STICKY = 0.1
MAX_AGENT_STEPS = 10_000
NOOP = 0  # index of 'n' in every game's action_map
RENDER_SCALE = 20  # pixels per cell of a rendered frame


def parse_id(env_id: str) -> str:
    """'minatar:breakout' -> 'breakout', checked against the games of the package."""
    game = env_id[len(PREFIX):]
    if game not in GAMES:
        close = difflib.get_close_matches(game, GAMES, n=1, cutoff=0.5)
        hint = f" Did you mean {PREFIX}{close[0]}?" if close else ""
        raise UserError(f"Unknown MinAtar game {env_id!r}.{hint} Valid games: {', '.join(PREFIX + g for g in GAMES)}.")
    return game


def _environment_class():
    try:
        from minatar import Environment
    except ImportError as e:
        raise UserError("MinAtar envs need the minatar package: pip install -e '.[minatar]'") from e
    return Environment


class MinAtarEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, env_id: str, max_steps: int = MAX_AGENT_STEPS, render_mode: str | None = None):
        game = parse_id(env_id)
        self.env_id, self.max_steps, self.render_mode = env_id, max_steps, render_mode
        self._game = _environment_class()(game, sticky_action_prob=STICKY)
        self._action_set = list(self._game.minimal_action_set())
        self.action_space = gym.spaces.Discrete(len(self._action_set))
        height, width, channels = self._game.state_shape()
        self.observation_space = gym.spaces.Box(0, 1, (channels, height, width), np.uint8)
        self.frame_history = 1
        self._t = 0

    def _obs(self) -> np.ndarray:
        return np.ascontiguousarray(self._game.state().transpose(2, 0, 1), dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._game.seed(int(self.np_random.integers(2**31)))  # the game's RandomState and the sticky draws
        self._game.last_action = NOOP
        self._game.reset()
        self._t = 0
        return self._obs(), {}

    def step(self, action):
        reward, terminated = self._game.act(self._action_set[int(action)])
        self._t += 1
        terminated = bool(terminated)
        return self._obs(), float(reward), terminated, self._t >= self.max_steps and not terminated, {}

    def render(self):
        """The state as an RGB image, ``RENDER_SCALE`` pixels per cell, one colour per channel."""
        state = self._game.state()
        channels = state.shape[-1]
        colours = [(0.0, 0.0, 0.0)] + [colorsys.hsv_to_rgb(k / channels, 0.8, 1.0) for k in range(channels)]
        cell = np.where(state.any(-1), state.argmax(-1) + 1, 0)  # the first set channel; black if none
        image = (255 * np.asarray(colours)[cell]).astype(np.uint8)
        return np.repeat(np.repeat(image, RENDER_SCALE, 0), RENDER_SCALE, 1)

    def close(self):
        pass
