"""Parity of algos/td7.py with sfujim/TD7 (TD7.py, buffer.py, main.py), float64.

Updates: the same initial weights (the authors' torch init, converted; small widths through their Hyperparameters
and our flags) and the authors' own LAP buffer (`add`, `update_priority`, `reset_max_priority`, `load_D4RL`), whose
`sample` alone is replaced: it returns their stored rows at our indices. The indices and the target noise come from
our key schedule (the learner's key split into next, k_idx, k_noise; `lap_sample` on k_idx, a normal draw on
k_noise); torch.randn_like hands the noise to the authors, and torch.Tensor.backward records their losses.
- Online: our `agent.add` / `agent.update` over 260 updates (one compiled program with the actor and sync
  branches on: its step counter decides when they apply, as in a multi-seed call where another seed is due). One
  transition is added on both sides before updates 1-100 and 251-260 (as the loop without checkpoints); 101-250
  run as a burst (as with checkpoints), so the reset at 250 lowers the max priority that new transitions get
  (with an add before every update, the newest transitions always hold the running maximum).
- Offline: our scanned offline loop (`train_chunk`, one target period per call) on a dataset the authors' buffer
  loads with `load_D4RL`. Their `sample` runs our `lap_sample` on our key schedule over *their* priorities, so
  both sides pick the same rows while the priorities agree; compared after each of two periods.
Checkpoints: the authors' `main.train_online` on a scripted old-gym env, with their Agent's `train` replaced by a
counter that tags the networks with the training step; against our `Schedule` (the loop's decisions) and
`agent.snapshot` (which networks the checkpoint copies) on the same episodes.
"""

import contextlib
import functools
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.parity.harness import (argparse_defaults, patched, Parity, adam_moment, authors_dir, gym_stub, linear, load_authors, ours, param, rel,
                                  t64, tree_rel)

OBS, ACT, B = 6, 2, 32
ZS, HID = 16, 32  # embedding and hidden widths (the paper's 256 would only slow the test)
PREFILL, ITERS = 300, 260  # online: transitions before the first update; updates (past the 250-step copy)
ADDS = lambda it: it <= 100 or it > 250  # noqa: E731  (a transition is added before these updates)
CAP = PREFILL + sum(map(ADDS, range(1, ITERS + 1)))  # online buffer, never wraps
# updates after which every network and moment is compared (priorities, losses and rows: after every update);
# a difference persists in the weights, so these catch one at any step, and the steps around each branch
FULL = {1, 2, 3, 4, *range(10, ITERS, 10), 99, 101, 249, 250, 251, 252, ITERS}
N_OFF, PERIODS = 400, 2  # offline dataset rows; target periods of 250 updates
MAX_ACTION = 2.0  # the authors' online buffer stores a / max_action; ours is given a in [-1, 1]
ENC = ("zs1", "zs2", "zs3", "zsa1", "zsa2", "zsa3")
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # their buffer.py's float()


def put(tree):
    """numpy -> device arrays without an eager JAX op (each would compile once per shape)."""
    return jax.tree.map(jax.device_put, tree)


def authors_td7():
    return load_authors("TD7", "TD7")


def hp(TD7, **kw):
    return TD7.Hyperparameters(batch_size=B, zs_dim=ZS, enc_hdim=HID, critic_hdim=HID, actor_hdim=HID, **kw)


def our_args(td7, **kw):
    return td7.Args(env_id="Hopper-v4", batch_size=B, zs_dim=ZS, enc_hdim=HID, critic_hdim=HID, actor_hdim=HID, **kw)


def enc_p(e, g=param):
    return {"params": {n: linear(getattr(e, n), g) for n in ENC}}


def actor_p(a, g=param):
    return {"params": {f"Linear_{i}": linear(layer, g) for i, layer in enumerate((a.l0, a.l1, a.l2, a.l3))}}


def critic_p(c, g=param):
    head = lambda names: {f"Linear_{i}": linear(getattr(c, n), g) for i, n in enumerate(names)}  # noqa: E731
    return {"params": {"QHead_0": head(("q01", "q1", "q2", "q3")), "QHead_1": head(("q02", "q4", "q5", "q6"))}}


@contextlib.contextmanager
def authors_draws(noise_box, losses):
    """torch.randn_like returns noise_box[0]; every loss the authors backpropagate is appended to `losses`."""
    backward = torch.Tensor.backward

    def record(self, *a, **k):
        losses.append(float(self.detach()))
        return backward(self, *a, **k)

    with patched((torch, "randn_like", lambda x, **kw: t64(noise_box[0])), (torch.Tensor, "backward", record)):
        yield


