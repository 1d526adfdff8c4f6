"""Parity of algos/td3_ot.py's OT reward (and envs/imitation.py's expert statistics) with OOPS (weidi-chang/OOPS @
d73f51c, MIT), float64.

Theirs: main.py compute_ot (scipy cdist, POT ot.bregman.sinkhorn_log with uniform marginals, reg 0.05, max_iter
20,000, POT's default stopThr 1e-9) and utils.ExpertDataset (mean and std of the expert's states, std replaced by 1
where zero and clipped at 0.33 as main.py does, normz). Ours: imitation.normalization, td3_ot.make_expert,
pair_features and ot_rewards with --ot-iters 20000 (OOPS's cap, so both stop at the same POT check).
Trajectories: Pendulum-v1 rollouts (a swinging energy controller as the expert, three learners: another start of
the same controller, the expert plus small noise, uniform random actions), 200 steps each, as OOPS's n = m.
"""

import numpy as np
import pytest

from tests.parity.harness import Parity, gym_stub, load_authors, ours, rel

T, REG, MAX_ITER = 200, 0.05, 20_000


def rollout(seed: int, policy) -> np.ndarray:
    """[T + 1, 3] Pendulum-v1 states of one episode."""
    import gymnasium as gym
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=seed)
    states, rng = [obs], np.random.default_rng(seed)
    for _ in range(T):
        obs, *_ = env.step(policy(obs, rng))
        states.append(obs)
    env.close()
    return np.asarray(states, np.float64)


def energy(obs, rng):  # pump energy in the swing direction: a deterministic, expert-like trajectory
    cos, sin, w = obs
    return np.array([np.clip(2.0 * np.sign(w * (1.0 - cos) + 1e-3), -2, 2)])


def demos_of(paths):
    """OOPS's demo layout: an object array of episodes, each [T, 4] rows (s, a, r, s')."""
    demos = np.empty(len(paths), object)
    for k, s in enumerate(paths):
        rows = np.empty((len(s) - 1, 4), object)
        for t in range(len(s) - 1):
            rows[t] = [s[t], np.zeros(1), 0.0, s[t + 1]]
        demos[k] = rows
    return demos


@pytest.mark.authors("OOPS")
def test_ot_rewards_and_normalisation_match_oops():
    import jax.numpy as jnp

    from envs import imitation
    td3_ot = ours("td3_ot")
    main, utils = load_authors("OOPS", "main", "utils", stubs={"gym": gym_stub()})
    expert_paths = [rollout(1, energy), rollout(2, energy)]
    learners = {"another expert start": rollout(3, energy),
                "expert + noise 0.01": expert_paths[0] + 0.01 * np.random.default_rng(4).normal(size=(T + 1, 3)),
                "random actions": rollout(5, lambda o, rng: rng.uniform(-2, 2, 1))}

    # Normalisation: their ExpertDataset on their demo layout, std handled as main.py does
    data = utils.ExpertDataset(demos_of(expert_paths), normalize=False, clip=False)
    data.std = np.where(np.isclose(data.std, 0.0), 1.0, data.std).clip(min=0.33)
    expert = imitation.ExpertStates([s[:-1] for s in expert_paths], [s[1:] for s in expert_paths])
    mean, std = imitation.normalization(expert, 0.33)
    p = Parity("td3_ot.py", "expert normalisation (imitation.normalization + normalize) vs utils.ExpertDataset "
                            "(std isclose 0 -> 1, clip 0.33 as main.py) and its normz")
    x = learners["random actions"]
    p.check(mean=rel(mean, data.mean), std=rel(std, data.std),
            normz=rel(np.asarray(td3_ot.normalize(jnp.asarray(x), jnp.asarray(mean), jnp.asarray(std))), data.normz(x)))
    p.finish(iterations=1, note=f"2 expert episodes of {T} steps; each episode's last s left out on both sides")

    # OT rewards and plan: their compute_ot (expert first, learner second, ot_cpu) on their normalised pairs
    ex = td3_ot.make_expert(expert, 0.33, T)
    demo = np.concatenate([data.normz(expert_paths[0][:-1]), data.normz(expert_paths[0][1:])], -1)  # [T, 6]
    a_ot = np.ones(T) / T
    p = Parity("td3_ot.py", "OT reward per learner step (-sum_i C_ij P_ij) and plan vs main.compute_ot (POT "
                            "sinkhorn_log, reg 0.05, max_iter 20,000, stopThr 1e-9)")
    iters = {}
    for it, (name, s) in enumerate(learners.items(), 1):
        traj = np.concatenate([data.normz(s[:-1]), data.normz(s[1:])], -1)
        theirs, plan, _ = main.compute_ot(demo, traj, a_ot, a_ot, REG, MAX_ITER, tcot=False, ot_cpu=True)
        y = td3_ot.pair_features(jnp.asarray(s[:-1]), jnp.asarray(s[1:]), ex.mean, ex.std)
        rewards, ours_plan, k = td3_ot.ot_rewards(ex.features[0], ex.lengths[0], y, jnp.asarray(T), REG, MAX_ITER, 1e-9)
        iters[name] = int(k)
        p.check(it=it, features=rel(np.asarray(ex.features[0]), demo), learner_features=rel(np.asarray(y), traj),
                reward=rel(np.asarray(rewards), theirs), plan=rel(np.asarray(ours_plan), plan),
                ot_return=rel(np.sum(np.asarray(rewards)), np.sum(theirs)))
    p.finish(note="Pendulum-v1 rollouts, n = m = 200; our Sinkhorn iterations (POT stops at the same check): "
                  + ", ".join(f"{k} {v}" for k, v in iters.items()))
