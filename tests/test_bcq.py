"""BCQ (continuous, offline): VAE loss, latent clipping, soft clipped double-Q target, perturbation bound,
action selection, the update order, a short run on a tiny D4RL file, and the flags of ddpg.py that make BCQ's
behavioural DDPG."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algos import bcq, ddpg
from envs import runs

OBS_DIM, ACT_DIM = 3, 2
TINY_NETS = dict(hidden_dim1=16, hidden_dim2=12, vae_hidden_dim=20)


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return bcq.Buffer(
        obs=jnp.asarray(rng.normal(size=(n, OBS_DIM)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, (n, ACT_DIM)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(n, OBS_DIM)), jnp.float32),
        terminated=jnp.asarray(rng.uniform(size=n) < 0.2, jnp.float32),
    )


def _first(tree):
    return jax.tree.map(lambda x: x[0], tree)


# ---------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------
def test_vae_loss_hand_values():
    recon = jnp.array([[0.5, -0.5], [1.0, 0.0]])
    action = jnp.zeros((2, 2))
    mean = jnp.array([[1.0, 0.0], [0.0, 0.0]])
    log_std = jnp.array([[0.0, np.log(2.0)], [0.0, 0.0]])
    loss, recon_loss, kl = bcq.vae_loss(recon, action, mean, log_std, 0.5)
    # recon: mean over all 4 elements of (0.25, 0.25, 1, 0)
    np.testing.assert_allclose(recon_loss, 0.375, rtol=1e-6)
    # 1 + log sigma^2 - mu^2 - sigma^2 per element: -1, 2 ln 2 - 3, 0, 0; mean over batch and latent dims
    np.testing.assert_allclose(kl, -0.5 * (2 * np.log(2.0) - 4) / 4, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.375 + 0.5 * (0.5 - np.log(2.0) / 4), rtol=1e-6)


def test_prior_latent_is_clipped_only_when_sampling():
    key = jax.random.PRNGKey(0)
    z = np.asarray(bcq.prior_latent(key, (5000, 4), 0.5))
    assert np.abs(z).max() == pytest.approx(0.5)
    assert 0.55 < np.mean(np.abs(z) == 0.5) < 0.68  # P(|N(0, 1)| > 0.5) = 0.617: the clip is active
    np.testing.assert_allclose(z, np.clip(np.asarray(jax.random.normal(key, (5000, 4))), -0.5, 0.5))

    vae = bcq.VAE(ACT_DIM, 2 * ACT_DIM, 20)
    obs, action = _data(32).obs, _data(32).action
    params = vae.init(jax.random.PRNGKey(1), obs, action, key)
    decode = lambda z: vae.apply(params, obs, z, method=bcq.VAE.decode)  # noqa: E731
    # sampling without an encoder z: the decoder gets the clipped prior draw
    k = jax.random.PRNGKey(2)
    sampled = bcq.sample_actions(vae, params, k, obs, 0.5)
    z_prior = jax.random.normal(k, (32, 2 * ACT_DIM))
    np.testing.assert_allclose(sampled, decode(jnp.clip(z_prior, -0.5, 0.5)), rtol=1e-6, atol=1e-7)
    assert not np.allclose(sampled, decode(z_prior), atol=1e-4)
    # the training pass: z = mean + std * eps, not clipped
    recon, mean, log_std = vae.apply(params, obs, action, key)
    z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
    assert np.abs(np.asarray(z)).max() > 0.5
    np.testing.assert_allclose(recon, decode(z), rtol=1e-6, atol=1e-7)
    assert not np.allclose(recon, decode(jnp.clip(z, -0.5, 0.5)), atol=1e-4)
    # the encoder's log_std is clamped to [-4, 15]
    big = jax.tree.map(lambda x: x * 1e3, params)
    _, log_std = vae.apply(big, obs, action, method=bcq.VAE.encode)
    assert float(log_std.min()) == -4.0 and float(log_std.max()) == 15.0


# ---------------------------------------------------------------------------------------------
# Critic target
# ---------------------------------------------------------------------------------------------
def test_soft_clipped_target_max_over_each_states_candidates():
    # 2 states x 3 candidates, rows in jnp.repeat (repeat_interleave) order: state 0 at rows 0-2
    q1 = jnp.array([1.0, 5.0, 2.0, -1.0, 0.0, 3.0])
    q2 = jnp.array([2.0, 3.0, 2.0, -2.0, 4.0, 1.0])
    v = bcq.soft_clipped_target(q1, q2, 0.75, 3)
    # state 0: 0.75 min + 0.25 max = 1.25, 3.5, 2 -> 3.5; state 1: -1.75, 1, 1.5 -> 1.5
    # (grouping rows 0, 2, 4 and 1, 3, 5 instead would give 2 and 3.5)
    np.testing.assert_allclose(v, [3.5, 1.5], rtol=1e-6)
    np.testing.assert_allclose(bcq.soft_clipped_target(q1, q2, 1.0, 3), [3.0, 1.0], rtol=1e-6)  # lambda 1: min
    y = bcq.td_target(jnp.array([1.0, 2.0]), jnp.array([0.0, 1.0]), v, 0.99)
    np.testing.assert_allclose(y, [1.0 + 0.99 * 3.5, 2.0], rtol=1e-6)  # a termination does not bootstrap


# ---------------------------------------------------------------------------------------------
# Perturbation model
# ---------------------------------------------------------------------------------------------
def test_perturbation_bounded_by_phi_then_clipped():
    action = jnp.array([[0.0, 0.5], [0.98, -0.99]])
    up, down = bcq.perturb(action, jnp.full((2, 2), 1e3), 0.05), bcq.perturb(action, jnp.full((2, 2), -1e3), 0.05)
    np.testing.assert_allclose(up, [[0.05, 0.55], [1.0, -0.94]], rtol=1e-6)  # 0.98 + 0.05 clipped to 1
    np.testing.assert_allclose(down, [[-0.05, 0.45], [0.93, -1.0]], rtol=1e-6)  # -0.99 - 0.05 clipped to -1
    np.testing.assert_allclose(bcq.perturb(action, jnp.array([[0.3, -0.2]] * 2), 0.05),
                               np.clip(action + 0.05 * np.tanh([[0.3, -0.2]] * 2), -1, 1), rtol=1e-6)
    # the network: its output moves any action by at most Phi, and stays in [-1, 1]
    actor = bcq.Actor(ACT_DIM, 16, 12, 0.05)
    data = _data(256)
    params = jax.tree.map(lambda x: x * 30, actor.init(jax.random.PRNGKey(0), data.obs, data.action))  # saturate tanh
    out = np.asarray(actor.apply(params, data.obs, data.action))
    delta = np.abs(out - np.asarray(data.action))
    assert delta.max() <= 0.05 + 1e-6 and delta.max() > 0.049
    assert np.abs(out).max() <= 1.0


# ---------------------------------------------------------------------------------------------
# Action selection and the update
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    """One compiled 2-seed agent for the tests below (compiling is most of their time). Large steps so
    the update test can tell the VAE before its step from the one after."""
    args = bcq.Args(**TINY_NETS, batch_size=8, num_target_samples=3, num_act_samples=7, vae_lr=0.1, critic_lr=0.05,
                    actor_lr=0.05, tau=0.3)
    agent = bcq.make_agent(args, OBS_DIM, ACT_DIM)
    return args, agent, agent.init(jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)]))


def test_action_selection_is_argmax_q1_of_perturbed_vae_samples(tiny):
    args, agent, learner = tiny
    obs = _data(2).obs
    keys = jnp.stack([jax.random.PRNGKey(10), jax.random.PRNGKey(11)])
    new_keys, action = agent.policy(learner.actor, learner.critic, learner.vae, keys, obs)
    actor, critic = bcq.Actor(ACT_DIM, 16, 12, args.phi), bcq.Critic(16, 12)
    vae = bcq.VAE(ACT_DIM, 2 * ACT_DIM, 20)
    for i in range(2):
        p = _first(jax.tree.map(lambda x: x[i:i + 1], learner))
        next_key, k_z = jax.random.split(keys[i])
        s = jnp.repeat(obs[i:i + 1], 7, axis=0)
        cand = actor.apply(p.actor, s, bcq.sample_actions(vae, p.vae, k_z, s, 0.5))
        q1 = critic.apply(p.critic, s, cand, method=bcq.Critic.q1_only)
        np.testing.assert_allclose(action[i], cand[int(np.argmax(q1))], rtol=1e-6)
        np.testing.assert_array_equal(new_keys[i], next_key)  # the key moves on for the next env step
    assert np.abs(np.asarray(action)).max() <= 1.0


def test_update_order_vae_then_critic_then_actor_then_targets(tiny):
    """One update against a step-by-step re-derivation: the target samples the just-updated VAE and uses
    the target xi and critics; the actor step uses the updated critic; both targets move by tau."""
    args, agent, learner = tiny
    data = _data(64)
    new, metrics = agent.update(learner, data)
    old, new = _first(learner), _first(new)  # seed 0

    actor, critic = bcq.Actor(ACT_DIM, 16, 12, args.phi), bcq.Critic(16, 12)
    vae = bcq.VAE(ACT_DIM, 2 * ACT_DIM, 20)
    _, k_idx, k_vae, k_next, k_actor = jax.random.split(old.key, 5)
    b = jax.tree.map(lambda x: x[jax.random.randint(k_idx, (8,), 0, 64)], data)

    def vae_l(p):
        recon, mean, log_std = vae.apply(p, b.obs, b.action, k_vae)
        return bcq.vae_loss(recon, b.action, mean, log_std, 0.5)[0]

    g = jax.grad(vae_l)(old.vae)
    vae_p = optax.apply_updates(old.vae, optax.adam(0.1).update(g, optax.adam(0.1).init(old.vae), old.vae)[0])
    np.testing.assert_allclose(metrics["vae_loss"][0], vae_l(old.vae), rtol=1e-5)
    for a, e in zip(jax.tree.leaves(new.vae), jax.tree.leaves(vae_p)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)

    def target_with(vae_params):
        ns = jnp.concatenate([jnp.tile(b.next_obs[i:i + 1], (3, 1)) for i in range(8)])  # state i's 3 copies in a row
        na = actor.apply(old.actor_target, ns, bcq.sample_actions(vae, vae_params, k_next, ns, 0.5))
        q1, q2 = critic.apply(old.critic_target, ns, na)
        v = np.max(np.reshape(0.75 * np.minimum(q1, q2) + 0.25 * np.maximum(q1, q2), (8, 3)), axis=1)
        return b.reward + 0.99 * (1 - b.terminated) * v

    y = target_with(vae_p)
    assert not np.allclose(y, target_with(old.vae), atol=1e-4)  # the test can tell the VAEs apart

    def critic_l(p):
        q1, q2 = critic.apply(p, b.obs, b.action)
        return jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)

    g = jax.grad(critic_l)(old.critic)
    critic_p = optax.apply_updates(old.critic, optax.adam(0.05).update(g, optax.adam(0.05).init(old.critic))[0])
    np.testing.assert_allclose(metrics["critic_loss"][0], critic_l(old.critic), rtol=1e-5)
    for a, e in zip(jax.tree.leaves(new.critic), jax.tree.leaves(critic_p)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)

    sampled = bcq.sample_actions(vae, vae_p, k_actor, b.obs, 0.5)

    def actor_l(p):
        return -critic.apply(critic_p, b.obs, actor.apply(p, b.obs, sampled), method=bcq.Critic.q1_only).mean()

    g = jax.grad(actor_l)(old.actor)
    actor_p = optax.apply_updates(old.actor, optax.adam(0.05).update(g, optax.adam(0.05).init(old.actor))[0])
    np.testing.assert_allclose(metrics["actor_loss"][0], actor_l(old.actor), rtol=1e-5)
    for a, e in zip(jax.tree.leaves(new.actor), jax.tree.leaves(actor_p)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    # Polyak every iteration: target' = 0.3 * new + 0.7 * old target (targets start as copies)
    for tree, target, start in ((new.actor, new.actor_target, old.actor_target),
                                (new.critic, new.critic_target, old.critic_target)):
        for p, t, s in zip(jax.tree.leaves(tree), jax.tree.leaves(target), jax.tree.leaves(start)):
            np.testing.assert_allclose(t, 0.3 * p + 0.7 * s, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# A short run on a tiny D4RL file
# ---------------------------------------------------------------------------------------------
def _tiny_d4rl(path, n=300, seed=0):
    """Pendulum-v1 rows: random observations, actions in Pendulum's [-2, 2], a terminal at row 24 of every 50
    and a timeout at row 49 (scripted episode ends: Pendulum itself never terminates)."""
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 3)).astype(np.float32)
        f["next_observations"] = rng.normal(size=(n, 3)).astype(np.float32)
        f["actions"] = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["terminals"] = np.arange(n) % 50 == 24
        f["timeouts"] = (np.arange(n) % 50 == 49)
    return f"d4rl:{path}"


def test_train_and_eval_only_on_tiny_dataset(tmp_path):
    spec = _tiny_d4rl(str(tmp_path / "pendulum.hdf5"))
    args = bcq.Args(dataset=spec, env_id="Pendulum-v1", num_seeds=2, total_timesteps=400, eval_freq=200,
                    eval_episodes=1, batch_size=16, num_act_samples=10, results_dir=str(tmp_path),
                    run_name="run", save_model=True, **TINY_NETS)
    out = bcq.train(args)
    assert len(out["dataset"]) == 300  # timeouts="bootstrap": every row kept, time-limit ends included
    # terminals do not bootstrap; the time-limit rows (49, 99, ...) do
    np.testing.assert_array_equal(np.flatnonzero(out["dataset"].terminated), np.arange(24, 300, 50))
    with open(tmp_path / "run" / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["seed"]), int(r["step"])) for r in rows] == [(0, 0), (1, 0), (0, 200), (1, 200), (0, 400), (1, 400)]
    assert all(np.isfinite(float(r["return"])) for r in rows)
    assert "normalized_score" not in rows[0]  # Pendulum has no D4RL reference
    # --eval-only replays the draws of the final training evaluation: the same returns
    returns = bcq.evaluate_checkpoint(bcq.Args(eval_only=True, checkpoint=str(tmp_path / "run"), eval_episodes=1))
    np.testing.assert_allclose(returns, out["final_eval"], rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The behavioural DDPG of the BCQ repo: ddpg.py --hidden-dim 400 --hidden-dim2 300
# ---------------------------------------------------------------------------------------------
def _ddpg_shapes(**kw):
    agent = ddpg.make_agent(ddpg.Args(total_timesteps=10, **kw), OBS_DIM, ACT_DIM)
    learner, _ = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(0)]))
    shape = lambda tree: {k: v["kernel"].shape[1:] for k, v in tree["params"].items()}  # noqa: E731
    return shape(learner.actor), shape(learner.critic)


def test_ddpg_hidden_dim2_gives_bcqs_400_300_networks():
    actor, critic = _ddpg_shapes(hidden_dim=400, hidden_dim2=300)
    assert actor == {"Linear_0": (OBS_DIM, 400), "Linear_1": (400, 300), "Linear_2": (300, ACT_DIM)}
    assert critic == {"Linear_0": (OBS_DIM + ACT_DIM, 400), "Linear_1": (400, 300), "Linear_2": (300, 1)}
    actor, critic = _ddpg_shapes()  # unset: the TD3 repo's OurDDPG, 256-256
    assert actor == {"Linear_0": (OBS_DIM, 256), "Linear_1": (256, 256), "Linear_2": (256, ACT_DIM)}
    assert critic["Linear_1"] == (256, 256)
    with pytest.raises(runs.UserError, match="--hidden-dim2 must be >= 1"):
        ddpg.check_args(ddpg.Args(hidden_dim2=0))


def test_bcq_grid_collects_each_imperfect_buffer_from_its_own_bcq_style_ddpg(tmp_path):
    """reproduce/grids/bcq.toml: each imperfect dataset names ddpg/<env> with source_args, which makes a run of
    ddpg.py with the BCQ repo's behavioural settings and the BCQ runs' protocol, beside td3.toml's plain DDPG."""
    import tyro

    from reproduce import grid, launch
    full = {r.name: r for r in grid.expand(grid.load_papers(), "full")}
    root = str(tmp_path)
    for env, name in (("HalfCheetah-v4", "halfcheetah-imperfect"), ("Hopper-v4", "hopper-imperfect"),
                      ("Walker2d-v4", "walker2d-imperfect")):
        user = full[f"bcq/{name}"]
        src = full[f"ddpg/{env}+{name}"]
        assert user.dataset.sources == (src.name,) and src.dataset is None and src.env_id == env
        assert (src.steps, src.seeds, src.eval_freq, src.eval_episodes) == \
            (user.steps, user.seeds, user.eval_freq, user.eval_episodes) == (1_000_000, 5, 5_000, 10)
        behaviour = tyro.cli(ddpg.Args, args=list(src.args))
        assert (behaviour.hidden_dim, behaviour.hidden_dim2, behaviour.actor_lr, behaviour.critic_lr,
                behaviour.batch_size, behaviour.expl_noise, behaviour.learning_starts, behaviour.tau,
                behaviour.discount) == (400, 300, 1e-3, 1e-3, 100, 0.1, 25_000, 0.005, 0.99)
        assert full[f"ddpg/{env}"].args == ()  # the TD3 paper's OurDDPG run is untouched
        cmd = launch.command(src, root, launch.State("todo"))
        assert cmd[cmd.index("--env-id") + 1] == env and cmd[cmd.index("--run-name") + 1] == f"{env}+{name}"
        collect = launch.collect_command(user.dataset, root)
        assert collect[collect.index("--checkpoint") + 1] == os.path.join(root, "ddpg", f"{env}+{name}")


