"""Parity of algos/mrq.py with facebookresearch/MRQ (MRQ/MRQ.py, buffer.py), float64.

Both sides are fed the same stream of transitions (episodes that terminate and truncate) and train on it:
the authors' `ReplayBuffer.add` + `Agent.train` (their counters, target copies, reward scale, encoder bursts,
windows, multi-step return, LAP priorities), and our `agent.step` with the flags of our `schedule`. Same initial
weights (the authors' torch init, converted). The draws are ours: the test replays our key schedule of one
`agent.step` (each encoder step, then the RL step) and hands the authors' code the same values through a stub
`ReplayBuffer.sample_ind` (our start indices; their `sample` builds the windows from their own storage),
`torch.randint` (random shift offsets), `torch.randn_like` (target noise) and `Tensor.exponential_` (Gumbel
draws), all restored in `finally`.

Float32 where both sides store float32 (their buffer and ours: states, actions, rewards, priorities): the data are
float32-exact (rewards and the discount dyadic, so the float32 multi-step return and reward-scale mean are exact),
pixel values are those whose float32 x / 255 - 0.5 torch and XLA round alike, and the authors' float32
grid_sample shift, which lands within 4e-3 of the integer crop it stands for, is rounded to it (asserted).
"""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.parity.harness import Parity, adam_moment, conv, linear, load_authors, ours, param, rel, stack, t64, \
    tree_rel, unstack

pytestmark = pytest.mark.authors("MRQ")

SMALL = dict(zs_dim=32, za_dim=16, zsa_dim=32, enc_hdim=32, value_hdim=32, policy_hdim=32)
SUITES = {  # env id (ours), frame shape, history, actions, discrete, max_action, batch, target_update_freq, steps
    "Gym": ("Hopper-v4", (11,), 1, 3, False, 2.0, 32, 4, 39),
    "DMC pixels": ("dmc-pixels:walker-walk", (3, 84, 84), 3, 2, False, 1.0, 8, 2, 35),
    "Atari": ("atari:Pong", (1, 84, 84), 4, 5, True, 1, 8, 2, 35),
}
# Training from step 30 (k = 1, 2, ...): Gym 9 training steps, bursts at k = 1, 5, 9 (steps 30, 34, 38) with
# target_update_freq 4; pixels 5 training steps, bursts at k = 1, 3, 5 (steps 30, 32, 34) with 2.
# Terminations at steps 31, 33, 38 (episodes of 32, 2, 2 steps), a truncation at 36; at most 43 slots written of
# 48. No episode ends before training starts: their buffer counts final-observation slots towards
# learning_starts, ours transitions (test_schedule_matches_authors_loop).
EPISODES = [(32, "term"), (2, "term"), (3, "trunc"), (2, "term"), (10, None)]
STARTS, FREQ, SLOTS, DISCOUNT = 30, 4, 48, 0.75


# ---------------------------------------------------------------- the authors' side

@contextlib.contextmanager
def patched(obj, name, value):
    had, old = name in vars(obj), getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


def authors():
    return load_authors("MRQ", "MRQ", subdir="MRQ")


def their_agent(MRQ, frame, history, action_dim, discrete, max_action, hp):
    """MRQ.Agent on the CPU: buffer.py asks torch.cuda.mem_get_info where to store, even on the CPU."""
    with patched(torch.cuda, "mem_get_info", lambda *a, **k: (0, 0)):
        return MRQ.Agent(frame, action_dim, max_action, len(frame) == 3, discrete, torch.device("cpu"), history, hp)


def their_hp(batch, discount=DISCOUNT, freq=FREQ, starts=STARTS, slots=SLOTS):
    return dict(batch_size=batch, buffer_size=slots, discount=discount, target_update_freq=freq,
                buffer_size_before_training=starts, **SMALL)


def cast_to_float64(*modules):
    """Their buffer hands float32 states and actions to the networks (float64 here): cast at the first layers."""
    for m in modules:
        m.register_forward_pre_hook(lambda _, args: tuple(a.double() for a in args))


def _np(t):
    return t.detach().double().numpy()


def mlp3(m, g=param):
    return {f"Dense_{i}": linear(getattr(m, f"l{i + 1}"), g) for i in range(3)}


