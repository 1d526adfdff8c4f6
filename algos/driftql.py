"""DriftQL: Q-learning with a one-step noise-input policy held near the data by a drift field, offline, in JAX,
many seeds per process.

Paper: A. Houssaini, M. H. Danesh, A. Abyaneh, S. Fujimoto, H.-C. Lin, D. Meger. "Drift Q-Learning".
NeurIPS 2026. arXiv:2606.00350.
Follows: github.com/DT6A/driftql @ 1ad1bbc (agents/driftql.py, utils/networks.py, utils/flax_utils.py, main.py,
envs/env_utils.py; JAX/Flax, built on the FQL codebase), and its README's command list for the per-task settings.

Usage:  python -m envs.collect --recipe ogbench-play --env-id ogbench:cube-single-play-singletask-task2-v0 \
            --episodes 100
        python algos/driftql.py --dataset ogbench:cube-single-play-singletask-task2-v0 --num-seeds 4
        python algos/driftql.py --dataset d4rl:hopper_medium-v2.hdf5 --env-id Hopper-v4 --total-timesteps 500000

Per update, on one batch of 256 transitions (paper Alg. 1):
- the policy is a generator a = clip(f(s, eps), -1, 1), eps ~ N(0, I) of noise_dim (default the action dim): an
  MLP on concat(s, eps), 4 x 512 GELU, no LayerNorm; acting is one forward pass with a fresh eps;
- critic: an ensemble of 2 MLPs on concat(s, a), 4 x 512, Dense -> GELU -> LayerNorm; target
  r + gamma * mask * agg(Q'(s', a')), a' from the CURRENT generator with fresh noise (there is no target actor),
  agg min (q_agg) or mean; loss the mean squared error over ensemble and batch;
- drift loss: N = 32 candidates per state; pairwise distances divided by sqrt(action dim); row softmaxes of
  -d / temp (Laplace) or -d^2 / (2 temp^2) (Gaussian) over the one dataset action (attraction V+) and over the
  other candidates (repulsion V-, the diagonal masked); target stopgrad(clip(a_i + eta (V+ - V-), -1, 1));
  loss the mean over batch x N x action dims of (a_i - target_i)^2;
- actor loss alpha * drift loss - mean agg_actor Q(s, clip(f(s, eps'))) (agg_actor mean; the critic is not
  differentiated there);
- ONE Adam (3e-4) over actor and critic on critic loss + actor loss, then Polyak (0.005) on the target critic.
  No policy delay, no state normalisation; dataset actions clipped to +-(1 - 1e-5) as the code does.

Per-task settings (drift_temp, alpha, kernel, discount, q_agg, drift_ngen, noise_dim) are data: PRESETS, keyed
by dataset, from the README command list (Table 6 of the paper for temp / alpha / kernel). --preset auto picks
the row from the dataset's name, any flag given overrides it; config.json records the row and the values.

Where the paper and the code differ, this file follows the code:
- the default kernel: the paper's ablation calls Gaussian the default, the code's default is Laplace, and Table 6
  (and the README) set it per task: the presets carry each task's kernel, the default is Laplace;
- the drift loss is jnp.mean over action dims (the code), where the paper writes a sum over action dims: a factor
  of the action dim in alpha's units;
- the target critic moves toward the critic of BEFORE this step's gradient step: the code's target_update reads
  self.network (the pre-update parameters) while writing into the new network. The paper's Alg. 1 reads as a
  Polyak step after the update; the difference is one step of lag at tau = 0.005.

Deviations and notes:
- The random draws follow the code's key schedule (update -> total_loss -> critic_loss / actor_loss ->
  sample_actions / drifting_bc_loss, each jax.random.split in the code's order), so `update_on` given the key the
  code's `update` passes to total_loss draws the same noise. Each seed's key first draws the batch indices
  (key -> next key, k_idx, k_update), where the code samples them with numpy's global RNG.
- Evaluation as the code: the stochastic policy (a fresh eps per step, clipped, NaN -> 0; the code's
  sample_actions ignores its temperature argument), 50 episodes, every 100k updates. The noise comes from
  fold_in(PRNGKey(seed + 100), step), split at each env step (the code: a key seeded from numpy's RNG), so
  evaluations are reproducible and --eval-only of a checkpoint replays the training evaluation's draws. The
  evaluation envs are seeded seed + 100 (the code resets them unseeded); eval.csv has a step-0 row (the code
  evaluates after update 1) and, on ogbench: data, the success rate (column success).
- Budget: 1M updates by default (OGBench's protocol); the D4RL protocol's 500k is set by the grid.
- The code also logs losses on OGBench's validation split; this file does not.
- D4RL data goes through envs/offline.py (timeouts="drop": d4rl.qlearning_dataset, as the code's masks); the
  evaluations run gymnasium's MuJoCo -v4 envs. The D4RL antmaze and Adroit rows of PRESETS are data only (auto
  also maps Minari's D4RL/<env>/<name> ids to them), no suite here evaluates those envs, and the code's antmaze
  reward r - 1 is not applied. Auto also maps Minari's own mujoco/<env>/<name> ids (Minari's regenerated
  locomotion data, not D4RL's files) and this project's envs.collect ids (fujimoto-jax/<env>/<recipe>) to the
  D4RL row of the same name: settings tuned on D4RL's data, applied to other data of that kind. OGBench's noisy datasets have no row
  (the paper reports play datasets only): they run on the code defaults, logged as "preset none".
- The code's one Adam also holds (zero-gradient) moments of the target critic; here the Adam state covers the
  actor and critic only, the same numbers.
- On GPUs JAX runs float32 matmuls at its default precision (TF32 where the GPU has it), as the authors' JAX code
  does; JAX_DEFAULT_MATMUL_PRECISION=highest gives full float32.

Parity: tests/parity/test_driftql.py runs the code's DriftQLAgent.update beside `update_on` (and its
sample_actions beside our policy) on the same parameters, batches and keys.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import envs
from envs import offline, runs

ALGO = "driftql"

# ---------------------------------------------------------------------------------------------
# Per-task settings: the README command list of the code (drift_temp, alpha, kernel as Table 6; discount, q_agg,
# drift_ngen, noise_dim as the commands give them). A setting a command omits is the code default (CODE_DEFAULTS).
# ---------------------------------------------------------------------------------------------
PRESET_FIELDS = ("drift_temp", "alpha", "kernel", "discount", "q_agg", "drift_ngen", "noise_dim")
CODE_DEFAULTS = dict(drift_temp=0.2, alpha=10.0, kernel="laplace", discount=0.99, q_agg="min", drift_ngen=32,
                     noise_dim=0)


def _row(temp, alpha, discount=0.99, q_agg="min", kernel="laplace", ngen=32, noise_dim=0):
    return dict(drift_temp=temp, alpha=float(alpha), kernel=kernel, discount=discount, q_agg=q_agg, drift_ngen=ngen,
                noise_dim=noise_dim)


G = "gaussian"
PRESETS = {
    # OGBench single-task (tuned on the default task, used for all five tasks)
    "cube-single-play": _row(0.02, 60, 0.995, "mean", G),
    "cube-double-play": _row(0.2, 100, 0.99, "mean", G, ngen=4, noise_dim=8),
    "scene-play": _row(0.2, 250, 0.995, "min", G),
    "puzzle-3x3-play": _row(0.5, 50, 0.99, "min", G),
    "puzzle-4x4-play": _row(0.8, 300, 0.99, "mean", G),
    "antmaze-large-navigate": _row(0.5, 10, 0.99, "mean"),
    "antmaze-giant-navigate": _row(0.2, 10, 0.995, "min"),
    "humanoidmaze-medium-navigate": _row(0.5, 65, 0.998, "mean"),
    "humanoidmaze-large-navigate": _row(0.2, 32, 0.995, "mean"),
    "antsoccer-arena-navigate": _row(0.5, 10, 0.995, "mean"),
    # D4RL locomotion
    "halfcheetah-medium": _row(0.5, 3, 0.99, "mean"),
    "halfcheetah-medium-replay": _row(0.5, 10, 0.995, "min"),
    "halfcheetah-medium-expert": _row(0.5, 300, 0.99, "mean"),
    "hopper-medium": _row(0.1, 100, 0.995, "min", G),
    "hopper-medium-replay": _row(0.1, 100, 0.995, "min", G),
    "hopper-medium-expert": _row(0.1, 600, 0.995, "min", G),
    "walker2d-medium": _row(0.1, 1000, 0.995, "min"),
    "walker2d-medium-replay": _row(0.1, 300, 0.995, "min"),
    "walker2d-medium-expert": _row(0.1, 1000, 0.99, "mean"),
    # D4RL antmaze (the code subtracts 1 from these rewards; no antmaze env here)
    "antmaze-umaze": _row(0.5, 15, 0.99, "min"),
    "antmaze-umaze-diverse": _row(0.5, 12, 0.99, "mean"),
    "antmaze-medium-play": _row(0.5, 5, 0.99, "min", G),
    "antmaze-medium-diverse": _row(0.5, 8, 0.995, "min", G),
    "antmaze-large-play": _row(0.5, 3, 0.995, "min", G),
    "antmaze-large-diverse": _row(0.5, 5, 0.995, "min", G),
    # D4RL Adroit (no Adroit env here)
    "pen-human": _row(0.05, 2000, 0.995, "mean"),
    "pen-cloned": _row(0.05, 1500, 0.995, "min", G),
    "pen-expert": _row(0.9, 2000, 0.99, "min"),
    "door-human": _row(0.2, 4500, 0.995, "mean"),
    "door-cloned": _row(0.2, 4500, 0.995, "min"),
    "door-expert": _row(0.2, 4500, 0.995, "mean"),
    "hammer-human": _row(0.05, 2500, 0.995, "mean"),
    "hammer-cloned": _row(0.05, 2500, 0.99, "mean"),
    "hammer-expert": _row(0.05, 2500, 0.995, "min"),
    "relocate-human": _row(0.2, 5000, 0.995, "min"),
    "relocate-cloned": _row(0.2, 5000, 0.995, "min"),
    "relocate-expert": _row(0.2, 5000, 0.995, "min"),
}


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    dataset: str = ""
    """offline data: ogbench:<single-task name or .npz>, minari:<dataset id> or d4rl:<path to .hdf5>"""
    env_id: runs.UnsetStr = ""
    """env of the evaluations: a gymnasium id (Hopper-v4) or ogbench:<...>; default: the dataset's own env"""
    max_transitions: int = 0
    """small data: keep the first N transitions of the dataset (stored order) and drop trajectories of <= 10
    transitions (the Sparse-Reg code's protocol); 0: the whole dataset"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: int = 1_000_000
    """gradient steps per seed (the code's offline_steps: 1M; the paper's D4RL protocol uses 500k)"""
    eval_freq: int = 100_000
    """evaluate every this many gradient steps (and at step 0 and at the end); the code: 100k"""
    eval_episodes: int = 50
    """evaluation episodes per seed of the stochastic policy; the code: 50"""
    preset: str = "auto"
    """per-task settings: auto (the row of the dataset's name, else the code defaults), none (the code defaults),
    or a key of PRESETS (cube-single-play, hopper-medium, ...); flags given override it"""
    # Networks (App. D)
    hidden_dim: int = 512
    """width of every hidden layer of the generator and the critics (512)"""
    num_layers: int = 4
    """hidden layers of the generator and of each critic (4)"""
    critic_layer_norm: bool = True
    """LayerNorm after each hidden GELU of the critics (the code's layer_norm: True)"""
    actor_layer_norm: bool = False
    """LayerNorm after each hidden GELU of the generator (the code's actor_layer_norm: False)"""
    noise_dim: Optional[int] = None
    """dimension of the generator's noise input eps; 0: the action dim; unset: the preset's, else 0"""
    # Q-learning
    lr: float = 3e-4
    """Adam learning rate of the one optimiser over generator and critics"""
    batch_size: int = 256
    """transitions per update"""
    discount: Optional[float] = None
    """discount factor gamma; unset: the preset's, else 0.99"""
    tau: float = 0.005
    """Polyak rate of the target critic"""
    q_agg: Optional[str] = None
    """aggregate of the two target critics in the TD target: min or mean; unset: the preset's, else min"""
    q_agg_actor: str = "mean"
    """aggregate of the two critics in the actor's Q term: mean (paper Eq. 12: (Q1 + Q2) / 2) or min"""
    normalize_q_loss: bool = False
    """divide the actor's Q term by stopgrad(mean |Q| + 1e-6) (the code's normalize_q_loss: False)"""
    # Drift
    alpha: Optional[float] = None
    """weight of the drift loss against the Q term; unset: the preset's, else 10"""
    kernel: Optional[str] = None
    """drift kernel: laplace (exp(-d / temp)) or gaussian (exp(-d^2 / (2 temp^2))); unset: the preset's, else
    laplace (the code's default; the paper's ablation names gaussian)"""
    drift_temp: Optional[float] = None
    """kernel temperature tau; unset: the preset's, else 0.2"""
    drift_ngen: Optional[int] = None
    """candidates N generated per state for the drift field; unset: the preset's, else 32"""
    drift_eta: float = 1.0
    """drift step size eta: the regression target is clip(a + eta V, -1, 1)"""
    dim_scale: bool = True
    """divide distances by sqrt(action dim) before the kernel"""
    drift_normalize: bool = False
    """divide each state's drift field by its RMS per action dim (the code's drift_normalize: False)"""
    drift_batch_size: int = 0
    """states of the batch the drift loss uses (a subsample without replacement); 0: the whole batch"""
    drift_eps: float = 1e-12
    """added inside the square root of the pairwise distances"""
    action_clip_eps: float = 1e-5
    """dataset actions are clipped to +-(1 - action_clip_eps), as the code clips every dataset"""


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("batch_size", "hidden_dim", "num_layers"), nonneg=("noise_dim", "drift_batch_size",
                    "alpha", "drift_eta", "action_clip_eps", "max_transitions"), positive=("lr", "drift_eps"),
                    unit=("discount", "tau"))
    for name in ("kernel", "q_agg", "q_agg_actor"):
        allowed = ("laplace", "gaussian") if name == "kernel" else ("min", "mean")
        if getattr(args, name) not in allowed:
            raise runs.UserError(f"{runs.flag(name)} must be {' or '.join(allowed)}, got {getattr(args, name)!r}")
    if not args.drift_temp > 0:
        raise runs.UserError(f"--drift-temp must be > 0, got {args.drift_temp}")
    if args.drift_ngen < 2:
        raise runs.UserError(f"--drift-ngen must be >= 2 (each candidate is repelled by the others), "
                             f"got {args.drift_ngen}")
    if args.drift_batch_size > args.batch_size:
        raise runs.UserError(f"--drift-batch-size ({args.drift_batch_size}) must be <= --batch-size "
                             f"({args.batch_size})")
    if args.action_clip_eps >= 1:
        raise runs.UserError(f"--action-clip-eps must be < 1, got {args.action_clip_eps}")


# ---------------------------------------------------------------------------------------------
# Presets: which row, and the flags it fills
# ---------------------------------------------------------------------------------------------
def preset_key(dataset: str, env_id: str = "") -> Optional[str]:
    """The PRESETS row of a dataset's name, else None. ogbench: the env id's <env>-<type>
    (cube-single-play-singletask-task2-v0 -> cube-single-play); d4rl: the file's name
    (hopper_medium_replay-v2.hdf5 -> hopper-medium-replay); minari: <env>-<name> of <namespace>/<env>/<name>-vN
    (mujoco/hopper/medium-v0 -> hopper-medium, D4RL/pen/human-v2 -> pen-human)."""
    kind, _, rest = dataset.partition(":")
    if kind == "ogbench" or env_id.startswith("ogbench:"):
        from envs import ogbench
        try:
            name = ogbench.parse_id(env_id if env_id.startswith("ogbench:") else ogbench.PREFIX + rest)
        except runs.UserError:
            return None
        key = f"{name.env}-{name.dataset_type}"
    elif kind == "d4rl":
        key = re.sub(r"\.(hdf5|h5)$", "", os.path.basename(rest).lower()).replace("_", "-")
    elif kind == "minari":
        parts = rest.lower().split("/")
        key = "-".join(parts[-2:]) if len(parts) >= 2 else ""
    else:
        return None
    key = re.sub(r"-v\d+$", "", key)
    return key if key in PRESETS else None


def resolve_presets(args: Args) -> tuple[Args, dict]:
    """Fill the preset flags left unset (None) from the preset's row, then from the code's defaults; args.preset
    becomes the row's key or "none". Returns (args, what config.json records about it)."""
    if args.preset == "auto":
        key = preset_key(args.dataset, args.env_id)
    elif args.preset == "none" or args.preset in PRESETS:
        key = None if args.preset == "none" else args.preset
    else:
        raise runs.UserError(f"--preset {args.preset!r}: choose auto, none or one of {', '.join(PRESETS)}")
    row = {**CODE_DEFAULTS, **(PRESETS[key] if key else {})}
    given = [k for k in PRESET_FIELDS if getattr(args, k) is not None]
    args = Args(**{**asdict(args), "preset": key or "none",
                   **{k: v for k, v in row.items() if getattr(args, k) is None}})
    return args, {"preset": key or "none", "from_flags": given, "values": {k: getattr(args, k) for k in PRESET_FIELDS}}


# ---------------------------------------------------------------------------------------------
# Networks (utils/networks.py of the code: flax Dense with variance_scaling(1, fan_avg, uniform), zero biases)
# ---------------------------------------------------------------------------------------------
def default_init():
    return nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


class MLP(nn.Module):
    """Dense -> GELU (flax's default, the tanh approximation) [-> LayerNorm] per hidden layer, linear output."""

    hidden_dim: int
    num_layers: int
    out_dim: int
    layer_norm: bool

    @nn.compact
    def __call__(self, x):
        for _ in range(self.num_layers):
            x = nn.gelu(nn.Dense(self.hidden_dim, kernel_init=default_init())(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)  # after the activation, as the code (epsilon 1e-6)
        return nn.Dense(self.out_dim, kernel_init=default_init())(x)


class Generator(nn.Module):
    """f(s, eps): the raw (unclipped) action; the policy clips it to [-1, 1]."""

    action_dim: int
    hidden_dim: int = 512
    num_layers: int = 4
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs, noise):
        return MLP(self.hidden_dim, self.num_layers, self.action_dim, self.layer_norm)(
            jnp.concatenate([obs, noise], -1))


class Critic(nn.Module):
    """An ensemble of 2 Q networks (nn.vmap: parameters stacked on axis 0); returns Q [2, ...]."""

    hidden_dim: int = 512
    num_layers: int = 4
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs, action):
        ensemble = nn.vmap(MLP, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0,
                           axis_size=2)
        x = jnp.concatenate([obs, action], -1)
        return ensemble(self.hidden_dim, self.num_layers, 1, self.layer_norm)(x)[..., 0]


