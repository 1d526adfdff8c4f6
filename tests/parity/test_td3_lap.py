"""Parity of algos/td3_lap.py, td3_pal.py and td3_per.py with sfujim/LAP-PAL continuous/ (LAP_TD3.py, PAL_TD3.py,
PER_TD3.py, and utils.py's ReplayBuffer, PrioritizedReplayBuffer and SumTree), float64.

Updates: the same initial weights (the authors' torch init, converted) and the authors' own replay buffers holding
our transitions and priorities. Our side draws from its key schedule inside `agent.update`; the test replays it
(the learner's key split into next, k_idx, k_noise) and hands the authors the same draws: their SumTree.sample gets
our uniforms through np.random.uniform (so their tree picks the slots from their priorities, and the picks must
equal ours), ReplayBuffer.sample our indices through np.random.randint (PAL), torch.randn_like our target noise.
torch.FloatTensor builds float64 tensors while they run, and torch.Tensor.backward records their losses.
Samplers: ours and the authors' SumTree as functions of the same uniform draw: the same slot for 20k draws, and
every slot's exact probability (the length of the set of uniforms mapped to it, found by bisection) against
p_i / sum p.
Schedule: PER's beta at every sampled batch of a run against the authors' per-call rule, checked on their buffer.
"""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.parity.harness import patched, Parity, adam_moment, linear, load_authors, ours, rel, stack, t64, tree_rel, unstack

OBS, ACT, B, SIZE, FILLED = 11, 3, 64, 500, 460  # slots FILLED.. are empty: priority 0, never sampled
BETA_END = 3_000_000  # PER: sampled batches after which the authors' beta is 1 (0.4 + 2e-7 * 3e6)


def authors():
    return load_authors("LAP-PAL", "utils", "LAP_TD3", "PAL_TD3", "PER_TD3", subdir="continuous")


@functools.cache
def make(file):
    """(module, Args, Agent) of our file at the test sizes, built once: its jitted update compiles once per variant."""
    mod = ours(file)
    args = mod.Args(env_id="Hopper-v4", total_timesteps=SIZE, batch_size=B)
    return mod, args, mod.make_agent(args, OBS, ACT)


def float64_tensor(x):
    return torch.tensor(np.asarray(x), dtype=torch.float64)


@contextlib.contextmanager
def authors_draws(u=None, idx=None, noise=None, losses=None):
    """The authors' random calls answer with our draws: np.random.uniform (their SumTree.sample) low + u (high - low),
    np.random.randint (their ReplayBuffer.sample) idx, torch.randn_like the target noise; their buffers' tensors are
    float64 and every loss they backpropagate is appended to `losses`."""
    backward = torch.Tensor.backward

    def uniform(low=0.0, high=1.0, size=None):
        assert size == len(u), (size, len(u))
        return low + np.asarray(u, np.float64) * (high - low)

    def randint(high, size=None):
        assert size == len(idx), (size, len(idx))
        return np.asarray(idx).copy()

    def record_backward(self, *a, **k):
        losses.append(float(self.detach()))
        return backward(self, *a, **k)

    with patched((np.random, "uniform", uniform), (np.random, "randint", randint),
                 (torch, "FloatTensor", float64_tensor), (torch, "randn_like", lambda x, **kw: t64(noise)),
                 (torch.Tensor, "backward", record_backward)):
        yield


def random_data(mod, seed=1):
    rng = np.random.default_rng(seed)
    return mod.Buffer(jnp.asarray(rng.normal(size=(SIZE, OBS))), jnp.asarray(rng.uniform(-1, 1, (SIZE, ACT))),
                      jnp.asarray(3 * rng.normal(size=SIZE)), jnp.asarray(rng.normal(size=(SIZE, OBS))),
                      jnp.asarray((rng.uniform(size=SIZE) < 0.1).astype(np.float64)))


