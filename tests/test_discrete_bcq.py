"""Discrete BCQ (algos/discrete_bcq.py) and its data: the behavioural recipe (envs/collect.py) and discrete,
frame-table datasets (envs/offline.py load_discrete).

* Hand values: the relative threshold (with a case the absolute p > tau gets wrong), the next action (the
  current network picks among the allowed actions, the target network values it), each loss term, one
  whole update re-derived step by step, the target schedule (hard copies, Polyak).
* The frame table rebuilds the env's own stacks: a toy frame-stacking env with terminations and time limits,
  both paddings (zeros, first frame), and dqn-atari:Pong; the jitted rebuild equals the host one.
* The behavioural mixture's frequencies; one-line errors.
* Learning on CartPole-v1 from a buffer of the behavioural mixture around a scripted policy (module
  docstring of test_discrete_bcq_learns_from_a_behavioural_buffer).
* End to end: a tiny ddqn run, the behavioural recipe through the CLI, discrete BCQ trained on it and
  resumed.
"""

import csv
import dataclasses
import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import minari
import numpy as np
import optax
import pytest

from algos import discrete_bcq as dbcq
from envs import collect, offline, runs
from envs.gym import SeedEnvs

pytestmark = pytest.mark.xdist_group("discrete_bcq")  # module fixtures (datasets, runs) are made once


@pytest.fixture(scope="module", autouse=True)
def minari_root(module_minari_root):
    return module_minari_root


def _first(tree):
    return jax.tree.map(lambda x: x[0], tree)


def _cli(module, argv):
    runs.cli(module.Args, module.train, module.evaluate_checkpoint, argv=argv)


def _one_line_error(capsys, module, argv, needle, results):
    with pytest.raises(SystemExit) as e:
        _cli(module, [*argv, "--results-dir", str(results)])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: ") and "\n" not in err and needle in err, err
    assert not results.exists()  # nothing written


# ---------------------------------------------------------------------------------------------
# Hand values
# ---------------------------------------------------------------------------------------------
def _log(p):
    return jnp.log(jnp.asarray(p, jnp.float32))


def test_threshold_is_relative_to_the_most_likely_action():
    probs = [[0.25, 0.2, 0.15, 0.4],  # ratios .625 .5 .375 1: all kept; an absolute p > 0.3 keeps only action 3
             [0.9, 0.04, 0.06, 0.0],  # ratios 1 .044 .067 0: only action 0
             [0.35, 0.35, 0.1, 0.2]]  # ties at the max both kept; .286 < .3 < .571
    keep = np.asarray(dbcq.allowed(_log(probs), 0.3))
    np.testing.assert_array_equal(keep, [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 0, 1]])
    assert not np.array_equal(keep, np.asarray(probs) > 0.3)
    np.testing.assert_array_equal(np.asarray(dbcq.allowed(_log(probs), 0.0)), np.asarray(probs) > 0)  # tau 0: all


def test_next_action_picked_by_the_current_network_and_valued_by_the_target():
    q_current = jnp.array([[5.0, 1.0, 4.0, 0.0], [2.0, 3.0, 1.0, 9.0]])
    probs = [[0.05, 0.5, 0.3, 0.15],  # allowed: actions 1 (1.0) and 2 (0.6); action 0 (Q 5) is not
             [0.1, 0.6, 0.3, 0.0]]  # allowed: 1 and 2 (ratio .5); action 3 (Q 9) has p 0
    q_target = jnp.array([[10.0, 20.0, 30.0, 40.0], [7.0, 8.0, 6.0, 100.0]])
    np.testing.assert_array_equal(dbcq.constrained_argmax(q_current, dbcq.allowed(_log(probs), 0.3)), [2, 1])
    y = dbcq.bcq_target(jnp.array([1.0, 0.5]), jnp.array([0.0, 1.0]), q_current, _log(probs), q_target, 0.99, 0.3)
    # row 0: a' = 2 (current Q 4 beats 1), valued 30 by the target (its own argmax 3 would give 40, the unconstrained
    # current argmax 0 would give 10); row 1 terminates: y = r
    np.testing.assert_allclose(y, [1.0 + 0.99 * 30.0, 0.5], rtol=1e-6)
    y0 = dbcq.bcq_target(jnp.array([0.0]), jnp.array([0.0]), q_current[:1], _log(probs[:1]), q_target[:1], 1.0, 0.0)
    np.testing.assert_allclose(y0, [10.0])  # tau 0: every action allowed, a' = argmax current Q = 0 (Double DQN)


