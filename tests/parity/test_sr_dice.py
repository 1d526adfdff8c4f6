"""Parity of algos/sr_dice.py with sfujim/SR-DICE (continuous/ and atari/: SR_DICE.py, Deep_SR.py, Deep_TD.py),
float64, every phase: the encoder-decoder, the successor representation (Polyak targets continuous, hard copies
on Atari with the copy period shrunk to 2), the estimation phase (SR-DICE's W, Deep SR's w, deep TD's Q) and
each estimator's estimate; and the start states of a small dataset the test collects.

Same initial weights (the authors' torch init, converted), the same sampled indices, start states and target
noise: our side draws them from each phase's key schedule inside the file's jitted chunks; the test replays that
schedule (splitting the learner's key as the file does) and hands the authors' methods the same values through a
stub buffer (one queued batch per `sample` / `all_start` / `start_sample` call) and `torch.randn_like`.

Atari layouts: the authors stack frames newest first, ours oldest first (their first conv's input channels are
reversed on conversion, and their batches get the reversed stacks); torch flattens conv maps (c, h, w), ours
(h, w, c) (the 3136-wide layers are permuted on conversion); their transposed convs are flax ConvTranspose with
transpose_kernel=False here, so the converter flips the kernel spatially ([in, out, kh, kw] -> [kh, kw, in, out]
reversed in kh, kw), not the harness's `conv_transpose`.
"""

import argparse
import contextlib

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.parity.harness import (Parity, adam_moment, gym_stub, linear, load_authors, ours, param, rel, stack, t64,
                                  tree_rel)

GAMMA = 0.99


@pytest.fixture(scope="module", autouse=True)
def minari_root(module_minari_root):
    return module_minari_root


def host(learner):
    """Seed 0 of our stacked learner as host numpy arrays (no eager device ops per leaf)."""
    return jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(learner))


def np64(t) -> np.ndarray:
    return t.detach().double().numpy()


class Stub:
    """The authors' replay buffer: every sample and start-state call returns the next queued batch (our draw)."""

    def __init__(self):
        self.batches, self.starts = [], []

    def sample(self, batch_size=-1):
        return self.batches.pop(0)

    def all_start(self, batch_size=2048):
        return self.starts.pop(0)

    start_sample = all_start

    def check_used(self):
        assert not self.batches and not self.starts, "the authors' code skipped a queued batch"


@contextlib.contextmanager
def torch_noise(draws):
    """torch.randn_like returns our Gaussian draws, in order."""
    draws, orig = list(draws), torch.randn_like

    def fake(x, **kw):
        d = t64(draws.pop(0))
        assert tuple(d.shape) == tuple(x.shape), (d.shape, x.shape)
        return d
    torch.randn_like = fake
    try:
        yield
    finally:
        torch.randn_like = orig
    assert not draws, "the authors' code skipped a queued noise draw"


def adam_of(opt_state):
    """(mu, nu, count) of optax.adam's state."""
    s = opt_state[0]
    return s.mu, s.nu, s.count


def moments(conv, net, optimizer):
    """Our-layout trees of the authors' Adam first and second moments."""
    return conv(net, adam_moment(optimizer, "exp_avg")), conv(net, adam_moment(optimizer, "exp_avg_sq"))


def adam_rel(our_state, their_moments, steps=None):
    mu, nu, count = adam_of(our_state)
    out = max(tree_rel(mu, their_moments[0]), tree_rel(nu, their_moments[1]))
    return out if steps is None or int(count) == steps else float("inf")


def vec_adam_rel(our_state, optimizer, x):
    """Adam moments of our [D] weight vector against the authors' [1, D] one (W, w)."""
    mu, nu, _ = adam_of(our_state)
    get = lambda which: np64(adam_moment(optimizer, which)(x))[0]  # noqa: E731
    return max(rel(mu, get("exp_avg")), rel(nu, get("exp_avg_sq")))


def fresh_learner(sd, args, ed, psi, psi_target, q, q_target):
    """Our file's learner (one seed, stacked) with the given (converted) parameters, W = w = ones and fresh Adam
    states, as the file's init builds it from its own draws."""
    opt, w_opt = optax.adam(args.lr, eps=args.adam_eps), optax.adam(args.w_lr)
    W = w = jnp.ones(args.latent_dim)
    zero = jnp.zeros((), jnp.int32)
    return stack(sd.Learner(ed, opt.init(ed), psi, psi_target, opt.init(psi), W, w_opt.init(W), w, w_opt.init(w), q,
                            q_target, opt.init(q), jax.random.PRNGKey(0), zero, zero))


