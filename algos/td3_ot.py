"""TD3 + OT rewards: imitation from observation by entropic optimal transport, in JAX, many seeds per process.

Paper: W.-D. Chang, S. Fujimoto, D. Meger, G. Dudek. "Imitation Learning from Observation through Optimal
Transport". Reinforcement Learning Journal vol. 4 (RLC 2024). arXiv:2310.01632.
Code: github.com/weidi-chang/OOPS @ d73f51c (MIT; its README does not cite the paper): main.py compute_ot,
utils.ExpertDataset, TD3.py. Learner: algos/td3.py (sfujim/TD3 @ 34770cc), unchanged.
Only the paper's abstract and introduction could be read here (ar5iv.labs.arxiv.org/html/2310.01632, the RLJ
page rlj.cs.umass.edu/2024/papers/Paper241.html): the reward comes from the Wasserstein distance between the
learner's and the expert's state trajectories, no learned models, no adversarial training, any RL algorithm,
one expert trajectory without actions. Every OT setting below is therefore OOPS's (code), none is verified
against the paper body.

Usage (the "imitation" setting: a deterministic expert, envs.collect's expert recipe with --noise 0; the
expert run lands in results/runs/pendulum-expert, its dataset in Minari's folder as fujimoto-jax/pendulum/expert-v0):
    python algos/td3.py --env-id Pendulum-v1 --total-timesteps 30000 --learning-starts 1000 --save-model --run-name pendulum-expert
    python -m envs.collect --recipe expert --noise 0 --checkpoint results/runs/pendulum-expert --steps 1000 --num-envs 1
    python algos/td3_ot.py --env-id Pendulum-v1 --expert-dataset minari:fujimoto-jax/pendulum/expert-v0 --learning-starts 1000
OOPS's plain learner numbers through TD3's flags (lr 3e-4 is already TD3's; the rest of OOPS's learner is left out,
see below):
    python algos/td3_ot.py --env-id Hopper-v4 --expert-dataset minari:fujimoto-jax/hopper/expert-v0 \
        --batch-size 100 --tau 0.003 --policy-noise 0.1 --expl-noise 0.2 --learning-starts 10000

The delta to td3.py: the env's reward never reaches the learner. Each seed stages the episode in progress
(a buffer of the env's max_episode_steps); at its end (termination or truncation) the episode's rewards come
from an entropic OT plan P between its (s, s') pairs and those of one expert episode, and the episode is then
written into the replay buffer with them. Nothing of an unfinished episode is ever sampled. All of it runs in
the jitted step: a lax.cond on "some seed's episode ended", inside it a lax.map over the seeds with a per-seed
lax.cond, so only the seeds whose episode ended compute a plan (vmapped, the cond would turn into a select and
every seed would pay one), and a lax.switch over learner pad lengths T/16, T/8, T/4, T/2, T, so an episode of
m steps pays an n x (the smallest >= m) plan, not n x T (padding carries no mass: the same rewards). Each seed
has its own replay counter, expert draws and plan. An env that runs past its time limit T stops the run with
an error (the staging buffer holds T steps), and --buffer-size must be >= T (an episode is written whole).

OT reward (per learner episode, OOPS main.py compute_ot):
- features x = [norm(s), norm(s')] of each transition, norm(x) = (x - mean) / (3 std + 1e-8) with the expert's
  state mean and std (code: utils.ExpertDataset.normz; the std with ddof=1 over the s of consecutive-row pairs,
  so each expert episode's last s is left out; zero std -> 1, then clipped >= --std-clip 0.33: main.py);
- cost C_ij = sqrt(||x_i - y_j||_2) (code: np.sqrt(cdist(.., 'euclidean'))), i over the expert's n pairs,
  j over the learner's m;
- P = entropic OT with uniform marginals 1/n, 1/m by log-domain Sinkhorn, reg --ot-reg 0.05 (code: POT
  ot.bregman.sinkhorn_log, lamda1 0.05); POT's iteration exactly (v then u; every 10th iteration, from the
  first, it stops when ||P^T 1 - b||_2 < --ot-tol). Our choice: a tolerance loop (lax.while_loop) as POT, not a
  fixed count, with --ot-tol 1e-9 (POT's default stopThr, which OOPS keeps) but at most --ot-iters 1,000, not
  OOPS's max_iter 20,000: in float32 the marginal error stalls above 1e-9 (measured on Pendulum: ~1e-7 at
  best, and near the expert, where the plan is nearly a permutation, above 1e-6 after 7,000 iterations), so
  the loop would always run 20,000 iterations (2.5 s per 200 x 200 plan on the 2-core CPU). After 1,000
  iterations the rewards are within 2e-2 (near the expert) and 5e-5 (elsewhere) of POT's converged float64
  ones, relative to their mean. --ot-iters 20000 restores OOPS's cap; --ot-tol 0 always runs --ot-iters.
  KNOWN LIMITATION: those ~2% errors sit exactly where imitation refines the policy (learner steps close to the
  expert's, where the plan is nearly a permutation and converges slowest). For more accuracy raise --ot-iters
  (5,000-20,000: linear in time, see benchmarks/td3_ot.py) or run in float64 (JAX_ENABLE_X64=1, where POT's 1e-9
  is reachable: the parity test matches POT within 4e-15), at several times the cost;
- reward of learner step j: r_j = -sum_i C_ij P_ij (code), so an episode's OT return is -<C, P>;
- one expert episode per learner episode, drawn uniformly among --expert-episodes (code: demo_trajs[randint]);
  OOPS needs n = m (its episodes all last 1,000 steps); here n and m may differ (terminations);
- the learner sees --reward-scale * T / sqrt(obs_dim) * r_j (code: TD3.reward_sigma = 5 * 1000 / sqrt(state_dim),
  applied in the update; 1000 is its episodes' length T, which undoes the 1/m of the plan's columns: here T is
  the env's max_episode_steps, identical for OOPS's 1,000-step tasks; our generalisation);
- --expert-episodes 1 (paper abstract: one expert trajectory; code: n_demos 1).
- terminations (our choice: TD3's contract): a real termination stops bootstrapping, while every OT reward is
  <= 0, so on terminating envs (Hopper, Walker2d, Ant) ending an episode early cuts the sum of negative rewards
  and the learner may learn to fall. OOPS never terminates: its done flag is set only at step T - 1 and its
  bootstrap mask comes from the time input, i.e. it bootstraps through a fall. --ignore-terminations is that
  OOPS-like behaviour (store terminated = 0; the episode still ends and is labelled).
  Also, the scale's T factor undoes the plan's 1/m only for full-length episodes: a learner episode of m < T
  steps has per-step rewards of size ~ T/m times a full episode's (the plan's columns sum to 1/m).
- OOPS relabels the buffer once after its 10k random steps, when it first builds the normalisation; here the
  expert statistics exist from the start, so every episode is labelled at its end (the same rewards).

OOPS's learner differs from TD3 and is NOT reproduced (this file is a TD3 sibling; the paper's claim is that
the reward works with any RL algorithm): a time-to-horizon input to actor and critic (randomised in the
critic's target by aug_time), the bootstrap mask from that time input, a PAL-style critic loss (alpha 0.4,
min priority 1), critics of 2 x 1024, gradient clipping 25 on the critic, states normalised for the networks by
the random data's mean and a combined std, batch 100, tau 0.003, policy noise 0.1, exploration 0.2, 10k start
steps, 1,000 updates per episode at its end instead of one per env step. The plain numbers (batch, tau, noises,
start steps) are TD3 flags: the second usage line sets them. The architecture-level parts (time input, PAL
loss, 2 x 1024 critic with gradient clipping, per-episode update bursts) are left out: each changes the learner
itself, so a difference in results could no longer be put on the OT reward, which is the paper's contribution.

TD3's deviations and notes (none changes the algorithm):
- Actions live in [-1, 1]; the `envs` adapter maps them onto the env's bounds. Exploration
  noise 0.1, target noise 0.2 and noise clip 0.5 are therefore in units of max_action, which is
  the repo's `x * max_action` scaling exactly for symmetric boxes (every MuJoCo task).
- Gymnasium -v4 envs with separate terminated/truncated flags replace old gym's
  `episode_timesteps < _max_episode_steps` test; the stored bootstrap mask is the same except for a
  real termination on the time-limit step itself, which old gym stored as not done.
- Warm-up actions are uniform in [-1, 1] drawn from each seed's JAX key instead of
  `env.action_space.sample()` (same distribution, another random stream).
- The buffer holds min(buffer_size, total_timesteps) transitions: identical behaviour, since a
  run never wraps a buffer larger than its length, and less memory for short runs.
- Besides every eval_freq steps (and step 0, as the repo), the final step is evaluated when
  total_timesteps is not a multiple of eval_freq (an extra row, nothing else changes).
- eval.csv reports the env's return (imitation is measured on the task's reward); train_episodes.csv
  holds the env return and the OT return (ot_return) of every training episode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import envs
from envs import imitation, runs

ALGO = "td3_ot"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    env_id: str = "Hopper-v4"
    """continuous-control env: a gymnasium id (Hopper-v4) or dmc:<domain>-<task> (DeepMind Control states)"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: int = 1_000_000
    """env steps per seed (the paper's max_timesteps)"""
    learning_starts: int = 25_000
    """uniform-random steps before the policy acts and training starts (the paper's start_timesteps)"""
    eval_freq: int = 5_000
    """evaluate every this many env steps (and at step 0 and at the end)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes per seed"""
    # TD3
    buffer_size: int = 1_000_000
    """replay buffer capacity per seed"""
    hidden_dim: int = 256
    """width of both hidden layers of actor and critics"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    batch_size: int = 256
    """transitions per update"""
    discount: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the target networks"""
    policy_noise: float = 0.2
    """std of the target policy smoothing noise, in units of max_action"""
    noise_clip: float = 0.5
    """target noise is clipped to +-noise_clip, in units of max_action"""
    policy_freq: int = 2
    """actor and target updates every policy_freq critic updates (policy delay d)"""
    expl_noise: float = 0.1
    """std of the Gaussian exploration noise, in units of max_action"""
    # Imitation from observation by OT
    expert_dataset: str = ""
    """the expert's states: minari:<dataset id> or d4rl:<path to .hdf5> (its actions and rewards are ignored)"""
    expert_episodes: int = 1
    """whole expert episodes used, the dataset's first ones (paper abstract and OOPS n_demos: 1)"""
    ot_reg: float = 0.05
    """entropic regulariser of the Sinkhorn plan (OOPS lamda1)"""
    ot_iters: int = 1_000
    """most Sinkhorn iterations per episode (OOPS max_iter 20,000; float32 never meets 1e-9: see the header)"""
    ot_tol: float = 1e-9
    """Sinkhorn stops when the learner-side marginal error is below this (POT's stopThr); 0: always ot_iters"""
    std_clip: float = 0.33
    """the expert state std used by the normalisation is clipped below at this (OOPS std_clip)"""
    reward_scale: float = 5.0
    """the learner's reward is reward_scale * T / sqrt(obs_dim) * OT reward, T the env's episode limit (OOPS)"""
    ignore_terminations: bool = False
    """bootstrap through real terminations (store terminated = 0; the episode still ends): OOPS-like, whose
    bootstrap mask comes from its time input and never sees a termination (our choice: off, TD3's contract)"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("buffer_size", "batch_size", "hidden_dim", "policy_freq", "expert_episodes",
                                  "ot_iters"),
                    nonneg=("learning_starts", "policy_noise", "noise_clip", "expl_noise", "ot_tol"),
                    positive=("actor_lr", "critic_lr", "ot_reg", "std_clip", "reward_scale"), unit=("discount", "tau"))
    if not args.expert_dataset and not args.eval_only:
        raise runs.UserError("--expert-dataset is required: minari:<dataset id> or d4rl:<path to .hdf5> with the "
                             "expert's states (python -m envs.collect --recipe expert --noise 0 ...)")


# ---------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------
class Linear(nn.Module):
    """torch.nn.Linear with its default initialisation: weight and bias ~ U(+-1/sqrt(fan_in))."""

    features: int

    @nn.compact
    def __call__(self, x):
        bound = 1.0 / np.sqrt(x.shape[-1])
        init = lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -bound, bound)  # noqa: E731
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        bias = self.param("bias", init, (self.features,))
        return x @ kernel + bias


class Actor(nn.Module):
    action_dim: int
    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs):
        x = nn.relu(Linear(self.hidden_dim)(obs))
        x = nn.relu(Linear(self.hidden_dim)(x))
        return jnp.tanh(Linear(self.action_dim)(x))  # in [-1, 1]; the env adapter scales by max_action


class QNetwork(nn.Module):
    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)  # the action enters at the first layer
        x = nn.relu(Linear(self.hidden_dim)(x))
        x = nn.relu(Linear(self.hidden_dim)(x))
        return Linear(1)(x)[..., 0]


class Critic(nn.Module):
    """Two independent Q networks."""

    hidden_dim: int = 256

    def setup(self):
        self.q1 = QNetwork(self.hidden_dim)
        self.q2 = QNetwork(self.hidden_dim)

    def __call__(self, obs, action):
        return self.q1(obs, action), self.q2(obs, action)

    def q1_only(self, obs, action):
        return self.q1(obs, action)


# ---------------------------------------------------------------------------------------------
# Learner state and replay buffer (one seed; vmapped to [num_seeds, ...])
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    actor: dict
    actor_target: dict
    critic: dict
    critic_target: dict
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    key: jax.Array


class Buffer(NamedTuple):
    obs: jax.Array  # [capacity, obs_dim]
    action: jax.Array  # [capacity, action_dim], in [-1, 1]
    reward: jax.Array  # [capacity]
    next_obs: jax.Array  # [capacity, obs_dim], the true s' (final obs at episode ends)
    terminated: jax.Array  # [capacity], 1 only for real terminations: time limits bootstrap


class Stage(NamedTuple):
    """The episode in progress: nothing of it is in the replay buffer until it ends and has its OT rewards."""

    episode: Buffer  # [T, ...] the episode's transitions so far (reward: unused until the end)
    length: jax.Array  # [] int32, transitions staged
    written: jax.Array  # [] int32, transitions written to the replay buffer (slot = written % capacity)
    ot_return: jax.Array  # [] the OT return (-<C, P>) of the last finished episode
    key: jax.Array  # draws the expert episode of each learner episode


# ---------------------------------------------------------------------------------------------
# TD3 pieces as pure functions
# ---------------------------------------------------------------------------------------------
def smoothed_target_action(key, next_action, policy_noise, noise_clip):
    """Target policy smoothing: a' = clip(pi'(s') + clip(eps, -c, c), -1, 1), eps ~ N(0, sigma^2)."""
    noise = jnp.clip(jax.random.normal(key, next_action.shape) * policy_noise, -noise_clip, noise_clip)
    return jnp.clip(next_action + noise, -1.0, 1.0)


def td3_target(reward, terminated, q1_next, q2_next, discount):
    """Clipped double-Q target: y = r + gamma * (1 - terminated) * min(Q1', Q2')."""
    return reward + discount * (1.0 - terminated) * jnp.minimum(q1_next, q2_next)


# ---------------------------------------------------------------------------------------------
# OT reward (OOPS main.py compute_ot), per learner episode
# ---------------------------------------------------------------------------------------------
class Expert(NamedTuple):
    """The expert's normalised (s, s') features, padded: one row of features per expert episode."""

    features: jax.Array  # [E, T_expert, 2 * obs_dim], zeros past each episode's length
    lengths: jax.Array  # [E] int32
    mean: jax.Array  # [obs_dim] the expert's state mean
    std: jax.Array  # [obs_dim] its std, clipped
    max_steps: int  # T: the env's episode limit, the learner's staging length


def normalize(x, mean, std):
    """OOPS's ExpertDataset.normz: (x - mean) / (3 std + 1e-8)."""
    return (x - mean) / (3.0 * std + 1e-8)


def pair_features(obs, next_obs, mean, std):
    """[..., obs_dim] x 2 -> [..., 2 * obs_dim]: the normalised (s, s') pair."""
    return jnp.concatenate([normalize(obs, mean, std), normalize(next_obs, mean, std)], -1)


def sqrt_euclidean_cost(x, y):
    """C_ij = sqrt(||x_i - y_j||_2) for x [n, F], y [m, F] (OOPS: np.sqrt(cdist(x, y, 'euclidean')))."""
    d2 = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, -1)  # [n, m]; XLA fuses the difference into the sum
    return jnp.sqrt(jnp.sqrt(d2))


