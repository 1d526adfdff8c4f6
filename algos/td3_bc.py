"""TD3+BC: TD3 with a behaviour-cloning term, for offline RL, in JAX, many seeds per process.

Paper: S. Fujimoto, S. S. Gu. "A Minimalist Approach to Offline Reinforcement Learning".
NeurIPS 2021. arXiv:2106.06860.
Follows: github.com/sfujim/TD3_BC @ 8791ad7d7656cb8396f1b3ac8c37f170b2a2dd5f (TD3 of sfujim/TD3 @
6a9f761: 256-256 networks, Adam 3e-4, batch 256).

Usage:  python algos/td3_bc.py --dataset minari:fujimoto-jax/hopper/medium-v0 --num-seeds 5
        python algos/td3_bc.py --dataset d4rl:hopper_medium-v2.hdf5 --env-id Hopper-v4

`diff algos/td3.py algos/td3_bc.py` shows the whole algorithm: the actor loss
-lambda * mean Q1(s, pi(s)) + mean (pi(s) - a)^2 with lambda = alpha / stopgrad(mean |Q1(s, pi(s))|),
the state normalisation by the dataset's mean and std (+ 1e-3), and the offline loop: no env
stepping, the dataset stored once on the device for all seeds (each samples its own indices), the
updates run in lax.scan chunks of eval_freq between evaluations (10 episodes on envs seeded
seed + 100). eval.csv has a normalized_score column (D4RL's x 100) when the dataset has references, and
a success column (the success rate over the episodes) on OGBench data (--dataset ogbench:...).

Deviations and notes (none changes the algorithm on D4RL's tasks, whose actions lie in [-1, 1]):
- Data as `d4rl.qlearning_dataset` gives it (envs/offline.py, timeouts="drop"): the transition of
  a time-limit end is dropped and every other one bootstraps unless terminal. For a Minari dataset
  the truncated last step of an episode is dropped the same way. OGBench data keeps OGBench's own
  convention: a trajectory's last transition bootstraps, a goal state does not.
- Actions are mapped from the env's bounds onto [-1, 1] (the identity for D4RL's MuJoCo tasks), and
  the noise scales are in units of max_action, as in td3.py. The BC term is therefore measured in
  [-1, 1] units: on an env whose bounds are not +-1 it weighs 1 / max_action^2 times what the repo's
  env-unit MSE would (exact for every D4RL task).
- --total-timesteps counts gradient steps per seed (the repo's max_timesteps); it and --eval-freq
  must be multiples of --policy-freq, so every scanned chunk holds whole actor periods.
- The logged losses are the means over the actor steps of each chunk (every policy_freq-th update).
- Evaluation runs gymnasium's -v4 MuJoCo envs (MuJoCo 3.x) named by --env-id, where the authors
  evaluate on D4RL's gym 0.17 / mujoco-py -v2 envs (the paper: Gym 0.17.0, MuJoCo 1.50); the
  simulator versions differ, so returns of one policy need not match theirs exactly.
- On GPUs JAX may run float32 matmuls in TF32, while the authors' PyTorch (1.4 in the paper) uses full
  float32; set JAX_DEFAULT_MATMUL_PRECISION=highest for full float32 (no effect on CPU).

Parity: tests/parity/test_td3_bc.py runs the repo's TD3_BC.train beside `update` and `train_chunk` in
float64 on the same weights, batches and noise, and the repo's convert_D4RL / normalize_states
beside envs/offline.py and train's normalisation on a small D4RL file (results/parity.md).
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
from envs import offline, runs

ALGO = "td3_bc"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    dataset: str = ""
    """offline data: minari:<dataset id>, d4rl:<path to .hdf5> or ogbench:<single-task name or .npz> (make one
    with python -m envs.collect)"""
    env_id: runs.UnsetStr = ""
    """env of the evaluations: a gymnasium id (Hopper-v4) or an ogbench: id; default: a Minari or OGBench
    dataset's own env"""
    max_transitions: int = 0
    """small data: keep the first N transitions of the dataset (stored order) and drop trajectories of <= 10
    transitions (the Sparse-Reg code's protocol); 0: the whole dataset"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: int = 1_000_000
    """gradient steps per seed (the paper's max_timesteps)"""
    eval_freq: int = 5_000
    """evaluate every this many gradient steps (and at step 0 and at the end)"""
    eval_episodes: int = 10
    """deterministic evaluation episodes per seed"""
    # TD3
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
    # TD3+BC
    alpha: float = 2.5
    """weight of the Q term against the BC term: lambda = alpha / mean |Q1(s, pi(s))|"""
    normalize: bool = True
    """normalise states by the dataset's mean and std (+ 1e-3); the paper turned it off for AntMaze"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("batch_size", "hidden_dim", "policy_freq"),
                    nonneg=("policy_noise", "noise_clip", "max_transitions"), positive=("actor_lr", "critic_lr", "alpha"), unit=("discount", "tau"))
    for name in ("total_timesteps", "eval_freq"):
        if getattr(args, name) % args.policy_freq:
            raise runs.UserError(f"{runs.flag(name)} ({getattr(args, name)}) must be a multiple of --policy-freq "
                                 f"({args.policy_freq}): the scanned chunks hold whole actor periods")


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
# Learner state (one seed; vmapped to [num_seeds, ...]) and the dataset (one copy for all seeds)
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
    obs: jax.Array  # [size, obs_dim], normalised
    action: jax.Array  # [size, action_dim], in [-1, 1]
    reward: jax.Array  # [size]
    next_obs: jax.Array  # [size, obs_dim], normalised
    terminated: jax.Array  # [size], 1 only for real terminations: time limits bootstrap


# ---------------------------------------------------------------------------------------------
# TD3+BC pieces as pure functions
# ---------------------------------------------------------------------------------------------
def smoothed_target_action(key, next_action, policy_noise, noise_clip):
    """Target policy smoothing: a' = clip(pi'(s') + clip(eps, -c, c), -1, 1), eps ~ N(0, sigma^2)."""
    noise = jnp.clip(jax.random.normal(key, next_action.shape) * policy_noise, -noise_clip, noise_clip)
    return jnp.clip(next_action + noise, -1.0, 1.0)


def td3_target(reward, terminated, q1_next, q2_next, discount):
    """Clipped double-Q target: y = r + gamma * (1 - terminated) * min(Q1', Q2')."""
    return reward + discount * (1.0 - terminated) * jnp.minimum(q1_next, q2_next)


def bc_lambda(q, alpha):
    """lambda = alpha / mean |Q1(s, pi(s))| over the batch, detached (it scales the Q term)."""
    return alpha / jax.lax.stop_gradient(jnp.abs(q).mean())


def td3_bc_actor_loss(q, pi, action, alpha):
    """-lambda * mean Q1(s, pi(s)) + mean over batch and action dims of (pi(s) - a)^2."""
    return -bc_lambda(q, alpha) * q.mean() + jnp.mean((pi - action) ** 2)


class Agent(NamedTuple):
    init: callable  # keys [N] -> Learner, stacked
    policy: callable  # (actor params, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, data, update_actor) -> (learner, metrics)
    train_chunk: callable  # (learner, data, iterations) -> (learner, metrics): iterations x policy_freq updates


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    actor, critic = Actor(action_dim, args.hidden_dim), Critic(args.hidden_dim)
    actor_tx, critic_tx = optax.adam(args.actor_lr), optax.adam(args.critic_lr)

    def init(key):
        key, k_actor, k_critic = jax.random.split(key, 3)
        obs, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(k_actor, obs)
        critic_params = critic.init(k_critic, obs, action)
        return Learner(actor_params, actor_params, critic_params, critic_params,
                       actor_tx.init(actor_params), critic_tx.init(critic_params), key)

    def update(learner, data, update_actor):
        key, k_idx, k_noise = jax.random.split(learner.key, 3)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, data.reward.shape[0])
        b = jax.tree.map(lambda x: x[idx], data)

        # Critic: clipped double-Q target with target policy smoothing
        next_action = smoothed_target_action(k_noise, actor.apply(learner.actor_target, b.next_obs),
                                             args.policy_noise, args.noise_clip)
        q1_next, q2_next = critic.apply(learner.critic_target, b.next_obs, next_action)
        target = jax.lax.stop_gradient(td3_target(b.reward, b.terminated, q1_next, q2_next, args.discount))

        def critic_loss_fn(params):
            q1, q2 = critic.apply(params, b.obs, b.action)
            return jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)

        critic_loss, grads = jax.value_and_grad(critic_loss_fn)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        learner = learner._replace(critic=optax.apply_updates(learner.critic, updates), critic_opt=critic_opt, key=key)
        metrics = {"critic_loss": critic_loss}

        if update_actor:
            # Actor: Q1 of the policy's action, scaled by lambda, plus the behaviour-cloning term
            def actor_loss_fn(params):
                pi = actor.apply(params, b.obs)
                q = critic.apply(learner.critic, b.obs, pi, method=Critic.q1_only)
                return td3_bc_actor_loss(q, pi, b.action, args.alpha)

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

    def train_chunk(learner, data, iterations):
        """``iterations`` actor periods for every seed in one lax.scan: policy_freq - 1 critic-only updates,
        then one with the actor and targets (the repo's total_it % policy_freq == 0). Mean metrics."""

        def period(learner, _):
            for _ in range(args.policy_freq - 1):
                learner, m = update(learner, data, False)
            learner, metrics = update(learner, data, True)
            return learner, metrics

        learner, metrics = jax.lax.scan(period, learner, None, length=iterations)
        return learner, jax.tree.map(lambda x: x.mean(0), metrics)

    # The dataset is one device array for all seeds (in_axes None); each seed draws its own indices.
    return Agent(
        init=jax.jit(jax.vmap(init)),
        policy=jax.jit(jax.vmap(actor.apply)),
        update=jax.jit(jax.vmap(update, in_axes=(0, None, None)), static_argnums=2),
        train_chunk=jax.jit(jax.vmap(train_chunk, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0),
    )


# ---------------------------------------------------------------------------------------------
# Training loop (offline: the dataset instead of env steps)
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents on the dataset; returns the final learner and run facts."""
    offline.resolve_env(args)
    run = runs.Run(ALGO, args, Args)  # with --resume, the checkpoint's args
    args, seeds = run.args, run.seeds
    check_args(args)
    data = offline.load(args.dataset, args.env_id, timeouts="drop", max_transitions=args.max_transitions)
    mean, std = offline.normalization(data.obs) if args.normalize else (0.0, 1.0)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, workers=args.env_workers)
    run.eval_header = offline.eval_header(data, run.eval_header)
    agent = run.devices.agent(make_agent(args, evaluator.obs_dim, evaluator.action_dim))  # seeds over devices
    device_data = run.devices.replicate(Buffer(  # one copy per device
        jnp.asarray((data.obs - mean) / std), jnp.asarray(data.action), jnp.asarray(data.reward),
        jnp.asarray((data.next_obs - mean) / std), jnp.asarray(data.terminated)))
    learner = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    t0 = 0
    if run.checkpoint:
        offline.check_resume(data, run.checkpoint.host)
        learner, t0 = run.checkpoint.load({"learner": learner}, args=args)[0]["learner"], run.checkpoint.step
    info = offline.describe(data, sum(x.nbytes for x in device_data))
    run.start({"dataset": info})
    run.print(f"dataset {args.dataset}: {len(data)} transitions, {info['device_mb']} MB on "
              f"{jax.devices()[0].platform}, shared by {args.num_seeds} seed(s)")

    metrics, last_eval, timing = {}, None, {"compile_s": None, "updates": 0, "seconds": 0.0}

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(lambda o: agent.policy(learner.actor, (o - mean) / std))
        run.evaluation(offline.eval_rows(data, seeds, step, last_eval, evaluator.successes), host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        step = t0
        while step < args.total_timesteps:
            n = min(args.eval_freq - step % args.eval_freq, args.total_timesteps - step)  # updates to the next eval
            tc = time.time()
            learner, metrics = agent.train_chunk(learner, device_data, n // args.policy_freq)
            jax.block_until_ready(learner)
            if timing["compile_s"] is None:  # the first chunk compiles it (a shorter last chunk compiles again)
                timing["compile_s"] = time.time() - tc
            else:
                timing["updates"], timing["seconds"] = timing["updates"] + n, timing["seconds"] + time.time() - tc
            step += n
            run.advance(step, timing["updates"] / timing["seconds"] if timing["seconds"] else None)
            evaluate(step)
            if run.checkpoint_due(step):
                run.save(step, {"learner": learner}, {"t": step, "dataset": info["fingerprint"],
                                                      "obs_mean": np.asarray(mean), "obs_std": np.asarray(std)})
    run.close()
    evaluator.close()
    return {
        "run_dir": run.dir, "learner": learner, "final_eval": last_eval, "compile_s": timing["compile_s"],
        "updates_per_s": timing["updates"] / timing["seconds"] if timing["seconds"] else None, "dataset": data,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved policy
# ---------------------------------------------------------------------------------------------
def saved_policy(saved: Args, spaces, ckpt: runs.Checkpoint, seed_index=None, copies=1):
    """A checkpoint's deterministic policy, obs [N, obs_dim] -> action [N, action_dim] in [-1, 1] (row i
    is seed i; with ``seed_index``, ``copies`` rows of that seed), states normalised as in training."""
    agent = make_agent(saved, spaces.obs_dim, spaces.action_dim)
    learner = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in range(saved.num_seeds)]))
    learner = ckpt.load({"learner": learner}, args=saved)[0]["learner"]
    learner = learner if seed_index is None else runs.take_seed(learner, seed_index, copies)
    mean, std = (np.asarray(ckpt.host[k], np.float32) for k in ("obs_mean", "obs_std"))
    return lambda o: agent.policy(learner.actor, (o - mean) / std)


def evaluate_checkpoint(args: Args) -> np.ndarray:
    check_args(args)
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt))


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