def test_loss_terms_hand_values():
    q = jnp.array([[1.0, 2.0], [0.0, 3.0]])
    logits = jnp.array([[0.0, np.log(3.0)], [2.0, -1.0]])
    log_probs = jax.nn.log_softmax(logits)
    action, target = jnp.array([1, 0]), jnp.array([4.5, 0.5])
    total, q_loss, i_loss, penalty = dbcq.bcq_loss(q, log_probs, logits, action, target, 0.01)
    # Huber(delta 1): row 0 |2 - 4.5| = 2.5 -> 2.0; row 1 |0 - 0.5| -> 0.125
    np.testing.assert_allclose(q_loss, (2.0 + 0.125) / 2, rtol=1e-6)
    # NLL: row 0 p(1) = 3/4; row 1 p(0) = e^2 / (e^2 + e^-1)
    nll = (-np.log(0.75) - (2.0 - np.log(np.exp(2.0) + np.exp(-1.0)))) / 2
    np.testing.assert_allclose(i_loss, nll, rtol=1e-6)
    np.testing.assert_allclose(penalty, (0.0 + np.log(3.0) ** 2 + 4.0 + 1.0) / 4, rtol=1e-6)  # of the logits
    np.testing.assert_allclose(total, q_loss + i_loss + 0.01 * penalty, rtol=1e-6)
    np.testing.assert_allclose(dbcq.huber(jnp.array([-3.0, 1.0, 0.2])), [2.5, 0.5, 0.02], rtol=1e-6)


OBS_DIM, NUM_ACTIONS = 3, 3


def _tiny_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    table = np.concatenate([np.zeros((1, OBS_DIM)), rng.normal(size=(2 * n, OBS_DIM))]).astype(np.float32)
    return dbcq.Data(jnp.asarray(table), jnp.arange(1, n + 1, dtype=jnp.int32)[:, None],
                     jnp.arange(n + 1, 2 * n + 1, dtype=jnp.int32)[:, None],
                     jnp.asarray(rng.integers(NUM_ACTIONS, size=n), jnp.int32),
                     jnp.asarray(rng.normal(size=n), jnp.float32),
                     jnp.asarray(rng.random(n) < 0.2, jnp.float32))


@pytest.fixture(scope="module")
def tiny():
    """One compiled 2-seed agent (compiling is most of these tests' time): the target moves every 2nd
    iteration by tau 0.3."""
    args = dbcq.resolve_presets(dbcq.Args(env_id="CartPole-v1", hidden_dim=8, batch_size=8, lr=0.05, tau=0.3,
                                          target_update_freq=2))
    agent = dbcq.make_agent(args, (OBS_DIM,), np.float32, NUM_ACTIONS)
    return args, agent, agent.init(jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)]))