def sinkhorn_log(cost, n, m, reg, max_iters, tol):
    """Entropic OT plan [N, M] between uniform marginals on the first n rows and the first m columns of ``cost``
    (padding gets zero mass), by POT's ot.bregman.sinkhorn_log: log potentials u [N], v [M] from zero; each
    iteration v = log b - LSE_i(-C/reg + u), then u = log a - LSE_j(-C/reg + v); after iteration 0, 10, 20, ...
    it stops when ||P^T 1 - b||_2 < tol, and after max_iters in any case. Returns (plan, iterations run)."""
    rows, cols = jnp.arange(cost.shape[0]) < n, jnp.arange(cost.shape[1]) < m
    log_a = jnp.where(rows, -jnp.log(n.astype(cost.dtype)), -jnp.inf)
    log_b = jnp.where(cols, -jnp.log(m.astype(cost.dtype)), -jnp.inf)
    mr = -cost / reg

    def iteration(_, uv):
        u, v = uv
        # padded potentials are -inf; the where keeps them so without forming -inf - -inf
        v = jnp.where(cols, log_b - jax.nn.logsumexp(mr + u[:, None], 0), -jnp.inf)
        u = jnp.where(rows, log_a - jax.nn.logsumexp(mr + v[None, :], 1), -jnp.inf)
        return u, v

    def error(u, v):  # the learner-side marginal violation (POT's err)
        return jnp.linalg.norm(jnp.sum(jnp.exp(mr + u[:, None] + v[None, :]), 0) - jnp.exp(log_b))

    def block(state):  # up to 10 iterations, then POT's check
        k, u, v, _ = state
        u, v = jax.lax.fori_loop(0, jnp.minimum(10, max_iters - k), iteration, (u, v))
        return k + jnp.minimum(10, max_iters - k), u, v, error(u, v)

    u, v = iteration(0, (jnp.zeros(cost.shape[0], cost.dtype), jnp.zeros(cost.shape[1], cost.dtype)))
    state = (jnp.asarray(1), u, v, error(u, v))  # POT checks after its first iteration (ii = 0)
    k, u, v, _ = jax.lax.while_loop(lambda s: (s[0] < max_iters) & (s[3] >= tol), block, state)
    return jnp.exp(mr + u[:, None] + v[None, :]), k


