"""DR.Q (algos/drq.py): its changes to MR.Q on hand values, the faded replay, and whole runs.

Everything DR.Q shares with MR.Q is tested in tests/test_mrq.py; `test_shared_code_is_mrq_verbatim`
pins that the shared code is still the same text, so those tests cover this file too."""

import dataclasses
import inspect
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import test_mrq
from algos import drq, mrq

TINY = dict(batch_size=8, zs_dim=32, zsa_dim=32, za_dim=16, enc_hdim=32, value_hdim=32, policy_hdim=32)

# docs/facts.md#drq-hyperparameters (ALGORITHMS.md 9.1): name -> (MR.Q, DR.Q); None = not a setting there
CHANGED = {
    "enc_hdim": (512, 750),
    "enc_lr": (1e-4, 3e-4),
    "enc_wd": (1e-4, 0.01),
    "value_wd": (1e-4, 0.01),
    "policy_wd": (1e-4, 0.01),
    "value_grad_clip": (20.0, None),  # DR.Q: no clip
    "pre_activ_weight": (1e-5, None),  # DR.Q: no pre-activation penalty
    "done_weight": (0.1, None),  # DR.Q: no termination loss
    "infonce_weight": (None, 0.1),
    "infonce_temperature": (None, 0.1),
    "forget_decay": (None, 0.9999),
    "forget_floor": (None, 0.1),
}
# every other hyperparameter of the table is MR.Q's
SAME = {"batch_size": 256, "buffer_size": 1_000_000, "discount": 0.99, "target_update_freq": 250,
        "learning_starts": 10_000, "exploration_noise": 0.2, "target_policy_noise": 0.2, "noise_clip": 0.3,
        "dyn_weight": 1.0, "reward_weight": 0.1, "alpha": 0.4, "min_priority": 1.0, "enc_horizon": 5, "q_horizon": 3,
        "zs_dim": 512, "za_dim": 256, "zsa_dim": 512, "pixel_augs": True, "value_hdim": 512, "value_lr": 3e-4,
        "policy_hdim": 512, "policy_lr": 3e-4, "gumbel_tau": 10.0, "num_bins": 65, "eval_episodes": 10}
# deviation flags of each file (off by default)
FLAGS = {"mrq": {"original_terminal_reward": False, "original_terminal_next_state": False, "original_reward_scale": False,
                 "train_epsilon": 0.0},
         "drq": {"original_infonce_mask": False}}


def test_hyperparameter_table_is_the_files_defaults():
    d, m = drq.Args(), mrq.Args()
    for name, (m_value, d_value) in CHANGED.items():
        assert getattr(m, name, None) == m_value, name
        assert getattr(d, name, None) == d_value, name
    for name, value in SAME.items():
        assert getattr(d, name) == getattr(m, name) == value, name
    for module, args in (("mrq", m), ("drq", d)):
        for name, value in FLAGS[module].items():
            assert getattr(args, name) == value
    # the two Args differ by the table and the deviation flags, nothing else
    fields = lambda a: {f.name for f in dataclasses.fields(a)}  # noqa: E731
    assert fields(d) - fields(m) == {k for k, (mv, dv) in CHANGED.items() if mv is None} | set(FLAGS["drq"])
    assert fields(m) - fields(d) == {k for k, (mv, dv) in CHANGED.items() if dv is None} | set(FLAGS["mrq"])
    assert drq.PRESETS == mrq.PRESETS


def test_shared_code_is_mrq_verbatim():
    """The code DR.Q does not change is the text of mrq.py, so `diff algos/mrq.py algos/drq.py` shows
    DR.Q's changes only (and tests/test_mrq.py covers the rest)."""
    shared = ["suite_of", "resolve_presets", "symlog", "symexp", "reward_bins", "two_hot", "two_hot_decode",
              "two_hot_cross_entropy", "_layer_norm", "_layer_norm_fwd", "_layer_norm_bwd", "_elu_jvp", "dense", "MLP",
              "count_params", "Encoder", "Policy", "Value", "replay_mean_abs_reward", "huber", "lap_priority",
              "Learner", "Nets", "learner_init", "target_action", "random_shift", "Transition", "Agent",
              "replay_slots", "schedule", "_make_envs", "_agent_for", "_eval_policy", "split_replay", "train",
              "evaluate_checkpoint"]
    for name in shared:
        assert inspect.getsource(getattr(drq, name)) == inspect.getsource(getattr(mrq, name)), name