# ---------------------------------------------------------------------------------------------
# Learner state (one seed; vmapped to [num_seeds, ...]) and the dataset (one copy for all seeds)
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    actor: dict  # the generator f
    critic: dict  # both Q networks, stacked
    critic_target: dict
    opt: optax.OptState  # ONE Adam over {"actor": actor, "critic": critic}
    key: jax.Array


class Buffer(NamedTuple):
    obs: jax.Array  # [size, obs_dim]
    action: jax.Array  # [size, action_dim], in +-(1 - action_clip_eps)
    reward: jax.Array  # [size]
    next_obs: jax.Array  # [size, obs_dim]
    terminated: jax.Array  # [size], 1 = do not bootstrap (the code's mask = 1 - terminated)


# ---------------------------------------------------------------------------------------------
# The drift field (paper §4; the code's _pairwise_l2, _compute_drift, drifting_bc_loss)
# ---------------------------------------------------------------------------------------------
def pairwise_distance(a, b, eps=1e-12):
    """||a_i - b_k|| for a [N, A], b [M, A] -> [N, M], as sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0) + eps): the eps inside
    the root keeps the gradient finite at distance 0."""
    sq = jnp.sum(a * a, -1)[:, None] + jnp.sum(b * b, -1)[None, :] - 2.0 * (a @ b.T)
    return jnp.sqrt(jnp.maximum(sq, 0.0) + eps)