# ---------------------------------------------------------------------------------------------
# Continuous
# ---------------------------------------------------------------------------------------------
OBS, ACT, N, STARTS = 5, 2, 300, 9
CB, C_OPE, C_START, C_EVAL, C_EVAL_START = 32, 64, 32, 64, 32  # few shapes: each compiles a sampler


def c_ed(ed, g=param):
    names = {"e1": "e1", "e2": "e2", "s1": "d1", "s2": "d2", "a1": "a1", "a2": "a2"}
    p = {k: linear(getattr(ed, v), g) for k, v in names.items()}
    p["reward"] = linear(ed.r1, g, bias=False)
    return {"params": p}


def c_psi(critic, g=param):
    return {"params": {f"Linear_{i}": linear(getattr(critic, n), g) for i, n in enumerate(("l1", "l2", "l3"))}}


def c_q(critic, g=param):  # our Critic names its output layer Linear_1 (it is built before the hidden one)
    return {"params": {"Linear_0": linear(critic.l1, g), "Linear_1": linear(critic.l3, g),
                       "Linear_2": linear(critic.l2, g)}}


@pytest.mark.authors("SR-DICE")
def test_continuous_phases_and_estimates_match_authors():
    sd = ours("sr_dice")
    SR, DSR, DTD = load_authors("SR-DICE", "SR_DICE", "Deep_SR", "Deep_TD", subdir="continuous")
    torch.manual_seed(0)
    sr = SR.SR_DICE(OBS, ACT, 1.0, discount=GAMMA, tau=0.005)
    dsr = DSR.Deep_SR(OBS, ACT, 1.0, discount=GAMMA, tau=0.005)
    dtd = DTD.Deep_TD(OBS, ACT, 1.0, discount=GAMMA, tau=0.005)
    for m in (sr.encoder_decoder, sr.critic, sr.critic_target, dtd.critic, dtd.critic_target):
        m.double()
    # Deep SR shares SR-DICE's phi and psi here (our file trains them once for both): the same modules
    dsr.encoder_decoder, dsr.critic, dsr.critic_target = sr.encoder_decoder, sr.critic, sr.critic_target

    rng = np.random.default_rng(1)
    M = rng.normal(size=(OBS, ACT))
    obs, next_obs, starts = rng.normal(size=(N, OBS)), rng.normal(size=(N, OBS)), rng.normal(size=(STARTS, OBS))
    action, reward = rng.uniform(-1, 1, (N, ACT)), rng.normal(size=N)
    not_done = (rng.uniform(size=N) > 0.1).astype(np.float64)
    data = sd.Data(jnp.asarray(obs), jnp.asarray(next_obs), jnp.asarray(starts), jnp.zeros((1, 1), jnp.int32),
                   jnp.zeros((1, 1), jnp.int32), jnp.zeros((STARTS, 1), jnp.int32), jnp.asarray(action),
                   jnp.asarray(reward), jnp.asarray(not_done))
    policy = lambda s: torch.tanh(s @ t64(M))  # noqa: E731  the evaluated policy's mean action, both sides

    args = sd.resolve_presets(sd.Args(env_id="Hopper-v4", batch_size=CB, ope_batch_size=C_OPE,
                                      start_batch_size=C_START, eval_batch_size=C_EVAL,
                                      eval_start_batch_size=C_EVAL_START))
    agent = sd.make_agent(args, (OBS,), ACT, lambda o: jnp.tanh(o @ jnp.asarray(M)), atari=False)
    learner = fresh_learner(sd, args, c_ed(sr.encoder_decoder), c_psi(sr.critic), c_psi(sr.critic_target),
                            c_q(dtd.critic), c_q(dtd.critic_target))
    stub, sampled_not_done = Stub(), []

    def batch(i, train=True):
        i = np.asarray(i)
        sampled_not_done.extend(not_done[i] if train else [])
        return (t64(obs[i]), t64(action[i]), t64(next_obs[i]), t64(reward[i])[:, None], t64(not_done[i])[:, None])

    def key():
        return host(learner).key

    # Phase 1: the encoder-decoder
    p1 = Parity("sr_dice.py", "continuous phase 1 (encoder-decoder): phi, decoders, reward head, Adam moments")
    for it in range(1, 4):
        _, k_b = jax.random.split(key())
        stub.batches.append(batch(jax.random.randint(k_b, (CB,), 0, N)))
        sr.train_encoder_decoder(stub, CB)
        stub.check_used()
        learner, _ = agent.ed_chunk(learner, data, 1)
        s = host(learner)
        p1.check(it=it, ed=tree_rel(s.ed, c_ed(sr.encoder_decoder)),
                 ed_adam=adam_rel(s.ed_opt, moments(c_ed, sr.encoder_decoder, sr.ed_optimizer), it))
    p1.finish(3)

    # Phase 2: the successor representation, Polyak 0.005 every iteration; phi frozen
    p2 = Parity("sr_dice.py", "continuous phase 2 (SR): psi, Polyak psi target, Adam moments, phi frozen")
    for it in range(1, 5):
        _, k_b, k_a = jax.random.split(key(), 3)
        stub.batches.append(batch(jax.random.randint(k_b, (CB,), 0, N)))
        with torch_noise([jax.random.normal(k_a, (CB, ACT))]):
            sr.train_SR(stub, policy, CB)
        stub.check_used()
        learner, _ = agent.sr_chunk(learner, data, 1)
        s = host(learner)
        p2.check(it=it, psi=tree_rel(s.psi, c_psi(sr.critic)),
                 psi_target=tree_rel(s.psi_target, c_psi(sr.critic_target)),
                 psi_adam=adam_rel(s.psi_opt, moments(c_psi, sr.critic, sr.critic_optimizer), it),
                 ed=tree_rel(s.ed, c_ed(sr.encoder_decoder)))
    p2.finish(4)

    # Phase 3: W (SR-DICE), w (Deep SR) on the same batch, deep TD's Q; estimates between updates
    p3 = Parity("sr_dice.py", "continuous phase 3: SR-DICE W, Deep SR w, deep TD Q and Polyak target, Adam moments")
    pe = Parity("sr_dice.py", "continuous estimates: SR-DICE, Deep SR, deep TD")

    def estimates(it):
        nonlocal learner
        _, k_b, k_s, k_a = jax.random.split(key(), 4)
        stub.batches.append(batch(jax.random.randint(k_b, (C_EVAL,), 0, N), train=False))
        s0 = t64(starts[np.asarray(jax.random.randint(k_s, (C_EVAL_START,), 0, STARTS))])
        stub.starts += [s0, s0]
        noise = jax.random.normal(k_a, (C_EVAL_START, ACT))
        with torch.no_grad(), torch_noise([noise, noise]):
            theirs = {"sr_dice": sr.eval_policy(stub, policy, C_EVAL), "deep_sr": dsr.eval_policy(stub, policy),
                      "deep_td": dtd.eval_policy(stub, policy)}
        stub.check_used()
        learner, est = agent.estimate(learner, data)
        pe.check(it=it, **{k: rel(float(est[k][0]), v) for k, v in theirs.items()})

    estimates(0)
    for it in range(1, 5):
        _, k_b, k_s, k_a, k_td, k_tda = jax.random.split(key(), 6)
        b = batch(jax.random.randint(k_b, (C_OPE,), 0, N))
        stub.batches += [b, b, batch(jax.random.randint(k_td, (CB,), 0, N))]
        stub.starts.append(t64(starts[np.asarray(jax.random.randint(k_s, (C_START,), 0, STARTS))]))
        with torch_noise([jax.random.normal(k_a, (C_START, ACT)), jax.random.normal(k_tda, (CB, ACT))]):
            sr.train_OPE(stub, policy, C_OPE)
            dsr.train_OPE(stub, policy, C_OPE)
            dtd.train_OPE(stub, policy, CB)
        stub.check_used()
        learner, _ = agent.ope_chunk(learner, data, 1)
        s = host(learner)
        p3.check(it=it, W=rel(s.W, np64(sr.W)[0]), w=rel(s.w, np64(dsr.w)[0]),
                 W_adam=vec_adam_rel(s.W_opt, sr.W_optimizer, sr.W),
                 w_adam=vec_adam_rel(s.w_opt, dsr.w_optimizer, dsr.w),
                 q=tree_rel(s.q, c_q(dtd.critic)), q_target=tree_rel(s.q_target, c_q(dtd.critic_target)),
                 q_adam=adam_rel(s.q_opt, moments(c_q, dtd.critic, dtd.critic_optimizer), it),
                 adam_steps=abs(int(adam_of(s.W_opt)[2]) - it) + abs(int(adam_of(s.w_opt)[2]) - it),
                 phi_psi_frozen=max(tree_rel(s.ed, c_ed(sr.encoder_decoder)), tree_rel(s.psi, c_psi(sr.critic))))
        if it % 2 == 0:
            estimates(it)
    assert min(sampled_not_done) == 0  # the terminal branch of the SR and TD targets ran
    p3.finish(4)
    pe.finish(4, note="at 0 (before any estimation update), 2 and 4")


