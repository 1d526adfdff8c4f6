"""Double DQN, in JAX, many seeds per process: the discrete base of LAP/PAL (and, with --no-double-q and
Adam, the behavioural DQN of discrete BCQ).

Paper: H. van Hasselt, A. Guez, D. Silver. "Deep Reinforcement Learning with Double Q-learning". AAAI 2016.
As used by S. Fujimoto, D. Meger, D. Precup. "An Equivalence between Loss Functions and Non-Uniform
Sampling in Experience Replay". NeurIPS 2020. arXiv:2007.06049.
Follows: github.com/sfujim/LAP-PAL @ eb67893af0bab9de8cabc7e5fe7d8f5deee9cc35, discrete/ (DDQN.py, main.py,
utils.py): its two hyperparameter dicts, chosen by suite (docs/facts.md#lap-and-pal-discrete).

Usage:  python algos/ddqn.py --env-id dqn-atari:Pong --num-seeds 4     (the DQN-era Atari preprocessing)
        python algos/ddqn.py --env-id minatar:breakout                 (MinAtar, CPU-sized)
        python algos/ddqn.py --env-id CartPole-v1                      (gymnasium, discrete actions)

Per env step t: act epsilon-greedily (uniform actions for the first learning_starts steps); store the
transition; once t >= learning_starts, every train_freq-th step one training iteration: a uniform batch,
the Double DQN target y = r + gamma * not_done * Q_target(s', argmax_a Q(s', a)), the Huber loss
(smooth L1, delta 1) on Q(s, a), one optimiser step; then the target moves every target_update_freq
iterations by tau (Atari: a hard copy every 8k; others: Polyak 0.005 every iteration). Epsilon decays
linearly with training iterations, not env steps.

Presets (`--env-id` picks them; any flag overrides):
- dqn-atari: RMSprop (centered, alpha 0.95, eps 1e-5 outside the square root, as torch) lr 6.25e-5, batch
  32, 20k random steps, train every 4 steps, epsilon 1 -> 0.01 over 250k iterations, eval epsilon 0.001
  every 50k steps, hard target copy every 8k iterations, rewards clipped to [-1, 1] for training, the
  27k-step capped transition not stored, 50M steps (the authors' default max_timesteps).
- everything else ("non-Atari"): Adam lr 3e-4, batch 64, 1k random steps, train every step, epsilon 0.1,
  greedy evaluation every 5k steps, Polyak 0.005 every iteration, time-limit ends stored (bootstrapped).

Networks (torch's default init, weight and bias ~ U(+-1/sqrt(fan_in))): dqn-atari: the Nature conv stack
32(8x8/4)-64(4x4/2)-64(3x3/1)-512 on raw 0-255 frames (no /255, as the authors); vectors: 256-256 (FC_Q);
minatar: conv 16(3x3/1)-128, the MinAtar paper's DQN net (Young & Tian 2019; the authors had no MinAtar).

Replay: one frame per slot (the newest frame of s for stacked pixels, the whole observation otherwise);
stacks are rebuilt from indices, zeros before the episode start. A stored episode end is followed by a
slot with its true final frame (never sampled), so a bootstrapped time-limit end has its real s'.

Deviations and notes:
- The authors' buffer also samples the newest transition, whose next frame is not written yet (it reads
  a stale or zero frame); here the newest slot waits one step. When the buffer has wrapped, the 3 slots
  whose frame history was overwritten are not sampled either.
- When the authors' Atari buffer drops a capped transition, the next episode's first frame takes the slot
  after the transition before it, which becomes that transition's s' (its newest frame); here the capped
  step's frame keeps a slot of its own (never sampled), so that transition has its true s'.
- Uniform sampling skips the few unsampleable slots (episode-end frames) by redrawing: 4 candidates per
  batch row, the first valid one kept; a row with 4 invalid candidates (probability ~ f^4 for a fraction f
  of such slots) gets weight 0 in the mean loss.
- Non-Atari runs default to 1M steps (gymnasium) and 5M (MinAtar, its paper's budget) instead of the
  authors' single 50M default, which is meant for Atari.
- Frame stacks have the newest frame last (the authors: first): the same network up to a permutation of
  its input channels.
- Evaluation: the repo's protocol here (every eval_freq steps, step 0 and the end; env seeded seed + 100 at
  every evaluation); the evaluation epsilon draws come from a key per seed and evaluation.
- Warm-up actions are uniform from each seed's JAX key instead of env.action_space.sample().
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import envs
from envs import runs

ALGO = "ddqn"

# The authors' two dicts (LAP-PAL discrete/main.py): atari_parameters and regular_parameters.
ATARI = dict(total_timesteps=50_000_000, learning_starts=20_000, initial_eps=1.0, end_eps=0.01,
             eps_decay_period=250_000, eval_freq=50_000, eval_eps=0.001, batch_size=32, optimizer="rmsprop",
             lr=6.25e-5, optimizer_eps=1e-5, train_freq=4, target_update_freq=8_000, tau=1.0, clip_rewards=True,
             drop_capped=True)
REGULAR = dict(total_timesteps=1_000_000, learning_starts=1_000, initial_eps=0.1, end_eps=0.1, eps_decay_period=1,
               eval_freq=5_000, eval_eps=0.0, batch_size=64, optimizer="adam", lr=3e-4, optimizer_eps=1e-8,
               train_freq=1, target_update_freq=1, tau=0.005, clip_rewards=False, drop_capped=False)
PRESETS = {"atari": ATARI, "minatar": {**REGULAR, "total_timesteps": 5_000_000}, "gym": REGULAR}


def suite_of(env_id: str) -> str:
    return "atari" if env_id.startswith("dqn-atari:") else "minatar" if env_id.startswith("minatar:") else "gym"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    env_id: str = "dqn-atari:Pong"
    """discrete-action env: dqn-atari:<Game> (DQN-era Atari), minatar:<game>, or a gymnasium id (CartPole-v1)"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: Optional[int] = None
    """env (agent) steps per seed; unset: the suite's preset, dqn-atari 50M, minatar 5M, gymnasium 1M"""
    learning_starts: Optional[int] = None
    """uniform-random steps before the policy acts and training starts; unset: dqn-atari 20k, else 1k"""
    eval_freq: Optional[int] = None
    """evaluate every this many env steps (and at step 0 and at the end); unset: dqn-atari 50k, else 5k"""
    eval_episodes: int = 10
    """evaluation episodes per seed"""
    eval_eps: Optional[float] = None
    """probability of a random action in evaluation; unset: dqn-atari 0.001, else 0 (greedy)"""
    max_episode_steps: Optional[int] = None
    """cap on agent steps per episode, ending as a truncation; unset: dqn-atari 27k, minatar 10k, gymnasium's limit"""
    # Exploration
    initial_eps: Optional[float] = None
    """epsilon at the first training iteration; unset: dqn-atari 1, else 0.1"""
    end_eps: Optional[float] = None
    """epsilon after eps_decay_period iterations; unset: dqn-atari 0.01, else 0.1"""
    eps_decay_period: Optional[int] = None
    """training iterations of the linear epsilon decay; unset: dqn-atari 250k, else 1"""
    # DQN
    buffer_size: int = 1_000_000
    """replay slots per seed (one frame each; an episode end takes one more)"""
    batch_size: Optional[int] = None
    """transitions per update; unset: dqn-atari 32, else 64"""
    discount: float = 0.99
    """discount factor gamma"""
    optimizer: Optional[str] = None
    """rmsprop (torch's centered RMSprop, alpha 0.95) or adam; unset: dqn-atari rmsprop, else adam"""
    lr: Optional[float] = None
    """learning rate; unset: dqn-atari 6.25e-5, else 3e-4"""
    optimizer_eps: Optional[float] = None
    """epsilon of the optimiser (outside the square root, as torch); unset: rmsprop 1e-5, adam 1e-8"""
    train_freq: Optional[int] = None
    """env steps per training iteration; unset: dqn-atari 4, else 1"""
    target_update_freq: Optional[int] = None
    """training iterations between target updates; unset: dqn-atari 8k (hard copies), else 1"""
    tau: Optional[float] = None
    """target update rate (1 = hard copy); unset: dqn-atari 1, else 0.005 (Polyak)"""
    double_q: bool = True
    """Double DQN target (online argmax, target value); --no-double-q: DQN's max over the target net"""
    clip_rewards: Optional[bool] = None
    """train on rewards clipped to [-1, 1] (returns are reported raw); unset: dqn-atari yes, else no"""
    drop_capped: Optional[bool] = None
    """do not store a transition ended by the episode-step cap (the authors' Atari buffer); unset: dqn-atari yes"""


