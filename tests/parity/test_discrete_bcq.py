"""Parity of algos/discrete_bcq.py with sfujim/BCQ discrete_BCQ/discrete_BCQ.py (train, select_action), float64.

Same initial weights (the authors' torch init, converted; the imitation head's last layer scaled so that the 0.3
threshold masks actions, and a' changes for some samples), the same batch: our side draws its indices from its
own key schedule inside `agent.update`; the test replays that schedule and a stub buffer hands the authors'
`train` the rows at those indices. States are float32 values on both sides (the authors' buffers return
FloatTensor / ByteTensor.float(), our network casts to float32), carried in float64. The authors' losses and
target are recorded from their own F.smooth_l1_loss / F.nll_loss calls, torch.Tensor.backward and a forward hook.
Hyperparameters: main.py's regular_parameters (FC_Q) and atari_parameters (Conv_Q, the copy period shrunk to 2 on
both sides) against our presets. Acting: `select_action` gets our uniform draw and our random action through
np.random.uniform / np.random.randint."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.parity.harness import (Parity, adam_moment, conv, linear, load_authors, ours, param, rel, stack, t64,
                                  tree_rel)

OBS, ACT = 8, 6
# main.py's two dicts (facts read from the authors' file; main.py only builds them under __main__)
REGULAR = dict(optimizer="Adam", optimizer_parameters={"lr": 3e-4}, polyak_target_update=True,
               target_update_frequency=1, tau=0.005, eval_eps=0.0, batch_size=64, discount=0.99)
ATARI = dict(optimizer="Adam", optimizer_parameters={"lr": 6.25e-5, "eps": 1.5e-4}, polyak_target_update=False,
             target_update_frequency=8e3, tau=1.0, eval_eps=1e-3, batch_size=32, discount=0.99)


def authors_agent(mod, is_atari, state_dim, hp, threshold=0.3, head_scale=1.0, **override):
    """discrete_BCQ with main.py's arguments; the imitation head's last layer times `head_scale` (Q_target too)."""
    hp = {**hp, **override}
    torch.manual_seed(0)
    th = mod.discrete_BCQ(is_atari, ACT, state_dim, torch.device("cpu"), threshold, hp["discount"], hp["optimizer"],
                          hp["optimizer_parameters"], hp["polyak_target_update"], hp["target_update_frequency"],
                          hp["tau"], eval_eps=hp["eval_eps"])
    head = th.Q.i2 if is_atari else th.Q.i3
    with torch.no_grad():
        head.weight.mul_(head_scale)
        head.bias.mul_(head_scale)
    th.Q_target.load_state_dict(th.Q.state_dict())
    assert th.Q.q1.weight.dtype == torch.float64
    return th


def _flat(layer, g):
    """q1 / i1 of Conv_Q: torch flattens [64, 7, 7] channel first, ours [7, 7, 64] channel last."""
    d = linear(layer, g)
    d["kernel"] = jnp.asarray(np.asarray(d["kernel"]).reshape(64, 7, 7, -1).transpose(1, 2, 0, 3).reshape(3136, -1))
    return d


def net_params(net, g=param):
    """FC_Q / Conv_Q -> our BCQNetwork's tree (flax numbers modules as they are constructed: in
    `Linear(h)(relu(Linear(h)(x)))` the outer layer, q2 / i2, is constructed first)."""
    if hasattr(net, "c1"):
        p = {f"Conv_{k}": {"Conv_0": conv(getattr(net, f"c{k + 1}"), g)} for k in range(3)}
        p.update(Linear_0=_flat(net.q1, g), Linear_1=_flat(net.i1, g), Linear_2=linear(net.i2, g),
                 Linear_3=linear(net.q2, g))
    else:
        p = {f"Linear_{k}": linear(getattr(net, n), g) for k, n in enumerate(("q2", "q1", "i2", "i1", "i3", "q3"))}
    return {"params": p}


def make_data(mod, obs_shape, atari, seed=1):
    """N transitions as one table row per observation (k = 1); float32 states, or uint8 pixels."""
    rng, N = np.random.default_rng(seed), 96 if atari else 400
    if atari:  # sparse screens of raw 0-255 values
        table = (rng.integers(0, 256, (2 * N + 1, *obs_shape)) * (rng.random((2 * N + 1, *obs_shape)) < 0.1))
        table = table.astype(np.uint8)
        reward = rng.choice([-1.0, 0.0, 1.0], N)  # clipped, as the authors store them
    else:
        table = rng.normal(size=(2 * N + 1, *obs_shape)).astype(np.float32)
        reward = rng.normal(size=N)
    table[0] = 0
    return mod.Data(jnp.asarray(table), jnp.arange(1, N + 1, dtype=jnp.int32)[:, None],
                    jnp.arange(N + 1, 2 * N + 1, dtype=jnp.int32)[:, None],
                    jnp.asarray(rng.integers(ACT, size=N), jnp.int32), jnp.asarray(reward, jnp.float32),
                    jnp.asarray(rng.random(N) < 0.15, jnp.float32))


class StubBuffer:
    """The authors' buffer `sample()`: our rows at `idx` (state, action [B, 1], next_state, reward, not_done).
    reward and not_done are float32 as their buffers' FloatTensor (so `not_done * discount` rounds 0.99 to float32
    as ours does with float32 `terminated`); states are float32 values in float64, for the float64 network."""

    def __init__(self, data):
        self.data, self.idx = data, None

    def sample(self):
        d, i = self.data, np.asarray(self.idx)
        col = lambda x: torch.tensor(np.asarray(x, np.float32)[i][:, None], dtype=torch.float32)  # noqa: E731
        rows = lambda idx: t64(np.asarray(d.table)[np.asarray(idx)[i, 0]].astype(np.float64))  # noqa: E731
        return (rows(d.obs_idx), torch.as_tensor(np.asarray(d.action)[i], dtype=torch.int64)[:, None],
                rows(d.next_idx), col(d.reward), 1 - col(d.terminated))


@contextlib.contextmanager
def recording(mod, th):
    """Records the authors' q_loss (and its target), i_loss, total loss and the Q network's forward outputs."""
    rec, outs, F, backward = {}, [], mod.F, torch.Tensor.backward

    class RecordingF:
        def __getattr__(self, name):
            return getattr(F, name)

        def smooth_l1_loss(self, x, y, *a, **k):
            out = F.smooth_l1_loss(x, y, *a, **k)
            rec["target"], rec["q_loss"] = y.detach().numpy().copy(), out.item()
            return out

        def nll_loss(self, *a, **k):
            out = F.nll_loss(*a, **k)
            rec["i_loss"] = out.item()
            return out

    def recording_backward(self, *a, **k):
        rec["loss"] = self.item()
        return backward(self, *a, **k)

    hook = th.Q.register_forward_hook(lambda m, i, o: outs.append([x.detach().numpy().copy() for x in o]))
    mod.F, torch.Tensor.backward = RecordingF(), recording_backward
    try:
        yield rec, outs
    finally:
        mod.F, torch.Tensor.backward = F, backward
        hook.remove()


def authors_train(mod, th, stub):
    with recording(mod, th) as (rec, outs):
        th.train(stub)
    (q_next, lp_next, _), (_, _, logits) = outs  # Q(s') then Q(s)
    rec.update(q_next=q_next, lp_next=lp_next, penalty=float(np.mean(logits ** 2)))
    return rec


def first(tree):
    """Seed 0 of a stacked pytree, as host arrays (slicing on the host spares a compile per leaf shape)."""
    return jax.tree.map(lambda x: np.asarray(x)[0], tree)


def our_learner(dbcq, args, params):
    """A one-seed learner on the authors' weights (any key: the test replays the schedule from it)."""
    return stack(dbcq.Learner(params, params, optax.adam(args.lr, eps=args.adam_eps).init(params),
                              jax.random.PRNGKey(0), jnp.zeros((), jnp.int32)))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def our_pieces(dbcq, net, obs_shape, q, q_target, data, i, discount, threshold, logit_penalty):
    """Our file's target and Q loss (bcq_target, bcq_loss) on the batch at i, from parameters before the update;
    the threshold is traced, so one compile serves every threshold."""
    nxt = dbcq.stacks(data.table, data.next_idx[i], obs_shape)
    q_next, lp_next, _ = net.apply(q, nxt)
    y = dbcq.bcq_target(data.reward[i], data.terminated[i], q_next, lp_next, net.apply(q_target, nxt)[0], discount,
                        threshold)
    return y, dbcq.bcq_loss(*net.apply(q, dbcq.stacks(data.table, data.obs_idx[i], obs_shape)), data.action[i], y,
                            logit_penalty)[1]


