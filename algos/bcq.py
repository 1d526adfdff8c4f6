"""BCQ: Batch-Constrained deep Q-learning (continuous actions), for offline RL, in JAX, many seeds per process.

Paper: S. Fujimoto, D. Meger, D. Precup. "Off-Policy Deep Reinforcement Learning without Exploration".
ICML 2019. arXiv:1812.02900.
Follows: github.com/sfujim/BCQ @ 4876f7e5afa9eb2981feec5daf67202514477518, continuous_BCQ/ (BCQ.py, main.py:
400-300 actor and critics, 750-750 VAE, Adam 1e-3, batch 100).

Usage:  python algos/bcq.py --dataset minari:fujimoto-jax/hopper/medium-v0 --num-seeds 5
        python algos/bcq.py --dataset d4rl:hopper_medium-v2.hdf5 --env-id Hopper-v4

The agent only takes actions the data makes likely. A conditional VAE G(a | s) models the dataset's
actions; a perturbation model xi(s, a) (the repo's "Actor") nudges a VAE sample by at most Phi; the
policy is the best under Q1 of n perturbed VAE samples. Each iteration, in this order:
  1. VAE: reconstruction MSE + 0.5 * KL(N(mu, sigma) || N(0, I)), the KL averaged over latent dims.
  2. Critics: y = r + gamma * (1 - terminated) * max over 10 perturbed VAE samples a'_j of s' of
     lambda * min(Q1', Q2') + (1 - lambda) * max(Q1', Q2') (soft clipped double Q, lambda = 0.75);
     the samples come from the just-updated VAE and the target perturbation model.
  3. Perturbation model: -mean Q1(s, xi(s, a~)), a~ one VAE sample per state (an input: no VAE gradient).
  4. Polyak update (tau = 0.005) of the critic and perturbation targets, every iteration.
The offline loop is the one of td3_bc.py: the dataset stored once on the device for all seeds (each
samples its own indices), the updates run in lax.scan chunks of eval_freq between evaluations (10
episodes on envs seeded seed + 100). eval.csv has a normalized_score column (D4RL's x 100) when the
dataset has references, and a success column (the success rate over the episodes) on OGBench data.

Parity: tests/parity/test_bcq.py runs the repo's BCQ.train beside `update` in float64 on the same
weights, batch and random draws (VAE, critics, perturbation model, targets, Adam moments and losses
agree to 1e-12 or better, results/parity.md), and the repo's buffer generation (main.py,
utils.ReplayBuffer) beside our collection and loader on the same episodes.

Deviations and notes (the update is the repo's when max_action = 1, as on every D4RL task):
- Data (envs/offline.py, timeouts="bootstrap"): a time-limit transition is kept and bootstraps, as
  the repo's buffer stores done = 0 at the time limit. A D4RL file without next_observations cannot
  give those transitions their next state, so the loader drops them and says how many. No state
  normalisation (the repo has none). A real termination on the time-limit step itself is terminal
  here (gymnasium's terminated flag); the repo's old-gym rule (`episode_timesteps <
  _max_episode_steps`) stores it as not done.
- BCQ's own protocol (reproduce/grids/bcq.toml): the imperfect buffers come from ddpg.py with the
  repo's behavioural DDPG settings (400-300, Adam 1e-3, batch 100, exploration 0.1; its own run
  per env) and `python -m envs.collect --recipe imperfect` (random action with probability 0.3,
  else + N(0, 0.3), 100k transitions). The repo trains one behaviour policy and collects one buffer
  per seed; here one buffer, from the behaviour run's first seed, serves every seed of a BCQ run
  (a run holds one dataset for all its seeds).
- Evaluation envs: gymnasium -v4 MuJoCo tasks on MuJoCo 3.x (the `mujoco` bindings), not the
  paper's gym -v1 (the README now suggests -v3) nor the gym 0.17-era mujoco-py envs that generated
  D4RL's -v2 datasets: the same tasks with slightly different simulators, so returns and D4RL
  normalised scores on D4RL files are comparable with published ones only approximately.
- On GPUs JAX may run float32 matmuls in TF32, while the authors' PyTorch 1.4 (their README) has no
  TF32; set JAX_DEFAULT_MATMUL_PRECISION=highest for full float32 (no effect on CPU).
- Actions are mapped from the env's bounds onto [-1, 1], so max_action = 1: Phi and the decoder's
  tanh are in units of max_action, as the repo's Phi * max_action and max_action * tanh. The VAE's
  reconstruction MSE is therefore in [-1, 1] units: on an env whose bounds are not +-1 it weighs
  1 / max_action^2 times the repo's against the KL (exact for max_action = 1, every D4RL task).
- Every random draw (batch indices, the VAE's reparameterisation noise, the prior latents of the
  target, of the actor loss and of action selection) comes from each seed's JAX key, not torch's
  global RNG.
- Evaluation: the policy is stochastic (100 prior samples per step). An evaluation draws from its
  own key fold_in(PRNGKey(seed + 100), step), split at each env step, apart from the learner's key:
  evaluations are reproducible, do not shift the training stream, and --eval-only of a checkpoint
  replays the draws of the training evaluation at that step.
- --total-timesteps counts gradient steps per seed (the repo's max_timesteps, in iterations).
- eval.csv also has a step-0 row (the repo's first evaluation follows eval_freq iterations), and the
  final step is evaluated when total_timesteps is not a multiple of eval_freq.
- log(sigma^2) in the KL is written 2 log_std (the same value). The logged losses are the means
  over each chunk of eval_freq updates.
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

ALGO = "bcq"
LOG_STD_MIN, LOG_STD_MAX = -4.0, 15.0  # the VAE encoder's log_std clamp


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
    """gradient steps per seed (the repo's max_timesteps)"""
    eval_freq: int = 5_000
    """evaluate every this many gradient steps (and at step 0 and at the end)"""
    eval_episodes: int = 10
    """evaluation episodes per seed (the policy samples from the VAE: see the module docstring)"""
    # Networks
    hidden_dim1: int = 400
    """width of the first hidden layer of the perturbation model and of each critic"""
    hidden_dim2: int = 300
    """width of the second hidden layer of the perturbation model and of each critic"""
    vae_hidden_dim: int = 750
    """width of both hidden layers of the VAE's encoder and of its decoder (latent dim: 2 x action dim)"""
    # Optimisation
    actor_lr: float = 1e-3
    """Adam learning rate of the perturbation model xi"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics"""
    vae_lr: float = 1e-3
    """Adam learning rate of the VAE"""
    batch_size: int = 100
    """transitions per update"""
    discount: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the critic and perturbation targets (updated every iteration)"""
    # BCQ
    lmbda: float = 0.75
    """soft clipped double Q: lambda * min(Q1, Q2) + (1 - lambda) * max(Q1, Q2)"""
    phi: float = 0.05
    """largest perturbation Phi of a VAE action, in units of max_action"""
    num_target_samples: int = 10
    """perturbed VAE actions per next state in the critic target (max over them)"""
    num_act_samples: int = 100
    """perturbed VAE actions per state at action selection (argmax Q1 over them)"""
    kl_weight: float = 0.5
    """weight of the KL term in the VAE loss"""
    latent_clip: float = 0.5
    """prior samples z ~ N(0, I) are clipped to +-latent_clip when the VAE decodes without an encoder z"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("batch_size", "hidden_dim1", "hidden_dim2", "vae_hidden_dim", "num_target_samples",
                                  "num_act_samples"), nonneg=("phi", "kl_weight", "max_transitions"),
                    positive=("actor_lr", "critic_lr", "vae_lr", "latent_clip"), unit=("discount", "tau"))
    if not 0.0 <= args.lmbda <= 1.0:
        raise runs.UserError(f"--lmbda must be in [0, 1], got {args.lmbda}")


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