def resolve_presets(args: Args) -> Args:
    """Fill the flags left unset from the suite's preset (and the optimiser's epsilon from the optimiser)."""
    preset = dict(PRESETS[suite_of(args.env_id)])
    if args.optimizer is not None and args.optimizer != preset["optimizer"]:
        preset["optimizer_eps"] = {"rmsprop": 1e-5, "adam": 1e-8}.get(args.optimizer)
    return Args(**{**asdict(args), **{k: v for k, v in preset.items() if getattr(args, k) is None}})


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("max_episode_steps", "buffer_size", "batch_size", "train_freq", "target_update_freq", "eps_decay_period"),
                    nonneg=("learning_starts",), positive=("lr", "optimizer_eps"), unit=("discount", "tau"))
    if args.optimizer not in ("rmsprop", "adam"):
        raise runs.UserError(f"--optimizer must be rmsprop or adam, got {args.optimizer!r}")
    for name in ("initial_eps", "end_eps", "eval_eps"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            raise runs.UserError(f"{runs.flag(name)} must be in [0, 1], got {getattr(args, name)}")


# ---------------------------------------------------------------------------------------------
# Networks (torch's default initialisation throughout)
# ---------------------------------------------------------------------------------------------
def _torch_uniform(fan_in: int):
    bound = 1.0 / np.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Linear(nn.Module):
    """torch.nn.Linear with its default initialisation: weight and bias ~ U(+-1/sqrt(fan_in))."""

    features: int

    @nn.compact
    def __call__(self, x):
        init = _torch_uniform(x.shape[-1])
        return x @ self.param("kernel", init, (x.shape[-1], self.features)) + self.param("bias", init, (self.features,))


class Conv(nn.Module):
    """torch.nn.Conv2d (VALID padding) with its default initialisation, fan_in = in_channels * k * k."""

    features: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, C]
        init = _torch_uniform(x.shape[-1] * self.kernel ** 2)
        return nn.Conv(self.features, (self.kernel, self.kernel), self.stride, padding="VALID", kernel_init=init,
                       bias_init=init)(x)


