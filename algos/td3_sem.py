"""TD3 + simplicial embeddings (SEM): TD3 whose actor and/or critics end in a simplicial embedding.

Paper: J. Obando-Ceron, W. Mayor, S. Lavoie, S. Fujimoto, A. Courville, P. S. Castro. "Simplicial
Embeddings Improve Sample Efficiency in Actor-Critic Agents". ICLR 2026. arXiv:2510.13704.
Follows: the SEM modules of github.com/waltermayor/FastTD3_SEm @ 38383766 (fast_td3/fast_td3.py; the
authors' release, README cites the paper), placed in algos/td3.py's networks (TD3 @ 34770cc, see td3.py).

Usage:  python algos/td3_sem.py --env-id Hopper-v4 --num-seeds 5 --sem actor

Algorithm 1 of TD3, unchanged: per env step once t >= learning_starts, sample a uniform batch; critic target
with clipped double-Q and target policy smoothing; one Adam step on both critics; every policy_freq-th
iteration an actor step on -Q1(s, pi(s)) and a Polyak update of all targets. Only the networks differ.

What the paper's text gave us: only its title, authors, abstract and the opening of §1 were readable here
(arxiv.org/html/2510.13704v1; the method section and appendix tables were not). The abstract says SEM
constrains embeddings to simplicial structures, giving sparse, discrete features that "stabilize critic
bootstrapping and strengthen policy gradients", and that it is applied to FastTD3, FastSAC and PPO (paper,
abstract). Every setting below whose source is the code or our choice is therefore UNVERIFIED against the
paper's own tables.

The layer (code: FastTD3_SEm@38383766 fast_td3/fast_td3.py, SimNorm / SimNormLinear):
- SimNorm(L, V): reshape the last axis to (L, V), softmax over V, flatten back: L probability vectors of
  size V, each summing to 1. No temperature (code: softmax of the raw input; the paper's: unreadable).
- SimNormLinear: Linear(in -> L*V) -> LayerNorm over the whole L*V vector (not per group) -> SimNorm.
- Placement (code): FastTD3's networks have three hidden layers (h, h/2, h/4); SEM replaces the last one,
  Linear(h/2 -> h/4) + ReLU, by SimNormLinear(h/2 -> L*V), and the output head reads the L*V simplicial
  features (critic: Linear(L*V -> 101 atoms); actor: Linear(L*V -> action) + tanh).
- Here, TD3's 256-256 networks: the last hidden layer Linear(256 -> 256) + ReLU is replaced by
  SimNormLinear(256 -> L*V), so a SEM network is Linear(in -> 256) + ReLU, SimNormLinear(256 -> 512),
  Linear(512 -> out). Why: it is the code's rule (the last hidden layer before the head becomes SEM) applied
  to TD3's shapes; adding a third hidden layer instead would change the depth as well as the geometry, and
  the delta would no longer be SEM alone. Each of the two critics has its own SEM layer; target networks
  are Polyak copies of the online ones, SEM parameters included.
- --sem actor | critic | both (code: sim_type sim_actor | sim_critic | sim_both; "" is plain FastTD3, here
  plain TD3 is algos/td3.py). Default actor (our choice: the paper's per-benchmark placement could not be
  read; the code's default is "" (off) and its README's one example runs --sem_type sim_actor; and in a TD3
  critic the layer bounds Q, see the trap below, which --sem actor avoids).
- --sem-groups L = 8, --sem-dim V = 64 (code: FastTD3_SEm@38383766 defaults seq_len 8, sim_dimension 64;
  the README example passes --sem_dimension 64). An earlier snapshot (johanobandoc/iclr26 @ 2ad4d1c,
  code/fast_td3/hyperparams.py) uses L = 4 for the critic and L = 2 for the actor with V = 64. The paper's
  values: unreadable here.
- Initialisation: the SEM Linear keeps PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)) for weight and bias,
  like every Linear here and the code's nn.Linear; the LayerNorm starts at scale 1, bias 0 with eps 1e-5
  (torch nn.LayerNorm's defaults, which the code uses; flax's default eps is 1e-6). The code's actor output
  init N(0, 0.01) is FastTD3's, not SEM's, and is not taken over.

A trap of SEM in a critic with TD3's scalar head (measured here, not in the paper or the code): the head
reads L probability vectors, so |Q(s, a)| <= sum over groups of max_v |w_gv| + |b| for every input; from
the init (|w| <= 1/sqrt(L * V)) Adam at 3e-4 moves each weight by about 3e-4 per update, so after k updates
|Q| stays below about (L + 1) * (0.044 + 3e-4 k): about 19 after 7,000 updates, where Pendulum's Q-values
reach -1,600 and Hopper's several hundred. The critic cannot fit the targets until its head has grown;
FastTD3's distributional head (logits over a fixed support, v_min..v_max) has no such limit. Measured on
Pendulum-v1 (`python algos/td3_sem.py --env-id Pendulum-v1 --sem critic --num-seeds 2 --total-timesteps 8000
--learning-starts 1000`, and --sem both / actor: tests/test_td3_sem.py's budget), final returns:
--sem critic -1431 / -1449 and --sem both -1465 / -1271 (random play is about -1200), --sem actor -200 / -871,
while td3.py passes a mean of -300 on this budget (tests/test_learning.py). A longer run lets the head catch up
slowly: the same with --total-timesteps 20000 --eval-freq 5000 gave -1469, -1373, -1362, then -927 (-957 / -896)
at 20k, where TD3 is near -180 from 10k on (results/runs/reproduce-quick/td3/Pendulum-v1). Reward scaling was not
tried.

What this file reproduces, and what it does not:
- It is TD3 (td3.py: Algorithm 1, its schedule, noise, Adam, batch 256, one env per seed) with the SEM
  layer in the actor and/or critics: the paper's architectural change, isolated, at TD3's scale.
- It is not the paper's setting. FastTD3 (Seo et al. 2025, arXiv:2505.22642) adds: thousands of parallel
  simulated envs (HumanoidBench, MuJoCo Playground, IsaacLab on GPU), batches of 32k, 2 updates per env
  step, a C51-style distributional critic (101 atoms, v_min/v_max per task), wider networks (critic 1024,
  actor 512, three hidden layers), per-env exploration noise drawn in [std_min, std_max], n-step returns,
  observation normalisation, AdamW with weight decay 0.1, tau 0.1, mixed precision. A FastTD3 reproduction
  needs all of that (a new algorithm file, a vectorised GPU simulator in envs/, and the HumanoidBench tasks)
  before SEM is added on top; the paper's numbers cannot be compared with runs of this file.

TD3's own deviations and notes (none changes the algorithm; see algos/td3.py):
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

ALGO = "td3_sem"


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
    # SEM
    sem: str = "actor"
    """which networks end in a simplicial embedding: actor, critic or both (our choice, the code README's example)"""
    sem_groups: int = 8
    """L: number of simplices (softmax groups) of the SEM layer (code: seq_len 8)"""
    sem_dim: int = 64
    """V: size of each simplex; the SEM layer is L * V wide (code: sim_dimension 64)"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("buffer_size", "batch_size", "hidden_dim", "policy_freq", "sem_groups", "sem_dim"),
                    nonneg=("learning_starts", "policy_noise", "noise_clip", "expl_noise"),
                    positive=("actor_lr", "critic_lr"), unit=("discount", "tau"))
    if args.sem not in SEM_PLACES:
        raise runs.UserError(f"--sem must be actor, critic or both, got {args.sem!r}")


SEM_PLACES = {"actor": (True, False), "critic": (False, True), "both": (True, True)}  # --sem -> (actor, critic)


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


def simnorm(x, groups: int, group_dim: int):
    """SimNorm(L, V): [..., L * V] -> [..., L, V] -> softmax over V -> [..., L * V] (no temperature)."""
    shape = x.shape
    return jax.nn.softmax(x.reshape(*shape[:-1], groups, group_dim), axis=-1).reshape(shape)


class SimNormLinear(nn.Module):
    """The SEM layer: Linear(in -> L * V), LayerNorm over the whole L * V vector (one mean and variance for
    all groups, not one per group), then SimNorm(L, V)."""

    groups: int
    group_dim: int

    @nn.compact
    def __call__(self, x):
        x = Linear(self.groups * self.group_dim)(x)  # torch's default init, as every Linear here
        # torch nn.LayerNorm(L * V) defaults: scale 1, bias 0, eps 1e-5, two-pass variance
        x = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False)(x)
        return simnorm(x, self.groups, self.group_dim)


def last_hidden(x, hidden_dim: int, sem: bool, groups: int, group_dim: int):
    """The last hidden layer: TD3's Linear + ReLU, or the SEM layer that replaces it (L * V wide)."""
    return SimNormLinear(groups, group_dim)(x) if sem else nn.relu(Linear(hidden_dim)(x))


class Actor(nn.Module):
    action_dim: int
    hidden_dim: int = 256
    sem: bool = False
    sem_groups: int = 8
    sem_dim: int = 64

    @nn.compact
    def __call__(self, obs):
        x = nn.relu(Linear(self.hidden_dim)(obs))
        x = last_hidden(x, self.hidden_dim, self.sem, self.sem_groups, self.sem_dim)
        return jnp.tanh(Linear(self.action_dim)(x))  # in [-1, 1]; the env adapter scales by max_action


class QNetwork(nn.Module):
    hidden_dim: int = 256
    sem: bool = False
    sem_groups: int = 8
    sem_dim: int = 64

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)  # the action enters at the first layer
        x = nn.relu(Linear(self.hidden_dim)(x))
        x = last_hidden(x, self.hidden_dim, self.sem, self.sem_groups, self.sem_dim)
        return Linear(1)(x)[..., 0]


