"""Parity of algos/ddqn.py, ddqn_lap.py, ddqn_pal.py and ddqn_per.py with sfujim/LAP-PAL discrete/ (DDQN.py,
LAP_DDQN.py, PAL_DDQN.py, PER_DDQN.py, utils.py and main.py's two dicts), float64.

Updates: the same initial weights (the authors' torch init, converted), the same replay contents and the same
sampled indices. Our side draws the indices inside `agent.update` from its own key schedule; the test replays
that schedule (our uniform sampler's candidates, or our `sample_prioritized` on our priorities) and hands the
indices to the authors' real buffers (utils.PrioritizedStandardBuffer / PrioritizedAtariBuffer, filled through
their `add`) by patching `np.random.randint` (uniform) or the buffer's `tree.sample` (prioritised). So the
authors' code builds the batch (their frame stacks), the PER weights and beta, and updates the priorities.
Our file's suite comes from --env-id (dqn-atari: the Atari dict, CartPole: the non-Atari dict); the authors'
agents get the matching dict of main.py, read with `ast` at run time.

Their buffers hand out float32 tensors (torch.FloatTensor): in the test their module's `torch` is a stand-in
whose FloatTensor is float64, and their networks cast their input to float64 (pixels are integers, exact).
Compiling an update costs seconds on XLA:CPU (the conv net's most), so each file runs the non-Atari dict's
update and ddqn.py alone the Atari dict's (network, RMSprop, frame stacks), with the target held; the
siblings' network, optimiser, stacking and schedules are asserted to be ddqn.py's text, the Atari loss
constants (LAP/PAL alpha 0.6, kappa 0.01; PER's beta step) are checked in the presets and beta rows, and the
hard copies' timing has its own row.
"""

import ast
import difflib
import functools
import inspect
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.parity import harness
from tests.parity.harness import Parity, adam_moment, conv, linear, load_authors, ours, rel, tree_rel

REPO = "LAP-PAL"
CLASSES = {"ddqn": "DDQN", "ddqn_lap": "LAP_DDQN", "ddqn_pal": "PAL_DDQN", "ddqn_per": "PER_DDQN"}
PRIORITISED = ("ddqn_lap", "ddqn_per")  # main.py: prioritized = PER_DDQN or LAP_DDQN
ENV = {"atari": "dqn-atari:Pong", "regular": "CartPole-v1"}
DICT = {"atari": "atari_parameters", "regular": "regular_parameters"}
OBS, ACTIONS, CAP = 8, 4, 96
NO_COPY = 10**9  # Atari update rows hold the target (one compiled variant); the copy schedule has its own row
ATARI_BATCH = 8  # the dict's 32 costs 4x the conv time; the batch size takes no other code path
RUN_UPDATES = {"atari": 12_495_000, "regular": 4_999_000}  # updates of a default run (50M Atari, 5M MinAtar)
EPISODES = {  # (length, ending): terminations, bootstrapped time limits (non-Atari), an unfinished last one
    "atari": [(9, "term"), (7, "term"), (11, "term"), (8, None)],
    "regular": [(12, "term"), (9, "trunc"), (14, "term"), (10, "trunc"), (11, None)]}


def host(tree):
    """Seed 0 of a seed-stacked pytree, as NumPy (no eager JAX op to compile)."""
    return jax.tree.map(lambda x: np.asarray(x)[0], tree)


def seeded(tree):
    """A one-seed pytree with a leading seed axis (built in NumPy: no eager JAX op to compile)."""
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)[None]), tree)


def authors():
    """The authors' discrete/ modules (old gym stubbed: utils imports it but the buffers never use it)."""
    mods = load_authors(REPO, "utils", "DDQN", "LAP_DDQN", "PAL_DDQN", "PER_DDQN", subdir="discrete",
                        stubs={"gym": harness.gym_stub()})
    return dict(zip(("utils", "DDQN", "LAP_DDQN", "PAL_DDQN", "PER_DDQN"), mods))


