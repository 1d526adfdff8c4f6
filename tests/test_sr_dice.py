"""SR-DICE and its baselines (algos/sr_dice.py), the sr-dice recipe (envs/collect.py), start states
(envs/offline.py) and the ground truth (envs.gym.discounted_value).

* Hand values: the encoder-decoder loss (weights 1 / 0.1 / 1, and the Atari form), the SR target with
  not_done, the W loss (mean inner product, (1 - gamma) start-state term), the three estimates, the
  log squared error.
* Exactness on a tabular MDP: with one-hot features the SR-DICE objective, Deep SR and deep TD recover the
  target policy's normalised value computed by a linear solve (the test that proves the estimators).
* The ground truth on envs whose discounted return is known in closed form.
* The whole pipeline: a tiny TD3 run, the sr-dice recipe, the estimation run, and its errors.
"""

import csv
import json

import gymnasium as gym
import jax
import jax.numpy as jnp
import minari
import numpy as np
import optax
import pytest

from algos import sr_dice as sd
from envs import collect, offline, runs
from envs.gym import discounted_value

pytestmark = pytest.mark.xdist_group("sr_dice")


@pytest.fixture(scope="module", autouse=True)
def minari_root(module_minari_root):
    return module_minari_root


# ---------------------------------------------------------------------------------------------
# Hand values
# ---------------------------------------------------------------------------------------------
def test_encoder_decoder_loss_weights_one_tenth_one():
    f = jnp.asarray
    # next-state MSE (1 + 4) / 2 = 2.5, reward 0.1 * (3 - 1)^2 = 0.4, action MSE 0.5^2 = 0.25
    loss = sd.encoder_decoder_loss(f([[1.0, 2.0]]), f([[0.0, 0.0]]), f([3.0]), f([1.0]), f([[0.5]]), f([[0.0]]))
    assert float(loss) == pytest.approx(2.5 + 0.4 + 0.25)
    # Atari: frame MSE 1, reward 0.1 * 4, latent penalty 0.1 * mean([3^2, 1^2]) = 0.5 (no action decoder)
    loss = sd.encoder_decoder_loss(f([[1.0, 1.0]]), f([[0.0, 0.0]]), f([3.0]), f([1.0]), latent=f([[3.0, 1.0]]))
    assert float(loss) == pytest.approx(1.0 + 0.4 + 0.5)


def test_sr_target_stops_at_terminals():
    lat, psi_next = jnp.asarray([[1.0, 2.0], [1.0, 2.0]]), jnp.asarray([[10.0, 20.0], [10.0, 20.0]])
    y = sd.sr_target(lat, psi_next, jnp.asarray([0.0, 1.0]), 0.5)
    np.testing.assert_allclose(y, [[1.0, 2.0], [6.0, 12.0]])


def test_w_loss_mean_inner_product_and_start_term():
    W = jnp.asarray([1.0, 2.0])
    lat = jnp.asarray([[2.0, 4.0]])  # <lat, W> = mean([2, 8]) = 5 (a sum would give 10)
    start_psi = jnp.asarray([[4.0, 0.0], [0.0, 4.0]])  # mean over start states [2, 2], x (1 - 0.5) = [1, 1]
    loss = sd.w_loss(W, lat, start_psi, 0.5)
    assert float(loss) == pytest.approx(0.5 * 25.0 - np.mean([1.0 * 1.0, 1.0 * 2.0]))
    # its gradient: E[<lat, W> lat] / D - (1 - gamma) E[psi] / D
    g = jax.grad(sd.w_loss)(W, lat, start_psi, 0.5)
    np.testing.assert_allclose(g, [5 * 2 / 2 - 1 / 2, 5 * 4 / 2 - 1 / 2])