def ot_rewards(expert_x, n, learner_y, m, reg, max_iters, tol):
    """Reward of each learner step j: r_j = -sum_i C_ij P_ij (zero past m). Returns (rewards [M], plan [N, M],
    iterations)."""
    cost = sqrt_euclidean_cost(expert_x, learner_y)
    plan, iterations = sinkhorn_log(cost, n, m, reg, max_iters, tol)
    return -jnp.sum(cost * plan, 0), plan, iterations


def make_expert(expert, std_clip: float, max_steps: int) -> Expert:
    """envs.imitation.ExpertStates -> Expert (features normalised by the expert's own statistics)."""
    dtype = jnp.zeros(()).dtype  # float32 (float64 under jax_enable_x64: the parity tests)
    mean, std = (jnp.asarray(x, dtype) for x in imitation.normalization(expert, std_clip))
    feats = np.zeros((len(expert.obs), max(expert.lengths), 2 * len(mean)), dtype)
    for k, (o, o2) in enumerate(zip(expert.obs, expert.next_obs)):
        feats[k, :len(o)] = np.asarray(pair_features(jnp.asarray(o, dtype), jnp.asarray(o2, dtype), mean, std))
    return Expert(jnp.asarray(feats), jnp.asarray(expert.lengths, jnp.int32), mean, std, max_steps)


