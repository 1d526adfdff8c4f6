"""Parity of algos/drq.py with dmksjfl/DR.Q (DRQ/DRQ.py, DRQ/buffer.py), float64.

Update: the authors' `Agent.train` beside our `agent.step`, fed the same transition stream, on the same initial
weights (the authors' torch init, converted), for each suite our file runs and the authors' code covers: Gym
states (terminations), Atari (pixels, history 4, discrete actions, terminations) and DMC pixels (history 3;
marked slow). Our replay is float64 here. Before each step the test replays our key schedule on the buffer after
the add (the burst's distribution, window starts, shift offsets, target noise, Gumbel draws) and hands the
authors' train() the same values: the windows through a stub ReplayBuffer (theirs stores on CUDA; the stub's
update_priority and reward_scale are the authors' own methods), the noise through torch.randn_like, the offsets
through torch.randint, the Gumbel draws through torch.empty_like(...).exponential_(). Two dtype adapters on the
authors' side, both lossless: their shift grid, float32 by an explicit dtype, is built in float64 like every other
tensor, and their discrete one-hot `.float()` is cast back to float64. Pixels (0-255) go over as the values our
network sees: our Encoder.f normalises in float32, where XLA computes x / 255 as x * float32(1 / 255), up to one
float32 ulp from the authors' division; their side gets 255 * (our first-conv input + 0.5).

Faded replay: the authors' ReplayBuffer.add over a whole run past the 0.1 floor (23,025 steps), on the CPU,
beside our replay_add on the same episodes: every slot's sampling weight as their sampler computes it, masks
and ages."""

import contextlib
import types
from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.parity.harness import (Parity, adam_moment, conv, linear, load_authors, ours, param, patched, rel, stack,
                                  t64, tree_rel, unstack)

TINY = dict(zs_dim=16, za_dim=8, zsa_dim=16, enc_hdim=32, value_hdim=32, policy_hdim=32)  # the same names both sides
WRITER = types.SimpleNamespace(add_scalar=lambda *a, **k: None)  # train() logs every 5,000 steps


@dataclass
class Suite:
    env_id: str  # ours; it sets nothing the update reads
    frame: tuple  # one stored frame (the authors' obs_shape)
    history: int
    actions: int
    discrete: bool
    episodes: list  # (length, "terminated" | "truncated"); an open episode follows
    learning_starts: int
    batch: int
    period: int  # target_update_freq on both sides
    steps: int  # training steps: bursts at 1, 1 + period, ...

    @property
    def pixels(self):
        return len(self.frame) == 3

    @property
    def obs_shape(self):
        return (self.frame[0] * self.history, *self.frame[1:])


GYM = Suite("Hopper-v4", (6,), 1, 3, False, [(9, "terminated"), (3, "terminated"), (12, "truncated"),
                                             (1, "terminated"), (15, "terminated")], 44, 32, 3, 7)
ATARI = Suite("atari:Pong", (1, 84, 84), 4, 4, True, [(7, "terminated"), (2, "terminated"), (9, "truncated")],
              22, 8, 2, 3)
DMC_PIXELS = Suite("dmc-pixels:walker-walk", (3, 84, 84), 3, 2, False, [(8, "truncated"), (10, "truncated")],
                   22, 8, 2, 3)


def f64t(x):
    return torch.tensor(np.asarray(x, np.float64))


# ---------------------------------------------------------------- torch -> flax trees

def mlp(m, g):
    return {f"Dense_{i}": linear(getattr(m, f"l{i + 1}"), g) for i in range(3)}


def flat_linear(layer, g):
    """zs_lin: torch flattens the conv output [32, 7, 7] channel first, ours [7, 7, 32] channel last."""
    d = linear(layer, g)
    d["kernel"] = d["kernel"].reshape(32, 7, 7, -1).transpose(1, 2, 0, 3).reshape(1568, -1)
    return d