def kernel_logits(dist, temp, kernel):
    """log k up to a constant: Laplace -d / temp, Gaussian -d^2 / (2 temp^2)."""
    if kernel == "gaussian":
        return -(dist ** 2) / (2.0 * temp * temp)
    return -dist / temp


def drift_field(gen, pos, temp, kernel="laplace", dim_scale=True, eps=1e-12):
    """The drift of one state's candidates gen [N, A] toward its positives pos [P, A] (here P = 1: the dataset
    action). Returns V = V+ - V-, V+ (attraction), V- (repulsion), each [N, A].

    V+_i = sum_k softmax_k(logit(d(gen_i, pos_k))) (pos_k - gen_i); V-_i = sum_{k != i} softmax_k(...) (gen_k - gen_i)
    with d(gen_i, gen_i) set to 1e6 (a candidate does not repel itself); two separate softmaxes."""
    n, action_dim = gen.shape
    scale = jnp.sqrt(jnp.asarray(action_dim, gen.dtype)) if dim_scale else 1.0
    d_pos = pairwise_distance(gen, pos, eps) / scale  # [N, P]
    d_neg = pairwise_distance(gen, gen, eps)
    d_neg = d_neg.at[jnp.arange(n), jnp.arange(n)].set(1e6) / scale  # [N, N], the diagonal masked
    w_pos = jax.nn.softmax(kernel_logits(d_pos, temp, kernel), -1)
    w_neg = jax.nn.softmax(kernel_logits(d_neg, temp, kernel), -1)
    v_pos = jnp.sum(w_pos[:, :, None] * (pos[None, :, :] - gen[:, None, :]), 1)  # [N, A]
    v_neg = jnp.sum(w_neg[:, :, None] * (gen[None, :, :] - gen[:, None, :]), 1)  # [N, A]
    return v_pos - v_neg, v_pos, v_neg