def test_parameter_count_on_halfcheetah():
    """MR.Q's networks with a 750-wide encoder (docs/facts.md#drq-hyperparameters) on HalfCheetah-v4
    (17-dim states, 6 actions): 4,889,432, counted layer by layer."""
    key = jax.random.PRNGKey(0)
    enc = drq.Encoder(pixels=False, hidden=750).init(key, jnp.zeros((1, 17)), jnp.zeros((1, 6)))
    pol = drq.Policy(6).init(key, jnp.zeros((1, 512)))
    val = drq.Value().init(key, jnp.zeros((1, 512)))
    mlp = lambda i, o, h=512: (i * h + h) + (h * h + h) + (h * o + o)  # noqa: E731
    encoder = mlp(17, 512, 750) + (6 * 256 + 256) + mlp(768, 512, 750) + (512 * 578 + 578)
    assert [drq.count_params(p) for p in (enc, pol, val)] == [encoder, mlp(512, 6), 2 * (mlp(512, 512) + 513)]
    assert encoder + mlp(512, 6) + 2 * (mlp(512, 512) + 513) == 4_889_432


# ---------------------------------------------------------------------------------------------
# The changed losses on hand values
# ---------------------------------------------------------------------------------------------
def test_info_nce_on_hand_values():
    # orthogonal unit directions, norms and scale irrelevant: logits = diag(1 / T)
    pred = jnp.array([[3.0, 0.0], [0.0, 0.5]])
    target = jnp.array([[2.0, 0.0], [0.0, 7.0]])
    np.testing.assert_allclose(drq.info_nce(pred, target, 0.1), [math.log1p(math.exp(-10))] * 2, atol=1e-7)  # float32 near 0
    np.testing.assert_allclose(drq.info_nce(pred, target, 1.0), [math.log1p(math.exp(-1))] * 2, rtol=1e-6)
    # the diagonal does not dominate row 1 (its prediction matches target 0): -log(e^0 / (e^10 + e^0))
    wrong = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(drq.info_nce(wrong, target, 0.1), [math.log1p(math.exp(-10)), math.log1p(math.exp(10))],
                               rtol=1e-5, atol=1e-7)
    # three samples, cosine similarities worked out by hand: rows of [[1, 0], [0.6, 0.8], [0, 1]]
    p = jnp.array([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])
    sims = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.8], [0.0, 0.8, 1.0]])
    expect = [-(s[i] / 0.5) + math.log(np.exp(s / 0.5).sum()) for i, s in enumerate(sims)]
    np.testing.assert_allclose(drq.info_nce(p, p, 0.5), expect, rtol=1e-5)


def test_value_target_and_policy_loss_have_no_scaling_and_no_penalty():
    # y = R + mask * gamma^3 * Q': 2 + 0.5^3 * 8 = 3 with the bootstrap, 2 without
    y = drq.value_target(jnp.array([2.0, 2.0]), jnp.array([1.0, 0.0]), jnp.array([8.0, 8.0]), 0.5, 3)
    np.testing.assert_allclose(y, [3.0, 2.0])
    np.testing.assert_allclose(drq.policy_loss(jnp.array([[1.0, 4.0], [1.0, 1.5]])), -1.875)
    # the value optimiser is plain AdamW (lr 3e-4, decay 0.01): a huge gradient is not clipped. Two steps
    # of different sizes (Adam's first step alone is scale-free, so it could not tell a clip apart)
    params, grads = {"w": jnp.ones(3)}, [{"w": jnp.array([1e4, -1e4, 0.0])}, {"w": jnp.array([1.0, 2.0, -1.0])}]

    def two_steps(tx):
        state, out = tx.init(params), []
        for g in grads:
            u, state = tx.update(g, state, params)
            out.append(u["w"])
        return np.concatenate(out)

    ours = two_steps(drq.make_nets(False, 3, False).value_tx)
    np.testing.assert_allclose(ours, two_steps(optax.adamw(3e-4, weight_decay=0.01)), rtol=1e-6)
    clipped = two_steps(optax.chain(optax.clip_by_global_norm(20.0), optax.adamw(3e-4, weight_decay=0.01)))
    assert not np.allclose(ours, clipped, rtol=1e-3)  # MR.Q's clip would show


