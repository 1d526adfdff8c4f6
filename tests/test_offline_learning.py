"""Offline learning: TD3+BC and BCQ recover an expert's return from its dataset, BC-free TD3 does not.

The task is Pendulum-v1, whose returns lie in about [-1600, 0]: uniform random actions score about
-1250, a policy that swings the pole up and holds it -150. The expert is a TD3 trained online for
9,000 steps (64-64 networks, Adam 1e-3, to be quick; it reaches about -145). Its dataset is 10,000
transitions (50 episodes) of that policy with Gaussian noise 0.1, collected by the dataset tool.

Since the returns are negative, "at least 80% of the dataset's mean return" is measured from the
random policy: (R - R_random) / (R_data - R_random) >= 0.8, i.e. about -370 for a -145 expert. That
needs the pole swung up and held from most start states, which only a learned policy does.

Budget (paper hyperparameters otherwise): TD3+BC 3,000 updates (about 15 s on 2 CPU cores), BCQ
1,000 updates (its 750-wide VAE makes it the slowest, about 40 s; it measured -208 after 1,000 and
-182 after 2,000 updates on such a dataset, i.e. 94% and 97%). BC-free TD3 is TD3+BC with
alpha = 1e6 (the BC term's weight against the Q term is then 1e-6, and Adam ignores the scale): on
the same data and budget it extrapolates to actions the data never shows and stays below the 80%
mark, at least 0.2 under TD3+BC (measured: 36% and 53% in two runs, TD3+BC 96%; at 1,000 updates
it is still at random level while TD3+BC is at 90%).
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from algos import bcq, td3_bc
from envs import offline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.xdist_group("offline_learning")  # one worker makes the expert dataset once
THRESHOLD = 0.8
DATASET = "minari:fujimoto-jax/pendulum/expert-v0"


def _python(*args, env):
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def expert(tmp_path_factory, monkeypatch_module):
    tmp = tmp_path_factory.mktemp("offline_learning")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MINARI_DATASETS_PATH": str(tmp / "minari")}
    monkeypatch_module.setenv("MINARI_DATASETS_PATH", str(tmp / "minari"))
    _python("algos/td3.py", "--env-id", "Pendulum-v1", "--total-timesteps", "9000", "--learning-starts", "1000",
            "--eval-freq", "9000", "--eval-episodes", "5", "--hidden-dim", "64", "--batch-size", "128",
            "--actor-lr", "1e-3", "--critic-lr", "1e-3", "--save-model", "--results-dir", str(tmp), "--run-name",
            "expert", env=env)
    _python("-m", "envs.collect", "--recipe", "expert", "--checkpoint", str(tmp / "expert"), "--steps", "10000",
            "--eval-episodes", "5", env=env)
    data = offline.load(DATASET, "Pendulum-v1")
    import minari
    facts = json.loads(minari.load_dataset(DATASET.split(":", 1)[1]).storage.metadata["fujimoto_jax"])
    return {"dir": tmp, "data_return": float(np.mean(data.episode_returns)), "random": facts["random_return"],
            "expert_return": facts["policies"][0]["return"]}


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _fraction(ret, expert):
    return (np.asarray(ret) - expert["random"]) / (expert["data_return"] - expert["random"])


def _train(module, expert, name, updates, **kw):
    args = module.Args(dataset=DATASET, env_id="Pendulum-v1", total_timesteps=updates, eval_freq=updates,
                       eval_episodes=10, results_dir=str(expert["dir"]), run_name=name, **kw)
    return module.train(args)["final_eval"]


def test_expert_dataset_is_an_expert(expert):
    # what the thresholds below are measured against: a swing-up policy, far above random
    assert expert["data_return"] > -300 and expert["random"] < -1000, expert


def test_td3_bc_recovers_the_expert_and_beats_bc_free_td3(expert):
    with_bc = _train(td3_bc, expert, "td3_bc", 3000)
    without = _train(td3_bc, expert, "td3_no_bc", 3000, alpha=1e6)
    assert _fraction(with_bc, expert).min() >= THRESHOLD, (with_bc, expert)
    assert _fraction(without, expert).max() < THRESHOLD, (without, expert)
    assert _fraction(with_bc, expert).mean() - _fraction(without, expert).mean() >= 0.2, (without, with_bc, expert)


@pytest.mark.slow  # 66 s on a fresh clone: in `make test-slow`, so the default suite keeps under 15 minutes
def test_bcq_recovers_the_expert(expert):
    returns = _train(bcq, expert, "bcq", 1000)
    assert _fraction(returns, expert).min() >= THRESHOLD, (returns, expert)