def sample_rows(rb):
    """The authors' buffer's `sample`, replaced: float64 tensors of their stored rows at rb.ind (set by the test)."""
    t = lambda x: torch.tensor(np.asarray(x)[rb.ind], dtype=torch.float64)  # noqa: E731
    return t(rb.state), t(rb.action), t(rb.next_state), t(rb.reward), t(rb.not_done)


def zeros_of(f, *args):
    """Zeros shaped as f(*args) returns them, traced only (nothing compiled)."""
    return jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), jax.eval_shape(f, *args))


@functools.lru_cache(maxsize=1)
def learner_template():
    """agent.init's learner at the test's widths, numpy (compiled once: the learner does not depend on the
    buffer size or --offline)."""
    td7 = ours("td7")
    agent = td7.make_agent(our_args(td7, total_timesteps=8, buffer_size=8), OBS, ACT)
    return jax.device_get(agent.init(jnp.stack([jax.random.PRNGKey(0)]))[0])


def our_state(args, th):
    """Our learner as agent.init makes it, with the authors' initial networks in every copy (as both constructors
    make them) and fresh Adam states (optax's start at zeros), seed-stacked numpy."""
    e, a, c = jax.device_get((enc_p(th.encoder), actor_p(th.actor), critic_p(th.critic)))
    l0 = jax.tree.map(lambda x: x[0], learner_template())._replace(
        encoder=e, fixed_encoder=e, fixed_encoder_target=e, actor=a, actor_target=a, critic=c, critic_target=c,
        checkpoint_actor=a, checkpoint_encoder=e, eval_actor=a, eval_encoder=e,
        encoder_opt=zeros_of(optax.adam(args.encoder_lr).init, e),
        actor_opt=zeros_of(optax.adam(args.actor_lr).init, a), critic_opt=zeros_of(optax.adam(args.critic_lr).init, c))
    return jax.tree.map(lambda x: np.asarray(x)[None], l0)


def host(tree):
    """Seed 0 of a seed-stacked pytree, as numpy (no eager JAX op per leaf)."""
    return jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(tree))


def compare_learner(p, it, learner, th):
    """Every network, Adam moment and step count, and the value-clip bounds, against the authors' Agent."""
    s = host(learner)

    def moments(opt_state, conv, net, torch_opt):
        adam = opt_state[0]
        return max(tree_rel(adam.mu, conv(net, adam_moment(torch_opt, "exp_avg"))),
                   tree_rel(adam.nu, conv(net, adam_moment(torch_opt, "exp_avg_sq"))))

    def torch_steps(torch_opt):
        return int(next(iter(torch_opt.state.values()))["step"]) if torch_opt.state else 0

    p.check(it=it,
            encoder=tree_rel(s.encoder, enc_p(th.encoder)),
            fixed_encoder=tree_rel(s.fixed_encoder, enc_p(th.fixed_encoder)),
            fixed_encoder_target=tree_rel(s.fixed_encoder_target, enc_p(th.fixed_encoder_target)),
            critic=tree_rel(s.critic, critic_p(th.critic)),
            critic_target=tree_rel(s.critic_target, critic_p(th.critic_target)),
            actor=tree_rel(s.actor, actor_p(th.actor)),
            actor_target=tree_rel(s.actor_target, actor_p(th.actor_target)),
            encoder_adam=moments(s.encoder_opt, enc_p, th.encoder, th.encoder_optimizer),
            critic_adam=moments(s.critic_opt, critic_p, th.critic, th.critic_optimizer),
            actor_adam=moments(s.actor_opt, actor_p, th.actor, th.actor_optimizer),
            adam_steps=abs(int(s.encoder_opt[0].count) - torch_steps(th.encoder_optimizer))
            + abs(int(s.critic_opt[0].count) - torch_steps(th.critic_optimizer))
            + abs(int(s.actor_opt[0].count) - torch_steps(th.actor_optimizer)),
            training_steps=abs(int(s.steps) - th.training_steps),
            value_range=rel(s.value_range, [th.min, th.max]),
            value_clip=rel(s.value_clip, [th.min_target, th.max_target]))


def compare_priorities(p, it, prio, rb):
    prio = host(prio)
    p.check(it=it, priorities=rel(prio.value, rb.priority.numpy()), max_priority=rel(prio.max, rb.max_priority),
            stored=abs(int(prio.count) - rb.size))