def run_pair(dbcq, mod, th, args, data, obs_shape, iters, p):
    """`iters` updates on both sides, every piece checked after each. Returns the first batch's indices, Q losses
    (ours, theirs) and how many of its samples the threshold moved a' away from the unconstrained argmax."""
    agent = dbcq.make_agent(args, obs_shape, data.table.dtype, ACT)
    net = dbcq.BCQNetwork(ACT, dbcq.arch_of(args.env_id, obs_shape), args.hidden_dim)
    learner, stub, out = our_learner(dbcq, args, net_params(th.Q)), StubBuffer(data), None
    for it in range(1, iters + 1):
        _, k_idx = jax.random.split(learner.key[0])
        stub.idx = jax.random.randint(k_idx, (args.batch_size,), 0, data.reward.shape[0])
        s = first(learner)
        y, _ = our_pieces(dbcq, net, obs_shape, s.q, s.q_target, data, stub.idx, args.discount, args.bcq_threshold,
                          args.logit_penalty)
        theirs = authors_train(mod, th, stub)
        learner, m = agent.update(learner, data)
        m, s = first(m), first(learner)
        if it == 1:
            keep = dbcq.allowed(jnp.asarray(theirs["lp_next"]), args.bcq_threshold)
            moved = int((dbcq.constrained_argmax(jnp.asarray(theirs["q_next"]), keep)
                         != jnp.argmax(theirs["q_next"], -1)).sum())
            out = stub.idx, (float(m["q_loss"]), theirs["q_loss"]), moved
        adam = s.opt[0]
        p.check(it=it, q=tree_rel(s.q, net_params(th.Q)), q_target=tree_rel(s.q_target, net_params(th.Q_target)),
                adam_mu=tree_rel(adam.mu, net_params(th.Q, adam_moment(th.Q_optimizer, "exp_avg"))),
                adam_nu=tree_rel(adam.nu, net_params(th.Q, adam_moment(th.Q_optimizer, "exp_avg_sq"))),
                adam_steps=abs(int(adam.count) - it) + abs(int(s.iterations) - th.iterations),
                target=rel(y, theirs["target"][:, 0]), q_loss=rel(m["q_loss"], theirs["q_loss"]),
                i_loss=rel(m["i_loss"], theirs["i_loss"]), logit_penalty=rel(m["logit_penalty"], theirs["penalty"]),
                loss=rel(m["loss"], theirs["loss"]))
        if args.tau == 1.0:  # the copy branch: target == Q right after a copy, untouched otherwise
            gap = tree_rel(s.q_target, s.q)
            assert gap == 0.0 if it % args.target_update_freq == 0 else gap > 1e-6, (it, gap)
    return out