def perturb(action, xi_out, phi):
    """xi(s, a) = clip(a + Phi * tanh(xi_out), -1, 1): a moves by at most Phi, then stays in the action box."""
    return jnp.clip(action + phi * jnp.tanh(xi_out), -1.0, 1.0)


class Actor(nn.Module):
    """The perturbation model xi_phi(s, a): (s || a) -> 400 -> 300 -> action_dim, added to a (see ``perturb``)."""

    action_dim: int
    hidden_dim1: int = 400
    hidden_dim2: int = 300
    phi: float = 0.05

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)
        x = nn.relu(Linear(self.hidden_dim1)(x))
        x = nn.relu(Linear(self.hidden_dim2)(x))
        return perturb(action, Linear(self.action_dim)(x), self.phi)


class QNetwork(nn.Module):
    hidden_dim1: int = 400
    hidden_dim2: int = 300

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)  # the action enters at the first layer
        x = nn.relu(Linear(self.hidden_dim1)(x))
        x = nn.relu(Linear(self.hidden_dim2)(x))
        return Linear(1)(x)[..., 0]


class Critic(nn.Module):
    """Two independent Q networks."""

    hidden_dim1: int = 400
    hidden_dim2: int = 300

    def setup(self):
        self.q1 = QNetwork(self.hidden_dim1, self.hidden_dim2)
        self.q2 = QNetwork(self.hidden_dim1, self.hidden_dim2)

    def __call__(self, obs, action):
        return self.q1(obs, action), self.q2(obs, action)

    def q1_only(self, obs, action):
        return self.q1(obs, action)