def test_multi_step_return_is_exclusive_against_mrqs_inclusive_form():
    """Windows of 3 rewards [1, 2, 8], gamma 0.5. A termination counts its own reward and nothing after
    it (the slots after it may hold the next episode). MR.Q's authors' form weights each reward by its
    own not-done flag: it drops the terminal reward and keeps the next episode's."""
    r = jnp.array([[1.0, 2.0, 8.0]] * 4)
    nd = jnp.array([[1.0, 1.0, 1.0],  # no end (a truncation is stored as not done: it bootstraps)
                    [1.0, 0.0, 1.0],  # terminates at step 1; step 2 is the next episode
                    [0.0, 0.0, 1.0],  # terminates at step 0; the final-observation slot, then the next episode
                    [1.0, 1.0, 0.0]])  # terminates at step 2
    ret, mask = drq.multi_step_return(r, nd, 0.5)
    np.testing.assert_allclose(ret, [4.0, 2.0, 1.0, 4.0])
    np.testing.assert_array_equal(mask, [1.0, 0.0, 0.0, 0.0])
    inclusive, mask_m = mrq.multi_step_return(r, nd, 0.5, terminal_reward=False)
    np.testing.assert_allclose(inclusive, [4.0, 3.0, 2.0, 2.0])  # drops the terminal reward, keeps the next episode's
    np.testing.assert_array_equal(mask_m, mask)
    np.testing.assert_allclose(mrq.multi_step_return(r, nd, 0.5)[0], ret)  # MR.Q's default here is DR.Q's form


def test_rl_update_ignores_the_reward_scale():
    """DR.Q's targets and priorities are in reward units: learners that differ only in their reward
    scales (MR.Q divides by one and multiplies by the other) update identically."""
    nets = drq.make_nets(False, 3, False, zs_dim=16, za_dim=8, zsa_dim=16, enc_hidden=16, value_hidden=16,
                         policy_hidden=16)
    learner = drq.learner_init(nets, jax.random.PRNGKey(0), jnp.zeros(6), 3)
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    obs, act = jax.random.normal(k[0], (32, 4, 6)), jnp.tanh(jax.random.normal(k[1], (32, 3, 3)))
    rew, nd = 50.0 * jax.random.normal(k[2], (32, 3)), jnp.ones((32, 3))
    step = jax.jit(lambda l: drq.rl_update(nets, l, obs, act, rew, nd))
    a, prio_a, m_a = step(learner._replace(reward_scale=jnp.array(1.0), target_reward_scale=jnp.array(1.0)))
    b, prio_b, m_b = step(learner._replace(reward_scale=jnp.array(37.0), target_reward_scale=jnp.array(0.0)))
    np.testing.assert_array_equal(prio_a, prio_b)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, (a.value, a.policy), (b.value, b.policy)))
    # rewards of +-50 and untrained values near 0: |TD errors| are reward-sized, not scaled down
    assert float(jnp.median(prio_a)) > 2.0 ** 0.4 and float(m_a["value_loss"]) == float(m_b["value_loss"])


