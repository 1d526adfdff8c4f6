"""TD7: SALE pieces, LAP, value clipping, copy schedules, and the checkpoint scheduler per seed."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algos import td7
from envs import runs

OBS_DIM, ACT_DIM = 5, 2


def _agent(num_seeds=1, capacity=64, **overrides):
    args = td7.Args(**{"batch_size": 32, "zs_dim": 16, "enc_hdim": 16, "critic_hdim": 16, "actor_hdim": 16,
                       "total_timesteps": capacity, **overrides})
    agent = td7.make_agent(args, OBS_DIM, ACT_DIM)
    learner, buffer, prio = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
    rng = np.random.default_rng(0)
    for _ in range(capacity):  # fill through the real insert, so priorities start at max_priority = 1
        transition = td7.Buffer(rng.normal(size=(num_seeds, OBS_DIM)).astype(np.float32),
                                rng.uniform(-1, 1, (num_seeds, ACT_DIM)).astype(np.float32),
                                rng.normal(size=num_seeds).astype(np.float32),
                                rng.normal(size=(num_seeds, OBS_DIM)).astype(np.float32),
                                (rng.uniform(size=num_seeds) < 0.1).astype(np.float32))
        buffer, prio = agent.add(buffer, prio, transition, np.ones(num_seeds, bool))
    return args, agent, learner, buffer, prio


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _copy(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def _update(args, agent, learner, buffer, prio, mask=None):
    """One training step as the loop issues it (actor / sync variants chosen from the step count)."""
    n = np.asarray(learner.steps).shape[0]
    mask = np.ones(n, bool) if mask is None else mask
    nxt = np.asarray(learner.steps) + 1
    return agent.update(learner, buffer, prio, mask, bool(np.any(mask & (nxt % args.policy_freq == 0))),
                        bool(np.any(mask & (nxt % args.target_update_rate == 0))))


# ---------------------------------------------------------------------------------------------
# Pieces against hand values
# ---------------------------------------------------------------------------------------------
def test_avg_l1_norm():
    x = jnp.array([[1.0, -3.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    out = np.asarray(td7.avg_l1_norm(x))
    np.testing.assert_allclose(out[0], [2 / 3, -2.0, 4 / 3, 0.0], rtol=1e-6)  # mean |x| = 1.5
    np.testing.assert_allclose(np.abs(out[0]).mean(), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(out[1], 0.0)  # the eps floor: no division by zero


def test_lap_huber_value_and_gradient():
    delta = jnp.array([[0.5, 2.0], [1.5, 0.2]])
    # 0.5 d^2 below 1, d above; summed over the two heads, mean over the batch of 2
    assert float(td7.lap_huber(delta)) == pytest.approx(((0.125 + 2.0) + (1.5 + 0.02)) / 2, rel=1e-6)
    grad = np.asarray(jax.grad(td7.lap_huber)(delta))
    np.testing.assert_allclose(grad, np.array([[0.5, 1.0], [1.0, 0.2]]) / 2, rtol=1e-6)


def test_lap_priority():
    delta = jnp.array([[0.5, 0.2], [3.0, 0.1], [0.3, 16.0]])
    np.testing.assert_allclose(td7.lap_priority(delta), [1.0, 3.0**0.4, 16.0**0.4], rtol=1e-6)


def test_lap_sampling_frequencies_follow_priorities():
    priority = jnp.array([1.0, 2.0, 3.0, 4.0, 0.0, 0.0])  # two empty slots at the end
    draws = 1_000_000
    idx = np.asarray(td7.lap_sample(jax.random.PRNGKey(0), priority, draws))
    freq = np.bincount(idx, minlength=6) / draws
    expected = np.array([0.1, 0.2, 0.3, 0.4, 0.0, 0.0])
    # binomial std of a frequency is <= 0.0005 here; allow 5 of them
    np.testing.assert_allclose(freq, expected, atol=0.0025)
    assert freq[4:].sum() == 0.0  # empty slots are never drawn


def test_lap_sampling_across_blocks():
    """Over several sampler blocks (a zero block, a partial last one) frequencies follow the priorities."""
    n = 3 * td7.SAMPLE_BLOCK + 17
    rng = np.random.default_rng(1)
    priority = (rng.random(n) ** 2 + 0.01).astype(np.float32)
    priority[td7.SAMPLE_BLOCK:2 * td7.SAMPLE_BLOCK] = 0.0
    priority[-5:] = 0.0  # empty slots at the end, as in a buffer still filling
    draws = 400_000
    idx = np.asarray(jax.jit(td7.lap_sample, static_argnums=2)(jax.random.PRNGKey(4), jnp.asarray(priority), draws))
    expected = priority / priority.sum()
    freq = np.bincount(idx, minlength=n) / draws
    assert np.all(np.abs(freq - expected) <= 5 * np.sqrt(expected * (1 - expected) / draws) + 1e-12)
    assert freq[priority == 0].sum() == 0.0


def test_td7_target_clips_the_bootstrap_to_the_frozen_range():
    q_next = jnp.array([[5.0, 7.0], [-4.0, 1.0], [2.0, 3.0]])
    y = td7.td7_target(jnp.array([1.0, 1.0, 1.0]), jnp.array([0.0, 0.0, 1.0]), q_next, jnp.array([-1.0, 3.0]), 0.5)
    # min heads 5 -> clipped to 3; -4 -> clipped to -1; terminal -> reward only
    np.testing.assert_allclose(y, [1 + 0.5 * 3, 1 - 0.5, 1.0], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# The update: value clip bounds, copies, priorities, the actor on both heads
# ---------------------------------------------------------------------------------------------
def test_clip_bounds_zero_for_the_first_interval_then_the_observed_range():
    args, agent, learner, buffer, prio = _agent(target_update_rate=3)
    rewards = np.asarray(buffer.reward[0])
    seen = []
    for step in (1, 2, 3):
        learner, prio, m = _update(args, agent, learner, buffer, prio)
        seen.append(rewards[np.asarray(m["idx"][0])])
        if step < 3:
            np.testing.assert_array_equal(learner.value_clip[0], [0.0, 0.0])
    # with the clip at [0, 0] every target is the reward alone, so the range is that of the sampled rewards
    seen = np.concatenate(seen)
    np.testing.assert_allclose(learner.value_range[0], [seen.min(), seen.max()], rtol=1e-6)
    np.testing.assert_allclose(learner.value_clip[0], [seen.min(), seen.max()], rtol=1e-6)
    # after the snapshot the bounds stay frozen while the running range keeps moving
    frozen = np.asarray(learner.value_clip[0])
    learner, prio, _ = _update(args, agent, learner, buffer, prio)
    np.testing.assert_array_equal(learner.value_clip[0], frozen)


def test_copy_schedule_of_encoders_and_targets_and_max_priority_reset():
    args, agent, learner, buffer, prio = _agent(target_update_rate=3)
    init = _copy(learner)
    live = {}
    for step in range(1, 7):
        learner, prio, _ = _update(args, agent, learner, buffer, prio)
        live[step] = _copy(learner)
        if step in (1, 2):  # nothing copied yet
            for name in ("fixed_encoder", "fixed_encoder_target", "actor_target", "critic_target"):
                assert _same(getattr(learner, name), getattr(init, name)), (step, name)
            assert not _same(learner.encoder, init.encoder)
        if step == 3:
            assert _same(learner.fixed_encoder, live[3].encoder)
            assert _same(learner.fixed_encoder_target, init.fixed_encoder)  # the copy before: the initial one
            assert _same(learner.actor_target, live[3].actor) and _same(learner.critic_target, live[3].critic)
            # max priority reset to the largest stored priority (it only grew before)
            assert float(prio.max[0]) == pytest.approx(float(np.max(prio.value[0])))
        if step in (4, 5):
            assert _same(learner.fixed_encoder, live[3].encoder)
            assert _same(learner.actor_target, live[3].actor)
    assert _same(learner.fixed_encoder, live[6].encoder)
    assert _same(learner.fixed_encoder_target, live[3].encoder)
    assert _same(learner.critic_target, live[6].critic)


def test_priorities_of_the_sampled_transitions_are_rewritten():
    args, agent, learner, buffer, prio = _agent()
    before = np.asarray(prio.value[0]).copy()
    np.testing.assert_array_equal(before, 1.0)  # every insert got max_priority = 1
    learner, prio, m = _update(args, agent, learner, buffer, prio)
    idx = np.unique(np.asarray(m["idx"][0]))
    after = np.asarray(prio.value[0])
    untouched = np.setdiff1d(np.arange(before.size), idx)
    np.testing.assert_array_equal(after[untouched], 1.0)
    assert np.all(after[idx] >= 1.0) and float(prio.max[0]) == pytest.approx(after.max())


def test_actor_step_uses_the_mean_of_both_heads():
    args, agent, learner, buffer, prio = _agent()
    actor0, actor_opt0 = _copy(learner.actor), _copy(learner.actor_opt)
    learner, prio, _ = _update(args, agent, learner, buffer, prio)  # step 1: critic only
    assert _same(learner.actor, actor0)
    learner, prio, m = _update(args, agent, learner, buffer, prio)  # step 2: the first actor step
    idx = np.asarray(m["idx"][0])
    one = lambda tree: jax.tree.map(lambda x: x[0], tree)  # noqa: E731
    enc, critic_p = one(learner.fixed_encoder), one(learner.critic)
    obs = buffer.obs[0][idx]
    encoder, actor, critic = td7.Encoder(16, 16), td7.Actor(ACT_DIM, 16), td7.Critic(16)
    zs = encoder.apply(enc, obs, method=td7.Encoder.zs)

    def loss(params, heads):
        a = actor.apply(params, obs, zs)
        q = critic.apply(critic_p, obs, a, encoder.apply(enc, zs, a, method=td7.Encoder.zsa), zs)
        return -q[:, heads].mean()

    def adam_step(heads):
        tx = optax.adam(args.actor_lr)
        params = one(actor0)
        updates, _ = tx.update(jax.grad(loss)(params, heads), one(actor_opt0), params)
        return optax.apply_updates(params, updates)

    got = one(learner.actor)
    both, q1 = adam_step(slice(0, 2)), adam_step(slice(0, 1))
    for g, b in zip(jax.tree.leaves(got), jax.tree.leaves(both)):
        np.testing.assert_allclose(g, b, rtol=1e-4, atol=1e-6)
    assert not all(np.allclose(g, b, rtol=1e-4, atol=1e-6) for g, b in zip(jax.tree.leaves(got), jax.tree.leaves(q1)))


def test_masked_seed_is_left_untouched_and_the_other_matches_a_lone_update():
    args, agent, learner, buffer, prio = _agent(num_seeds=2)
    before = _copy((learner, prio))
    learner_m, prio_m, _ = _update(args, agent, jax.tree.map(jnp.array, before[0]), buffer,
                                   jax.tree.map(jnp.array, before[1]), mask=np.array([False, True]))
    for new, old in zip(jax.tree.leaves((learner_m, prio_m)), jax.tree.leaves(before)):
        np.testing.assert_array_equal(new[0], old[0])
    learner_a, prio_a, _ = _update(args, agent, jax.tree.map(jnp.array, before[0]), buffer, jax.tree.map(jnp.array, before[1]))
    for a, b in zip(jax.tree.leaves((learner_m, prio_m)), jax.tree.leaves((learner_a, prio_a))):
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5, atol=1e-6)


def test_network_shapes_init_and_avg_l1_norm_placement():
    args, agent, learner, _, _ = _agent()
    enc = jax.tree.map(lambda x: x[0], learner.encoder)["params"]
    # PyTorch default init: U(+-1/sqrt(fan_in)) for weights and biases
    for name, fan_in in (("zs1", OBS_DIM), ("zsa1", 16 + ACT_DIM)):
        for w in (enc[name]["kernel"], enc[name]["bias"]):
            bound = 1 / np.sqrt(fan_in)
            assert np.abs(w).max() <= bound and np.abs(w).max() > 0.8 * bound
    critic = jax.tree.map(lambda x: x[0], learner.critic)["params"]
    assert set(critic) == {"QHead_0", "QHead_1"}
    assert critic["QHead_0"]["Linear_1"]["kernel"].shape == (16 + 2 * 16, 16)  # (h, zsa, zs) -> hidden
    # zs has unit mean |.| (AvgL1Norm on f's output); zsa does not
    e = td7.Encoder(16, 16)
    obs = jax.random.normal(jax.random.PRNGKey(0), (4, OBS_DIM)) * 5
    zs = e.apply(jax.tree.map(lambda x: x[0], learner.encoder), obs, method=td7.Encoder.zs)
    np.testing.assert_allclose(np.abs(zs).mean(-1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The checkpoint scheduler
# ---------------------------------------------------------------------------------------------
def _schedule(**kw):
    return td7.Schedule(**{"learning_starts": 10, **kw})


def test_schedule_waits_for_the_first_episode_after_learning_starts_then_trains_on_the_next():
    s = _schedule()
    # episodes ending at t = 6 and 11 (t - 1 = 10 >= 10 turns training on); no burst for either
    assert s.episode_end(6, 6, 1.0) == (0, False) and not s.allow_train
    assert s.episode_end(11, 5, 1.0) == (0, False) and s.allow_train
    # the first policy episode (untrained actor) becomes the checkpoint; a burst of its length follows
    assert s.episode_end(18, 7, -3.0) == (7, True)
    assert s.best_min_return == -3.0 and s.training_steps == 7


def test_schedule_early_stop_and_checkpoint_save():
    s = _schedule()
    s.episode_end(11, 11, 0.0)
    assert s.episode_end(16, 5, 2.0) == (5, True)  # checkpoint, best = 2
    assert s.episode_end(20, 4, 1.0) == (4, False)  # 1 < 2: early stop, no save, burst of 4
    assert s.best_min_return == 2.0
    assert s.episode_end(26, 6, 2.5) == (6, True)  # 2.5 >= 2: saved
    assert s.events == [(16, "checkpoint", 5), (20, "early_stop", 4), (26, "checkpoint", 6)]
    assert s.training_steps == 15


def test_schedule_switch_to_longer_assessments_after_steps_before_checkpointing():
    s = _schedule(steps_before_checkpointing=8, max_eps_when_checkpointing=3, reset_weight=0.5)
    s.episode_end(11, 11, 0.0)
    assert s.episode_end(16, 5, 4.0) == (5, True)  # training_steps 0 -> 5: 8 not crossed
    assert s.max_eps_before_update == 1
    assert s.episode_end(21, 5, 6.0) == (5, True)  # 5 -> 10 crosses 8 during the burst
    assert s.max_eps_before_update == 3 and s.best_min_return == 3.0  # 6 * 0.5
    # now three assessment episodes per checkpoint: no burst until the third...
    assert s.episode_end(25, 4, 5.0) == (0, False)
    assert s.episode_end(30, 5, 3.5) == (0, False)
    assert s.episode_end(36, 6, 4.0) == (15, True)  # min 3.5 >= 3.0: save; burst = 4 + 5 + 6
    assert s.best_min_return == 3.5
    # ...unless one drops below the best: early stop after 2 episodes
    assert s.episode_end(40, 4, 9.0) == (0, False)
    assert s.episode_end(43, 3, 1.0) == (7, False)
    assert s.training_steps == 32


def test_schedule_switch_at_the_exact_boundary_waits_for_the_next_burst():
    # the authors check training_steps == 10 before each update of a burst: a burst ending at 10
    # does not see it, the next burst's first update does
    s = _schedule(steps_before_checkpointing=10, max_eps_when_checkpointing=4)
    s.episode_end(11, 11, 0.0)
    s.episode_end(21, 10, 1.0)
    assert s.training_steps == 10 and s.max_eps_before_update == 1
    s.episode_end(24, 3, 1.0)
    assert s.max_eps_before_update == 4


def test_schedule_without_checkpoints_owes_one_update_per_step():
    s = _schedule(checkpoints=False)
    assert s.step() == 0
    s.episode_end(11, 11, 0.0)
    assert s.step() == 1 and s.episode_end(15, 4, -1.0) == (0, False) and s.events == []


# ---------------------------------------------------------------------------------------------
# Whole runs: vmapped seeds follow their own schedules exactly
# ---------------------------------------------------------------------------------------------
def _reference_schedule(stream, learning_starts, steps_before, max_eps_when, reset_weight, eval_points):
    """The authors' online loop (main.train_online + TD7.maybe_train_and_checkpoint) written out
    plainly over one seed's episode stream [(end step, length, return)]. Returns the bursts
    [(end step, kind, updates)], the training steps, and per evaluation point the number of
    training steps the evaluated checkpoint policy had."""
    allow_train, training_steps = False, 0
    eps, ts, max_eps, min_ret, best = 0, 0, 1, 1e8, -1e8
    ckpt_steps, bursts, evaluated = 0, [], {}
    ends = {end: (length, ret) for end, length, ret in stream}
    for t in range(max(eval_points) + 1):
        if t in eval_points:
            evaluated[t] = ckpt_steps
        if t + 1 in ends:  # the episode ends with the step taken at index t
            length, ret = ends[t + 1]
            if allow_train:
                eps, ts, min_ret = eps + 1, ts + length, min(min_ret, ret)
                kind = None
                if min_ret < best:
                    kind = "early_stop"
                elif eps == max_eps:
                    best, kind, ckpt_steps = min_ret, "checkpoint", training_steps
                if kind:
                    for _ in range(ts):
                        if training_steps == steps_before:
                            best *= reset_weight
                            max_eps = max_eps_when
                        training_steps += 1
                    bursts.append((t + 1, kind, ts))
                    eps, ts, min_ret = 0, 0, 1e8
            if t >= learning_starts:
                allow_train = True
    return bursts, training_steps, evaluated


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("overlap_steps", [0, 3], ids=["act-first", "overlap"])
def test_vmapped_seeds_follow_their_own_checkpoint_schedules(tmp_path, overlap_steps):
    """ScriptEnv gives each seed its own stream of episode lengths and returns; a 3-seed run must
    do, per seed, the bursts, updates and checkpoint evaluations of the reference loop on that
    seed's stream (scaled down: switch after 60 training steps, 3 assessment episodes)."""
    cfg = dict(env_id="ScriptEnv-v0", num_seeds=3, total_timesteps=240, learning_starts=20, eval_freq=40,
               eval_episodes=1, batch_size=8, zs_dim=8, enc_hdim=8, critic_hdim=8, actor_hdim=8,
               steps_before_checkpointing=60, max_eps_when_checkpointing=3, target_update_rate=10,
               results_dir=str(tmp_path), run_name="sched")
    out = td7.train(td7.Args(**cfg, overlap_steps=overlap_steps))
    run_dir = out["run_dir"]
    episodes, evals = _rows(os.path.join(run_dir, "train_episodes.csv")), _rows(os.path.join(run_dir, "eval.csv"))
    bursts_csv = _rows(os.path.join(run_dir, "checkpoints.csv"))
    eval_points = set(range(0, 241, 40))
    kinds = set()
    for i, seed in enumerate((0, 1, 2)):
        stream = [(int(r["step"]), int(r["episode_length"]), float(r["episode_return"])) for r in episodes
                  if int(r["seed"]) == seed]
        bursts, training_steps, evaluated = _reference_schedule(stream, 20, 60, 3, 0.9, eval_points)
        got = [(int(r["step"]), r["event"], int(r["updates"])) for r in bursts_csv if int(r["seed"]) == seed]
        assert got == bursts, f"seed {seed}"
        kinds |= {k for _, k, _ in bursts}
        # the device did exactly the scheduled updates (bursts due at the very end included)
        assert int(out["training_steps"][i]) == training_steps == int(np.asarray(out["learner"].steps)[i])
        got_eval = {int(r["step"]): int(r["policy_updates"]) for r in evals if int(r["seed"]) == seed}
        assert got_eval == evaluated, f"seed {seed}"
        assert out["schedules"][i].max_eps_before_update == (3 if training_steps > 60 else 1)
    assert kinds == {"checkpoint", "early_stop"}  # both branches exercised
    streams = [[(int(r["step"]), int(r["episode_length"])) for r in episodes if int(r["seed"]) == s] for s in (0, 1, 2)]
    assert streams[0] != streams[1] != streams[2]  # different streams, so the seeds really diverge
    if overlap_steps == 0:  # acting first: a seed is masked only while the others finish their last bursts
        assert out["masking"]["masked_update_fraction"] < 0.1