def schedule(t: int, learning_starts: int, policy_freq: int) -> tuple[bool, bool, bool]:
    """Host-side flags for env step t (0-based): (train, update_actor, random_next_action).

    The repo trains from t == start_timesteps on and counts iterations before checking the delay,
    so the actor and targets move on training iterations 2, 4, 6, ...
    """
    train = t >= learning_starts
    iteration = t - learning_starts + 1
    return train, train and iteration % policy_freq == 0, t + 1 < learning_starts


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Buffer, Stage), stacked
    act: callable  # (learner, obs [N, obs_dim], random) -> (learner, action [N, action_dim])
    policy: callable  # (actor params, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, buffer, size, update_actor) -> (learner, metrics)
    step: callable  # (learner, buffer, stage, transition, end, obs, t, flags...) -> (learner, buffer, stage, action, metrics)
    capacity: int
    label: callable  # (episode [T, ...], length, expert index) -> (rewards [T], iterations) of one staged episode


def make_agent(args: Args, obs_dim: int, action_dim: int, expert: Expert = None) -> Agent:
    """``expert`` None: a policy-only agent (evaluation of a checkpoint, envs.collect)."""
    actor, critic = Actor(action_dim, args.hidden_dim), Critic(args.hidden_dim)
    actor_tx, critic_tx = optax.adam(args.actor_lr), optax.adam(args.critic_lr)
    capacity = min(args.buffer_size, args.total_timesteps)
    horizon = expert.max_steps if expert is not None else 1
    scale = args.reward_scale * horizon / np.sqrt(obs_dim)  # OOPS reward_sigma, 1000 -> T

    def init(key):
        key, k_actor, k_critic, k_stage = jax.random.split(key, 4)
        obs, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(k_actor, obs)
        critic_params = critic.init(k_critic, obs, action)
        learner = Learner(actor_params, actor_params, critic_params, critic_params,
                          actor_tx.init(actor_params), critic_tx.init(critic_params), key)
        buffer = Buffer(jnp.zeros((capacity, obs_dim)), jnp.zeros((capacity, action_dim)), jnp.zeros(capacity),
                        jnp.zeros((capacity, obs_dim)), jnp.zeros(capacity))
        episode = Buffer(jnp.zeros((horizon, obs_dim)), jnp.zeros((horizon, action_dim)), jnp.zeros(horizon),
                         jnp.zeros((horizon, obs_dim)), jnp.zeros(horizon))
        zero = jnp.zeros((), jnp.int32)
        return learner, buffer, Stage(episode, zero, zero, jnp.zeros(()), k_stage)

    def act(learner, obs, random):
        key, k = jax.random.split(learner.key)
        if random:
            action = jax.random.uniform(k, (action_dim,), minval=-1.0, maxval=1.0)
        else:
            noise = jax.random.normal(k, (action_dim,)) * args.expl_noise
            action = jnp.clip(actor.apply(learner.actor, obs) + noise, -1.0, 1.0)
        return learner._replace(key=key), action

    def update(learner, buffer, size, update_actor):
        key, k_idx, k_noise = jax.random.split(learner.key, 3)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, size)
        b = jax.tree.map(lambda x: x[idx], buffer)

        # Critic: clipped double-Q target with target policy smoothing
        next_action = smoothed_target_action(k_noise, actor.apply(learner.actor_target, b.next_obs),
                                             args.policy_noise, args.noise_clip)
        q1_next, q2_next = critic.apply(learner.critic_target, b.next_obs, next_action)
        reward = scale * b.reward  # the OT reward; the env's is never stored
        target = jax.lax.stop_gradient(td3_target(reward, b.terminated, q1_next, q2_next, args.discount))

        def critic_loss_fn(params):
            q1, q2 = critic.apply(params, b.obs, b.action)
            return jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)

        critic_loss, grads = jax.value_and_grad(critic_loss_fn)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        learner = learner._replace(critic=optax.apply_updates(learner.critic, updates), critic_opt=critic_opt, key=key)
        metrics = {"critic_loss": critic_loss, "idx": idx}

        if update_actor:
            # Actor: deterministic policy gradient through Q1 only (not min or mean of the twins)
            def actor_loss_fn(params):
                return -critic.apply(learner.critic, b.obs, actor.apply(params, b.obs), method=Critic.q1_only).mean()

            actor_loss, grads = jax.value_and_grad(actor_loss_fn)(learner.actor)
            updates, actor_opt = actor_tx.update(grads, learner.actor_opt, learner.actor)
            actor_params = optax.apply_updates(learner.actor, updates)
            # Targets: Polyak-averaged only on delayed (actor) iterations
            learner = learner._replace(
                actor=actor_params, actor_opt=actor_opt,
                actor_target=optax.incremental_update(actor_params, learner.actor_target, args.tau),
                critic_target=optax.incremental_update(learner.critic, learner.critic_target, args.tau))
            metrics["actor_loss"] = actor_loss
        return learner, metrics

    # Learner pad lengths of the plan: T/16, T/8, T/4, T/2, T. A staged episode of m steps is labelled by the
    # smallest one >= m (lax.switch), so a 30-step Hopper fall does not pay a 1,000-column plan; the padding
    # carries no mass, so the rewards are those of the full-width plan.
    sizes = sorted({-(-horizon // d) for d in (16, 8, 4, 2, 1)})

    def label(episode, length, e):
        """OT rewards [T] (zero past length) and Sinkhorn iterations of one seed's staged episode
        (Buffer of [T, ...]) against expert episode e."""
        def bucket(size):
            def plan(episode):
                y = pair_features(episode.obs[:size], episode.next_obs[:size], expert.mean, expert.std)  # [size, F]
                rewards, _, iterations = ot_rewards(expert.features[e], expert.lengths[e], y, length, args.ot_reg,
                                                    args.ot_iters, args.ot_tol)
                return jnp.zeros(horizon, rewards.dtype).at[:size].set(rewards), iterations
            return plan
        index = jnp.searchsorted(jnp.asarray(sizes), length)  # the first size >= length
        return jax.lax.switch(index, [bucket(size) for size in sizes], episode)

    def finish(stage, end):
        """One seed: if its episode ended, its OT rewards [T] (else zeros) and its next expert-draw key."""
        key, k = jax.random.split(stage.key)
        e = jax.random.randint(k, (), 0, expert.lengths.shape[0])
        rewards = jax.lax.cond(end, lambda: label(stage.episode, stage.length, e)[0],
                               lambda: jnp.zeros(horizon, stage.episode.reward.dtype))
        return rewards, jnp.where(end, key, stage.key)

    def write(buffer, stage, rewards, end):
        """One seed: an ended episode goes to slots written, written + 1, ... (mod capacity) with its rewards."""
        j = jnp.arange(horizon)
        slots = jnp.where(end & (j < stage.length), (stage.written + j) % capacity, capacity)  # capacity: dropped
        episode = stage.episode._replace(reward=rewards)
        buffer = jax.tree.map(lambda b, x: b.at[slots].set(x, mode="drop"), buffer, episode)
        return buffer, Stage(stage.episode, jnp.where(end, 0, stage.length),
                             jnp.where(end, stage.written + stage.length, stage.written),
                             jnp.where(end, jnp.sum(rewards), stage.ot_return), stage.key)

    def add(buffer, stage, transition, end):
        """Stage transition ([N, ...]) at each seed's episode position; the seeds whose episode ends (end [N])
        have it labelled by OT and written to the replay buffer. Other seeds' episodes stay staged."""
        # mode="drop": a step past T (an env running longer than its time limit; train() stops first) writes nothing
        episode = jax.tree.map(lambda s, x: jax.vmap(lambda s, x, i: s.at[i].set(x, mode="drop"))(s, x, stage.length),
                               stage.episode, transition)
        stage = stage._replace(episode=episode, length=jnp.minimum(stage.length + 1, horizon))

        def finish_all(buffer, stage):
            # seed by seed (lax.map), each in its own lax.cond: only the seeds whose episode ended pay a plan
            # (vmapped, the cond would become a select and run the plan for every seed)
            rewards, keys = jax.lax.map(lambda a: finish(*a), (stage, end))  # [N, T], [N, 2]
            return jax.vmap(write)(buffer, stage._replace(key=keys), rewards, end)

        # nothing runs at steps where no seed's episode ends
        return jax.lax.cond(jnp.any(end), finish_all, lambda b, s: (b, s), buffer, stage)

    def train_and_act(learner, buffer, written, obs, t, train, update_actor, random_next):
        """One training iteration if due, then the action for obs (env step t + 1), for all seeds."""
        metrics = {}
        if train:
            learner, metrics = jax.vmap(update, in_axes=(0, 0, 0, None))(
                learner, buffer, jnp.minimum(written, capacity), update_actor)
            metrics.pop("idx")
        learner, action = jax.vmap(act, in_axes=(0, 0, None))(learner, obs, random_next)
        return learner, action, metrics

    # The write and the update are two jitted calls: fused into one, XLA copies the whole buffer
    # every step to keep the batch gather apart from the in-place write. Both donate their state.
    add = jax.jit(add, donate_argnums=(0, 1))
    train_and_act = jax.jit(train_and_act, static_argnames=("train", "update_actor", "random_next"), donate_argnums=0)

    def step(learner, buffer, stage, transition, end, obs, t, train, update_actor, random_next):
        """Stage transition t (an ended episode goes to the buffer with its OT rewards), train once if due,
        then pick the action for obs (step t + 1)."""
        buffer, stage = add(buffer, stage, transition, end)
        learner, action, metrics = train_and_act(learner, buffer, stage.written, obs, t, train=train,
                                                 update_actor=update_actor, random_next=random_next)
        return learner, buffer, stage, action, metrics

    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, None)), static_argnums=2),
        policy=jax.jit(jax.vmap(actor.apply)),
        update=jax.jit(jax.vmap(update, in_axes=(0, 0, None, None)), static_argnums=3),
        step=step,
        capacity=capacity,
        label=jax.jit(label) if expert is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents; returns the final learner, buffer and run facts."""
    run = runs.Run(ALGO, args, Args, csvs={"train_episodes": runs.EPISODE_HEADER + ["ot_return"]})
    args, seeds = run.args, run.seeds
    check_args(args)
    horizon = imitation.max_episode_steps(args.env_id)
    if args.buffer_size < horizon:  # an episode is written in one piece: it must not overwrite itself
        raise runs.UserError(f"--buffer-size must be >= {args.env_id}'s episode limit ({horizon}): a finished episode "
                             f"is written into the replay buffer whole, got {args.buffer_size}")
    if args.learning_starts < horizon:  # every seed has a finished episode in its buffer when training starts
        raise runs.UserError(f"--learning-starts must be >= {args.env_id}'s episode limit ({horizon}): nothing is in the "
                             f"replay buffer before an episode ends, got {args.learning_starts}")
    expert_states = imitation.expert_states(args.expert_dataset, args.env_id, args.expert_episodes)
    expert = make_expert(expert_states, args.std_clip, horizon)
    train_envs = envs.SeedEnvs(args.env_id, seeds, workers=args.env_workers)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, workers=args.env_workers)
    agent = run.devices.agent(make_agent(args, train_envs.obs_dim, train_envs.action_dim, expert))  # seeds over devices
    learner, buffer, stage = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    if run.checkpoint:
        imitation.check_resume(expert_states, run.checkpoint.host)
        saved, buffer = run.checkpoint.load({"learner": learner, "action": jnp.zeros((len(seeds), train_envs.action_dim)),
                                             "stage": stage}, buffer, args)
        learner, action, stage, t0 = saved["learner"], saved["action"], saved["stage"], run.checkpoint.step
        obs = train_envs.set_state(run.checkpoint.host["envs"])
        episode_steps = np.array(stage.length, np.int64)  # host copy of each seed's staged steps
    else:
        t0, obs = 0, train_envs.reset()
        learner, action = agent.act(learner, obs, args.learning_starts > 0)
        episode_steps = np.zeros(len(seeds), np.int64)
    per_transition = sum(x.nbytes for x in buffer) // (args.num_seeds * agent.capacity)
    replay = {"capacity": agent.capacity, "bytes_per_transition": per_transition,
              "mb_per_seed": round(per_transition * agent.capacity / 1e6, 1)}
    run.start(replay)
    run.print(f"replay buffer on {jax.devices()[0].platform}: {agent.capacity} transitions x {per_transition} bytes "
              f"= {replay['mb_per_seed']} MB per seed, {args.num_seeds} seed(s)")

    compile_s, sps_from, loop_end = None, None, None  # for the steps/s figure, compilation excluded
    metrics, last_eval = {}, None

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(lambda o: agent.policy(learner.actor, o))
        run.evaluation([{"seed": s, "step": step, "return": r} for s, r in zip(seeds, last_eval)], host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        for t in range(t0, args.total_timesteps):
            flags = schedule(t, args.learning_starts, args.policy_freq)
            action_host = np.asarray(action)  # the one device -> host transfer per env step
            env_step = train_envs.step(action_host)
            end = env_step.terminated | env_step.truncated
            episode_steps += 1
            if np.any(episode_steps > horizon):  # the staging buffer holds T steps: stop before anything is lost
                raise runs.UserError(f"{args.env_id}: seed {seeds[int(np.argmax(episode_steps))]}'s episode ran past "
                                     f"{horizon} steps, the env's time limit that OT staging is sized by")
            episode_steps[end] = 0
            # the env's reward stays on the host (logged only): the staged reward is a placeholder, never sampled
            terminated = np.zeros(len(seeds), np.float32) if args.ignore_terminations else env_step.terminated
            transition = Buffer(obs, action, np.zeros(len(seeds), np.float32), env_step.next_obs,
                                terminated.astype(np.float32))
            obs = env_step.obs
            tc = time.time()
            learner, buffer, stage, action, metrics = agent.step(learner, buffer, stage, transition, end, obs, t,
                                                                 *flags)
            if flags[0] and compile_s is None:  # the first training step compiles the update
                compile_s = (jax.block_until_ready(action), time.time() - tc)[1]
            ot_return = np.asarray(stage.ot_return) if env_step.episodes else None  # a sync at episode ends only
            for i, ret, length in env_step.episodes:
                run.episode(seeds[i], t + 1, ret, length, {"ot_return": ot_return[i]})
            if sps_from is None and t >= args.learning_starts + 2 * args.policy_freq:  # every variant compiled
                sps_from = (t, time.time())
            if (t + 1) % 200 == 0:
                run.advance(t + 1, (t - sps_from[0]) / (time.time() - sps_from[1]) if sps_from and t > sps_from[0]
                            else None)
            if t + 1 == args.total_timesteps:
                jax.block_until_ready(action)  # wait for the last update before reading the clock
                loop_end = time.time()
            if (t + 1) % args.eval_freq == 0 or t + 1 == args.total_timesteps:
                evaluate(t + 1)
                if run.checkpoint_due(t + 1):  # the buffer goes in chunks: the slots written since the last save
                    run.save(t + 1, {"learner": learner, "action": action, "stage": stage},
                             {"t": t + 1, "envs": train_envs.get_state(), "expert": expert_states.fingerprint()},
                             ring=buffer, written=np.asarray(stage.written).tolist())
    run.close()
    train_envs.close()
    evaluator.close()
    steps_timed = (args.total_timesteps - 1 - sps_from[0]) if sps_from else 0
    return {
        "run_dir": run.dir, "learner": learner, "buffer": buffer, "stage": stage, "final_eval": last_eval,
        "compile_s": compile_s,
        "train_loop_steps_per_s": steps_timed / (loop_end - sps_from[1]) if steps_timed > 0 else None,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved policy
# ---------------------------------------------------------------------------------------------
def saved_policy(saved: Args, spaces, ckpt: runs.Checkpoint, replay: bool = False, seed_index=None, copies=1):
    """A checkpoint's deterministic policy, obs [N, obs_dim] -> action [N, action_dim] in [-1, 1] (row i
    is seed i; with ``seed_index``, ``copies`` rows of that seed), and with ``replay`` its replay buffer
    [N, capacity, ...] (else None). Used by --eval-only and by the dataset tool (python -m envs.collect)."""
    agent = make_agent(saved, spaces.obs_dim, spaces.action_dim)
    learner, buffer, _ = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in range(saved.num_seeds)]))
    trees, ring = ckpt.load({"learner": learner}, ring=buffer if replay else None, args=saved)
    learner = trees["learner"] if seed_index is None else runs.take_seed(trees["learner"], seed_index, copies)
    return (lambda o: agent.policy(learner.actor, o)), ring


def evaluate_checkpoint(args: Args) -> np.ndarray:
    check_args(args)
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt)[0])


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