# ---------------------------------------------------------------------------------------------
# Atari
# ---------------------------------------------------------------------------------------------
A, FRAMES, AN, ASTARTS, AB, COPY = 3, 40, 30, 6, 8, 2
A_EVAL = 1  # the authors' eval_policy averages 100 batches of this size; ours takes 100 x A_EVAL at once


def flat_perm():
    """Our flattening position (h, w, c) of a [64, 7, 7] map -> torch's (c, h, w) position."""
    h, w, c = np.meshgrid(np.arange(7), np.arange(7), np.arange(64), indexing="ij")
    return (c * 49 + h * 7 + w).reshape(-1)


PERM = flat_perm()


def a_conv(layer, g=param, reverse_inputs=False):
    w = np64(g(layer.weight))
    w = w[:, ::-1] if reverse_inputs else w  # their stacks are newest first
    return {"Conv_0": {"kernel": jnp.asarray(w.transpose(2, 3, 1, 0)), "bias": jnp.asarray(np64(g(layer.bias)))}}


def a_conv_transpose(layer, g=param):
    """torch ConvTranspose2d [in, out, kh, kw] -> flax ConvTranspose (transpose_kernel=False): the kernel is
    applied unflipped there, so it is torch's reversed in kh and kw, laid out [kh, kw, in, out]."""
    k = np64(g(layer.weight)).transpose(2, 3, 0, 1)[::-1, ::-1]
    return {"ConvTranspose_0": {"kernel": jnp.asarray(k), "bias": jnp.asarray(np64(g(layer.bias)))}}