class QNetwork(nn.Module):
    """Q values [B, num_actions] of observations [B, *obs_shape] (uint8 images [B, C, H, W] or vectors)."""

    num_actions: int
    arch: str  # "nature" (dqn-atari), "minatar" or "fc"

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32)  # raw 0-255 pixels: the authors do not divide by 255
        if self.arch == "fc":
            x = nn.relu(Linear(256)(x))
            x = nn.relu(Linear(256)(x))
        else:
            x = jnp.moveaxis(x, -3, -1)  # [B, C, H, W] -> [B, H, W, C]
            layers = ((32, 8, 4), (64, 4, 2), (64, 3, 1)) if self.arch == "nature" else ((16, 3, 1),)
            for features, kernel, stride in layers:
                x = nn.relu(Conv(features, kernel, stride)(x))
            x = x.reshape(*x.shape[:-3], -1)  # nature: 7 * 7 * 64 = 3136
            x = nn.relu(Linear(512 if self.arch == "nature" else 128)(x))
        return Linear(self.num_actions)(x)


def arch_of(env_id: str, obs_shape) -> str:
    suite = suite_of(env_id)
    if suite == "atari":
        return "nature"
    if suite == "minatar":
        return "minatar"
    if len(obs_shape) != 1:
        raise runs.SpaceError(f"{env_id}: observations of shape {tuple(obs_shape)}; ddqn takes vectors, "
                              "dqn-atari:<Game> or minatar:<game> images")
    return "fc"