def enc_p(e, g=param):
    p = {"action_in": linear(e.za, g), "sa_mlp": mlp3(e.zsa, g), "model": linear(e.model, g)}
    if hasattr(e, "zs_lin"):  # torch flattens [32, 7, 7] channels first, ours [7, 7, 32] channels last
        p.update({f"convs_{i}": conv(getattr(e, f"zs_cnn{i + 1}"), g) for i in range(4)})
        w = _np(g(e.zs_lin.weight))
        p["state_out"] = {"kernel": jnp.asarray(w.reshape(-1, 32, 7, 7).transpose(2, 3, 1, 0).reshape(1568, -1)),
                          "bias": jnp.asarray(_np(g(e.zs_lin.bias)))}
    else:
        p["state_mlp"] = mlp3(e.zs_mlp, g)
    return {"params": p}


def pol_p(p, g=param):
    return {"params": {"MLP_0": mlp3(p.policy, g)}}


def val_p(v, g=param):
    return {"params": {"MLP_0": mlp3(v.q1.q1, g), "Dense_0": linear(v.q1.q2, g), "MLP_1": mlp3(v.q2.q1, g),
                       "Dense_1": linear(v.q2.q2, g)}}


def moments(net_p, net, opt, adam_state):
    """max rel of optax's (mu, nu) against torch's (exp_avg, exp_avg_sq)."""
    return max(tree_rel(adam_state.mu, net_p(net, adam_moment(opt, "exp_avg"))),
               tree_rel(adam_state.nu, net_p(net, adam_moment(opt, "exp_avg_sq"))))


def torch_step(opt):
    """The optimizer's step count (every parameter steps together)."""
    steps = {int(s["step"]) for s in opt.state.values()} or {0}
    assert len(steps) == 1
    return steps.pop()


# ---------------------------------------------------------------- the stream both sides store

def pixel_values():
    """uint8 values whose float32 x / 255 - 0.5 torch and XLA round alike (both sides do this step in float32)."""
    u = np.arange(256, dtype=np.uint8)
    theirs = (torch.tensor(u).float() / 255.0 - 0.5).numpy()
    mine = np.asarray(jax.jit(lambda x: x.astype(jnp.float32) / 255.0 - 0.5)(jnp.asarray(u)))
    return u[theirs == mine]


def make_stream(episodes, frame, action_dim, discrete, seed=0):
    """One dict per env step: float32-exact states and actions, dyadic rewards, pos in the episode."""
    rng = np.random.default_rng(seed)
    values = pixel_values() if len(frame) == 3 else None
    assert values is None or len(values) >= 16, "too few pixel values round alike in torch and XLA"

    def new_frame():
        if values is not None:
            return rng.choice(values, frame).astype(np.uint8)
        return rng.normal(size=frame).astype(np.float32)

    out = []
    for n, end in episodes:
        frames = [new_frame() for _ in range(n + 1)]
        for i in range(n):
            last = i == n - 1
            out.append(dict(frame=frames[i], next_frame=frames[i + 1], pos=i,
                            action=int(rng.integers(action_dim)) if discrete
                            else rng.uniform(-1, 1, action_dim).astype(np.float32),
                            reward=float(rng.integers(-64, 65)) / 16, terminated=last and end == "term",
                            truncated=last and end == "trunc"))
    return out


def transition(mrq, s):
    a = np.array([s["action"]], np.int32) if isinstance(s["action"], int) else s["action"][None]
    return mrq.Transition(s["frame"][None], a, np.array([s["reward"]], np.float32), np.array([s["terminated"]]),
                          np.array([s["truncated"]]), s["next_frame"][None], np.array([s["pos"]], np.int32))


def their_add(rb, s, max_action):
    a = s["action"] if isinstance(s["action"], int) else s["action"].astype(np.float64) * max_action
    rb.add(s["frame"], a, s["next_frame"], s["reward"], s["terminated"], s["truncated"])


def copy(tree):
    return jax.tree.map(jnp.array, tree)


# ---------------------------------------------------------------- our draws of one agent.step