def encoder_p(e, g=param):
    p = {"action_in": linear(e.za, g), "sa_mlp": mlp(e.zsa, g), "model": linear(e.model, g)}
    if hasattr(e, "zs_cnn1"):
        p.update({f"convs_{i}": conv(getattr(e, f"zs_cnn{i + 1}"), g) for i in range(4)})
        p["state_out"] = flat_linear(e.zs_lin, g)
    else:
        p["state_mlp"] = mlp(e.zs_mlp, g)
    return {"params": p}


def policy_p(p, g=param):
    return {"params": {"MLP_0": mlp(p.policy, g)}}


def value_p(v, g=param):
    return {"params": {"MLP_0": mlp(v.q1.q1, g), "Dense_0": linear(v.q1.q2, g), "MLP_1": mlp(v.q2.q1, g),
                       "Dense_1": linear(v.q2.q2, g)}}


def adamw_rel(opt_state, net, tree, optimizer):
    """Largest rel of optax.adamw's (mu, nu) against torch AdamW's (exp_avg, exp_avg_sq); the step counts apart."""
    s = opt_state[0]
    return max(tree_rel(s.mu, tree(net, adam_moment(optimizer, "exp_avg"))),
               tree_rel(s.nu, tree(net, adam_moment(optimizer, "exp_avg_sq"))))


def torch_steps(optimizer):
    steps = {int(st["step"]) for st in optimizer.state.values()}
    assert len(steps) <= 1
    return steps.pop() if steps else 0


# ---------------------------------------------------------------- the authors' side

class StubReplay:
    """DRQ/buffer.py's ReplayBuffer as the agent uses it in train(): `sample` returns the queued windows (ours),
    `update_priority` and `reward_scale` are the authors' own methods, run on our buffer's contents."""

    def __init__(self, replay_buffer_cls):
        self.queue, self.size, self.env_terminates = [], 0, False
        self.update_priority = types.MethodType(replay_buffer_cls.update_priority, self)
        self._reward_scale = replay_buffer_cls.reward_scale
        self.rows = None

    def sample(self, horizon, include_intermediate=False):
        want, start, out = self.queue.pop(0)
        assert want == (horizon, include_intermediate), f"authors sample {horizon, include_intermediate}, ours {want}"
        self.sampled_ind = start
        return out

    def reward_scale(self, eps=1e-8):
        return self._reward_scale(self.rows, eps)


def authors_agent(DRQ, buffer_mod, suite: Suite, hp: dict):
    state_shape, cls = list(suite.obs_shape), buffer_mod.ReplayBuffer
    DRQ.buffer.ReplayBuffer = lambda *a, **k: types.SimpleNamespace(state_shape=state_shape)
    torch.manual_seed(0)
    th = DRQ.Agent(suite.frame, suite.actions, 1.0, suite.pixels, suite.discrete, torch.device("cpu"),
                   suite.history, hp)
    assert th.encoder.model.weight.dtype == torch.float64 and th.two_hot.bins.dtype == torch.float64
    DRQ.buffer.ReplayBuffer = cls
    th.replay_buffer = StubReplay(cls)
    return th


class _Gumbel:
    """What F.gumbel_softmax reads from torch.empty_like(...).exponential_(): exp(-g), so that -log(.) = g."""

    def __init__(self, g):
        self.g = g

    def exponential_(self):
        return torch.exp(-self.g)