def make_optimizer(args: Args) -> optax.GradientTransformation:
    if args.optimizer == "rmsprop":  # torch.optim.RMSprop(alpha=0.95, centered=True): eps added after the sqrt
        return optax.rmsprop(args.lr, decay=0.95, eps=args.optimizer_eps, centered=True, eps_in_sqrt=False)
    return optax.adam(args.lr, eps=args.optimizer_eps)


# ---------------------------------------------------------------------------------------------
# Learner state and replay (one seed; vmapped to [num_seeds, ...])
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    q: dict
    q_target: dict
    opt: optax.OptState
    key: jax.Array
    iterations: jax.Array  # training iterations so far (epsilon schedule)


class Buffer(NamedTuple):
    """Slot c % capacity holds the c-th written slot of this seed (seeds advance apart: episode ends take
    a second slot, dropped capped steps none)."""

    frame: jax.Array  # [capacity, *frame] newest frame of s (whole obs when not stacked)
    action: jax.Array  # [capacity] int32
    reward: jax.Array  # [capacity] (clipped when --clip-rewards)
    not_done: jax.Array  # [capacity] 0 only for real terminations: time limits bootstrap
    pos: jax.Array  # [capacity] int32, step of s within its episode: stacks stop at the episode start
    valid: jax.Array  # [capacity] bool: a transition (not an episode's final frame)


class Transition(NamedTuple):  # one env step of every seed, [N, ...]
    frame: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    next_frame: np.ndarray  # the newest frame of the true s'
    pos: np.ndarray
    store: np.ndarray  # False: a capped transition that --drop-capped leaves out
    end: np.ndarray  # a stored episode end: its final frame takes the next slot


# ---------------------------------------------------------------------------------------------
# DQN pieces as pure functions
# ---------------------------------------------------------------------------------------------
def double_q_target(reward, not_done, q_next_online, q_next_target, discount, double=True):
    """y = r + gamma * not_done * Q'(s', argmax_a Q(s', a)); without ``double``, max_a Q'(s', a)."""
    if double:
        a = jnp.argmax(q_next_online, -1)
        q_next = jnp.take_along_axis(q_next_target, a[..., None], -1)[..., 0]
    else:
        q_next = q_next_target.max(-1)
    return reward + not_done * discount * q_next


def huber(x, delta=1.0):
    """torch's smooth_l1_loss (beta 1) elementwise: 0.5 x^2 if |x| < delta else delta * (|x| - 0.5 delta)."""
    a = jnp.abs(x)
    return jnp.where(a < delta, 0.5 * x ** 2, delta * (a - 0.5 * delta))


def epsilon(iterations, initial_eps, end_eps, eps_decay_period):
    """Linear decay over training iterations, then constant: max(initial + slope * it, end)."""
    slope = (end_eps - initial_eps) / eps_decay_period
    return jnp.maximum(initial_eps + slope * iterations, end_eps)


def sample_range(count, capacity: int, history: int):
    """(first slot, number of slots) of the sampleable window of a seed that has written ``count`` slots:
    not the newest (its next frame comes with the next step) and, once wrapped, not the oldest
    history - 1 (their frame history was overwritten)."""
    wrapped = count >= capacity
    start = jnp.where(wrapped, count % capacity + history - 1, 0)
    length = jnp.where(wrapped, capacity - history, count - 1)
    return start, jnp.maximum(length, 1)