def authors_buffer(utils, data, p0=None, max_priority=1.0):
    """The authors' buffer (prioritised when p0 is given) with our first FILLED transitions, added by their `add`."""
    rb = (utils.ReplayBuffer if p0 is None else utils.PrioritizedReplayBuffer)(OBS, ACT, max_size=SIZE)
    d = jax.tree.map(np.asarray, data)
    for i in range(FILLED):
        rb.add(d.obs[i], d.action[i], d.next_obs[i], d.reward[i], d.terminated[i])
    if p0 is not None:
        rb.tree.batch_set(np.arange(FILLED), p0)
        rb.max_priority = max_priority
    return rb


def record_calls(obj, name, log, args=False):
    """Wrap an instance's method so that each call's result (with args=True: its arguments) is appended to log."""
    f = getattr(obj, name)

    def g(*a, **k):
        out = f(*a, **k)
        log.append(a if args else out)
        return out
    setattr(obj, name, g)


def mlp(net, names, g=None):
    return {"params": {f"Linear_{i}": linear(getattr(net, n), **({"g": g} if g else {})) for i, n in enumerate(names)}}


def actor_p(a, g=None):
    return mlp(a, ("l1", "l2", "l3"), g)


def critic_p(c, g=None):
    return {"params": {"q1": mlp(c, ("l1", "l2", "l3"), g)["params"], "q2": mlp(c, ("l4", "l5", "l6"), g)["params"]}}


def authors_agent(cls, **kw):
    torch.manual_seed(0)
    th = cls(OBS, ACT, 1.0, **kw)
    for m in (th.actor, th.actor_target, th.critic, th.critic_target):
        m.double()
    return th


def our_learner(mod, args, th):
    """Our learner on the authors' initial weights, with fresh Adam states and a key of its own."""
    a, c = actor_p(th.actor), critic_p(th.critic)
    return stack(mod.Learner(a, a, c, c, optax.adam(args.actor_lr).init(a), optax.adam(args.critic_lr).init(c),
                             jax.random.PRNGKey(0)))


def networks(s, th, it, actor_steps):
    """Relative differences of parameters, targets and Adam moments (optax.adam state: (mu, nu, count))."""
    (oc, oa) = s.critic_opt[0], s.actor_opt[0]
    return dict(
        critic=tree_rel(s.critic, critic_p(th.critic)),
        critic_target=tree_rel(s.critic_target, critic_p(th.critic_target)),
        actor=tree_rel(s.actor, actor_p(th.actor)),
        actor_target=tree_rel(s.actor_target, actor_p(th.actor_target)),
        critic_adam=max(tree_rel(oc.mu, critic_p(th.critic, adam_moment(th.critic_optimizer, "exp_avg"))),
                        tree_rel(oc.nu, critic_p(th.critic, adam_moment(th.critic_optimizer, "exp_avg_sq")))),
        actor_adam=max(tree_rel(oa.mu, actor_p(th.actor, adam_moment(th.actor_optimizer, "exp_avg"))),
                       tree_rel(oa.nu, actor_p(th.actor, adam_moment(th.actor_optimizer, "exp_avg_sq")))),
        adam_steps=abs(int(oc.count) - it) + abs(int(oa.count) - actor_steps))


def losses_rel(m, losses, update_actor):
    """Our critic (and actor) loss against the values the authors backpropagated, in that order."""
    assert len(losses) == 1 + update_actor, losses
    out = {"critic_loss": rel(m["critic_loss"][0], losses[0])}
    if update_actor:
        out["actor_loss"] = rel(m["actor_loss"][0], losses[1])
    return out


def repeats_differ(update):
    """Whether a slot drawn twice in a batch got two different new priorities (the target noise differs per row):
    then keeping the first draw's priority (the authors' np.unique) is exercised."""
    ind, p = update
    return any(np.ptp(p[ind == i]) > 0 for i in set(ind.tolist()) if (ind == i).sum() > 1)