def our_draws(mrq, args, action_dim, pixels):
    """Replays the key schedule of `agent.step` on the buffer its updates read (after the write): per encoder step
    split(key, 3) -> (key, sample, shift); then the RL step likewise, and in `rl_update` split(key, 3) ->
    (_, target, policy), the target key split into (Gumbel, noise)."""
    b, h, q = args.batch_size, args.enc_horizon, args.q_horizon

    starts = jax.jit(lambda buf, key, cdf: mrq.replay_sample_starts(buf, key, b, cdf))

    def window(buf, key, cdf, n):  # one update's starts and its shift offsets (n images per window)
        key, k_s, k_a = jax.random.split(key, 3)
        return key, starts(buf, k_s, cdf), jax.random.randint(k_a, (b * n, 2), 0, 9) if pixels else None

    @jax.jit
    def noise(key):
        _, k_t, k_p = jax.random.split(key, 3)
        k_g, k_n = jax.random.split(k_t)
        return (jax.random.normal(k_n, (b, action_dim)), jax.random.gumbel(k_g, (b, action_dim), jnp.float64),
                jax.random.gumbel(k_p, (b, action_dim), jnp.float64))

    def draws(buf, key, burst):
        cdf, out = mrq.replay_cdf(buf), {"enc": []}
        for _ in range(args.target_update_freq if burst else 0):
            key, idx, off = window(buf, key, cdf, h + 1)
            out["enc"].append((np.asarray(idx), off if off is None else np.asarray(off)))
        key, idx, off = window(buf, key, cdf, q + 1)
        out["rl"] = (np.asarray(idx), off if off is None else np.asarray(off))
        out["noise"], *out["gumbel"] = noise(key)
        return out

    return draws


def their_shifts(offsets, b, length, first, last):
    """Our offsets [b * length, (dy, dx)] as their shift_aug's draw: states (window positions `first`) then next
    states (`last`), each row (x, y) as grid_sample reads it."""
    o = offsets.reshape(b, length, 2)[..., ::-1]
    rows = np.concatenate([o[:, first].reshape(-1, 2), o[:, last].reshape(-1, 2)])
    return torch.tensor(rows.copy(), dtype=torch.float32).reshape(-1, 1, 1, 2)


# ---------------------------------------------------------------- update parity over a short run