def a_trunk(net, g=param):
    return {"Conv_0": a_conv(net.c1, g, True), "Conv_1": a_conv(net.c2, g), "Conv_2": a_conv(net.c3, g),
            "Linear_0": {"kernel": jnp.asarray(np64(g(net.l1.weight)).T[PERM]),
                         "bias": jnp.asarray(np64(g(net.l1.bias)))}}


def a_ed(ed, g=param):
    return {"params": {"trunk": a_trunk(ed, g), "enc": linear(ed.l2, g),
                       "dec_in": {"kernel": jnp.asarray(np64(g(ed.l3.weight)).T[:, PERM]),
                                  "bias": jnp.asarray(np64(g(ed.l3.bias))[PERM])},
                       "dec_0": a_conv_transpose(ed.d1, g), "dec_1": a_conv_transpose(ed.d2, g),
                       "dec_2": a_conv_transpose(ed.d3, g), "reward": linear(ed.r1, g, bias=False)}}


def a_q(net, g=param):  # psi (num_actions x 256 outputs) and deep TD's Q (num_actions) alike
    return {"params": {"Linear_0": linear(net.l2, g), "Trunk_0": a_trunk(net, g)}}


@pytest.mark.authors("SR-DICE")
def test_atari_phases_and_estimates_match_authors():
    sd = ours("sr_dice")
    SR, DSR, DTD = load_authors("SR-DICE", "SR_DICE", "Deep_SR", "Deep_TD", subdir="atari", stubs={"gym": gym_stub()})
    kw = dict(is_atari=True, num_actions=A, state_dim=None, device="cpu", discount=GAMMA, optimizer="Adam",
              optimizer_parameters={"lr": 6.25e-5, "eps": 1.5e-4}, polyak_target_update=False,
              target_update_frequency=COPY, tau=1)
    torch.manual_seed(0)
    sr, dsr, dtd = SR.SR_DICE(**kw), DSR.Deep_SR(**kw), DTD.Deep_TD(**kw)
    for m in (sr.encoder_decoder, sr.Q, sr.Q_target, dtd.Q, dtd.Q_target):
        m.double()
    dsr.encoder_decoder, dsr.Q, dsr.Q_target = sr.encoder_decoder, sr.Q, sr.Q_target

    rng = np.random.default_rng(2)
    table = rng.integers(0, 256, (FRAMES, 84, 84)).astype(np.uint8)
    table[0] = 0  # our frame table's zero row (the padding before an episode's first frame)
    obs_idx, next_idx = rng.integers(0, FRAMES, (AN, 4)), rng.integers(0, FRAMES, (AN, 4))
    start_idx = np.concatenate([np.zeros((ASTARTS, 3), int), rng.integers(1, FRAMES, (ASTARTS, 1))], 1)
    action, reward = rng.integers(0, A, AN), rng.uniform(-1, 1, AN)
    not_done = (rng.uniform(size=AN) > 0.15).astype(np.float64)
    data = sd.Data(jnp.asarray(table), jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.asarray(obs_idx, jnp.int32),
                   jnp.asarray(next_idx, jnp.int32), jnp.asarray(start_idx, jnp.int32), jnp.asarray(action, jnp.int32),
                   jnp.asarray(reward), jnp.asarray(not_done))
    M = rng.normal(size=(4, 84, 84, A)) / 1e4
    policy = lambda s: torch.einsum("bchw,chwa->ba", s.flip(1), t64(M))  # noqa: E731  the DDQN's Q (greedy)
    target = lambda o: jnp.argmax(jnp.einsum("bchw,chwa->ba", o.astype(jnp.float64), jnp.asarray(M)), -1)  # noqa: E731

    args = sd.resolve_presets(sd.Args(env_id="dqn-atari:Pong", target_update_freq=COPY, batch_size=AB,
                                      ope_batch_size=AB, start_batch_size=AB, eval_batch_size=100 * A_EVAL,
                                      eval_start_batch_size=100 * A_EVAL, original_atari_deep_sr=True))
    assert (args.lr, args.adam_eps, args.tau) == (6.25e-5, 1.5e-4, 1.0)  # the Atari preset
    agent = sd.make_agent(args, (4, 84, 84), A, target, atari=True)
    learner = fresh_learner(sd, args, a_ed(sr.encoder_decoder), a_q(sr.Q), a_q(sr.Q_target), a_q(dtd.Q),
                            a_q(dtd.Q_target))
    stub, sampled_not_done = Stub(), []

    def stacks(rows):  # theirs: newest frame first
        return t64(table[np.asarray(rows)][:, ::-1].astype(np.float64))

    def batch(i, train=True):
        i = np.asarray(i)
        sampled_not_done.extend(not_done[i] if train else [])
        return (stacks(obs_idx[i]), torch.tensor(action[i])[:, None], stacks(next_idx[i]), t64(reward[i])[:, None],
                t64(not_done[i])[:, None])

    def key():
        return host(learner).key

    p1 = Parity("sr_dice.py", "Atari phase 1 (encoder-decoder): conv phi, transposed-conv frame decoder, reward head, "
                              "Adam moments")
    for it in range(1, 3):
        _, k_b = jax.random.split(key())
        stub.batches.append(batch(jax.random.randint(k_b, (AB,), 0, AN)))
        sr.train_encoder_decoder(stub)
        stub.check_used()
        learner, _ = agent.ed_chunk(learner, data, 1)
        s = host(learner)
        p1.check(it=it, ed=tree_rel(s.ed, a_ed(sr.encoder_decoder)),
                 ed_adam=adam_rel(s.ed_opt, moments(a_ed, sr.encoder_decoder, sr.ed_optimizer), it))
    p1.finish(2)

    p2 = Parity("sr_dice.py", f"Atari phase 2 (SR): psi per action, greedy a', hard psi copies every {COPY}, "
                              "Adam moments")
    copies = 0
    for it in range(1, 4):
        _, k_b, _ = jax.random.split(key(), 3)
        stub.batches.append(batch(jax.random.randint(k_b, (AB,), 0, AN)))
        sr.train_SR(stub, policy)
        stub.check_used()
        learner, _ = agent.sr_chunk(learner, data, 1)
        s = host(learner)
        same = tree_rel(s.psi_target, s.psi) == 0.0
        copies += same
        p2.check(it=it, psi=tree_rel(s.psi, a_q(sr.Q)), psi_target=tree_rel(s.psi_target, a_q(sr.Q_target)),
                 psi_adam=adam_rel(s.psi_opt, moments(a_q, sr.Q, sr.Q_optimizer), it),
                 ed=tree_rel(s.ed, a_ed(sr.encoder_decoder)),
                 copy_schedule=float(same != (it % COPY == 0)) + abs(int(s.sr_iterations) - it))
    assert copies == 1  # iteration 2 copies; 1 and 3 keep the stale target
    p2.finish(3)

    p3 = Parity("sr_dice.py", f"Atari phase 3: SR-DICE W, Deep SR w, deep TD Q and hard copies every {COPY}, Adam "
                              "moments")
    pe = Parity("sr_dice.py", "Atari estimates: SR-DICE (ours x 1/(1-gamma)), Deep SR (--original-atari-deep-sr), "
                              "deep TD")
    pd = Parity("sr_dice.py", "Atari Deep SR estimate without --original-atari-deep-sr: (1-gamma) E_s0[<psi, w>]")

    def estimates(it):
        nonlocal learner
        _, k_b, k_s, _ = jax.random.split(key(), 4)
        i = np.asarray(jax.random.randint(k_b, (100 * A_EVAL,), 0, AN))
        j = np.asarray(jax.random.randint(k_s, (100 * A_EVAL,), 0, ASTARTS))
        chunks = lambda x: [x[k * A_EVAL:(k + 1) * A_EVAL] for k in range(100)]  # noqa: E731
        stub.batches += [batch(c, train=False) for c in chunks(i)]
        stub.starts += [stacks(start_idx[c]) for c in chunks(j)] * 2
        with torch.no_grad():
            theirs = {"sr_dice": sr.eval_policy(stub, policy, A_EVAL),
                      "deep_sr": dsr.eval_policy(stub, policy, A_EVAL),
                      "deep_td": dtd.eval_policy(stub, policy, A_EVAL)}
            s0 = stacks(start_idx[j])
            psi0 = sr.Q(s0)[range(len(j)), policy(s0).argmax(1)]  # [100, 256] at the greedy a0
            correct = (1 - GAMMA) * float((dsr.w * psi0).mean(1).mean())  # their continuous Deep SR's form
        stub.check_used()
        learner, est = agent.estimate(learner, data)
        est = {k: float(v[0]) for k, v in est.items()}
        pe.check(it=it, sr_dice=rel(est["sr_dice"] / (1 - GAMMA), theirs["sr_dice"]),
                 deep_sr=rel(est["deep_sr"], theirs["deep_sr"]), deep_td=rel(est["deep_td"], theirs["deep_td"]))
        # the file's default estimate (the path the continuous test runs end to end) on the authors' psi and w
        default = float(sd.deep_sr_estimate(jnp.asarray(np64(dsr.w)[0]), jnp.asarray(np64(psi0)), GAMMA))
        pd.check(it=it, deep_sr=rel(default, correct))
        assert rel(default, theirs["deep_sr"]) > 1e-6  # their Atari form is another number once w moved from ones

    for it in range(1, 4):
        _, k_b, k_s, _, k_td, _ = jax.random.split(key(), 6)
        b = batch(jax.random.randint(k_b, (AB,), 0, AN))
        stub.batches += [b, b, batch(jax.random.randint(k_td, (AB,), 0, AN))]
        stub.starts.append(stacks(start_idx[np.asarray(jax.random.randint(k_s, (AB,), 0, ASTARTS))]))
        sr.train_OPE(stub, policy, AB)
        dsr.train_OPE(stub, policy, AB)
        dtd.train_OPE(stub, policy)
        stub.check_used()
        learner, _ = agent.ope_chunk(learner, data, 1)
        s = host(learner)
        same = tree_rel(s.q_target, s.q) == 0.0
        p3.check(it=it, W=rel(s.W, np64(sr.w)[0]), w=rel(s.w, np64(dsr.w)[0]),
                 W_adam=vec_adam_rel(s.W_opt, sr.w_optimizer, sr.w),
                 w_adam=vec_adam_rel(s.w_opt, dsr.w_optimizer, dsr.w),
                 q=tree_rel(s.q, a_q(dtd.Q)), q_target=tree_rel(s.q_target, a_q(dtd.Q_target)),
                 q_adam=adam_rel(s.q_opt, moments(a_q, dtd.Q, dtd.Q_optimizer), it),
                 copy_schedule=float(same != (it % COPY == 0)),
                 phi_psi_frozen=max(tree_rel(s.ed, a_ed(sr.encoder_decoder)), tree_rel(s.psi, a_q(sr.Q))))
        if it % 2 == 1:
            estimates(it)
    assert min(sampled_not_done) == 0  # the terminal branch of the SR and TD targets ran
    p3.finish(3)
    pe.finish(3, note="after iterations 1 and 3; the authors' Atari SR-DICE estimate is the un-normalised value, "
                      "ours x 1/(1-gamma) is compared; 100 batches of 1 (theirs) against 100 at once (ours)")
    pd.finish(3, note="our default formula on the authors' psi(s0, a0) and w against their continuous form; it "
                      "differs from their Atari (1-gamma) mean(w) mean(psi) by > 1e-6 once w moved")