def test_encoder_loss_adds_masked_info_nce_and_drops_the_done_term():
    enc, params, target, obs, act, rew = test_mrq._encoder_setup(module=drq)
    bins = drq.reward_bins()
    nd = jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])  # two windows terminate
    total, parts = drq.encoder_loss(enc, params, target, obs, act, rew, nd, bins)
    original, parts_o = drq.encoder_loss(enc, params, target, obs, act, rew, nd, bins, original_infonce_mask=True)
    zs = enc.apply(params, obs[:, 0], method=drq.Encoder.f)
    mask, expect, expect_o, nce_sum = jnp.ones(4), 0.0, 0.0, 0.0
    for i in range(3):
        _, zs, r = enc.apply(params, enc.apply(params, zs, act[:, i], method=drq.Encoder.g),
                             method=drq.Encoder.predict)
        tgt = enc.apply(target, obs[:, i + 1], method=drq.Encoder.f)  # the target encoder on s_{i+1}
        base = ((zs - tgt) ** 2 * mask[:, None]).mean() + 0.1 * (mrq.two_hot_cross_entropy(r, rew[:, i], bins)
                                                                  * mask).mean()
        nce = drq.info_nce(zs, tgt, 0.1)
        expect += base + 0.1 * (nce * mask).mean()  # per sample, masked after a termination
        expect_o += base + 0.1 * (nce[None, :] * mask[:, None]).mean()  # the authors' [B] x [B, 1] broadcast
        nce_sum += (nce * mask).mean()
        mask = mask * nd[:, i]
    np.testing.assert_allclose(total, expect, rtol=1e-5)
    np.testing.assert_allclose(original, expect_o, rtol=1e-5)
    np.testing.assert_allclose(parts["infonce"], nce_sum, rtol=1e-5)
    assert set(parts) == {"dyn", "reward", "infonce"} and float(original) != pytest.approx(float(total))
    # the termination output of the model head gets no gradient (DR.Q has no done loss)
    grads = jax.grad(lambda p: drq.encoder_loss(enc, p, target, obs, act, rew, nd, bins)[0])(params)
    model = grads["params"]["model"]
    assert float(jnp.abs(model["kernel"][:, 0]).max()) == 0.0 and float(model["bias"][0]) == 0.0
    assert float(jnp.abs(model["kernel"][:, 1:]).max()) > 0.0
    # all windows terminating at step 0: nothing after it matters
    nd0 = jnp.ones((4, 3)).at[:, 0].set(0.0)
    base = drq.encoder_loss(enc, params, target, obs, act, rew, nd0, bins)[0]
    again = drq.encoder_loss(enc, params, target, obs.at[:, 2:].set(99.0), act.at[:, 1:].set(0.3),
                             rew.at[:, 1:].set(-7.0), nd0, bins)[0]
    np.testing.assert_allclose(again, base, rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Faded prioritised replay
# ---------------------------------------------------------------------------------------------
def _fill(buf, episodes, horizon=1):
    return test_mrq._fill(buf, episodes, horizon, 1, module=drq)


def test_forget_weights_after_k_adds_match_the_authors_decay_loop():
    """The authors multiply every weight by 0.9999 at each stored step and set the new slot's to 1;
    here a counter gives the same weights (float64 loop vs float32 power: rtol 1e-5)."""
    episodes = [(40, "terminated"), (25, "truncated"), (30, "terminated")]
    buf = _fill(drq.replay_init(200, (3,), jnp.float32, 1), episodes)
    literal, slot = np.zeros(200), 0
    for length, _ in episodes:
        for _ in range(length):
            literal *= 0.9999
            literal[slot] = 1.0
            slot += 1
        slot += 1  # the final observation's slot: never a start
    assert int(buf.adds) == 95
    one = buf._replace(priority=jnp.ones(200), valid=jnp.asarray(literal > 0))
    w = np.asarray(drq.replay_weight(one, jnp.arange(200)))
    np.testing.assert_allclose(w, literal, rtol=1e-5)
    assert w[0] == pytest.approx(0.9999 ** 94) and w[slot - 2] == 1.0


def test_forget_weights_after_the_buffer_wraps():
    """A 16-slot ring filled by 40 steps of terminated and truncated episodes: an overwritten slot's
    weight starts again at 1, and every stored transition's weight is the authors' loop's (each add
    decays all weights, then sets the written slot's to 1; an episode end skips its final slot)."""
    episodes = [(5, "terminated"), (7, "truncated"), (3, "terminated"), (9, "truncated"), (6, "terminated"),
                (10, "truncated")]
    buf = _fill(drq.replay_init(16, (3,), jnp.float32, 1), episodes)
    literal, slot = np.zeros(16), 0
    for length, _ in episodes:
        for _ in range(length):
            literal *= 0.9999
            literal[slot % 16] = 1.0
            slot += 1
        slot += 1
    assert int(buf.adds) == 40 and slot > 2 * 16  # the ring wrapped twice
    steps = np.asarray(buf.is_step)
    w = np.asarray(drq.replay_weight(buf._replace(priority=jnp.ones(16), valid=jnp.ones(16, bool)), jnp.arange(16)))
    np.testing.assert_allclose(w[steps], literal[steps], rtol=1e-5)
    assert w[steps].max() == 1.0  # the newest transition


def test_forget_flags_reach_the_sampler_of_a_run():
    """--forget-decay and --forget-floor are what the training step samples with: the burst's
    distribution totals priority x valid x clip(decay^age, floor, 1) of the run's own buffer."""
    args = drq.Args(env_id="Pendulum-v1", total_timesteps=400, learning_starts=1000, forget_decay=0.99,
                    forget_floor=0.5, **TINY)
    train_envs, _ = drq._make_envs(args, [0])
    agent = drq._agent_for(args, train_envs)
    learner, replay = agent.init(jnp.stack([jax.random.PRNGKey(0)]))
    obs, pos = train_envs.reset(), np.zeros(1, np.int32)
    learner, action = agent.act(learner, obs, True)
    for t in range(300):  # Pendulum: one 200-step truncated episode, then 100 steps
        step = train_envs.step(np.asarray(action))
        tr = drq.Transition(obs, np.asarray(action), step.reward, step.terminated, step.truncated, step.next_obs, pos)
        pos = np.where(step.truncated, 0, pos + 1).astype(np.int32)
        obs = step.obs
        learner, replay, action, _ = agent.step(learner, replay, tr, obs, False, False, True)
    _, cdf = agent.parts["start_burst"](learner, replay)
    one = jax.tree.map(lambda x: np.asarray(x[0]), replay)
    age = int(one.adds) - one.added
    expected = np.where(one.valid, one.priority * np.clip(0.99 ** age, 0.5, 1.0), 0.0).sum()
    assert 0.5 * one.valid.sum() < expected < one.valid.sum()  # the floor binds for the oldest, not all
    np.testing.assert_allclose(np.asarray(cdf)[0, -1], expected, rtol=1e-5)
    train_envs.close()


def test_forget_weight_reaches_the_floor_after_23025_steps():
    """ln 0.1 / ln 0.9999 = 23024.70: a transition stored 23,024 steps ago still weighs more than 0.1,
    one stored 23,025 steps ago weighs the floor, and stays there."""
    assert math.log(0.1) / math.log(0.9999) == pytest.approx(23024.70, abs=0.01)
    buf = _fill(drq.replay_init(8, (3,), jnp.float32, 1), [(4, "terminated")])._replace(priority=jnp.full(8, 2.0))
    assert int(buf.added[0]) == 1 and int(buf.adds) == 4
    weight = lambda adds: float(drq.replay_weight(buf._replace(adds=jnp.int32(adds)), jnp.array([0]))[0])  # noqa
    assert weight(1 + 23_024) == pytest.approx(2 * 0.9999 ** 23_024, rel=1e-5) and weight(1 + 23_024) > 0.2
    assert weight(1 + 23_025) == pytest.approx(0.2) and weight(1 + 10 ** 7) == pytest.approx(0.2)
    # the floor is the flag's: 0.5 is reached after ln 0.5 / ln 0.9999 = 6931.1 steps
    w = lambda adds: float(drq.replay_weight(buf._replace(adds=jnp.int32(adds)), jnp.array([0]), 0.9999, 0.5)[0])  # noqa
    assert w(1 + 6931) > 1.0 and w(1 + 6932) == pytest.approx(1.0)


def test_sampling_frequencies_follow_priority_times_fade():
    """Starts over several sampler blocks, ages from 0 to 40k stored steps (weights 1 down to the 0.1
    floor) and random priorities: every slot is drawn with probability priority x valid x fade / total,
    within 5 sigma of 400k draws, and never an unsampleable slot."""
    slots = 3 * drq.SAMPLE_BLOCK + 40
    rng = np.random.default_rng(0)
    valid = rng.random(slots) < 0.7
    valid[drq.SAMPLE_BLOCK:2 * drq.SAMPLE_BLOCK] = False  # a block with no weight
    priority = (rng.random(slots) + 0.2).astype(np.float32)
    age = rng.integers(0, 40_000, slots)
    adds = 50_000
    buf = drq.replay_init(slots, (1,), jnp.float32, 1)._replace(
        valid=jnp.asarray(valid), priority=jnp.asarray(priority), added=jnp.asarray(adds - age, jnp.int32),
        adds=jnp.int32(adds))
    n = 400_000
    start = np.asarray(jax.jit(drq.replay_sample_starts, static_argnums=2)(buf, jax.random.PRNGKey(5), n,
                                                                           drq.replay_cdf(buf)))
    assert valid[start].all()
    weight = np.where(valid, priority * np.clip(0.9999 ** age, 0.1, 1.0), 0.0)
    expected = weight / weight.sum()
    freq = np.bincount(start, minlength=slots) / n
    assert np.all(np.abs(freq - expected) <= 5 * np.sqrt(expected * (1 - expected) / n) + 1e-12)
    # old and recent halves of equal priority mass: the recent half is drawn more, by the fade ratio
    old, recent = valid & (age > 23_100), valid & (age < 1_000)
    assert freq[recent].sum() / priority[recent].sum() > 5 * freq[old].sum() / priority[old].sum()


def test_replay_masks_and_windows_are_mrqs():
    """DR.Q's buffer keeps MR.Q's masks: truncated tails never start a window, terminated ones do; the
    forget counter does not change which starts exist."""
    buf = _fill(drq.replay_init(30, (3,), jnp.float32, 1), [(5, "truncated"), (5, "terminated")], horizon=2)
    assert np.nonzero(np.asarray(buf.valid))[0].tolist() == [0, 1, 2, 6, 7, 8, 9, 10]
    start, obs, act, rew, nd = drq.replay_sample(buf, jax.random.PRNGKey(0), 4000, horizon=2)
    assert set(np.asarray(start).tolist()) == {0, 1, 2, 6, 7, 8, 9, 10}
    i = int(np.nonzero(np.asarray(start) == 10)[0][0])
    np.testing.assert_array_equal(obs[i, :, 0], [9, 1009, 0])
    np.testing.assert_array_equal(nd[i], [0, 0])
    assert int(buf.adds) == 10 and int(buf.added[10]) == 10 and int(buf.added[11]) == 10


# ---------------------------------------------------------------------------------------------
# Whole runs: pixels, Atari, presets, CLI errors, kill-and-resume
# ---------------------------------------------------------------------------------------------
# Atari runs in `make test-slow` (38 s on a fresh clone; MR.Q's Atari smoke run, the same pipeline, stays in
# `make test`): the default suite keeps under 15 minutes
@pytest.mark.parametrize("env_id", ["dmc-pixels:cartpole-balance", pytest.param("atari:Pong", marks=pytest.mark.slow)])
def test_smoke_run_on_pixels(env_id, tmp_path):
    """A whole `train` on DMC pixels and Atari (2 seeds, small widths, the real CNN, the schedule scaled
    down): evaluation rows, finite returns and parameters, forget counters per seed."""
    args = drq.Args(env_id=env_id, num_seeds=2, total_timesteps=48, learning_starts=24, eval_freq=24,
                    eval_episodes=1, max_episode_steps=10, target_update_freq=8, results_dir=str(tmp_path),
                    run_name="smoke", **dict(TINY, batch_size=4))
    out = drq.train(args)
    rows = open(f"{out['run_dir']}/eval.csv").read().splitlines()[1:]
    assert [r.split(",")[2:4] for r in rows] == [["0", "0"], ["1", "0"], ["0", "24"], ["1", "24"], ["0", "48"],
                                                 ["1", "48"]]
    assert np.all(np.isfinite(out["final_eval"]))
    learner, replay = out["learner"], out["replay"]
    np.testing.assert_array_equal(replay.adds, [48, 48])
    assert replay.obs.dtype == jnp.uint8 and int(replay.is_step[0].sum()) == 48
    for live, target in ((learner.encoder, learner.encoder_target), (learner.value, learner.value_target)):
        assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(live), jax.tree.leaves(target)))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(learner))  # (losses are checked at every evaluation)
    config = json.load(open(f"{out['run_dir']}/config.json"))
    frame = 3 * 84 * 84 if env_id.startswith("dmc") else 84 * 84
    action = 4 * (1 if env_id.startswith("dmc") else 6)
    # MR.Q's slot plus the int32 write count of the forget weight
    assert config["replay_buffer"]["bytes_per_slot"] == frame + action + 4 * 4 + 2 + 4