class VAE(nn.Module):
    """Conditional VAE G(a | s). Encoder (s || a) -> 750 -> 750 -> (mean, log_std), log_std clamped to
    [-4, 15]; decoder (s || z) -> 750 -> 750 -> action_dim, tanh (max_action = 1)."""

    action_dim: int
    latent_dim: int
    hidden_dim: int = 750

    def setup(self):
        self.e1, self.e2 = Linear(self.hidden_dim), Linear(self.hidden_dim)
        self.mean, self.log_std = Linear(self.latent_dim), Linear(self.latent_dim)
        self.d1, self.d2, self.d3 = Linear(self.hidden_dim), Linear(self.hidden_dim), Linear(self.action_dim)

    def encode(self, obs, action):
        x = jnp.concatenate([obs, action], -1)
        x = nn.relu(self.e2(nn.relu(self.e1(x))))
        return self.mean(x), jnp.clip(self.log_std(x), LOG_STD_MIN, LOG_STD_MAX)

    def decode(self, obs, z):
        x = jnp.concatenate([obs, z], -1)
        x = nn.relu(self.d2(nn.relu(self.d1(x))))
        return jnp.tanh(self.d3(x))

    def __call__(self, obs, action, key):
        """The training pass: (reconstruction, mean, log_std), z = mean + std * eps."""
        mean, log_std = self.encode(obs, action)
        # why: the posterior sample is not clipped; the +-0.5 clip applies only to prior samples
        z = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        return self.decode(obs, z), mean, log_std


# ---------------------------------------------------------------------------------------------
# Learner state (one seed; vmapped to [num_seeds, ...]) and the dataset (one copy for all seeds)
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    actor: dict  # the perturbation model xi
    actor_target: dict
    critic: dict
    critic_target: dict
    vae: dict  # no target copy: the critic target samples from the current VAE
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    vae_opt: optax.OptState
    key: jax.Array


class Buffer(NamedTuple):
    obs: jax.Array  # [size, obs_dim]
    action: jax.Array  # [size, action_dim], in [-1, 1]
    reward: jax.Array  # [size]
    next_obs: jax.Array  # [size, obs_dim]
    terminated: jax.Array  # [size], 1 only for real terminations: time limits bootstrap


