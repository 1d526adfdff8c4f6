"""MR.Q (algos/mrq.py): building blocks, losses, replay, updates, and whole runs on every suite."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algos import mrq


def test_symlog_symexp_are_inverse_and_odd():
    x = jnp.array([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4])
    np.testing.assert_allclose(mrq.symexp(mrq.symlog(x)), x, rtol=1e-5)
    np.testing.assert_allclose(mrq.symlog(jnp.array([np.e - 1, 0.0])), [1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(mrq.symlog(-x), -mrq.symlog(x))


def test_reward_bins():
    bins = mrq.reward_bins()
    assert bins.shape == (65,) and float(bins[32]) == 0.0
    np.testing.assert_allclose([bins[0], bins[-1]], [-np.expm1(10), np.expm1(10)], rtol=1e-5)  # +-22025.5
    np.testing.assert_allclose(mrq.symlog(bins), np.linspace(-10, 10, 65), atol=1e-5)


def test_two_hot_encode_decode_and_cross_entropy_on_hand_values():
    bins = jnp.array([-2.0, 0.0, 1.0, 5.0])
    w = mrq.two_hot(jnp.array([0.25, 1.0, -3.0, 7.0, 3.0]), bins)
    np.testing.assert_allclose(w, [[0, 0.75, 0.25, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0.5, 0.5]],
                               atol=1e-7)
    # decoding the encoding gives the reward back (inside the range)
    x = jnp.array([-1234.5, -0.3, 0.0, 0.7, 42.0])
    big = mrq.reward_bins()
    np.testing.assert_allclose(mrq.two_hot(x, big) @ big, x, rtol=1e-5, atol=1e-5)
    logits = jnp.log(mrq.two_hot(x, big) + 1e-30)
    np.testing.assert_allclose(mrq.two_hot_decode(logits, big), x, rtol=1e-4, atol=1e-4)
    # cross-entropy: uniform logits give log K whatever the target; a peaked one on the target is ~0
    np.testing.assert_allclose(mrq.two_hot_cross_entropy(jnp.zeros((5, 65)), x, big), np.log(65) * np.ones(5),
                               rtol=1e-6)
    ce = mrq.two_hot_cross_entropy(jnp.array([[0.0, 100.0, 0.0, 0.0]]), jnp.array([0.0]), bins)
    assert float(ce[0]) < 1e-6


def test_multi_step_return_textbook_and_original():
    r = jnp.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    nd = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])  # none / 2nd / 1st terminal
    g = 0.5
    ret, mask = mrq.multi_step_return(r, nd, g)
    np.testing.assert_allclose(ret, [1 + 0.5 * 2 + 0.25 * 4, 1 + 0.5 * 2, 1.0])
    np.testing.assert_allclose(mask, [1, 0, 0])
    # the original code weights r_i by its own not_done_i: a terminal transition's reward is dropped,
    # and with a per-index mask the rewards after it count again
    ret, mask = mrq.multi_step_return(r, nd, g, terminal_reward=False)
    np.testing.assert_allclose(ret, [3.0, 1 + 0.25 * 4, 0.5 * 2 + 0.25 * 4])
    np.testing.assert_allclose(mask, [1, 0, 0])


def test_mlp_has_no_layer_norm_parameters_and_xavier_relu_init():
    m = mrq.MLP(hidden=512, out=7)
    params = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 300)))["params"]
    assert sorted(params) == ["Dense_0", "Dense_1", "Dense_2"]  # LayerNorm adds nothing to learn
    assert all(sorted(p) == ["bias", "kernel"] for p in params.values())
    k = np.asarray(params["Dense_0"]["kernel"])
    limit = np.sqrt(2) * np.sqrt(6 / (300 + 512))  # xavier_uniform(gain = calculate_gain('relu'))
    assert np.abs(k).max() <= limit and np.abs(k).max() > 0.99 * limit
    assert np.std(k) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert not np.any(params["Dense_0"]["bias"])
    y = mrq.layer_norm(jnp.array([[1.0, 2.0, 3.0, 6.0]]))
    np.testing.assert_allclose([y.mean(), (y ** 2).mean()], [0, 1], atol=1e-4)


def test_layer_norm_and_elu_custom_gradients_match_autodiff():
    """The closed-form derivatives (a speed choice) agree with autodiff of the plain formulas, values too."""
    def plain_ln(x):
        mean = x.mean(-1, keepdims=True)
        return (x - mean) / jnp.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + 1e-5)

    x = jax.random.normal(jax.random.PRNGKey(0), (8, 64)) * 3.0
    w = jax.random.normal(jax.random.PRNGKey(1), (8, 64))  # a random cotangent
    for ours, ref in [(mrq.layer_norm, plain_ln), (mrq.elu, jax.nn.elu),
                      (lambda v: mrq.elu(mrq.layer_norm(v)), lambda v: jax.nn.elu(plain_ln(v)))]:
        np.testing.assert_allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)
        g, g_ref = (jax.grad(lambda v, f=f: (f(v) * w).sum())(x) for f in (ours, ref))
        np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(jax.grad(lambda v: mrq.elu(v).sum())(jnp.array([-1.0, 0.0, 2.0])),
                                  [np.exp(-1.0).astype(np.float32), 1.0, 1.0])


def test_parameter_count_on_halfcheetah():
    """Layer by layer from facebookresearch/MRQ @ 8a44a7d (docs/facts.md#mrq-architecture) on
    HalfCheetah-v4 (17-dim states, 6 actions): 3,857,226, exactly the authors' networks' count. The
    paper's Figure 1 says 4.1M; the authors' code does not explain the difference."""
    key = jax.random.PRNGKey(0)
    enc = mrq.Encoder(pixels=False).init(key, jnp.zeros((1, 17)), jnp.zeros((1, 6)))
    pol = mrq.Policy(6).init(key, jnp.zeros((1, 512)))
    val = mrq.Value().init(key, jnp.zeros((1, 512)))
    total = sum(mrq.count_params(p) for p in (enc, pol, val))
    mlp = lambda i, o: (i * 512 + 512) + (512 * 512 + 512) + (512 * o + o)  # noqa: E731
    encoder = mlp(17, 512) + (6 * 256 + 256) + mlp(768, 512) + (512 * 578 + 578)
    assert total == encoder + mlp(512, 6) + 2 * (mlp(512, 512) + 513) == 3_857_226


def test_pixel_encoder_shapes_and_gumbel_policy():
    key = jax.random.PRNGKey(0)
    enc = mrq.Encoder(pixels=True)
    obs = jnp.zeros((2, 9, 84, 84), jnp.uint8)
    params = enc.init(key, obs, jnp.zeros((2, 4)))
    zs = enc.apply(params, obs, method=mrq.Encoder.f)
    assert zs.shape == (2, 512)
    assert params["params"]["state_out"]["kernel"].shape == (32 * 7 * 7, 512)
    done, nzs, rew = enc.apply(params, obs, jnp.zeros((2, 4)))
    assert done.shape == (2,) and nzs.shape == (2, 512) and rew.shape == (2, 65)
    pol = mrq.Policy(4, discrete=True)
    pp = pol.init(key, zs, key)
    a, pre = pol.apply(pp, zs, jax.random.PRNGKey(1))
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-6)
    assert a.shape == pre.shape == (2, 4)


def _fill(buf, episodes, horizon, history, frame_shape=(3,), module=mrq):
    """episodes: list of (length, 'terminated' | 'truncated'); frames hold a running id. `module`: mrq or
    its sibling drq (tests/test_drq.py)."""
    add = jax.jit(module.replay_add, static_argnames=("horizon", "history"))
    uid = 0
    for length, end in episodes:
        for t in range(length):
            last = t == length - 1
            buf = add(buf, jnp.full(frame_shape, uid, jnp.float32), jnp.array([float(uid)]), float(uid),
                      jnp.array(last and end == "terminated"), jnp.array(last and end == "truncated"),
                      jnp.full(frame_shape, 1000 + uid, jnp.float32), t, horizon=horizon, history=history)
            uid += 1
    return buf


def test_replay_masks_truncated_tails_and_opens_terminated_ones():
    buf = _fill(mrq.replay_init(30, (3,), jnp.float32, 1), [(5, "truncated"), (5, "terminated")], 2, 1)
    # episode 1: slots 0-4 + final obs at 5; episode 2: slots 6-10 + final obs at 11
    assert np.nonzero(np.asarray(buf.valid))[0].tolist() == [0, 1, 2, 6, 7, 8, 9, 10]
    assert int(buf.ptr) == 12
    assert buf.obs[5, 0] == 1004 and buf.obs[11, 0] == 1009  # true final observations kept
    assert buf.not_done[10] == 0 and buf.not_done[4] == 1  # a truncation is not a termination


def test_replay_sample_windows_only_from_valid_starts():
    buf = _fill(mrq.replay_init(30, (3,), jnp.float32, 1), [(5, "truncated"), (5, "terminated")], 2, 1)
    start, obs, act, rew, nd = mrq.replay_sample(buf, jax.random.PRNGKey(0), 4000, horizon=2)
    assert set(np.asarray(start).tolist()) == {0, 1, 2, 6, 7, 8, 9, 10}
    i = int(np.nonzero(np.asarray(start) == 10)[0][0])  # the terminal transition's start
    np.testing.assert_array_equal(obs[i, :, 0], [9, 1009, 0])  # s, final s', then a masked slot
    np.testing.assert_array_equal(rew[i], [9, 0])
    np.testing.assert_array_equal(nd[i], [0, 0])
    j = int(np.nonzero(np.asarray(start) == 2)[0][0])
    np.testing.assert_array_equal(obs[j, :, 0], [2, 3, 4])
    np.testing.assert_array_equal(act[j, :, 0], [2, 3])


def test_replay_histories_stop_at_the_episode_start_and_wrap():
    frame = (1, 2, 2)
    buf = _fill(mrq.replay_init(12, frame, jnp.float32, 1), [(4, "terminated"), (9, "truncated")], 1, 3, frame)
    # 4 + 1 + 9 + 1 = 15 slots in a 12-slot ring: episode 2 (ids 4..12) sits at slots 5..13 % 12
    start, obs, *_ = mrq.replay_sample(buf, jax.random.PRNGKey(1), 2000, horizon=1, history=3)
    assert obs.shape[1:] == (2, 3, 2, 2)
    # episode 1 lost slots 0-2 to episode 2, and its last start (slot 3) lost its history; episode 2
    # (truncated) keeps every start but its last (id 12, slot 1)
    assert set(np.asarray(start).tolist()) == {5, 6, 7, 8, 9, 10, 11, 0}
    expected = {5: [4, 4, 4], 7: [4, 5, 6], 0: [9, 10, 11]}  # first step repeats its frame; slot 0 wraps
    for k, s in enumerate(np.asarray(start)):
        if int(s) in expected:
            np.testing.assert_array_equal(np.asarray(obs[k, 0, :, 0, 0]), expected[int(s)])
    assert {5, 7, 0} <= set(np.asarray(start).tolist())


def test_replay_sampling_follows_priorities():
    buf = _fill(mrq.replay_init(30, (3,), jnp.float32, 1), [(5, "terminated")], 1, 1)
    buf = buf._replace(priority=buf.priority.at[:5].set(jnp.array([1.0, 2.0, 3.0, 4.0, 0.0])))
    start, *_ = mrq.replay_sample(buf, jax.random.PRNGKey(2), 200_000, horizon=1)
    freq = np.bincount(np.asarray(start), minlength=30)[:6] / 200_000
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4, 0, 0], atol=0.005)  # > 4 sigma


def test_value_target_priority_policy_and_huber_on_hand_values():
    # R = 2, mask 1, gamma^3 Q' = 0.5^3 * 8 = 1, previous scale 2, current scale 4: y = (2 + 2) / 4
    y = mrq.value_target(jnp.array([2.0, 2.0]), jnp.array([1.0, 0.0]), jnp.array([8.0, 8.0]), 0.5, 3, 4.0, 2.0)
    np.testing.assert_allclose(y, [1.0, 0.5])
    np.testing.assert_allclose(mrq.huber(jnp.array([0.5, -2.0, 1.0])), [0.125, 1.5, 0.5])
    q = jnp.array([[1.0, 4.0], [1.0, 1.5]])
    np.testing.assert_allclose(mrq.lap_priority(q, jnp.array([1.0, 1.0])), [3.0 ** 0.4, 1.0])
    np.testing.assert_allclose(mrq.policy_loss(q, jnp.array([[10.0, 0.0]])), -1.875 + 1e-5 * 50)


def _encoder_setup(h=3, b=4, obs_dim=5, adim=2, module=mrq):
    enc = module.Encoder(pixels=False, zs_dim=8, za_dim=4, zsa_dim=8, hidden=16, num_bins=65)
    k = jax.random.split(jax.random.PRNGKey(0), 6)
    params = enc.init(k[0], jnp.zeros((1, obs_dim)), jnp.zeros((1, adim)))
    target = enc.init(k[1], jnp.zeros((1, obs_dim)), jnp.zeros((1, adim)))
    obs = jax.random.normal(k[2], (b, h + 1, obs_dim))
    act = jax.random.uniform(k[3], (b, h, adim), minval=-1, maxval=1)
    rew = jax.random.normal(k[4], (b, h))
    return enc, params, target, obs, act, rew


def test_encoder_unroll_feeds_back_predicted_latents_against_a_plain_loop():
    enc, params, target, obs, act, rew = _encoder_setup()
    nd = jnp.ones((4, 3))
    bins = mrq.reward_bins()
    total, parts = mrq.encoder_loss(enc, params, target, obs, act, rew, nd, bins, 1.0)
    zs = enc.apply(params, obs[:, 0], method=mrq.Encoder.f)
    expect = 0.0
    for i in range(3):
        d, zs, r = enc.apply(params, enc.apply(params, zs, act[:, i], method=mrq.Encoder.g),
                             method=mrq.Encoder.predict)
        tgt = enc.apply(target, obs[:, i + 1], method=mrq.Encoder.f)  # the *target* encoder, s_{i+1}
        expect += ((zs - tgt) ** 2).mean() + 0.1 * mrq.two_hot_cross_entropy(r, rew[:, i], bins).mean() \
            + 0.1 * (d ** 2).mean()
    np.testing.assert_allclose(total, expect, rtol=1e-5)
    # re-encoding s_1 instead of feeding the prediction back would give another loss
    assert parts["dyn"] > 0


def test_encoder_loss_masks_steps_after_a_termination():
    enc, params, target, obs, act, rew = _encoder_setup()
    nd = jnp.ones((4, 3)).at[:, 0].set(0.0)  # every window terminates at its first step
    bins = mrq.reward_bins()
    base, parts = mrq.encoder_loss(enc, params, target, obs, act, rew, nd, bins, 1.0)
    # changing anything after the terminal step (s_2, s_3, a_1, a_2, r_1, r_2) changes nothing
    obs2 = obs.at[:, 2:].set(99.0)
    act2 = act.at[:, 1:].set(0.3)
    rew2 = rew.at[:, 1:].set(-7.0)
    again, _ = mrq.encoder_loss(enc, params, target, obs2, act2, rew2, nd, bins, 1.0)
    np.testing.assert_allclose(again, base, rtol=1e-6)
    # the terminal step itself counts, with its done target 1; without terminations ever seen, no done term
    no_done, p2 = mrq.encoder_loss(enc, params, target, obs, act, rew, nd, bins, 0.0)
    assert float(p2["done"]) == 0.0 and float(parts["done"]) > 0 and no_done < base


def _learner(discrete=False, obs_dim=6, adim=3, b=32, h=5):
    nets = mrq.make_nets(False, adim, discrete)
    learner = mrq.learner_init(nets, jax.random.PRNGKey(0), jnp.zeros(obs_dim), adim)
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    obs = jax.random.normal(k[0], (b, h + 1, obs_dim))
    act = jnp.tanh(jax.random.normal(k[1], (b, h, adim)))
    rew = jax.random.normal(k[2], (b, h))
    return nets, learner, obs, act, rew, jnp.ones((b, h))


def test_rl_update_fits_a_fixed_batch_and_leaves_the_encoder_alone():
    nets, learner, obs, act, rew, nd = _learner()
    learner = mrq.copy_targets(learner, jnp.array(1.0))  # scales 1 and 1
    step = jax.jit(lambda l: mrq.rl_update(nets, l, obs, act, rew, nd))
    first, prio, m0 = step(learner)
    assert prio.shape == (32,) and bool(jnp.all(prio >= 1.0))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, first.encoder, learner.encoder))
    assert not jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, first.value, learner.value))
    assert not jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, first.policy, learner.policy))
    current = first
    for _ in range(60):
        current, _, m = step(current)
    assert float(m["value_loss"]) < 0.5 * float(m0["value_loss"])  # targets are fixed: the value fits them


def test_encoder_update_lowers_the_model_loss_and_copy_targets():
    nets, learner, obs, act, rew, nd = _learner()
    bins = mrq.reward_bins()
    step = jax.jit(lambda l: mrq.encoder_update(nets, l, obs, act, rew, nd, bins, 1.0))
    current, m0 = step(learner)
    for _ in range(30):
        current, m = step(current)
    assert float(m["encoder_loss"]) < float(m0["encoder_loss"])
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, current.encoder_target,
                                                         learner.encoder_target))
    copied = mrq.copy_targets(current._replace(reward_scale=jnp.array(3.0)), jnp.array(0.0))
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(jnp.array_equal, copied.encoder_target, current.encoder))
    assert float(copied.target_reward_scale) == 3.0 and float(copied.reward_scale) == pytest.approx(1e-8)


def test_discrete_target_action_is_one_hot():
    nets, learner, *_ = _learner(discrete=True)
    a = mrq.target_action(nets, learner.policy, jnp.ones((4, 512)), jax.random.PRNGKey(3), 0.1, 0.15)
    np.testing.assert_array_equal(a.sum(-1), 1.0)
    assert set(np.unique(np.asarray(a)).tolist()) <= {0.0, 1.0}


def test_random_shift_moves_every_channel_of_a_sample_together():
    x = jnp.arange(2 * 3 * 84 * 84, dtype=jnp.float32).reshape(2, 3, 84, 84)
    y = mrq.random_shift(jax.random.PRNGKey(0), x)
    assert y.shape == x.shape
    padded = np.pad(np.asarray(x), ((0, 0), (0, 0), (4, 4), (4, 4)), mode="edge")
    for i in range(2):
        hits = [(dy, dx) for dy in range(9) for dx in range(9)
                if np.array_equal(padded[i, :, dy:dy + 84, dx:dx + 84], np.asarray(y[i]))]
        assert len(hits) == 1  # one offset within +-4 pixels, the same for the three channels
    shifts = {tuple(np.asarray(jax.random.randint(jax.random.PRNGKey(s), (1, 2), 0, 9))[0]) for s in range(50)}
    assert len(shifts) > 10


# ---------------------------------------------------------------------------------------------
# The training path on the real suites
# ---------------------------------------------------------------------------------------------
TINY = dict(batch_size=8, zs_dim=32, zsa_dim=32, za_dim=16, enc_hdim=32, value_hdim=32, policy_hdim=32)


@pytest.mark.parametrize("env_id,history,channels", [("dmc-pixels:cartpole-balance", 3, 3), ("atari:Pong", 4, 1)])
def test_replay_rebuilds_the_stacked_pixel_observations_the_env_returned(env_id, history, channels):
    """Random play through `agent.step` with 7-step episodes (truncations): every sampled window
    must equal the stacked observations the env returned, including each episode's final one,
    although the buffer keeps one frame per step."""
    args = mrq.resolve_presets(mrq.Args(env_id=env_id, total_timesteps=40, learning_starts=1000,
                                        max_episode_steps=7, **TINY))
    train_envs, _ = mrq._make_envs(args, [0])
    agent = mrq._agent_for(args, train_envs)
    assert agent.frame_channels == channels and train_envs.frame_history == history
    learner, replay = agent.init(jnp.stack([jax.random.PRNGKey(0)]))
    assert replay.obs.dtype == jnp.uint8 and replay.obs.shape[2:] == (channels, 84, 84)
    obs, pos, slot, seen = train_envs.reset(), np.zeros(1, np.int32), 0, {}
    learner, action = agent.act(learner, obs, True)
    for t in range(args.total_timesteps):
        step = train_envs.step(np.asarray(action))
        seen[slot] = obs[0]
        tr = mrq.Transition(obs[:, -channels:], np.asarray(action), step.reward, step.terminated, step.truncated,
                            step.next_obs[:, -channels:], pos)
        if step.truncated[0]:
            seen[slot + 1] = step.next_obs[0]
        slot += 2 if step.truncated[0] else 1
        pos = np.where(step.truncated, 0, pos + 1).astype(np.int32)
        obs = step.obs
        learner, replay, action, _ = agent.step(learner, replay, tr, obs, *mrq.schedule(t, 1000, 250))
    assert int(replay.ptr[0]) == slot == 40 + 40 // 7
    one = jax.tree.map(lambda x: x[0], replay)
    start, windows, *_ = mrq.replay_sample(one, jax.random.PRNGKey(1), 64, horizon=5, history=history)
    # 7-step truncated episodes: only starts 0 and 1 of each have 5 further steps, so never the last 5
    assert set((np.asarray(start) % 8).tolist()) == {0, 1}
    for s, w in zip(np.asarray(start), np.asarray(windows)):
        for k in range(6):
            np.testing.assert_array_equal(w[k], seen[int(s) + k])


# DMC pixels runs in `make test-slow` (44 s on a fresh clone; DR.Q's DMC-pixels smoke run, MR.Q's pipeline plus
# DR.Q's changes, stays in `make test`): the default suite keeps under 15 minutes
@pytest.mark.parametrize("env_id", [pytest.param("dmc-pixels:cartpole-balance", marks=pytest.mark.slow), "atari:Pong"])
def test_smoke_run_on_pixels(env_id, tmp_path):
    """A whole `train` on a DMC-pixels task and an Atari game (2 seeds, small widths, real CNN and
    the real training schedule scaled down): evaluation rows, finite losses, bursts of encoder updates."""
    args = mrq.Args(env_id=env_id, num_seeds=2, total_timesteps=48, learning_starts=24, eval_freq=24,
                    eval_episodes=1, max_episode_steps=10, target_update_freq=8, results_dir=str(tmp_path),
                    run_name="smoke", **dict(TINY, batch_size=4))
    out = mrq.train(args)
    rows = open(f"{out['run_dir']}/eval.csv").read().splitlines()[1:]
    assert [r.split(",")[2:4] for r in rows] == [["0", "0"], ["1", "0"], ["0", "24"], ["1", "24"], ["0", "48"],
                                                 ["1", "48"]]
    assert np.all(np.isfinite(out["final_eval"]))
    learner, replay = out["learner"], out["replay"]
    # 24 training steps after 24 random ones: copies at training steps 1, 9, 17 -> reward scales refreshed
    # refreshed from the buffer (the initial scale is 1, the initial target scale 0)
    assert np.all(np.asarray(learner.reward_scale) != 1.0) and np.all(np.asarray(learner.target_reward_scale) > 0)
    for live, target in ((learner.encoder, learner.encoder_target), (learner.value, learner.value_target)):
        assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(live), jax.tree.leaves(target)))
    assert replay.obs.dtype == jnp.uint8 and int(replay.is_step[0].sum()) == 48
    episodes = open(f"{out['run_dir']}/train_episodes.csv").read().splitlines()[1:]
    assert len(episodes) == 2 * 4 and {r.split(",")[-1] for r in episodes} == {"10"}  # 10-step episodes
    config = json.load(open(f"{out['run_dir']}/config.json"))
    frame = 3 * 84 * 84 if env_id.startswith("dmc") else 84 * 84
    action = 4 * (1 if env_id.startswith("dmc") else 6)  # cartpole: 1 action; Pong: 6 one-hot
    # frame + action + reward, not_done, priority (float32) + pos (int32) + valid, is_step (bool)
    assert config["replay_buffer"]["bytes_per_slot"] == frame + action + 4 * 4 + 2


# ---------------------------------------------------------------------------------------------
# Schedule, presets, CLI errors, kill-and-resume, eval-only
# ---------------------------------------------------------------------------------------------
def test_schedule_trains_after_the_buffer_fills_and_bursts_every_target_update():
    flags = [mrq.schedule(t, 10, 4) for t in range(20)]
    assert [t for t, f in enumerate(flags) if f[0]] == list(range(10, 20))  # buffer holds > 10 transitions
    assert [t for t, f in enumerate(flags) if f[1]] == [10, 14, 18]  # training steps 1, 5, 9
    assert [t for t, f in enumerate(flags) if f[2]] == list(range(9))  # random actions for steps 1..9


def test_presets_follow_the_suite_and_explicit_values_win():
    for env_id, steps, freq in (("Hopper-v4", 1_000_000, 5_000), ("dmc:walker-walk", 500_000, 5_000),
                                ("dmc-pixels:walker-walk", 500_000, 5_000), ("atari:Pong", 2_500_000, 100_000)):
        a = mrq.resolve_presets(mrq.Args(env_id=env_id))
        assert (a.total_timesteps, a.eval_freq, a.eval_episodes) == (steps, freq, 10)
    assert mrq.resolve_presets(mrq.Args(env_id="atari:Pong", eval_freq=7)).eval_freq == 7
    # memory: DMC runs never wrap (500-step episodes take 501 slots); --buffer-size caps the slots
    assert mrq.replay_slots(mrq.resolve_presets(mrq.Args(env_id="dmc:walker-walk"))) == 501_001
    assert mrq.replay_slots(mrq.resolve_presets(mrq.Args(env_id="atari:Pong", buffer_size=1000))) == 1000


def test_bad_arguments_name_the_problem(tmp_path):
    for kwargs, message in ((dict(env_id="Hoper-v4"), "Did you mean: Hopper-v4"),
                            (dict(env_id="dmc-pixels:cartpole-balanse"), "dmc-pixels:cartpole-balance"),
                            (dict(env_id="atari:Pongg"), "Pong"),
                            (dict(env_id="Hopper-v4", train_epsilon=0.001), "Atari envs only"),
                            (dict(env_id="Hopper-v4", q_horizon=6), "--q-horizon")):
        with pytest.raises((ValueError, TypeError), match=message):
            mrq.train(mrq.Args(**kwargs, results_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.slow  # 37 s; MR.Q's resume stays in `make test` through test_contract's resume-extension test
def test_killed_run_resumes_to_the_same_returns_and_eval_only_matches(tmp_path):
    """Hopper capped at 30 steps (terminations and truncations both occur), 2 seeds, tiny widths: a run
    SIGKILLed after a checkpoint and resumed writes the same eval.csv and episodes as one that was
    never interrupted (buffer, priorities, keys, reward scales, env state and episode positions
    all restored); --eval-only of the final checkpoint reproduces the last evaluation."""
    from test_runs import _eval_rows, _kill_and_resume

    cfg = dict(env_id="Hopper-v4", max_episode_steps=30, num_seeds=2, total_timesteps=160, learning_starts=30, eval_freq=20,
               eval_episodes=2, target_update_freq=10, **TINY)
    full = mrq.train(mrq.Args(**cfg, results_dir=str(tmp_path), run_name="full"))
    ends = np.asarray(full["replay"].not_done)[:, np.asarray(full["replay"].is_step[0])]
    assert (ends == 0).any()  # Hopper fell: terminations are in the buffer
    run_dir, _ = _kill_and_resume("mrq.py", cfg, tmp_path, full["run_dir"])
    returns = mrq.evaluate_checkpoint(mrq.Args(eval_only=True, checkpoint=str(run_dir), eval_episodes=2))
    np.testing.assert_allclose(returns, [r for _, _, r in _eval_rows(run_dir)[-2:]], rtol=1e-5)


def test_two_level_sampler_across_blocks_matches_priorities():
    """Starts over several sampler blocks (a partial last one, an empty one) follow priority x valid,
    and never land on an unsampleable slot."""
    slots = 3 * mrq.SAMPLE_BLOCK + 40
    rng = np.random.default_rng(0)
    valid = rng.random(slots) < 0.6
    valid[mrq.SAMPLE_BLOCK:2 * mrq.SAMPLE_BLOCK] = False  # a block with no weight at all
    priority = rng.random(slots).astype(np.float32) ** 2 + 0.05
    buf = mrq.replay_init(slots, (1,), jnp.float32, 1)._replace(valid=jnp.asarray(valid), priority=jnp.asarray(priority))
    n = 400_000
    start = np.asarray(jax.jit(mrq.replay_sample_starts, static_argnums=2)(buf, jax.random.PRNGKey(3), n,
                                                                           mrq.replay_cdf(buf)))
    assert valid[start].all()
    expected = np.where(valid, priority, 0.0) / np.where(valid, priority, 0.0).sum()
    freq = np.bincount(start, minlength=slots) / n
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(freq - expected) <= 5 * sigma + 1e-12)  # every slot within 5 sigma
    # per block (the first level) within 4 sigma of its share
    per_block = lambda x: np.add.reduceat(x, np.arange(0, slots, mrq.SAMPLE_BLOCK))
    e_blk = per_block(expected)
    assert np.all(np.abs(per_block(freq) - e_blk) <= 4 * np.sqrt(e_blk * (1 - e_blk) / n) + 1e-12)