def priorities_rel(prio, rb, update=None):
    """Our stored priorities and running max against the authors' sum-tree leaves and max_priority; with `update`
    (the authors' update_priority(ind, priority) arguments) our stored priority of each slot's first draw in the
    batch against the priority they computed for it."""
    leaves = rb.tree.levels[-1]
    assert not leaves[SIZE:].any()
    out = dict(priorities=rel(prio.value[0], leaves[:SIZE]), max_priority=rel(prio.max[0], rb.max_priority))
    if update is not None:
        ind, p = update
        first = [i for i in range(len(ind)) if ind[i] not in ind[:i]]
        out["batch_priorities"] = rel(np.asarray(prio.value[0])[ind[first]], p[first])
    return out


def add_one(mod, agent, learner, buffer, prio, rb, data):
    """Both sides store transition FILLED with the running max priority: ours by `agent.step` (no training)."""
    d = jax.tree.map(lambda x: np.asarray(x)[FILLED], data)
    rb.add(d.obs, d.action, d.next_obs, d.reward, d.terminated)
    tr = mod.Buffer(*(jnp.asarray(x)[None] for x in d))
    _, _, prio, _, _ = agent.step(learner, buffer, prio, tr, tr.next_obs, FILLED, False, False, False)
    return prio


def initial_priorities(seed=3):
    """LAP-range priorities max(|d|, 1)^0.4 on the filled slots."""
    return np.maximum(np.abs(np.random.default_rng(seed).normal(0, 3, FILLED)), 1.0) ** 0.4


