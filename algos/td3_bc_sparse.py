"""Sparse-Reg on TD3+BC: TD3+BC with SNIP-pruned actor and critic, for offline RL on small datasets, in JAX.

Paper: S. Y. Arnob, S. Fujimoto, D. Precup. "Sparse-Reg: Improving Sample Complexity in Offline Reinforcement
Learning using Sparsity". arXiv:2506.17155 (v2).
Follows: github.com/SaminYeasar/sparse_reg @ 6ceeadbf1ca6cab0bcbba094effcac57cae48c80 (main.py, sparse_utils.py,
algos.py TD3_BC, data_utils.py; the repository has no license: read for facts, nothing copied). The base is
algos/td3_bc.py (sfujim/TD3_BC @ 8791ad7), whose update the code's TD3_BC repeats.

Usage:  python algos/td3_bc_sparse.py --dataset minari:fujimoto-jax/hopper/medium-v0 --max-transitions 10000
        python algos/td3_bc_sparse.py --dataset d4rl:halfcheetah_expert-v2.hdf5 --env-id HalfCheetah-v4 \
            --max-transitions 10000 --num-seeds 5

`diff algos/td3_bc.py algos/td3_bc_sparse.py` shows the whole method: a 0/1 mask on every weight matrix (not the
biases) of the actor and of the critic, multiplied into the weights in every forward pass (the target networks
use their online network's masks), so pruned weights get no gradient; the masks keep the top --keep-ratio of
each network's weights by the SNIP score |dL/dmask|, recomputed every --mask-every updates until
--sparse-until, then frozen.

What this file reproduces: the paper's TD3+BC rows, i.e. the code's `--algo_name TD3_BC --activate_sparse_reg`
on a small dataset. IQL is the code's default base (`--algo_name IQL`, and the paper's main results use it);
this project has no IQL, so those rows (and AWAC's, BC's) are not reproduced. The paper's text beyond its
abstract and introduction could not be read here (the stored arXiv page stops there): its tables, dataset list
and any setting it states are unverified; every setting below comes from the code or is ours.

Settings:
- --keep-ratio 0.05 (95% sparse) (code: main.py --keep_ratio; README "For 95% sparse network"). Per network:
  the actor's 3 weight matrices are ranked together, the critic's 6 (both Q heads) together, k = int(keep_ratio
  x n) weights kept (code: sparse_utils.get_keep_masks, int(len(all_scores) * keep_ratio)), exactly k: ties are
  broken by the lower flat index, in the layers' order (our choice: the code keeps every score >= the k-th, so
  a tie at the threshold keeps more than k). The code divides the scores by their sum first, which does not
  change the ranking: not done here.
- Score (code: sparse_utils.get_masks -> TD3_BC.train_no_grad_update): on a copy of the agent whose every mask
  (online and target) is 1 and whose weights are the stored ones (pruned weights count with the values they
  kept), one batch of --batch-size: the critic loss backward, then the TD3+BC actor loss backward, with no
  optimizer step in between. The mask gradients are summed: the actor loss's backward also reaches the critic's
  Q1 masks (they are not the optimizer's parameters, so its zero_grad does not clear them), so the critic's
  score is |d(L_critic + L_actor)/dmask| and the actor's |dL_actor/dmask|. `snip_scores` computes that gradient
  of the sum at mask = 1. The batch and target noise are the seed's own draws (a key folded off the learner's
  key, so the updates' random stream is td3_bc.py's).
- Schedule (code: main.py): masks at the start, then after every eval_freq (1,000) updates while the update
  count is below --turn_off_sparse_reg_at (200,000): recomputed at 0, 1k, ..., 199k, frozen from then on;
  0 = one mask at the start (README: "For single-shot set value to 0"). Here --mask-every (1,000, the code's
  eval_freq, which also sets its evaluations; ours stay at --eval-freq) and --sparse-until (200,000), the check
  inside the scanned loop (lax.cond on the update count, shared by the seeds; each seed scores its own masks).
- Pruned weights (code: algos.apply_prune_mask with fixed_weight=-1 and a gradient hook grad * mask): not zeroed,
  their gradient zeroed. The code keeps its Adam state across re-prunes, so a weight pruned at a re-prune is
  still moved by its Adam moments (the first decays by 0.9 a step) although its gradient is 0; it is masked
  in every forward, so only a later re-score (which sees the stored values) or a revival sees the drift. Here
  the Adam update is multiplied by the mask (our choice): a pruned weight keeps exactly the value it had when
  pruned, the moments evolve as the code's (zero gradients), and nothing else changes; parity
  (tests/parity/test_td3_bc_sparse.py) shows the two equal on every output and on every kept weight.
- Target networks share the masks (code: TD3_BC.mask_agent patches actor_target and critic_target with the
  online masks); their Polyak update averages every entry, pruned ones too (code).
- Base TD3+BC as td3_bc.py (code: algos.TD3_BC: 256-256, policy_freq 2, noise 0.2 / 0.5, tau 0.005, alpha 2.5,
  batch 256, states normalised), except the learning rates: 1e-3 for both networks (code: main.py --lr 0.001
  passed to TD3_BC; sfujim/TD3_BC uses 3e-4). Compare with td3_bc.py at --actor-lr 1e-3 --critic-lr 1e-3.
- Small data: --max-transitions N, the code's protocol (data_utils.d4rl_subsample_trajectories with
  --buffer_size N, default 100,000; README example 10,000 on halfcheetah-expert-v2): the first N transitions,
  trajectories of <= 10 transitions dropped; envs/offline.py ("Small data") says how ours differs (N counts
  transitions after the time-limit handling; the code also skips each later trajectory's first row). 0 (ours,
  the default): the whole dataset, as td3_bc.py.
- Time limits: as td3_bc.py (d4rl.qlearning_dataset's rule: the time-limit transition is dropped). The code
  keeps it with done = 1 and the file's next_observations (data_utils: dones |= timeouts): one transition
  per 1,000-step episode, which then does not bootstrap.
- Evaluation as td3_bc.py (every --eval-freq 5,000, 10 episodes); the code evaluates every 1,000 updates.

Everything else (data loading, normalisation, the offline loop, evaluation, checkpoints) is td3_bc.py's; the
masks are part of the learner state, so they are in the checkpoint and a resumed run continues exactly.

Parity: tests/parity/test_td3_bc_sparse.py runs the authors' TD3_BC.train (sfujim/TD3_BC) in float64 beside
`update`: dense (--keep-ratio 1) and with masks applied to their networks as the sparse_reg code applies them
(weights x mask in the forward, gradient hooks), across a re-prune; and their loss code's mask gradients
beside `snip_scores` (results/parity.md).
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

ALGO = "td3_bc_sparse"


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
    actor_lr: float = 1e-3
    """Adam learning rate of the actor (the Sparse-Reg code's --lr; td3_bc.py: 3e-4)"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics (the Sparse-Reg code's --lr; td3_bc.py: 3e-4)"""
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
    # Sparse-Reg
    keep_ratio: float = 0.05
    """fraction of each network's weights kept (the top SNIP scores), in (0, 1]; 1: dense, td3_bc.py's update"""
    sparse_until: int = 200_000
    """masks are recomputed every --mask-every updates while fewer than this many updates are done, then
    frozen; 0: one mask, at the start (single-shot)"""
    mask_every: int = 1_000
    """updates between two mask recomputations (the code's eval_freq); a multiple of --policy-freq"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("batch_size", "hidden_dim", "policy_freq", "mask_every"),
                    nonneg=("policy_noise", "noise_clip", "sparse_until", "max_transitions"),
                    positive=("actor_lr", "critic_lr", "alpha"), unit=("discount", "tau", "keep_ratio"))
    for name in ("total_timesteps", "eval_freq", "mask_every"):
        if getattr(args, name) % args.policy_freq:
            raise runs.UserError(f"{runs.flag(name)} ({getattr(args, name)}) must be a multiple of --policy-freq "
                                 f"({args.policy_freq}): the scanned chunks hold whole actor periods")