@pytest.mark.parametrize("table,match", [
    ('source = "td3/Pendulum-v1", steps = 4, source_args = "--hidden-dim 4"', "source_args must be a list"),
    ('source = "td3/Pendulum-v1", steps = 4, source_args = []', "a non-empty list"),
    ('source = "td3/Pendulum-v1", source2 = "td3/Pendulum-v1", steps = 4, source_args = ["--x"]', "one source run"),
])
def test_bad_source_args_name_the_problem(tmp_path, table, match):
    from reproduce import grid
    recipe = "medium-expert" if "source2" in table else "medium"
    (tmp_path / "ref.csv").write_text("paper,algo,env,budget,statistic,mean,spread,spread_kind,seeds,source\n")
    (tmp_path / "g.toml").write_text(
        f'[paper]\nid = "g"\ntitle = "g"\nreference = "{tmp_path / "ref.csv"}"\n'
        f'[dataset]\npend = {{ env = "Pendulum-v1", recipe = "{recipe}", {table} }}\n'
        '[scale.quick]\nalgos = ["bcq"]\nenvs = ["pend"]\nseeds = 1\nbudgets = [200]\neval_freq = 100\n'
        'eval_episodes = 1\n')
    with pytest.raises(ValueError, match=match):
        grid.load_papers(str(tmp_path))