@pytest.mark.authors("LAP-PAL")
def test_lap_update_matches_authors():
    """LAP_TD3.train on the authors' PrioritizedReplayBuffer: their sum tree samples with our uniforms (its slots
    must be ours), Huber critic loss, priorities max(max|d|, 1)^0.4 written into the tree (np.unique's first draw),
    the running max, the delayed actor, Polyak targets and Adam moments; then one new transition's priority."""
    td3_lap, args, agent = make("td3_lap")
    utils, LAP_TD3, _, _ = authors()
    th = authors_agent(LAP_TD3.LAP_TD3)  # alpha 0.4, min_priority 1: main.py's LAP defaults
    assert (args.alpha, args.min_priority) == (th.alpha, th.min_priority)
    learner = our_learner(td3_lap, args, th)
    data = random_data(td3_lap)
    p0 = initial_priorities()
    rb = authors_buffer(utils, data, p0, max_priority=p0.max())
    picked, updates = [], []
    record_calls(rb.tree, "sample", picked)
    record_calls(rb, "update_priority", updates, args=True)
    prio = stack(td3_lap.Priorities(jnp.asarray(np.pad(p0, (0, SIZE - FILLED))), jnp.asarray(p0.max())))
    buffer = stack(data)
    p = Parity("td3_lap.py", "update: sum-tree slots, Huber critic, LAP priorities and max, delayed actor, "
                             "targets, Adam, new-transition priority")
    iters = 10
    for it in range(1, iters + 1):
        _, k_idx, k_noise = jax.random.split(learner.key[0], 3)
        losses = []
        with authors_draws(u=jax.random.uniform(k_idx, (B,)), noise=jax.random.normal(k_noise, (B, ACT)),
                           losses=losses):
            th.train(rb, B)
        update_actor = it % args.policy_freq == 0  # the authors' total_it % policy_freq
        learner, prio, m = agent.update(learner, buffer, prio, update_actor)
        np.testing.assert_array_equal(np.asarray(m["idx"][0]), picked[-1])
        p.check(it=it, **networks(unstack(learner), th, it, it // 2), **losses_rel(m, losses, update_actor),
                **priorities_rel(prio, rb, updates[-1]))
    assert rb.max_priority > p0.max() and any(map(repeats_differ, updates))  # both rules exercised
    prio = add_one(td3_lap, agent, learner, buffer, prio, rb, data)
    p.check(it=iters, **{f"new_{k}": v for k, v in priorities_rel(prio, rb).items()})
    p.finish(iters)


@pytest.mark.authors("LAP-PAL")
def test_pal_update_matches_authors():
    """PAL_TD3.train on the authors' uniform ReplayBuffer given our indices: the PAL loss over the detached mean
    priority, the delayed actor, Polyak targets and Adam moments."""
    td3_pal, args, agent = make("td3_pal")
    utils, _, PAL_TD3, _ = authors()
    th = authors_agent(PAL_TD3.PAL_TD3)
    assert (args.alpha, args.min_priority) == (th.alpha, th.min_priority)
    learner = our_learner(td3_pal, args, th)
    data = random_data(td3_pal)
    rb = authors_buffer(utils, data)
    buffer = stack(data)
    p = Parity("td3_pal.py", "update: PAL critic loss with detached mean priority, delayed actor, targets, Adam")
    iters = 8
    for it in range(1, iters + 1):
        _, k_idx, k_noise = jax.random.split(learner.key[0], 3)
        idx = jax.random.randint(k_idx, (B,), 0, FILLED)
        losses = []
        with authors_draws(idx=idx, noise=jax.random.normal(k_noise, (B, ACT)), losses=losses):
            th.train(rb, B)
        update_actor = it % args.policy_freq == 0
        learner, m = agent.update(learner, buffer, FILLED, update_actor)
        np.testing.assert_array_equal(np.asarray(m["idx"][0]), np.asarray(idx))
        p.check(it=it, **networks(unstack(learner), th, it, it // 2), **losses_rel(m, losses, update_actor))
    p.finish(iters)


@pytest.mark.authors("LAP-PAL")
def test_per_update_matches_authors():
    """PER_TD3.train on the authors' PrioritizedReplayBuffer (their sum tree sampling with our uniforms): the
    importance weights and beta of each batch, the weighted MSE, priorities |d|^0.6 (no floor), the running max,
    the delayed actor, targets and Adam. Eight updates from the first batch (beta 0.4), then both sides jump to
    batch 2,999,996 and run eight more, across the batch where beta reaches 1; then one new transition."""
    td3_per, args, agent = make("td3_per")
    utils, _, _, PER_TD3 = authors()
    th = authors_agent(PER_TD3.PER_TD3)  # alpha 0.6: main.py builds PER_TD3 before it adds alpha to the kwargs
    assert args.alpha == th.alpha
    learner = our_learner(td3_per, args, th)
    data = random_data(td3_per)
    p0 = np.abs(np.random.default_rng(3).normal(0, 2, FILLED)) ** 0.6
    rb = authors_buffer(utils, data, p0, max_priority=p0.max())
    assert rb.beta == args.beta
    picked, batches, updates = [], [], []
    record_calls(rb.tree, "sample", picked)
    record_calls(rb, "sample", batches)
    record_calls(rb, "update_priority", updates, args=True)
    prio = stack(td3_per.Priorities(jnp.asarray(np.pad(p0, (0, SIZE - FILLED))), jnp.asarray(p0.max()), jnp.int32(0)))
    buffer = stack(data)
    jump = BETA_END - 4
    p = Parity("td3_per.py", "update: sum-tree slots, importance weights and beta, weighted MSE, PER priorities "
                             "and max, delayed actor, targets, Adam, new-transition priority")
    iters = 16
    for it in range(1, iters + 1):
        if it == 9:  # both sides at batch `jump`: the authors' beta from their rule (checked in the schedule test)
            rb.beta = float(authors_beta_rule(jump + 1)[jump])
            prio = prio._replace(samples=jnp.full_like(prio.samples, jump))
        _, k_idx, k_noise = jax.random.split(learner.key[0], 3)
        before, beta_before, losses = prio, rb.beta, []
        with authors_draws(u=jax.random.uniform(k_idx, (B,)), noise=jax.random.normal(k_noise, (B, ACT)),
                           losses=losses):
            th.train(rb, B)
        update_actor = it % args.policy_freq == 0
        learner, prio, m = agent.update(learner, buffer, prio, update_actor)
        idx = np.asarray(m["idx"][0])
        np.testing.assert_array_equal(idx, picked[-1])
        beta = td3_per.per_beta(before.samples[0], args.beta, args.beta_increment)  # the beta of this batch
        weights = td3_per.importance_weights(before.value[0][idx], beta)
        p.check(it=it, **networks(unstack(learner), th, it, it // 2), **losses_rel(m, losses, update_actor),
                **priorities_rel(prio, rb, updates[-1]), beta=rel(beta, beta_before),
                beta_next=rel(td3_per.per_beta(prio.samples[0], args.beta, args.beta_increment), rb.beta),
                weights=rel(weights, batches[-1][-1].numpy()[:, 0]))
    assert rb.beta == 1.0 and rb.max_priority > p0.max() and any(map(repeats_differ, updates))
    prio = add_one(td3_per, agent, learner, buffer, prio, rb, data)
    p.check(it=iters, **{f"new_{k}": v for k, v in priorities_rel(prio, rb).items()})
    p.finish(iters, note="batches 1-8 agree to ~1e-15; from batch 2,999,996 on, the authors' beta carries 1.7e-11 "
                         "of float64 rounding (3M additions of 2e-7), which reaches the weights (p_min / p)^beta and "
                         "the critic's Adam moments as ~1e-10")


@pytest.mark.authors("LAP-PAL")
def test_lap_detects_a_changed_alpha():
    """The comparison is sharp: the authors' alpha 0.4 * 1.001 moves the stored priorities far above the tolerance
    after one update."""
    td3_lap, args, agent = make("td3_lap")
    utils, LAP_TD3, _, _ = authors()
    th = authors_agent(LAP_TD3.LAP_TD3, alpha=0.4 * 1.001)
    learner = our_learner(td3_lap, args, th)
    data = random_data(td3_lap)
    p0 = initial_priorities()
    rb = authors_buffer(utils, data, p0, max_priority=p0.max())
    prio = stack(td3_lap.Priorities(jnp.asarray(np.pad(p0, (0, SIZE - FILLED))), jnp.asarray(p0.max())))
    _, k_idx, k_noise = jax.random.split(learner.key[0], 3)
    with authors_draws(u=jax.random.uniform(k_idx, (B,)), noise=jax.random.normal(k_noise, (B, ACT)), losses=[]):
        th.train(rb, B)
    _, prio, _ = agent.update(learner, stack(data), prio, False)
    assert priorities_rel(prio, rb)["priorities"] > 1e-5


# ---------------------------------------------------------------------------------------------
# Samplers: ours and the authors' SumTree as functions of one uniform draw
# ---------------------------------------------------------------------------------------------
def sampler_cases():
    """(name, priorities): LAP-range priorities on 1000 slots (our blocks of 250: a reshape), 100 empty; PER-range
    ones over four decades on 1009 slots (a prime: zero-padded blocks of 256), 20 exact zeros inside, 59 empty."""
    rng = np.random.default_rng(4)
    lap = np.zeros(1000)
    lap[:900] = np.maximum(np.abs(rng.normal(0, 3, 900)), 1.0) ** 0.4
    per = np.zeros(1009)
    per[:950] = np.abs(rng.normal(0, 1, 950)) ** 0.6 * 10.0 ** rng.uniform(-3, 1, 950)
    per[rng.choice(950, 20, replace=False)] = 0.0
    return [("LAP-range priorities, 1000 slots", lap), ("PER-range priorities, 1009 slots", per)]


def ours_at(sample, priority):
    """Our sampler as a jitted function of its uniform draws u [n] in [0, 1): jax.random.uniform answers u while
    it is traced."""
    def f(u):
        with patched((jax.random, "uniform", lambda key, shape, *a, **k: u.astype(priority.dtype))):
            out = sample(jax.random.PRNGKey(0), priority, u.shape[0])
        return out[0] if isinstance(out, tuple) else out
    return jax.jit(f)


def authors_at(tree):
    """The authors' SumTree.sample as a function of its uniform draws u in [0, 1) (value = u * root)."""
    def f(u):
        with patched((np.random, "uniform", lambda low, high, size: low + np.asarray(u, np.float64) * (high - low))):
            return tree.sample(len(u))
    return f


def exact_probabilities(slot_at, n, steps=64):
    """Each slot's probability under a sampler that maps a uniform u in [0, 1) monotonically to a slot: the
    boundaries t_k = inf{u: slot(u) >= k}, k = 1..n-1, by bisection to float64 resolution; P(k) = t_(k+1) - t_k."""
    k = np.arange(1, n)
    lo, hi = np.zeros(n - 1), np.ones(n - 1)
    for _ in range(steps):
        mid = (lo + hi) / 2
        right = np.asarray(slot_at(jnp.asarray(mid))) >= k
        lo, hi = np.where(right, lo, mid), np.where(right, mid, hi)
    return np.diff(np.concatenate([[0.0], hi, [1.0]]))


@pytest.mark.authors("LAP-PAL")
@pytest.mark.parametrize("file,fn", [("td3_lap", "lap_sample"), ("td3_per", "per_sample")])
def test_sampler_matches_authors_sum_tree(file, fn):
    """Our sampler against the authors' SumTree on the same priorities: the same slot for each of 20k uniforms
    drawn from our key (ours called with the key, theirs given the uniforms), and every slot's exact probability
    under each sampler against p_i / sum p (zero-priority slots exactly 0 for ours). Also ours in float32 (the
    default dtype) against the float32 priorities' exact p_i / sum p."""
    mod = ours(file)
    utils = authors()[0]
    sample = getattr(mod, fn)
    p = Parity(f"{file}.py", f"sampler {fn}: exact slot probabilities vs the authors' SumTree, same slots per draw")
    p32 = Parity(f"{file}.py", f"sampler {fn} in float32: exact CDF vs cumulative p_i / sum p", tol=1e-6)
    for case, (name, prio) in enumerate(sampler_cases()):
        n = len(prio)
        tree = utils.SumTree(n)
        tree.batch_set(np.arange(n), prio)
        key = jax.random.PRNGKey(10 + case)
        out = jax.jit(sample, static_argnums=2)(key, jnp.asarray(prio), 20_000)
        idx = np.asarray(out[0] if isinstance(out, tuple) else out)
        np.testing.assert_array_equal(idx, authors_at(tree)(jax.random.uniform(key, (20_000,))), err_msg=name)
        if isinstance(out, tuple):  # per_sample also returns the sampled slots' priorities
            np.testing.assert_array_equal(np.asarray(out[1]), prio[idx])
        ideal = prio / prio.sum()
        mine = exact_probabilities(ours_at(sample, jnp.asarray(prio)), n)
        theirs = exact_probabilities(authors_at(tree), n)
        assert not mine[prio == 0].any(), name
        p.check(it=case + 1, ours_vs_p=rel(mine, ideal), authors_vs_p=rel(theirs, ideal),
                ours_vs_authors=rel(mine, theirs))
        prio32 = jnp.asarray(prio, jnp.float32)
        mine32 = exact_probabilities(ours_at(sample, prio32), n, steps=30)
        ideal32 = np.asarray(prio32, np.float64) / np.asarray(prio32, np.float64).sum()
        assert not mine32[prio == 0].any(), name
        p32.check(it=case + 1, cdf_ours_vs_p=rel(np.cumsum(mine32), np.cumsum(ideal32)))
    p.finish(2, note="2 priority sets; every slot's probability by bisection on the uniform draw")
    p32.finish(2, note="our default dtype: float32 sums and uniforms put each slot boundary within a few float32 "
                       "ulps (6e-8) of the exact CDF; tol 1e-6 is 8 ulps")


# ---------------------------------------------------------------------------------------------
# PER's beta schedule
# ---------------------------------------------------------------------------------------------
def authors_beta_rule(n, beta0=0.4, increment=2e-7):
    """The beta of the authors' sample calls 0..n-1: beta0, then beta = min(beta + increment, 1) after each call in
    float64, one addition at a time (np.add.accumulate adds left to right)."""
    steps = np.full(n, increment)
    steps[0] = beta0
    return np.minimum(np.add.accumulate(steps), 1.0)


@pytest.mark.authors("LAP-PAL")
def test_per_beta_schedule_matches_authors():
    """Our per_beta(k) for every sampled batch k of a run and past 1, value by value, against the authors' rule,
    which is checked on their own PrioritizedReplayBuffer.sample for the first 1000 calls and for 1000 calls
    across the batch where beta reaches 1. The paper's run (3M steps, 25k start) samples 2,975,000 batches on
    both sides, so beta ends at 0.995 there; it reaches 1 at batch 3,000,000 (0-based) on both."""
    td3_per = ours("td3_per")
    utils = authors()[0]
    args = td3_per.Args()
    n = BETA_END + 500
    rule = authors_beta_rule(n)
    rb = utils.PrioritizedReplayBuffer(1, 1, max_size=2)
    rb.add(np.zeros(1), np.zeros(1), np.zeros(1), 0.0, 0.0)
    theirs = []
    with patched((np.random, "uniform", lambda low, high, size: np.full(size, low + 0.5 * (high - low))),
                 (torch, "FloatTensor", float64_tensor)):
        for start in (0, BETA_END - 500):
            rb.beta = rule[start]
            for _ in range(1000):
                theirs.append(rb.beta)
                rb.sample(1)
    window = np.r_[0:1000, BETA_END - 500:BETA_END + 500]
    np.testing.assert_array_equal(np.array(theirs), rule[window])  # the rule is their code, bit for bit

    k = np.arange(n)
    mine = np.asarray(td3_per.per_beta(jnp.asarray(k, jnp.int64), args.beta, args.beta_increment))
    mine32 = np.asarray(td3_per.per_beta(jnp.asarray(k, jnp.int32), jnp.float32(args.beta),
                                         jnp.float32(args.beta_increment)))
    assert mine32.dtype == np.float32
    first_one = lambda b: int(np.argmax(b == 1.0))  # noqa: E731
    assert first_one(rule) == first_one(mine) == first_one(mine32) == BETA_END
    assert rel(td3_per.per_beta(jnp.asarray(k[:-1] + 1), args.beta, args.beta_increment), rule[:-1]) > 1e-7  # sharp

    # batches sampled in a run with the paper's length: t >= learning_starts trains (the authors' t >= start_timesteps)
    run = td3_per.Args(total_timesteps=3_000_000, learning_starts=25_000)
    assert td3_per.schedule(run.learning_starts - 1, run.learning_starts, run.policy_freq)[0] is False
    assert td3_per.schedule(run.learning_starts, run.learning_starts, run.policy_freq)[0] is True
    batches = run.total_timesteps - run.learning_starts
    assert batches == int(3e6) - int(25e3)
    assert 0.9949 < rule[batches - 1] < 0.995 and mine[batches - 1] < 1.0  # the last batch: 0.4 + 2e-7 * 2,974,999

    p = Parity("td3_per.py", "PER beta schedule: every sampled batch to 1 and past")
    p.check(it=n, beta=rel(mine, rule))
    p.finish(n, note="authors' rule verified on their buffer at calls 0-999 and 2,999,500-3,000,499")
    p32 = Parity("td3_per.py", "PER beta schedule in float32: every sampled batch to 1 and past", tol=1e-6)
    p32.check(it=n, beta=rel(mine32, rule))
    p32.finish(n, note="our default dtype: float32 rounding of beta in [0.4, 1] is up to 6e-8")
