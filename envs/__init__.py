"""Thin adapters between environment suites and the algorithms in ``algos/``.

One ``--env-id`` convention across suites: gymnasium ids as they are (``Hopper-v4``),
``dmc:<domain>-<task>`` (DeepMind Control, proprioceptive states), ``dmc-pixels:<domain>-<task>``
(DeepMind Control, 84x84 pixels), ``atari:<Game>`` (``ALE/<Game>-v5``, MR.Q's preprocessing),
``dqn-atari:<Game>`` (the same ALE settings, the DQN-era preprocessing of discrete BCQ and LAP/PAL:
zero-padded frame stacks, raw rewards that the algorithms clip with ``envs.atari.clip_reward``),
``minatar:<game>`` (MinAtar, 10x10 states, extra ``minatar``) and
``ogbench:<env>-<play|noisy>-singletask-task<k>-v0`` (OGBench's single-task manipulation envs, extra
``ogbench``; their ``info["success"]`` gives ``Evaluator.successes``); see ``envs/dmc.py``,
``envs/atari.py``, ``envs/minatar.py`` and ``envs/ogbench.py`` for their preprocessing. Pixel and
discrete-action envs are only accepted by algorithms that ask for them (``make_env(..., pixels_ok=True,
discrete_ok=True)``).

The contract every algorithm relies on (pinned by ``tests/test_envs.py``):

* one environment per seed; seed ``i`` of a run with ``--seed s`` is seeded ``s + i``;
* observations are float32 vectors; the algorithm acts in ``[-1, 1]`` and the adapter maps
  actions affinely onto the env's bounds (Humanoid's are +-0.4);
* every step reports ``reward``, ``terminated`` and ``truncated`` separately, and when an
  episode ends the *true final observation* as ``next_obs``, while ``obs`` already holds the
  first observation of the next episode. A time-limit end (``truncated``) must bootstrap, a
  termination must not: store ``terminated``, never ``terminated | truncated``;
* evaluation is deterministic, on separate envs seeded ``seed + 100``; ``Evaluator.successes`` holds
  the per-seed success rate where the env reports ``info["success"]`` (NaN elsewhere).
"""

from envs.gym import EnvStep, Evaluator, SeedEnvs, make_env

__all__ = ["EnvStep", "Evaluator", "SeedEnvs", "make_env"]