def stack(buffer: Buffer, slots, pos, history: int):
    """Observations [B, history * frame...] of ``slots`` [B] whose step in the episode is ``pos`` [B]:
    frames slots - history + 1 .. slots, oldest first, zeros before the episode start."""
    back = jnp.arange(history - 1, -1, -1)  # [h]
    idx = (slots[:, None] - back) % buffer.frame.shape[0]  # [B, h]
    frames = buffer.frame[idx] * (back <= pos[:, None]).reshape(*idx.shape, *(1,) * (buffer.frame.ndim - 1))
    return frames.reshape(slots.shape[0], -1, *buffer.frame.shape[2:]) if history > 1 else frames[:, 0]


def schedule(t: int, learning_starts: int, train_freq: int, target_update_freq: int) -> tuple[bool, bool, bool]:
    """Host-side flags after storing env step t (0-based): (train, update_target, random_next_action).

    As the repo: a training iteration after step t when t >= start_timesteps and (t + 1) % train_freq == 0;
    the target moves after iteration k when k % target_update_freq == 0."""
    train = t >= learning_starts and (t + 1) % train_freq == 0
    k = (t + 1) // train_freq - learning_starts // train_freq  # iterations done after step t
    return train, train and k % target_update_freq == 0, t + 1 < learning_starts


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Buffer), stacked
    act: callable  # (learner, obs [N, ...], random) -> (learner, action [N])
    greedy: callable  # (q params, obs [N, ...], keys [N], eps) -> action [N]
    update: callable  # (learner, buffer, count [N], update_target) -> (learner, metrics)
    step: callable  # (learner, buffer, transition, count, obs, flags...) -> (learner, buffer, action, metrics)
    capacity: int
    history: int


