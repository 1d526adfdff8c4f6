"""TD3 + PER: the LAP paper's prioritized-replay baseline, in JAX, many seeds per process.

Paper: S. Fujimoto, D. Meger, D. Precup. "An Equivalence between Loss Functions and Non-Uniform
Sampling in Experience Replay". NeurIPS 2020. arXiv:2007.06049 (PER: T. Schaul et al., ICLR 2016,
arXiv:1511.05952).
Follows: github.com/sfujim/LAP-PAL @ eb67893af0bab9de8cabc7e5fe7d8f5deee9cc35 (continuous/PER_TD3.py
and the prioritised buffer of continuous/utils.py), which is TD3 with the TD3 repo's current defaults
(256-256 networks, Adam 3e-4, batch 256, 25k uniform-random start steps).
Siblings: algos/td3.py (the base), td3_lap.py, td3_pal.py;
`diff algos/td3.py algos/td3_per.py` shows the sampler, the loss and the priority update.

Usage:  python algos/td3_per.py --env-id Hopper-v4 --num-seeds 5

TD3's Algorithm 1 with the batch drawn with probability p_i / sum_j p_j instead of uniformly and an
importance-weighted MSE on both critics: sum over k of the batch mean of w_i (Q_k(s, a) - y)^2, with
w_i = p_i^-beta / max over the batch of p_j^-beta; beta starts at 0.4 and grows by 2e-7 per sampled
batch up to 1 (reached after 3M updates). Each sampled transition then gets
p = max(|d1|, |d2|)^alpha (alpha 0.6, no floor and no epsilon, as the authors' continuous PER), and
every new transition the largest priority seen so far (1 at the start, never reset).

Deviations and notes (none changes the algorithm):
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
- Sampling runs on the device by cumulative sums and searchsorted, in two levels (a block of up to
  256 slots, then a slot in it), where the authors walk a float64 sum tree on the host: the same
  distribution up to float32 rounding (tests/test_td3_lap.py checks the frequencies).
- A batch that draws one transition twice keeps the first draw's new priority, as the authors'
  np.unique does.
- --total-timesteps defaults to 3M, the LAP paper's max_timesteps; the 1M-slot buffer then wraps.
- beta is computed from the count of sampled batches, min(beta + beta_increment * count, 1), where the
  authors add 2e-7 to a float64 beta at each call: the same values up to rounding.
- A transition whose new priority is exactly 0 is not drawn again until overwritten (as the authors').
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
from envs import runs

ALGO = "td3_per"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    env_id: str = "Hopper-v4"
    """continuous-control env: a gymnasium id (Hopper-v4) or dmc:<domain>-<task> (DeepMind Control states)"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: int = 3_000_000
    """env steps per seed (the LAP paper's max_timesteps)"""
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
    # PER
    alpha: float = 0.6
    """priority exponent: p = max(|delta1|, |delta2|)^alpha (no floor)"""
    beta: float = 0.4
    """importance-sampling exponent at the first update, annealed to 1"""
    beta_increment: float = 2e-7
    """added to beta per sampled batch, up to 1 (0.4 + 2e-7 * 3M updates = 1)"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("buffer_size", "batch_size", "hidden_dim", "policy_freq"),
                    nonneg=("learning_starts", "policy_noise", "noise_clip", "expl_noise", "alpha", "beta",
                            "beta_increment"),
                    positive=("actor_lr", "critic_lr"), unit=("discount", "tau"))
    if args.beta > 1:
        raise runs.UserError(f"--beta must be in [0, 1], got {args.beta}")


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


class Priorities(NamedTuple):
    """PER priorities, written by the buffer insert and by every update."""

    value: jax.Array  # [capacity], 0 for empty slots (never sampled)
    max: jax.Array  # scalar: priority given to new transitions, the largest seen (starts at 1, never reset)
    samples: jax.Array  # int32 scalar: batches sampled so far (anneals beta)


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


def per_mse(delta, weights):
    """Importance-weighted MSE on TD errors [B, 2] with weights [B]: batch means summed over the critics."""
    return (weights[:, None] * delta**2).mean(0).sum()


def per_priority(delta, alpha=0.6):
    """p = (max over critics |delta|)^alpha, per transition (no floor, no epsilon)."""
    return jnp.abs(delta).max(-1) ** alpha


def per_beta(samples, beta=0.4, beta_increment=2e-7):
    """beta of the batch sampled after `samples` earlier ones: beta + beta_increment * samples, at most 1."""
    return jnp.minimum(beta + beta_increment * samples, 1.0)


def importance_weights(p, beta):
    """w_i = p_i^-beta / max_j p_j^-beta over the batch's priorities p [B], computed as (min p / p_i)^beta
    (the sum of priorities and buffer size of (N P(i))^-beta cancel in the ratio)."""
    return (p.min() / p) ** beta


SAMPLE_BLOCK = 256  # at most this many slots per block of the two-level sampler


def sample_block(n):
    """Slots per block for n slots: the largest divisor of n from SAMPLE_BLOCK / 2 to SAMPLE_BLOCK (1M slots:
    250), so the blocks are a reshape of the priorities, which XLA:CPU sums 3x faster than a zero-padded
    copy; SAMPLE_BLOCK (padded) when n has no such divisor."""
    top = min(SAMPLE_BLOCK, n)
    return next((d for d in range(top, top // 2, -1) if n % d == 0), top)


def flat_cumsum(w):
    """Cumulative sum over the last axis that stays flat on zero weights. XLA:CPU computes cumsum by a parallel
    scan whose rounding can raise the sum at a zero weight (and even lower it), so searchsorted could land on
    a slot of priority 0 (PER: an infinite weight); the running max of the sums at positive weights cannot."""
    return jax.lax.cummax(jnp.where(w > 0, jnp.cumsum(w, -1), -jnp.inf), w.ndim - 1)


def per_sample(key, priority, batch_size):
    """batch_size slots drawn with probability priority_i / sum(priority), and their priorities: a block by
    the cumulative sum of the blocks' totals, then a slot by the cumulative sum inside that block. Two
    levels read the buffer once per update; one cumulative sum over 1M slots is slow on XLA:CPU. The
    priorities come from the sampled blocks: gathered again from the array, XLA copied it every update."""
    n = priority.shape[0]
    block = sample_block(n)
    blocks = jnp.pad(priority, (0, -n % block)).reshape(-1, block)  # [num_blocks, block], zero padded
    totals = flat_cumsum(blocks.sum(-1))
    u = jax.random.uniform(key, (batch_size,)) * totals[-1]  # in [0, total)
    last_block = totals.shape[0] - 1 - jnp.argmax((blocks.sum(-1) > 0)[::-1])  # never an empty block past it
    b = jnp.minimum(jnp.searchsorted(totals, u, side="right"), last_block)
    u = u - jnp.where(b > 0, totals[b - 1], 0.0)
    rows = blocks[b]  # [B, block]
    i = jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="right"))(flat_cumsum(rows), u)
    last = block - 1 - jnp.argmax(rows[:, ::-1] > 0, -1)  # u rounded past the block's own sum: its last used slot
    i = jnp.minimum(i, last)
    return b * block + i, jnp.take_along_axis(rows, i[:, None], -1)[:, 0]


def set_priorities(value, idx, p):
    """value[idx] = p, where a slot drawn twice takes the priority of its first draw (the authors' np.unique)."""
    first = jnp.argmax(idx[:, None] == idx[None, :], -1) == jnp.arange(idx.shape[0])
    return value.at[jnp.where(first, idx, value.shape[0])].set(p, mode="drop")


def schedule(t: int, learning_starts: int, policy_freq: int) -> tuple[bool, bool, bool]:
    """Host-side flags for env step t (0-based): (train, update_actor, random_next_action).

    The repo trains from t == start_timesteps on and counts iterations before checking the delay,
    so the actor and targets move on training iterations 2, 4, 6, ...
    """
    train = t >= learning_starts
    iteration = t - learning_starts + 1
    return train, train and iteration % policy_freq == 0, t + 1 < learning_starts


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Buffer, Priorities), stacked
    act: callable  # (learner, obs [N, obs_dim], random) -> (learner, action [N, action_dim])
    policy: callable  # (actor params, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, buffer, prio, update_actor) -> (learner, prio, metrics)
    step: callable  # (learner, buffer, prio, transition, obs, t, flags...) -> (learner, buffer, prio, action, metrics)
    capacity: int


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    actor, critic = Actor(action_dim, args.hidden_dim), Critic(args.hidden_dim)
    actor_tx, critic_tx = optax.adam(args.actor_lr), optax.adam(args.critic_lr)
    capacity = min(args.buffer_size, args.total_timesteps)

    def init(key):
        key, k_actor, k_critic = jax.random.split(key, 3)
        obs, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(k_actor, obs)
        critic_params = critic.init(k_critic, obs, action)
        learner = Learner(actor_params, actor_params, critic_params, critic_params,
                          actor_tx.init(actor_params), critic_tx.init(critic_params), key)
        buffer = Buffer(jnp.zeros((capacity, obs_dim)), jnp.zeros((capacity, action_dim)), jnp.zeros(capacity),
                        jnp.zeros((capacity, obs_dim)), jnp.zeros(capacity))
        return learner, buffer, Priorities(jnp.zeros(capacity), jnp.float32(1.0), jnp.int32(0))

    def act(learner, obs, random):
        key, k = jax.random.split(learner.key)
        if random:
            action = jax.random.uniform(k, (action_dim,), minval=-1.0, maxval=1.0)
        else:
            noise = jax.random.normal(k, (action_dim,)) * args.expl_noise
            action = jnp.clip(actor.apply(learner.actor, obs) + noise, -1.0, 1.0)
        return learner._replace(key=key), action

    def update(learner, buffer, prio, update_actor):
        key, k_idx, k_noise = jax.random.split(learner.key, 3)
        idx, sampled = per_sample(k_idx, prio.value, args.batch_size)
        weights = importance_weights(sampled, per_beta(prio.samples, args.beta, args.beta_increment))
        b = jax.tree.map(lambda x: x[idx], buffer)

        # Critic: clipped double-Q target with target policy smoothing
        next_action = smoothed_target_action(k_noise, actor.apply(learner.actor_target, b.next_obs),
                                             args.policy_noise, args.noise_clip)
        q1_next, q2_next = critic.apply(learner.critic_target, b.next_obs, next_action)
        target = jax.lax.stop_gradient(td3_target(b.reward, b.terminated, q1_next, q2_next, args.discount))

        def critic_loss_fn(params):
            q1, q2 = critic.apply(params, b.obs, b.action)
            delta = jnp.stack([q1, q2], -1) - target[:, None]  # [B, 2]
            return per_mse(delta, weights), delta

        (critic_loss, delta), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        learner = learner._replace(critic=optax.apply_updates(learner.critic, updates), critic_opt=critic_opt, key=key)
        metrics = {"critic_loss": critic_loss, "idx": idx}

        # PER: new priorities of the sampled transitions, from the TD errors before the step
        p = per_priority(delta, args.alpha)
        prio = Priorities(set_priorities(prio.value, idx, p), jnp.maximum(prio.max, p.max()), prio.samples + 1)

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
        return learner, prio, metrics

    def add(buffer, prio, transition, t):
        """Store transition t ([N, ...]) of every seed in slot t (the seeds step in lockstep), with the max priority."""
        buffer = jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, t % capacity, 1), buffer, transition)
        return buffer, prio._replace(value=jax.lax.dynamic_update_index_in_dim(prio.value, prio.max, t % capacity, 1))

    def train_and_act(learner, buffer, prio, obs, t, train, update_actor, random_next):
        """One training iteration if due, then the action for obs (env step t + 1), for all seeds."""
        metrics = {}
        if train:
            learner, prio, metrics = jax.vmap(update, in_axes=(0, 0, 0, None))(learner, buffer, prio, update_actor)
            metrics.pop("idx")
        learner, action = jax.vmap(act, in_axes=(0, 0, None))(learner, obs, random_next)
        return learner, prio, action, metrics

    # The write and the update are two jitted calls: fused into one, XLA copies the whole buffer
    # every step to keep the batch gather apart from the in-place write. Both donate their state.
    add = jax.jit(add, donate_argnums=(0, 1))
    train_and_act = jax.jit(train_and_act, static_argnames=("train", "update_actor", "random_next"),
                            donate_argnums=(0, 2))

    def step(learner, buffer, prio, transition, obs, t, train, update_actor, random_next):
        """Store transition t, train once if due, then pick the action for obs (step t + 1)."""
        buffer, prio = add(buffer, prio, transition, t)
        learner, prio, action, metrics = train_and_act(learner, buffer, prio, obs, t, train=train,
                                                       update_actor=update_actor, random_next=random_next)
        return learner, buffer, prio, action, metrics

    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, None)), static_argnums=2),
        policy=jax.jit(jax.vmap(actor.apply)),
        update=jax.jit(jax.vmap(update, in_axes=(0, 0, 0, None)), static_argnums=3),
        step=step,
        capacity=capacity,
    )


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents; returns the final learner, buffer and run facts."""
    run = runs.Run(ALGO, args, Args)  # with --resume, the checkpoint's args
    args, seeds = run.args, run.seeds
    check_args(args)
    train_envs = envs.SeedEnvs(args.env_id, seeds, workers=args.env_workers)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, workers=args.env_workers)
    agent = run.devices.agent(make_agent(args, train_envs.obs_dim, train_envs.action_dim))  # seeds over devices
    learner, buffer, prio = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    if run.checkpoint:
        saved, buffer = run.checkpoint.load({"learner": learner, "prio": prio,
                                             "action": jnp.zeros((len(seeds), train_envs.action_dim))}, buffer, args)
        learner, prio, action, t0 = saved["learner"], saved["prio"], saved["action"], run.checkpoint.step
        obs = train_envs.set_state(run.checkpoint.host["envs"])
    else:
        t0, obs = 0, train_envs.reset()
        learner, action = agent.act(learner, obs, args.learning_starts > 0)
    per_transition = (sum(x.nbytes for x in buffer) + prio.value.nbytes) // (args.num_seeds * agent.capacity)
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
            transition = Buffer(obs, action, env_step.reward, env_step.next_obs,
                                env_step.terminated.astype(np.float32))
            obs = env_step.obs
            tc = time.time()
            learner, buffer, prio, action, metrics = agent.step(learner, buffer, prio, transition, obs, t, *flags)
            if flags[0] and compile_s is None:  # the first training step compiles the update
                compile_s = (jax.block_until_ready(action), time.time() - tc)[1]
            for i, ret, length in env_step.episodes:
                run.episode(seeds[i], t + 1, ret, length)
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
                    run.save(t + 1, {"learner": learner, "prio": prio, "action": action},
                             {"t": t + 1, "envs": train_envs.get_state()}, ring=buffer, written=[t + 1] * len(seeds),
                             per_slot=("prio",))
    run.close()
    train_envs.close()
    evaluator.close()
    steps_timed = (args.total_timesteps - 1 - sps_from[0]) if sps_from else 0
    return {
        "run_dir": run.dir, "learner": learner, "buffer": buffer, "priorities": prio, "final_eval": last_eval,
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
