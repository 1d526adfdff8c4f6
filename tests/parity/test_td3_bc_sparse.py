"""Parity of algos/td3_bc_sparse.py with sfujim/TD3_BC's update (TD3_BC.py) on masked networks, float64.

The Sparse-Reg code (SaminYeasar/sparse_reg @ 6ceeadb: no license, so neither run nor copied here) prunes a
TD3_BC whose update is sfujim/TD3_BC's (the same losses; --lr 1e-3 for both optimizers). Its mechanism, written
again below from its description: every nn.Linear's forward uses weight * mask (the target networks the
online masks), a gradient hook multiplies each online weight's gradient by its mask, the weights are not zeroed,
the optimizers keep their state across a re-prune. For scoring it sets every mask to a parameter of ones and runs
the update's two backward passes (critic loss, then actor loss) without an optimizer step. Applied here to the
authors' TD3_BC, whose `train` is the oracle:

1. dense (--keep-ratio 1): `update` and `train_chunk` equal their train (the td3_bc.py parity, with masks);
2. masked: masks from our score, then a re-prune to other masks after 4 updates: every output equal (losses,
   the weights the forward sees, Adam's moments, every weight that is not pruned by the re-prune); the one
   documented difference (td3_bc_sparse.py's header) is measured: their Adam still moves the weights the
   re-prune pruned (masked out, so no output sees it), ours keep their values;
3. the score: the gradient of their losses with respect to the masks, against `snip_scores`, and the code's keep
   rule (scores / sum >= the k-th largest) on their scores against our masks.
Batch indices and target noise are our key schedule's draws, handed to theirs (StubBuffer, torch.randn_like).
"""

import copy
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F

from tests.parity.harness import Parity, StubBuffer, adam_moment, linear, load_authors, ours, patched, rel, t64, \
    tree_rel, td3_actor as actor_p, td3_critic as critic_p

OBS, ACT, B, SIZE, ITERS = 11, 3, 64, 500, 8
ACTOR_LAYERS, CRITIC_LAYERS = ("l1", "l2", "l3"), ("l1", "l2", "l3", "l4", "l5", "l6")


def host(tree):
    return jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(tree))


def _setup(keep_ratio):
    sp, TD3_BC = ours("td3_bc_sparse"), load_authors("TD3_BC", "TD3_BC")
    torch.manual_seed(0)
    th = TD3_BC.TD3_BC(OBS, ACT, 1.0)
    args = sp.Args(dataset="d4rl:x.hdf5", env_id="Hopper-v4", batch_size=B, keep_ratio=keep_ratio)
    for opt in (th.actor_optimizer, th.critic_optimizer):  # the Sparse-Reg code passes its --lr 1e-3 to TD3_BC
        for group in opt.param_groups:
            group["lr"] = args.actor_lr
    agent = sp.make_agent(args, OBS, ACT)
    a, c = jax.device_get((actor_p(th.actor), critic_p(th.critic)))
    key = np.asarray(agent.init(jnp.stack([jax.random.PRNGKey(0)])).key)[0]
    zeros = lambda p: jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), jax.eval_shape(optax.adam(1.0).init, p))  # noqa
    ones = lambda p: jax.tree.map(np.ones_like, p)  # noqa: E731
    start = jax.tree.map(lambda x: np.asarray(x)[None], sp.Learner(a, a, c, c, zeros(a), zeros(c), key, ones(a),
                                                                  ones(c)))
    rng = np.random.default_rng(1)
    data = jax.device_put(sp.Buffer(rng.normal(size=(SIZE, OBS)), rng.uniform(-1, 1, (SIZE, ACT)),
                                    3 * rng.normal(size=SIZE), rng.normal(size=(SIZE, OBS)),
                                    (rng.uniform(size=SIZE) < 0.1).astype(np.float64)))
    return sp, th, args, agent, start, data


def _draws(key, salt=None):
    """update's split (next, k_idx, k_noise), or the score's (fold_in salt, then k_idx, k_noise)."""
    if salt is None:
        _, k_idx, k_noise = jax.random.split(jnp.asarray(key), 3)
    else:
        k_idx, k_noise = jax.random.split(jax.random.fold_in(jnp.asarray(key), salt))
    return np.asarray(jax.random.randint(k_idx, (B,), 0, SIZE)), np.asarray(jax.random.normal(k_noise, (B, ACT)))