@functools.lru_cache(maxsize=None)
def main_dicts() -> dict:
    """atari_preprocessing, atari_parameters, regular_parameters: the literals of discrete/main.py."""
    tree = ast.parse((harness.authors_dir() / REPO / "discrete" / "main.py").read_text())
    return {n.targets[0].id: ast.literal_eval(n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
            and n.targets[0].id in ("atari_preprocessing", "atari_parameters", "regular_parameters")}


def float64_buffers(U):
    """Their buffers' torch.FloatTensor / LongTensor / ByteTensor as float64 / int64 / uint8 tensors."""
    U.torch = types.SimpleNamespace(FloatTensor=lambda a: torch.tensor(np.asarray(a), dtype=torch.float64),
                                    LongTensor=lambda a: torch.as_tensor(np.asarray(a)).long(),
                                    ByteTensor=lambda a: torch.as_tensor(np.asarray(a)))


def their_agent(A, name, suite, **over):
    """The authors' agent with main.py's kwargs for the suite's dict, networks in float64."""
    P = main_dicts()[DICT[suite]]
    atari = suite == "atari"
    kw = dict(is_atari=atari, num_actions=ACTIONS, state_dim=(4, 84, 84) if atari else OBS, device="cpu",
              discount=P["discount"], optimizer=P["optimizer"], optimizer_parameters=P["optimizer_parameters"],
              polyak_target_update=P["polyak_target_update"], target_update_frequency=P["target_update_freq"],
              tau=P["tau"], initial_eps=P["initial_eps"], end_eps=P["end_eps"], eps_decay_period=P["eps_decay_period"],
              eval_eps=P["eval_eps"])
    if name in ("ddqn_lap", "ddqn_pal"):
        kw.update(alpha=P["alpha"], min_priority=P["min_priority"])
    kw.update(over)
    torch.manual_seed(0)
    th = getattr(A[CLASSES[name]], CLASSES[name])(**kw)
    for m in (th.Q, th.Q_target):
        m.double()
        m.register_forward_pre_hook(lambda mod, x: tuple(t.double() for t in x))
    return th


def q_params(Q, atari, g=harness.param):
    """Conv_Q / FC_Q -> our QNetwork. Atari: our stacks are oldest-first, theirs newest-first (c1's input
    channels reversed), and we flatten (h, w, c) where torch flattens (c, h, w) (l1's rows permuted)."""
    if not atari:
        return {"params": {f"Linear_{i}": linear(getattr(Q, n), g) for i, n in enumerate(("l1", "l2", "l3"))}}
    c1, l1 = conv(Q.c1, g), linear(Q.l1, g)
    c1["kernel"] = jnp.asarray(np.asarray(c1["kernel"])[:, :, ::-1, :])
    l1["kernel"] = jnp.asarray(np.asarray(l1["kernel"]).reshape(64, 7, 7, -1).transpose(1, 2, 0, 3).reshape(3136, -1))
    return {"params": {"Conv_0": {"Conv_0": c1}, "Conv_1": {"Conv_0": conv(Q.c2, g)},
                       "Conv_2": {"Conv_0": conv(Q.c3, g)}, "Linear_0": l1, "Linear_1": linear(Q.l2, g)}}


@functools.lru_cache(maxsize=None)
def our_agent(name, suite):
    """Our file's args (the suite's preset) and agent; cached, so tests reuse the compiled update."""
    mod = ours(name)
    over = dict(target_update_freq=NO_COPY, batch_size=ATARI_BATCH) if suite == "atari" else {}
    args = mod.resolve_presets(mod.Args(env_id=ENV[suite], total_timesteps=10_000, buffer_size=CAP, **over))
    shape, dtype, history = ((4, 84, 84), np.uint8, 4) if suite == "atari" else ((OBS,), np.float32, 1)
    return args, mod.make_agent(args, shape, dtype, ACTIONS, history)


def setup(name, suite, start=0, their_over=None):
    """The authors' modules and agent, ours (module, args, agent) and our learner on their initial weights, both
    at `start` training iterations."""
    A = authors()
    float64_buffers(A["utils"])
    mod, atari = ours(name), suite == "atari"
    args, agent = our_agent(name, suite)
    th = their_agent(A, name, suite, **dict(target_update_frequency=NO_COPY) if atari else {},
                     **(their_over or {}))
    q = q_params(th.Q, atari)
    fields = dict(q=q, q_target=q, opt=mod.make_optimizer(args).init(q), key=jax.random.PRNGKey(0),
                  iterations=np.int32(start))
    if "priority" in mod.Learner._fields:
        fields.update(priority=np.zeros(CAP), max_priority=np.float64(1.0))
    th.iterations = start
    return A, mod, args, agent, th, seeded(mod.Learner(**fields))


def fill(name, suite, A, args, learner, episodes=None, their_prioritised=None):
    """The same steps through our agent.step (our add: slots, episode-end frames, max priority; ddqn.py's for
    PAL, whose add is ddqn.py's text) and the authors' buffer.add ("capped": an Atari step ended by
    the cap, stored by neither). Returns our learner and buffer, the slot count, their buffer, our slot of each
    of their indices and the episodes' frames."""
    mod, U, atari = ours(name), A["utils"], suite == "atari"
    base = mod if name in PRIORITISED else ours("ddqn")
    agent = our_agent(base.__name__.split(".")[-1], suite)[1]
    learner_type, learner = type(learner), base.Learner(*learner)
    rng = np.random.default_rng(1)
    fshape, dtype = ((1, 84, 84), np.uint8) if atari else ((OBS,), np.float32)
    new = (lambda: rng.integers(0, 256, fshape, np.uint8)) if atari else \
        (lambda: rng.normal(size=fshape).astype(np.float32))  # float32 values: our network reads float32
    buffer = seeded(base.Buffer(np.zeros((CAP, *fshape), dtype), np.zeros(CAP, np.int32), np.zeros(CAP),
                                np.zeros(CAP), np.zeros(CAP, np.int32), np.zeros(CAP, bool)))
    prioritised = name in PRIORITISED if their_prioritised is None else their_prioritised
    theirs = U.ReplayBuffer((4, 84, 84) if atari else OBS, prioritised, atari,
                            main_dicts()["atari_preprocessing"], args.batch_size, CAP, "cpu")
    count, slot_of, all_frames = 0, [], []
    for length, ending in episodes or EPISODES[suite]:
        frames = [new() for _ in range(length + 1)]
        all_frames.append(frames)
        for t in range(length):
            last = t == length - 1
            term = float(last and ending == "term")
            store = not (last and ending == "capped")
            end = store and last and ending is not None
            a, r = int(rng.integers(ACTIONS)), float(rng.integers(-1, 2) if atari else rng.normal())
            tr = base.Transition(frames[t][None], np.array([a], np.int32), np.array([r]), np.array([term]),
                                frames[t + 1][None], np.array([t], np.int32), np.array([store]), np.array([end]))
            obs_next = np.zeros((1, 4, 84, 84), np.uint8) if atari else frames[t + 1][None]
            learner, buffer, _, _ = agent.step(learner, buffer, tr, np.array([count]), obs_next, False, False, True)
            if atari:  # their Atari buffer: frame [0] of the stack is the newest; a capped step is not added
                theirs.add(frames[t], a, None, r, term, term if store else 1.0, t == 0)
            else:
                theirs.add(frames[t], a, frames[t + 1], r, term, bool(term or last and ending == "trunc"), t == 0)
            if store:
                slot_of.append(count)
            count += 1 + end
    return learner_type(*learner), mod.Buffer(*buffer), count, theirs, np.array(slot_of), all_frames


def our_uniform_idx(mod, learner, buffer, count, batch, history):
    """Our uniform sampler's draw (4 candidates per row, the first valid), replayed from the learner's key."""
    _, k_idx = jax.random.split(learner.key[0])
    start, length = mod.sample_range(jnp.asarray(count), CAP, history)
    cand = np.asarray((start + jax.random.randint(k_idx, (4, batch), 0, length)) % CAP)
    ok = np.asarray(buffer.valid[0])[cand]
    assert ok.any(0).all(), "a row with 4 invalid candidates (our weight-0 row): change the data's seed"
    return cand[ok.argmax(0), np.arange(batch)]


def authors_beta(step, n, beta=0.4, chunk=1 << 20):
    """The authors' beta at sample calls 0..n-1: a float64 running sum of `step` clamped at 1, added one call at
    a time (np.add.accumulate adds sequentially, as their `min(beta + step, 1)` per call)."""
    out = []
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        acc = np.add.accumulate(np.concatenate([[beta], np.full(m, step)]))
        out.append(acc[:m])
        beta = acc[m]
    return np.minimum(np.concatenate(out), 1.0)


def their_beta_step(U, atari):
    """The beta step hard-coded in the authors' buffer of the suite, read off one sample call from beta = 0."""
    b = U.ReplayBuffer((4, 84, 84) if atari else OBS, True, atari, main_dicts()["atari_preprocessing"], 2, 16, "cpu")
    for i in range(3):
        b.add(np.zeros((1, 84, 84) if atari else OBS), 0, np.zeros(OBS), 0.0, 0.0, 0.0, i == 0)
    b.beta = 0.0
    b.sample()
    return b.beta


def late_max_priority(buf, n):
    """ALGORITHMS.md 4.2: their Atari add writes the max priority one slot late (slot 0 none, the unwritten
    slot n one); ours gives it to the new transition."""
    leaves = buf.tree.nodes[-1]
    return leaves[0] == 0.0 and leaves[n] == 1.0 and bool(np.all(leaves[1:n] == 1.0))


def run_update(name, suite, iters, start=0, their_over=None, piece=""):
    """`iters` updates of ours and theirs side by side; returns the Parity recorder (unfinished)."""
    A, mod, args, agent, th, learner = setup(name, suite, start, their_over)
    atari, prioritised = suite == "atari", name in PRIORITISED
    learner, buffer, count, buf, slot_of, _ = fill(name, suite, A, args, learner)
    n = len(slot_of)
    p = Parity(f"{name}.py", f"update ({piece}): Q, target, optimizer moments, loss" +
               (", priorities" if prioritised else "") + (", beta" if name == "ddqn_per" else ""))
    if prioritised:
        ours_p = np.asarray(learner.priority[0])
        assert np.all(ours_p[slot_of] == 1.0) and np.all(np.delete(ours_p, slot_of) == 0.0)  # new: the max, 1
        np.testing.assert_array_equal(buf.tree.nodes[-1][:n], ours_p[slot_of])
        if name == "ddqn_per":
            buf.beta = float(authors_beta(args.beta_increment, start + 1)[start])
    steps = range(args.learning_starts, args.learning_starts + args.train_freq * (iters + 1))
    flags = [f for f in (mod.schedule(t, args.learning_starts, args.train_freq, args.target_update_freq)
                         for t in steps) if f[0]][:iters]
    moments = ("exp_avg", "exp_avg_sq") if args.optimizer == "adam" else ("grad_avg", "square_avg")
    sample = jax.jit(mod.sample_prioritized, static_argnums=(3, 4, 5)) if prioritised else None
    losses, td = [], []
    for method in ("huber", "PAL"):  # LAP's and PAL's loss of |delta|: record |delta|
        if hasattr(th, method):
            setattr(th, method, lambda x, f=getattr(th, method): (td.append(x.detach().numpy().ravel()), f(x))[1])
    for it, (_, update_target, _) in enumerate(flags, 1):
        if prioritised:
            _, k_idx = jax.random.split(learner.key[0])
            idx = np.asarray(sample(k_idx, learner.priority[0], jnp.asarray(count), CAP, agent.history,
                                    args.batch_size))
        else:
            idx = our_uniform_idx(mod, learner, buffer, count, args.batch_size, agent.history)
        j = np.searchsorted(slot_of, idx)
        assert np.all(slot_of[np.minimum(j, n - 1)] == idx), "our draw landed on a slot that is no transition"
        beta_before = getattr(buf, "beta", None)
        orig_randint, orig_backward = np.random.randint, torch.Tensor.backward
        if prioritised:
            buf.tree.sample = lambda batch_size, j=j: j.copy()
        else:
            np.random.randint = lambda *a, **k: j.copy()

        def backward(t, *a, **k):  # records their loss
            losses.append(float(t.detach()))
            return orig_backward(t, *a, **k)
        torch.Tensor.backward = backward
        try:
            th.train(buf)
        finally:
            np.random.randint, torch.Tensor.backward = orig_randint, orig_backward
        learner, m = agent.update(learner, buffer, jnp.asarray([count]), update_target)
        s = host(learner)
        their = lambda net, g=harness.param: q_params(net, atari, g)  # noqa: E731
        diffs = dict(q=tree_rel(s.q, their(th.Q)), q_target=tree_rel(s.q_target, their(th.Q_target)),
                     opt_moments=max(tree_rel(s.opt[0].mu, their(th.Q, adam_moment(th.Q_optimizer, moments[0]))),
                                     tree_rel(s.opt[0].nu, their(th.Q, adam_moment(th.Q_optimizer, moments[1])))),
                     loss=rel(m["q_loss"][0], losses[-1]), iterations=abs(int(s.iterations) - th.iterations))
        if args.optimizer == "adam":
            diffs["adam_steps"] = abs(int(s.opt[0].count) - it)
        if prioritised:
            diffs["priorities"] = max(rel(s.priority[slot_of], buf.tree.nodes[-1][:n]),
                                      rel(np.delete(s.priority, slot_of), np.zeros(CAP - n)))  # non-transitions: 0
            diffs["max_priority"] = rel(s.max_priority, buf.max_priority)
        if name == "ddqn_per":
            diffs["beta"] = rel(m["beta"][0], beta_before)
        p.check(it=it, **diffs)
    assert len(losses) == iters
    if hasattr(th, "min_priority"):  # both branches of the loss were taken
        frac = float(np.mean(np.concatenate(td) >= th.min_priority))
        assert 0.05 < frac < 0.95, f"|delta| >= kappa in {frac:.0%} of the rows: both branches are not covered"
    return p


@pytest.mark.authors(REPO)
@pytest.mark.parametrize("name", list(CLASSES))
def test_update_matches_authors_regular(name):
    """Non-Atari dict (FC_Q 256-256, Adam 3e-4, batch 64, Polyak 0.005; LAP/PAL alpha 0.4, kappa 1; PER beta step
    2e-7, from 3 calls before beta reaches 1): Q, target, Adam moments and steps, loss, priorities, max priority
    and beta after each of 6 updates, on a replay with terminations and bootstrapped time limits. LAP's and PAL's
    |delta| fall on both sides of kappa, so both branches of their losses are compared; the Atari dict's
    alpha 0.6 and kappa 0.01 are constants of the same code (the presets rows)."""
    start = 2_999_997 if name == "ddqn_per" else 0
    p = run_update(name, "regular", 6, start=start, piece="non-Atari dict: MLP, Adam, Polyak")
    p.finish(6, note="their PrioritizedStandardBuffer filled by their add" +
             (f"; beta from call {start:,}, 1 from update 4 on both sides" if start else ""))


@pytest.mark.authors(REPO)
def test_update_matches_authors_atari():
    """Atari dict (Conv_Q on raw pixels, centered RMSprop 6.25e-5 alpha 0.95 eps 1e-5, batch 8): Q, target, RMSprop
    moments and loss after each of 4 updates; their PrioritizedAtariBuffer rebuilds the frame stacks (episode
    starts and terminations). The target is held on both sides (the conv update compiles slowly; a second,
    copying variant would double it): the copy is the Polyak path with tau 1 (the non-Atari rows), and when
    it happens is test_hard_copies_follow_the_authors' row."""
    p = run_update("ddqn", "atari", 4, piece="Atari dict: conv net, centered RMSprop, target held")
    p.finish(4, note="their PrioritizedAtariBuffer filled by their add; batch 8 (the dict's 32: no other code path)")


@pytest.mark.authors(REPO)
def test_hard_copies_follow_the_authors():
    """The Atari dict's hard copies over 5 periods of 8,000 iterations: the iterations after which our `schedule`
    (env steps from start_timesteps, every train_freq-th) moves the target against those after which the
    authors' copy_target_update loads Q into Q_target (their iteration counter, networks stubbed)."""
    mod = ours("ddqn")
    args = mod.resolve_presets(mod.Args(env_id=ENV["atari"]))
    n = 5 * args.target_update_freq + 7
    ours_k, k = [], 0
    for t in range(args.learning_starts, args.learning_starts + args.train_freq * n):
        train, update_target, _ = mod.schedule(t, args.learning_starts, args.train_freq, args.target_update_freq)
        k += train
        if update_target:
            ours_k.append(k)
    th = their_agent(authors(), "ddqn", "atari")
    theirs_k = []
    th.Q = types.SimpleNamespace(state_dict=lambda: None)
    th.Q_target = types.SimpleNamespace(load_state_dict=lambda sd: theirs_k.append(th.iterations))
    for it in range(1, k + 1):  # their train: iterations += 1, then maybe_update_target
        th.iterations = it
        th.maybe_update_target()
    p = Parity("ddqn.py", "hard target copies (Atari dict): iterations of the copies")
    p.check(it=k, copies=float(ours_k != theirs_k), count=abs(len(ours_k) - 5))
    p.finish(k, note=f"copies after iterations {ours_k}")


@pytest.mark.parametrize("name", ["ddqn_lap", "ddqn_pal", "ddqn_per"])
def test_siblings_share_ddqn_atari_code(name):
    """What the Atari dict changes in an update (network, optimiser, stacks, schedules) is ddqn.py's text in each
    sibling, so ddqn.py's Atari row covers it."""
    ddqn, mod = ours("ddqn"), ours(name)
    for f in ("Linear", "Conv", "QNetwork", "arch_of", "make_optimizer", "double_q_target", "epsilon",
              "sample_range", "stack", "schedule", "resolve_presets", "suite_of", "_torch_uniform"):
        assert inspect.getsource(getattr(mod, f)) == inspect.getsource(getattr(ddqn, f)), f"{name}.{f}"
    if name == "ddqn_pal":  # its make_agent (add, sampler, update) is ddqn.py's but for the loss: fill uses ddqn's add
        diff = [line for line in difflib.unified_diff(*(inspect.getsource(m.make_agent).splitlines()
                                                       for m in (ddqn, mod)), lineterm="", n=0)
                if line[:1] in "+-" and line[:3] not in ("---", "+++")]
        assert diff and all("return" in line or "loss" in line for line in diff), diff


@pytest.mark.authors(REPO)
def test_authors_atari_buffer_after_a_capped_step():
    """Their Atari buffer drops a capped step (as ours) but then writes the next episode's first frame into the
    slot after the transition before it, so that transition's s' has the wrong newest frame (not in
    ALGORITHMS.md; our ring keeps the capped step's frame in a slot that is no transition). Asserted exactly:
    their s' newest frame is the next episode's first, ours the true one; the rest of s' and s agree. Also
    their late max priority (ALGORITHMS.md 4.2)."""
    A, mod, args, agent, th, learner = setup("ddqn", "atari")
    learner, buffer, count, buf, slot_of, frames = fill("ddqn", "atari", A, args, learner,
                                                        episodes=[(5, "term"), (4, "capped"), (6, None)],
                                                        their_prioritised=True)
    assert late_max_priority(buf, len(slot_of))  # ours: the LAP / PER rows assert the new transition's
    j = 5 + 2  # the last stored transition of the capped episode
    buf.tree.sample = lambda batch_size: np.full(batch_size, j)
    s_theirs, _, s2_theirs = (x[0].numpy() for x in buf.sample()[:3])
    b = jax.tree.map(jnp.asarray, host(buffer))
    slot = jnp.array([slot_of[j]])
    s_ours = np.asarray(mod.stack(b, slot, b.pos[slot], 4)[0])[::-1]  # newest first, as theirs
    s2_ours = np.asarray(mod.stack(b, slot + 1, b.pos[slot] + 1, 4)[0])[::-1]
    np.testing.assert_array_equal(s_ours, s_theirs)
    np.testing.assert_array_equal(s2_ours[0], frames[1][3][0])  # ours: the capped step's s, the true s'
    np.testing.assert_array_equal(s2_theirs[0], frames[2][0][0])  # theirs: the next episode's first frame
    np.testing.assert_array_equal(s2_ours[1:], s2_theirs[1:])
    assert not np.array_equal(frames[1][3][0], frames[2][0][0])


@pytest.mark.authors(REPO)
def test_a_changed_lap_exponent_is_detected():
    """The harness is sharp: the authors' LAP alpha 0.4 * 1.0005 moves the priorities far above the tolerance
    (the weights stay equal: with kappa 1 the loss does not use alpha)."""
    p = run_update("ddqn_lap", "regular", 2, their_over=dict(alpha=0.4 * 1.0005))
    assert p.worst["priorities"] > 1e-6 and p.worst["q"] < 1e-9


@pytest.mark.authors(REPO)
@pytest.mark.parametrize("suite", ["atari", "regular"])
def test_per_beta_over_a_whole_run(suite):
    """beta of every sample call of a run, to past the call where it reaches 1: ours (`per_beta` on the integer
    count, the step of our suite's preset) against the authors' float64 running sum with the step read off
    their buffer of the suite (one sample call from beta = 0). Their rounding makes the Atari sum reach 1 one
    call later than the exact 12.5M; the value there differs by 3e-10."""
    mod = ours("ddqn_per")
    args = mod.resolve_presets(mod.Args(env_id=ENV[suite] if suite == "atari" else "minatar:breakout"))
    U = authors()["utils"]
    float64_buffers(U)
    step = their_beta_step(U, suite == "atari")
    n = max(RUN_UPDATES[suite], int(round(0.6 / step)) + 100_000)
    theirs = authors_beta(step, n)
    p = Parity("ddqn_per.py", f"beta per sample call ({'Atari' if suite == 'atari' else 'non-Atari'} dict), "
                              "whole run")
    worst, chunk, ours_one = 0.0, 1 << 20, None
    for lo in range(0, n, chunk):
        o = np.asarray(mod.per_beta(jnp.arange(lo, lo + chunk), args.beta, args.beta_increment))[:n - lo]
        worst = max(worst, rel(o, theirs[lo:lo + chunk]))
        if ours_one is None and o[-1] >= 1.0:
            ours_one = lo + int(np.argmax(o >= 1.0))
        if lo == 0:
            ours_first = o
    their_one = int(np.argmax(theirs >= 1.0))
    p.check(it=n, beta=worst, step=rel(args.beta_increment, step), initial=rel(ours_first[0], theirs[0]),
            reaches_1=abs(ours_one - their_one) > 1)
    p.finish(n, note=f"beta reaches 1 at call {ours_one:,} (ours) / {their_one:,} (theirs)")
    assert their_one > 0 and theirs[-1] == 1.0


class _Probe:
    """Stands for np.random.uniform(0, 1) in their select_action: records the epsilon it is compared with."""

    def __init__(self, seen):
        self.seen = seen

    def __gt__(self, eps):
        self.seen.append(eps)
        raise StopIteration


def their_eps(th, ks, eval_=False):
    seen, orig = [], np.random.uniform
    np.random.uniform = lambda *a, **k: _Probe(seen)
    try:
        for k in ks:
            th.iterations = int(k)
            try:
                th.select_action(None, eval=eval_)
            except StopIteration:
                pass
    finally:
        np.random.uniform = orig
    assert len(seen) == len(ks)
    return np.array(seen)


@pytest.mark.authors(REPO)
@pytest.mark.parametrize("suite", ["atari", "regular"])
def test_epsilon_schedules_match_authors(suite):
    """Epsilon of every training iteration of the decay (and 1k past it), then every 997th to the end of a default
    run: our four files' `epsilon` with their suite's preset against the value the authors' select_action
    compares with (each class with its dict's kwargs); the evaluation epsilon likewise."""
    A = authors()
    P = main_dicts()[DICT[suite]]
    dense = np.arange(int(P["eps_decay_period"]) + 1_000)
    sparse = np.concatenate([np.arange(dense[-1], RUN_UPDATES[suite], 997), [RUN_UPDATES[suite] - 1]])
    p = Parity("ddqn.py", f"epsilon schedule, 4 files ({'Atari' if suite == 'atari' else 'non-Atari'} dict)")
    for name in CLASSES:
        th = their_agent(A, name, suite)
        ks = np.concatenate([dense if name == "ddqn" else dense[::101], sparse])
        mod = ours(name)
        args = mod.resolve_presets(mod.Args(env_id=ENV[suite]))
        o = np.asarray(mod.epsilon(jnp.asarray(ks), args.initial_eps, args.end_eps, args.eps_decay_period))
        p.check(it=int(ks[-1]), **{f"{name}_eps": rel(o, their_eps(th, ks)),
                                   f"{name}_eval_eps": abs(args.eval_eps - their_eps(th, [0], eval_=True)[0])})
    p.finish(RUN_UPDATES[suite], note=f"every iteration to {dense[-1]:,} (ddqn), then every 997th")


@pytest.mark.authors(REPO)
@pytest.mark.parametrize("suite", ["atari", "regular"])
def test_presets_are_the_authors_dicts(suite):
    """Every field of main.py's dict that our files take, against our four files' resolved preset; the optimiser's
    eps, alpha and centering as their torch optimizer holds them; PER's alpha, beta and beta step from their code."""
    A = authors()
    U = A["utils"]
    float64_buffers(U)
    P = main_dicts()[DICT[suite]]
    th = their_agent(A, "ddqn", suite)
    group = th.Q_optimizer.param_groups[0]
    p = Parity("ddqn.py", f"presets, 4 files ({'Atari' if suite == 'atari' else 'non-Atari'} dict)")
    for name in CLASSES:
        mod = ours(name)
        a = mod.resolve_presets(mod.Args(env_id=ENV[suite]))
        pairs = dict(learning_starts=P["start_timesteps"], initial_eps=P["initial_eps"], end_eps=P["end_eps"],
                     eps_decay_period=P["eps_decay_period"], eval_freq=P["eval_freq"], eval_eps=P["eval_eps"],
                     discount=P["discount"], buffer_size=P["buffer_size"], batch_size=P["batch_size"],
                     lr=group["lr"], optimizer_eps=group["eps"], train_freq=P["train_freq"],
                     target_update_freq=P["target_update_freq"], tau=P["tau"] if P["polyak_target_update"] else 1.0)
        if name in ("ddqn_lap", "ddqn_pal"):
            pairs.update(alpha=P["alpha"], min_priority=P["min_priority"])
        if name == "ddqn_per":
            b = U.ReplayBuffer(OBS, True, False, None, 2, 4, "cpu")
            pairs.update(beta=b.beta, beta_increment=their_beta_step(U, suite == "atari"))
        diffs = {f"{name}_{k}": rel(getattr(a, k), v) for k, v in pairs.items()}
        diffs[f"{name}_optimizer"] = float(a.optimizer != P["optimizer"].lower())
        p.check(it=1, **diffs)
    if P["optimizer"] == "RMSprop":  # our make_optimizer hard-codes these two
        p.check(rmsprop_alpha=rel(0.95, group["alpha"]), rmsprop_centered=float(group["centered"] is not True))
    p.finish(1, note="PER alpha 0.6 is their train's literal: covered by the update rows")


@pytest.mark.authors(REPO)
@pytest.mark.parametrize("name", PRIORITISED)
def test_prioritised_sampler_is_the_authors_sum_tree(name, monkeypatch):
    """Exact, not statistical: 8,192 evenly spaced quantiles U = (k + 0.5) / 8192 go through our
    `sample_prioritized` (U for its jax.random.uniform; 5,000 slots: five 1,024-slot blocks, the last partial)
    and through the authors' SumTree.sample (U * their total for np.random.uniform), on the same priorities:
    random, 5% zero (episode-end frames), a zero tail, the newest slot outside our window (zero in their tree).
    Both pick the same slot for every quantile, and each slot gets its share p_i / sum p of the quantiles
    within one quantile (the exact probability of an inverse-CDF draw, to 1/8192)."""
    mod = ours(name)
    U = authors()["utils"]
    cap, count, K, chunk = 5_000, 4_001, 1 << 13, 1 << 12
    rng = np.random.default_rng(3)
    pr = rng.uniform(0.05, 3.0, cap)
    pr[rng.random(cap) < 0.05] = 0.0
    pr[count:] = 0.0
    window = pr.copy()
    window[count - 1] = 0.0  # the newest slot: its s' is not written yet
    tree = U.SumTree(cap)
    tree.batch_set(np.arange(cap), window)
    grid = (np.arange(K) + 0.5) / K
    orig = np.random.uniform
    np.random.uniform = lambda low, high, size: grid * high
    try:
        theirs = tree.sample(K)
    finally:
        np.random.uniform = orig
    monkeypatch.setattr(jax.random, "uniform", lambda key, shape: (key[1] + jnp.arange(shape[0]) + 0.5) / K)
    sample = jax.jit(mod.sample_prioritized, static_argnums=(3, 4, 5))
    mine = np.concatenate([np.asarray(sample(jnp.array([0, lo], jnp.uint32), jnp.asarray(pr), jnp.asarray(count),
                                             cap, 1, chunk)) for lo in range(0, K, chunk)])
    share = np.bincount(mine, minlength=cap) - K * window / window.sum()
    p = Parity(f"{name}.py", "prioritised sampler vs their SumTree.sample (same quantiles, 5 blocks)")
    p.check(it=K, slot=float(np.mean(mine != theirs)), share_beyond_1=max(0.0, float(np.abs(share).max()) - 1.0),
            zero_priority_drawn=float(np.any(window[mine] == 0)))
    p.finish(K, note="fraction of quantiles mapped to another slot; |count - K p_i / sum p| - 1")