def test_no_checkpoints_trains_every_step_after_the_first_episode_past_learning_starts(tmp_path):
    cfg = dict(env_id="ScriptEnv-v0", num_seeds=2, total_timesteps=100, learning_starts=20, eval_freq=50,
               eval_episodes=1, batch_size=8, zs_dim=8, enc_hdim=8, critic_hdim=8, actor_hdim=8, checkpoints=False,
               results_dir=str(tmp_path), run_name="nock")
    out = td7.train(td7.Args(**cfg))
    episodes = _rows(os.path.join(out["run_dir"], "train_episodes.csv"))
    for i in range(2):
        first = min(int(r["step"]) for r in episodes if int(r["seed"]) == i and int(r["step"]) - 1 >= 20)
        assert int(out["training_steps"][i]) == 100 - first
    assert not _rows(os.path.join(out["run_dir"], "checkpoints.csv"))


SMALL = dict(env_id="CountEnv-v0", num_seeds=2, total_timesteps=160, learning_starts=20, eval_freq=40,
             eval_episodes=1, batch_size=8, zs_dim=8, enc_hdim=8, critic_hdim=8, actor_hdim=8,
             steps_before_checkpointing=50, max_eps_when_checkpointing=3, target_update_rate=10)


def _eval_table(run_dir):
    return [(r["seed"], r["step"], r["return"], r["policy_updates"]) for r in _rows(os.path.join(run_dir, "eval.csv"))]


