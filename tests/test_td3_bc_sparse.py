"""Sparse-Reg on TD3+BC (algos/td3_bc_sparse.py) and the small-data option of envs/offline.py.

Masks: pruned weights get no gradient (their Adam moments decay by exactly beta per step) and never change,
across a re-prune too; the keep ratio is exact per network; the schedule recomputes at 0, mask_every, ...
below --sparse-until and never after; the targets see the online masks; the SNIP score equals |w * dL/dw| of
the dense network (the identity dL(w * m)/dm = w * dL/dw at m = 1, with the losses written again here); the
masks are in the checkpoint (a resumed run ends where one long run does). --keep-ratio 1 is td3_bc.py.
"""

import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algos import td3_bc
from algos import td3_bc_sparse as sp
from envs import offline, runs
from tests import test_offline_learning as base
from tests.test_offline_learning import expert, monkeypatch_module  # noqa: F401  (the slow test's expert data)

OBS, ACT, SIZE = 3, 2, 200


def _data(seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return sp.Buffer(*(jnp.asarray(a, dtype) for a in (
        rng.normal(size=(SIZE, OBS)), rng.uniform(-1, 1, (SIZE, ACT)), rng.normal(size=SIZE),
        rng.normal(size=(SIZE, OBS)), rng.uniform(size=SIZE) < 0.1)))


def _agent(num_seeds=2, **kw):
    args = sp.Args(**{"batch_size": 16, "hidden_dim": 16, "keep_ratio": 0.2, "mask_every": 4, "sparse_until": 10,
                      **kw})
    agent = sp.make_agent(args, OBS, ACT)
    return args, agent, agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))


def _kernels(tree):
    """{path: array} of the kernels of a (seed-stacked) parameter tree."""
    return {jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if sp.is_kernel(p)}


def _biases(tree):
    return [np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0] if not sp.is_kernel(p)]


def _updates(agent, learner, data, n):
    """n updates, the actor on every second one (the repo's total_it % 2 == 0)."""
    for i in range(n):
        learner, metrics = agent.update(learner, data, i % 2 == 1)
    return learner, metrics


# ---------------------------------------------------------------------------------------------
# The keep rule and the schedule, on hand values
# ---------------------------------------------------------------------------------------------
def test_keep_top_on_hand_values_ranks_the_whole_network_and_breaks_ties_by_index():
    scores = {"params": {"Linear_0": {"bias": jnp.array([9.0, 9.0]), "kernel": jnp.array([[3.0, 1.0], [2.0, 5.0]])},
                         "Linear_1": {"bias": jnp.array([0.0]), "kernel": jnp.array([[4.0], [0.5]])}}}
    # 6 weights, keep int(6 * 0.5) = 3: the scores 5, 4, 3 (the biases are not ranked and always kept)
    m = sp.keep_top(scores, 0.5)
    np.testing.assert_array_equal(m["params"]["Linear_0"]["kernel"], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(m["params"]["Linear_1"]["kernel"], [[1], [0]])
    np.testing.assert_array_equal(m["params"]["Linear_0"]["bias"], [1, 1])
    np.testing.assert_array_equal(m["params"]["Linear_1"]["bias"], [1])
    # all equal: exactly int(6 * 0.7) = 4 kept (the code's ">= threshold" would keep all 6), the first 4 in order
    flat = sp.keep_top(jax.tree.map(jnp.zeros_like, scores), 0.7)
    np.testing.assert_array_equal(flat["params"]["Linear_0"]["kernel"], [[1, 1], [1, 1]])
    np.testing.assert_array_equal(flat["params"]["Linear_1"]["kernel"], [[0], [0]])
    assert sp.kept_count(0.05, 138_752) == 6937  # int(), as the code: not round() (6938)


def test_mask_schedule_recomputes_every_1k_below_sparse_until_and_never_after():
    due = lambda t, every, until: bool(sp.mask_due(jnp.int32(t), every, until))  # noqa: E731
    ts = range(0, 400_001, 500)
    assert [t for t in ts if due(t, 1000, 200_000)] == list(range(0, 200_000, 1000))  # 0, 1k, ..., 199k: 200
    assert [t for t in ts if due(t, 1000, 0)] == [0]  # single-shot
    assert [t for t in range(40) if due(t, 4, 10)] == [0, 4, 8]
    assert [t for t in range(40) if due(t, 4, 9)] == [0, 4, 8] and [t for t in range(40) if due(t, 4, 8)] == [0, 4]


# ---------------------------------------------------------------------------------------------
# Masks in the update
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.05, 0.37, 1.0])
def test_keep_ratio_is_exact_per_network_and_per_seed(ratio):
    _, agent, learner = _agent(keep_ratio=ratio)
    learner = agent.rescore(learner, _data())
    for name, mask in (("actor", learner.actor_mask), ("critic", learner.critic_mask)):
        kernels = _kernels(mask)
        n = sum(x[0].size for x in kernels.values())  # actor 3*16 + 16*16 + 16*2; critic 2 * (5*16 + 16*16 + 16)
        assert n == {"actor": 336, "critic": 704}[name]
        for seed in range(2):
            assert sum(x[seed].sum() for x in kernels.values()) == int(n * ratio), (name, seed)
        assert all(np.all(b == 1) for b in _biases(mask))
        assert set(np.unique(np.concatenate([x.ravel() for x in kernels.values()]))) <= {0.0, 1.0}
    if ratio < 1:  # each seed scores its own masks
        assert not np.array_equal(*_kernels(learner.critic_mask)["['params']['q1']['Linear_1']['kernel']"])