# ---------------------------------------------------------------------------------------------
# Start states (and, on Atari, the stored transitions) of a small dataset the test collects
# ---------------------------------------------------------------------------------------------
class FramesEnv(gym.Env):
    """84 x 84 uint8 frames stacked 4 deep, oldest first, zeros before an episode's first frame (as dqn-atari:).
    Frame t of an episode carries (reset draw, t + 1) in its corner; the dynamics ignore the action. An episode
    whose reset draw is odd terminates at step 3, the others run into the 5-step time limit."""

    frame_history = 4
    observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.draw, self.t = int(self.np_random.integers(1, 200)), 0
        self.stack = np.zeros((4, 84, 84), np.uint8)
        self.stack[-1] = self._frame()
        return self.stack.copy(), {}

    def _frame(self):
        f = np.zeros((84, 84), np.uint8)
        f[0, :2] = self.draw, self.t + 1
        return f

    def step(self, action):
        self.t += 1
        self.stack = np.concatenate([self.stack[1:], self._frame()[None]])
        return self.stack.copy(), 1.0, self.draw % 2 == 1 and self.t == 3, False, {}


if "SRDiceFrames-v0" not in gym.registry:
    gym.register("SRDiceFrames-v0", entry_point=FramesEnv, max_episode_steps=5)