def transitions(n, seed):
    rng = np.random.default_rng(seed)
    return dict(obs=rng.normal(size=(n, OBS)), action=rng.uniform(-1, 1, (n, ACT)), reward=4 * rng.normal(size=n),
                next_obs=rng.normal(size=(n, OBS)), terminated=(rng.uniform(size=n) < 0.1).astype(np.float64))


@pytest.mark.authors("TD7")
def test_td7_online_update_matches_authors():
    td7, TD7 = ours("td7"), authors_td7()
    torch.manual_seed(0)
    th = TD7.Agent(OBS, ACT, MAX_ACTION, offline=False, hp=hp(TD7, buffer_size=CAP))
    rb = th.replay_buffer
    rb.sample = lambda: sample_rows(rb)
    args = our_args(td7, buffer_size=CAP, total_timesteps=CAP)
    agent = td7.make_agent(args, OBS, ACT)
    learner = our_state(args, th)
    buf = zeros_of(agent.init, jnp.stack([jax.random.PRNGKey(0)]))[1]  # agent.init's buffer: empty, zeros
    prio = put(td7.Priorities(np.zeros((1, CAP)), np.ones(1), np.zeros(1, np.int32)))  # as agent.init
    d = transitions(CAP, seed=1)
    one = put(np.array([True]))

    @jax.jit
    def draws(key, value):  # the learner's key split as update splits it: (next, k_idx, k_noise)
        _, k_idx, k_noise = jax.random.split(key[0], 3)
        return td7.lap_sample(k_idx, value[0], B), jax.random.normal(k_noise, (B, ACT))

    def add(i):
        nonlocal buf, prio
        rb.add(d["obs"][i], d["action"][i] * MAX_ACTION, d["next_obs"][i], d["reward"][i], d["terminated"][i])
        row = put(td7.Buffer(*(np.asarray(d[k][i])[None] for k in ("obs", "action", "reward", "next_obs",
                                                                      "terminated"))))
        buf, prio = agent.add(buf, prio, row, one)

    for i in range(PREFILL):
        add(i)
    added = PREFILL
    p = Parity("td7.py", "online update: encoder, fixed encoders, critic, actor, targets, Adam moments, "
                         "LAP priorities and max priority, value-clip bounds, losses")
    pl = Parity("td7.py", "online buffer: rows stored by add (a / max_action)")
    np.testing.assert_array_equal(rb.state[:PREFILL], d["obs"][:PREFILL])
    noise, losses = [None], []
    max_priority_at_copy = []  # the authors' max priority before and after the step-250 reset
    with authors_draws(noise, losses):
        for it in range(1, ITERS + 1):
            if ADDS(it):
                add(added)
                added += 1
            idx, noise[0] = draws(learner.key, prio.value)
            rb.ind = np.array(idx)
            del losses[:]
            th.train()
            if it in (249, 250):
                max_priority_at_copy.append(rb.max_priority)
            # both branches traced (one compiled program): the update's step counter decides, as in a multi-seed
            # call where another seed is due
            learner, prio, m = agent.update(learner, buf, prio, one, True, True)
            update_actor = it % args.policy_freq == 0
            m = host(m)
            np.testing.assert_array_equal(m["idx"], rb.ind)
            if it in FULL:
                compare_learner(p, it, learner, th)
            compare_priorities(p, it, prio, rb)
            ours_losses = [m["encoder_loss"], m["critic_loss"]] + ([m["actor_loss"]] if update_actor else [])
            p.check(it=it, losses=rel(ours_losses, losses))
            n, b = added, host(buf)
            pl.check(it=it, rows=max(rel(b.obs[:n], rb.state[:n]), rel(b.action[:n], rb.action[:n]),
                                     rel(b.next_obs[:n], rb.next_state[:n]), rel(b.reward[:n], rb.reward[:n, 0]),
                                     rel(1 - b.terminated[:n], rb.not_done[:n, 0])))
    # the branches were reached: the reset at 250 lowered the max priority, and the clip bounds frozen there are not 0
    assert max_priority_at_copy[1] < max_priority_at_copy[0], max_priority_at_copy
    assert th.min_target < 0 < th.max_target and int(host(learner).steps) == ITERS
    p.finish(ITERS, note=f"networks and moments after {len(FULL)} of the updates (1-4, every 10th, 99, 101, "
                         "249-252, 260), the rest after every update")
    pl.finish(ITERS, note=f"max_action {MAX_ACTION}: their add divides, our env adapter does")