def run_update_parity(suite):
    mrq = ours("mrq")
    MRQ = authors()
    env_id, frame, history, action_dim, discrete, max_action, batch, freq, steps = SUITES[suite]
    pixels = len(frame) == 3
    obs_shape = (frame[0] * history, *frame[1:])
    args = mrq.Args(env_id=env_id, total_timesteps=steps, learning_starts=STARTS, buffer_size=SLOTS,
                    batch_size=batch, discount=DISCOUNT, target_update_freq=freq,
                    max_episode_steps=2 if pixels and not discrete else None,  # DMC: slots from the episode length
                    original_terminal_reward=True, original_terminal_next_state=True, original_reward_scale=True,
                    **SMALL)
    obs_dtype = jnp.uint8 if pixels else jnp.float32
    agent = mrq.make_agent(args, obs_shape, obs_dtype, action_dim, discrete, history)
    assert agent.slots == SLOTS

    torch.manual_seed(0)
    th = their_agent(MRQ, frame, history, action_dim, discrete, max_action, their_hp(batch, freq=freq))
    rb = th.replay_buffer
    for e in (th.encoder, th.encoder_target):
        cast_to_float64(e.zs_cnn1 if pixels else e.zs_mlp.l1, e.za)

    nets = agent.nets
    buf = stack(mrq.replay_init(SLOTS, frame, obs_dtype, action_dim))  # agent.init without the networks' init
    e, p, v = enc_p(th.encoder), pol_p(th.policy), val_p(th.value)
    # reward scales float32 as the refresh makes them (mean of float32 rewards), the max priority float64 as the
    # RL step makes it: fixed dtypes, so the jitted pieces compile once
    learner = stack(mrq.Learner(e, e, p, p, v, v, nets.encoder_tx.init(e), nets.policy_tx.init(p),
                                nets.value_tx.init(v), jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32),
                                jax.random.PRNGKey(0)))
    buf = buf._replace(max_priority=buf.max_priority.astype(jnp.float64))
    draws = our_draws(mrq, args, action_dim, pixels)
    obs0 = jnp.zeros((1, *obs_shape), obs_dtype)

    # their sampler: our start indices; their windows, with ard cast to float64 (states stay float32 for the shift)
    queue = {"idx": [], "shift": [], "noise": [], "gumbel": []}

    def sample_ind():
        rb.sampled_ind = queue["idx"].pop(0)
        return rb.sampled_ind

    sample = rb.sample

    def sample_f64(horizon, include_intermediate=False):
        s, a, ns, r, nd = sample(horizon, include_intermediate)
        return s, a.double(), ns, r.double(), nd.double()

    rb.sample_ind, rb.sample = sample_ind, sample_f64
    shift_aug, rounding = MRQ.shift_aug, [0.0]

    def shift_rounded(image, pad=4):
        out = shift_aug(image, pad)
        r = torch.round(out)
        rounding[0] = max(rounding[0], float((out - r).abs().max()))
        return r

    def randint(*a, **k):
        return queue["shift"].pop(0)

    def randn_like(x, **k):
        assert x.shape == queue["noise"][0].shape
        return queue["noise"].pop(0)

    def exponential_(self, *a, **k):  # F.gumbel_softmax: gumbels = -empty_like(logits).exponential_().log()
        return self.copy_(torch.exp(-queue["gumbel"].pop(0)))

    losses, norms = [], []
    backward, clip = torch.Tensor.backward, torch.nn.utils.clip_grad_norm_

    def record_backward(self, *a, **k):
        losses.append(float(self.detach()))
        return backward(self, *a, **k)

    def record_clip(*a, **k):
        norms.append(float(clip(*a, **k)))
        return norms[-1]

    piece = {"Gym": "update (Gym, state MLP)", "DMC pixels": "update (DMC pixels, conv, random shift)",
             "Atari": "update (Atari, conv, discrete Gumbel)"}[suite]
    par = Parity("mrq.py", f"{piece}: encoder bursts, value, policy, targets, AdamW moments, LAP priorities, "
                           "reward scales, losses, replay mask")
    stream = make_stream(EPISODES, frame, action_dim, discrete)
    h, q = args.enc_horizon, args.q_horizon
    covered = {"terminal_enc": 0, "terminal_rl": 0, "scales": set()}
    k = 0
    for t in range(steps):
        s = stream[t]
        train, burst, random_next = mrq.schedule(t, STARTS, freq)
        tr = transition(mrq, s)
        their_add(rb, s, max_action)
        added = agent.parts["add"](copy(buf), tr)  # agent.step's write: the buffer its updates read
        buf1 = unstack(added)
        par.check(replay_mask=float(np.sum(np.asarray(buf1.valid) != (rb.mask.numpy() > 0))))
        steps_before, losses[:] = th.training_steps, []
        if train:
            k += 1
            d = draws(buf1, learner.key[0], burst)
            for idx, off in d["enc"]:
                queue["idx"].append(idx)
                if pixels:
                    queue["shift"].append(their_shifts(off, batch, h + 1, slice(0, h), slice(1, h + 1)))
                nd = np.asarray(buf1.not_done)[(idx[:, None] + np.arange(h)) % SLOTS]
                alive = np.cumprod(np.concatenate([np.ones((batch, 1)), nd[:, :-1]], 1), 1)
                covered["terminal_enc"] += int(((1 - nd[:, :h - 1]) * alive[:, :h - 1]).sum())
            idx, off = d["rl"]
            queue["idx"].append(idx)
            if pixels:
                queue["shift"].append(their_shifts(off, batch, q + 1, slice(0, 1), slice(q, q + 1)))
            rl_nd = np.asarray(buf1.not_done)[(idx[:, None] + np.arange(q)) % SLOTS]
            covered["terminal_rl"] += int((rl_nd == 0).sum())
            queue["noise"].append(t64(d["noise"]))
            queue["gumbel"] += [t64(g) for g in d["gumbel"]] if discrete else []
        with contextlib.ExitStack() as stack_:
            for obj, name, value in ((torch, "randint", randint), (torch, "randn_like", randn_like),
                                     (torch.Tensor, "exponential_", exponential_),
                                     (torch.Tensor, "backward", record_backward),
                                     (torch.nn.utils, "clip_grad_norm_", record_clip),
                                     (MRQ, "shift_aug", shift_rounded)):
                stack_.enter_context(patched(obj, name, value))
            th.train()
        assert not any(queue.values()), f"draws left unused at step {t}: {[n for n, x in queue.items() if x]}"
        assert th.training_steps - steps_before == int(train) and th.training_steps == k
        if not train:  # agent.step would write and act (the action is not compared): the write alone
            buf = added
            continue
        learner, buf, _, m = agent.step(learner, buf, tr, obs0, train, burst, random_next)
        sl, sb = unstack(learner), unstack(buf)
        covered["scales"].add(float(sl.reward_scale))
        their_losses = dict(value_loss=losses[-2], policy_loss=losses[-1])
        if burst:
            assert len(losses) == freq + 2
            their_losses["encoder_loss"] = losses[-3]
        uniq, counts = np.unique(idx, return_counts=True)
        once = uniq[counts == 1]
        par.check(
            it=k,
            encoder=tree_rel(sl.encoder, enc_p(th.encoder)),
            encoder_target=tree_rel(sl.encoder_target, enc_p(th.encoder_target)),
            policy=tree_rel(sl.policy, pol_p(th.policy)),
            policy_target=tree_rel(sl.policy_target, pol_p(th.policy_target)),
            value=tree_rel(sl.value, val_p(th.value)),
            value_target=tree_rel(sl.value_target, val_p(th.value_target)),
            encoder_adamw=moments(enc_p, th.encoder, th.encoder_optimizer, sl.encoder_opt[0]),
            policy_adamw=moments(pol_p, th.policy, th.policy_optimizer, sl.policy_opt[0]),
            value_adamw=moments(val_p, th.value, th.value_optimizer, sl.value_opt[1][0]),
            adam_steps=abs(int(sl.encoder_opt[0].count) - torch_step(th.encoder_optimizer))
            + abs(int(sl.value_opt[1][0].count) - torch_step(th.value_optimizer))
            + abs(int(sl.policy_opt[0].count) - torch_step(th.policy_optimizer)),
            reward_scale=rel(sl.reward_scale, th.reward_scale),
            target_reward_scale=rel(sl.target_reward_scale, th.target_reward_scale),
            # stored priorities: float32 in our replay, theirs rounded alike
            priority=rel(np.asarray(sb.priority)[once], rb.priority[once].float().numpy()),
            max_priority=rel(sb.max_priority, rb.max_priority),
            **{n: rel(m[n][0], x) for n, x in their_losses.items()},
            env_terminates=float(bool(sb.terminated_seen) != rb.env_terminates))
    assert k == steps - STARTS and k > 2 * freq  # three target copies and bursts, two periods between
    assert covered["terminal_enc"] > 0 and covered["terminal_rl"] > 0, covered
    assert len(covered["scales"]) >= 3, covered["scales"]  # the reward scale changed at every refresh
    assert rounding[0] < 4e-3, rounding  # their float32 grid_sample: within 4e-3 of the integer crop
    note = (f"{k} training steps, {k // freq + 1} bursts of {freq} encoder updates (target_update_freq {freq}); "
            f"windows with a termination at position 0-3: {covered['terminal_enc']} (encoder), "
            f"{covered['terminal_rl']} terminal flags in RL windows; ours with --original-terminal-reward "
            "--original-terminal-next-state --original-reward-scale; discount 0.75 and dyadic rewards (float32 "
            f"storage exact); value grad norm max {max(norms):.3g} (< 20: the clip, whose 1e-6 differs, stays off)")
    if pixels:
        note += f"; their grid_sample shift rounded to the integer crop (moved <= {rounding[0]:.1e})"
    assert max(norms) < args.value_grad_clip  # torch divides by norm + 1e-6, optax by norm: not compared here
    par.finish(k, note=note)