def kept_count(keep_ratio: float, n: int) -> int:
    """Weights a network of n weights keeps: int(n x keep_ratio), as the code rounds (down)."""
    return int(n * keep_ratio)


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
    actor_mask: dict  # like actor: 0/1 on the kernels, 1 on the biases (never pruned); actor_target's too
    critic_mask: dict  # like critic (both Q heads ranked together); critic_target's too


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


# ---------------------------------------------------------------------------------------------
# Sparse-Reg pieces: masks, the SNIP keep rule, the schedule
# ---------------------------------------------------------------------------------------------
def masked(params, mask):
    """The weights a forward pass sees: params x mask (the gradient of a pruned weight is then 0)."""
    return jax.tree.map(jnp.multiply, params, mask)


def is_kernel(path) -> bool:
    return getattr(path[-1], "key", None) == "kernel"


def keep_top(scores, keep_ratio: float):
    """0/1 masks shaped like ``scores`` (a network's parameter tree): the kept_count(keep_ratio, n) largest scores
    over all its kernels together (n their total size) get 1, ties to the lower index in the tree's flat order
    (layer by layer); biases get 1 (never pruned)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(scores)
    kernels = [x for p, x in leaves if is_kernel(p)]
    flat = jnp.concatenate([x.ravel() for x in kernels])  # [n] every weight of the network
    _, idx = jax.lax.top_k(flat, kept_count(keep_ratio, flat.size))  # exact k; equal scores: lower index first
    keep = jnp.zeros(flat.shape, flat.dtype).at[idx].set(1)
    out, offset = [], 0
    for p, x in leaves:
        if is_kernel(p):
            out.append(keep[offset:offset + x.size].reshape(x.shape))
            offset += x.size
        else:
            out.append(jnp.ones_like(x))
    return jax.tree_util.tree_unflatten(treedef, out)


def mask_due(t, mask_every: int, sparse_until: int):
    """Masks are (re)computed before update t + 1 (t updates done): at t = 0, and at every multiple of
    mask_every below sparse_until (the code: at the start, then after each eval_freq block while the count is
    below turn_off_sparse_reg_at)."""
    return (t % mask_every == 0) & ((t == 0) | (t < sparse_until))


MASK_KEY = 0x7FFFFFFF  # folded into the learner's key for the score's batch: the updates' key stream is untouched


class Agent(NamedTuple):
    init: callable  # keys [N] -> Learner, stacked (dense masks: all 1)
    policy: callable  # (actor params, actor mask, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, data, update_actor) -> (learner, metrics)
    train_chunk: callable  # (learner, data, iterations, t) -> (learner, metrics): iterations x policy_freq updates
    #                        from t updates done, masks recomputed where mask_due
    snip_scores: callable  # (learner, data) -> (actor scores, critic scores): |dL/dmask| at mask = 1
    rescore: callable  # (learner, data) -> learner with masks recomputed from snip_scores


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    actor, critic = Actor(action_dim, args.hidden_dim), Critic(args.hidden_dim)
    actor_tx, critic_tx = optax.adam(args.actor_lr), optax.adam(args.critic_lr)

    def init(key):
        key, k_actor, k_critic = jax.random.split(key, 3)
        obs, action = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
        actor_params = actor.init(k_actor, obs)
        critic_params = critic.init(k_critic, obs, action)
        ones = lambda tree: jax.tree.map(jnp.ones_like, tree)  # noqa: E731
        return Learner(actor_params, actor_params, critic_params, critic_params,
                       actor_tx.init(actor_params), critic_tx.init(critic_params), key,
                       ones(actor_params), ones(critic_params))

    shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
    for name, tree in (("actor", shapes.actor), ("critic", shapes.critic)):
        n = sum(x.size for p, x in jax.tree_util.tree_flatten_with_path(tree)[0] if is_kernel(p))
        if kept_count(args.keep_ratio, n) < 1:
            raise runs.UserError(f"--keep-ratio {args.keep_ratio} keeps no weight of the {name}'s {n}")

    def update(learner, data, update_actor):
        key, k_idx, k_noise = jax.random.split(learner.key, 3)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, data.reward.shape[0])
        b = jax.tree.map(lambda x: x[idx], data)
        am, cm = learner.actor_mask, learner.critic_mask

        # Critic: clipped double-Q target with target policy smoothing; the targets use the online masks
        next_action = smoothed_target_action(k_noise, actor.apply(masked(learner.actor_target, am), b.next_obs),
                                             args.policy_noise, args.noise_clip)
        q1_next, q2_next = critic.apply(masked(learner.critic_target, cm), b.next_obs, next_action)
        target = jax.lax.stop_gradient(td3_target(b.reward, b.terminated, q1_next, q2_next, args.discount))

        def critic_loss_fn(params):
            q1, q2 = critic.apply(masked(params, cm), b.obs, b.action)  # pruned weights: gradient 0
            return jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)

        critic_loss, grads = jax.value_and_grad(critic_loss_fn)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        # x mask: Adam moments from before a re-prune would still move a weight whose gradient is now 0
        updates = masked(updates, cm)
        learner = learner._replace(critic=optax.apply_updates(learner.critic, updates), critic_opt=critic_opt, key=key)
        metrics = {"critic_loss": critic_loss}

        if update_actor:
            # Actor: Q1 of the policy's action, scaled by lambda, plus the behaviour-cloning term
            critic_now = masked(learner.critic, cm)

            def actor_loss_fn(params):
                pi = actor.apply(masked(params, am), b.obs)
                q = critic.apply(critic_now, b.obs, pi, method=Critic.q1_only)
                return td3_bc_actor_loss(q, pi, b.action, args.alpha)

            actor_loss, grads = jax.value_and_grad(actor_loss_fn)(learner.actor)
            updates, actor_opt = actor_tx.update(grads, learner.actor_opt, learner.actor)
            actor_params = optax.apply_updates(learner.actor, masked(updates, am))
            # Targets: Polyak-averaged only on delayed (actor) iterations
            learner = learner._replace(
                actor=actor_params, actor_opt=actor_opt,
                actor_target=optax.incremental_update(actor_params, learner.actor_target, args.tau),
                critic_target=optax.incremental_update(learner.critic, learner.critic_target, args.tau))
            metrics["actor_loss"] = actor_loss
        return learner, metrics

    # SNIP: |dL/dmask| at mask = 1 on one batch, the critic loss and the TD3+BC actor loss summed (module docstring)
    def snip_scores(learner, data):
        k_idx, k_noise = jax.random.split(jax.random.fold_in(learner.key, MASK_KEY))
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, data.reward.shape[0])
        b = jax.tree.map(lambda x: x[idx], data)
        # the code scores a copy whose every mask is 1: the targets are dense here
        next_action = smoothed_target_action(k_noise, actor.apply(learner.actor_target, b.next_obs),
                                             args.policy_noise, args.noise_clip)
        q1_next, q2_next = critic.apply(learner.critic_target, b.next_obs, next_action)
        target = jax.lax.stop_gradient(td3_target(b.reward, b.terminated, q1_next, q2_next, args.discount))

        def loss(masks):
            am, cm = masks
            q1, q2 = critic.apply(masked(learner.critic, cm), b.obs, b.action)
            critic_loss = jnp.mean((q1 - target) ** 2) + jnp.mean((q2 - target) ** 2)
            pi = actor.apply(masked(learner.actor, am), b.obs)
            q = critic.apply(masked(learner.critic, cm), b.obs, pi, method=Critic.q1_only)
            return critic_loss + td3_bc_actor_loss(q, pi, b.action, args.alpha)  # both backwards reach Q1's masks

        ones = jax.tree.map(jnp.ones_like, (learner.actor, learner.critic))
        return jax.tree.map(jnp.abs, jax.grad(loss)(ones))

    def rescore(learner, data):
        actor_scores, critic_scores = snip_scores(learner, data)
        return learner._replace(actor_mask=keep_top(actor_scores, args.keep_ratio),
                                critic_mask=keep_top(critic_scores, args.keep_ratio))

    def train_chunk(learner, data, iterations, t):
        """``iterations`` actor periods for every seed in one lax.scan: policy_freq - 1 critic-only updates,
        then one with the actor and targets (the repo's total_it % policy_freq == 0); before a period that starts
        at a mask_due count, the masks are recomputed. ``t``: updates done before the chunk. Mean metrics."""

        def period(carry, _):
            learner, t = carry
            # t is shared by the seeds (not vmapped): a real cond, the score is computed only when due
            learner = jax.lax.cond(mask_due(t, args.mask_every, min(args.sparse_until, 2**31 - 1)),
                                   lambda lrn: rescore(lrn, data), lambda lrn: lrn, learner)
            for _ in range(args.policy_freq - 1):
                learner, m = update(learner, data, False)
            learner, metrics = update(learner, data, True)
            return (learner, t + args.policy_freq), metrics

        (learner, _), metrics = jax.lax.scan(period, (learner, jnp.asarray(t, jnp.int32)), None, length=iterations)
        return learner, jax.tree.map(lambda x: x.mean(0), metrics)

    # The dataset is one device array for all seeds (in_axes None); each seed draws its own indices.
    return Agent(
        init=jax.jit(jax.vmap(init)),
        policy=jax.jit(jax.vmap(lambda params, mask, obs: actor.apply(masked(params, mask), obs))),
        update=jax.jit(jax.vmap(update, in_axes=(0, None, None)), static_argnums=2),
        train_chunk=jax.jit(jax.vmap(train_chunk, in_axes=(0, None, None, None)), static_argnums=2,
                            donate_argnums=0),
        snip_scores=jax.jit(jax.vmap(snip_scores, in_axes=(0, None))),
        rescore=jax.jit(jax.vmap(rescore, in_axes=(0, None))),
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
        last_eval = evaluator(lambda o: agent.policy(learner.actor, learner.actor_mask, (o - mean) / std))
        run.evaluation(offline.eval_rows(data, seeds, step, last_eval, evaluator.successes), host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        step = t0
        while step < args.total_timesteps:
            n = min(args.eval_freq - step % args.eval_freq, args.total_timesteps - step)  # updates to the next eval
            tc = time.time()
            learner, metrics = agent.train_chunk(learner, device_data, n // args.policy_freq, step)
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
    return lambda o: agent.policy(learner.actor, learner.actor_mask, (o - mean) / std)


def evaluate_checkpoint(args: Args) -> np.ndarray:
    check_args(args)
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt))


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
