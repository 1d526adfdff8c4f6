"""Parity of algos/bcq.py with sfujim/BCQ continuous_BCQ (BCQ.py, DDPG.py, main.py, utils.py), float64.

- The update: same initial weights (the authors' torch init, converted), the same batch indices and the same
  three random draws per iteration. Our side draws them from its own key schedule inside `agent.update`; the
  test replays that schedule and hands the authors' `train` the batch through a stub buffer, the VAE's
  posterior noise through `torch.randn_like` and the prior latents (10 per s' for the target, one per s for the
  perturbation model; the authors clip them) through `torch.randn`, in the order their code asks for them.
- The behavioural DDPG: algos/ddpg.py with the BCQ repo's flags against continuous_BCQ/DDPG.py (batch indices
  shared the same way; its update draws nothing else).
- The data: our code never reads the authors' buffer files (.npy), so the test runs the authors' buffer
  generation (main.py interact_with_environment, unchanged) on a scripted env and stores the same episode
  stream with our collection and loader (envs.collect.Episodes -> D4RL file -> envs.offline.load, as BCQ
  reads it); it compares what the authors' ReplayBuffer saved and loaded with our transitions.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.parity.harness import mlp, td3_actor as actor_p, td3_critic as critic_p, StubBuffer, random_buffer, Parity, adam_moment, gym_stub, linear, load_authors, ours, rel, t64, tree_rel

OBS, ACT, B, SIZE, N = 11, 3, 32, 500, 10  # N: candidates per s' in the target (the authors' hard-coded 10)
LATENT = 2 * ACT


def stack(tree):
    """A one-seed pytree with a leading seed axis, on the host (eager JAX ops would each compile)."""
    return jax.tree.map(lambda x: np.asarray(x)[None], tree)


def unstack(tree):
    return jax.tree.map(lambda x: np.asarray(x)[0], tree)


def adam_init(params):
    """optax.adam's initial state of `params`, zeros on the host (its structure from eval_shape, no compile)."""
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(optax.adam(1.0).init, params))


def vae_p(v, g=None):
    return {"params": {n: linear(getattr(v, n), **({"g": g} if g else {}))
                       for n in ("e1", "e2", "mean", "log_std", "d1", "d2", "d3")}}


def adam(opt_state):
    """(mu, nu, count) of optax.adam's state."""
    s = opt_state[0]
    return s.mu, s.nu, s.count


def adam_rel(opt_state, convert, net, optimizer):
    mu, nu, _ = adam(opt_state)
    return max(tree_rel(mu, convert(net, adam_moment(optimizer, "exp_avg"))),
               tree_rel(nu, convert(net, adam_moment(optimizer, "exp_avg_sq"))))


def authors_bcq(**kw):
    BCQ = load_authors("BCQ", "BCQ", subdir="continuous_BCQ")
    torch.manual_seed(0)
    th = BCQ.BCQ(OBS, ACT, 1.0, torch.device("cpu"), **kw)
    for m in (th.actor, th.actor_target, th.critic, th.critic_target, th.vae):
        m.double()
    return BCQ, th


def our_learner(bcq, th):
    a, c, v = actor_p(th.actor), critic_p(th.critic), vae_p(th.vae)
    return stack(bcq.Learner(a, a, c, c, v, adam_init(a), adam_init(c), adam_init(v), jax.random.PRNGKey(0)))


@pytest.fixture(scope="module")
def bcq_agent():
    """One compiled agent for the tests of this module (the compile is most of their time)."""
    bcq = ours("bcq")
    args = bcq.Args(dataset="d4rl:unused.hdf5", env_id="Hopper-v4", total_timesteps=SIZE, batch_size=B)
    return bcq, args, bcq.make_agent(args, OBS, ACT)


@jax.jit
def bcq_draws(learner_key):
    """The draws of one update of algos/bcq.py, from its key schedule: batch indices, the VAE's posterior noise,
    the prior latents of the target's candidates (before the clip) and of the perturbation model's batch."""
    _, k_idx, k_vae, k_next, k_actor = jax.random.split(learner_key, 5)
    return (jax.random.randint(k_idx, (B,), 0, SIZE), jax.random.normal(k_vae, (B, LATENT)),
            jax.random.normal(k_next, (B * N, LATENT)), jax.random.normal(k_actor, (B, LATENT)))