def test_update_gym_matches_authors():
    """Gym shapes (11-dim states, 3 actions, max_action 2), batch 32: 9 training steps, 3 bursts of 4."""
    run_update_parity("Gym")


def test_update_dmc_pixels_matches_authors():
    """DMC pixels (3 x 84 x 84 frames, history 3), batch 8: the conv encoder and the random shift, 5 training
    steps, 3 bursts of 2."""
    run_update_parity("DMC pixels")


def test_update_atari_matches_authors():
    """Atari (1 x 84 x 84 frames, history 4, 5 discrete actions: halved noise, Gumbel-softmax policy, one-hot
    target action), batch 8: 5 training steps, 3 bursts of 2."""
    run_update_parity("Atari")


# ---------------------------------------------------------------- replay windows and the documented differences

def fill_both(mrq, MRQ, episodes, frame, history, discount=0.99):
    """Our replay (agent.parts["add"]) and the authors' Agent's buffer after the same stream; the mask compared
    after every write."""
    args = mrq.Args(env_id="dmc-pixels:walker-walk" if len(frame) == 3 else "Hopper-v4", buffer_size=256,
                    total_timesteps=256, max_episode_steps=1, **SMALL)
    obs_shape = (frame[0] * history, *frame[1:])
    agent = mrq.make_agent(args, obs_shape, jnp.uint8 if len(frame) == 3 else jnp.float32, 2, False, history)
    buf = stack(mrq.replay_init(agent.slots, frame, jnp.uint8 if len(frame) == 3 else jnp.float32, 2))
    th = their_agent(MRQ, frame, history, 2, False, 1.0, their_hp(8, discount=discount, slots=agent.slots))
    mismatch = 0
    for s in make_stream(episodes, frame, 2, False, seed=3):
        their_add(th.replay_buffer, s, 1.0)
        buf = agent.parts["add"](buf, transition(mrq, s))
        mismatch += int(np.sum(np.asarray(buf.valid[0]) != (th.replay_buffer.mask.numpy() > 0)))
    return unstack(buf), th, mismatch