def test_one_update_re_derived_step_by_step(tiny):
    args, agent, learner = tiny
    data = _tiny_data()
    new, metrics = agent.update(learner, data)
    old, new = _first(learner), _first(new)
    net = dbcq.BCQNetwork(NUM_ACTIONS, "fc", 8)
    _, k_idx = jax.random.split(old.key)
    i = jax.random.randint(k_idx, (8,), 0, 64)
    obs, next_obs = data.table[data.obs_idx[i, 0]], data.table[data.next_idx[i, 0]]
    q_next, lp_next, _ = net.apply(old.q, next_obs)
    q_next_t, _, _ = net.apply(old.q_target, next_obs)
    # the target comes from the parameters BEFORE this step's gradient step
    y = dbcq.bcq_target(data.reward[i], data.terminated[i], q_next, lp_next, q_next_t, 0.99, 0.3)

    def loss(p):
        q, lp, logits = net.apply(p, obs)
        return dbcq.bcq_loss(q, lp, logits, data.action[i], y, 0.01)[0]

    tx = optax.adam(0.05, eps=1e-8)
    params = optax.apply_updates(old.q, tx.update(jax.grad(loss)(old.q), tx.init(old.q), old.q)[0])
    np.testing.assert_allclose(metrics["loss"][0], loss(old.q), rtol=1e-5)
    for a, e in zip(jax.tree.leaves(new.q), jax.tree.leaves(params)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)
    assert int(new.iterations) == 1
    other = _first(jax.tree.map(lambda x: x[1:], agent.update(learner, data)[0]))
    assert not np.allclose(jax.tree.leaves(new.q)[0], jax.tree.leaves(other.q)[0])  # seeds draw their own batches


def test_target_moves_every_target_update_freq_iterations(tiny):
    """Every 2nd iteration by tau 0.3 here; with tau 1 (the dqn-atari preset's rule) the update copies the network
    into the target bit for bit on those iterations and leaves it alone between them."""
    args, agent, learner = tiny
    data = _tiny_data()
    one, _ = agent.update(learner, data)
    two, _ = agent.update(one, data)
    for t0, t1, q1, t2, q2 in zip(*(jax.tree.leaves(x) for x in (learner.q_target, one.q_target, one.q,
                                                               two.q_target, two.q))):
        np.testing.assert_array_equal(t1, t0)  # iteration 1: the target stays
        assert not np.allclose(t1, q1)
        np.testing.assert_allclose(t2, 0.3 * q2 + 0.7 * t1, rtol=1e-5, atol=1e-7)  # iteration 2: it moves
    hard = dbcq.make_agent(dataclasses.replace(args, tau=1.0), (OBS_DIM,), np.float32, NUM_ACTIONS)
    one, _ = hard.update(learner, data)
    two, _ = hard.update(one, data)
    three, _ = hard.update(two, data)
    for t0, t1, q2, t2, q3, t3 in zip(*(jax.tree.leaves(x) for x in (learner.q_target, one.q_target, two.q,
                                                                   two.q_target, three.q, three.q_target))):
        np.testing.assert_array_equal(t1, t0)
        np.testing.assert_array_equal(t2, q2)  # iteration 2: an exact copy
        np.testing.assert_array_equal(t3, t2)  # iteration 3: kept, while the network moves on
        assert not np.array_equal(q3, q2)


def test_atari_and_minatar_presets_and_networks():
    atari = dbcq.resolve_presets(dbcq.Args(env_id="dqn-atari:Pong"))
    assert (atari.lr, atari.adam_eps, atari.batch_size, atari.target_update_freq, atari.tau, atari.eval_freq,
            atari.eval_eps, atari.hidden_dim, atari.clip_rewards, atari.drop_capped) == \
        (6.25e-5, 1.5e-4, 32, 8000, 1.0, 50_000, 0.001, 512, True, True)
    gym_ = dbcq.resolve_presets(dbcq.Args(env_id="CartPole-v1", batch_size=7))
    assert (gym_.lr, gym_.adam_eps, gym_.batch_size, gym_.target_update_freq, gym_.tau, gym_.eval_freq,
            gym_.eval_eps, gym_.hidden_dim, gym_.clip_rewards, gym_.drop_capped) == \
        (3e-4, 1e-8, 7, 1, 0.005, 5_000, 0.0, 256, False, False)  # a flag wins over the preset
    assert dbcq.resolve_presets(dbcq.Args(env_id="minatar:breakout")).hidden_dim == 128

    def shapes(arch, hidden, obs):
        params = jax.eval_shape(lambda k: dbcq.BCQNetwork(6, arch, hidden).init(k, jnp.zeros((1, *obs), jnp.uint8)),
                                jax.random.PRNGKey(0))
        return sorted(tuple(x.shape) for x in jax.tree.leaves(params) if len(x.shape) > 1)

    # one trunk, two 512 heads on the 3136 features
    assert shapes("nature", 512, (4, 84, 84)) == sorted([(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64), (3136, 512),
                                                         (3136, 512), (512, 6), (512, 6)])
    assert shapes("minatar", 128, (4, 10, 10)) == sorted([(3, 3, 4, 16), (1024, 128), (1024, 128), (128, 6), (128, 6)])
    assert shapes("fc", 256, (4,)) == sorted([(4, 256), (256, 256), (256, 6)] * 2)  # two separate MLPs (FC_Q)
    # torch's default init: U(+-1/sqrt(fan_in)), weights and biases; a conv's fan_in = in_channels * 8 * 8
    conv = dbcq.Conv(32, 8, 4).init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 4)))
    for x in jax.tree.leaves(conv):
        assert 0.9 / 16 < float(jnp.abs(x).max()) <= 1 / 16