@pytest.mark.authors("BCQ")
def test_fc_update_matches_authors_and_the_threshold_matters():
    """FC_Q with regular_parameters (Adam 3e-4, batch 64, Polyak 0.005 every iteration), 6 updates. Then the first
    batch again from the same start with threshold 0: the authors' train against our bcq_target / bcq_loss; both
    agree, and the Q loss differs from the 0.3 one on both sides (the mask matters on this batch)."""
    dbcq = ours("discrete_bcq")
    mod = load_authors("BCQ", "discrete_BCQ", subdir="discrete_BCQ")
    args = dbcq.resolve_presets(dbcq.Args(env_id="CartPole-v1"))
    hp = REGULAR
    assert (args.lr, args.adam_eps, args.batch_size, args.tau, args.target_update_freq, args.discount) == \
        (hp["optimizer_parameters"]["lr"], 1e-8, hp["batch_size"], hp["tau"], 1, hp["discount"])  # torch's eps 1e-8
    assert (args.bcq_threshold, args.logit_penalty, args.hidden_dim) == (0.3, 0.01, 256)  # discrete_BCQ.py's
    th = authors_agent(mod, False, OBS, REGULAR, head_scale=25.0)
    start = net_params(th.Q)
    data = make_data(dbcq, (OBS,), atari=False)
    p = Parity("discrete_bcq.py", "update (FC_Q, Polyak): Q, imitation head, target net, Adam moments, target, "
                                  "losses")
    iters = 6
    idx, (ours_q, theirs_q), moved = run_pair(dbcq, mod, th, args, data, (OBS,), iters, p)
    assert moved > 0  # the threshold changed a' for some samples
    p.finish(iters, note=f"threshold 0.3 changed a' in {moved} of 64 samples at iteration 1")

    p0 = Parity("discrete_bcq.py", "threshold 0 (FC_Q, first batch): target, Q loss")
    th0 = authors_agent(mod, False, OBS, REGULAR, threshold=0.0, head_scale=25.0)
    assert tree_rel(net_params(th0.Q), start) == 0.0
    stub = StubBuffer(data)
    stub.idx = idx
    theirs0 = authors_train(mod, th0, stub)
    net = dbcq.BCQNetwork(ACT, "fc", args.hidden_dim)
    y0, ours_q0 = our_pieces(dbcq, net, (OBS,), start, start, data, idx, args.discount, 0.0, args.logit_penalty)
    p0.check(it=1, target=rel(y0, theirs0["target"][:, 0]), q_loss=rel(ours_q0, theirs0["q_loss"]))
    assert abs(ours_q - ours_q0) > 1e-3 * abs(ours_q0) and abs(theirs_q - theirs0["q_loss"]) > 1e-3 * abs(theirs_q)
    p0.finish(1, note=f"Q loss at threshold 0 vs 0.3 on this batch: {theirs0['q_loss']:.4g} vs {theirs_q:.4g} "
                      "(theirs); ours through bcq_target / bcq_loss")