# ---------------------------------------------------------------------------------------------
# BCQ pieces as pure functions
# ---------------------------------------------------------------------------------------------
def prior_latent(key, shape, clip):
    """z ~ N(0, I) clipped to [-clip, clip]: the latent of a VAE sample drawn without the encoder."""
    return jnp.clip(jax.random.normal(key, shape), -clip, clip)


def sample_actions(vae: VAE, vae_params, key, obs, latent_clip):
    """G(s): one decoded action per row of obs [M, obs_dim] -> [M, action_dim], z from the clipped prior."""
    z = prior_latent(key, (obs.shape[0], vae.latent_dim), latent_clip)
    return vae.apply(vae_params, obs, z, method=VAE.decode)


def vae_loss(recon, action, mean, log_std, kl_weight):
    """(loss, recon, kl): recon = MSE over batch and action dims; kl = -0.5 * mean(1 + log sigma^2 - mu^2 -
    sigma^2) over batch AND latent dims (not summed over latent dims); loss = recon + kl_weight * kl."""
    recon_loss = jnp.mean((recon - action) ** 2)
    kl = -0.5 * jnp.mean(1.0 + 2.0 * log_std - mean ** 2 - jnp.exp(2.0 * log_std))
    return recon_loss + kl_weight * kl, recon_loss, kl


def soft_clipped_target(q1, q2, lmbda, num_samples):
    """Per-state value of the candidates: q1, q2 [B * n] (state i's n candidates at rows i*n .. i*n + n - 1,
    jnp.repeat's order) -> [B], the max over each state's candidates of lambda min + (1 - lambda) max."""
    q = lmbda * jnp.minimum(q1, q2) + (1.0 - lmbda) * jnp.maximum(q1, q2)
    return q.reshape(-1, num_samples).max(1)


def td_target(reward, terminated, next_value, discount):
    """y = r + gamma * (1 - terminated) * V(s')."""
    return reward + discount * (1.0 - terminated) * next_value