def authors_train_with(th, BCQ, stub, learner_key):
    """One authors' train iteration fed our draws (replayed from `learner_key`). Returns what their losses were:
    the three tensors they call backward on (VAE, critic, actor) and their reconstruction MSE."""
    stub.idx, eps, z_next, z_actor = bcq_draws(learner_key)
    prior = [((B * N, LATENT), z_next), ((B, LATENT), z_actor)]  # in the order their code draws them

    def randn(*shape, **kw):
        shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)) else shape
        want, z = prior.pop(0)
        assert tuple(shape) == want, (shape, want)
        return t64(z)

    def randn_like(x, **kw):
        assert tuple(x.shape) == (B, LATENT)
        return t64(eps)

    backward, mse = [], []
    F = BCQ.F

    def mse_loss(a, b, *args, **kw):
        out = F.mse_loss(a, b, *args, **kw)
        mse.append(float(out.detach()))
        return out

    orig_backward, orig_like, orig_randn = torch.Tensor.backward, torch.randn_like, torch.randn

    def recording_backward(self, *args, **kw):
        backward.append(float(self.detach()))
        return orig_backward(self, *args, **kw)

    BCQ.F = types.SimpleNamespace(relu=F.relu, mse_loss=mse_loss)
    torch.Tensor.backward, torch.randn_like, torch.randn = recording_backward, randn_like, randn
    try:
        th.train(stub, 1, B)
    finally:
        torch.Tensor.backward, torch.randn_like, torch.randn = orig_backward, orig_like, orig_randn
        BCQ.F = F
    assert not prior, "the authors' train drew fewer prior latents than ours"
    return {"vae": backward[0], "critic": backward[1], "actor": backward[2], "recon": mse[0]}


@pytest.mark.authors("BCQ")
def test_bcq_update_matches_authors(bcq_agent):
    bcq, args, agent = bcq_agent
    BCQ, th = authors_bcq(discount=args.discount, tau=args.tau, lmbda=args.lmbda, phi=args.phi)
    assert (args.num_target_samples, args.latent_clip, args.kl_weight) == (N, 0.5, 0.5)  # the authors' constants
    learner = our_learner(bcq, th)
    data = random_buffer(bcq, SIZE, OBS, ACT)
    stub = StubBuffer(data)
    p = Parity("bcq.py", "update: VAE (posterior noise), critics on 10 clipped-prior candidates per s' (soft clipped "
                         "double Q), perturbation model, Polyak targets, Adam moments, losses")
    iters = 6
    for it in range(1, iters + 1):
        theirs = authors_train_with(th, BCQ, stub, np.asarray(learner.key)[0])
        learner, m = agent.update(learner, data)
        s = unstack(learner)
        m = {k: float(np.asarray(v)[0]) for k, v in m.items()}
        p.check(it=it,
                vae=tree_rel(s.vae, vae_p(th.vae)),
                critic=tree_rel(s.critic, critic_p(th.critic)),
                critic_target=tree_rel(s.critic_target, critic_p(th.critic_target)),
                actor=tree_rel(s.actor, actor_p(th.actor)),
                actor_target=tree_rel(s.actor_target, actor_p(th.actor_target)),
                vae_adam=adam_rel(s.vae_opt, vae_p, th.vae, th.vae_optimizer),
                critic_adam=adam_rel(s.critic_opt, critic_p, th.critic, th.critic_optimizer),
                actor_adam=adam_rel(s.actor_opt, actor_p, th.actor, th.actor_optimizer),
                adam_steps=sum(abs(int(adam(o)[2]) - it) for o in (s.vae_opt, s.critic_opt, s.actor_opt)),
                vae_loss=rel(m["vae_loss"], theirs["vae"]), recon_loss=rel(m["recon_loss"], theirs["recon"]),
                kl_loss=rel(m["kl_loss"], (theirs["vae"] - theirs["recon"]) / 0.5),
                critic_loss=rel(m["critic_loss"], theirs["critic"]), actor_loss=rel(m["actor_loss"], theirs["actor"]))
    p.finish(iters, note="max_action 1 (our actions are in [-1, 1])")


@pytest.mark.authors("BCQ")
def test_bcq_detects_a_changed_lambda(bcq_agent):
    """The comparison is sharp: the authors' lambda at 0.75 * 1.001 moves the critic far above the tolerance
    after one iteration, while the VAE (updated before the target) still agrees."""
    bcq, args, agent = bcq_agent
    BCQ, th = authors_bcq(lmbda=0.75 * 1.001)
    learner = our_learner(bcq, th)
    data = random_buffer(bcq, SIZE, OBS, ACT)
    authors_train_with(th, BCQ, StubBuffer(data), np.asarray(learner.key)[0])
    s = unstack(agent.update(learner, data)[0])
    assert tree_rel(s.vae, vae_p(th.vae)) < 1e-9
    assert tree_rel(s.critic, critic_p(th.critic)) > 1e-6