def test_estimates_and_error_hand_values():
    f = jnp.asarray
    # SR-DICE: E[<phi, W> r] = mean([mean([1, 3]) * 2, mean([2, 0]) * -1]) = mean([4, -1]) = 1.5
    assert float(sd.sr_dice_estimate(f([1.0, 1.0]), f([[1.0, 3.0], [2.0, 0.0]]), f([2.0, -1.0]))) == 1.5
    # Deep SR: (1 - 0.9) * mean over start states and dims of psi * w = 0.1 * mean([2, 4, 6, 8]) = 0.5
    assert float(sd.deep_sr_estimate(f([1.0, 2.0]), f([[2.0, 2.0], [6.0, 4.0]]), 0.9)) == pytest.approx(0.5)
    # --original-atari-deep-sr (the authors' atari/Deep_SR.py): 0.1 * mean(w) * mean(psi) = 0.1 * 1.5 * 3.5
    assert float(sd.deep_sr_estimate(f([1.0, 2.0]), f([[2.0, 2.0], [6.0, 4.0]]), 0.9, True)) == pytest.approx(0.525)
    assert float(sd.deep_sr_loss(f([2.0, 0.0]), f([[1.0, 5.0]]), f([3.0]))) == pytest.approx(4.0)  # (1 - 3)^2
    assert float(sd.td_target(f([1.0, 1.0]), f([10.0, 10.0]), f([1.0, 0.0]), 0.9)[0]) == pytest.approx(10.0)
    assert float(sd.deep_td_estimate(f([10.0, 30.0]), 0.9)) == pytest.approx(2.0)
    assert sd.log_squared_error(1.1, 1.0) == pytest.approx(-2.0)


def _tiny_agent(**kw):
    rng = np.random.default_rng(0)
    n, starts = 50, 5
    f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    data = sd.Data(f(n, 3), f(n, 3), f(starts, 3), jnp.zeros((1, 1), jnp.int32), jnp.zeros((1, 1), jnp.int32),
                   jnp.zeros((starts, 1), jnp.int32), jnp.asarray(rng.uniform(-1, 1, (n, 1)), jnp.float32), f(n),
                   jnp.ones(n))
    args = sd.resolve_presets(sd.Args(env_id="Pendulum-v1", latent_dim=4, hidden_dim=8, batch_size=8, ope_batch_size=8,
                                      start_batch_size=4, eval_batch_size=16, eval_start_batch_size=4, **kw))
    agent = sd.make_agent(args, (3,), 1, lambda o: jnp.tanh(o[:, :1]), atari=False)
    return agent, agent.init(jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)])), data


def _host(learner):
    """An owned host copy (the chunks donate their learner; a device_get view could alias a donated buffer)."""
    return jax.tree.map(np.array, jax.device_get(learner))


