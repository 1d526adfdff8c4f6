"""TD3+BC and offline TD7: their terms against hand values, the scanned offline loop, seed independence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algos import td3_bc, td7
from envs import offline, runs

OBS_DIM, ACT_DIM, SIZE = 4, 2, 64


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return td3_bc.Buffer(jnp.asarray(rng.normal(size=(SIZE, OBS_DIM)), jnp.float32),
                         jnp.asarray(rng.uniform(-1, 1, (SIZE, ACT_DIM)), jnp.float32),
                         jnp.asarray(rng.normal(size=SIZE), jnp.float32),
                         jnp.asarray(rng.normal(size=(SIZE, OBS_DIM)), jnp.float32),
                         jnp.asarray(rng.uniform(size=SIZE) < 0.1, jnp.float32))


def _close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


# ---------------------------------------------------------------------------------------------
# TD3+BC pieces against hand values
# ---------------------------------------------------------------------------------------------
def test_td3_bc_lambda_is_alpha_over_mean_abs_q():
    q = jnp.array([2.0, -4.0, 6.0])  # mean |Q| = 4
    assert float(td3_bc.bc_lambda(q, 2.5)) == pytest.approx(2.5 / 4)


def test_td3_bc_actor_loss_hand_value_and_bc_mean_over_batch_and_action_dims():
    q = jnp.array([1.0, 3.0])  # mean Q = 2, mean |Q| = 2 -> lambda = 2.5 / 2
    pi = jnp.array([[0.5, -0.5], [0.0, 1.0]])
    a = jnp.array([[0.0, 0.5], [0.0, 0.0]])
    # squared errors 0.25, 1, 0, 1: the mean over all 4 entries is 0.5625 (a sum over the action dims
    # would give 1.125 per state)
    expected = -(2.5 / 2) * 2.0 + 0.5625
    assert float(td3_bc.td3_bc_actor_loss(q, pi, a, 2.5)) == pytest.approx(expected)


def test_td3_bc_lambda_is_detached():
    # with lambda detached, d/dq of -lambda * mean(q) is -lambda / B for every entry; a lambda that
    # carried gradient would add +alpha * mean(q) / mean|q|^2 * sign(q) / B
    q = jnp.array([1.0, 3.0])
    grad = jax.grad(lambda q: td3_bc.td3_bc_actor_loss(q, jnp.zeros((2, 1)), jnp.zeros((2, 1)), 2.5))(q)
    np.testing.assert_allclose(grad, [-(2.5 / 2) / 2] * 2, rtol=1e-6)


def test_state_normalisation_mean_and_std_plus_1e3():
    obs = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]], np.float32)
    mean, std = offline.normalization(obs)
    np.testing.assert_allclose(mean, [2.0, 1.0])
    np.testing.assert_allclose(std, [np.sqrt(8 / 3) + 1e-3, 1e-3], rtol=1e-6)  # population std, as numpy's


# ---------------------------------------------------------------------------------------------
# Offline TD7's actor term
# ---------------------------------------------------------------------------------------------
def test_td7_offline_actor_loss_hand_value():
    q = jnp.array([[1.0, 3.0], [-2.0, 2.0]])  # [B, 2]: mean Q = 1, mean |Q| = 2
    pi = jnp.array([[0.5], [-0.5]])
    a = jnp.array([[0.0], [0.5]])  # squared errors 0.25, 1 -> mean 0.625
    assert float(td7.offline_actor_loss(q, pi, a, 0.1)) == pytest.approx(-1.0 + 0.1 * 2.0 * 0.625)
    # the |Q| scale is detached: d/dq is -1/4 for every entry (mean over both heads and the batch)
    grad = jax.grad(lambda q: td7.offline_actor_loss(q, pi, a, 0.1))(q)
    np.testing.assert_allclose(grad, -0.25 * np.ones((2, 2)), rtol=1e-6)


def test_td7_offline_actor_step_uses_the_bc_term(monkeypatch):
    """The actor step goes through offline_actor_loss offline, and only offline: the scanned chunk traces it (not
    compiled), and one update shows what reaches it (--lmbda, the batch's dataset actions, pi(s) of the current
    actor) and that the logged actor loss is its value, checked by hand from those arrays."""
    data, traced, seen = _data(), [], []
    loss = td7.offline_actor_loss

    def recording(q, pi, action, lmbda):
        traced.append(lmbda)
        jax.debug.callback(lambda *a: seen.append([np.asarray(x) for x in a]), q, pi, action, lmbda)
        return loss(q, pi, action, lmbda)

    monkeypatch.setattr(td7, "offline_actor_loss", recording)
    for off in (False, True):
        args = td7.Args(offline=off, lmbda=0.25, batch_size=16, zs_dim=8, enc_hdim=8, critic_hdim=8, actor_hdim=8,
                        total_timesteps=500, target_update_rate=4, eval_freq=4)
        agent = td7.make_agent(args, OBS_DIM, ACT_DIM)
        keys = jnp.stack([jax.random.PRNGKey(0)])
        learner = (agent.init(keys) if off else jax.eval_shape(agent.init, keys))[0]  # online: traced only
        prio = td7.Priorities(jnp.ones((1, SIZE)), jnp.ones(1), jnp.full(1, SIZE, jnp.int32))
        jax.eval_shape(agent.train_chunk, learner, data, prio, 1)
        assert bool(traced) == off
        if off:
            actor, encoder = jax.tree.map(jnp.copy, (learner.actor, learner.fixed_encoder))
            stacked = td7.Buffer(*(x[None] for x in data))
            _, _, metrics = agent.update(learner, stacked, prio, jnp.array([True]), True, False)
    (q, pi, action, lmbda), = seen  # one update, one call
    q, pi, action = (x.reshape(-1, *x.shape[-2:])[0] for x in (q, pi, action))  # this seed's [B, ...]
    idx = np.asarray(metrics["idx"][0])
    assert float(lmbda) == 0.25 and q.shape == (16, 2)
    np.testing.assert_array_equal(action, np.asarray(data.action)[idx])  # the dataset's actions of the batch
    np.testing.assert_allclose(pi, agent.policy(actor, encoder, data.obs[idx][None])[0], rtol=1e-5, atol=1e-6)
    assert not np.allclose(pi, action, atol=1e-2)  # the BC term is not ~0
    hand = -q.mean() + 0.25 * np.abs(q).mean() * np.mean((pi - action) ** 2)
    np.testing.assert_allclose(float(metrics["actor_loss"][0]), hand, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# The offline loop: the scanned chunk is the sequence of updates, and seeds are independent
# ---------------------------------------------------------------------------------------------
def _td3_bc_agent(num_seeds, seeds=None):
    args = td3_bc.Args(batch_size=16, hidden_dim=16, total_timesteps=100, eval_freq=10)
    agent = td3_bc.make_agent(args, OBS_DIM, ACT_DIM)
    seeds = range(num_seeds) if seeds is None else seeds
    return args, agent, agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))


def test_td3_bc_scanned_chunk_equals_the_update_sequence():
    data = _data()
    _, agent, learner = _td3_bc_agent(2)
    by_hand = learner
    for i in range(6):  # critic, critic + actor, ... (the repo's total_it % 2 == 0)
        by_hand, _ = agent.update(by_hand, data, i % 2 == 1)
    scanned, metrics = agent.train_chunk(jax.tree.map(jnp.copy, learner), data, 3)
    _close(scanned, by_hand, rtol=1e-5, atol=1e-6)
    assert metrics["actor_loss"].shape == (2,)


def test_td3_bc_seeds_are_independent_and_share_one_dataset():
    data = _data()
    _, agent, two = _td3_bc_agent(2, seeds=[3, 4])
    other = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in [4, 5]]))
    two, _ = agent.train_chunk(two, data, 5)
    other, _ = agent.train_chunk(other, data, 5)  # the same compiled chunk: seed 4 beside another seed
    _close(jax.tree.map(lambda x: x[1], two), jax.tree.map(lambda x: x[0], other), rtol=1e-5, atol=1e-6)
    assert not np.allclose(two.actor["params"]["Linear_0"]["kernel"][0],
                           two.actor["params"]["Linear_0"]["kernel"][1])


def test_td7_offline_seeds_are_independent():
    data = _data()
    args = td7.Args(offline=True, batch_size=16, zs_dim=8, enc_hdim=8, critic_hdim=8, actor_hdim=8,
                    total_timesteps=500, target_update_rate=10, eval_freq=10)
    agent = td7.make_agent(args, OBS_DIM, ACT_DIM)

    def run(seeds):
        learner, _, _ = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
        n = len(seeds)
        prio = td7.Priorities(jnp.ones((n, SIZE)), jnp.ones(n), jnp.full(n, SIZE, jnp.int32))
        return agent.train_chunk(learner, data, prio, 3)

    two, prio2, _ = run([1, 2])
    other, prio1, _ = run([2, 3])  # one compiled chunk: seed 2 beside seed 1, and beside seed 3
    _close(jax.tree.map(lambda x: x[1], two), jax.tree.map(lambda x: x[0], other), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prio2.value[1], prio1.value[0], rtol=1e-5)
    assert not np.allclose(prio2.value[0], prio2.value[1])  # each seed keeps its own LAP priorities
    # 30 steps with hard copies every 10: the targets equal the live networks right after a copy
    _close(two.actor_target, two.actor)
    assert two.steps.tolist() == [30, 30]


def test_offline_flag_errors():
    for kwargs, needle in [(dict(total_timesteps=1001), "multiple of --policy-freq"),
                           (dict(eval_freq=999, total_timesteps=1998), "multiple of --policy-freq")]:
        with pytest.raises(offline.UserError, match=needle):
            td3_bc.check_args(td3_bc.Args(dataset="d4rl:x", **kwargs))
    with pytest.raises(offline.UserError, match="multiple of --target-update-rate"):
        td7.check_args(td7.Args(offline=True, dataset="d4rl:x", total_timesteps=1100))
    with pytest.raises(offline.UserError, match="--dataset is read with --offline"):
        td7.check_args(td7.Args(dataset="d4rl:x"))


@pytest.mark.parametrize("name,argv,needle", [
    ("td3_bc", [], "error: --dataset is required"),
    ("bcq", [], "error: --dataset is required"),
    ("td7", ["--offline"], "error: --dataset is required"),
    ("td7", ["--dataset", "d4rl:x.hdf5"], "error: --dataset is read with --offline"),
    ("td7", ["--max-transitions", "1000"], "error: --max-transitions is read with --offline"),
    ("td3_bc", ["--dataset", "d4rl:x.hdf5", "--max-transitions", "-1"], "error: --max-transitions must be"),
    ("bcq", ["--dataset", "d4rl:x.hdf5", "--max-transitions", "-5"], "error: --max-transitions must be"),
    ("td3_bc", ["--dataset", "hdf5:x"], "error: --dataset 'hdf5:x': expected minari:<dataset id> or d4rl:"),
])
def test_offline_cli_errors_are_one_line_and_write_nothing(name, argv, needle, tmp_path, capsys):
    from algos import bcq
    module = {"td3_bc": td3_bc, "bcq": bcq, "td7": td7}[name]
    with pytest.raises(SystemExit) as e:
        runs.cli(module.Args, module.train, module.evaluate_checkpoint,
                         argv=[*argv, "--env-id", "Pendulum-v1", "--results-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith(needle) and "\n" not in err, err
    assert not (tmp_path / "r").exists()


def _pendulum_d4rl(path, n=400, seed=0):
    import h5py
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["observations"], f["next_observations"] = obs[:-1], obs[1:]
        f["actions"] = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
        f["rewards"] = rng.normal(size=n).astype(np.float32)
        f["terminals"], f["timeouts"] = np.zeros(n, bool), (np.arange(n) % 100) == 99
    return f"d4rl:{path}"


# TD7's three runs compile its scanned update three times (about 45 s): in `make test-slow`
@pytest.mark.parametrize("name", ["td3_bc", pytest.param("td7", marks=pytest.mark.slow)])
def test_offline_resume_extends_to_the_results_of_one_long_run(name, tmp_path):
    """A run stopped at its checkpoint of step 40 and resumed to 80 ends where one 80-step run does:
    learner, LAP priorities (TD7) and key are all in the checkpoint; the dataset is checked, not saved."""
    module = {"td3_bc": td3_bc, "td7": td7}[name]
    small = dict(td3_bc=["--hidden-dim", "16", "--batch-size", "32"],
                 td7=["--offline", "--batch-size", "32", "--zs-dim", "8", "--enc-hdim", "8", "--critic-hdim", "8",
                      "--actor-hdim", "8", "--target-update-rate", "10"])[name]
    common = ["--dataset", _pendulum_d4rl(tmp_path / "p.hdf5"), "--env-id", "Pendulum-v1", "--eval-freq", "20",
              "--eval-episodes", "1", "--results-dir", str(tmp_path), "--save-model", *small]
    cli = lambda argv: runs.cli(module.Args, module.train, module.evaluate_checkpoint, argv=argv)  # noqa: E731
    cli([*common, "--total-timesteps", "80", "--run-name", "long"])
    cli([*common, "--total-timesteps", "40", "--run-name", "short"])
    cli(["--resume", str(tmp_path / "short"), "--total-timesteps", "80"])
    rows = lambda run: [(r.split(",")[2], r.split(",")[3], r.split(",")[4])  # noqa: E731  (seed, step, return)
                        for r in open(tmp_path / run / "eval.csv").read().splitlines()[1:]]
    assert rows("short") == rows("long") and len(rows("long")) == 5
