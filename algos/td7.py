"""TD7: TD3 + SALE + LAP + target-value clipping + policy checkpoints, in JAX, many seeds per process.

Paper: S. Fujimoto, W.-D. Chang, E. J. Smith, S. S. Gu, D. Precup, D. Meger. "For SALE:
State-Action Representation Learning for Deep Reinforcement Learning". NeurIPS 2023.
arXiv:2306.02451.
Follows: github.com/sfujim/TD7 @ c1c280de1513f474488061b4cf39642b75dd84bd (online and offline).

Usage:  python algos/td7.py --env-id Hopper-v4 --num-seeds 5
        python algos/td7.py --offline --dataset minari:fujimoto-jax/hopper/medium-v0 --num-seeds 5

Per training step (TD7.train): sample a LAP batch; encoder step on MSE(g(f(s), a), f(s')); critic
target from the fixed target encoder, the target actor with clipped noise and the min of the two
target heads clipped to the frozen value range; LAP-Huber critic step; new priorities; every
policy_freq-th step an actor step on the mean of both heads; every 250 steps hard copies of all
targets and encoders, a max-priority reset and a new value range. Online, training happens in
bursts at episode ends, interleaved with policy checkpoints (see `Schedule`).

Multi-seed: each seed follows its own episode stream. A seed that ends an episode owes the
burst of updates its schedule asks for and does not act again until it has done them; seeds
that owe nothing keep acting. One vmapped update serves every seed that owes one, masking the
others, so a seed's updates happen at the same points of its own stream as in a single-seed run
of the authors' loop. The masked compute is counted and reported (`masking` in the returned
dict and at the end of a run). Acting runs on the host CPU with a copy of each seed's acting
policy. On CPU, seeds that owe nothing act first (env steps are cheap next to updates), so
almost nothing is masked; on an accelerator, updates are dispatched asynchronously and every
acting seed takes up to --overlap-steps env steps while the device trains. Both rules depend
only on host counters, so a run is reproducible.

Deviations and notes (none changes the algorithm):
- Actions live in [-1, 1]; the `envs` adapter maps them affinely onto the env's bounds, so noise
  is in normalised units as in TD7. Online the buffer holds a / max_action, as the authors' online
  buffer (LAP.add) stores it. Offline their `load_D4RL` stores the dataset's actions as they are,
  while envs/offline.py maps them from the env's bounds onto [-1, 1]: the same on D4RL's MuJoCo
  tasks, whose bounds are +-1; elsewhere the BC term is measured in [-1, 1] units.
- Gymnasium -v4 envs with separate terminated/truncated flags replace old gym's
  `ep_timesteps < _max_episode_steps` test; the stored bootstrap mask is the same except for a
  real termination on the time-limit step itself, which old gym stored as not done.
- Warm-up actions (uniform in [-1, 1]) and exploration noise come from a per-seed numpy
  generator seeded with the seed, not from `env.action_space.sample()` and torch (same
  distributions, other random streams). The acting policy is evaluated by XLA on the CPU.
- The buffer holds min(buffer_size, total_timesteps) transitions: identical behaviour, since a
  run never wraps a buffer larger than its length, and less memory for short runs.
- Evaluations run at step 0, every eval_freq steps and at the final step; the authors' loop also
  evaluates at 0 and every eval_freq up to max_timesteps. Evaluation of a seed is computed
  when every seed has reached the same evaluation point (batched), on a snapshot of the policy
  taken when that seed reached it: the numbers are those of evaluating on the spot.
- The evaluation env is re-seeded seed + 100 at every evaluation (the TD3 repo's protocol, shared
  by every file here); the TD7 repo seeds it once, so its later evaluations start from other
  (identically distributed) states.
- On GPUs JAX may run float32 matmuls in TF32, while the authors' PyTorch 2.0 uses full float32;
  set JAX_DEFAULT_MATMUL_PRECISION=highest for full float32 (no effect on CPU).
- LAP sampling runs in two levels (a block of 256 slots by the cumulative sum of the blocks'
  totals, then a slot by the cumulative sum inside it): the distribution of the authors' one
  cumulative sum over the buffer, with which a pure update at 1M slots took 26.5 ms against 24.1 ms
  (results/bench/td7_cpu.md); float rounding differs (tests/test_td7.py checks the frequencies).
- `--total-timesteps` defaults to 1M (the paper reports 300k, 1M and 5M; the repo's default is 5M).
  `--resume RUN --total-timesteps N` extends a finished run; with several seeds the continuation
  need not be bit-identical to one run of N steps: at the old end every seed waited for the
  others, so later updates are batched with other seeds than in the long run. A 1-seed run
  extended, and a killed run resumed to its own end, are identical to the uninterrupted run.

Offline (--offline, the repo's train_offline): the same training step on a fixed dataset, with the
actor loss plus lmbda * stopgrad(mean |Q(s, pi(s))|) * mean (pi(s) - a)^2 (lmbda 0.1), LAP
priorities starting at 1 for every transition, no policy checkpoints (the current policy is
evaluated), no env stepping, no state normalisation. The dataset is stored once on the device for
all seeds (each has its own priorities and indices) and the updates run in lax.scan chunks between
evaluations. Data as `d4rl.qlearning_dataset` gives it (envs/offline.py, timeouts="drop"): the
transition of a time-limit end is dropped, every other one bootstraps unless terminal (OGBench data,
--dataset ogbench:..., keeps its trajectory ends, which bootstrap, and eval.csv gains a success column).
--total-timesteps then counts training steps (default 1M; the repo's default is 5M, and the
length behind the paper's offline table is unverified, docs/facts.md#td7-offline) and must be a
multiple of --target-update-rate, as must --eval-freq, so every scanned chunk holds whole target
periods. Losses logged offline are means over the actor steps of each chunk (every policy_freq-th
update).

Parity: tests/parity/test_td7.py runs the repo's TD7.train beside `update` (online, 260 steps) and
`train_chunk` (offline, 500 steps) in float64 on the same weights, batches and noise, and the repo's
main.train_online beside `Schedule` on scripted episodes (results/parity.md).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import envs
from envs import offline, runs

ALGO = "td7"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    env_id: str = "Hopper-v4"
    """continuous-control env: a gymnasium id (Hopper-v4) or dmc:<domain>-<task> (DeepMind Control states); with
    --offline also an ogbench: id, and by default the dataset's own env"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: int = 1_000_000
    """env steps per seed (the paper reports 300k, 1M and 5M)"""
    learning_starts: int = 25_000
    """uniform-random steps; the policy acts from the episode after the first one that ends after them (timesteps_before_training)"""
    eval_freq: int = 5_000
    """evaluate every this many env steps (and at step 0 and at the end)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes per seed (of the checkpoint policy when checkpoints are on)"""
    # Offline
    offline: bool = False
    """train on --dataset instead of an env (no policy checkpoints, no env steps); --env-id is the evaluation env"""
    dataset: str = ""
    """--offline data: minari:<dataset id>, d4rl:<path to .hdf5> or ogbench:<single-task name or .npz> (make one
    with python -m envs.collect)"""
    max_transitions: int = 0
    """--offline, small data: keep the first N transitions of the dataset (stored order) and drop trajectories of <= 10
    transitions (the Sparse-Reg code's protocol); 0: the whole dataset"""
    lmbda: float = 0.1
    """--offline: weight of the behaviour-cloning term, scaled by mean |Q(s, pi(s))|"""
    # TD3
    buffer_size: int = 1_000_000
    """replay buffer capacity per seed"""
    batch_size: int = 256
    """transitions per update"""
    discount: float = 0.99
    """discount factor gamma"""
    target_update_rate: int = 250
    """hard copy of targets and encoders (and LAP / value-clip refresh) every this many training steps"""
    expl_noise: float = 0.1
    """std of the Gaussian exploration noise, normalised action units (exploration_noise)"""
    policy_noise: float = 0.2
    """std of the target policy noise, normalised action units (target_policy_noise)"""
    noise_clip: float = 0.5
    """target policy noise is clipped to +-noise_clip"""
    policy_freq: int = 2
    """actor update every policy_freq training steps"""
    # LAP
    alpha: float = 0.4
    """priority exponent: p = max(|delta|, min_priority)^alpha"""
    min_priority: float = 1.0
    """priority floor, also the LAP-Huber threshold"""
    overlap_steps: Optional[int] = None
    """with several seeds: env steps each acting seed takes on the host per dispatched update (unset: 8 on
    an accelerator; 0 on CPU, meaning seeds act until they owe updates). Changes speed, not any seed's run"""
    # Checkpoints
    checkpoints: bool = True
    """policy checkpoints: train in bursts at episode ends, evaluate the checkpoint policy (--no-checkpoints: one update per env step)"""
    max_eps_when_checkpointing: int = 20
    """assessment episodes per checkpoint after steps_before_checkpointing training steps (1 before)"""
    steps_before_checkpointing: int = 750_000
    """training steps after which assessments use max_eps_when_checkpointing episodes"""
    reset_weight: float = 0.9
    """best_min_return is multiplied by this at the switch"""
    # Encoder
    zs_dim: int = 256
    """SALE embedding width of zs and zsa"""
    enc_hdim: int = 256
    """hidden width of the state and state-action encoders (ELU)"""
    encoder_lr: float = 3e-4
    """Adam learning rate of the encoder"""
    # Critic
    critic_hdim: int = 256
    """hidden width of each critic head (ELU)"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic"""
    # Actor
    actor_hdim: int = 256
    """hidden width of the actor (ReLU)"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("buffer_size", "batch_size", "target_update_rate", "policy_freq",
                                  "max_eps_when_checkpointing", "zs_dim", "enc_hdim", "critic_hdim", "actor_hdim"),
                    nonneg=("learning_starts", "steps_before_checkpointing", "expl_noise", "policy_noise", "noise_clip",
                            "alpha", "min_priority", "overlap_steps", "max_transitions"),
                    positive=("encoder_lr", "critic_lr", "actor_lr"), unit=("discount", "reset_weight"))
    if args.offline:
        if not 0 <= args.lmbda < float("inf"):
            raise runs.UserError(f"--lmbda must be >= 0, got {args.lmbda}")
        if args.target_update_rate % args.policy_freq:
            raise runs.UserError(f"--offline: --target-update-rate ({args.target_update_rate}) must be a multiple of "
                                 f"--policy-freq ({args.policy_freq})")
        for name in ("total_timesteps", "eval_freq"):
            if getattr(args, name) % args.target_update_rate:
                raise runs.UserError(f"--offline: {runs.flag(name)} ({getattr(args, name)}) must be a multiple of "
                                     f"--target-update-rate ({args.target_update_rate}): the scanned chunks hold "
                                     "whole target periods")
    elif args.dataset or args.max_transitions:
        raise runs.UserError(f"{'--dataset' if args.dataset else '--max-transitions'} is read with --offline")


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


def avg_l1_norm(x, eps=1e-8):
    """AvgL1Norm: x / max(mean_i |x_i|, eps) over the feature axis, no parameters."""
    return x / jnp.maximum(jnp.mean(jnp.abs(x), -1, keepdims=True), eps)


class Encoder(nn.Module):
    """SALE. f: s -> zs (AvgL1Norm on the output); g: (zs, a) -> zsa (no normalisation). ELU."""

    zs_dim: int = 256
    hdim: int = 256

    def setup(self):
        self.zs1, self.zs2, self.zs3 = Linear(self.hdim), Linear(self.hdim), Linear(self.zs_dim)
        self.zsa1, self.zsa2, self.zsa3 = Linear(self.hdim), Linear(self.hdim), Linear(self.zs_dim)

    def zs(self, obs):
        x = nn.elu(self.zs1(obs))
        x = nn.elu(self.zs2(x))
        return avg_l1_norm(self.zs3(x))

    def zsa(self, zs, action):
        x = nn.elu(self.zsa1(jnp.concatenate([zs, action], -1)))
        x = nn.elu(self.zsa2(x))
        return self.zsa3(x)

    def __call__(self, obs, action):  # only for init
        return self.zsa(self.zs(obs), action)


class Actor(nn.Module):
    action_dim: int
    hdim: int = 256

    @nn.compact
    def __call__(self, obs, zs):
        x = avg_l1_norm(Linear(self.hdim)(obs))  # AvgL1Norm on the linear output, no activation before it
        x = jnp.concatenate([x, zs], -1)
        x = nn.relu(Linear(self.hdim)(x))
        x = nn.relu(Linear(self.hdim)(x))
        return jnp.tanh(Linear(self.action_dim)(x))  # in [-1, 1]; the env adapter scales by max_action


class QHead(nn.Module):
    hdim: int = 256

    @nn.compact
    def __call__(self, obs, action, zsa, zs):
        x = avg_l1_norm(Linear(self.hdim)(jnp.concatenate([obs, action], -1)))
        x = jnp.concatenate([x, zsa, zs], -1)
        x = nn.elu(Linear(self.hdim)(x))
        x = nn.elu(Linear(self.hdim)(x))
        return Linear(1)(x)[..., 0]


class Critic(nn.Module):
    """Two independent heads; returns Q values stacked as [B, 2]."""

    hdim: int = 256

    @nn.compact
    def __call__(self, obs, action, zsa, zs):
        return jnp.stack([QHead(self.hdim)(obs, action, zsa, zs), QHead(self.hdim)(obs, action, zsa, zs)], -1)


# ---------------------------------------------------------------------------------------------
# Learner state and replay buffer (one seed; vmapped to [num_seeds, ...])
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    """Why three encoders: `encoder` is the one trained (its own f(s') is the target of its loss);
    `fixed_encoder`, a copy refreshed every 250 steps, gives the current-state embeddings the
    critic and actor train on and act with, so their inputs stay stationary between copies;
    `fixed_encoder_target`, the copy before that, embeds s' for the critic target, matching the
    lag of critic_target. `checkpoint_encoder` goes with `checkpoint_actor` for evaluation."""

    encoder: dict
    fixed_encoder: dict
    fixed_encoder_target: dict
    actor: dict
    actor_target: dict
    critic: dict
    critic_target: dict
    checkpoint_actor: dict
    checkpoint_encoder: dict
    eval_actor: dict  # snapshot evaluated at the next batched evaluation
    eval_encoder: dict
    checkpoint_steps: jax.Array  # training steps of checkpoint_actor when it was saved (int32)
    eval_steps: jax.Array  # the same for the eval snapshot: logged as policy_updates in eval.csv
    encoder_opt: optax.OptState
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    key: jax.Array
    steps: jax.Array  # training steps done (int32)
    value_range: jax.Array  # [min, max] of all targets seen so far (starts at [1e8, -1e8])
    value_clip: jax.Array  # [min_target, max_target], the frozen clip bounds (start at [0, 0])


class Buffer(NamedTuple):
    obs: jax.Array  # [capacity, obs_dim]
    action: jax.Array  # [capacity, action_dim], in [-1, 1] (a / max_action)
    reward: jax.Array  # [capacity]
    next_obs: jax.Array  # [capacity, obs_dim], the true s' (final obs at episode ends)
    terminated: jax.Array  # [capacity], 1 only for real terminations: time limits bootstrap


class Priorities(NamedTuple):
    """LAP priorities, written by the buffer insert and by every update."""

    value: jax.Array  # [capacity], 0 for empty slots (never sampled)
    max: jax.Array  # scalar: priority given to new transitions
    count: jax.Array  # int32 scalar: transitions stored so far


# ---------------------------------------------------------------------------------------------
# TD7 pieces as pure functions
# ---------------------------------------------------------------------------------------------
def lap_huber(delta, min_priority=1.0):
    """LAP loss on |delta| [B, 2]: 0.5 d^2 below min_priority, min_priority * d above; summed over
    the two heads, averaged over the batch."""
    return jnp.where(delta < min_priority, 0.5 * delta**2, min_priority * delta).sum(-1).mean()


def lap_priority(delta, min_priority=1.0, alpha=0.4):
    """p = max(max over heads |delta|, min_priority)^alpha, per transition."""
    return jnp.maximum(delta.max(-1), min_priority) ** alpha


SAMPLE_BLOCK = 256  # slots per block of the two-level prioritised sampler


def lap_sample(key, priority, batch_size):
    """Indices drawn with probability priority_i / sum(priority), in two levels: a block of
    SAMPLE_BLOCK slots by the cumulative sum of block totals, then a slot by the cumulative sum
    inside it. Why: one cumsum over the whole buffer per update was slow on XLA:CPU at 1M slots
    (results/bench/td7_cpu.md); this reads the buffer once, in a blocked sum (the same distribution,
    up to float rounding)."""
    n = priority.shape[0]
    block = min(SAMPLE_BLOCK, n)
    csum = jnp.cumsum(jnp.pad(priority, (0, -n % block)).reshape(-1, block).sum(-1))  # [blocks]
    u = jax.random.uniform(key, (batch_size,)) * csum[-1]
    blk = jnp.minimum(jnp.searchsorted(csum, u, side="right"), csum.shape[0] - 1)
    u = u - jnp.where(blk > 0, csum[blk - 1], 0.0)
    slot = blk[:, None] * block + jnp.arange(block)  # [B, block]
    w = jnp.where(slot < n, priority[jnp.minimum(slot, n - 1)], 0.0)
    i = jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="right"))(jnp.cumsum(w, -1), u)
    last = block - 1 - jnp.argmax(w[:, ::-1] > 0, -1)  # u rounded past the block's total: its last weighted slot
    return jnp.minimum(blk * block + jnp.minimum(i, last), n - 1)


def offline_actor_loss(q, pi, action, lmbda):
    """Offline TD7: -mean Q over both heads and the batch + lmbda * stopgrad(mean |Q|) * mean (pi - a)^2."""
    return -q.mean() + lmbda * jax.lax.stop_gradient(jnp.abs(q).mean()) * jnp.mean((pi - action) ** 2)


def td7_target(reward, terminated, q_next, value_clip, discount):
    """y = r + gamma * (1 - terminated) * clip(min of the two target heads, min_target, max_target)."""
    return reward + discount * (1.0 - terminated) * jnp.clip(q_next.min(-1), value_clip[0], value_clip[1])


def smoothed_target_action(key, next_action, policy_noise, noise_clip):
    """a' = clip(pi'(s') + clip(eps, -c, c), -1, 1), eps ~ N(0, sigma^2), normalised units."""
    noise = jnp.clip(jax.random.normal(key, next_action.shape) * policy_noise, -noise_clip, noise_clip)
    return jnp.clip(next_action + noise, -1.0, 1.0)


@dataclass
class Schedule:
    """The authors' online loop for one seed (main.train_online + maybe_train_and_checkpoint),
    on the host: when the policy starts acting, when a burst of training steps is due, when the
    checkpoint policy is replaced. It returns the number of updates owed; the device does them."""

    learning_starts: int = 25_000
    checkpoints: bool = True
    max_eps_when_checkpointing: int = 20
    steps_before_checkpointing: int = 750_000
    reset_weight: float = 0.9
    allow_train: bool = False
    training_steps: int = 0  # updates scheduled so far (done on the device before the seed acts again)
    eps_since_update: int = 0
    timesteps_since_update: int = 0
    max_eps_before_update: int = 1
    min_return: float = 1e8
    best_min_return: float = -1e8
    events: list = field(default_factory=list)  # (env step, kind, updates) with kind "checkpoint" or "early_stop"

    def step(self) -> int:
        """After an env step (before its episode-end handling): updates owed, without checkpoints."""
        return int(self.allow_train and not self.checkpoints)

    def episode_end(self, t: int, length: int, ret: float) -> tuple[int, bool]:
        """An episode ended at env step t (1-based count). Returns (updates owed, save checkpoint)."""
        burst, save = 0, False
        if self.allow_train and self.checkpoints:
            self.eps_since_update += 1
            self.timesteps_since_update += length
            self.min_return = min(self.min_return, ret)
            if self.min_return < self.best_min_return:  # this policy is worse: stop assessing it early
                burst = self._train_and_reset()
                self.events.append((t, "early_stop", burst))
            elif self.eps_since_update == self.max_eps_before_update:  # assessed in full: it is the new checkpoint
                self.best_min_return = self.min_return
                save = True
                burst = self._train_and_reset()
                self.events.append((t, "checkpoint", burst))
        if t - 1 >= self.learning_starts:
            self.allow_train = True
        return burst, save

    def _train_and_reset(self) -> int:
        burst = self.timesteps_since_update
        # the authors check `training_steps == steps_before_checkpointing` before each step of the burst
        if self.training_steps <= self.steps_before_checkpointing < self.training_steps + burst:
            self.best_min_return *= self.reset_weight
            self.max_eps_before_update = self.max_eps_when_checkpointing
        self.training_steps += burst
        self.eps_since_update = self.timesteps_since_update = 0
        self.min_return = 1e8
        return burst


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Buffer, Priorities), stacked
    policy: callable  # (actor params, encoder params, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, buffer, prio, mask [N], update_actor, sync) -> (learner, prio, metrics)
    add: callable  # (buffer, prio, transition [N, ...], active [N]) -> (buffer, prio)
    snapshot: callable  # (learner, checkpoint [N], evaluate [N]) -> learner
    train_chunk: callable  # --offline: (learner, data, prio, periods) -> (learner, prio, metrics)
    capacity: int


def _select(mask, new, old):
    """Per-seed masked pytree update (inside vmap, mask is a scalar)."""
    return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    encoder = Encoder(args.zs_dim, args.enc_hdim)
    actor, critic = Actor(action_dim, args.actor_hdim), Critic(args.critic_hdim)
    encoder_tx, actor_tx, critic_tx = optax.adam(args.encoder_lr), optax.adam(args.actor_lr), optax.adam(args.critic_lr)
    capacity = 1 if args.offline else min(args.buffer_size, args.total_timesteps)  # offline: the dataset is apart

    def init(key):
        key, k_enc, k_actor, k_critic = jax.random.split(key, 4)
        obs, action, z = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)), jnp.zeros((1, args.zs_dim))
        enc = encoder.init(k_enc, obs, action)
        actor_params = actor.init(k_actor, obs, z)
        critic_params = critic.init(k_critic, obs, action, z, z)
        learner = Learner(
            encoder=enc, fixed_encoder=enc, fixed_encoder_target=enc, actor=actor_params, actor_target=actor_params,
            critic=critic_params, critic_target=critic_params, checkpoint_actor=actor_params, checkpoint_encoder=enc,
            eval_actor=actor_params, eval_encoder=enc, checkpoint_steps=jnp.int32(0), eval_steps=jnp.int32(0),
            encoder_opt=encoder_tx.init(enc),
            actor_opt=actor_tx.init(actor_params), critic_opt=critic_tx.init(critic_params), key=key,
            steps=jnp.int32(0), value_range=jnp.array([1e8, -1e8]), value_clip=jnp.zeros(2))
        buffer = Buffer(jnp.zeros((capacity, obs_dim)), jnp.zeros((capacity, action_dim)), jnp.zeros(capacity),
                        jnp.zeros((capacity, obs_dim)), jnp.zeros(capacity))
        return learner, buffer, Priorities(jnp.zeros(capacity), jnp.float32(1.0), jnp.int32(0))

    def policy(actor_params, encoder_params, obs):
        return actor.apply(actor_params, obs, encoder.apply(encoder_params, obs, method=Encoder.zs))

    def update(learner, buffer, prio, mask, update_actor, sync):
        """One TD7 training step for one seed; `mask` False leaves this seed's state untouched."""
        steps = learner.steps + 1
        key, k_idx, k_noise = jax.random.split(learner.key, 3)
        idx = lap_sample(k_idx, prio.value, args.batch_size)
        b = jax.tree.map(lambda x: x[idx], buffer)
        zs_of = lambda params, s: encoder.apply(params, s, method=Encoder.zs)  # noqa: E731
        zsa_of = lambda params, zs, a: encoder.apply(params, zs, a, method=Encoder.zsa)  # noqa: E731

        # Encoder: g(f(s), a) predicts f(s') of the live encoder (stop-gradient)
        next_zs = jax.lax.stop_gradient(zs_of(learner.encoder, b.next_obs))

        def encoder_loss_fn(params):
            return jnp.mean((zsa_of(params, zs_of(params, b.obs), b.action) - next_zs) ** 2)

        encoder_loss, grads = jax.value_and_grad(encoder_loss_fn)(learner.encoder)
        updates, encoder_opt = encoder_tx.update(grads, learner.encoder_opt, learner.encoder)
        encoder_params = optax.apply_updates(learner.encoder, updates)

        # Critic target: next-state embeddings from fixed_encoder_target, values clipped to the frozen range
        target_zs = zs_of(learner.fixed_encoder_target, b.next_obs)
        next_action = smoothed_target_action(k_noise, actor.apply(learner.actor_target, b.next_obs, target_zs),
                                             args.policy_noise, args.noise_clip)
        target_zsa = zsa_of(learner.fixed_encoder_target, target_zs, next_action)
        q_next = critic.apply(learner.critic_target, b.next_obs, next_action, target_zsa, target_zs)  # [B, 2]
        target = jax.lax.stop_gradient(td7_target(b.reward, b.terminated, q_next, learner.value_clip, args.discount))
        value_range = jnp.stack([jnp.minimum(learner.value_range[0], target.min()),
                                 jnp.maximum(learner.value_range[1], target.max())])

        # Critic: current embeddings from fixed_encoder; LAP-Huber summed over heads
        zs = zs_of(learner.fixed_encoder, b.obs)
        zsa = zsa_of(learner.fixed_encoder, zs, b.action)

        def critic_loss_fn(params):
            delta = jnp.abs(critic.apply(params, b.obs, b.action, zsa, zs) - target[:, None])  # [B, 2]
            return lap_huber(delta, args.min_priority), delta

        (critic_loss, delta), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        critic_params = optax.apply_updates(learner.critic, updates)

        # LAP: new priorities of the sampled transitions
        p = lap_priority(delta, args.min_priority, args.alpha)
        value = prio.value.at[idx].set(jnp.where(mask, p, prio.value[idx]))
        max_priority = jnp.where(mask, jnp.maximum(prio.max, p.max()), prio.max)

        new = learner._replace(encoder=encoder_params, encoder_opt=encoder_opt, critic=critic_params,
                               critic_opt=critic_opt, key=key, steps=steps, value_range=value_range)
        metrics = {"encoder_loss": encoder_loss, "critic_loss": critic_loss}

        if update_actor:
            # Actor: mean over both heads (not Q1 as in TD3); g is applied to pi(s) but not trained here
            def actor_loss_fn(params):
                a = actor.apply(params, b.obs, zs)
                q = critic.apply(critic_params, b.obs, a, zsa_of(learner.fixed_encoder, zs, a), zs)  # [B, 2]
                return offline_actor_loss(q, a, b.action, args.lmbda) if args.offline else -q.mean()

            actor_loss, grads = jax.value_and_grad(actor_loss_fn)(learner.actor)
            updates, actor_opt = actor_tx.update(grads, learner.actor_opt, learner.actor)
            due = steps % args.policy_freq == 0
            new = new._replace(**_select(due, {"actor": optax.apply_updates(learner.actor, updates),
                                               "actor_opt": actor_opt},
                                         {"actor": learner.actor, "actor_opt": learner.actor_opt}))
            metrics["actor_loss"] = actor_loss

        if sync:
            # Every target_update_rate steps: hard copies (fixed_encoder_target takes the old fixed_encoder),
            # max-priority reset to the largest stored priority, and new frozen value-clip bounds.
            due = steps % args.target_update_rate == 0
            new = new._replace(**_select(due, {
                "actor_target": new.actor, "critic_target": new.critic, "fixed_encoder_target": learner.fixed_encoder,
                "fixed_encoder": new.encoder, "value_clip": value_range,
            }, {"actor_target": learner.actor_target, "critic_target": learner.critic_target,
                "fixed_encoder_target": learner.fixed_encoder_target, "fixed_encoder": learner.fixed_encoder,
                "value_clip": learner.value_clip}))
            max_priority = jnp.where(mask & due, value.max(), max_priority)

        metrics["idx"] = idx
        return _select(mask, new, learner), prio._replace(value=value, max=max_priority), metrics

    def add(buffer, prio, transition, active):
        """Store each active seed's transition in its next slot, with the current max priority."""
        slot = prio.count % capacity
        buffer = jax.tree.map(
            lambda b, x: jax.lax.dynamic_update_index_in_dim(
                b, jnp.where(active, x, jax.lax.dynamic_index_in_dim(b, slot, 0, keepdims=False)), slot, 0),
            buffer, transition)
        value = prio.value.at[slot].set(jnp.where(active, prio.max, prio.value[slot]))
        return buffer, prio._replace(value=value, count=prio.count + active.astype(jnp.int32))

    def snapshot(learner, checkpoint, evaluate):
        """checkpoint: checkpoint_actor <- actor, checkpoint_encoder <- fixed_encoder; evaluate: copy the
        policy to evaluate (the checkpoint one, or the current one with --no-checkpoints)."""
        learner = learner._replace(**_select(
            checkpoint, {"checkpoint_actor": learner.actor, "checkpoint_encoder": learner.fixed_encoder,
                         "checkpoint_steps": learner.steps},
            {"checkpoint_actor": learner.checkpoint_actor, "checkpoint_encoder": learner.checkpoint_encoder,
             "checkpoint_steps": learner.checkpoint_steps}))
        src = ((learner.checkpoint_actor, learner.checkpoint_encoder, learner.checkpoint_steps) if args.checkpoints
               else (learner.actor, learner.fixed_encoder, learner.steps))
        actor_p, enc_p, steps = _select(evaluate, src, (learner.eval_actor, learner.eval_encoder, learner.eval_steps))
        return learner._replace(eval_actor=actor_p, eval_encoder=enc_p, eval_steps=steps)

    def train_chunk(learner, data, prio, periods):
        """--offline: ``periods`` target periods of one seed in one lax.scan. A period is target_update_rate
        steps: pairs of (critic, critic + actor) updates, the last one with the hard copies. The flags are
        static and the mask a constant, so no step computes a branch it does not use."""
        pairs = args.target_update_rate // args.policy_freq

        def pair(carry, sync):
            learner, prio = carry
            for k in range(args.policy_freq - 1):
                learner, prio, _ = update(learner, data, prio, True, False, False)
            learner, prio, metrics = update(learner, data, prio, True, True, sync)
            metrics.pop("idx")
            return (learner, prio), metrics

        def period(carry, _):
            carry, metrics = jax.lax.scan(lambda c, _: pair(c, False), carry, None, length=pairs - 1)
            carry, last = pair(carry, True)
            return carry, jax.tree.map(lambda m, x: jnp.concatenate([m, x[None]]), metrics, last)

        (learner, prio), metrics = jax.lax.scan(period, (learner, prio), None, length=periods)
        return learner, prio, jax.tree.map(jnp.mean, metrics)

    # The buffer write and the update are separate jitted calls that donate their state: fused, XLA
    # would copy the whole buffer every step to keep the batch gather apart from the in-place write.
    return Agent(
        init=jax.jit(jax.vmap(init)),
        policy=jax.jit(jax.vmap(policy)),
        update=jax.jit(jax.vmap(update, in_axes=(0, 0, 0, 0, None, None)), static_argnums=(4, 5),
                       donate_argnums=(0, 2)),
        add=jax.jit(jax.vmap(add), donate_argnums=(0, 1)),
        snapshot=jax.jit(jax.vmap(snapshot), donate_argnums=0),
        # offline: one dataset for all seeds (in_axes None), per-seed learner and priorities
        train_chunk=jax.jit(jax.vmap(train_chunk, in_axes=(0, None, 0, None)), static_argnums=3, donate_argnums=(0, 2)),
        capacity=capacity,
    )