def _perturbed(learner, name, layers):
    """The learner with 0.5 added to the kernels of ``layers`` of network ``name`` (ed, psi)."""
    params = jax.tree.map(np.array, getattr(learner, name))
    for layer in layers:
        params["params"][layer]["kernel"] += 0.5
    return learner._replace(**{name: params})


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def test_phases_train_their_own_state_and_read_the_frozen_ones():
    """Each phase moves its own state and leaves every other bit for bit, while the frozen networks still feed it:
    a changed encoder of phi changes the SR update (phase 2) and the W and w updates (phase 3), a changed psi
    changes W's update only, and changed decoders or reward head change nothing after phase 1. psi's target
    follows Polyak with tau (0.25 here: the relation is sharp in float32), or hard copies every
    target_update_freq iterations (tau 1)."""
    agent, learner, data = _tiny_agent(tau=0.25)
    decoders = ("s1", "s2", "a1", "a2", "reward")
    # Phase 1 trains phi and its decoders only
    start = _host(learner)
    learner, _ = agent.ed_chunk(learner, data, 2)
    after_ed = _host(learner)
    assert not _same(start.ed, after_ed.ed) and int(after_ed.ed_opt[0].count[0]) == 2
    for name in ("psi", "psi_target", "psi_opt", "W", "W_opt", "w", "w_opt", "q", "q_target", "q_opt"):
        assert _same(getattr(start, name), getattr(after_ed, name)), name

    # Phase 2 trains psi only, Polyak 0.25 after the step; phi's encoder feeds it, its decoders do not
    learner, _ = agent.sr_chunk(learner, data, 1)
    after_sr = _host(learner)
    assert not _same(after_ed.psi, after_sr.psi)
    for p, t, t0 in zip(*(jax.tree.leaves(x) for x in (after_sr.psi, after_sr.psi_target, after_ed.psi_target))):
        np.testing.assert_allclose(t, 0.25 * p + 0.75 * t0, rtol=0, atol=1e-6)  # Adam moves p by ~3e-4
    for name in ("ed", "ed_opt", "W", "w", "q", "q_target"):
        assert _same(getattr(after_ed, name), getattr(after_sr, name)), name
    assert not _same(agent.sr_chunk(_perturbed(after_ed, "ed", ["e1"]), data, 1)[0].psi, after_sr.psi)
    assert _same(agent.sr_chunk(_perturbed(after_ed, "ed", decoders), data, 1)[0].psi, after_sr.psi)

    # Phase 3 trains W, w and deep TD's Q; phi and psi stay, and feed W (both) and w (phi only)
    learner, metrics = agent.ope_chunk(learner, data, 3)
    after_ope = _host(learner)
    assert set(metrics) == {"w_loss", "deep_sr_loss", "td_loss"}
    for name in ("W", "w", "q"):
        assert not _same(getattr(after_sr, name), getattr(after_ope, name)), name
    for name in ("ed", "ed_opt", "psi", "psi_target", "psi_opt", "sr_iterations"):
        assert _same(getattr(after_sr, name), getattr(after_ope, name)), name
    for name, layers, moves in (("ed", ["e1"], {"W", "w"}), ("psi", ["Linear_0"], {"W"}), ("ed", decoders, set())):
        out = agent.ope_chunk(_perturbed(after_sr, name, layers), data, 3)[0]
        for k in ("W", "w", "q"):
            assert _same(getattr(out, k), getattr(after_ope, k)) == (k not in moves), (name, layers, k)

    # hard copies every 3 iterations (tau 1, the Atari schedule): the target equals the online net at 3, not at 2
    agent, learner, data = _tiny_agent(tau=1.0, target_update_freq=3, estimators="deep_td")
    learner, _ = agent.sr_chunk(learner, data, 2)
    assert not _same(learner.psi, learner.psi_target)
    learner, _ = agent.sr_chunk(learner, data, 1)
    assert _same(learner.psi, learner.psi_target)
    # one estimator alone (deep TD) trains only its own state
    learner = _host(learner)
    out, metrics = agent.ope_chunk(learner, data, 2)
    assert set(metrics) == {"td_loss"} and np.array_equal(out.W, learner.W) and np.array_equal(out.w, learner.w)
    assert not _same(out.q, learner.q)
    assert set(agent.estimate(out, data)[1]) == {"deep_td"}


# ---------------------------------------------------------------------------------------------
# Exactness on a tabular MDP
# ---------------------------------------------------------------------------------------------
def _tabular_mdp(gamma=0.9):
    """5 states x 2 actions, deterministic: next state T[s, a], reward R[s, a]; state 4 is terminal after
    its step (not_done 0). Behaviour data: every (s, a) with counts 1..4 (the dataset's distribution d_D);
    target policy pi(s) = (s + 1) % 2 (deterministic, differs from the behaviour's); start states 0 and 2
    with probability 3/4 and 1/4. Returns the data as arrays over pairs and the true normalised value."""
    S, A = 5, 2
    T = np.array([[1, 2], [3, 0], [4, 1], [2, 4], [0, 0]])
    R = np.array([[0.0, 1.0], [2.0, -1.0], [0.5, 3.0], [1.0, 0.0], [5.0, -2.0]])
    not_done = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    pi = np.array([(s + 1) % 2 for s in range(S)])
    counts = np.array([[1, 4], [2, 3], [3, 1], [4, 2], [1, 1]])
    pairs = [(s, a) for s in range(S) for a in range(A)]
    starts = [0, 0, 0, 2]
    # truth: V = r_pi + gamma * not_done * P_pi V over states, normalised by (1 - gamma)
    P = np.zeros((S, S))
    for s in range(S):
        P[s, T[s, pi[s]]] = not_done[s, pi[s]]
    V = np.linalg.solve(np.eye(S) - gamma * P, R[np.arange(S), pi])
    truth = (1 - gamma) * np.mean(V[starts])
    rows = [k for k, (s, a) in enumerate(pairs) for _ in range(counts[s, a])]  # the dataset: pairs with counts
    nxt = np.array([T[s, a] * A + pi[T[s, a]] for s, a in pairs])  # index of (s', pi(s'))
    return dict(S=S, A=A, pairs=pairs, rows=np.array(rows), reward=np.array([R[s, a] for s, a in pairs]),
                not_done=np.array([not_done[s, a] for s, a in pairs]), next_pair=nxt,
                start_pairs=np.array([s * A + pi[s] for s in starts]), truth=truth, gamma=gamma)


