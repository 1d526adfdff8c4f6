"""Parity of algos/td3.py and algos/ddpg.py with sfujim/TD3 (TD3.py, OurDDPG.py), float64.

Same initial weights (the authors' torch init, converted), the same sampled indices and target noise: our
side draws them from its own key schedule inside `agent.update`; the test replays that schedule and hands the
authors' `train` the same values through a stub buffer and `torch.randn_like`."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.parity.harness import mlp, optax_adam, td3_iteration, td3_state_rel, td3_actor, td3_critic, random_buffer, StubBuffer, Parity, adam_moment, load_authors, ours, stack, tree_rel, unstack

OBS, ACT, B, SIZE = 11, 3, 64, 500


def td3_pair(policy_noise=0.2):
    """The authors' TD3 (float64, their init) and our agent and learner holding the same weights."""
    td3 = ours("td3")
    TD3 = load_authors("TD3", "TD3")
    torch.manual_seed(0)
    th = TD3.TD3(OBS, ACT, 1.0, discount=0.99, tau=0.005, policy_noise=policy_noise, noise_clip=0.5, policy_freq=2)
    for m in (th.actor, th.actor_target, th.critic, th.critic_target):
        m.double()
    args = td3.Args(env_id="Hopper-v4", total_timesteps=SIZE, batch_size=B)
    agent = td3.make_agent(args, OBS, ACT)
    l0, _ = agent.init(jnp.stack([jax.random.PRNGKey(0)]))
    a, c = td3_actor(th.actor), td3_critic(th.critic)
    learner = stack(td3.Learner(a, a, c, c, optax.adam(args.actor_lr).init(a), optax.adam(args.critic_lr).init(c),
                                l0.key[0]))
    data = random_buffer(td3, SIZE, OBS, ACT)
    return th, agent, args, learner, data, StubBuffer(data)


@pytest.mark.authors("TD3")
def test_td3_update_matches_authors():
    th, agent, args, learner, data, stub = td3_pair()
    p = Parity("td3.py", "update: critic, delayed actor, Polyak targets, Adam moments")
    iters = 8
    for it in range(1, iters + 1):
        update_actor = it % args.policy_freq == 0  # the authors' total_it % policy_freq
        learner = td3_iteration(th, agent, learner, data, stub, update_actor, B, SIZE, ACT)
        p.check(it=it, **td3_state_rel(unstack(learner), th, it))
    p.finish(iters)


@pytest.mark.authors("TD3")
def test_ddpg_update_matches_authors():
    ddpg = ours("ddpg")
    OurDDPG = load_authors("TD3", "OurDDPG")
    torch.manual_seed(0)
    th = OurDDPG.DDPG(OBS, ACT, 1.0, discount=0.99, tau=0.005)
    for m in (th.actor, th.actor_target, th.critic, th.critic_target):
        m.double()
    actor_p = td3_actor
    critic_p = lambda c, g=None: {"params": mlp(c, ("l1", "l2", "l3"), g)}  # noqa: E731  (one critic)

    args = ddpg.Args(env_id="Hopper-v4", total_timesteps=SIZE, batch_size=B)
    agent = ddpg.make_agent(args, OBS, ACT)
    l0, _ = agent.init(jnp.stack([jax.random.PRNGKey(0)]))
    a, c = actor_p(th.actor), critic_p(th.critic)
    learner = stack(ddpg.Learner(a, a, c, c, optax.adam(args.actor_lr).init(a), optax.adam(args.critic_lr).init(c),
                                 l0.key[0]))
    data = random_buffer(ddpg, SIZE, OBS, ACT)
    stub = StubBuffer(data)
    p = Parity("ddpg.py", "update: critic, actor, Polyak targets, Adam moments")
    iters = 5
    for it in range(1, iters + 1):
        _, k_idx = jax.random.split(learner.key[0])
        stub.idx = jax.random.randint(k_idx, (B,), 0, SIZE)
        th.train(stub, B)
        learner, m = agent.update(learner, stack(data), SIZE)
        np.testing.assert_array_equal(np.asarray(m["idx"][0]), np.asarray(stub.idx))
        s = unstack(learner)
        mu_c, nu_c, _ = optax_adam(s.critic_opt)
        mu_a, nu_a, _ = optax_adam(s.actor_opt)
        p.check(it=it,
                critic=tree_rel(s.critic, critic_p(th.critic)),
                critic_target=tree_rel(s.critic_target, critic_p(th.critic_target)),
                actor=tree_rel(s.actor, actor_p(th.actor)),
                actor_target=tree_rel(s.actor_target, actor_p(th.actor_target)),
                critic_adam=max(tree_rel(mu_c, critic_p(th.critic, adam_moment(th.critic_optimizer, "exp_avg"))),
                                tree_rel(nu_c, critic_p(th.critic, adam_moment(th.critic_optimizer, "exp_avg_sq")))),
                actor_adam=max(tree_rel(mu_a, actor_p(th.actor, adam_moment(th.actor_optimizer, "exp_avg"))),
                               tree_rel(nu_a, actor_p(th.actor, adam_moment(th.actor_optimizer, "exp_avg_sq")))))
    p.finish(iters)


@pytest.mark.authors("TD3")
def test_td3_detects_a_changed_target_noise():
    """The harness is sharp: the authors' target noise scaled by 1.0005 moves the critic far above the tolerance."""
    th, agent, _, learner, data, stub = td3_pair(policy_noise=0.2 * 1.0005)
    learner = td3_iteration(th, agent, learner, data, stub, False, B, SIZE, ACT)
    assert tree_rel(unstack(learner).critic, td3_critic(th.critic)) > 1e-6
