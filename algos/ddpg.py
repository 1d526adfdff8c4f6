"""DDPG as the TD3 paper's "Our DDPG" baseline, in JAX, many seeds per process.

Paper: S. Fujimoto, H. van Hoof, D. Meger. "Addressing Function Approximation Error in
Actor-Critic Methods". ICML 2018. arXiv:1802.09477 ("Our DDPG" in Table 1).
Follows: github.com/sfujim/TD3 @ 34770ccdcb51df6f6c7d85c1ba7e40d71b940d16, OurDDPG.py with the
repo's current defaults (256-256 networks, Adam 3e-4, batch 256, tau 0.005, 25k start steps).
This is not the "original" DDPG.py of that repo (400-300, critic action at layer 2, L2 decay).
With --hidden-dim 400 --hidden-dim2 300 --actor-lr 1e-3 --critic-lr 1e-3 --batch-size 100 it is the
behavioural DDPG of github.com/sfujim/BCQ @ 4876f7e (continuous_BCQ/DDPG.py: 400-300, critic action at
the input, Adam with torch's default lr 1e-3 and no weight decay; main.py: batch 100, 25k random steps,
trained with --gaussian_std 0.1, our --expl-noise 0.1), whose imperfect buffers BCQ learns from
(reproduce/grids/bcq.toml; tests/parity/test_bcq.py checks the update against DDPG.py).

Usage:  python algos/ddpg.py --env-id Hopper-v4 --num-seeds 5

Per env step once t >= learning_starts: sample a uniform batch; critic target
y = r + gamma * (1 - terminated) * Q'(s', pi'(s')) with no target noise; one Adam step on the
single critic; one actor step on -Q(s, pi(s)); a Polyak update of both targets. TD3 without
its three changes (clipped double-Q, target policy smoothing, delayed updates).

Deviations and notes (none changes the algorithm):
- Actions live in [-1, 1]; the `envs` adapter maps them onto the env's bounds. Exploration
  noise 0.1 is therefore in units of max_action, as the repo's `expl_noise * max_action`.
- Gymnasium -v4 envs with separate terminated/truncated flags replace old gym's
  `episode_timesteps < _max_episode_steps` test; the stored bootstrap mask is the same except for a
  real termination on the time-limit step itself, which old gym stored as not done.
- Warm-up actions are uniform in [-1, 1] drawn from each seed's JAX key instead of
  `env.action_space.sample()` (same distribution, another random stream).
- The buffer holds min(buffer_size, total_timesteps) transitions: identical behaviour, since a
  run never wraps a buffer larger than its length, and less memory for short runs.
- Besides every eval_freq steps (and step 0, as the repo), the final step is evaluated when
  total_timesteps is not a multiple of eval_freq (an extra row, nothing else changes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import envs
from envs import runs

ALGO = "ddpg"


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
    # DDPG ("Our DDPG")
    buffer_size: int = 1_000_000
    """replay buffer capacity per seed"""
    hidden_dim: int = 256
    """width of both hidden layers of actor and critic (the first one when --hidden-dim2 is set)"""
    hidden_dim2: Optional[int] = None
    """width of the second hidden layer of actor and critic; unset: --hidden-dim (BCQ's behavioural DDPG:
    --hidden-dim 400 --hidden-dim2 300)"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic"""
    batch_size: int = 256
    """transitions per update"""
    discount: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the target networks"""
    expl_noise: float = 0.1
    """std of the Gaussian exploration noise, in units of max_action"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("buffer_size", "batch_size", "hidden_dim", "hidden_dim2"),
                    nonneg=("learning_starts", "expl_noise"), positive=("actor_lr", "critic_lr"),
                    unit=("discount", "tau"))


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
    hidden_dim2: Optional[int] = None  # None: hidden_dim

    @nn.compact
    def __call__(self, obs):
        x = nn.relu(Linear(self.hidden_dim)(obs))
        x = nn.relu(Linear(self.hidden_dim2 or self.hidden_dim)(x))
        return jnp.tanh(Linear(self.action_dim)(x))  # in [-1, 1]; the env adapter scales by max_action


class Critic(nn.Module):
    """One Q network."""

    hidden_dim: int = 256
    hidden_dim2: Optional[int] = None  # None: hidden_dim

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)  # the action enters at the first layer
        x = nn.relu(Linear(self.hidden_dim)(x))
        x = nn.relu(Linear(self.hidden_dim2 or self.hidden_dim)(x))
        return Linear(1)(x)[..., 0]


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


# ---------------------------------------------------------------------------------------------
# DDPG pieces as pure functions
# ---------------------------------------------------------------------------------------------
def ddpg_target(reward, terminated, q_next, discount):
    """DDPG target: y = r + gamma * (1 - terminated) * Q'(s', pi'(s')), no target noise."""
    return reward + discount * (1.0 - terminated) * q_next