@contextlib.contextmanager
def authors_draws(DRQ, noise, shifts, gumbels):
    """torch's random calls in train() return our draws (queues, each emptied exactly); shift grids in float64;
    records multi_step_reward's outputs."""
    noise, shifts, gumbels, record = list(noise), list(shifts), list(gumbels), []
    orig = (torch.randn_like, torch.randint, torch.linspace, torch.empty_like, DRQ.multi_step_reward, DRQ.realign)

    def randn_like(x, **kw):
        n = noise.pop(0)
        assert tuple(n.shape) == tuple(x.shape)
        return n

    def randint(low, high, size, **kw):
        s = shifts.pop(0)
        assert (low, high, tuple(size)) == (0, 9, tuple(s.shape))
        return s

    def empty_like(x, **kw):
        if kw.get("memory_format") is torch.legacy_contiguous_format and gumbels:
            g = gumbels.pop(0)
            assert tuple(g.shape) == tuple(x.shape)
            return _Gumbel(g)
        return orig[3](x, **kw)

    def multi_step_reward(*a):
        out = orig[4](*a)
        record.append(out)
        return out

    with patched((torch, "randn_like", randn_like), (torch, "randint", randint), (torch, "empty_like", empty_like),
                 (torch, "linspace", lambda *a, **kw: orig[2](*a, **{**kw, "dtype": torch.float64})),
                 (DRQ, "multi_step_reward", multi_step_reward),
                 (DRQ, "realign", lambda x, discrete: orig[5](x, discrete).to(torch.float64))):
        yield record
    assert not (noise or shifts or gumbels), "the authors' train() drew fewer numbers than ours"


# ---------------------------------------------------------------- our side

def stream(suite: Suite, n: int, seed: int = 1):
    """n transitions: the suite's episodes, then one that stays open."""
    rng = np.random.default_rng(seed)
    ends = [(length, end) for length, end in suite.episodes]
    ends.append((n - sum(length for length, _ in ends), "open"))

    def frame():
        if suite.pixels:
            return rng.integers(0, 256, suite.frame).astype(np.uint8)
        return rng.normal(size=suite.frame)

    out = []
    for length, end in ends:
        for t in range(length):
            last = t == length - 1
            action = rng.integers(suite.actions) if suite.discrete else rng.uniform(-1, 1, suite.actions)
            out.append(ours("drq").Transition(
                frame()[None], np.asarray(action)[None], np.array([3.0 * rng.normal()]),
                np.array([last and end == "terminated"]), np.array([last and end == "truncated"]), frame()[None],
                np.array([t], np.int32)))
    return out


def float64_replay(drq, suite: Suite, slots: int):
    """replay_init's buffer with float64 actions, rewards, flags and priorities (states too)."""
    r = _jit(drq.replay_init, 0, 1, 2, 3)(slots, suite.frame, jnp.uint8 if suite.pixels else jnp.float64,
                                          suite.actions)
    f = lambda x: x.astype(jnp.float64)  # noqa: E731
    return stack(r._replace(action=f(r.action), reward=f(r.reward), not_done=f(r.not_done), priority=f(r.priority),
                            max_priority=f(r.max_priority)))


_JITS = {}


def _jit(f, *static):
    """One jitted wrapper per function (our sampler, as the agent runs it: compiled)."""
    return _JITS.setdefault(f, jax.jit(f, static_argnums=static))


def shift_offsets(key, n):
    """random_shift's draw: one (row, column) offset per image."""
    return jax.random.randint(key, (n, 2), 0, 2 * 4 + 1)


def our_draws(drq, args, suite, key, buf, burst):
    """Replays rl_step / encoder_step / rl_update's key splits on the buffer after the add."""
    fade = (args.forget_decay, args.forget_floor)
    b, h, q = args.batch_size, args.enc_horizon, args.q_horizon
    enc = []
    if burst:
        cdf = _jit(drq.replay_cdf, 1, 2)(buf, *fade)
        for _ in range(args.target_update_freq):
            key, k_s, k_a = jax.random.split(key, 3)
            enc.append((_jit(drq.replay_sample, 2, 3, 4, 6, 7)(buf, k_s, b, h, suite.history, cdf, *fade),
                        shift_offsets(k_a, b * (h + 1)) if suite.pixels else None))
    key, k_s, k_a = jax.random.split(key, 3)
    cdf = _jit(drq.replay_cdf, 1, 2)(buf, *fade)
    rl = (_jit(drq.replay_sample, 2, 3, 4, 6, 7)(buf, k_s, b, q, suite.history, cdf, *fade),
          shift_offsets(k_a, b * (q + 1)) if suite.pixels else None)
    _, k_t, k_p = jax.random.split(key, 3)
    k_g, k_n = jax.random.split(k_t)  # target_action: the Gumbel draw, then the noise
    shape = (b, suite.actions)
    gumbels = [jax.random.gumbel(k, shape, jnp.float64) for k in (k_g, k_p)] if suite.discrete else []
    return enc, rl, jax.random.normal(k_n, shape), gumbels