def test_same_seed_twice_is_identical_and_a_crashed_run_resumes_to_the_same_results(tmp_path, monkeypatch):
    full = td7.train(td7.Args(**SMALL, results_dir=str(tmp_path), run_name="full"))
    again = td7.train(td7.Args(**SMALL, results_dir=str(tmp_path), run_name="again"))
    assert _eval_table(full["run_dir"]) == _eval_table(again["run_dir"])
    assert len({r[2] for r in _eval_table(full["run_dir"])}) > 2  # the evaluated policies do change
    assert len({r[3] for r in _eval_table(full["run_dir"])}) > 2

    saves, original = [], runs.Run.save

    def crash_after_second_save(*a, **kw):  # a crash right after the 2nd checkpoint (mid-run)
        original(*a, **kw)
        saves.append(1)
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runs.Run, "save", crash_after_second_save)
    with pytest.raises(KeyboardInterrupt):
        td7.train(td7.Args(**SMALL, results_dir=str(tmp_path), run_name="crashed", save_model=True))
    monkeypatch.setattr(runs.Run, "save", original)
    run_dir = str(tmp_path / "crashed")
    resumed = td7.train(td7.Args(resume=run_dir))
    assert _eval_table(run_dir) == _eval_table(full["run_dir"])
    for name in ("train_episodes.csv", "checkpoints.csv"):
        assert _rows(os.path.join(run_dir, name)) == _rows(os.path.join(full["run_dir"], name)), name
    np.testing.assert_array_equal(resumed["training_steps"], full["training_steps"])
    # eval-only on the final checkpoint: the checkpoint policy scores its last logged return
    returns = td7.evaluate_checkpoint(td7.Args(eval_only=True, checkpoint=run_dir, eval_episodes=1))
    last = {r[0]: float(r[2]) for r in _eval_table(run_dir) if int(r[1]) == SMALL["total_timesteps"]}
    np.testing.assert_allclose(returns, [last["0"], last["1"]], rtol=1e-5)


def test_nan_loss_stops_with_a_clear_error_and_keeps_results(tmp_path):
    with pytest.raises(FloatingPointError, match="non-finite"):
        td7.train(td7.Args(**SMALL, critic_lr=1e30, encoder_lr=1e30, results_dir=str(tmp_path), run_name="nan"))
    rows = _eval_table(tmp_path / "nan")
    assert rows and all(np.isfinite(float(r[2])) for r in rows)
