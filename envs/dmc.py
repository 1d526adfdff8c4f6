"""DeepMind Control Suite as gymnasium envs, preprocessed as MR.Q (and most DMC papers) do.

``--env-id dmc:<domain>-<task>`` (proprioceptive states) or ``dmc-pixels:<domain>-<task>``
(84x84 RGB from camera 0, camera 2 for quadruped). Both:

* actions in the spec's bounds (``[-1, 1]`` for every suite task), mapped by the ``envs`` layer;
* action repeat 2 with rewards summed; 500 agent steps (DMC's own 1000-step limit) end as a
  *truncation*: no DMC task terminates, so ``terminated`` is always False;
* states: the observation dict flattened and concatenated in its order, float32, unnormalised;
* pixels: uint8, channels first, the last 3 frames stacked (9 x 84 x 84); a reset fills the stack
  with copies of the first frame. Rendering needs ``MUJOCO_GL=egl`` (or ``osmesa``) without a display.

Seeding: ``reset(seed=s)`` seeds the env's generator, and every reset draws the task's random state
(initial configuration) from it, so an episode is fixed by that generator's state and the actions
(what ``SeedEnvs`` relies on to resume). The authors instead pass ``random=seed`` once to
``suite.load`` and let the task's RandomState run on across episodes: the same distribution of
initial states, another stream.
"""

from __future__ import annotations

import difflib
import os

import gymnasium as gym
import numpy as np

from envs.errors import UserError

PREFIXES = ("dmc:", "dmc-pixels:")
ACTION_REPEAT = 2
MAX_AGENT_STEPS = 500
PIXEL_SIZE = 84
FRAME_HISTORY = 3


def _suite():
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"  # headless: dm_control picks its GL backend at import; osmesa also works
    try:
        from absl import logging as absl_logging
        from dm_control import suite
    except ImportError as e:
        raise UserError("DeepMind Control envs need dm_control: pip install -e '.[dmc]'") from e
    # dm_control's XML uses a compiler attribute newer MuJoCo deprecates; one warning per env is noise
    absl_logging.set_verbosity(absl_logging.ERROR)
    return suite


def parse_id(env_id: str) -> tuple[str, str, bool]:
    """'dmc:cartpole-balance' -> ('cartpole', 'balance', False); names are checked against the suite."""
    pixels = env_id.startswith("dmc-pixels:")
    name = env_id.split(":", 1)[1]
    valid = [f"{d}-{t}" for d, t in _suite().ALL_TASKS]
    if name not in valid:
        close = difflib.get_close_matches(name, valid, n=4, cutoff=0.5)
        prefix = env_id.split(":", 1)[0]
        hint = (f" Did you mean: {', '.join(prefix + ':' + c for c in close)}?" if close
                else f" Valid tasks: {', '.join(valid)}.")
        raise UserError(f"Unknown DeepMind Control task {env_id!r} (ids are {prefix}:<domain>-<task>).{hint}")
    domain, task = name.split("-", 1)
    return domain, task, pixels


class DMCEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, env_id: str, action_repeat: int = ACTION_REPEAT, max_steps: int = MAX_AGENT_STEPS,
                 render_mode: str | None = None):
        self.domain, self.task_name, self.pixels = parse_id(env_id)
        self.env_id, self.action_repeat, self.max_steps = env_id, action_repeat, max_steps
        self.render_mode = render_mode
        self._env = _suite().load(self.domain, self.task_name, task_kwargs={"random": 0})
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                           dtype=np.float32)
        self.camera = 2 if self.domain == "quadruped" else 0
        self.frame_history = FRAME_HISTORY if self.pixels else 1
        if self.pixels:
            self.observation_space = gym.spaces.Box(0, 255, (3 * FRAME_HISTORY, PIXEL_SIZE, PIXEL_SIZE), np.uint8)
        else:
            dim = sum(int(np.prod(v.shape)) for v in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dim,), np.float32)
        self._frames: list[np.ndarray] = []
        self._t = 0

    def _frame(self) -> np.ndarray:
        img = self._env.physics.render(PIXEL_SIZE, PIXEL_SIZE, camera_id=self.camera)
        return np.ascontiguousarray(img.transpose(2, 0, 1))  # [3, 84, 84] uint8

    def _observe(self, time_step) -> np.ndarray:
        if not self.pixels:
            return np.concatenate([np.asarray(v, np.float32).ravel() for v in time_step.observation.values()])
        self._frames = self._frames[1:] + [self._frame()]
        return np.concatenate(self._frames, axis=0)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._env.task._random = np.random.RandomState(int(self.np_random.integers(2**31)))
        time_step = self._env.reset()
        self._t = 0
        if self.pixels:
            self._frames = [self._frame()] * FRAME_HISTORY
            return np.concatenate(self._frames, axis=0), {}
        return self._observe(time_step), {}

    def step(self, action):
        action = np.asarray(action, np.float64)
        reward, time_step = 0.0, None
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += time_step.reward or 0.0
            if time_step.last():
                break
        self._t += 1
        truncated = self._t >= self.max_steps or time_step.last()
        return self._observe(time_step), reward, False, truncated, {}

    def render(self):
        return self._env.physics.render(480, 480, camera_id=self.camera)

    def close(self):
        self._env.close() if hasattr(self._env, "close") else None
