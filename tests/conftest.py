"""Shared test fixtures: a tiny env whose terminations and truncations are known in advance."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest


class CountEnv(gym.Env):
    """obs = [terminating, step, u]. At reset u ~ U(0, 1) from the env's RNG; an episode with
    u < 0.5 ("terminating") terminates after 3 steps, any other runs into the 5-step time limit
    (truncated). The reward is the env action itself, so stored rewards reveal the action scaling
    onto the asymmetric bounds [0, 4]."""

    TERMINATE_AT = 3
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(0.0, 4.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        u = self.np_random.uniform()
        self.terminating, self.t, self.u = float(u < 0.5), 0, u
        return self._obs(), {}

    def _obs(self):
        return np.array([self.terminating, self.t, self.u], np.float32)

    def step(self, action):
        self.t += 1
        terminated = bool(self.terminating and self.t == self.TERMINATE_AT)
        return self._obs(), float(action[0]), terminated, False, {}


if "CountEnv-v0" not in gym.registry:
    gym.register("CountEnv-v0", entry_point=CountEnv, max_episode_steps=5)


@pytest.fixture
def tiny_td3_args(tmp_path):
    """Small, fast TD3/DDPG settings; tests override what they exercise."""
    return dict(env_id="CountEnv-v0", total_timesteps=40, learning_starts=10, eval_freq=20, eval_episodes=2,
                batch_size=8, hidden_dim=16, results_dir=str(tmp_path), run_name="run")


class ScriptEnv(gym.Env):
    """Episode lengths and returns drawn at reset from the env's RNG, independent of the actions:
    each seed sees its own scripted stream of (length, return). Length 8 hits the time limit
    (truncated), shorter episodes terminate. Used to replay TD7's checkpoint schedule."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length, self.ret, self.t = int(self.np_random.integers(2, 9)), float(self.np_random.normal() * 10), 0
        return self._obs(), {}

    def _obs(self):
        return np.array([self.t / self.length, self.ret / 10], np.float32)

    def step(self, action):
        self.t += 1
        return self._obs(), self.ret / self.length, self.t == self.length < 8, False, {}


if "ScriptEnv-v0" not in gym.registry:
    gym.register("ScriptEnv-v0", entry_point=ScriptEnv, max_episode_steps=8)


@pytest.fixture(scope="module")
def module_minari_root(tmp_path_factory):
    """A Minari datasets folder of the module's own (MINARI_DATASETS_PATH) for tests that write datasets."""
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        yield root


# The files of the longest tests go first (stable sort: the order within a file stays), so the two
# pytest-xdist workers end together instead of one waiting on a late two-minute test.
LONG_FIRST = ("test_learning.py", "test_offline_learning.py", "test_scale.py", "test_ddqn.py", "test_td3_lap.py",
              "test_bench_gpu.py", "test_discrete_bcq.py", "test_launch_slurm.py", "test_sr_dice.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))


def pytest_configure(config):
    """JAX's persistent compilation cache from the start of every test process (as `runs.cli` turns it on for
    a program): tests that build the same agent shapes compile them once per machine, not once per test."""
    from envs import runs

    runs.compile_cache()


def pytest_ignore_collect(collection_path, config):
    """tests/parity runs only under `make parity` (or when named on the command line): it needs torch, the
    authors' code and float64, which it turns on for its whole process."""
    if collection_path.name == "parity" and collection_path.parent.name == "tests":
        named = [str(Path(a.split("::")[0]).resolve()) for a in config.args]
        if not any(n.startswith(str(collection_path.resolve())) for n in named):
            return True
    return None