@pytest.mark.authors("TD7")
def test_td7_offline_train_chunk_matches_authors():
    td7, TD7 = ours("td7"), authors_td7()
    torch.manual_seed(1)
    th = TD7.Agent(OBS, ACT, 1.0, offline=True, hp=hp(TD7, buffer_size=8))
    d = transitions(N_OFF, seed=2)
    rb = th.replay_buffer
    rb.load_D4RL({"observations": d["obs"], "actions": d["action"], "next_observations": d["next_obs"],
                  "rewards": d["reward"], "terminals": d["terminated"]})
    args = our_args(td7, offline=True, total_timesteps=250 * PERIODS, eval_freq=250)
    assert args.lmbda == TD7.Hyperparameters().lmbda == 0.1
    agent = td7.make_agent(args, OBS, ACT)
    learner = our_state(args, th)
    data = put(td7.Buffer(*(d[k] for k in ("obs", "action", "reward", "next_obs", "terminated"))))
    prio = put(td7.Priorities(np.ones((1, N_OFF)), np.ones(1), np.full(1, N_OFF, np.int32)))  # as train_offline
    key, noise, losses = [host(learner.key)], [None], []

    @jax.jit
    def draws(key, priority):  # our key schedule: (next, k_idx, k_noise) per update
        key, k_idx, k_noise = jax.random.split(key, 3)
        return key, td7.lap_sample(k_idx, priority, B), jax.random.normal(k_noise, (B, ACT))

    def sample():
        key[0], idx, noise[0] = draws(key[0], rb.priority.numpy())
        rb.ind = np.array(idx)
        return sample_rows(rb)

    rb.sample = sample
    p = Parity("td7.py", "offline train_chunk: encoder, fixed encoders, critic, actor with BC term (lmbda 0.1), "
                         "targets, Adam moments, LAP priorities, value-clip bounds, mean losses")
    with authors_draws(noise, losses):
        for period in range(1, PERIODS + 1):
            del losses[:]
            for _ in range(250):
                th.train()
            learner, prio, metrics = agent.train_chunk(learner, data, prio, 1)
            it = 250 * period
            compare_learner(p, it, learner, th)
            compare_priorities(p, it, prio, rb)
            # their backward calls: encoder, critic, (actor on even steps); ours: means over the actor steps
            per_step = np.array([losses[i:i + 5] for i in range(0, len(losses), 5)])  # [125, 5] per update pair
            theirs = {"encoder_loss": per_step[:, 2].mean(), "critic_loss": per_step[:, 3].mean(),
                      "actor_loss": per_step[:, 4].mean()}
            p.check(it=it, mean_losses=max(rel(host(metrics)[k], v) for k, v in theirs.items()))
    assert th.min_target < th.max_target and int(host(learner).steps) == 250 * PERIODS
    p.finish(250 * PERIODS, note="compared after each scanned period of 250 updates")


# ---------------------------------------------------------------------------------------------
# The online loop's decisions: when it trains, when it checkpoints, which policy the checkpoint is
# ---------------------------------------------------------------------------------------------
# timesteps_before_training, steps_before_checkpointing (a burst of the scripted run ends there: the authors' check
# before each training step switches at the first step of the next burst), max_eps_when_checkpointing
LEARNING_STARTS, SWITCH, MAX_EPS = 20, 152, 4