def _torch_masks(mask_tree, critic: bool):
    """Our kernel masks [in, out] as torch weight masks [out, in], in the torch layers' order."""
    p = mask_tree["params"]
    layers = [p["q1"][f"Linear_{i}"] for i in range(3)] + [p["q2"][f"Linear_{i}"] for i in range(3)] if critic else \
        [p[f"Linear_{i}"] for i in range(3)]
    return [t64(np.asarray(x["kernel"]).T) for x in layers]


def _mask_network(net, names, masks, hooks=None):
    """The Sparse-Reg mechanism on a torch network: forward with weight * mask; on an online network also a
    gradient hook grad * mask (the previous hooks removed first: a re-prune)."""
    for name, m in zip(names, masks):
        layer = getattr(net, name)
        layer.forward = types.MethodType(lambda self, x, m=m: F.linear(x, self.weight * m, self.bias), layer)
        if hooks is not None:
            hooks.append(layer.weight.register_hook(lambda g, m=m: g * m))


def _mask_agent(th, actor_mask, critic_mask, hooks):
    while hooks:
        hooks.pop().remove()
    am, cm = _torch_masks(actor_mask, False), _torch_masks(critic_mask, True)
    _mask_network(th.actor, ACTOR_LAYERS, am, hooks)
    _mask_network(th.critic, CRITIC_LAYERS, cm, hooks)
    _mask_network(th.actor_target, ACTOR_LAYERS, am)
    _mask_network(th.critic_target, CRITIC_LAYERS, cm)


def _theirs(th):
    """Their raw weights, targets and Adam moments in our layout."""
    mom = lambda conv, net, opt, which: conv(net, adam_moment(opt, which))  # noqa: E731
    return dict(actor=actor_p(th.actor), critic=critic_p(th.critic), actor_target=actor_p(th.actor_target),
                critic_target=critic_p(th.critic_target),
                actor_mu=mom(actor_p, th.actor, th.actor_optimizer, "exp_avg"),
                actor_nu=mom(actor_p, th.actor, th.actor_optimizer, "exp_avg_sq"),
                critic_mu=mom(critic_p, th.critic, th.critic_optimizer, "exp_avg"),
                critic_nu=mom(critic_p, th.critic, th.critic_optimizer, "exp_avg_sq"))


def _run(th, agent, learner, data, iters, first_it=1, check=None):
    """`iters` updates on both sides; check(it, learner, metrics, losses) after each."""
    stub, noise, losses = StubBuffer(data), [None], []
    backward = torch.Tensor.backward

    def record(self, *a, **k):
        losses.append(float(self.detach()))
        return backward(self, *a, **k)

    with patched((torch, "randn_like", lambda x, **kw: t64(noise[0])), (torch.Tensor, "backward", record)):
        for it in range(first_it, first_it + iters):
            stub.idx, noise[0] = _draws(host(learner).key)
            del losses[:]
            th.train(stub, B)
            learner, m = agent.update(learner, data, it % 2 == 0)  # the authors' total_it % policy_freq
            check(it, host(learner), host(m), list(losses))
    return learner