def test_estimators_are_exact_on_a_tabular_mdp():
    m = _tabular_mdp()
    D, gamma, rows = m["S"] * m["A"], m["gamma"], m["rows"]
    phi = jnp.eye(D)  # one-hot phi(s, a): psi is then the discounted state-action visitation
    reward, not_done = jnp.asarray(m["reward"]), jnp.asarray(m["not_done"])
    psi = jnp.zeros((D, D))
    for _ in range(400):  # the SR's fixed point through the file's target (gamma^400 ~ 5e-19)
        psi = sd.sr_target(phi, psi[m["next_pair"]], not_done, gamma)
    q = jnp.zeros(D)
    for _ in range(400):  # deep TD's target, tabular
        q = sd.td_target(reward, q[m["next_pair"]], not_done, gamma)
    start_psi = psi[m["start_pairs"]]

    def fit(loss, steps=20_000, lr=0.02):
        opt = optax.adam(lr)

        def step(carry, _):
            w, s = carry
            g = jax.grad(loss)(w)
            u, s = opt.update(g, s)
            return (optax.apply_updates(w, u), s), None

        w0 = jnp.ones(D)  # the authors' initialisation
        return jax.lax.scan(step, (w0, opt.init(w0)), None, length=steps)[0][0]

    W = fit(lambda W: sd.w_loss(W, phi[rows], start_psi, gamma))  # the whole dataset as the batch: exact means
    w = fit(lambda w: sd.deep_sr_loss(w, phi[rows], reward[rows]))
    estimates = {"sr_dice": float(sd.sr_dice_estimate(W, phi[rows], reward[rows])),
                 "deep_sr": float(sd.deep_sr_estimate(w, start_psi, gamma)),
                 "deep_td": float(sd.deep_td_estimate(q[m["start_pairs"]], gamma))}
    for name, est in estimates.items():
        assert est == pytest.approx(m["truth"], abs=1e-3), (name, est, m["truth"])
    # and the learned W is the density ratio d_pi / d_D on the pairs the target policy visits
    d_D = np.bincount(rows, minlength=D) / len(rows)
    d_pi = (1 - gamma) * np.asarray(start_psi).mean(0)
    np.testing.assert_allclose(np.asarray(W) / D, d_pi / d_D, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Ground truth on known returns
# ---------------------------------------------------------------------------------------------
class _OneEnv(gym.Env):
    """Reward 1 every step; terminates after `length` steps (set per id) unless the time limit comes first."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    length = 3

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t == self.length, False, {}


class _LongEnv(_OneEnv):
    length = 10_000


for _name, _cls, _limit in (("SRDiceOne-v0", _OneEnv, 50), ("SRDiceLong-v0", _LongEnv, 5)):
    if _name not in gym.registry:
        gym.register(_name, entry_point=_cls, max_episode_steps=_limit)


def test_ground_truth_closed_forms():
    zero = lambda obs: np.zeros((len(obs), 1), np.float32)  # noqa: E731
    g = 0.9
    # terminates after 3 steps: (1 - g)(1 + g + g^2) = 1 - g^3
    truth = discounted_value("SRDiceOne-v0", zero, 7, 0, g, num_envs=3)
    assert truth["value"] == pytest.approx(1 - g ** 3) and truth["episodes"] == 7 and truth["mean_length"] == 3
    # the 5-step time limit ends it: 1 - g^5
    assert discounted_value("SRDiceLong-v0", zero, 4, 0, g)["value"] == pytest.approx(1 - g ** 5)
    # a horizon cut: g^t < tol first at t = 3 for tol 0.75 (0.9^3 = 0.729)
    cut = discounted_value("SRDiceLong-v0", zero, 4, 0, g, tol=0.75)
    assert (cut["value"], cut["horizon"], cut["mean_length"]) == (pytest.approx(1 - g ** 3), 3, 3)


def test_ground_truth_on_random_returns_weights_every_episode_equally():
    """ScriptEnv (conftest): each episode's length and return are drawn at reset; reward ret / length per
    step. The truth must be the plain mean over episodes of sum_t g^t r_t, whatever each env's lengths."""
    zero = lambda obs: np.zeros((len(obs), 1), np.float32)  # noqa: E731
    g = 0.95
    truth = discounted_value("ScriptEnv-v0", zero, 12, 3, g, num_envs=4)
    # replay the same envs (seeds 3..6, three episodes each) by hand
    sums = []
    for i in range(4):
        env = gym.make("ScriptEnv-v0")
        env.reset(seed=3 + i)
        for _ in range(3):
            total, t, done = 0.0, 0, False
            while not done:
                _, r, term, trunc, _ = env.step(np.zeros(1, np.float32))
                total, t, done = total + g ** t * r, t + 1, term or trunc
            sums.append(total)
            env.reset()
    assert truth["value"] == pytest.approx((1 - g) * np.mean(sums))


# ---------------------------------------------------------------------------------------------
# Start states and the recipe
# ---------------------------------------------------------------------------------------------
def test_start_states_are_every_episodes_first_observation(tmp_path):
    episodes = collect.rollout("CountEnv-v0", 40, 0, 2)
    env = gym.make("CountEnv-v0")
    collect.write_minari("test/count/starts-v0", episodes.buffers(), None,  # a test env's spec has a callable
                         {"observation_space": env.observation_space, "action_space": env.action_space},
                         {"recipe": "random"})
    data = offline.load("minari:test/count/starts-v0", "CountEnv-v0", timeouts="bootstrap")
    firsts = np.stack([np.asarray(e["obs"][0]) for e in episodes.done])
    np.testing.assert_array_equal(data.start_obs, firsts)
    assert np.all(data.start_obs[:, 1] == 0)  # CountEnv's step counter is 0 at a reset
    collect.write_d4rl(str(tmp_path / "c.hdf5"), episodes.buffers(), {"recipe": "random"})
    flat = offline.load(f"d4rl:{tmp_path / 'c.hdf5'}", "CountEnv-v0", timeouts="bootstrap")
    np.testing.assert_array_equal(flat.start_obs, firsts)  # the file keeps every episode's first row


# ---------------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------------
def _cli(module, argv):
    runs.cli(module.Args, module.train, module.evaluate_checkpoint, argv=argv)


def test_pipeline_td3_collect_estimate(tmp_path, capsys):
    """A tiny TD3 run -> the sr-dice recipe -> every estimator, 2 seeds; then one-line errors."""
    from algos import td3
    _cli(td3, ["--env-id", "Pendulum-v1", "--total-timesteps", "300", "--learning-starts", "100", "--eval-freq",
               "300", "--eval-episodes", "1", "--hidden-dim", "32", "--save-model", "--results-dir", str(tmp_path),
               "--run-name", "td3"])
    collect.main(["--recipe", "sr-dice", "--checkpoint", str(tmp_path / "td3"), "--steps", "800", "--num-envs", "4",
                  "--eval-episodes", "1", "--dataset-id", "test/pendulum/sr-dice-v0"])
    facts = json.loads(minari.load_dataset("test/pendulum/sr-dice-v0").storage.metadata["fujimoto_jax"])
    assert (facts["recipe"], facts["steps"], facts["ope_random"], facts["ope_noise"]) == ("sr-dice", 800, 0.2, 0.2)
    data = offline.load("minari:test/pendulum/sr-dice-v0", "Pendulum-v1", timeouts="bootstrap")
    assert len(data.start_obs) == facts["episodes"] == 4  # 800 steps on 4 envs: each a 200-step episode

    out = sd.train(sd.Args(dataset="minari:test/pendulum/sr-dice-v0", num_seeds=2, encoder_iterations=20,
                           sr_iterations=20, total_timesteps=40, eval_freq=20, eval_episodes=4, batch_size=32,
                           ope_batch_size=64, start_batch_size=16, eval_batch_size=100, eval_start_batch_size=16,
                           hidden_dim=32, results_dir=str(tmp_path), run_name="ope", save_model=True))
    rows = list(csv.DictReader(open(tmp_path / "ope" / "eval.csv")))
    assert [(r["seed"], r["step"]) for r in rows] == [(s, t) for t in ("0", "20", "40") for s in ("0", "1")]
    config = json.load(open(tmp_path / "ope" / "config.json"))["replay_buffer"]  # the run's setup facts
    truth = config["truth"]["value"]
    assert config["policy"]["run"] == str(tmp_path / "td3") and config["truth"]["episodes"] == 4
    for r in rows:
        assert float(r["truth"]) == pytest.approx(truth, rel=1e-5)
        for e in sd.ESTIMATORS:
            assert float(r[f"log_se_{e}"]) == pytest.approx(np.log10((float(r[e]) - truth) ** 2), abs=1e-3)
    assert rows[0]["sr_dice"] != rows[1]["sr_dice"]  # independent seeds
    # the truth is the noisy policy's: re-derive it with the policy loaded independently
    ckpt = runs.Checkpoint(str(tmp_path / "td3"), "td3")
    spaces = collect.SeedEnvs("Pendulum-v1", [0])
    policy, _ = td3.saved_policy(ckpt.make_args(td3.Args), spaces, ckpt, False, 0, 1)
    rng = np.random.default_rng(100)

    def noisy(obs):
        a = np.concatenate([np.asarray(policy(o[None])) for o in obs])
        return np.clip(a + 0.1 * rng.standard_normal(a.shape), -1, 1).astype(np.float32)

    assert discounted_value("Pendulum-v1", noisy, 4, 100, 0.99)["value"] == pytest.approx(truth, rel=1e-4)

    # resumed: a run stopped at its checkpoint of step 20 and resumed to 40 ends where the 40-step run did
    common = dict(dataset="minari:test/pendulum/sr-dice-v0", num_seeds=2, encoder_iterations=20, sr_iterations=20,
                  eval_freq=20, eval_episodes=4, batch_size=32, ope_batch_size=64, start_batch_size=16,
                  eval_batch_size=100, eval_start_batch_size=16, hidden_dim=32, results_dir=str(tmp_path),
                  save_model=True)
    sd.train(sd.Args(**common, total_timesteps=20, run_name="short"))
    resumed = sd.train(sd.Args(resume=str(tmp_path / "short"), total_timesteps=40))
    for a, b in zip(jax.tree.leaves(out["learner"]), jax.tree.leaves(resumed["learner"])):
        np.testing.assert_array_equal(a, b)
    short = list(csv.DictReader(open(tmp_path / "short" / "eval.csv")))
    assert [r["sr_dice"] for r in short] == [r["sr_dice"] for r in rows]

    # one-line errors, nothing written
    for argv, needle in ((["--estimators", "sr_dice,fqe"], "--estimators"),
                         (["--discount", "1.0"], "--discount must be in (0, 1)"),
                         (["--original-atari-deep-sr"], "dqn-atari: envs only"),
                         (["--policy", str(tmp_path / "nowhere")], "nowhere")):
        results = tmp_path / "err"
        with pytest.raises(SystemExit) as e:
            _cli(sd, ["--dataset", "minari:test/pendulum/sr-dice-v0", *argv, "--results-dir", str(results)])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("error: ") and "\n" not in err and needle in err, err
        assert not results.exists()


def test_atari_networks_shapes_and_frame_decoder():
    """The Atari encoder-decoder rebuilds an 84 x 84 frame from phi(s) (256, >= 0), psi has one vector per
    action, and torch's fan-in bound of a transposed conv is out_channels * k * k."""
    obs = jnp.zeros((2, 4, 84, 84), jnp.uint8)
    action = jnp.asarray([0, 3])
    ed = sd.EncoderDecoder(True, 4, 6)
    params = ed.init(jax.random.PRNGKey(0), obs, action)
    frame, r, a_hat, lat = ed.apply(params, obs + 7, action)
    assert frame.shape == (2, 84, 84) and r.shape == (2,) and a_hat is None and lat.shape == (2, 256)
    assert float(jnp.min(lat)) >= 0.0 and "bias" not in params["params"]["reward"]
    k = params["params"]["dec_2"]["ConvTranspose_0"]["kernel"]  # 32 -> 1, 8 x 8: bound 1 / sqrt(1 * 64)
    assert float(jnp.max(jnp.abs(k))) <= 1 / 8 and float(jnp.max(jnp.abs(k))) > 0.9 / 8
    psi = sd.Successor(True, 6)
    p = psi.init(jax.random.PRNGKey(1), obs, action)
    out = psi.apply(p, obs + 3, action)
    assert out.shape == (2, 256)
    full = psi.apply(p, obs + 3, jnp.asarray([3, 3]))
    np.testing.assert_array_equal(out[1], full[1])  # row 1 asked action 3 both times


@pytest.mark.slow
def test_atari_pipeline_ddqn_collect_estimate(tmp_path):
    """dqn-atari:Pong end to end: a tiny Double DQN run, the sr-dice recipe (1 frame per step), the Atari
    estimators (104 s on 2 CPU cores, most of it compiling the conv networks)."""
    from algos import ddqn
    _cli(ddqn, ["--env-id", "dqn-atari:Pong", "--total-timesteps", "300", "--learning-starts", "100",
                "--eval-freq", "300", "--eval-episodes", "1", "--max-episode-steps", "300", "--save-model",
                "--results-dir", str(tmp_path), "--run-name", "pong"])
    collect.main(["--recipe", "sr-dice", "--checkpoint", str(tmp_path / "pong"), "--steps", "400", "--num-envs", "2",
                  "--eval-episodes", "1", "--dataset-id", "test/pong/sr-dice-v0"])
    facts = json.loads(minari.load_dataset("test/pong/sr-dice-v0").storage.metadata["fujimoto_jax"])
    # random actions with probability exactly 0.1, else greedy (eval_eps 0: the SR-DICE Atari code's)
    assert (facts["ope_random"], facts["eval_eps"], facts["frames"]["history"]) == (0.1, 0.0, 4)
    out = sd.train(sd.Args(dataset="minari:test/pong/sr-dice-v0", num_seeds=2, encoder_iterations=20,
                           sr_iterations=20, total_timesteps=40, eval_freq=20, eval_episodes=2, eval_batch_size=64,
                           eval_start_batch_size=8, results_dir=str(tmp_path), run_name="ope"))
    assert out["truth"]["horizon"] == 917 and out["truth"]["episodes"] == 2
    # clipped rewards in {-1, 0, 1} and an untrained policy that loses points: the normalised truth lies in [-1, 0]
    assert -1.0 <= out["truth"]["value"] <= 0.0
    rows = list(csv.DictReader(open(tmp_path / "ope" / "eval.csv")))
    assert len(rows) == 6 and all(np.isfinite(float(r[e])) for r in rows for e in sd.ESTIMATORS)