def make_agent(args: Args, obs_shape, obs_dtype, num_actions: int, history: int) -> Agent:
    q_net = QNetwork(num_actions, arch_of(args.env_id, obs_shape))
    tx = make_optimizer(args)
    capacity = int(min(args.buffer_size, 2 * args.total_timesteps + 1))
    frame_shape = (obs_shape[0] // history, *obs_shape[1:]) if history > 1 else tuple(obs_shape)
    if capacity < history + 2:
        raise runs.UserError(f"--buffer-size must be >= {history + 2} for {history}-frame stacks, got {capacity}")

    def init(key):
        key, k_q = jax.random.split(key)
        params = q_net.init(k_q, jnp.zeros((1, *obs_shape), obs_dtype))
        learner = Learner(params, params, tx.init(params), key, jnp.zeros((), jnp.int32))
        buffer = Buffer(jnp.zeros((capacity, *frame_shape), obs_dtype), jnp.zeros(capacity, jnp.int32),
                        jnp.zeros(capacity), jnp.zeros(capacity), jnp.zeros(capacity, jnp.int32),
                        jnp.zeros(capacity, bool))
        return learner, buffer

    def act(learner, obs, random):
        key, k_eps, k_a = jax.random.split(learner.key, 3)
        uniform = jax.random.randint(k_a, (), 0, num_actions)
        if random:
            return learner._replace(key=key), uniform
        eps = epsilon(learner.iterations, args.initial_eps, args.end_eps, args.eps_decay_period)
        greedy = jnp.argmax(q_net.apply(learner.q, obs[None])[0])
        return learner._replace(key=key), jnp.where(jax.random.uniform(k_eps) < eps, uniform, greedy)

    def greedy(params, obs, key, eps):
        """Evaluation: greedy, a uniform action with probability eps."""
        k_eps, k_a = jax.random.split(key)
        a = jnp.argmax(q_net.apply(params, obs[None])[0])
        return jnp.where(jax.random.uniform(k_eps) < eps, jax.random.randint(k_a, (), 0, num_actions), a)

    def sample(key, buffer, count):
        """Uniform over the sampleable window; 4 candidates per row, the first valid one kept."""
        start, length = sample_range(count, capacity, history)
        cand = (start + jax.random.randint(key, (4, args.batch_size), 0, length)) % capacity  # [4, B]
        ok = buffer.valid[cand]
        first = jnp.argmax(ok, 0)
        idx = jnp.take_along_axis(cand, first[None], 0)[0]
        return idx, ok.any(0).astype(jnp.float32)

    def update(learner, buffer, count, update_target):
        key, k_idx = jax.random.split(learner.key)
        idx, weight = sample(k_idx, buffer, count)
        pos = buffer.pos[idx]
        obs, next_obs = stack(buffer, idx, pos, history), stack(buffer, idx + 1, pos + 1, history)
        action, reward, not_done = buffer.action[idx], buffer.reward[idx], buffer.not_done[idx]

        # Double DQN target: the online network picks a', the target network values it
        q_next_target = q_net.apply(learner.q_target, next_obs)
        q_next_online = q_net.apply(learner.q, next_obs) if args.double_q else q_next_target
        target = jax.lax.stop_gradient(double_q_target(reward, not_done, q_next_online, q_next_target, args.discount,
                                                       args.double_q))

        def loss_fn(params):
            q = jnp.take_along_axis(q_net.apply(params, obs), action[:, None], -1)[:, 0]
            return (weight * huber(q - target)).sum() / jnp.maximum(weight.sum(), 1.0), q

        (loss, q), grads = jax.value_and_grad(loss_fn, has_aux=True)(learner.q)
        updates, opt = tx.update(grads, learner.opt, learner.q)
        params = optax.apply_updates(learner.q, updates)
        q_target = (optax.incremental_update(params, learner.q_target, args.tau) if update_target
                    else learner.q_target)
        learner = Learner(params, q_target, opt, key, learner.iterations + 1)
        return learner, {"q_loss": loss, "q_mean": q.mean()}

    def add(buffer, tr, count):
        """Write this seed's step into slot count % capacity and, at a stored episode end, its final frame
        into the next slot (a non-transition); a dropped capped step keeps only its frame (the previous
        transition's s') as a non-transition."""
        p = count % capacity
        put = lambda b, i, x: jax.lax.dynamic_update_index_in_dim(b, x, i, 0)  # noqa: E731
        buffer = Buffer(put(buffer.frame, p, tr.frame), put(buffer.action, p, tr.action.astype(jnp.int32)),
                        put(buffer.reward, p, tr.reward), put(buffer.not_done, p, 1.0 - tr.terminated),
                        put(buffer.pos, p, tr.pos), put(buffer.valid, p, tr.store))
        q = (p + 1) % capacity
        return buffer._replace(frame=put(buffer.frame, q, jnp.where(tr.end, tr.next_frame, buffer.frame[q])),
                               pos=put(buffer.pos, q, jnp.where(tr.end, tr.pos + 1, buffer.pos[q])),
                               valid=put(buffer.valid, q, jnp.where(tr.end, False, buffer.valid[q])))

    def train_and_act(learner, buffer, count, obs, train, update_target, random_next):
        """One training iteration if due, then the action for obs (env step t + 1), for all seeds."""
        metrics = {}
        if train:
            learner, metrics = jax.vmap(update, in_axes=(0, 0, 0, None))(learner, buffer, count, update_target)
        learner, action = jax.vmap(act, in_axes=(0, 0, None))(learner, obs, random_next)
        return learner, action, metrics

    # The write and the update are two jitted calls (as td3.py): fused, XLA would copy the whole buffer.
    add = jax.jit(jax.vmap(add), donate_argnums=0)
    train_and_act = jax.jit(train_and_act, static_argnames=("train", "update_target", "random_next"),
                            donate_argnums=0)

    def step(learner, buffer, transition, count, obs, train, update_target, random_next):
        """Store step t (count: slots written before it [N]), train once if due, then pick the next action."""
        buffer = add(buffer, transition, count)
        count_after = jnp.asarray(count + 1 + transition.end)
        learner, action, metrics = train_and_act(learner, buffer, count_after, obs, train=train,
                                                 update_target=update_target, random_next=random_next)
        return learner, buffer, action, metrics

    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, None)), static_argnums=2),
        greedy=jax.jit(jax.vmap(greedy, in_axes=(0, 0, 0, None))),
        update=jax.jit(jax.vmap(update, in_axes=(0, 0, 0, None)), static_argnums=3),
        step=step,
        capacity=capacity,
        history=history,
    )


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
def env_kwargs(args: Args) -> dict:
    if args.max_episode_steps is None:
        return {}
    return {"max_episode_steps" if suite_of(args.env_id) == "gym" else "max_steps": args.max_episode_steps}