@pytest.mark.parametrize("frame,history", [((5,), 1), ((3, 6, 6), 3)], ids=["states", "pixels-history3"])
def test_replay_windows_match_authors(frame, history):
    """Their `ReplayBuffer.sample` at our sampled starts against our `replay_sample`, on a stream with
    terminations (episodes of 1 to 7 steps) and truncations: actions, rewards, not-dones exactly; the encoder
    windows equal with `original_terminal_next_state`, and without it different exactly where the header says
    (the final observation of a termination at window position 0-3, theirs slot 0, plus masked positions); the
    RL windows' next state equal wherever it bootstraps; their multi-step return (`multi_step_reward` with their
    gammas) against ours with `terminal_reward=False` to 1e-9, the bootstrap mask exactly."""
    mrq = ours("mrq")
    MRQ = authors()
    episodes = [(7, "term"), (1, "term"), (2, "term"), (6, "trunc"), (3, "term"), (9, "trunc"), (4, "term"),
                (2, "term"), (5, None)]
    buf, th, mask_mismatch = fill_both(mrq, MRQ, episodes, frame, history)
    rb = th.replay_buffer
    h, q, n = 5, 3, 512
    sample = jax.jit(mrq.replay_sample, static_argnums=(2, 3, 4, 6))
    key = jax.random.PRNGKey(7)
    start, obs, act, rew, nd = sample(buf, key, n, h, history, None, False)
    _, obs_orig, *_ = sample(buf, key, n, h, history, None, True)
    start = np.asarray(start)
    rb.batch_size = n
    rb.sample_ind = lambda: start
    s, a, ns, r, d = rb.sample(h, include_intermediate=True)
    theirs = np.concatenate([s[:, :1].numpy(), ns.numpy()], 1)
    obs, obs_orig, nd = np.asarray(obs, np.float32), np.asarray(obs_orig, np.float32), np.asarray(nd)
    # where the windows differ: after a termination at k <= h - 2; unmasked only at its final observation k + 1
    alive = np.cumprod(np.concatenate([np.ones((n, 1)), nd], 1), 1)  # alive[:, j]: no termination before step j
    diff = np.any((theirs != obs).reshape(n, h + 1, -1), -1)
    bug = np.zeros_like(diff)
    for k in range(h - 1):
        bug[:, k + 1] = (nd[:, k] == 0) & (alive[:, k] == 1)
    unmasked = alive[:, :h] > 0  # the target s_j (j >= 1) of step j - 1 counts when no termination before it
    assert not diff[:, 0].any() and bug.sum() > 0
    assert np.array_equal(diff[:, 1:] & unmasked, bug[:, 1:]), "a difference the header does not document"
    b, j = np.nonzero(bug)
    slots = buf.obs.shape[0]
    their_final = rb.obs[(start[b] + j) % slots].double().numpy()  # the final observation their buffer stored
    their_slot0 = np.concatenate([rb.obs[0].double().numpy()] * history, 0)
    par = Parity("mrq.py", f"replay windows ({'pixels, history 3' if history > 1 else 'states'}): mask, encoder "
                           "windows, RL windows, multi-step return and bootstrap mask")
    par.check(replay_mask=mask_mismatch,
              actions=rel(np.asarray(act), a.numpy()), rewards=rel(np.asarray(rew), r[..., 0].numpy()),
              not_done=rel(nd, d[..., 0].numpy()),
              encoder_windows_original_next_state=rel(obs_orig, theirs),
              encoder_windows_elsewhere=rel(np.where(diff[..., None], 0, obs.reshape(n, h + 1, -1)),
                                            np.where(diff[..., None], 0, theirs.reshape(n, h + 1, -1))),
              # the documented difference: theirs reads slot 0, ours the final observation
              bug_theirs_slot0=rel(theirs[b, j], np.broadcast_to(their_slot0, theirs[b, j].shape)),
              bug_ours_final_obs=rel(obs[b, j][:, -frame[0]:], their_final))
    # RL windows (horizon 3): their state and next state, our positions 0 and 3
    rs, ra, rns, rr, rd = rb.sample(q, include_intermediate=False)
    rstart, robs, ract, rrew, rnd = sample(buf, key, n, q, history, None, False)
    assert np.array_equal(np.asarray(rstart), start)
    robs = np.asarray(robs, np.float32)
    ret, boot = mrq.multi_step_return(jnp.asarray(rrew, jnp.float64), jnp.asarray(rnd, jnp.float64), 0.99, False)
    their_ret, their_boot = MRQ.multi_step_reward(rr.double(), rd.double(), th.gammas)
    boots = np.asarray(boot) > 0
    par.check(rl_state=rel(robs[:, 0], rs.numpy()), rl_action=rel(np.asarray(ract)[:, 0], ra.numpy()),
              rl_next_state_bootstrapped=rel(robs[boots, q], rns.numpy()[boots]),
              multi_step_return=rel(ret, their_ret[:, 0].numpy()), bootstrap_mask=rel(boot, their_boot[:, 0].numpy()),
              gamma_q=rel(0.99 ** q, th.discount))
    assert (~boots).sum() > 0
    par.finish(1, note=f"{n} windows at our starts, {int(bug.sum())} with a termination at position 0-3: there theirs "
                       "reads slot 0 (asserted), ours the final observation; ours with --original-terminal-next-state "
                       f"equal everywhere; {int((~boots).sum())} RL windows without bootstrap (next state unused)")


