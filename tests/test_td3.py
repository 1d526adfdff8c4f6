"""TD3 and DDPG: targets, update schedules, initialisation, which Q drives the actor."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algos import ddpg, td3

OBS_DIM, ACT_DIM = 5, 2


def _agent(algo, num_seeds=1, **overrides):
    args = algo.Args(**{"batch_size": 32, "hidden_dim": 32, "total_timesteps": 100, **overrides})
    agent = algo.make_agent(args, OBS_DIM, ACT_DIM)
    learner, buffer = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
    rng = np.random.default_rng(0)
    cap = agent.capacity
    buffer = type(buffer)(
        obs=jnp.asarray(rng.normal(size=(num_seeds, cap, OBS_DIM)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, (num_seeds, cap, ACT_DIM)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=(num_seeds, cap)), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(num_seeds, cap, OBS_DIM)), jnp.float32),
        terminated=jnp.asarray(rng.uniform(size=(num_seeds, cap)) < 0.1, jnp.float32),
    )
    return args, agent, learner, buffer


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------------------------------------
# Targets against hand-computed values
# ---------------------------------------------------------------------------------------------
def test_td3_target_clipped_double_q():
    y = td3.td3_target(jnp.array([1.0, 2.0, -1.0]), jnp.array([0.0, 1.0, 0.0]),
                       jnp.array([10.0, 5.0, -3.0]), jnp.array([8.0, 7.0, -2.0]), 0.99)
    # min(10, 8) = 8 bootstrapped; terminal -> reward only; min(-3, -2) = -3
    np.testing.assert_allclose(y, [1 + 0.99 * 8, 2.0, -1 + 0.99 * -3], rtol=1e-6)


def test_td3_target_action_smoothing_noise_is_clipped_then_action_clipped():
    key = jax.random.PRNGKey(3)
    pi = jnp.array([[0.9, -0.2, 0.0, -0.95]])
    eps = jax.random.normal(key, pi.shape) * 0.2  # the same draw the function makes
    expected = np.clip(np.asarray(pi) + np.clip(np.asarray(eps), -0.5, 0.5), -1, 1)
    np.testing.assert_allclose(td3.smoothed_target_action(key, pi, 0.2, 0.5), expected, rtol=1e-6)
    # huge noise: every component is clipped to +-c before adding, then the action to [-1, 1]
    out = np.asarray(td3.smoothed_target_action(key, pi, 100.0, 0.5))
    sign = np.sign(np.asarray(jax.random.normal(key, pi.shape)))
    np.testing.assert_allclose(out, np.clip(np.asarray(pi) + 0.5 * sign, -1, 1), rtol=1e-6)


def test_ddpg_target():
    y = ddpg.ddpg_target(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), jnp.array([10.0, 5.0]), 0.9)
    np.testing.assert_allclose(y, [1 + 0.9 * 10, 2.0], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------
def test_td3_schedule_delays_actor_to_even_iterations():
    flags = [td3.schedule(t, learning_starts=10, policy_freq=2) for t in range(8, 15)]
    assert [f[0] for f in flags] == [False, False, True, True, True, True, True]  # train from t = 10
    assert [f[1] for f in flags] == [False, False, False, True, False, True, False]  # iterations 2, 4
    assert [f[2] for f in flags] == [True, False, False, False, False, False, False]  # policy acts from t = 10


def test_td3_step_moves_actor_and_targets_only_on_delayed_iterations():
    """Drive the fused jitted step through the real schedule and watch which parts move."""
    args, agent, learner, buffer = _agent(td3, learning_starts=0)
    obs = jnp.zeros((1, OBS_DIM))
    for t in range(6):
        before = jax.device_get(learner)  # host copy: the step donates (deletes) its inputs
        tr = jax.tree.map(lambda x: np.asarray(x[:, t]), buffer)
        flags = td3.schedule(t, args.learning_starts, args.policy_freq)
        learner, buffer, action, metrics = agent.step(learner, buffer, tr, obs, t, *flags)
        delayed = (t + 1) % 2 == 0
        assert not _same(before.critic, learner.critic)  # the critic moves every iteration
        assert _same(before.actor, learner.actor) != delayed
        assert _same(before.actor_target, learner.actor_target) != delayed
        assert _same(before.critic_target, learner.critic_target) != delayed
        if delayed:  # Polyak with tau on both targets, from the *updated* online nets
            for new, old, online in ((learner.actor_target, before.actor_target, learner.actor),
                                     (learner.critic_target, before.critic_target, learner.critic)):
                for n, o, p in zip(jax.tree.leaves(new), jax.tree.leaves(old), jax.tree.leaves(online)):
                    np.testing.assert_allclose(n, 0.005 * p + 0.995 * o, rtol=1e-5, atol=1e-7)
        assert "actor_loss" in metrics if delayed else "actor_loss" not in metrics


def test_ddpg_updates_actor_and_targets_every_iteration():
    args, agent, learner, buffer = _agent(ddpg)
    for _ in range(3):
        before = learner
        learner, _ = agent.update(before, buffer, jnp.int32(agent.capacity))
        for name in ("actor", "critic", "actor_target", "critic_target"):
            assert not _same(getattr(before, name), getattr(learner, name)), name
        for n, o, p in zip(jax.tree.leaves(learner.critic_target), jax.tree.leaves(before.critic_target),
                           jax.tree.leaves(learner.critic)):
            np.testing.assert_allclose(n, 0.005 * p + 0.995 * o, rtol=1e-5, atol=1e-7)
    assert [ddpg.schedule(t, 10) for t in (8, 9, 10)] == [(False, True), (False, False), (True, False)]


# ---------------------------------------------------------------------------------------------
# Actor loss: TD3 uses Q1 only
# ---------------------------------------------------------------------------------------------
def test_td3_actor_gradient_flows_through_q1_only():
    args, agent, learner, buffer = _agent(td3)
    size = jnp.int32(agent.capacity)

    def perturb(learner, head):
        critic = jax.tree_util.tree_map_with_path(
            lambda path, x: x + 0.5 if head in jax.tree_util.keystr(path) else x, learner.critic)
        return learner._replace(critic=critic)

    base, _ = agent.update(learner, buffer, size, True)
    q2_changed, _ = agent.update(perturb(learner, "q2"), buffer, size, True)
    q1_changed, _ = agent.update(perturb(learner, "q1"), buffer, size, True)
    assert _same(base.actor, q2_changed.actor)  # Q2 does not reach the actor
    assert not _same(base.actor, q1_changed.actor)


# ---------------------------------------------------------------------------------------------
# Initialisation: PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)) for weights and biases
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", [td3, ddpg])
def test_layer_init_matches_pytorch_default(algo):
    _, _, learner, _ = _agent(algo, hidden_dim=256)
    checked = 0
    for params in (learner.actor, learner.critic):
        flat = jax.tree_util.tree_flatten_with_path(params)[0]
        kernels = {jax.tree_util.keystr(p)[: -len("['kernel']")]: x for p, x in flat if "kernel" in jax.tree_util.keystr(p)}
        for prefix, kernel in kernels.items():
            bias = dict((jax.tree_util.keystr(p), x) for p, x in flat)[prefix + "['bias']"]
            bound = 1 / np.sqrt(kernel.shape[-2])  # fan_in
            for x in (np.asarray(kernel), np.asarray(bias)):
                assert np.abs(x).max() <= bound
                if x.size >= 256:  # uniform: reaches near the bound, std = bound / sqrt(3)
                    assert np.abs(x).max() > 0.95 * bound
                    assert x.std() == pytest.approx(bound / np.sqrt(3), rel=0.1)
            checked += 1
    assert checked == (3 + 6 if algo is td3 else 3 + 3)
    # targets start as exact copies
    assert _same(learner.actor, learner.actor_target) and _same(learner.critic, learner.critic_target)