# ---------------------------------------------------------------------------------------------
# The behavioural DDPG (continuous_BCQ/DDPG.py) against algos/ddpg.py with the BCQ repo's flags
# ---------------------------------------------------------------------------------------------
@jax.jit
def ddpg_draws(learner_key):
    """The batch indices of one update of algos/ddpg.py, from its key schedule."""
    return jax.random.randint(jax.random.split(learner_key)[1], (B,), 0, SIZE)


@pytest.mark.authors("BCQ")
def test_bcq_behavioural_ddpg_matches_authors():
    ddpg = ours("ddpg")
    DDPG = load_authors("BCQ", "DDPG", subdir="continuous_BCQ")
    torch.manual_seed(0)
    th = DDPG.DDPG(OBS, ACT, 1.0, torch.device("cpu"))
    for m in (th.actor, th.actor_target, th.critic, th.critic_target):
        m.double()
    net = lambda n, g=None: {"params": mlp(n, ("l1", "l2", "l3"), g)}  # noqa: E731

    args = ddpg.Args(env_id="Hopper-v4", total_timesteps=SIZE, hidden_dim=400, hidden_dim2=300, actor_lr=1e-3,
                     critic_lr=1e-3, batch_size=B)
    agent = ddpg.make_agent(args, OBS, ACT)
    l0, _ = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(0)]))
    # our init has the authors' shapes: 400-300, the critic's action at its input
    shapes = lambda t: jax.tree.map(lambda x: x.shape[1:], t)  # noqa: E731
    assert shapes(l0.actor) == jax.tree.map(np.shape, net(th.actor))
    assert shapes(l0.critic) == jax.tree.map(np.shape, net(th.critic))
    assert th.actor_optimizer.defaults["lr"] == args.actor_lr and th.critic_optimizer.defaults["lr"] == args.critic_lr
    assert th.actor_optimizer.defaults["weight_decay"] == th.critic_optimizer.defaults["weight_decay"] == 0
    a, c = net(th.actor), net(th.critic)
    learner = stack(ddpg.Learner(a, a, c, c, adam_init(a), adam_init(c), jax.random.PRNGKey(0)))
    data = random_buffer(ddpg, SIZE, OBS, ACT)
    data_s, stub = stack(data), StubBuffer(data)
    p = Parity("ddpg.py", "BCQ's behavioural DDPG (--hidden-dim 400 --hidden-dim2 300, Adam 1e-3) against "
                          "continuous_BCQ/DDPG.py: critic, actor, Polyak targets, Adam moments")
    iters = 5
    for it in range(1, iters + 1):
        stub.idx = ddpg_draws(np.asarray(learner.key)[0])
        th.train(stub, B)
        learner, m = agent.update(learner, data_s, SIZE)
        np.testing.assert_array_equal(np.asarray(m["idx"][0]), np.asarray(stub.idx))
        s = unstack(learner)
        p.check(it=it,
                critic=tree_rel(s.critic, net(th.critic)),
                critic_target=tree_rel(s.critic_target, net(th.critic_target)),
                actor=tree_rel(s.actor, net(th.actor)), actor_target=tree_rel(s.actor_target, net(th.actor_target)),
                critic_adam=adam_rel(s.critic_opt, net, th.critic, th.critic_optimizer),
                actor_adam=adam_rel(s.actor_opt, net, th.actor, th.actor_optimizer))
    p.finish(iters)


# ---------------------------------------------------------------------------------------------
# The data: the authors' buffer generation and ReplayBuffer against our collection and loader
# ---------------------------------------------------------------------------------------------
MAX_STEPS = 7  # the scripted env's time limit
# (steps, ends by termination): a termination, a time-limit end, a termination on the time-limit step
# itself, another termination, a time-limit end, then an episode the budget cuts
EPISODES = [(3, True), (MAX_STEPS, False), (MAX_STEPS, True), (5, True), (MAX_STEPS, False)]
TOTAL = sum(n for n, _ in EPISODES) + 2


class ScriptedEnv:
    """Old gym's API as the authors' main.py uses it (Pendulum-v1's spaces: 3 observations, one action in
    [-2, 2]); episodes end as EPISODES says (done at the time limit, as gym's TimeLimit). It records the
    stream in gymnasium's terms for our side: (obs, action, reward, next_obs, terminated, truncated)."""

    _max_episode_steps = MAX_STEPS

    def __init__(self):
        self.rng = np.random.default_rng(3)
        self.action_space = types.SimpleNamespace(high=np.array([2.0]), low=np.array([-2.0]),
                                                  sample=lambda: self.rng.uniform(-2, 2, 1))
        self.stream, self.episode, self.t = [], -1, 0

    def _obs(self):
        return self.rng.normal(size=3)

    def reset(self):
        self.episode, self.t = self.episode + 1, 0
        self.obs = self._obs()
        return self.obs

    def step(self, action):
        self.t += 1
        length, terminates = EPISODES[self.episode] if self.episode < len(EPISODES) else (10 ** 9, False)
        terminated = terminates and self.t == length
        truncated = self.t == MAX_STEPS  # gymnasium's TimeLimit flags the limit step, terminal or not
        nxt, reward = self._obs(), float(self.rng.normal())
        self.stream.append((self.obs, np.array(action, np.float64), reward, nxt, terminated, truncated))
        self.obs = nxt
        return nxt, reward, terminated or self.t == length, {}