def scripted_episodes():
    """(length, return) pairs: the first episodes end at steps 5, 10, 20 and 21 (training is allowed from the end
    of the one ending at 21: t = 20 >= 20 in the authors' 0-based count); integer returns, so ties happen."""
    rng = np.random.default_rng(7)
    lengths = [5, 5, 10, 1] + rng.integers(1, 12, 76).tolist()
    returns = (rng.integers(-3, 4, len(lengths)) + np.arange(len(lengths)) // 15).astype(float)
    return list(zip(lengths, returns.tolist()))


class ScriptedEnv:
    """An old-gym env playing the scripted episodes (the return paid on the last step); `on_reset` sees the agent
    after each episode end."""

    def __init__(self, episodes, on_reset):
        self.episodes, self.on_reset, self.k, self.pos, self.t = episodes, on_reset, -1, 0, 0
        self._max_episode_steps = 10**6
        self.random, self._sampled = [], False
        self.action_space = types.SimpleNamespace(sample=self._sample)

    def _sample(self):
        self._sampled = True
        return np.zeros(ACT)

    def reset(self):
        if self.k >= 0:
            self.on_reset()
        self.k, self.pos = self.k + 1, 0
        return np.zeros(OBS)

    def step(self, action):
        self.t, self.pos = self.t + 1, self.pos + 1
        self.random.append(self._sampled)
        self._sampled = False
        length, ret = self.episodes[self.k]
        return np.zeros(OBS), (ret if self.pos == length else 0.0), self.pos == length, {}


class OneStepEnv:
    """The authors' evaluation env at t = 0: every episode ends at once."""

    def reset(self):
        return np.zeros(OBS)

    def step(self, action):
        return np.zeros(OBS), 0.0, True, {}


FIELDS = ("eps_since_update", "timesteps_since_update", "max_eps_before_update", "min_return", "best_min_return")


def authors_loop(episodes, checkpoints, tmp_path, monkeypatch):
    """main.train_online with a tagging `train`: actor, fixed encoder and encoder carry the training step (+0.5,
    negated) in a bias, so a checkpoint's tags say which networks it copied and after how many steps."""
    main = load_authors("TD7", "main", stubs={"gym": gym_stub()})
    torch.set_default_dtype(torch.float32)  # their select_action builds float32 states
    torch.manual_seed(0)
    total = sum(n for n, _ in episodes)
    th = main.TD7.Agent(OBS, ACT, 1.0, hp=main.TD7.Hyperparameters(
        buffer_size=total + 1, zs_dim=ZS, enc_hdim=HID, critic_hdim=HID, actor_hdim=HID,
        max_eps_when_checkpointing=MAX_EPS, steps_before_checkpointing=SWITCH))
    trained_at, rows = [], []

    def tag():
        with torch.no_grad():
            th.actor.l3.bias.fill_(th.training_steps)
            th.fixed_encoder.zs1.bias.fill_(th.training_steps + 0.5)
            th.encoder.zs1.bias.fill_(-th.training_steps)

    def train():
        th.training_steps += 1
        trained_at.append(env.t)
        tag()

    def on_reset():
        rows.append({**{k: getattr(th, k) for k in FIELDS}, "updates": th.training_steps,
                     "checkpoint_actor": float(th.checkpoint_actor.l3.bias[0]),
                     "checkpoint_encoder": float(th.checkpoint_encoder.zs1.bias[0])})

    tag()
    with torch.no_grad():  # the constructor's checkpoint copies are the initial networks
        th.checkpoint_actor.l3.bias.fill_(0.0)
        th.checkpoint_encoder.zs1.bias.fill_(0.5)
    th.train = train
    env = ScriptedEnv(episodes, on_reset)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    run_args = types.SimpleNamespace(max_timesteps=total - 1, use_checkpoints=checkpoints,
                                     timesteps_before_training=LEARNING_STARTS, eval_freq=10**9, eval_eps=1,
                                     file_name="td7_parity")
    main.train_online(th, env, OneStepEnv(), run_args)
    updates = np.bincount(np.asarray(trained_at, int), minlength=total + 1)[1:]
    return np.asarray(env.random), updates, rows


def our_loop(td7, episodes, checkpoints):
    """Our Schedule as algos/td7.py's train loop drives it (step() after each env step, episode_end() at each end,
    agent.snapshot when it says save), on a learner whose networks carry the same tags."""
    args = our_args(td7, total_timesteps=8, buffer_size=8, checkpoints=checkpoints)
    agent = td7.make_agent(args, OBS, ACT)
    learner = zeros_of(agent.init, jnp.stack([jax.random.PRNGKey(0)]))[0]  # numpy; only the tags matter

    def tagged(learner, steps):
        def bias(tree, layer, v):
            return {"params": {**tree["params"], layer: {**tree["params"][layer],
                                                          "bias": np.full_like(tree["params"][layer]["bias"], v)}}}
        return learner._replace(actor=bias(learner.actor, "Linear_3", steps),
                                fixed_encoder=bias(learner.fixed_encoder, "zs1", steps + 0.5),
                                encoder=bias(learner.encoder, "zs1", -steps), steps=np.full_like(learner.steps, steps))

    learner = tagged(learner, 0)
    learner = learner._replace(checkpoint_actor=learner.actor, checkpoint_encoder=learner.fixed_encoder)
    sched = td7.Schedule(learning_starts=LEARNING_STARTS, checkpoints=checkpoints,
                         max_eps_when_checkpointing=MAX_EPS, steps_before_checkpointing=SWITCH,
                         reset_weight=args.reset_weight)
    no, yes = put(np.array([False])), put(np.array([True]))
    random, updates, rows, done, t = [], [], [], 0, 0
    for length, ret in episodes:
        for _ in range(length):
            random.append(not sched.allow_train)
            t += 1
            owed = sched.step()
            updates.append(owed)
            done += owed
        learner = tagged(learner, done)  # every update owed so far is done before the seed's episode ends
        burst, save = sched.episode_end(t, length, ret)
        if save:
            learner = jax.device_get(agent.snapshot(learner, yes, no))
        s = host(learner)
        assert not save or int(s.checkpoint_steps) == done
        updates[-1] += burst
        done += burst
        rows.append({**{k: getattr(sched, k) for k in FIELDS}, "updates": done,
                     "checkpoint_actor": float(s.checkpoint_actor["params"]["Linear_3"]["bias"][0]),
                     "checkpoint_encoder": float(s.checkpoint_encoder["params"]["zs1"]["bias"][0])})
    return np.asarray(random), np.asarray(updates), rows, sched


@pytest.mark.authors("TD7")
@pytest.mark.parametrize("checkpoints", [True, False], ids=["checkpoints", "no-checkpoints"])
def test_td7_loop_decisions_match_authors(checkpoints, tmp_path, monkeypatch):
    td7 = ours("td7")
    episodes = scripted_episodes()
    their_random, their_updates, their_rows = authors_loop(episodes, checkpoints, tmp_path, monkeypatch)
    our_random, our_updates, our_rows, sched = our_loop(td7, episodes, checkpoints)
    name = "checkpoints" if checkpoints else "no checkpoints"
    p = Parity("td7.py", f"online loop ({name}): random acting, updates per env step, checkpoint/early-stop "
                         "fields, which policy the checkpoint holds", tol=0.0)
    assert len(their_rows) == len(our_rows) == len(episodes)
    p.check(random_acting=float(np.sum(our_random != their_random)),
            updates_per_step=float(np.sum(our_updates != their_updates)))
    for k, (o, th) in enumerate(zip(our_rows, their_rows), 1):
        p.check(it=k, **{f: float(o[f] != th[f]) for f in th})
    kinds = [kind for _, kind, _ in sched.events]
    if checkpoints:
        # the scenario reaches every branch: early stops, checkpoints, the switch to MAX_EPS episodes with its 0.9
        assert kinds.count("early_stop") >= 3 and kinds.count("checkpoint") >= 3
        assert sched.max_eps_before_update == MAX_EPS and SWITCH in np.cumsum([n for *_, n in sched.events])
        assert len({r["checkpoint_actor"] for r in their_rows}) >= 4  # the checkpoint moved
        assert np.sum(our_updates > 1) >= 3  # bursts
    else:
        assert not kinds and our_updates.sum() == np.sum(~our_random) > 0
    p.finish(len(episodes), note="decisions compared exactly, episode by episode (80 scripted episodes)")


# ---------------------------------------------------------------------------------------------
# Defaults
# ---------------------------------------------------------------------------------------------
@pytest.mark.authors("TD7")
def test_td7_defaults_match_authors():
    hp0, a = authors_td7().Hyperparameters(), ours("td7").Args()
    pairs = {"batch_size": "batch_size", "buffer_size": "buffer_size", "discount": "discount",
             "target_update_rate": "target_update_rate", "exploration_noise": "expl_noise",
             "target_policy_noise": "policy_noise", "noise_clip": "noise_clip", "policy_freq": "policy_freq",
             "alpha": "alpha", "min_priority": "min_priority", "lmbda": "lmbda",
             "max_eps_when_checkpointing": "max_eps_when_checkpointing",
             "steps_before_checkpointing": "steps_before_checkpointing", "reset_weight": "reset_weight",
             "zs_dim": "zs_dim", "enc_hdim": "enc_hdim", "encoder_lr": "encoder_lr", "critic_hdim": "critic_hdim",
             "critic_lr": "critic_lr", "actor_hdim": "actor_hdim", "actor_lr": "actor_lr"}
    assert {k: getattr(hp0, k) for k in pairs} == {k: getattr(a, v) for k, v in pairs.items()}
    main = argparse_defaults(authors_dir() / "TD7" / "main.py")
    assert (main["--timesteps_before_training"], main["--eval_freq"], main["--eval_eps"], main["--use_checkpoints"]) \
        == (a.learning_starts, a.eval_freq, a.eval_episodes, a.checkpoints)
    # documented in td7.py's header: --total-timesteps defaults to 1M, the repo's max_timesteps to 5M
    assert (main["--max_timesteps"], a.total_timesteps) == (5e6, 1_000_000)