def test_atari_epsilon_is_for_evaluation_only():
    args = drq.Args(env_id="atari:Pong")
    assert drq.env_kwargs(args, True)["epsilon"] == 0.001 and drq.env_kwargs(args, False)["epsilon"] == 0.0
    assert "epsilon" not in drq.env_kwargs(drq.Args(env_id="Hopper-v4"), True)


def test_bad_arguments_name_the_problem(tmp_path):
    for kwargs, message in ((dict(env_id="Hoper-v4"), "Did you mean: Hopper-v4"),
                            (dict(env_id="HBench-h1-walk-v0"), "humanoid_bench"),
                            (dict(env_id="Hopper-v4", forget_decay=1.5), "--forget-decay"),
                            (dict(env_id="Hopper-v4", forget_floor=0.0), "--forget-floor"),
                            (dict(env_id="Hopper-v4", infonce_temperature=0.0), "--infonce-temperature"),
                            (dict(env_id="Hopper-v4", infonce_weight=-1.0), "--infonce-weight")):
        with pytest.raises((ValueError, TypeError), match=message):
            drq.train(drq.Args(**kwargs, results_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # nothing written


def test_killed_run_resumes_to_the_same_returns_and_eval_only_matches(tmp_path):
    """Hopper capped at 30 steps (terminations and truncations), 2 seeds, tiny widths: a run SIGKILLed
    after a checkpoint and resumed writes the same eval.csv and episodes as one never interrupted (the
    forget counters restored with the buffer); --eval-only of the final checkpoint reproduces the last
    evaluation."""
    from test_runs import _eval_rows, _kill_and_resume

    cfg = dict(env_id="Hopper-v4", max_episode_steps=30, num_seeds=2, total_timesteps=160, learning_starts=30,
               eval_freq=20, eval_episodes=2, target_update_freq=10, **TINY)
    full = drq.train(drq.Args(**cfg, results_dir=str(tmp_path), run_name="full"))
    ends = np.asarray(full["replay"].not_done)[:, np.asarray(full["replay"].is_step[0])]
    assert (ends == 0).any()  # Hopper fell: terminations are in the buffer
    run_dir, _ = _kill_and_resume("drq.py", cfg, tmp_path, full["run_dir"])
    returns = drq.evaluate_checkpoint(drq.Args(eval_only=True, checkpoint=str(run_dir), eval_episodes=2))
    np.testing.assert_allclose(returns, [r for _, _, r in _eval_rows(run_dir)[-2:]], rtol=1e-5)