@pytest.mark.authors("TD3_BC")
def test_dense_update_matches_authors():
    sp, th, args, agent, start, data = _setup(1.0)
    p = Parity("td3_bc_sparse.py", "--keep-ratio 1 (no pruning): update vs sfujim/TD3_BC train (lr 1e-3): critic, "
                                   "actor, targets, Adam moments, losses")

    def check(it, s, m, losses):
        t = _theirs(th)
        p.check(it=it, **{k: tree_rel(getattr(s, k), t[k]) for k in ("actor", "critic", "actor_target",
                                                                       "critic_target")},
                adam=max(tree_rel(s.actor_opt[0].mu, t["actor_mu"]), tree_rel(s.actor_opt[0].nu, t["actor_nu"]),
                         tree_rel(s.critic_opt[0].mu, t["critic_mu"]), tree_rel(s.critic_opt[0].nu, t["critic_nu"])),
                losses=rel([m["critic_loss"]] + ([m["actor_loss"]] if it % 2 == 0 else []), losses))

    learner = _run(th, agent, jax.device_put(start), data, ITERS, check=check)
    p.finish(ITERS)
    chunk, _ = agent.train_chunk(jax.device_put(start), data, ITERS // 2, 0)  # masks scored at t = 0: all kept
    s, t = host(chunk), _theirs(th)
    q = Parity("td3_bc_sparse.py", f"--keep-ratio 1: train_chunk (scanned, mask scored at t = 0), {ITERS} updates")
    q.check(it=ITERS, actor=tree_rel(s.actor, t["actor"]), critic=tree_rel(s.critic, t["critic"]),
            actor_target=tree_rel(s.actor_target, t["actor_target"]),
            critic_target=tree_rel(s.critic_target, t["critic_target"]), key=rel(s.key, host(learner).key),
            masks_all_ones=float(sum(np.sum(x == 0) for x in jax.tree.leaves((s.actor_mask, s.critic_mask)))))
    q.finish(ITERS, note="the score's batch comes from a key folded off the learner's: the updates' draws are "
                         "td3_bc.py's")


@pytest.mark.authors("TD3_BC")
def test_masked_update_and_re_prune_match_authors_on_masked_networks():
    sp, th, args, agent, start, data = _setup(0.3)
    learner = agent.rescore(jax.device_put(start), data)  # the first masks: our score at t = 0 (keep 0.3)
    hooks = []
    _mask_agent(th, host(learner).actor_mask, host(learner).critic_mask, hooks)
    p = Parity("td3_bc_sparse.py", "masks (keep 0.3) and a re-prune after 4 updates: update vs sfujim/TD3_BC train "
                                   "on networks masked as the Sparse-Reg code masks them: losses, the weights the "
                                   "forward sees (w x mask, targets too), Adam moments, every weight not newly "
                                   "pruned")
    state = {"newly": None, "at_prune": None, "drift": 0.0}

    def check(it, s, m, losses):
        t = _theirs(th)
        eff = lambda tree, mask: jax.tree.map(np.multiply, tree, mask)  # noqa: E731
        keep = state["newly"] or {"actor": jax.tree.map(np.ones_like, s.actor_mask),
                                  "critic": jax.tree.map(np.ones_like, s.critic_mask)}
        diffs = {}
        for net, mask in (("actor", s.actor_mask), ("critic", s.critic_mask)):
            for k in (net, net + "_target"):
                diffs[f"{k}_seen"] = tree_rel(eff(getattr(s, k), mask), eff(t[k], mask))
                diffs[f"{k}_raw_not_newly_pruned"] = tree_rel(eff(getattr(s, k), keep[net]), eff(t[k], keep[net]))
        opt = lambda net: getattr(s, net + "_opt")[0]  # noqa: E731
        diffs["adam"] = max(tree_rel(opt(n).mu, t[n + "_mu"]) for n in ("actor", "critic"))
        diffs["adam_nu"] = max(tree_rel(opt(n).nu, t[n + "_nu"]) for n in ("actor", "critic"))
        diffs["losses"] = rel([m["critic_loss"]] + ([m["actor_loss"]] if it % 2 == 0 else []), losses)
        if state["at_prune"] is not None:  # newly pruned weights: ours never move, theirs drift (Adam's moments)
            for net in ("actor", "critic"):
                gone = jax.tree.map(lambda k: 1 - k, keep[net])
                ours_move = tree_rel(eff(getattr(s, net), gone), eff(state["at_prune"][net], gone))
                assert ours_move == 0.0, (net, ours_move)
                drift = max(np.max(np.abs(a - b)) for a, b in zip(jax.tree.leaves(eff(t[net], gone)),
                                                                  jax.tree.leaves(eff(state["at_prune"][net], gone))))
                state["drift"] = max(state["drift"], float(drift))
        p.check(it=it, **diffs)

    learner = _run(th, agent, learner, data, ITERS // 2, check=check)
    # the re-prune: our score on the trained learner, applied to both sides
    s0 = host(learner)
    learner = agent.rescore(learner, data)
    s1 = host(learner)
    _mask_agent(th, s1.actor_mask, s1.critic_mask, hooks)
    # compared after the re-prune: everything but the weights pruned now and kept before
    state["newly"] = {net: jax.tree.map(lambda a, b: 1 - a * (1 - b), getattr(s0, net + "_mask"),
                                        getattr(s1, net + "_mask")) for net in ("actor", "critic")}
    state["at_prune"] = {"actor": s1.actor, "critic": s1.critic}
    newly = sum(int(np.sum(x == 0)) for x in jax.tree.leaves(state["newly"]))
    assert newly > 0  # the re-prune prunes weights that were live (with Adam moments)
    _run(th, agent, learner, data, ITERS // 2, first_it=ITERS // 2 + 1, check=check)
    assert state["drift"] > 1e-6  # their Adam moves the newly pruned weights; ours asserted to stay put
    p.finish(ITERS, note=f"re-prune after update 4 pruned {newly} live weights: ours keep their values, theirs "
                         f"drift by up to {state['drift']:.2e} under Adam's moments (masked out of every forward)")


@pytest.mark.authors("TD3_BC")
def test_snip_scores_match_the_gradient_of_authors_losses_wrt_masks():
    sp, th, args, agent, start, data = _setup(0.05)
    learner = _run(th, agent, jax.device_put(start), data, 4, check=lambda *a: None)  # targets != online
    ours_a, ours_c = host(agent.snip_scores(learner, data))
    masks = host(agent.rescore(learner, data))
    # theirs: the code's scoring copy: every Linear (online and target) gets a mask parameter of ones, its
    # weight frozen; one call of train with the optimizer steps disabled runs both backward passes
    th2 = copy.deepcopy(th)
    for net, names in ((th2.actor, ACTOR_LAYERS), (th2.critic, CRITIC_LAYERS), (th2.actor_target, ACTOR_LAYERS),
                       (th2.critic_target, CRITIC_LAYERS)):
        for name in names:
            layer = getattr(net, name)
            layer.weight_mask = torch.nn.Parameter(torch.ones_like(layer.weight))
            layer.weight.requires_grad_(False)
            layer.forward = types.MethodType(lambda self, x: F.linear(x, self.weight * self.weight_mask, self.bias),
                                             layer)
    th2.actor_optimizer.step = th2.critic_optimizer.step = lambda *a, **k: None
    th2.total_it = 1  # the next call runs the actor branch (train_no_grad_update always does)
    stub, key = StubBuffer(data), host(learner).key
    stub.idx, noise = _draws(key, sp.MASK_KEY)
    with patched((torch, "randn_like", lambda x, **kw: t64(noise))):
        th2.train(stub, B)
    score = lambda p: p.weight_mask.grad.abs() if hasattr(p, "weight_mask") else None  # noqa: E731
    grads = {id(layer.weight): score(layer) for net in (th2.actor, th2.critic) for layer in net.modules()
             if isinstance(layer, torch.nn.Linear)}
    getter = lambda p: grads[id(p)] if id(p) in grads else torch.zeros_like(p)  # noqa: E731  (biases: not ranked)
    theirs_a = {"params": {f"Linear_{i}": linear(getattr(th2.actor, n), getter) for i, n in enumerate(ACTOR_LAYERS)}}
    theirs_c = {"params": {q: {f"Linear_{i}": linear(getattr(th2.critic, n), getter) for i, n in enumerate(names)}
                           for q, names in (("q1", ACTOR_LAYERS), ("q2", ("l4", "l5", "l6")))}}
    kern = lambda tree: [np.asarray(x) for pth, x in jax.tree_util.tree_flatten_with_path(tree)[0]  # noqa: E731
                         if sp.is_kernel(pth)]
    p = Parity("td3_bc_sparse.py", "SNIP score: abs(dL/dmask) at mask = 1 (critic loss, then actor loss) vs the "
                                   "gradient of sfujim/TD3_BC's losses wrt masks patched in as the Sparse-Reg code "
                                   "does; masks vs the code's keep rule on their scores")
    p.check(it=1, actor_scores=max(rel(a, b) for a, b in zip(kern(ours_a), kern(theirs_a))),
            critic_scores=max(rel(a, b) for a, b in zip(kern(ours_c), kern(theirs_c))))
    for name, theirs, mask in (("actor", theirs_a, masks.actor_mask), ("critic", theirs_c, masks.critic_mask)):
        scores = np.concatenate([x.ravel() for x in kern(theirs)])
        scores = scores / scores.sum()  # the code's normalisation
        k = int(len(scores) * args.keep_ratio)
        code_mask = scores >= np.sort(scores)[::-1][k - 1]  # get_keep_masks: >= the k-th largest
        ours_mask = np.concatenate([x.ravel() for x in kern(mask)]) == 1
        p.check(it=1, **{f"{name}_mask_differences": float(np.sum(code_mask != ours_mask))})
        assert ours_mask.sum() == k
    p.finish(1, note="critic scores include the actor loss's gradient through Q1's masks, as the code's two "
                     "backward passes accumulate it; masks: keep 0.05")