def test_pruned_weights_get_no_gradient_and_never_change_across_a_re_prune():
    data = _data()
    _, agent, learner = _agent()
    learner, _ = _updates(agent, learner, data, 4)  # dense: every weight gets Adam moments
    one = agent.rescore(learner, data)
    two, _ = _updates(agent, one, data, 6)  # 6 critic and 3 actor steps under the first masks
    three = agent.rescore(two, data)
    four, _ = _updates(agent, three, data, 6)
    for net, opt, steps in (("critic", "critic_opt", 6), ("actor", "actor_opt", 3)):
        for before, after, masks, prev in ((one, two, one, None), (three, four, three, one)):
            w0, w1 = _kernels(getattr(before, net)), _kernels(getattr(after, net))
            mu0, mu1 = _kernels(getattr(before, opt)[0].mu), _kernels(getattr(after, opt)[0].mu)
            nu0, nu1 = _kernels(getattr(before, opt)[0].nu), _kernels(getattr(after, opt)[0].nu)
            m = _kernels(getattr(masks, net + "_mask"))
            newly, moved_kept = 0, 0
            for k in w0:
                pruned = m[k] == 0
                np.testing.assert_array_equal(w1[k][pruned], w0[k][pruned])  # never changes
                # no gradient: Adam's moments only decay, by exactly 0.9 and 0.999 per step
                np.testing.assert_allclose(mu1[k][pruned], mu0[k][pruned] * 0.9 ** steps, rtol=1e-5, atol=1e-30)
                np.testing.assert_allclose(nu1[k][pruned], nu0[k][pruned] * 0.999 ** steps, rtol=1e-5, atol=1e-30)
                moved_kept += int(np.sum(w1[k][~pruned] != w0[k][~pruned]))
                if prev is not None:  # pruned now, kept before: Adam's moments alone would still move these
                    was_kept = pruned & (_kernels(getattr(prev, net + "_mask"))[k] == 1)
                    newly += int(np.sum(was_kept & (mu0[k] != 0)))
            assert moved_kept > 0.5 * sum(int(np.sum(x == 1)) for x in m.values()), net
            if prev is not None:
                assert newly > 0, net  # the re-prune pruned weights with live moments, and they stayed put