def test_raw_pixels_unless_scale_obs():
    """uint8 inputs are cast to float as they are (0-255); --scale-obs divides them by 255 (the same code path
    for every network: a small FC net keeps this test quick)."""
    obs = jnp.array([[200, 100, 50, 0]], jnp.uint8)
    net = dbcq.BCQNetwork(6, "fc", 8)
    params = net.init(jax.random.PRNGKey(0), obs)
    scaled = dbcq.BCQNetwork(6, "fc", 8, scale_obs=True).apply(params, obs)[0]
    np.testing.assert_allclose(scaled, net.apply(params, obs.astype(jnp.float32) / 255)[0], rtol=1e-5)
    np.testing.assert_allclose(net.apply(params, obs)[0], net.apply(params, obs.astype(jnp.float32))[0], rtol=1e-6)
    assert not np.allclose(net.apply(params, obs)[0], scaled, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Frame tables
# ---------------------------------------------------------------------------------------------
class StackEnv(gym.Env):
    """Frames of 2 x 3 uint8, stacked 4 deep, newest last; a reset pads with zeros (``pad = "first"``: copies of
    the first frame). Each frame is unique: (episode draw, step, action). An episode whose reset draw is odd
    terminates at step 3, the others run into the 5-step time limit (truncated). Reward = action."""

    frame_history = 4
    pad = "zeros"
    observation_space = gym.spaces.Box(0, 255, (4, 2, 3), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.draw, self.t = int(self.np_random.integers(1, 200)), 0
        first = self._frame(0)
        pad = np.zeros_like(first) if self.pad == "zeros" else first
        self.stack = np.stack([pad] * 3 + [first])
        return self.stack.copy(), {}

    def _frame(self, action):
        return np.array([[self.draw, self.t + 1, action + 1], [7, 8, 9]], np.uint8)

    def step(self, action):
        self.t += 1
        self.stack = np.concatenate([self.stack[1:], self._frame(int(action))[None]])
        return self.stack.copy(), float(action), self.draw % 2 == 1 and self.t == 3, False, {}


class StackFirstEnv(StackEnv):
    pad = "first"


for _name, _cls in (("StackEnv-v0", StackEnv), ("StackFirstEnv-v0", StackFirstEnv)):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=5)


def _record(env_id, steps, seeds):
    """Random actions through collect.Episodes (the tool's writer) and collect.write_minari, beside the env's own
    observations per episode in the order the tool writes them: [obs, next_obs, truncated] lists."""
    envs_ = SeedEnvs(env_id, seeds, discrete_ok=True, pixels_ok=True)
    out, rng = collect.Episodes(envs_, frames=True), np.random.default_rng(0)
    obs, open_, done = envs_.reset(), {}, []
    for _ in range(steps // len(seeds)):
        action = rng.integers(envs_.action_dim, size=len(seeds))
        step = envs_.step(action)
        for i in range(len(seeds)):
            out.add(i, obs[i], action[i], step.reward[i], step.next_obs[i], step.terminated[i], step.truncated[i])
            open_.setdefault(i, []).append([obs[i], step.next_obs[i], bool(step.truncated[i])])
            if step.terminated[i] or step.truncated[i]:
                done.append(open_.pop(i))
        obs = step.obs
    out.close_all()
    for i in sorted(open_):  # cut by the budget: truncated
        open_[i][-1][2] = True
        done.append(open_.pop(i))
    spaces = {"observation_space": out.observation_space(envs_.envs[0].observation_space),
              "action_space": envs_.envs[0].action_space}
    envs_.close()
    dataset_id = f"test/{env_id.replace(':', '-').lower()}/frames-v0"
    collect.write_minari(dataset_id, out.buffers(), None, spaces,
                         {"recipe": "random", "env_id": env_id, "frames": out.frames_meta()})
    return f"minari:{dataset_id}", out, done


@pytest.mark.parametrize("env_id,padding", [("StackEnv-v0", "zeros"), ("StackFirstEnv-v0", "first")])
def test_frame_table_rebuilds_the_envs_stacks(env_id, padding):
    spec, out, episodes = _record(env_id, 60, [0, 1])
    assert out.frames_meta() == {"history": 4, "padding": padding}
    stored = list(minari.load_dataset(spec[7:]).iterate_episodes())
    assert stored[0].observations.shape[1:] == (1, 2, 3)  # one frame per step
    assert sum(len(e.rewards) for e in stored) == 60 and sum(len(e) for e in episodes) == 60
    ends = [(bool(e.terminations[-1]), bool(e.truncations[-1])) for e in stored]
    assert (True, False) in ends and (False, True) in ends  # both kinds of episode end are covered
    for mode in ("bootstrap", "drop"):
        data = offline.load_discrete(spec, env_id, mode)
        keep = [(o, n) for ep in episodes for o, n, trunc in ep if mode == "bootstrap" or not trunc]
        assert len(data) == len(keep) and data.obs_idx.shape == (len(keep), 4) and data.obs_idx.dtype == np.int32
        np.testing.assert_array_equal(data.stacks(data.obs_idx), np.stack([o for o, _ in keep]))
        np.testing.assert_array_equal(data.stacks(data.next_idx), np.stack([n for _, n in keep]))
        assert not data.table[0].any() and data.table.dtype == np.uint8
        assert (data.obs_idx == 0).any() == (padding == "zeros")  # zero padding reads row 0
        # the rebuild inside the jitted update gives the same stacks
        np.testing.assert_array_equal(
            jax.jit(dbcq.stacks, static_argnums=2)(jnp.asarray(data.table), jnp.asarray(data.obs_idx), (4, 2, 3)),
            data.stacks(data.obs_idx))
    np.testing.assert_array_equal(data.action, [int(a) for e in stored for a in e.actions[:len(e.rewards) - int(
        e.truncations[-1])]])


def test_frame_table_of_dqn_atari_pong():
    pytest.importorskip("ale_py")
    spec, out, episodes = _record("dqn-atari:Pong", 80, [0, 1])
    assert out.frames_meta() == {"history": 4, "padding": "zeros"}
    data = offline.load_discrete(spec, "dqn-atari:Pong", "bootstrap")
    assert data.table.shape == (1 + 2 * 41, 1, 84, 84) and data.obs_shape == (4, 84, 84)  # 7 KB per step
    np.testing.assert_array_equal(data.stacks(data.obs_idx), np.stack([o for ep in episodes for o, _, _ in ep]))
    np.testing.assert_array_equal(data.stacks(data.next_idx), np.stack([n for ep in episodes for _, n, _ in ep]))
    assert data.obs_idx[0].tolist() == [0, 0, 0, 1] and data.table[1].any()


def test_frames_refused_when_the_stack_does_not_shift():
    out = collect.Episodes(SeedEnvs("StackEnv-v0", [0], discrete_ok=True, pixels_ok=True), frames=True)
    first = np.zeros((4, 2, 3), np.uint8)
    first[-1] = 5
    with pytest.raises(RuntimeError, match="did not shift"):
        out.add(0, first, 0, 0.0, np.full((4, 2, 3), 6, np.uint8), False, False)


# ---------------------------------------------------------------------------------------------
# The behavioural recipe
# ---------------------------------------------------------------------------------------------
def test_behavioural_mixture_frequencies():
    """A constant greedy policy (action 0) on CartPole-v1: ~9-step episodes, so 20,000 steps hold ~2,000
    episodes. Tolerances are 4-5 binomial standard deviations: low-noise episodes 0.2 +- 0.04 (sd 0.009);
    random actions in the other episodes 0.2 - 0.001 = 0.199 +- 0.015 (sd 0.003 over ~16k steps)."""
    out = collect.behavioural_rollout("CartPole-v1", 20_000, 0, 8, lambda o: np.zeros(len(o), np.int64),
                                      0.2, 0.2, 0.001)
    stats = collect.mixture_stats(out)
    assert stats["episodes"] > 1500
    assert abs(stats["low_noise_episodes"] / stats["episodes"] - 0.2) < 0.04, stats
    assert abs(stats["mixture_random_share"] - 0.199) < 0.015, stats
    assert 0.0002 < stats["eps_random_share"] < 0.003, stats  # the eval_eps draws: 0.001 of all steps
    acts = {b: np.concatenate([np.asarray(e["act"])[np.asarray(e["branch"]) == b] for e in out.done])
            for b in (0, 1, 2)}
    assert np.all(acts[0] == 0)  # greedy steps act greedily
    assert abs(acts[2].mean() - 0.5) < 0.05  # mixture steps: uniform over CartPole's 2 actions (sd 0.009)
    low = [e for e in out.done if e["low_noise"][0]]
    assert all(2 not in e["branch"] for e in low) and all(len(set(e["low_noise"])) == 1 for e in out.done)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cartpole_random():
    collect.main(["--recipe", "random", "--env-id", "CartPole-v1", "--steps", "400", "--eval-episodes", "1",
                  "--num-envs", "2"])
    return "minari:fujimoto-jax/cartpole/random-v0"


def _pendulum_d4rl(path, n=50):
    import h5py
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["observations"], f["next_observations"] = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
        f["actions"], f["rewards"] = rng.uniform(-2, 2, (n, 1)), rng.normal(size=n)
        f["terminals"], f["timeouts"] = np.zeros(n, bool), np.zeros(n, bool)
    return f"d4rl:{path}"


def test_one_line_errors_and_nothing_written(capsys, tmp_path, cartpole_random):
    from algos import bcq
    pendulum = _pendulum_d4rl(tmp_path / "p.hdf5")
    _one_line_error(capsys, dbcq, ["--dataset", pendulum, "--env-id", "Pendulum-v1"],
                    "holds continuous (Box) actions, but this algorithm takes Discrete ones (train algos/",
                    tmp_path / "a")
    _one_line_error(capsys, bcq, ["--dataset", cartpole_random], "holds Discrete actions, but this algorithm takes "
                    "continuous (Box) ones (train algos/discrete_bcq.py on it)", tmp_path / "b")
    _one_line_error(capsys, dbcq, ["--dataset", cartpole_random, "--bcq-threshold", "1.5"],
                    "--bcq-threshold must be in [0, 1)", tmp_path / "c")
    _one_line_error(capsys, dbcq, ["--dataset", cartpole_random, "--env-id", "Acrobot-v1"],
                    "observations have shape (4,) but Acrobot-v1 observes (6,)", tmp_path / "d")
    with pytest.raises(runs.UserError, match="is outside CartPole-v1's 2 actions"):
        eps = [minari.data_collector.EpisodeBuffer(id=0, observations=np.zeros((3, 4), np.float32),
                                                   actions=np.array([0, 2]), rewards=np.zeros(2),
                                                   terminations=np.array([False, True]), truncations=np.zeros(2, bool),
                                                   infos={})]
        collect.write_minari("test/cartpole/bad-v0", eps, gym.spec("CartPole-v1"),
                             {"action_space": gym.spaces.Discrete(3)}, {"recipe": "x"})
        offline.load_discrete("minari:test/cartpole/bad-v0", "CartPole-v1")


def test_collect_behavioural_flag_errors(capsys):
    for argv, needle in ([["--recipe", "behavioural", "--steps", "10"], "takes one --checkpoint"],
                         [["--recipe", "behavioural", "--checkpoint", "x", "--low-noise-p", "2"], "--low-noise-p must"],
                         [["--recipe", "behavioural", "--checkpoint", "x", "--eval-eps", "-1"], "--eval-eps must"]):
        with pytest.raises(SystemExit) as e:
            collect.main(argv)
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and needle in err and "\n" not in err, err


# ---------------------------------------------------------------------------------------------
# Learning
# ---------------------------------------------------------------------------------------------
def _scripted(obs):
    """Push toward where the pole is falling: right when angle + 0.5 * angular velocity > 0 (CartPole-v1 return 500)."""
    obs = np.asarray(obs)
    return (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)


def test_discrete_bcq_learns_from_a_behavioural_buffer(tmp_path):
    """10,000 transitions of the behavioural mixture (low-noise episodes 0.2, else random actions 0.199, eval_eps
    0.001) around a scripted policy that holds CartPole-v1 for its 500-step limit. The buffer's episodes return
    about 410 (measured 413 with these seeds); uniform random actions return about 22 and the untrained networks
    about 10 (step 0 of eval.csv). Budget: 2,000 updates of the non-Atari preset (batch 64, Adam 3e-4), 2 seeds.
    Every seed must reach 80% of the buffer's mean return: it has to recover the scripted policy from the data's
    mixed actions (measured, 3 seeds: 271, 290, 230 after 1,000 updates, 491, 469, 453 after 2,000)."""
    out = collect.behavioural_rollout("CartPole-v1", 10_000, 0, 4, _scripted, 0.2, 0.2, 0.001)
    facts = {"recipe": "behavioural", "env_id": "CartPole-v1", "cut_episodes": collect._cut_ids([out])}
    collect.write_minari("test/cartpole/behavioural-v0", out.buffers(), gym.spec("CartPole-v1"), {}, facts)
    data = offline.load_discrete("minari:test/cartpole/behavioural-v0", "CartPole-v1", "bootstrap")
    behaviour = float(np.mean(data.episode_returns))
    assert behaviour == pytest.approx(collect._mean_return([out]))
    result = dbcq.train(dbcq.Args(dataset="minari:test/cartpole/behavioural-v0", total_timesteps=2000, eval_freq=2000,
                                  eval_episodes=5, num_seeds=2, results_dir=str(tmp_path), run_name="bcq"))
    rows = list(csv.DictReader(open(tmp_path / "bcq" / "eval.csv")))
    untrained = [float(r["return"]) for r in rows if r["step"] == "0"]
    print(f"behaviour {behaviour:.1f}, untrained {untrained}, discrete BCQ {result['final_eval']}")
    assert behaviour > 300 and max(untrained) < 0.3 * behaviour, (behaviour, untrained)
    assert np.all(result["final_eval"] >= 0.8 * behaviour), (result["final_eval"], behaviour)


# ---------------------------------------------------------------------------------------------
# End to end: ddqn -> the behavioural recipe -> discrete BCQ (and its resume)
# ---------------------------------------------------------------------------------------------
def test_ddqn_checkpoint_behavioural_recipe_and_discrete_bcq(tmp_path, capsys):
    from algos import ddqn
    _cli(ddqn, ["--env-id", "CartPole-v1", "--total-timesteps", "400", "--learning-starts", "200", "--eval-freq", "400",
                "--eval-episodes", "2", "--save-model", "--results-dir", str(tmp_path), "--run-name", "dqn"])
    collect.main(["--recipe", "behavioural", "--checkpoint", str(tmp_path / "dqn"), "--steps", "600", "--num-envs",
                  "4", "--eval-episodes", "2", "--dataset-id", "test/cartpole/dqn-v0"])
    dataset = minari.load_dataset("test/cartpole/dqn-v0")
    facts = json.loads(dataset.storage.metadata["fujimoto_jax"])
    assert (facts["recipe"], facts["steps"], facts["eval_eps"], facts["low_noise_p"], facts["rand_action_p"]) == \
        ("behavioural", 600, 0.0, 0.2, 0.2)  # eval_eps: the ddqn run's own (0 off Atari)
    ddqn_eval = float(list(csv.DictReader(open(tmp_path / "dqn" / "eval.csv")))[-1]["return"])
    assert facts["policies"][0]["return"] == pytest.approx(ddqn_eval)  # greedy, env seeded seed + 100
    assert set(facts["mixture"]) >= {"low_noise_episodes", "mixture_random_share"}
    data = offline.load_discrete("minari:test/cartpole/dqn-v0", "CartPole-v1", "bootstrap")
    ckpt = runs.Checkpoint(str(tmp_path / "dqn"), "ddqn")
    spaces = SeedEnvs("CartPole-v1", [0], discrete_ok=True)
    policy, _ = ddqn.saved_policy(ckpt.make_args(ddqn.Args), spaces, ckpt, False, 0, len(data))
    agree = float(np.mean(np.asarray(policy(data.stacks(data.obs_idx))) == data.action))
    assert 0.85 < agree < 0.99, agree  # greedy except the mixture's random actions (half of them agree by chance)
    with pytest.raises(SystemExit):  # a continuous recipe refuses the discrete policy
        collect.main(["--recipe", "medium", "--checkpoint", str(tmp_path / "dqn"), "--steps", "10"])
    assert "--recipe behavioural takes a discrete-action one" in capsys.readouterr().err

    # discrete BCQ on it: a run stopped at its checkpoint of step 20 and resumed to 40 ends where one 40-step run does
    common = dict(dataset="minari:test/cartpole/dqn-v0", eval_freq=20, eval_episodes=1, hidden_dim=16, batch_size=16,
                  results_dir=str(tmp_path), save_model=True)
    long_ = dbcq.train(dbcq.Args(**common, total_timesteps=40, run_name="long"))
    dbcq.train(dbcq.Args(**common, total_timesteps=20, run_name="short"))
    resumed = dbcq.train(dbcq.Args(resume=str(tmp_path / "short"), total_timesteps=40))
    for a, b in zip(jax.tree.leaves(long_["learner"]), jax.tree.leaves(resumed["learner"])):
        np.testing.assert_array_equal(a, b)
    def rows(run):
        return [(r["seed"], r["step"], r["return"]) for r in csv.DictReader(open(tmp_path / run / "eval.csv"))]

    assert rows("short") == rows("long") and len(rows("long")) == 3


def test_summary_lists_the_behaviour_of_a_collected_buffer(tmp_path):
    """reproduce/summarize.py: a collected dataset's line says what its behaviour returned (from the committed copy
    of its metadata, which the launcher writes to datasets.json)."""
    from reproduce import grid, launch, summarize
    ds = grid.Dataset("b", "minatar:breakout", "behavioural", "ddqn/minatar:breakout", steps=50, scale="quick")
    assert "behaviour data" not in summarize.dataset_line(ds, str(tmp_path))  # not collected yet
    folder = tmp_path / "datasets" / ds.minari_id / "data"
    folder.mkdir(parents=True)
    facts = {"policies": [{"algo": "ddqn", "step": 30000, "return": 4.31}], "eval_eps": 0.0, "mean_episode_return": 2.5}
    (folder / "metadata.json").write_text(json.dumps({"fujimoto_jax": json.dumps(facts)}))
    assert "behaviour data" not in summarize.dataset_line(ds, str(tmp_path))  # the git-ignored file alone: not read
    launch.record_dataset(ds, str(tmp_path))
    assert summarize.dataset_line(ds, str(tmp_path)).endswith(
        "; behaviour data: its source policy: ddqn step 30,000 returned 4.3 (epsilon 0.0); its episodes: "
        "mean return 2.5")