def first_conv_input(drq, nets, params, channels):
    """[256]: what our jitted Encoder.f feeds its first convolution for each pixel value (read off the call). XLA
    turns its float32 x / 255 into x * float32(1 / 255): 205 of the 256 values lie one float32 ulp from the
    authors' float32 division."""
    def run(p, obs):
        seen = []

        def look(f, args, kwargs, context):
            if context.module.name == "convs_0" and context.method_name == "__call__":
                seen.append(args[0])
            return f(*args, **kwargs)

        with nn.intercept_methods(look):
            nets.encoder.apply(p, obs, method=drq.Encoder.f)
        return seen[0]

    img = jnp.broadcast_to((jnp.arange(84 * 84) % 256).astype(jnp.uint8).reshape(1, 1, 84, 84), (1, channels, 84, 84))
    return np.asarray(jax.jit(run)(params, img), np.float64)[0, :, :, 0].reshape(-1)[:256]


def queue_for_authors(args, suite, enc, rl, pixel_in=None):
    """Our windows in the authors' sample() layout, and our offsets in shift_aug's order ([x, y] per image: the
    state images of the windows, then the next-state images). Pixels go over as 255 * (our first-conv input +
    0.5), so that the authors' x / 255 - 0.5 is the input our network sees."""
    h, q = args.enc_horizon, args.q_horizon
    if suite.pixels:
        pix = lambda o: torch.tensor(255 * (pixel_in[np.asarray(o)] + 0.5))  # noqa: E731
    else:
        pix = f64t
    queue, shifts = [], []
    for (start, obs, act, rew, nd), offs in enc:
        queue.append(((h, True), np.array(start), (pix(obs[:, :-1]), f64t(act), pix(obs[:, 1:]),
                                                      f64t(rew)[..., None], f64t(nd)[..., None])))
        if suite.pixels:
            xy = np.asarray(offs).reshape(obs.shape[0], h + 1, 2)[..., ::-1]
            shifts.append(np.concatenate([xy[:, :h].reshape(-1, 2), xy[:, 1:].reshape(-1, 2)]))
    (start, obs, act, rew, nd), offs = rl
    queue.append(((q, False), np.array(start), (pix(obs[:, 0]), f64t(act[:, 0]), pix(obs[:, q]),
                                                  f64t(rew)[..., None], f64t(nd)[..., None])))
    if suite.pixels:
        xy = np.asarray(offs).reshape(obs.shape[0], q + 1, 2)[..., ::-1]
        shifts.append(np.concatenate([xy[:, 0], xy[:, q]]))
    return queue, [f64t(s)[:, None, None, :] for s in shifts]