def test_targets_use_the_online_masks():
    """Garbage in the pruned entries of every network (online and target) changes nothing the update computes;
    garbage in a kept target entry does."""
    data = _data()
    _, agent, learner = _agent()
    learner, _ = _updates(agent, learner, data, 4)
    learner = agent.rescore(learner, data)
    rng = np.random.default_rng(5)

    def junk(params, mask, where):
        return jax.tree.map(lambda p, m: jnp.where(m == where, jnp.asarray(rng.normal(size=p.shape) * 1e3, p.dtype),
                                                   p), params, mask)

    am, cm = learner.actor_mask, learner.critic_mask
    dirty = learner._replace(actor=junk(learner.actor, am, 0), actor_target=junk(learner.actor_target, am, 0),
                             critic=junk(learner.critic, cm, 0), critic_target=junk(learner.critic_target, cm, 0))
    clean, m_clean = agent.update(learner, data, True)
    soiled, m_dirty = agent.update(dirty, data, True)
    for k in m_clean:
        np.testing.assert_array_equal(m_clean[k], m_dirty[k])
    for net in ("actor", "critic", "actor_target", "critic_target"):
        mask = am if net.startswith("actor") else cm
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(jnp.multiply, getattr(clean, net), mask),
                     jax.tree.map(jnp.multiply, getattr(soiled, net), mask))
    kept = learner._replace(critic_target=junk(learner.critic_target, cm, 1))
    assert not np.allclose(agent.update(kept, data, True)[1]["critic_loss"], m_clean["critic_loss"])


def test_snip_score_is_weight_times_the_dense_gradient_of_both_losses():
    """Independent formulation: |w * d(L_critic + L_actor)/dw| of the dense networks (every mask 1, the targets
    too) with the losses written out here, on the batch and noise of the score's key (fold_in MASK_KEY)."""
    data = _data()
    args, agent, learner = _agent(keep_ratio=0.3, mask_every=2, sparse_until=100)
    learner, _ = agent.train_chunk(learner, data, 3, 0)  # masks at 0, 2, 4: targets != online, stored values pruned
    actor_scores, critic_scores = agent.snip_scores(learner, data)
    actor, critic = sp.Actor(ACT, args.hidden_dim), sp.Critic(args.hidden_dim)
    for seed in range(2):
        one = jax.tree.map(lambda x, i=seed: x[i], learner)
        k_idx, k_noise = jax.random.split(jax.random.fold_in(one.key, sp.MASK_KEY))
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, SIZE)
        obs, act, rew, nxt, term = (np.asarray(x)[np.asarray(idx)] for x in data)
        noise = np.clip(np.asarray(jax.random.normal(k_noise, (args.batch_size, ACT))) * 0.2, -0.5, 0.5)
        next_a = np.clip(np.asarray(actor.apply(one.actor_target, nxt)) + noise, -1, 1)
        q1n, q2n = critic.apply(one.critic_target, nxt, next_a)
        y = rew + 0.99 * (1 - term) * np.minimum(q1n, q2n)

        def total(actor_p, critic_p):
            q1, q2 = critic.apply(critic_p, obs, act)
            pi = actor.apply(actor_p, obs)
            q = critic.apply(critic_p, obs, pi)[0]
            lam = 2.5 / jax.lax.stop_gradient(jnp.mean(jnp.abs(q)))
            return jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2) - lam * jnp.mean(q) + jnp.mean((pi - act) ** 2)

        ga, gc = jax.grad(total, argnums=(0, 1))(one.actor, one.critic)
        for params, grads, scores in ((one.actor, ga, actor_scores), (one.critic, gc, critic_scores)):
            want, got = _kernels(jax.tree.map(lambda w, g: jnp.abs(w * g), params, grads)), _kernels(scores)
            for k in want:
                np.testing.assert_allclose(got[k][seed], want[k], rtol=1e-4, atol=1e-7)
                assert np.any(want[k] > 0)
    # the masks are the top int(n * 0.3) of these scores per network
    new = agent.rescore(learner, data)
    a = np.concatenate([x[0].ravel() for x in _kernels(actor_scores).values()])
    m = np.concatenate([x[0].ravel() for x in _kernels(new.actor_mask).values()])
    assert m.sum() == int(a.size * 0.3) and a[m == 1].min() >= a[m == 0].max()