class OldGymAtari:
    """The interface the authors' atari/main.py loop drives (their AtariPreprocessing over old gym), here over a
    gymnasium env: stacks newest frame first, done at the time limit too, info = [clipped reward, termination]."""

    def __init__(self, env_id, seed):
        self.env, self.seed = gym.make(env_id), seed
        self._max_episode_steps = self.env.spec.max_episode_steps
        self.action_space = argparse.Namespace(sample=lambda: 0)

    def reset(self):
        obs, _ = self.env.reset(seed=self.seed)
        self.seed = None
        return obs[::-1].copy()

    def step(self, action):
        obs, r, term, trunc, _ = self.env.step(int(action))
        return obs[::-1].copy(), r, term or trunc, [float(np.clip(r, -1, 1)), float(term)]


def write_dataset(collect, episodes, dataset_id, env_id):
    env = gym.make(env_id)
    frames = episodes.frames_meta()
    space = episodes.observation_space(env.observation_space) if frames else env.observation_space
    collect.write_minari(dataset_id, episodes.buffers(), None,
                         {"observation_space": space, "action_space": env.action_space},
                         {"recipe": "sr-dice", "env_id": env_id, "frames": frames})
    return f"minari:{dataset_id}"


def episode_budgets(collect, env_id, seed):
    """Two step budgets: one that ends the collection at an episode's end, one a step into the next episode."""
    lengths = [len(e["rew"]) for e in collect.rollout(env_id, 30, seed, 1).done]
    at_end = int(np.sum(lengths[:4]))
    return at_end, at_end + 1