class Critic(nn.Module):
    """Two independent Q networks, each with its own SEM layer when on."""

    hidden_dim: int = 256
    sem: bool = False
    sem_groups: int = 8
    sem_dim: int = 64

    def setup(self):
        self.q1 = QNetwork(self.hidden_dim, self.sem, self.sem_groups, self.sem_dim)
        self.q2 = QNetwork(self.hidden_dim, self.sem, self.sem_groups, self.sem_dim)

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


def schedule(t: int, learning_starts: int, policy_freq: int) -> tuple[bool, bool, bool]:
    """Host-side flags for env step t (0-based): (train, update_actor, random_next_action).

    The repo trains from t == start_timesteps on and counts iterations before checking the delay,
    so the actor and targets move on training iterations 2, 4, 6, ...
    """
    train = t >= learning_starts
    iteration = t - learning_starts + 1
    return train, train and iteration % policy_freq == 0, t + 1 < learning_starts


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Buffer), stacked
    act: callable  # (learner, obs [N, obs_dim], random) -> (learner, action [N, action_dim])
    policy: callable  # (actor params, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, buffer, size, update_actor) -> (learner, metrics)
    step: callable  # (learner, buffer, transition, obs, t, flags...) -> (learner, buffer, action, metrics)
    capacity: int


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    sem_actor, sem_critic = SEM_PLACES[args.sem]
    actor = Actor(action_dim, args.hidden_dim, sem_actor, args.sem_groups, args.sem_dim)
    critic = Critic(args.hidden_dim, sem_critic, args.sem_groups, args.sem_dim)
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

    def update(learner, buffer, size, update_actor):
        key, k_idx, k_noise = jax.random.split(learner.key, 3)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, size)
        b = jax.tree.map(lambda x: x[idx], buffer)

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

    def add(buffer, transition, t):
        """Store transition t ([N, ...]) of every seed in slot t (the seeds step in lockstep)."""
        return jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, t % capacity, 1), buffer, transition)

    def train_and_act(learner, buffer, obs, t, train, update_actor, random_next):
        """One training iteration if due, then the action for obs (env step t + 1), for all seeds."""
        metrics = {}
        if train:
            learner, metrics = jax.vmap(update, in_axes=(0, 0, None, None))(
                learner, buffer, jnp.minimum(t + 1, capacity), update_actor)
            metrics.pop("idx")
        learner, action = jax.vmap(act, in_axes=(0, 0, None))(learner, obs, random_next)
        return learner, action, metrics

    # The write and the update are two jitted calls: fused into one, XLA copies the whole buffer
    # every step to keep the batch gather apart from the in-place write. Both donate their state.
    add = jax.jit(add, donate_argnums=0)
    train_and_act = jax.jit(train_and_act, static_argnames=("train", "update_actor", "random_next"), donate_argnums=0)

    def step(learner, buffer, transition, obs, t, train, update_actor, random_next):
        """Store transition t, train once if due, then pick the action for obs (step t + 1)."""
        buffer = add(buffer, transition, t)
        learner, action, metrics = train_and_act(learner, buffer, obs, t, train=train, update_actor=update_actor,
                                                 random_next=random_next)
        return learner, buffer, action, metrics

    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, None)), static_argnums=2),
        policy=jax.jit(jax.vmap(actor.apply)),
        update=jax.jit(jax.vmap(update, in_axes=(0, 0, None, None)), static_argnums=3),
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
            flags = schedule(t, args.learning_starts, args.policy_freq)
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