def drift_loss(gen, pos, temp, kernel="laplace", dim_scale=True, eta=1.0, normalize=False, eps=1e-12):
    """gen [B, N, A] candidates (clipped), pos [B, P, A]: mean over B x N x A of (gen - stopgrad(clip(gen + eta V,
    -1, 1)))^2 (the code's jnp.mean; the paper sums over A). Returns (loss, mean |V| over B x N)."""

    def one_state(g, p):
        v = drift_field(g, p, temp, kernel, dim_scale, eps)[0]
        if normalize:  # the RMS of |V| per action dim, detached
            v = v / jax.lax.stop_gradient(jnp.sqrt(jnp.mean(jnp.sum(v * v, -1)) / g.shape[-1] + eps))
        return v

    v = jax.vmap(one_state)(gen, pos)  # [B, N, A]
    target = jax.lax.stop_gradient(jnp.clip(gen + eta * v, -1.0, 1.0))
    return jnp.mean((gen - target) ** 2), jnp.mean(jnp.sqrt(jnp.sum(v * v, -1) + eps))


# ---------------------------------------------------------------------------------------------
# The critic target and the actor's Q term
# ---------------------------------------------------------------------------------------------
def aggregate(qs, how):
    """qs [2, B] -> [B]: min or mean over the ensemble."""
    return qs.min(0) if how == "min" else qs.mean(0)