def test_scanned_schedule_is_the_sequence_of_rescores_and_updates():
    """mask_every 4, sparse_until 10, policy_freq 2: rescore before updates 1, 5, 9 (t = 0, 4, 8), none at 12; a
    second chunk from t = 16 leaves the masks alone."""
    data = _data()
    _, agent, learner = _agent()
    by_hand = learner
    for t in range(16):
        if t in (0, 4, 8):
            by_hand = agent.rescore(by_hand, data)
            if t == 4:
                first = by_hand.critic_mask
        by_hand, _ = agent.update(by_hand, data, t % 2 == 1)
    scanned, _ = agent.train_chunk(jax.tree.map(jnp.copy, learner), data, 8, 0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), scanned, by_hand)
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, first, scanned.critic_mask)))  # 8 re-pruned
    later, _ = agent.train_chunk(jax.tree.map(jnp.copy, scanned), data, 6, 16)
    jax.tree.map(np.testing.assert_array_equal, (later.actor_mask, later.critic_mask),
                 (scanned.actor_mask, scanned.critic_mask))
    # split at t = 6 (mid-schedule): two chunks equal one
    a, _ = agent.train_chunk(jax.tree.map(jnp.copy, learner), data, 3, 0)
    a, _ = agent.train_chunk(a, data, 5, 6)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), a, scanned)


def test_keep_ratio_1_is_td3_bc():
    data = _data()
    kw = dict(batch_size=16, hidden_dim=16, actor_lr=1e-3, critic_lr=1e-3)
    _, agent, learner = _agent(keep_ratio=1.0, **kw)
    base = td3_bc.make_agent(td3_bc.Args(**kw), OBS, ACT)
    theirs, _ = base.train_chunk(base.init(jnp.stack([jax.random.PRNGKey(s) for s in range(2)])), data, 6)
    ours, _ = agent.train_chunk(learner, data, 6, 0)
    for field in td3_bc.Learner._fields:  # equal up to float32 rounding (XLA fuses the x 1 differently)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), getattr(ours, field),
                     getattr(theirs, field))