def _make_envs(args: Args, seeds):
    kw = {"discrete_ok": True, "pixels_ok": True, "workers": args.env_workers, "env_kwargs": env_kwargs(args)}
    train_envs = envs.SeedEnvs(args.env_id, seeds, **kw)
    if not train_envs.discrete:
        train_envs.close()
        raise runs.SpaceError(f"{args.env_id} has continuous actions; ddqn needs a Discrete action space "
                              "(continuous control: td3.py, td3_lap.py, ...)")
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, **kw)
    return train_envs, evaluator


def _agent_for(args: Args, spaces) -> Agent:
    arch_of(args.env_id, spaces.obs_shape)
    return make_agent(args, spaces.obs_shape, spaces.obs_dtype, spaces.action_dim, spaces.frame_history)


def eval_policy(agent: Agent, params, seeds, step: int, eps: float):
    """Policy for the Evaluator: greedy (eps = 0) or eps-greedy with its own key stream per seed and evaluation."""
    base = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s + 100), step) for s in seeds])
    calls = iter(range(1 << 62))
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    return lambda o: agent.greedy(params, o, fold(base, next(calls)), eps)


def train(args: Args) -> dict:
    """Train args.num_seeds agents; returns the final learner, buffer and run facts."""
    run = runs.Run(ALGO, args, Args)
    run.args = args = resolve_presets(run.args)  # with --resume, the checkpoint's args
    seeds = run.seeds
    check_args(args)
    train_envs, evaluator = _make_envs(args, seeds)
    agent = run.devices.agent(_agent_for(args, train_envs))  # seeds over devices
    learner, buffer = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    if run.checkpoint:
        saved, buffer = run.checkpoint.load({"learner": learner, "action": jnp.zeros(len(seeds), jnp.int32)}, buffer,
                                            args)
        learner, action, t0 = saved["learner"], saved["action"], run.checkpoint.step
        count = np.asarray(run.checkpoint.host["count"], np.int64)
        obs = train_envs.set_state(run.checkpoint.host["envs"])
    else:
        t0, count, obs = 0, np.zeros(len(seeds), np.int64), train_envs.reset()
        learner, action = agent.act(learner, obs, args.learning_starts > 0)
    per_slot = sum(x.nbytes for x in buffer) // (args.num_seeds * agent.capacity)
    replay = {"capacity": agent.capacity, "bytes_per_slot": per_slot, "mb_per_seed": round(per_slot * agent.capacity / 1e6, 1)}
    run.start(replay)
    run.print(f"replay on {jax.devices()[0].platform}: {agent.capacity} slots x {per_slot} bytes = "
              f"{replay['mb_per_seed']} MB per seed, {args.num_seeds} seed(s)")
    channels = train_envs.obs_shape[0] // agent.history

    def frame(o):  # the newest frame of stacked pixels; anything else whole
        return o[:, -channels:] if agent.history > 1 else o

    compile_s, sps_from, loop_end = None, None, None  # for the steps/s figure, compilation excluded
    metrics, last_eval = {}, None

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(eval_policy(agent, learner.q, seeds, step, args.eval_eps))
        run.evaluation([{"seed": s, "step": step, "return": r} for s, r in zip(seeds, last_eval)], host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        for t in range(t0, args.total_timesteps):
            flags = schedule(t, args.learning_starts, args.train_freq, args.target_update_freq)
            action_host = np.asarray(action)  # the one device -> host transfer per env step
            pos = train_envs.ep_length.astype(np.int32)  # step of s within its episode
            env_step = train_envs.step(action_host)
            reward = np.clip(env_step.reward, -1.0, 1.0) if args.clip_rewards else env_step.reward
            store = ~(env_step.truncated & args.drop_capped)
            end = store & (env_step.terminated | env_step.truncated)
            transition = Transition(frame(obs), action_host, reward, env_step.terminated.astype(np.float32),
                                    frame(env_step.next_obs), pos, store, end)
            obs = env_step.obs
            tc = time.time()
            learner, buffer, action, new = agent.step(learner, buffer, transition, count, obs, *flags)
            count = count + 1 + end
            if flags[0] and compile_s is None:  # the first training step compiles the update
                compile_s = (jax.block_until_ready(action), time.time() - tc)[1]
            metrics = new or metrics
            for i, ret, length in env_step.episodes:
                run.episode(seeds[i], t + 1, ret, length)
            if sps_from is None and flags[1]:  # both update variants compiled
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
                    run.save(t + 1, {"learner": learner, "action": action},
                             {"t": t + 1, "envs": train_envs.get_state(), "count": count}, ring=buffer, written=count)
    run.close()
    train_envs.close()
    evaluator.close()
    steps_timed = (args.total_timesteps - 1 - sps_from[0]) if sps_from else 0
    return {
        "run_dir": run.dir, "learner": learner, "buffer": buffer, "count": count, "final_eval": last_eval,
        "compile_s": compile_s,
        "train_loop_steps_per_s": steps_timed / (loop_end - sps_from[1]) if steps_timed > 0 else None,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved policy
# ---------------------------------------------------------------------------------------------
def saved_policy(saved: Args, spaces, ckpt: runs.Checkpoint, replay: bool = False, seed_index=None, copies=1):
    """A checkpoint's greedy policy, obs [N, *obs_shape] -> int32 actions [N] (row i is seed i; with
    ``seed_index``, ``copies`` rows of that seed), and with ``replay`` its replay buffer [N, capacity, ...]
    (else None). Used by --eval-only and by the dataset tool (python -m envs.collect)."""
    saved = resolve_presets(saved)
    agent = _agent_for(saved, spaces)
    learner, buffer = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in range(saved.num_seeds)]))
    trees, ring = ckpt.load({"learner": learner}, ring=buffer if replay else None, args=saved)
    learner = trees["learner"] if seed_index is None else runs.take_seed(trees["learner"], seed_index, copies)
    keys = jnp.zeros((learner.key.shape[0], *jax.random.PRNGKey(0).shape), jnp.uint32)
    return (lambda o: agent.greedy(learner.q, o, keys[:len(o)], 0.0)), ring


def evaluate_checkpoint(args: Args) -> np.ndarray:
    def policy_from(saved: Args, evaluator, ckpt):
        saved = resolve_presets(saved)
        agent = _agent_for(saved, evaluator)
        seeds = [saved.seed + i for i in range(saved.num_seeds)]
        learner, _ = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
        learner = ckpt.load({"learner": learner}, args=saved)[0]["learner"]
        return eval_policy(agent, learner.q, seeds, ckpt.step, saved.eval_eps)

    check_args(resolve_presets(args))
    return runs.evaluate_saved(ALGO, args, Args, policy_from, lambda saved: dict(discrete_ok=True, pixels_ok=True,
                                                                                env_kwargs=env_kwargs(saved)))


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