def schedule(t: int, learning_starts: int) -> tuple[bool, bool]:
    """Host-side flags for env step t (0-based): (train, random_next_action).

    The repo trains from t == start_timesteps on; actor and targets move on every iteration.
    """
    return t >= learning_starts, t + 1 < learning_starts


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Buffer), stacked
    act: callable  # (learner, obs [N, obs_dim], random) -> (learner, action [N, action_dim])
    policy: callable  # (actor params, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, buffer, size) -> (learner, metrics)
    step: callable  # (learner, buffer, transition, obs, t, flags...) -> (learner, buffer, action, metrics)
    capacity: int


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    actor = Actor(action_dim, args.hidden_dim, args.hidden_dim2)
    critic = Critic(args.hidden_dim, args.hidden_dim2)
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
        return learner, buffer

    def act(learner, obs, random):
        key, k = jax.random.split(learner.key)
        if random:
            action = jax.random.uniform(k, (action_dim,), minval=-1.0, maxval=1.0)
        else:
            noise = jax.random.normal(k, (action_dim,)) * args.expl_noise
            action = jnp.clip(actor.apply(learner.actor, obs) + noise, -1.0, 1.0)
        return learner._replace(key=key), action

    def update(learner, buffer, size):
        key, k_idx = jax.random.split(learner.key)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, size)
        b = jax.tree.map(lambda x: x[idx], buffer)

        # Critic: DDPG target from the target actor and target critic
        q_next = critic.apply(learner.critic_target, b.next_obs, actor.apply(learner.actor_target, b.next_obs))
        target = jax.lax.stop_gradient(ddpg_target(b.reward, b.terminated, q_next, args.discount))

        def critic_loss_fn(params):
            return jnp.mean((critic.apply(params, b.obs, b.action) - target) ** 2)

        critic_loss, grads = jax.value_and_grad(critic_loss_fn)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        critic_params = optax.apply_updates(learner.critic, updates)

        # Actor: deterministic policy gradient through the updated critic, every iteration
        def actor_loss_fn(params):
            return -critic.apply(critic_params, b.obs, actor.apply(params, b.obs)).mean()

        actor_loss, grads = jax.value_and_grad(actor_loss_fn)(learner.actor)
        updates, actor_opt = actor_tx.update(grads, learner.actor_opt, learner.actor)
        actor_params = optax.apply_updates(learner.actor, updates)
        # Targets: Polyak-averaged every iteration
        learner = Learner(actor_params, optax.incremental_update(actor_params, learner.actor_target, args.tau),
                          critic_params, optax.incremental_update(critic_params, learner.critic_target, args.tau),
                          actor_opt, critic_opt, key)
        return learner, {"critic_loss": critic_loss, "actor_loss": actor_loss, "idx": idx}

    def add(buffer, transition, t):
        """Store transition t ([N, ...]) of every seed in slot t (the seeds step in lockstep)."""
        return jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, t % capacity, 1), buffer, transition)

    def train_and_act(learner, buffer, obs, t, train, random_next):
        """One training iteration if due, then the action for obs (env step t + 1), for all seeds."""
        metrics = {}
        if train:
            learner, metrics = jax.vmap(update, in_axes=(0, 0, None))(learner, buffer, jnp.minimum(t + 1, capacity))
            metrics.pop("idx")
        learner, action = jax.vmap(act, in_axes=(0, 0, None))(learner, obs, random_next)
        return learner, action, metrics

    # The write and the update are two jitted calls: fused into one, XLA copies the whole buffer
    # every step to keep the batch gather apart from the in-place write. Both donate their state.
    add = jax.jit(add, donate_argnums=0)
    train_and_act = jax.jit(train_and_act, static_argnames=("train", "random_next"), donate_argnums=0)

    def step(learner, buffer, transition, obs, t, train, random_next):
        """Store transition t, train once if due, then pick the action for obs (step t + 1)."""
        buffer = add(buffer, transition, t)
        learner, action, metrics = train_and_act(learner, buffer, obs, t, train=train, random_next=random_next)
        return learner, buffer, action, metrics

    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, None)), static_argnums=2),
        policy=jax.jit(jax.vmap(actor.apply)),
        update=jax.jit(jax.vmap(update, in_axes=(0, 0, None))),
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
    learner, buffer = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    if run.checkpoint:
        saved, buffer = run.checkpoint.load({"learner": learner, "action": jnp.zeros((len(seeds), train_envs.action_dim))},
                                            buffer, args)
        learner, action, t0 = saved["learner"], saved["action"], run.checkpoint.step
        obs = train_envs.set_state(run.checkpoint.host["envs"])
    else:
        t0, obs = 0, train_envs.reset()
        learner, action = agent.act(learner, obs, args.learning_starts > 0)
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
            flags = schedule(t, args.learning_starts)
            action_host = np.asarray(action)  # the one device -> host transfer per env step
            env_step = train_envs.step(action_host)
            transition = Buffer(obs, action, env_step.reward, env_step.next_obs,
                                env_step.terminated.astype(np.float32))
            obs = env_step.obs
            tc = time.time()
            learner, buffer, action, metrics = agent.step(learner, buffer, transition, obs, t, *flags)
            if flags[0] and compile_s is None:  # the first training step compiles the update
                compile_s = (jax.block_until_ready(action), time.time() - tc)[1]
            for i, ret, length in env_step.episodes:
                run.episode(seeds[i], t + 1, ret, length)
            if sps_from is None and t >= args.learning_starts + 2:  # every variant compiled
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
                             {"t": t + 1, "envs": train_envs.get_state()}, ring=buffer, written=[t + 1] * len(seeds))
    run.close()
    train_envs.close()
    evaluator.close()
    steps_timed = (args.total_timesteps - 1 - sps_from[0]) if sps_from else 0
    return {
        "run_dir": run.dir, "learner": learner, "buffer": buffer, "final_eval": last_eval, "compile_s": compile_s,
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
    learner, buffer = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in range(saved.num_seeds)]))
    trees, ring = ckpt.load({"learner": learner}, ring=buffer if replay else None, args=saved)
    learner = trees["learner"] if seed_index is None else runs.take_seed(trees["learner"], seed_index, copies)
    return (lambda o: agent.policy(learner.actor, o)), ring


def evaluate_checkpoint(args: Args) -> np.ndarray:
    check_args(args)
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt)[0])


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