# ---------------------------------------------------------------- the schedule over a whole short run

def their_schedule(MRQ, stream, starts, freq):
    """Their Agent.train with its training stubbed (the buffer, counters, target copies and reward-scale refresh
    are theirs): per env step (train, burst, random next action, reward_scale, target_reward_scale, size)."""
    torch.set_default_dtype(torch.float32)  # their select_action feeds float32 states to the networks
    th = their_agent(MRQ, (5,), 1, 2, False, 1.0, their_hp(8, freq=freq, starts=starts, slots=2 * len(stream) + 1))
    calls, b = [], 8
    th.train_encoder = lambda *a: calls.append("encoder")
    th.train_rl = lambda *a: (calls.append("rl"), (torch.zeros(b, 2), torch.zeros(b, 1)))[1]

    def sample(horizon, include_intermediate=False):
        th.replay_buffer.sampled_ind = np.zeros(b, np.int64)
        s = torch.zeros(b, horizon, 5) if include_intermediate else torch.zeros(b, 5)
        a = torch.zeros(b, horizon, 2) if include_intermediate else torch.zeros(b, 2)
        return s, a, s, torch.zeros(b, horizon, 1), torch.ones(b, horizon, 1)

    th.replay_buffer.sample = sample
    out = []
    for s in stream:
        their_add(th.replay_buffer, s, 1.0)
        calls.clear()
        steps = th.training_steps
        th.train()
        enc = calls.count("encoder")
        assert enc in (0, freq) and calls.count("rl") == th.training_steps - steps
        out.append((th.training_steps > steps, enc == freq, th.select_action(s["next_frame"]) is None,
                    th.reward_scale, th.target_reward_scale, th.replay_buffer.size))
    return out


