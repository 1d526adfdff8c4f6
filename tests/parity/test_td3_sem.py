"""Parity of algos/td3_sem.py with sfujim/TD3 (TD3.py), float64, for everything but the SEM layer.

(a) With a SEM layer in the actor or the critics there is no authors' code to run beside ours: sfujim/TD3 has
no SEM, and the SEM authors' code (waltermayor/FastTD3_SEm @ 38383766) is FastTD3 (distributional critic,
three hidden layers, parallel envs), not in AUTHORS_DIR. A float64 torch re-statement of the layer would share
our reading of it, so none is run; the layer is checked against hand values in tests/test_td3_sem.py.

(b) What can be compared: td3_sem's own update path (make_agent, update, its targets, Adam, Polyak) with the SEM
layers replaced by TD3's Linear + ReLU. --sem has no "off" value, so the test adds one for its duration
(SEM_PLACES["off"] = no SEM anywhere): everything else is the file's own code, run as tests/parity/test_td3.py
runs td3.py, on the same weights, indices and target noise."""

import jax
import jax.numpy as jnp
import optax
import pytest
import torch

from tests.parity.harness import (StubBuffer, Parity, load_authors, ours, random_buffer, stack, td3_actor,
                                  td3_critic, td3_iteration, td3_state_rel, unstack)

OBS, ACT, B, SIZE = 11, 3, 64, 500


@pytest.fixture
def sem_off(monkeypatch):
    """td3_sem with a test-only --sem value that places no SEM layer."""
    td3_sem = ours("td3_sem")
    monkeypatch.setitem(td3_sem.SEM_PLACES, "off", (False, False))
    return td3_sem


def pair(td3_sem):
    TD3 = load_authors("TD3", "TD3")
    torch.manual_seed(0)
    th = TD3.TD3(OBS, ACT, 1.0, discount=0.99, tau=0.005, policy_noise=0.2, noise_clip=0.5, policy_freq=2)
    for m in (th.actor, th.actor_target, th.critic, th.critic_target):
        m.double()
    args = td3_sem.Args(env_id="Hopper-v4", total_timesteps=SIZE, batch_size=B, sem="off")
    agent = td3_sem.make_agent(args, OBS, ACT)
    l0, _ = agent.init(jnp.stack([jax.random.PRNGKey(0)]))
    a, c = td3_actor(th.actor), td3_critic(th.critic)
    # our own init has exactly the authors' layout once SEM is off
    assert jax.tree.structure(unstack(l0.actor)) == jax.tree.structure(a)
    assert jax.tree.structure(unstack(l0.critic)) == jax.tree.structure(c)
    learner = stack(td3_sem.Learner(a, a, c, c, optax.adam(args.actor_lr).init(a),
                                    optax.adam(args.critic_lr).init(c), l0.key[0]))
    data = random_buffer(td3_sem, SIZE, OBS, ACT)
    return th, agent, args, learner, data, StubBuffer(data)


@pytest.mark.authors("TD3")
def test_td3_sem_update_without_the_sem_layer_matches_authors(sem_off):
    th, agent, args, learner, data, stub = pair(sem_off)
    p = Parity("td3_sem.py", "update with the SEM layers replaced by TD3's (test-only --sem off): critic, delayed "
               "actor, Polyak targets, Adam moments")
    iters = 8
    for it in range(1, iters + 1):
        learner = td3_iteration(th, agent, learner, data, stub, it % args.policy_freq == 0, B, SIZE, ACT)
        p.check(it=it, **td3_state_rel(unstack(learner), th, it))
    p.finish(iters, note="SEM on: no authors' code holds it (sfujim/TD3 has none; FastTD3_SEm is FastTD3, not in "
                         "AUTHORS_DIR); the layer is tested on hand values in tests/test_td3_sem.py")


@pytest.mark.authors("TD3")
def test_every_real_sem_value_changes_the_networks(sem_off):
    """The comparison above is of the SEM-free path only: each real --sem value puts a layer the authors' TD3
    has no counterpart for (their parameter tree no longer matches ours)."""
    for sem, (in_actor, in_critic) in {"actor": (True, False), "critic": (False, True), "both": (True, True)}.items():
        args = sem_off.Args(env_id="Hopper-v4", total_timesteps=SIZE, batch_size=B, sem=sem)
        l0, _ = sem_off.make_agent(args, OBS, ACT).init(jnp.stack([jax.random.PRNGKey(0)]))
        actor, critic = unstack(l0.actor), unstack(l0.critic)
        assert ("SimNormLinear_0" in actor["params"]) == in_actor
        assert ("SimNormLinear_0" in critic["params"]["q1"]) == in_critic