@pytest.mark.authors("BCQ")
def test_conv_update_matches_authors_past_two_hard_copies():
    """Conv_Q with atari_parameters (Adam 6.25e-5 eps 1.5e-4, batch 32, hard copies, raw 0-255 pixels), the copy
    period shrunk from 8000 to 2 on both sides, 5 updates: copies after 2 and 4, the target untouched between."""
    dbcq = ours("discrete_bcq")
    mod = load_authors("BCQ", "discrete_BCQ", subdir="discrete_BCQ")
    args = dbcq.resolve_presets(dbcq.Args(env_id="dqn-atari:Pong", target_update_freq=2))
    hp = ATARI
    assert (args.lr, args.adam_eps, args.batch_size, args.tau, args.discount, args.hidden_dim) == \
        (hp["optimizer_parameters"]["lr"], hp["optimizer_parameters"]["eps"], hp["batch_size"], hp["tau"],
         hp["discount"], 512)
    assert dbcq.resolve_presets(dbcq.Args(env_id="dqn-atari:Pong")).target_update_freq == ATARI[
        "target_update_frequency"]
    shape = (4, 84, 84)
    th = authors_agent(mod, True, shape, ATARI, head_scale=3.0, target_update_frequency=2)
    data = make_data(dbcq, shape, atari=True)
    p = Parity("discrete_bcq.py", "update (Conv_Q, hard copies): Q, imitation head, target net, Adam moments, "
                                  "target, losses")
    iters = 5
    _, _, moved = run_pair(dbcq, mod, th, args, data, shape, iters, p)
    assert moved > 0
    p.finish(iters, note=f"copy period 2 (8000 in main.py) on both sides; threshold changed a' in {moved} of 32 "
                         "samples at iteration 1")


@pytest.mark.authors("BCQ")
def test_eval_epsilon_and_thresholded_action_match_select_action():
    """`act` against select_action, action by action: 64 states for each eval_eps (0: regular_parameters, 1e-3:
    atari_parameters, 0.5: both branches often); our uniform draw and random action go to the authors through
    np.random.uniform / np.random.randint, the state through torch.FloatTensor (float32 values, in float64)."""
    dbcq = ours("discrete_bcq")
    mod = load_authors("BCQ", "discrete_BCQ", subdir="discrete_BCQ")
    assert dbcq.resolve_presets(dbcq.Args(env_id="CartPole-v1")).eval_eps == REGULAR["eval_eps"]
    assert dbcq.resolve_presets(dbcq.Args(env_id="dqn-atari:Pong")).eval_eps == ATARI["eval_eps"]
    args = dbcq.resolve_presets(dbcq.Args(env_id="CartPole-v1"))
    agent = dbcq.make_agent(args, (OBS,), np.float32, ACT)
    states = np.random.default_rng(2).normal(size=(64, OBS)).astype(np.float32)
    p = Parity("discrete_bcq.py", "acting: eval epsilon and thresholded argmax (select_action)")
    uniform, randint, float_tensor = np.random.uniform, np.random.randint, torch.FloatTensor
    constrained_differs, branches = 0, set()
    for eps in (REGULAR["eval_eps"], ATARI["eval_eps"], 0.5):
        th = authors_agent(mod, False, OBS, REGULAR, head_scale=25.0, eval_eps=eps)
        params = stack(net_params(th.Q))
        unconstrained = np.asarray(dbcq.BCQNetwork(ACT, "fc", 256).apply(first(params), states)[0]).argmax(-1)
        for c, s in enumerate(states):
            key = jax.random.fold_in(jax.random.PRNGKey(3), c)
            a = int(agent.act(params, jnp.asarray(s)[None], key[None], eps)[0])
            k_eps, k_a = jax.random.split(key)
            u, r = float(jax.random.uniform(k_eps)), int(jax.random.randint(k_a, (), 0, ACT))
            np.random.uniform, np.random.randint = (lambda *x, **k: u), (lambda *x, **k: r)
            torch.FloatTensor = lambda x: torch.tensor(np.asarray(x, np.float32), dtype=torch.float64)
            try:
                b = th.select_action(s, eval=True)
            finally:
                np.random.uniform, np.random.randint, torch.FloatTensor = uniform, randint, float_tensor
            p.check(it=c + 1, action=float(a != b))
            branches.add(u < eps)
            constrained_differs += int(u >= eps and b != unconstrained[c])
    assert branches == {True, False} and constrained_differs > 0
    p.finish(64, note=f"eval_eps 0, 1e-3, 0.5 on 64 states each; the threshold changed the greedy action in "
                      f"{constrained_differs} of them")