@pytest.mark.authors("SR-DICE")
def test_start_states_match_authors(tmp_path, monkeypatch):
    """Start states of the same collected episodes: ours are every dataset episode's first observation
    (envs.collect -> Minari -> envs.offline); the authors store the state of every reset, so when the collection
    ends at an episode's end theirs hold one more (the reset after it, with no transition), else the same.
    Continuous: their continuous/utils.ReplayBuffer, filled in their main.py's order (its loop is the script's
    __main__ block): add_start at the first reset and after every episode end. Atari: their own collection loop
    (atari/main.py interact_with_environment, their AtariBuffer) over the same env, and every stored transition
    through their sampler against ours."""
    from envs import collect, offline
    p = Parity("sr_dice.py", "start states (continuous and Atari): every episode's first observation, against the "
                             "authors' buffers")
    cont = load_authors("SR-DICE", "utils", subdir="continuous")
    seed = 1  # both kinds of episode end in the first four episodes of both envs
    for case, steps in enumerate(episode_budgets(collect, "CountEnv-v0", seed)):
        episodes = collect.rollout("CountEnv-v0", steps, seed, 1)
        ended = not episodes.done[-1].get("cut")
        ours_ = offline.load(write_dataset(collect, episodes, f"test/count/starts{case}-v0", "CountEnv-v0"),
                             "CountEnv-v0", timeouts="bootstrap").start_obs
        env = gym.make("CountEnv-v0")
        buf = cont.ReplayBuffer(3, 1, max_size=100)
        state, _ = env.reset(seed=seed)
        buf.add_start(state)
        for _ in range(steps):
            next_state, reward, term, trunc, _ = env.step(env.action_space.sample())
            buf.add(state, 0.0, next_state, reward, float(term))
            state = next_state
            if term or trunc:
                state, _ = env.reset()
                buf.add_start(state)
        theirs = buf.start_state[:buf.start_size]
        assert len(theirs) == len(ours_) + ended and len(ours_) == len(episodes.done)
        p.check(continuous=rel(ours_, theirs[:len(ours_)]))

    main, utils = load_authors("SR-DICE", "main", "utils", subdir="atari", stubs={"gym": gym_stub()})
    monkeypatch.setattr(main, "eval_policy", lambda *a, **k: 0.0)  # their return measure makes an old-gym env
    monkeypatch.chdir(tmp_path)  # their loop saves the buffer under ./buffers and a result under ./results
    (tmp_path / "buffers").mkdir()
    (tmp_path / "results").mkdir()
    env_id = "SRDiceFrames-v0"
    params = dict(discount=GAMMA, optimizer="Adam", optimizer_parameters={"lr": 6.25e-5}, polyak_target_update=False,
                  target_update_freq=8e3, tau=1, initial_eps=1, end_eps=1e-2, eps_decay_period=25e4, eval_eps=0,
                  start_timesteps=2e4, train_freq=4, eval_freq=5e4)
    for case, steps in enumerate(episode_budgets(collect, env_id, seed)):
        args = argparse.Namespace(env=env_id, seed=seed, buffer_name=f"b{case}", max_timesteps=steps, low_noise_p=0.0,
                                  rand_action_p=0.1, train_behavioral=False, generate_buffer=False)
        buf = utils.AtariBuffer(None, {"state_history": 4, "frame_size": 84}, 32, 1000, "cpu")
        torch.manual_seed(0)
        torch.set_default_dtype(torch.float32)  # their DDQN acts on torch.FloatTensor states
        try:
            main.interact_with_environment(OldGymAtari(env_id, seed), buf, True, 84, 3, args, params, "cpu")
        finally:
            torch.set_default_dtype(torch.float64)
        episodes = collect.behavioural_rollout(env_id, steps, seed, 1, lambda o: np.zeros(len(o), np.int64), 0.0, 0.1,
                                               0.0)
        ended = not episodes.done[-1].get("cut")
        data = offline.load_discrete(write_dataset(collect, episodes, f"test/frames/starts{case}-v0", env_id), env_id,
                                     timeouts="drop")
        ours_ = data.stacks(data.start_idx)
        theirs = buf.start_state[:buf.start_size][:, ::-1]  # newest first -> oldest first
        assert len(theirs) == len(ours_) + ended and len(ours_) == len(episodes.done)
        p.check(atari=rel(ours_, theirs[:len(ours_)]))
        # every stored transition through their sampler. Both drop time-limit ends; ours also drops the transition
        # the step budget cut (stored as truncated), which theirs keeps
        assert buf.crt_size == len(data) + (not ended)
        with monkeypatch.context() as m:
            m.setattr(np.random, "randint", lambda lo, hi, size: np.arange(lo, hi))
            s, _, s2, r, nd = (np64(x)[:len(data)] for x in buf.sample(buf.crt_size))
        s, s2 = s[:, ::-1], s2[:, ::-1]
        ours_s, ours_s2 = data.stacks(data.obs_idx), data.stacks(data.next_idx)
        # their s' takes its newest frame from the next stored slot: at an episode's last stored transition that is
        # the next episode's first frame (after the last one: the cut transition's, else an unwritten zero frame)
        ends = np.r_[data.obs_idx[1:, -1] != data.obs_idx[:-1, -1] + 1, True]
        after = data.table[data.start_idx[-1:, -1]] if not ended else np.zeros((1, 1, 84, 84), np.uint8)
        nxt = np.r_[data.table[data.obs_idx[1:, -1]], after]
        want_s2 = ours_s2.copy()
        want_s2[ends, -1] = nxt[ends, 0]
        p.check(atari_transitions=max(rel(ours_s, s), rel(want_s2, s2), rel(1 - data.terminated, nd[:, 0]),
                                      rel(data.reward, r[:, 0])))
        assert np.any(ends[:-1]) and rel(ours_s2, s2) > 0  # the difference is really there
    p.finish(4, note="2 budgets per suite (the collection ends at an episode's end, or a step later); the authors' "
                     "extra start state after the last episode is the one difference; Atari transitions equal but "
                     "for their s' newest frame at each episode's last stored transition (the next stored frame)")