# ---------------------------------------------------------------------------------------------
# Results columns besides the run contract's (envs/runs.py)
# ---------------------------------------------------------------------------------------------
EVAL_HEADER = [*runs.EVAL_HEADER, "policy_updates"]  # training steps of the evaluated policy
CHECKPOINT_HEADER = ["seed", "step", "event", "updates"]  # one row per burst: checkpoint saved or early stop


# ---------------------------------------------------------------------------------------------
# Offline training loop (--offline)
# ---------------------------------------------------------------------------------------------
def train_offline(run: runs.Run) -> dict:
    """TD7 on a fixed dataset: scanned chunks of eval_freq training steps, then an evaluation."""
    args, seeds = run.args, run.seeds
    run.csv_headers.pop("checkpoints")  # no policy checkpoints offline
    data = offline.load(args.dataset, args.env_id, timeouts="drop", max_transitions=args.max_transitions)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, workers=args.env_workers)
    run.eval_header = offline.eval_header(data, run.eval_header)
    agent = run.devices.agent(make_agent(args, evaluator.obs_dim, evaluator.action_dim))  # seeds over devices
    device_data = run.devices.replicate(Buffer(*(jnp.asarray(x) for x in data.arrays())))  # one copy per device
    learner, _, _ = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    n = len(data)  # LAP on the dataset: every priority starts at 1, each seed keeps its own
    prio = Priorities(jnp.ones((len(seeds), n)), jnp.ones(len(seeds)), jnp.full(len(seeds), n, jnp.int32))
    t0 = 0
    if run.checkpoint:
        offline.check_resume(data, run.checkpoint.host)
        saved, _ = run.checkpoint.load({"learner": learner, "prio": prio}, args=args)
        learner, prio, t0 = saved["learner"], saved["prio"], run.checkpoint.step
    info = offline.describe(data, sum(x.nbytes for x in device_data))
    run.start({"dataset": info})
    run.print(f"dataset {args.dataset}: {n} transitions, {info['device_mb']} MB on {jax.devices()[0].platform}, "
              f"shared by {args.num_seeds} seed(s)")

    metrics, last_eval, timing = {}, None, {"compile_s": None, "updates": 0, "seconds": 0.0}

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(lambda o: agent.policy(learner.actor, learner.fixed_encoder, o))
        rows = offline.eval_rows(data, seeds, step, last_eval, evaluator.successes)
        run.evaluation([{**r, "policy_updates": step} for r in rows], host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        step = t0
        while step < args.total_timesteps:
            todo = min(args.eval_freq - step % args.eval_freq, args.total_timesteps - step)
            tc = time.time()
            learner, prio, metrics = agent.train_chunk(learner, device_data, prio, todo // args.target_update_rate)
            jax.block_until_ready(learner)
            if timing["compile_s"] is None:  # the first chunk compiles it
                timing["compile_s"] = time.time() - tc
            else:
                timing["updates"], timing["seconds"] = timing["updates"] + todo, timing["seconds"] + time.time() - tc
            step += todo
            run.advance(step, timing["updates"] / timing["seconds"] if timing["seconds"] else None)
            evaluate(step)
            if run.checkpoint_due(step):
                run.save(step, {"learner": learner, "prio": prio}, {"t": step, "dataset": info["fingerprint"]})
    run.close()
    evaluator.close()
    return {"run_dir": run.dir, "learner": learner, "priorities": prio, "final_eval": last_eval,
            "compile_s": timing["compile_s"], "dataset": data,
            "updates_per_s": timing["updates"] / timing["seconds"] if timing["seconds"] else None}


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents; returns the final learner, buffer and run facts."""
    if args.offline and not args.resume:
        if "env_id" not in getattr(args, "_flags_given", {"env_id"}):  # default: the dataset's env
            args.env_id = ""
        offline.resolve_env(args)
    run = runs.Run(ALGO, args, Args, eval_header=EVAL_HEADER, csvs={"checkpoints": CHECKPOINT_HEADER})
    args, seeds = run.args, run.seeds  # with --resume, the checkpoint's args
    check_args(args)
    if args.offline:
        return train_offline(run)
    n, total = args.num_seeds, args.total_timesteps
    train_envs = envs.SeedEnvs(args.env_id, seeds, workers=args.env_workers)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, workers=args.env_workers)
    agent = run.devices.agent(make_agent(args, train_envs.obs_dim, train_envs.action_dim))  # seeds over devices
    learner, buffer, prio = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    per_transition = (sum(x.nbytes for x in buffer) + prio.value.nbytes) // (n * agent.capacity)
    replay = {"capacity": agent.capacity, "bytes_per_transition": per_transition,
              "mb_per_seed": round(per_transition * agent.capacity / 1e6, 1)}

    if run.checkpoint:
        saved, buffer = run.checkpoint.load({"learner": learner, "prio": prio}, buffer, args)
        learner, prio, host = saved["learner"], saved["prio"], run.checkpoint.host
        obs = train_envs.set_state(host["envs"])
        # a longer --total-timesteps: seeds that had finished get their next evaluation point back
        ended = (host["next_eval"] < 0) & (host["t"] < total)
        host["next_eval"][ended] = np.minimum((host["t"][ended] // args.eval_freq + 1) * args.eval_freq, total)
        run.start(replay, keep_eval=dict(zip(seeds, host["evaluated_to"].tolist())),
                  keep_rows=dict(zip(seeds, host["t"].tolist())))
    else:
        schedule_args = dict(learning_starts=args.learning_starts, checkpoints=args.checkpoints,
                             max_eps_when_checkpointing=args.max_eps_when_checkpointing,
                             steps_before_checkpointing=args.steps_before_checkpointing,
                             reset_weight=args.reset_weight)
        host = {
            "t": np.zeros(n, np.int64),  # env steps taken, per seed
            "pending": np.zeros(n, np.int64),  # updates owed before the seed may act again
            "steps": np.zeros(n, np.int64),  # updates done (mirrors learner.steps without a device read)
            "schedules": [asdict(Schedule(**schedule_args)) for _ in range(n)],
            "next_eval": np.zeros(n, np.int64),  # next evaluation point per seed (-1: none left)
            "eval_step": np.full(n, -1, np.int64),  # step of the snapshot waiting to be evaluated (-1: none)
            "evaluated_to": np.full(n, -1, np.int64),  # last evaluated step per seed
            "masking": {"update_calls": 0, "seed_updates": 0, "actor_calls": 0, "seed_actor_updates": 0},
        }
        run.start(replay)
        obs = train_envs.reset()
    run.print(f"replay buffer on {jax.devices()[0].platform}: {agent.capacity} transitions x {per_transition} bytes "
              f"= {replay['mb_per_seed']} MB per seed, {n} seed(s)")
    schedules = [Schedule(**s) for s in host["schedules"]]
    t, pending, steps = host["t"], host["pending"], host["steps"]
    next_eval, eval_step, evaluated_to, masking = host["next_eval"], host["eval_step"], host["evaluated_to"], host["masking"]

    # Acting on the host: a CPU copy of each seed's (actor, fixed_encoder), refreshed seed by seed
    # when a seed that was trained acts again; exploration from per-seed numpy generators.
    cpu = jax.devices("cpu")[0]
    overlap_steps = args.overlap_steps if args.overlap_steps is not None else (
        0 if jax.default_backend() == "cpu" else 8)
    to_host = lambda tree: jax.device_put(jax.tree.map(np.array, tree), cpu)  # noqa: E731  (copies: donation-safe)
    take = jax.jit(lambda tree, i: jax.tree.map(lambda x: x[i], tree))  # one seed's slice, on the training device
    put = jax.jit(lambda tree, i, row: jax.tree.map(lambda x, r: x.at[i].set(r), tree, row), donate_argnums=0)
    acting, stale = to_host((learner.actor, learner.fixed_encoder)), np.zeros(n, bool)
    rngs = [np.random.default_rng(s) for s in seeds]
    for rng, state in zip(rngs, host.get("rngs", [])):
        rng.bit_generator.state = state

    def act(params, obs, random, active):
        """[N, action_dim] in [-1, 1]: uniform while random, else clip(pi(s) + N(0, expl_noise^2), -1, 1)."""
        if np.any(active & ~random):
            greedy = np.asarray(agent.policy(*params, jax.device_put(obs, cpu)))
        else:  # warm-up: no policy call
            greedy = np.zeros((n, train_envs.action_dim), np.float32)
        action = np.zeros_like(greedy)
        for i in np.nonzero(active)[0]:
            if random[i]:
                action[i] = rngs[i].uniform(-1.0, 1.0, greedy.shape[1])
            else:
                action[i] = np.clip(greedy[i] + rngs[i].normal(0.0, args.expl_noise, greedy.shape[1]), -1.0, 1.0)
        return action

    compiled, compile_s, excluded_s = set(), 0.0, 0.0  # first calls of each update variant, and eval time
    window = None  # (time, env steps, updates) when the timed window starts: the first update
    metrics, last_eval = {}, np.full(n, np.nan)
    no_mask = np.zeros(n, bool)

    def flush():
        """Evaluate, in one batch, every seed whose policy snapshot waits; log; checkpoint."""
        nonlocal excluded_s
        t_eval = time.time()
        waiting = eval_step >= 0
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, int(t.max()))
        eval_params = to_host((learner.eval_actor, learner.eval_encoder))
        returns = evaluator(lambda o: np.asarray(agent.policy(*eval_params, jax.device_put(o, cpu))), active=waiting)
        policy_updates = np.asarray(learner.eval_steps)
        run.evaluation([{"seed": seeds[i], "step": int(eval_step[i]), "return": float(returns[i]),
                         "policy_updates": int(policy_updates[i])} for i in np.nonzero(waiting)[0]], host_metrics)
        last_eval[waiting] = returns[waiting]
        evaluated_to[waiting] = eval_step[waiting]
        eval_step[:] = -1
        if run.checkpoint_due(int(evaluated_to.min())):  # the buffer goes in chunks: slots written since the last save
            host["schedules"] = [asdict(s) for s in schedules]
            host["rngs"] = [rng.bit_generator.state for rng in rngs]
            host["envs"] = train_envs.get_state()
            run.save(int(t.min()), {"learner": learner, "prio": prio}, host, ring=buffer, written=t, per_slot=("prio",),
                     complete=bool(np.all(t >= total)))
        excluded_s += time.time() - t_eval

    with run.progress_bar(int(t.sum()) // n):
        while True:
            # Evaluation points: a seed that owes no updates and reached one snapshots its policy.
            due = (pending == 0) & (t == next_eval)
            if due.any():
                if np.any(due & (eval_step >= 0)):  # its previous snapshot has not been evaluated yet
                    flush()
                learner = agent.snapshot(learner, no_mask, due)
                eval_step[due] = t[due]
                next_eval[due] = np.where(t[due] >= total, -1, np.minimum((t[due] // args.eval_freq + 1)
                                                                          * args.eval_freq, total))
                if np.all((eval_step >= 0) | (next_eval < 0)):  # every seed is there (or done)
                    flush()

            free, owes = (pending == 0) & (t < total), pending > 0
            if not (free.any() or owes.any()):
                break  # every seed is done

            # Training: one vmapped update of every seed that owes one (the others are masked),
            # dispatched without waiting for it. On CPU the free seeds act first (acting is cheap and
            # shares the cores, so nothing is masked); on an accelerator up to overlap_steps env steps
            # of every free seed run on the host while the device trains. Both rules depend on host
            # counters only, so a run is reproducible.
            if owes.any() and (overlap_steps or not free.any()):
                update_actor = bool(np.any(owes & ((steps + 1) % args.policy_freq == 0)))
                sync = bool(np.any(owes & ((steps + 1) % args.target_update_rate == 0)))
                if (update_actor, sync) not in compiled:
                    tc = time.time()
                    learner, prio, metrics = agent.update(learner, buffer, prio, owes, update_actor, sync)
                    jax.block_until_ready(prio)
                    compiled.add((update_actor, sync))
                    compile_s += time.time() - tc
                    excluded_s += time.time() - tc
                else:
                    learner, prio, metrics = agent.update(learner, buffer, prio, owes, update_actor, sync)
                if window is None:
                    window = (time.time(), int(t.sum()), int(steps.sum()))
                    excluded_s = 0.0
                steps[owes] += 1
                pending[owes] -= 1
                stale |= owes
                masking["update_calls"] += 1
                masking["seed_updates"] += int(owes.sum())
                masking["actor_calls"] += int(update_actor)
                masking["seed_actor_updates"] += int(np.sum(owes & (steps % args.policy_freq == 0)))
                if masking["update_calls"] % 100 == 0 and window:
                    elapsed = max(time.time() - window[0] - excluded_s, 1e-9)
                    run.advance(int(t.sum()) // n, (t.sum() - window[1]) / elapsed)

            # Acting: every seed that owes nothing and is not at an evaluation point steps its env, on the host.
            for _ in range(overlap_steps or 1):
                free = (pending == 0) & (t < total) & (t != next_eval)
                if not free.any():
                    break
                random = np.array([not s.allow_train for s in schedules])
                for i in np.nonzero(free & ~random & stale)[0]:  # trained since its last copy: waits for its updates
                    row = jax.device_put(take((learner.actor, learner.fixed_encoder), i), cpu)
                    acting = put(acting, i, row)
                    stale[i] = False
                action = act(acting, obs, random, free)
                env_step = train_envs.step(action, free)
                buffer, prio = agent.add(buffer, prio, Buffer(obs, action, env_step.reward, env_step.next_obs,
                                                              env_step.terminated.astype(np.float32)), free)
                obs = env_step.obs
                t[free] += 1
                for i in np.nonzero(free)[0]:
                    pending[i] += schedules[i].step()
                save = np.zeros(n, bool)
                for i, ret, length in env_step.episodes:
                    run.episode(seeds[i], int(t[i]), ret, length)
                    burst, save[i] = schedules[i].episode_end(int(t[i]), length, ret)
                    pending[i] += burst
                    if burst:
                        run.write("checkpoints", [seeds[i], int(t[i]), schedules[i].events[-1][1], burst])
                if save.any():  # checkpoint_actor <- actor, checkpoint_encoder <- fixed_encoder, before the burst
                    learner = agent.snapshot(learner, save, no_mask)
                if t.sum() % 200 < n:
                    run.advance(int(t.sum()) // n)
        jax.block_until_ready(learner)
        loop_end = time.time()
        if np.any(eval_step >= 0):
            flush()
    run.close()
    train_envs.close()
    evaluator.close()

    calls, slots = masking["update_calls"], masking["update_calls"] * n
    waste = {
        "update_calls": calls,
        "masked_update_fraction": 1 - masking["seed_updates"] / slots if slots else 0.0,
        "masked_actor_fraction": (1 - masking["seed_actor_updates"] / (masking["actor_calls"] * n)
                                  if masking["actor_calls"] else 0.0),
    }
    run.print(f"{calls} update calls for {masking['seed_updates']} seed updates: "
          f"{100 * waste['masked_update_fraction']:.2f}% of the critic/encoder compute and "
          f"{100 * waste['masked_actor_fraction']:.2f}% of the actor compute went to masked seeds")
    timed = None
    if window:
        elapsed = loop_end - window[0] - excluded_s
        timed = {"env_steps_per_s": (t.sum() - window[1]) / elapsed, "updates_per_s": (steps.sum() - window[2]) / elapsed}
    return {
        "run_dir": run.dir, "learner": learner, "buffer": buffer, "priorities": prio, "final_eval": last_eval,
        "compile_s": compile_s, "timed": timed, "masking": waste, "training_steps": steps.copy(),
        "schedules": schedules, "train_loop_steps_per_s": timed["env_steps_per_s"] / n if timed else None,
        "train_loop_updates_per_s": timed["updates_per_s"] / n if timed else None,
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
    # the policy TD7 evaluates: the checkpoint one, or the current one with --no-checkpoints
    actor_p, enc_p = ((learner.checkpoint_actor, learner.checkpoint_encoder) if saved.checkpoints and not saved.offline
                      else (learner.actor, learner.fixed_encoder))
    return (lambda o: agent.policy(actor_p, enc_p, o)), ring


def evaluate_checkpoint(args: Args) -> np.ndarray:
    check_args(args)
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt)[0])


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