def test_schedule_matches_authors_loop():
    """Target copies, encoder bursts, the reward-scale refresh and the random-action phase over whole short runs:
    their `train` counters (training stubbed) against our `schedule` and our replay's reward scale, value by value.
    Their learning_starts counts buffer slots (an episode end adds its final-observation slot), ours transitions
    (header): with episode ends before training, theirs starts E steps early, E their final-observation slots
    then, and runs our schedule shifted by E (asserted exactly); without, identical. At each refresh their scale
    is ours with `original_reward_scale`; ours by default differs by the count only (both float32 means)."""
    mrq = ours("mrq")
    MRQ = authors()
    starts, freq, rng = 50, 16, np.random.default_rng(5)
    mixed = [(int(n), "term" if rng.uniform() < 0.5 else "trunc") for n in rng.integers(1, 20, 40)]
    runs = {"no episode end before training": [(55, "term")] + mixed,
            "episode ends before training": [(3, "term"), (5, "trunc"), (1, "term"), (7, "term")] + mixed}
    par = Parity("mrq.py", "schedule: training start, target copies + encoder bursts, reward-scale refresh, "
                           "random actions (their train loop)")
    agent_args = mrq.Args(buffer_size=1024, total_timesteps=512, **SMALL)
    add = mrq.make_agent(agent_args, (5,), jnp.float32, 2, False, 1).parts["add"]
    scale_default, scale_original = jax.jit(mrq.replay_mean_abs_reward), jax.jit(mrq.replay_original_reward_scale)
    default = Parity("mrq.py", "reward scale by default (documented difference): ours x transitions = theirs x "
                               "slots", tol=2.0 ** -22)
    refreshes, counted_apart, shifts = {}, 0, {}
    for name, episodes in runs.items():
        stream = make_stream(episodes, (5,), 2, False, seed=1)[:300]
        assert len(stream) == 300
        theirs = their_schedule(MRQ, stream, starts, freq)
        ends = np.cumsum([s["terminated"] or s["truncated"] for s in stream])  # episode ends up to step t
        slots_before = lambda t: t + 1 + (int(ends[t - 1]) if t else 0)  # noqa: E731  their size after step t
        t0 = next(t for t, x in enumerate(theirs) if x[0])
        assert t0 == next(t for t in range(len(stream)) if slots_before(t) > starts)  # their first training step
        shift = starts - t0  # then their k-th training step is at our step + shift
        assert (shift > 0) == (name == "episode ends before training")
        shifts[name] = shift
        buf = stack(mrq.replay_init(agent_args.buffer_size, (5,), jnp.float32, 2))
        n_bursts = 0
        for t, (train, burst, random, scale, target_scale, size) in enumerate(theirs):
            buf = add(buf, transition(mrq, stream[t]))
            e_t = int(ends[t - 1]) if t else 0  # theirs counts the final slots of episodes ended before step t
            assert size == t + 1 + e_t
            ours_train, ours_burst, _ = mrq.schedule(t + shift, starts, freq)
            par.check(it=t + 1, train=float(train != ours_train), burst=float(burst != ours_burst),
                      random_action=float(random != mrq.schedule(t + e_t, starts, freq)[2]))
            if burst:
                n_bursts += 1
                one = unstack(buf)
                previous = refreshes.get(name, (1.0,))[-1]
                refreshes[name] = refreshes.get(name, (1.0,)) + (scale,)
                par.check(it=t + 1, reward_scale_original=rel(scale_original(one), scale),
                          target_reward_scale=rel(target_scale, previous))
                # by default the same sum over our transitions only: ours x transitions = theirs x slots
                default.check(it=t + 1, reward_scale=rel(float(scale_default(one)) * (t + 1), scale * size))
                counted_apart += size != t + 1
            elif t > 0:  # no refresh between bursts
                par.check(scale_kept=float(scale != theirs[t - 1][3] or target_scale != theirs[t - 1][4]))
        assert n_bursts >= 10
    assert counted_apart > 0
    shift = shifts["episode ends before training"]
    par.finish(300, note=f"2 runs of 300 steps, learning_starts {starts}, target_update_freq {freq}: with episode "
                         f"ends before training theirs starts {shift} steps early (when transitions + "
                         f"final-observation slots exceed {starts}, asserted), then runs our schedule {shift} steps "
                         "ahead; without, identical; the refresh value against ours with --original-reward-scale")
    default.finish(300, note=f"the documented difference at {counted_apart} refreshes: their mean counts "
                             "final-observation slots; tol 2^-22: two float32 means (2^-24 each) and the products")