# ---------------------------------------------------------------------------------------------
# The command line: errors, resume, the small-data option
# ---------------------------------------------------------------------------------------------
def _pendulum_d4rl(path, n=400, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["observations"], f["next_observations"] = obs[:-1], obs[1:]
        f["actions"] = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["terminals"], f["timeouts"] = np.zeros(n, bool), (np.arange(n) % 100) == 99
    return f"d4rl:{path}"


def _cli(argv):
    runs.cli(sp.Args, sp.train, sp.evaluate_checkpoint, argv=argv)


@pytest.mark.parametrize("flags,message", [
    (["--keep-ratio", "0"], "--keep-ratio must be in (0, 1], got 0.0"),
    (["--keep-ratio", "1.5"], "--keep-ratio must be in (0, 1], got 1.5"),
    (["--keep-ratio", "nan"], "--keep-ratio must be in (0, 1], got nan"),
    (["--keep-ratio", "1e-9"], "--keep-ratio 1e-09 keeps no weight of the actor's 66560"),
    (["--sparse-until", "-1"], "--sparse-until must be >= 0, got -1"),
    (["--mask-every", "0"], "--mask-every must be >= 1, got 0"),
    (["--mask-every", "999"], "--mask-every (999) must be a multiple of --policy-freq (2)"),
    (["--max-transitions", "-5"], "--max-transitions must be >= 0, got -5"),
    (["--max-transitions", "10"], "no trajectory of more than 10 transitions in its first 10"),
])
def test_bad_flags_get_one_line_exit_2_and_write_nothing(flags, message, tmp_path, capsys):
    dataset = _pendulum_d4rl(tmp_path / "p.hdf5")
    with pytest.raises(SystemExit) as e:
        _cli(["--dataset", dataset, "--env-id", "Pendulum-v1", "--results-dir", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: ") and message in err and "\n" not in err, err
    assert not (tmp_path / "r").exists()


def test_resume_is_exact_masks_included(tmp_path):
    """Stopped at its checkpoint of step 40 and resumed to 80, a run ends where one 80-step run does: every
    array of the learner (masks, Adam, key) equal; masks recomputed at 0, 10, ..., 50 span the stop. The small-data
    facts are in config.json."""
    common = ["--dataset", _pendulum_d4rl(tmp_path / "p.hdf5"), "--env-id", "Pendulum-v1", "--eval-freq", "20",
              "--eval-episodes", "1", "--results-dir", str(tmp_path), "--save-model", "--hidden-dim", "16",
              "--batch-size", "32", "--mask-every", "10", "--sparse-until", "60", "--keep-ratio", "0.1",
              "--max-transitions", "250", "--num-seeds", "2"]
    _cli([*common, "--total-timesteps", "80", "--run-name", "long"])
    _cli([*common, "--total-timesteps", "40", "--run-name", "short"])
    _cli(["--resume", str(tmp_path / "short"), "--total-timesteps", "80"])
    args = sp.Args(hidden_dim=16, batch_size=32, num_seeds=2, keep_ratio=0.1)
    template = jax.eval_shape(sp.make_agent(args, 3, 1).init, jnp.stack([jax.random.PRNGKey(s) for s in range(2)]))
    load = lambda run: runs.Checkpoint(str(tmp_path / run), sp.ALGO).load({"learner": template})[0]["learner"]  # noqa
    long, short = load("long"), load("short")
    jax.tree.map(np.testing.assert_array_equal, long, short)
    assert sum(int(x[1].sum()) for x in _kernels(long.critic_mask).values()) == int(672 * 0.1)  # 2 x (4*16+16*16+16)
    rows = lambda run: open(tmp_path / run / "eval.csv").read().splitlines()[1:]  # noqa: E731
    assert [r.split(",")[2:5] for r in rows("short")] == [r.split(",")[2:5] for r in rows("long")]
    info = json.load(open(tmp_path / "long" / "config.json"))["replay_buffer"]["dataset"]
    # rows 0-399, timeouts at 99, 199, 299 (dropped) and 399 (the last row): 396 transitions in 99-step
    # trajectories; the first 250 are 99 + 99 + 52, all kept
    assert info["max_transitions"] == {"n": 250, "cut": 250, "trajectories": 3, "trajectories_kept": 3,
                                         "dropped_short": 0, "dropped_transitions": 0, "min_length": 11,
                                         "transitions": 250, "of": 396}
    assert info["transitions"] == 250


# (steps, end): "term" terminal, "trunc" time limit, "none" the file's end (no flag)
EPISODES = [(12, "term"), (5, "term"), (14, "trunc"), (20, "trunc"), (30, "none")]


def _episodes_file(path):
    rng = np.random.default_rng(3)
    parts = {k: [] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for t, end in EPISODES:
        parts["observations"].append(rng.normal(size=(t, 3)))
        parts["actions"].append(rng.uniform(-2, 2, (t, 1)))
        parts["rewards"].append(np.ones(t))
        parts["terminals"].append(np.arange(t) == t - 1 if end == "term" else np.zeros(t, bool))
        parts["timeouts"].append(np.arange(t) == t - 1 if end == "trunc" else np.zeros(t, bool))
    with h5py.File(path, "w") as f:
        for k, v in parts.items():
            v = np.concatenate(v)
            f[k] = v if v.dtype == bool else v.astype(np.float32)
    return f"d4rl:{path}", np.concatenate(parts["observations"]).astype(np.float32)


def test_max_transitions_cuts_first_then_drops_short_trajectories(tmp_path):
    """Rows: episode 1 = 0-11 (terminal), 2 = 12-16 (terminal), 3 = 17-30 (time limit at 30, dropped), 4 = 31-50
    (time limit at 50, dropped), 5 = 51-80 (the last row dropped): 12 + 5 + 13 + 19 + 29 = 78 transitions, as
    d4rl.qlearning_dataset gives them; transitions 30-48 are rows 31-49."""
    spec, rows = _episodes_file(tmp_path / "e.hdf5")
    full = offline.load(spec, "Pendulum-v1", "drop")
    assert len(full) == 78
    same = offline.load(spec, "Pendulum-v1", "drop", max_transitions=0)  # unset: unchanged
    for a, b in zip(full.arrays(), same.arrays()):
        np.testing.assert_array_equal(a, b)
    assert "max_transitions" not in same.info
    cases = {  # first N -> (kept rows, trajectories cut, kept, short ones dropped, whole kept returns)
        40: (np.r_[0:12, 17:30], 4, 2, 2, [12.0, 13.0]),  # episode 4 cut after 10 transitions: dropped
        41: (np.r_[0:12, 17:30, 31:42], 4, 3, 1, [12.0, 13.0]),  # ... after 11: kept, it bootstraps at the cut
        17: (np.r_[0:12], 2, 1, 1, [12.0]),
        1000: (np.r_[0:12, 17:30, 31:50, 51:80], 5, 4, 1, [12.0, 13.0, 19.0, 29.0]),
    }
    for n, (kept_rows, trajs, kept, short, returns) in cases.items():
        d = offline.load(spec, "Pendulum-v1", "drop", max_transitions=n)
        np.testing.assert_array_equal(d.obs, rows[kept_rows])
        info = d.info["max_transitions"]
        assert (len(d), info["trajectories"], info["trajectories_kept"], info["dropped_short"]) == \
            (len(kept_rows), trajs, kept, short), n
        assert info["cut"] == min(n, 78) and info["transitions"] == len(d)
        np.testing.assert_array_equal(d.episode_returns, returns)
        assert d.terminated.sum() == 1  # episode 1's terminal; episode 2 (terminal) is dropped
        np.testing.assert_array_equal(d.start_obs, rows[[s for s in (0, 17, 31, 51) if s in kept_rows]])
    # the cut trajectory's last transition bootstraps and keeps its true next observation
    d = offline.load(spec, "Pendulum-v1", "drop", max_transitions=41)
    assert d.terminated[-1] == 0 and np.array_equal(d.next_obs[-1], rows[42])


# ---------------------------------------------------------------------------------------------
# Learning (make test-slow)
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sparse_td3_bc_recovers_the_expert_from_2000_transitions(expert):  # noqa: F811  (the imported fixture)
    """Pendulum-v1 expert data (tests/test_offline_learning.py's fixture: a 9,000-step TD3 expert, 10,000
    transitions with noise 0.1), cut to its first 2,000 transitions (10 episodes) by --max-transitions.
    Sparse-Reg TD3+BC at the code's 95% sparsity (keep 0.05, masks at 0 and 1,000 updates, frozen after 2,000)
    trains 3,000 updates; threshold: every seed's return at least 80% of the way from the random policy
    to the data's return (as test_offline_learning.py, about -370 for a -150 dataset), which needs the swing-up
    learned from 10 episodes with 5% of the weights. Measured (2 seeds, 73 s with the expert): returns -199 and
    -184 against the data's -150, i.e. 0.96 and 0.97."""
    args = sp.Args(dataset=base.DATASET, env_id="Pendulum-v1", total_timesteps=3000, eval_freq=3000,
                   eval_episodes=10, num_seeds=2, max_transitions=2000, sparse_until=2000,
                   results_dir=str(expert["dir"]), run_name="sparse")
    out = sp.train(args)
    fraction = base._fraction(out["final_eval"], expert)
    print("sparse returns", out["final_eval"], "fraction", fraction, "data", expert["data_return"])
    # 200-step episodes, the truncated last step dropped: 10 x 199, and the 11th trajectory's 10 transitions dropped
    assert out["dataset"].info["max_transitions"]["transitions"] == 1990
    assert fraction.min() >= base.THRESHOLD, (out["final_eval"], expert)