def run_update(suite: Suite, original_mask: bool, piece: str, note: str):
    """Train both agents on the same stream; compare everything after each training step."""
    drq = ours("drq")
    DRQ, buffer_mod = load_authors("DR.Q", "DRQ", "buffer", subdir="DRQ")
    n = suite.learning_starts + suite.steps
    hp = dict(batch_size=suite.batch, target_update_freq=suite.period,
              buffer_size_before_training=suite.learning_starts, **TINY)
    th = authors_agent(DRQ, buffer_mod, suite, hp)
    stub = th.replay_buffer
    stub.env_terminates = any(end == "terminated" for _, end in suite.episodes)

    args = drq.Args(env_id=suite.env_id, batch_size=suite.batch, target_update_freq=suite.period,
                    learning_starts=suite.learning_starts, total_timesteps=n, original_infonce_mask=original_mask,
                    **TINY)
    obs_dtype = jnp.uint8 if suite.pixels else jnp.float64
    agent = drq.make_agent(args, suite.obs_shape, obs_dtype, suite.actions, suite.discrete, suite.history)
    nets = agent.nets
    e, p, v = encoder_p(th.encoder), policy_p(th.policy), value_p(th.value)
    # learner_init's layout and scales (1, 0), the authors' too; built here to spare its compilation
    learner = stack(drq.Learner(e, e, p, p, v, v, nets.encoder_tx.init(e), nets.policy_tx.init(p),
                                nets.value_tx.init(v), jnp.ones(()), jnp.zeros(()), jax.random.PRNGKey(0)))
    buf = float64_replay(drq, suite, 2 * n)
    obs_next = jnp.zeros((1, *suite.obs_shape), obs_dtype)
    add = agent.parts["add"]
    pixel_in = first_conv_input(drq, nets, e, suite.obs_shape[0]) if suite.pixels else None

    par = Parity("drq.py", piece)
    ratios, ends = (1.0, 1.0), [0, 0]  # ends: windows with a termination (encoder, RL)
    for t, tr in enumerate(stream(suite, n)):
        train, burst, random_next = drq.schedule(t, args.learning_starts, args.target_update_freq)
        stub.size = t + 1  # learning_starts counts transitions (mrq.py's header)
        if not train:  # warm-up: agent.step would only add and act
            buf = add(buf, tr)
            th.train(WRITER)
            assert th.training_steps == 0
            continue
        post = add(jax.tree.map(jnp.copy, buf), tr)  # the buffer our update samples (agent.step donates its own)
        pb = unstack(post)
        enc, rl, noise, gumbels = our_draws(drq, args, suite, learner.key[0], pb, burst)
        queue, shifts = queue_for_authors(args, suite, enc, rl, pixel_in)
        stub.queue = queue
        stub.priority, stub.max_priority = t64(pb.priority), float(pb.max_priority)
        filled = int(pb.ptr)  # no wrap: the authors' rows [:size], final-observation slots holding zeros
        stub.rows = types.SimpleNamespace(size=filled, action_reward_notdone=torch.cat(
            [f64t(pb.reward[:filled])[:, None], torch.zeros(filled, 1 + suite.actions)], 1))
        if burst:  # the authors' reward scale: mean |r| over slots, ours over transitions (mrq.py's header)
            ratios = (int(pb.is_step.sum()) / filled, ratios[0])
        ends[0] += sum(int((np.asarray(w[0][4]) == 0).any(-1).sum()) for w in enc)
        ends[1] += int((np.asarray(rl[0][4]) == 0).any(-1).sum())
        with authors_draws(DRQ, [t64(noise)], shifts, [t64(g) for g in gumbels]) as record:
            th.train(WRITER)
        assert not stub.queue
        learner, buf, _, _ = agent.step(learner, buf, tr, obs_next, train, burst, random_next)
        k = th.training_steps
        assert k == t + 1 - args.learning_starts
        s, b = unstack(learner), unstack(buf)
        (_, _, _, rew, nd), _ = rl
        ret, mask = _jit(drq.multi_step_return, 2)(rew, nd, args.discount)
        ms_reward, term_discount = record[0]
        par.check(it=k,
                  encoder=tree_rel(s.encoder, encoder_p(th.encoder)),
                  encoder_target=tree_rel(s.encoder_target, encoder_p(th.encoder_target)),
                  encoder_adamw=adamw_rel(s.encoder_opt, th.encoder, encoder_p, th.encoder_optimizer),
                  value=tree_rel(s.value, value_p(th.value)),
                  value_target=tree_rel(s.value_target, value_p(th.value_target)),
                  value_adamw=adamw_rel(s.value_opt, th.value, value_p, th.value_optimizer),
                  policy=tree_rel(s.policy, policy_p(th.policy)),
                  policy_target=tree_rel(s.policy_target, policy_p(th.policy_target)),
                  policy_adamw=adamw_rel(s.policy_opt, th.policy, policy_p, th.policy_optimizer),
                  adamw_steps=abs(int(s.encoder_opt[0].count) - torch_steps(th.encoder_optimizer))
                  + abs(int(s.value_opt[0].count) - k) + abs(torch_steps(th.value_optimizer) - k)
                  + abs(int(s.policy_opt[0].count) - k) + abs(torch_steps(th.policy_optimizer) - k),
                  lap_priorities=rel(b.priority, stub.priority.numpy()),
                  max_priority=rel(b.max_priority, stub.max_priority),
                  multi_step_return=rel(ret, ms_reward[:, 0].numpy()),
                  bootstrap_discount=rel(mask * args.discount ** args.q_horizon, term_discount[:, 0].numpy()),
                  reward_scales=max(rel(s.reward_scale * ratios[0], th.reward_scale),
                                    rel(s.target_reward_scale * ratios[1], th.target_reward_scale)))
    bursts = -(-suite.steps // suite.period)
    assert int(unstack(learner).encoder_opt[0].count) == bursts * suite.period
    if any(end == "terminated" for _, end in suite.episodes):
        assert min(ends) > 0
    if suite.pixels:
        ulp = np.abs(pixel_in - (np.arange(256) / 255 - 0.5)).max()
        note += f" Pixels 0-255; our first-conv input within {ulp:.1e} of x / 255 - 0.5."
    par.finish(suite.steps, note=f"{bursts} bursts of {suite.period} encoder updates (target period {suite.period} "
                                 f"both sides), batch {suite.batch}; windows with a termination: {ends[0]} (encoder), "
                                 f"{ends[1]} (RL). {note}")


@pytest.mark.authors("DR.Q")
def test_update_gym_states_authors_infonce_mask():
    """Gym states with terminations; ours with --original-infonce-mask (the authors' [B] x [B, 1] broadcast)."""
    run_update(GYM, True, "update (Gym states, --original-infonce-mask): encoder bursts, value, policy, "
               "hard targets, AdamW moments, LAP priorities, 3-step return, reward scales",
               "Reward scales: ours x transitions/slots (documented: final-observation slots count as 0 there).")


@pytest.mark.authors("DR.Q")
def test_encoder_update_our_infonce_mask():
    """Our default InfoNCE mask (each sample's loss weighted by its own not-done product) against an independent
    computation: the authors' train_encoder with their [B] InfoNCE reshaped to [B, 1], so that their mask weights
    each sample (nothing else changes). Four updates of our encoder_update (what encoder_step runs) on windows
    with terminations at every position; the authors' unchanged loss moves the same weights elsewhere (the data
    tells the two masks apart)."""
    drq = ours("drq")
    DRQ, buffer_mod = load_authors("DR.Q", "DRQ", "buffer", subdir="DRQ")
    th, plain = (authors_agent(DRQ, buffer_mod, GYM, dict(batch_size=GYM.batch, **TINY)) for _ in range(2))
    th.mutual_information_loss = lambda *a, **k: DRQ.Agent.mutual_information_loss(th, *a, **k)[:, None]
    args = drq.Args(batch_size=GYM.batch, total_timesteps=100, **TINY)
    assert not args.original_infonce_mask
    nets = drq.make_agent(args, GYM.obs_shape, jnp.float64, GYM.actions, False, 1).nets
    e = encoder_p(th.encoder)
    learner = drq.Learner(e, e, None, None, None, None, nets.encoder_tx.init(e), None, None, None, None, None)
    weights = dict(dyn_weight=args.dyn_weight, reward_weight=args.reward_weight, infonce_weight=args.infonce_weight,
                   temperature=args.infonce_temperature, original_infonce_mask=args.original_infonce_mask)
    update = jax.jit(lambda lrn, *w: drq.encoder_update(nets, lrn, *w, drq.reward_bins(args.num_bins), **weights)[0])
    rng = np.random.default_rng(2)
    b, h = GYM.batch, args.enc_horizon
    p = Parity("drq.py", "encoder update (Gym states, our per-sample InfoNCE mask): against the authors' loss with "
                         "its InfoNCE as [B, 1]")
    iters = 4
    for it in range(1, iters + 1):
        obs, act = rng.normal(size=(b, h + 1, GYM.frame[0])), rng.uniform(-1, 1, (b, h, GYM.actions))
        rew, nd = 3.0 * rng.normal(size=(b, h)), (rng.uniform(size=(b, h)) > 0.2).astype(np.float64)
        for agent in (th, plain):
            agent.train_encoder(f64t(obs[:, :-1]), f64t(act), f64t(obs[:, 1:]), f64t(rew)[..., None],
                                f64t(nd)[..., None], True)
        learner = update(learner, obs, act, rew, nd)
        if it == 1:
            differ = tree_rel(learner.encoder, encoder_p(plain.encoder))
        p.check(it=it, encoder=tree_rel(learner.encoder, encoder_p(th.encoder)),
                encoder_adamw=adamw_rel(learner.encoder_opt, th.encoder, encoder_p, th.encoder_optimizer),
                adamw_steps=abs(int(learner.encoder_opt[0].count) - torch_steps(th.encoder_optimizer)))
    p.finish(iters, note=f"The authors' mutual_information_loss output reshaped [B] -> [B, 1], nothing else; "
                         f"batch {b}, 20% of the not-done flags 0; their unchanged loss: {differ:.0e} away.")
    assert differ > 1e-4, f"the two InfoNCE masks agree on this data ({differ:.1e}): the test would not tell them apart"


@pytest.mark.authors("DR.Q")
def test_update_dmc_pixels():
    """DMC pixels: the CNN encoder, 9-channel histories, random shift on both sides (no terminations: the two
    InfoNCE masks coincide), as in MR.Q's pixel test."""
    run_update(DMC_PIXELS, False, "update (DMC pixels, history 3): CNN encoder bursts, random shift, value, "
               "policy, hard targets, AdamW moments, LAP priorities, 3-step return",
               "No terminations: the two InfoNCE masks coincide.")


@pytest.mark.authors("DR.Q")
def test_update_atari_discrete():
    """Atari: pixels, 4-frame histories, discrete actions (Gumbel-softmax policy, one-hot target action, halved
    noise), terminations; ours with --original-infonce-mask."""
    run_update(ATARI, True, "update (Atari: pixels, history 4, discrete, --original-infonce-mask): encoder "
               "bursts, Gumbel-softmax policy, value, hard targets, AdamW moments, LAP priorities, 3-step return",
               "The authors' float32 one-hot target action cast to float64 (lossless).")


# ---------------------------------------------------------------- faded replay over a whole run

class _CpuTorch:
    """`torch` as DRQ/buffer.py sees it: 'cuda' is the CPU; torch.empty is torch.zeros (their priority and forget
    tensors start uninitialised, hidden by the mask); torch.rand returns the given draws; cumsum records its input."""

    def __init__(self):
        self.rand_values, self.weights = None, None

    def __getattr__(self, name):
        return getattr(torch, name)

    device = staticmethod(lambda *a, **k: torch.device("cpu"))
    empty = staticmethod(torch.zeros)

    def rand(self, size, **kw):
        assert tuple(size) == tuple(self.rand_values.shape)
        return self.rand_values

    def cumsum(self, x, dim):
        self.weights = x.clone()
        return torch.cumsum(x, dim)


@pytest.mark.authors("DR.Q")
def test_faded_replay_over_a_whole_run():
    """The authors' ReplayBuffer.add (every weight x 0.9999 per stored step, the written slot to 1) beside our
    replay_add over 23,600 steps in a 23,200-slot ring (short terminated and truncated episodes, then long ones;
    it wraps): at every 400 steps, each slot's sampling weight as their sample_ind computes it (priority x mask x
    clamp(weight, 0.1, 1)) against our replay_weight, their masks against our valid flags, and each stored
    transition's age (their weight's exponent) against ours, exactly."""
    drq = ours("drq")
    buffer_mod = load_authors("DR.Q", "buffer", subdir="DRQ")
    cpu = _CpuTorch()
    buffer_mod.torch = cpu
    args = drq.Args()  # the decay, floor and horizon a run uses
    fade = (args.forget_decay, args.forget_floor)
    slots, n, every, h = 23_200, 23_600, 400, args.enc_horizon
    theirs = buffer_mod.ReplayBuffer((1,), 1, 1.0, False, torch.device("cpu"), 1, h, slots, 256, True,
                                     initial_priority=1)
    rng = np.random.default_rng(0)
    lengths = [(int(rng.integers(1, 9)), str(rng.choice(["terminated", "truncated"]))) for _ in range(40)]
    lengths += [(3000, "terminated"), (2500, "truncated"), (4000, "terminated")]
    steps = []
    for length, end in lengths:
        steps += [(t, t == length - 1 and end == "terminated", t == length - 1 and end == "truncated")
                  for t in range(length)]
    steps += [(t, False, False) for t in range(n - len(steps))]  # an open episode to the end
    assert len(steps) == n

    def add_chunk(buf, xs):
        def body(b, x):
            r, pos, term, trunc = x
            return drq.replay_add(b, r[None], jnp.zeros(1, jnp.float32), r, term, trunc, r[None], pos, h, 1), None
        return jax.lax.scan(body, buf, xs)[0]

    add_chunk = jax.jit(add_chunk)
    buf = drq.replay_init(slots, (1,), jnp.float32, 1)
    rewards = rng.normal(size=n).astype(np.float32)
    p = Parity("drq.py", "faded replay: sampling weights, masks, ages over a 23.6k-step run (authors' "
                         "ReplayBuffer.add)", tol=1e-6)
    ages_seen = set()
    for c in range(0, n, every):
        for i in range(c, c + every):
            pos, term, trunc = steps[i]
            theirs.add(np.array([rewards[i]]), np.zeros(1), np.array([rewards[i]]), float(rewards[i]), term, trunc)
        chunk = steps[c:c + every]
        buf = add_chunk(buf, (jnp.asarray(rewards[c:c + every]), jnp.asarray([s[0] for s in chunk], jnp.int32),
                              jnp.asarray([s[1] for s in chunk]), jnp.asarray([s[2] for s in chunk])))
        cpu.rand_values = torch.zeros(256)  # the draws are not compared (our sampler's cdf is float32)
        theirs.sample_ind()  # records priority x mask x clamp(forget_weight, 0.1, 1)
        w_theirs = cpu.weights.numpy()
        w_ours = np.asarray(drq.replay_weight(buf, jnp.arange(slots), *fade))
        valid = np.asarray(buf.valid)
        written = np.asarray(buf.is_step)  # slots holding a transition (their add() wrote them)
        age = (int(buf.adds) - np.asarray(buf.added))[written]
        implied = np.log(theirs.forget_weight.numpy()[written]) / np.log(0.9999)  # their decay, hard-coded
        ages_seen.update(age.tolist())
        p.check(it=c + every, sampling_weights=rel(w_ours, w_theirs),
                masks=float(np.sum(valid != (theirs.mask.numpy() > 0))),
                ages=float(np.max(np.abs(age - implied))) if age.size else 0.0)
        assert np.array_equal(age, np.round(implied))
    assert {0, 23_024, 23_025, 23_100} <= ages_seen  # the floor crossed, and slots past it
    ends = sum(1 for _, term, trunc in steps if term or trunc)
    assert n + ends > slots and int(buf.ptr) == (n + ends) % slots  # the ring wrapped
    p.finish(n, note="tol 1e-6: our replay_weight computes the fade in float32 (decay^age via exp of a float32 "
                     "product, |error| <= 4e-7) against their float64 products; one step of decay is 1e-4. Masks "
                     "(count of differing slots) and ages (exponents) are exact.")