def td_target(reward, terminated, next_qs, discount, q_agg):
    """r + gamma * (1 - terminated) * agg(Q'(s', a')), next_qs [2, B]."""
    return reward + discount * (1.0 - terminated) * aggregate(next_qs, q_agg)


def q_loss(qs, q_agg_actor, normalize):
    """-mean agg(Q(s, pi(s))) over the batch, qs [2, B]; with normalize divided by stopgrad(mean |agg Q| + 1e-6)."""
    q = aggregate(qs, q_agg_actor)
    loss = -q.mean()
    return (loss / jax.lax.stop_gradient(jnp.abs(q).mean() + 1e-6) if normalize else loss), q.mean()


class Agent(NamedTuple):
    init: callable  # keys [N] -> Learner, stacked
    policy: callable  # (actor params [N], keys [N], obs [N, obs_dim]) -> (keys, actions [N, action_dim])
    update: callable  # (learner, data) -> (learner, metrics): one sampled update per seed
    train_chunk: callable  # (learner, data, updates) -> (learner, mean metrics)
    update_on: callable  # ONE seed: (learner, batch Buffer [B, ...], key total_loss gets) -> (learner, metrics)
    sample: callable  # ONE seed: (actor params, key, obs [..., obs_dim]) -> actions, the code's sample_actions
    loss: callable  # ONE seed: (params {"actor", "critic"}, learner, batch, key) -> (total loss, metrics); not jitted


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    noise_dim = args.noise_dim or action_dim  # 0: the action dim
    n_gen = args.drift_ngen
    actor = Generator(action_dim, args.hidden_dim, args.num_layers, args.actor_layer_norm)
    critic = Critic(args.hidden_dim, args.num_layers, args.critic_layer_norm)
    tx = optax.adam(args.lr)

    def init(key):
        key, k_actor, k_critic = jax.random.split(key, 3)
        actor_params = actor.init(k_actor, jnp.zeros((1, obs_dim)), jnp.zeros((1, noise_dim)))
        critic_params = critic.init(k_critic, jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)))
        opt = tx.init({"actor": actor_params, "critic": critic_params})
        return Learner(actor_params, critic_params, critic_params, opt, key)  # target critic = critic at init

    def sample(actor_params, key, obs):
        """The code's sample_actions: eps from the first half of split(key), action clipped, NaN -> 0."""
        k_noise, _ = jax.random.split(key)
        noise = jax.random.normal(k_noise, (*obs.shape[:-1], noise_dim))
        action = jnp.clip(actor.apply(actor_params, obs, noise), -1.0, 1.0)
        return jnp.where(jnp.isnan(action), 0.0, action)

    def loss(params, learner, b, key):
        """critic loss + actor loss of ``params`` {"actor", "critic"} on batch b, drawing with ``key`` (the key the
        code's update passes to total_loss) in the code's split order. Returns (total, metrics)."""
        _, k_actor, k_critic = jax.random.split(key, 3)  # total_loss
        _, k_next = jax.random.split(k_critic)  # critic_loss
        _, k_q, k_drift = jax.random.split(k_actor, 3)  # actor_loss
        _, k_gen, k_sub = jax.random.split(k_drift, 3)  # drifting_bc_loss
        batch_size = b.reward.shape[0]

        # Critic: a' from the current generator (no target actor) and the target critic, neither differentiated
        next_qs = critic.apply(learner.critic_target, b.next_obs, sample(learner.actor, k_next, b.next_obs))
        target = jax.lax.stop_gradient(td_target(b.reward, b.terminated, next_qs, args.discount, args.q_agg))
        q = critic.apply(params["critic"], b.obs, b.action)  # [2, B]
        critic_loss = jnp.mean((q - target) ** 2)  # over ensemble and batch

        # Drift: N candidates for each state of the drift batch (all states unless --drift-batch-size subsamples)
        drift_bs = args.drift_batch_size or batch_size
        if drift_bs < batch_size:
            idx = jax.random.choice(k_sub, batch_size, (drift_bs,), replace=False)
            drift_obs, pos = b.obs[idx], b.action[idx]
        else:
            drift_obs, pos = b.obs, b.action
        pos = jnp.clip(pos[:, None, :], -1.0, 1.0)  # [drift_bs, 1, A]: one positive, the dataset action
        gen_noise = jax.random.normal(k_gen, (drift_bs * n_gen, noise_dim))
        gen_obs = jnp.repeat(drift_obs, n_gen, axis=0)  # [drift_bs * N, obs_dim]: state i at rows iN .. iN + N - 1
        gen = jnp.clip(actor.apply(params["actor"], gen_obs, gen_noise).reshape(drift_bs, n_gen, -1), -1.0, 1.0)
        drift, drift_norm = drift_loss(gen, pos, args.drift_temp, args.kernel, args.dim_scale, args.drift_eta,
                                       args.drift_normalize, args.drift_eps)

        # Actor: alpha * drift loss - mean Q(s, pi(s)), one fresh eps per state; the critic's stored params (no
        # gradient to the critic from this term)
        pi = jnp.clip(actor.apply(params["actor"], b.obs, jax.random.normal(k_q, (batch_size, noise_dim))), -1.0, 1.0)
        q_term, q_pi = q_loss(critic.apply(learner.critic, b.obs, pi), args.q_agg_actor, args.normalize_q_loss)
        actor_loss = args.alpha * drift + q_term
        return critic_loss + actor_loss, {"critic_loss": critic_loss, "actor_loss": actor_loss, "drift_loss": drift,
                                          "drift_norm": drift_norm, "q_pi": q_pi, "q_data": q.mean()}

    def update_on(learner, b, key):
        """One update on batch b: ONE Adam step over generator and critic on the summed losses, then Polyak."""
        params = {"actor": learner.actor, "critic": learner.critic}
        grads, metrics = jax.grad(loss, has_aux=True)(params, learner, b, key)
        updates, opt = tx.update(grads, learner.opt, params)
        params = optax.apply_updates(params, updates)
        # Target: Polyak toward the critic of before this step (the code's target_update reads the old network)
        critic_target = optax.incremental_update(learner.critic, learner.critic_target, args.tau)
        return learner._replace(actor=params["actor"], critic=params["critic"], critic_target=critic_target,
                                opt=opt), metrics

    def update(learner, data):
        key, k_idx, k_update = jax.random.split(learner.key, 3)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, data.reward.shape[0])
        return update_on(learner._replace(key=key), jax.tree.map(lambda x: x[idx], data), k_update)

    def act(actor_params, key, obs):
        """One env step of one seed: the code's supply_rng (key -> next key, k) then sample_actions(k)."""
        key, k = jax.random.split(key)
        return key, sample(actor_params, k, obs)

    def train_chunk(learner, data, updates):
        """``updates`` updates of one seed in one lax.scan; the metrics are their means."""
        learner, metrics = jax.lax.scan(lambda learner, _: update(learner, data), learner, None, length=updates)
        return learner, jax.tree.map(lambda x: x.mean(0), metrics)

    # The dataset is one device array for all seeds (in_axes None); each seed draws its own indices.
    return Agent(
        init=jax.jit(jax.vmap(init)),
        policy=jax.jit(jax.vmap(act)),
        update=jax.jit(jax.vmap(update, in_axes=(0, None))),
        train_chunk=jax.jit(jax.vmap(train_chunk, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0),
        update_on=jax.jit(update_on),
        sample=jax.jit(sample),
        loss=loss,
    )


def eval_keys(seeds, step: int) -> jax.Array:
    """[N] keys of the evaluation at ``step``: fold_in(PRNGKey(seed + 100), step), apart from the learner's."""
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s + 100), step) for s in seeds])