@pytest.mark.authors("BCQ")
def test_bcq_buffer_matches_authors_generation(tmp_path, monkeypatch):
    """Every transition the authors' buffer holds (state, action, next_state, reward, not_done) against ours
    (actions in [-1, 1] times max_action 2). Documented difference, asserted exactly: a real termination on the
    time-limit step is terminal in ours and not done in theirs (old gym's `episode_timesteps <
    _max_episode_steps` rule); everything else agrees."""
    from envs import collect, offline
    from envs.gym import SeedEnvs

    main = load_authors("BCQ", "main", subdir="continuous_BCQ", stubs={"gym": gym_stub()})
    torch.set_default_dtype(torch.float32)  # their select_action feeds float32 states (torch.FloatTensor)
    monkeypatch.chdir(tmp_path)
    for d in ("models", "results", "buffers"):
        (tmp_path / d).mkdir()
    torch.manual_seed(0)
    main.DDPG.DDPG(3, 1, 2.0, torch.device("cpu")).save("./models/behavioral_Scripted_0")
    monkeypatch.setattr(main, "eval_policy", lambda *a, **k: 0.0)  # it would make a gym env
    env = ScriptedEnv()
    run_args = types.SimpleNamespace(env="Scripted", seed=0, buffer_name="Robust", max_timesteps=TOTAL,
                                     start_timesteps=0, rand_action_p=0.3, gaussian_std=0.3, batch_size=B,
                                     train_behavioral=False, generate_buffer=True, eval_freq=5000)
    state = np.random.get_state()
    np.random.seed(0)  # their random actions and noise
    try:
        main.interact_with_environment(env, 3, 1, 2.0, torch.device("cpu"), run_args)
    finally:
        np.random.set_state(state)
    theirs = main.utils.ReplayBuffer(3, 1, torch.device("cpu"))
    theirs.load("./buffers/Robust_Scripted_0")
    assert theirs.size == len(env.stream) == TOTAL

    spaces = SeedEnvs("Pendulum-v1", [0])
    spaces.close()
    episodes = collect.Episodes(spaces)
    for obs, action, reward, next_obs, terminated, truncated in env.stream:
        episodes.add(0, obs, action / 2.0, reward, next_obs, terminated, truncated)
    episodes.close_all()  # the budget cuts the last episode, as envs.collect does
    collect.write_d4rl(str(tmp_path / "ours.hdf5"), episodes.buffers(), {"recipe": "imperfect"})
    data = offline.load(f"d4rl:{tmp_path / 'ours.hdf5'}", "Pendulum-v1", timeouts="bootstrap")

    n = theirs.size
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731  # their sample casts to float32 (torch.FloatTensor)
    not_done = 1.0 - data.terminated
    limit_terminal = [i for i, s in enumerate(env.stream) if s[4] and s[5]]
    assert len(limit_terminal) == 1
    differ = np.nonzero(not_done != f32(theirs.not_done[:n, 0]))[0].tolist()
    assert differ == limit_terminal and not_done[differ[0]] == 0.0 and theirs.not_done[differ[0], 0] == 1.0
    not_done[differ] = 1.0  # the documented difference, the one row
    p = Parity("bcq.py", "data: the authors' buffer generation (main.py, utils.ReplayBuffer save/load) against "
                         "envs.collect + envs.offline.load(timeouts='bootstrap')")
    p.check(it=1, state=rel(data.obs, f32(theirs.state[:n])), next_state=rel(data.next_obs, f32(theirs.next_state[:n])),
            reward=rel(data.reward, f32(theirs.reward[:n, 0])), not_done=rel(not_done, f32(theirs.not_done[:n, 0])),
            action=rel(2.0 * data.action.astype(np.float64), f32(theirs.action[:n])))
    p.finish(n, note="iterations = transitions, compared as float32 (their sample casts with torch.FloatTensor, our "
                     "loader stores float32); env action bounds +-2; the termination on the time-limit step (terminal "
                     "in ours, not done in theirs) is asserted as the one differing row")