class Agent(NamedTuple):
    init: callable  # keys [N] -> Learner, stacked
    policy: callable  # (actor, critic, vae params, keys [N], obs [N, obs_dim]) -> (keys [N], actions [N, action_dim])
    update: callable  # (learner, data) -> (learner, metrics)
    train_chunk: callable  # (learner, data, iterations) -> (learner, mean metrics)


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    actor = Actor(action_dim, args.hidden_dim1, args.hidden_dim2, args.phi)
    critic = Critic(args.hidden_dim1, args.hidden_dim2)
    vae = VAE(action_dim, 2 * action_dim, args.vae_hidden_dim)
    actor_tx, critic_tx, vae_tx = optax.adam(args.actor_lr), optax.adam(args.critic_lr), optax.adam(args.vae_lr)

    def init(key):
        key, k_actor, k_critic, k_vae, k_noise = jax.random.split(key, 5)
        obs, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(k_actor, obs, action)
        critic_params = critic.init(k_critic, obs, action)
        vae_params = vae.init(k_vae, obs, action, k_noise)
        return Learner(actor_params, actor_params, critic_params, critic_params, vae_params,
                       actor_tx.init(actor_params), critic_tx.init(critic_params), vae_tx.init(vae_params), key)

    def update(learner, data):
        key, k_idx, k_vae, k_next, k_actor = jax.random.split(learner.key, 5)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, data.reward.shape[0])
        b = jax.tree.map(lambda x: x[idx], data)

        # 1. VAE: reconstruction + KL
        def vae_loss_fn(params):
            recon, mean, log_std = vae.apply(params, b.obs, b.action, k_vae)
            loss, recon_loss, kl = vae_loss(recon, b.action, mean, log_std, args.kl_weight)
            return loss, (recon_loss, kl)

        (loss_vae, (recon_loss, kl)), grads = jax.value_and_grad(vae_loss_fn, has_aux=True)(learner.vae)
        updates, vae_opt = vae_tx.update(grads, learner.vae_opt, learner.vae)
        vae_params = optax.apply_updates(learner.vae, updates)

        # 2. Critics: soft clipped double-Q over num_target_samples perturbed VAE actions of each s'
        n = args.num_target_samples
        next_obs = jnp.repeat(b.next_obs, n, axis=0)  # [B * n, obs_dim], each state's n copies contiguous
        next_action = actor.apply(learner.actor_target, next_obs,  # the just-updated VAE, the target xi
                                  sample_actions(vae, vae_params, k_next, next_obs, args.latent_clip))
        q1_next, q2_next = critic.apply(learner.critic_target, next_obs, next_action)  # [B * n] each
        target = td_target(b.reward, b.terminated, soft_clipped_target(q1_next, q2_next, args.lmbda, n),
                           args.discount)
        target = jax.lax.stop_gradient(target)  # [B]

        def critic_loss_fn(params):
            q1, q2 = critic.apply(params, b.obs, b.action)
            return jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)

        critic_loss, grads = jax.value_and_grad(critic_loss_fn)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        critic_params = optax.apply_updates(learner.critic, updates)

        # 3. Perturbation model: maximise Q1 of the perturbed VAE action under the updated critic
        sampled = sample_actions(vae, vae_params, k_actor, b.obs, args.latent_clip)  # an input: no VAE gradient

        def actor_loss_fn(params):
            return -critic.apply(critic_params, b.obs, actor.apply(params, b.obs, sampled),
                                 method=Critic.q1_only).mean()

        actor_loss, grads = jax.value_and_grad(actor_loss_fn)(learner.actor)
        updates, actor_opt = actor_tx.update(grads, learner.actor_opt, learner.actor)
        actor_params = optax.apply_updates(learner.actor, updates)

        # 4. Targets: Polyak every iteration (no policy delay in BCQ)
        learner = Learner(
            actor=actor_params, actor_target=optax.incremental_update(actor_params, learner.actor_target, args.tau),
            critic=critic_params,
            critic_target=optax.incremental_update(critic_params, learner.critic_target, args.tau),
            vae=vae_params, actor_opt=actor_opt, critic_opt=critic_opt, vae_opt=vae_opt, key=key)
        metrics = {"vae_loss": loss_vae, "recon_loss": recon_loss, "kl_loss": kl, "critic_loss": critic_loss,
                   "actor_loss": actor_loss}
        return learner, metrics

    def act(actor_params, critic_params, vae_params, key, obs):
        """Action selection for one state obs [obs_dim]: the argmax Q1 of num_act_samples perturbed VAE
        actions. Returns (next key, action [action_dim])."""
        key, k_z = jax.random.split(key)
        obs = jnp.broadcast_to(obs, (args.num_act_samples, obs.shape[-1]))  # [n, obs_dim]: the state repeated
        candidates = actor.apply(actor_params, obs, sample_actions(vae, vae_params, k_z, obs, args.latent_clip))
        q1 = critic.apply(critic_params, obs, candidates, method=Critic.q1_only)  # [n]
        return key, candidates[jnp.argmax(q1)]

    def train_chunk(learner, data, iterations):
        """``iterations`` updates of one seed in one lax.scan; the metrics are their means."""
        learner, metrics = jax.lax.scan(lambda learner, _: update(learner, data), learner, None, length=iterations)
        return learner, jax.tree.map(lambda x: x.mean(0), metrics)

    # The dataset is one device array for all seeds (in_axes None); each seed draws its own indices.
    return Agent(
        init=jax.jit(jax.vmap(init)),
        policy=jax.jit(jax.vmap(act)),
        update=jax.jit(jax.vmap(update, in_axes=(0, None))),
        train_chunk=jax.jit(jax.vmap(train_chunk, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0),
    )


def eval_keys(seeds, step: int) -> jax.Array:
    """[N] keys of the evaluation at ``step``: fold_in(PRNGKey(seed + 100), step), apart from the learner's."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s + 100), step) for s in seeds])


def stochastic_policy(agent: Agent, learner: Learner, keys: jax.Array):
    """The Evaluator's policy obs [N, obs_dim] -> actions [N, action_dim] in [-1, 1]: BCQ's action
    selection, each call drawing with the next split of ``keys`` [N]."""

    def policy(obs):
        nonlocal keys
        keys, action = agent.policy(learner.actor, learner.critic, learner.vae, keys, obs)
        return action

    return policy


# ---------------------------------------------------------------------------------------------
# Training loop (offline: the dataset instead of env steps)
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents on the dataset; returns the final learner and run facts."""
    offline.resolve_env(args)
    run = runs.Run(ALGO, args, Args)  # with --resume, the checkpoint's args
    args, seeds = run.args, run.seeds
    check_args(args)
    data = offline.load(args.dataset, args.env_id, timeouts="bootstrap", max_transitions=args.max_transitions)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, workers=args.env_workers)
    run.eval_header = offline.eval_header(data, run.eval_header)
    agent = run.devices.agent(make_agent(args, evaluator.obs_dim, evaluator.action_dim))  # seeds over devices
    device_data = run.devices.replicate(Buffer(*(jnp.asarray(x) for x in data.arrays())))  # one copy per device
    learner = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    t0 = 0
    if run.checkpoint:
        offline.check_resume(data, run.checkpoint.host)
        learner, t0 = run.checkpoint.load({"learner": learner}, args=args)[0]["learner"], run.checkpoint.step
    info = offline.describe(data, sum(x.nbytes for x in device_data))
    run.start({"dataset": info})
    dropped = f"; {info['dropped_timeouts']} time-limit transitions dropped (no next_observations)" \
        if info.get("dropped_timeouts") else ""
    run.print(f"dataset {args.dataset}: {len(data)} transitions, {info['device_mb']} MB on "
              f"{jax.devices()[0].platform}, shared by {args.num_seeds} seed(s){dropped}")

    metrics, last_eval, timing = {}, None, {"compile_s": None, "updates": 0, "seconds": 0.0}

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(stochastic_policy(agent, learner, eval_keys(seeds, step)))
        run.evaluation(offline.eval_rows(data, seeds, step, last_eval, evaluator.successes), host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        step = t0
        while step < args.total_timesteps:
            n = min(args.eval_freq - step % args.eval_freq, args.total_timesteps - step)  # updates to the next eval
            tc = time.time()
            learner, metrics = agent.train_chunk(learner, device_data, n)
            jax.block_until_ready(learner)
            if timing["compile_s"] is None:  # the first chunk compiles it (a shorter last chunk compiles again)
                timing["compile_s"] = time.time() - tc
            else:
                timing["updates"], timing["seconds"] = timing["updates"] + n, timing["seconds"] + time.time() - tc
            step += n
            run.advance(step, timing["updates"] / timing["seconds"] if timing["seconds"] else None)
            evaluate(step)
            if run.checkpoint_due(step):
                run.save(step, {"learner": learner}, {"t": step, "dataset": info["fingerprint"]})
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
    """A checkpoint's policy, obs [N, obs_dim] -> action [N, action_dim] in [-1, 1] (row i is seed i; with
    ``seed_index``, ``copies`` rows of that seed, each with its own draws). Its keys are those of the
    training evaluation at the checkpoint's step, so a seed's first row replays that evaluation."""
    agent = make_agent(saved, spaces.obs_dim, spaces.action_dim)
    seeds = [saved.seed + i for i in range(saved.num_seeds)]
    learner = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    learner = ckpt.load({"learner": learner}, args=saved)[0]["learner"]
    if seed_index is None:
        keys = eval_keys(seeds, ckpt.step)
    else:
        learner = runs.take_seed(learner, seed_index, copies)
        key = eval_keys([seeds[seed_index]], ckpt.step)[0]
        keys = jnp.stack([key] + [jax.random.fold_in(key, c) for c in range(1, copies)])
    return stochastic_policy(agent, learner, keys)


def evaluate_checkpoint(args: Args) -> np.ndarray:
    check_args(args)
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt))


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