def stochastic_policy(agent: Agent, actor_params, keys: jax.Array):
    """The Evaluator's policy obs [N, obs_dim] -> actions [N, action_dim] in [-1, 1], each call drawing with the
    next split of ``keys`` [N]."""

    def policy(obs):
        nonlocal keys
        keys, action = agent.policy(actor_params, keys, obs)
        return action

    return policy


# ---------------------------------------------------------------------------------------------
# Training loop (offline: the dataset instead of env steps)
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents on the dataset; returns the final learner and run facts."""
    offline.resolve_env(args)
    run = runs.Run(ALGO, args, Args)  # with --resume, the checkpoint's args (their presets already filled)
    run.args, preset = resolve_presets(run.args)
    args, seeds = run.args, run.seeds
    check_args(args)
    data = offline.load(args.dataset, args.env_id, timeouts="drop", max_transitions=args.max_transitions)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, workers=args.env_workers)
    run.eval_header = offline.eval_header(data, run.eval_header)
    agent = run.devices.agent(make_agent(args, evaluator.obs_dim, evaluator.action_dim))  # seeds over devices
    bound = 1.0 - args.action_clip_eps  # the code clips every dataset's actions
    device_data = run.devices.replicate(Buffer(  # one copy per device
        jnp.asarray(data.obs), jnp.asarray(np.clip(data.action, -bound, bound)), jnp.asarray(data.reward),
        jnp.asarray(data.next_obs), jnp.asarray(data.terminated)))
    learner = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    t0 = 0
    if run.checkpoint:
        offline.check_resume(data, run.checkpoint.host)
        learner, t0 = run.checkpoint.load({"learner": learner}, args=args)[0]["learner"], run.checkpoint.step
    info = offline.describe(data, sum(x.nbytes for x in device_data))
    run.start({"dataset": info, "preset": preset})
    run.print(f"dataset {args.dataset}: {len(data)} transitions, {info['device_mb']} MB on "
              f"{jax.devices()[0].platform}, shared by {args.num_seeds} seed(s)")
    given = "the run's own" if run.checkpoint else ", ".join(preset["from_flags"]) or "none"
    run.print(f"preset {preset['preset']}: " + ", ".join(f"{k}={v}" for k, v in preset["values"].items())
              + f" (flags given: {given})")

    metrics, last_eval, timing = {}, None, {"compile_s": None, "updates": 0, "seconds": 0.0}

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(stochastic_policy(agent, learner.actor, eval_keys(seeds, step)))
        run.evaluation(offline.eval_rows(data, seeds, step, last_eval, successes=evaluator.successes), host_metrics)

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
        "preset": preset,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved policy
# ---------------------------------------------------------------------------------------------
def saved_policy(saved: Args, spaces, ckpt: runs.Checkpoint, seed_index=None, copies=1):
    """A checkpoint's stochastic policy, obs [N, obs_dim] -> action [N, action_dim] in [-1, 1] (row i is seed i;
    with ``seed_index``, ``copies`` rows of that seed, each with its own draws). Its keys are those of the training
    evaluation at the checkpoint's step, so a seed's first row replays that evaluation."""
    saved, _ = resolve_presets(saved)
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
    return stochastic_policy(agent, learner.actor, keys)


def evaluate_checkpoint(args: Args) -> np.ndarray:
    check_args(resolve_presets(args)[0])
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt))


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
