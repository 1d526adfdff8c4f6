"""DR.Q: MR.Q with an InfoNCE term and faded prioritised replay, in JAX, many seeds per process.

Paper: J. Lyu, Z. Lin, S. Fujimoto, K. Yang, Y. Chen, S. Yang, Z. Lu, D. Ye. "Debiased Model-based
Representations for Sample-efficient Continuous Control". ICML 2026. arXiv:2605.11711.
Follows: github.com/dmksjfl/DR.Q @ cc307a5a656d69382d7a069e6d4d53753bfe1017 (MIT, but built on MR.Q's
CC BY-NC code), read but not copied: written from its facts (docs/facts.md#drq) as a sibling of
algos/mrq.py, so `diff algos/mrq.py algos/drq.py` shows DR.Q's changes and nothing else.

Usage:  python algos/drq.py --env-id dmc:cheetah-run --num-seeds 5
        python algos/drq.py --env-id HalfCheetah-v4           (dmc-pixels:walker-walk for pixels)
        python algos/drq.py --env-id atari:Pong               (the authors' code keeps MR.Q's discrete path)

DR.Q's changes to MR.Q (docs/facts.md#drq-hyperparameters); everything else, the schedule included, is
algos/mrq.py's:
- encoder width 750 and learning rate 3e-4; AdamW weight decay 0.01 on encoder, policy and value;
- no value gradient clip, no policy pre-activation penalty, no termination loss (the model head
  still predicts it, untrained, as the authors' does);
- the encoder loss adds 0.1 x InfoNCE (temperature 0.1) per unrolled step: the L2-normalised
  predicted next zs against the batch of target-encoder zs of s_{i+1}, the diagonal as labels;
- value targets in raw reward units, R + mask * gamma^3 * Q' (the reward scale is still
  refreshed at each target copy, and unused, as the authors');
- the multi-step return weights reward i by the not-done flags before it (MR.Q's textbook form,
  which is DR.Q's own);
- faded prioritised replay: starts are drawn with probability priority x valid x
  clip(0.9999^age, 0.1, 1), where age counts the env steps stored since the slot's transition;
- Atari's evaluation epsilon (0.001) stays out of the training env (DR.Q's fix of MR.Q's quirk).

Multi-seed: the seeds step in lockstep (DR.Q trains on every env step whatever the episode
boundaries), so one jitted, vmapped call per step serves all of them; every seed owns its keys,
replay, priorities, forget weights and reward scale.

Memory per seed: MR.Q's (see algos/mrq.py's header; `--buffer-size` caps the slots) plus 4 bytes per
slot for the forget weight's write count.

Deviations and notes:
- MinAtar (`minatar:`) is refused in one line: the pixel encoder is built for 84x84 frames and the papers never ran it.
- InfoNCE masking: per sample, each step's loss weighted by the not-done flags before it, the form
  docs/facts.md#drq-training-step gives (the paper's text was not available). The authors' code multiplies a [B] loss by a [B, 1] mask, which broadcasts to
  B x B: after the first step the term is mean(loss) x mean(mask). `--original-infonce-mask`
  reproduces that (only envs that terminate are affected).
- Forget weights: the authors multiply every slot's weight by 0.9999 at each stored step (a pass
  over the whole buffer per step). Here each slot keeps the step count at which it was written and
  the weight is 0.9999^(count now - count then), computed where the sampler reads the buffer anyway:
  the same weights up to float rounding (tests/test_drq.py).
- HumanoidBench (`HBench-<task>`) is not available: the humanoid_bench package does not install from
  PyPI (checked 2026-12-01), and `envs` rejects the ids with a message saying so.
- From algos/mrq.py, unchanged (its header has the full list): the true final observation as the next-state target after a
  termination (the authors' buffer reads slot 0 there); priorities set when a start becomes
  sampleable; the reward scale over stored transitions only; random shift as the authors'; warm-up
  actions from each seed's JAX key; the evaluation env re-seeded seed + 100 at every evaluation;
  discrete evaluation through a Gumbel-softmax sample, as the authors'.
- Parameters on HalfCheetah-v4: 4,889,432 (encoder 2,784,080, policy 528,390, value 1,576,962), the
  count of the authors' networks at enc_hdim 750 (tests/test_drq.py).
- Speed: MR.Q's (issue 17, in algos/mrq.py's header): the two-level prioritised sampler, buffer writes as
  dropped scatters, closed-form gradients of LayerNorm and ELU. `make bench` times DR.Q beside MR.Q
  (results/bench/drq_cpu.md).
- On GPUs JAX may run float32 matmuls in TF32; set JAX_DEFAULT_MATMUL_PRECISION=highest for full
  float32 (no effect on CPU).
"""

from __future__ import annotations

import math
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

ALGO = "drq"

# The paper's benchmark protocol per suite (docs/facts.md#drq-protocol): steps are agent steps (DMC repeats
# each action twice, Atari four times), evaluation every eval_freq of them, 10 episodes.
PRESETS = {
    "gym": {"total_timesteps": 1_000_000, "eval_freq": 5_000},
    "dmc": {"total_timesteps": 500_000, "eval_freq": 5_000},
    "atari": {"total_timesteps": 2_500_000, "eval_freq": 100_000},
}


def suite_of(env_id: str) -> str:
    return "dmc" if env_id.startswith(("dmc:", "dmc-pixels:")) else "atari" if env_id.startswith("atari:") else "gym"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    env_id: str = "Hopper-v4"
    """gymnasium id, dmc:<domain>-<task>, dmc-pixels:<domain>-<task> or atari:<Game> (one set of hyperparameters)"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: Optional[int] = None
    """agent steps per seed; unset: the suite's preset, Gym 1M, DMC 500k, Atari 2.5M"""
    learning_starts: int = 10_000
    """uniform-random steps; training starts once the buffer holds more transitions (buffer_size_before_training)"""
    eval_freq: Optional[int] = None
    """evaluate every this many agent steps (also at 0 and the end); unset: the suite's preset, Gym/DMC 5k, Atari 100k"""
    eval_episodes: int = 10
    """evaluation episodes per seed (no exploration noise; Atari keeps epsilon = 0.001)"""
    max_episode_steps: Optional[int] = None
    """cap on agent steps per episode, ending as a truncation; unset: the suite's, gymnasium's limit, DMC 500, Atari 27k"""
    # DR.Q (the authors' code defaults, one set for every suite; docs/facts.md#drq-hyperparameters)
    buffer_size: int = 1_000_000
    """replay slots per seed (an episode takes its length + 1); shrink it to fit memory (see the header)"""
    batch_size: int = 256
    """sub-trajectories per update"""
    discount: float = 0.99
    """discount factor gamma"""
    target_update_freq: int = 250
    """training steps between hard target copies; each copy starts a burst of this many encoder updates"""
    exploration_noise: float = 0.2
    """std of the Gaussian exploration noise (halved for discrete actions)"""
    target_policy_noise: float = 0.2
    """std of the target policy noise (halved for discrete actions)"""
    noise_clip: float = 0.3
    """target noise clip (halved for discrete actions)"""
    dyn_weight: float = 1.0
    """weight of the latent dynamics loss"""
    reward_weight: float = 0.1
    """weight of the two-hot reward loss"""
    infonce_weight: float = 0.1
    """weight of the InfoNCE loss (predicted next zs against the batch of target zs)"""
    infonce_temperature: float = 0.1
    """temperature of the InfoNCE logits (cosine similarities / temperature)"""
    alpha: float = 0.4
    """LAP priority exponent"""
    min_priority: float = 1.0
    """LAP priorities are clamped below at this |TD error|"""
    forget_decay: float = 0.9999
    """faded replay: a slot's sampling weight is forget_decay^(env steps stored since it was written)"""
    forget_floor: float = 0.1
    """faded replay: the weight never falls below this (ln 0.1 / ln 0.9999 = 23,024.7: from 23,025 steps on)"""
    enc_horizon: int = 5
    """steps of the unrolled model loss"""
    q_horizon: int = 3
    """steps of the multi-step return (bootstrap gamma^q_horizon)"""
    zs_dim: int = 512
    """state embedding size"""
    za_dim: int = 256
    """action embedding size"""
    zsa_dim: int = 512
    """state-action embedding size"""
    enc_hdim: int = 750
    """encoder hidden width"""
    enc_lr: float = 3e-4
    """AdamW learning rate of the encoder"""
    enc_wd: float = 0.01
    """AdamW weight decay of the encoder"""
    pixel_augs: bool = True
    """random-shift augmentation (pad 4) of pixel observations in every update"""
    value_hdim: int = 512
    """value hidden width"""
    value_lr: float = 3e-4
    """AdamW learning rate of the value heads"""
    value_wd: float = 0.01
    """AdamW weight decay of the value heads"""
    policy_hdim: int = 512
    """policy hidden width"""
    policy_lr: float = 3e-4
    """AdamW learning rate of the policy"""
    policy_wd: float = 0.01
    """AdamW weight decay of the policy"""
    gumbel_tau: float = 10.0
    """Gumbel-softmax temperature of the discrete-action policy"""
    num_bins: int = 65
    """two-hot reward bins, symexp-spaced over [-10, 10] in symlog space"""
    original_infonce_mask: bool = False
    """deviation flag: the authors' InfoNCE masking, mean(loss) x mean(mask) after the first step (see header)"""


def resolve_presets(args: Args) -> Args:
    """Fill total_timesteps / eval_freq left unset from the suite's preset."""
    preset = PRESETS[suite_of(args.env_id)]
    return Args(**{**asdict(args), **{k: v for k, v in preset.items() if getattr(args, k) is None}})


def check_args(args: Args) -> None:
    if args.env_id.startswith("minatar:"):  # before any env or folder: its conv stack shrinks 10x10 to nothing
        raise runs.UserError(f"drq.py does not run MinAtar ({args.env_id}): DR.Q's pixel encoder is built for 84x84 "
                             "frames and the papers never ran MinAtar; use algos/ddqn.py (online) or "
                             "algos/discrete_bcq.py (offline)")
    runs.check_args(args, counts=("max_episode_steps", "buffer_size", "batch_size", "target_update_freq", "enc_horizon",
                                  "q_horizon", "zs_dim", "za_dim", "zsa_dim", "enc_hdim", "value_hdim", "policy_hdim",
                                  "num_bins"),
                    nonneg=("learning_starts", "exploration_noise", "target_policy_noise", "noise_clip", "dyn_weight",
                            "reward_weight", "infonce_weight", "alpha", "min_priority", "enc_wd", "value_wd",
                            "policy_wd"),
                    positive=("enc_lr", "value_lr", "policy_lr", "gumbel_tau", "infonce_temperature"),
                    unit=("discount", "forget_decay", "forget_floor"))
    if args.q_horizon > args.enc_horizon:
        raise runs.UserError(f"--q-horizon ({args.q_horizon}) must be <= --enc-horizon ({args.enc_horizon})")


# ---------------------------------------------------------------------------------------------
# Symlog and the two-hot reward head
# ---------------------------------------------------------------------------------------------
def symlog(x):
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x):
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def reward_bins(num_bins: int = 65, lower: float = -10.0, upper: float = 10.0) -> jnp.ndarray:
    """Bin centres in reward units: evenly spaced in symlog space, mapped back through symexp."""
    return symexp(jnp.linspace(lower, upper, num_bins))


def two_hot(x, bins):
    """[B] rewards -> [B, K] weights on the two bins around each reward, linear in reward units
    between them (all mass on the end bin outside the range)."""
    x = jnp.clip(x, bins[0], bins[-1])
    upper = jnp.clip(jnp.searchsorted(bins, x, side="right"), 1, len(bins) - 1)  # first bin > x
    lower = upper - 1
    w_upper = (x - bins[lower]) / (bins[upper] - bins[lower])
    k = jnp.arange(len(bins))
    return (k == lower[:, None]) * (1 - w_upper)[:, None] + (k == upper[:, None]) * w_upper[:, None]


def two_hot_decode(logits, bins):
    """Expected reward under softmax(logits): [B, K] -> [B]."""
    return jax.nn.softmax(logits, axis=-1) @ bins


def two_hot_cross_entropy(logits, x, bins):
    """[B] cross-entropy between the two-hot encoding of rewards x and softmax(logits)."""
    return -(two_hot(x, bins) * jax.nn.log_softmax(logits, axis=-1)).sum(-1)


# ---------------------------------------------------------------------------------------------
# Multi-step returns
# ---------------------------------------------------------------------------------------------
def multi_step_return(rewards, not_done, discount: float):
    """n-step return over [B, n] rewards and not-done flags, and the bootstrap mask [B]:
    R = sum_i gamma^i r_i prod_{j<i} not_done_j (the terminal transition's reward counts, nothing
    after it does); the bootstrap mask is prod_i not_done_i."""
    n = rewards.shape[-1]
    alive_before = jnp.cumprod(jnp.concatenate([jnp.ones_like(not_done[..., :1]), not_done[..., :-1]], -1), -1)
    gammas = discount ** jnp.arange(n, dtype=rewards.dtype)
    return (rewards * alive_before * gammas).sum(-1), jnp.prod(not_done, -1)


# ---------------------------------------------------------------------------------------------
# Network blocks: LayerNorm without parameters, Xavier-uniform(gain sqrt 2) weights, zero biases
# ---------------------------------------------------------------------------------------------
# Why custom gradients: XLA:CPU's autodiff of LayerNorm and ELU takes more passes than these closed
# forms of the same derivatives (equal up to float rounding; update times in results/bench/mrq_cpu.md).
def _layer_norm(x, eps: float = 1e-5):
    mean = x.mean(-1, keepdims=True)
    std = jnp.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + eps)
    return (x - mean) / std, std


@jax.custom_vjp
def layer_norm(x):
    """torch.nn.functional.layer_norm with no weight/bias (eps 1e-5): nothing to learn."""
    return _layer_norm(x)[0]


def _layer_norm_fwd(x):
    y, std = _layer_norm(x)
    return y, (y, std)


def _layer_norm_bwd(res, g):  # d/dx of (x - mean) / std: (g - mean(g) - y mean(g y)) / std
    y, std = res
    return ((g - g.mean(-1, keepdims=True) - y * (g * y).mean(-1, keepdims=True)) / std,)


layer_norm.defvjp(_layer_norm_fwd, _layer_norm_bwd)


@jax.custom_jvp
def elu(x):
    """nn.elu (alpha 1), its derivative read off the output: 1 above 0, elu(x) + 1 = exp(x) below."""
    return jnp.where(x > 0, x, jnp.expm1(jnp.minimum(x, 0.0)))


@elu.defjvp
def _elu_jvp(primals, tangents):
    y = elu(primals[0])
    return y, tangents[0] * jnp.where(primals[0] > 0, 1.0, y + 1.0)


XAVIER_RELU = nn.initializers.variance_scaling(2.0, "fan_avg", "uniform")  # xavier_uniform with gain sqrt(2)


def dense(features: int, name: str | None = None) -> nn.Dense:
    return nn.Dense(features, kernel_init=XAVIER_RELU, bias_init=nn.initializers.zeros, name=name)


class MLP(nn.Module):
    """Linear -> LN -> act -> Linear -> LN -> act -> Linear (no output activation)."""

    hidden: int
    out: int
    activation: str = "elu"

    @nn.compact
    def __call__(self, x):
        act = {"elu": elu, "relu": nn.relu}[self.activation]
        x = act(layer_norm(dense(self.hidden)(x)))
        x = act(layer_norm(dense(self.hidden)(x)))
        return dense(self.out)(x)


def count_params(params) -> int:
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))



# ---------------------------------------------------------------------------------------------
# Encoder, policy, value (docs/facts.md#mrq-architecture)
# ---------------------------------------------------------------------------------------------
class Encoder(nn.Module):
    """f: s -> zs (state MLP or pixel CNN, then LN + ELU); g: (zs, a) -> zsa; model head on zsa."""

    pixels: bool
    zs_dim: int = 512
    za_dim: int = 256
    zsa_dim: int = 512
    hidden: int = 512
    num_bins: int = 65

    def setup(self):
        if self.pixels:
            self.convs = [nn.Conv(32, (3, 3), strides=s, padding="VALID", kernel_init=XAVIER_RELU,
                                  bias_init=nn.initializers.zeros) for s in (2, 2, 2, 1)]
            self.state_out = dense(self.zs_dim)
        else:
            self.state_mlp = MLP(self.hidden, self.zs_dim, "elu")
        self.action_in = dense(self.za_dim)
        self.sa_mlp = MLP(self.hidden, self.zsa_dim, "elu")
        self.model = dense(1 + self.zs_dim + self.num_bins)

    def f(self, obs):
        if self.pixels:  # [B, C, 84, 84] uint8 -> 84 -> 41 -> 20 -> 9 -> 7
            x = obs.astype(jnp.float32).transpose(0, 2, 3, 1) / 255.0 - 0.5
            for conv in self.convs:
                x = elu(conv(x))
            return elu(layer_norm(self.state_out(x.reshape(x.shape[0], -1))))
        return elu(layer_norm(self.state_mlp(obs)))

    def g(self, zs, action):
        za = elu(self.action_in(action))
        return self.sa_mlp(jnp.concatenate([zs, za], -1))

    def predict(self, zsa):
        """zsa -> (done logit [B], next zs [B, zs_dim], reward logits [B, num_bins])."""
        out = self.model(zsa)
        return out[:, 0], out[:, 1:1 + self.zs_dim], out[:, 1 + self.zs_dim:]

    def __call__(self, obs, action):  # initialises every parameter
        return self.predict(self.g(self.f(obs), action))


class Policy(nn.Module):
    """zs -> (action, pre-activation). Continuous: tanh. Discrete: Gumbel-softmax (tau) samples."""

    action_dim: int
    discrete: bool = False
    hidden: int = 512
    gumbel_tau: float = 10.0

    @nn.compact
    def __call__(self, zs, key=None):
        pre = MLP(self.hidden, self.action_dim, "relu")(zs)
        if not self.discrete:
            return jnp.tanh(pre), pre
        gumbel = jax.random.gumbel(key, pre.shape, pre.dtype)
        return jax.nn.softmax((pre + gumbel) / self.gumbel_tau, axis=-1), pre


class Value(nn.Module):
    """Two independent heads on zsa: MLP -> LN + ELU -> Linear(1). Returns [B, 2]."""

    hidden: int = 512

    @nn.compact
    def __call__(self, zsa):
        heads = []
        for _ in range(2):
            x = elu(layer_norm(MLP(self.hidden, self.hidden, "elu")(zsa)))
            heads.append(dense(1)(x))
        return jnp.concatenate(heads, -1)


# ---------------------------------------------------------------------------------------------
# Replay: one frame per slot, histories and windows rebuilt from indices (docs/facts.md#mrq-replay),
# sampled by priority x forget weight (docs/facts.md#drq-faded-replay)
# ---------------------------------------------------------------------------------------------
class Replay(NamedTuple):
    """One seed's buffer (vmapped over seeds). Slot i holds the observation (one frame for pixels)
    and, for a transition starting there, its action, reward and not-done flag. An episode that
    ends takes one extra slot for its final observation, so s' of slot i is always slot i + 1.
    `pos` is the slot's step within its episode: histories stop at the episode's first frame.
    `added` is the count of stored env steps when the slot was written: its forget weight is
    decay^(adds - added), so the decay of every weight at every step is one counter."""

    obs: jnp.ndarray  # [S, *frame]
    action: jnp.ndarray  # [S, A]
    reward: jnp.ndarray  # [S]
    not_done: jnp.ndarray  # [S]
    pos: jnp.ndarray  # [S] int32
    valid: jnp.ndarray  # [S] bool: the window starting here may be sampled
    priority: jnp.ndarray  # [S]
    is_step: jnp.ndarray  # [S] bool: the slot holds a transition (not an episode's final observation)
    added: jnp.ndarray  # [S] int32: `adds` when the slot was written
    max_priority: jnp.ndarray  # []
    adds: jnp.ndarray  # [] int32: env steps stored so far
    ptr: jnp.ndarray  # [] int32, next slot to write


def replay_init(slots: int, frame_shape, frame_dtype, action_dim: int) -> Replay:
    return Replay(jnp.zeros((slots, *frame_shape), frame_dtype), jnp.zeros((slots, action_dim), jnp.float32),
                  jnp.zeros(slots, jnp.float32), jnp.zeros(slots, jnp.float32), jnp.zeros(slots, jnp.int32),
                  jnp.zeros(slots, bool), jnp.zeros(slots, jnp.float32), jnp.zeros(slots, bool),
                  jnp.zeros(slots, jnp.int32), jnp.ones((), jnp.float32), jnp.zeros((), jnp.int32),
                  jnp.zeros((), jnp.int32))


def replay_mean_abs_reward(buf: Replay):
    """mean |r| over the stored transitions: the reward scale."""
    n = jnp.maximum(buf.is_step.sum(), 1)
    return jnp.where(buf.is_step, jnp.abs(buf.reward), 0.0).sum() / n


def replay_add(buf: Replay, frame, action, reward, terminated, truncated, next_frame, pos, horizon: int = 5,
               history: int = 1) -> Replay:
    """Store one transition whose observation is `pos` steps into its episode; at an episode end also
    store the final observation in the next slot. Starts become sampleable once `horizon` further
    steps of their episode exist; at a termination the episode's last starts become sampleable too
    (the steps after it are masked in the losses); at a truncation they never do."""
    slots = buf.obs.shape[0]
    p = buf.ptr
    buf = buf._replace(adds=buf.adds + 1)  # every forget weight decays once per stored step

    def write(b: Replay, at, frame_, action_, reward_, not_done_, pos_, is_step, keep=True):
        # the overwritten slot and the old starts whose history reads it are no longer sampleable;
        # keep=False sends every write to the out-of-range index `slots`, which mode="drop" skips
        at, stale = jnp.where(keep, at, slots), jnp.where(keep, (at + jnp.arange(history)) % slots, slots)
        put = lambda x, i, v: x.at[i].set(v, mode="drop")
        return b._replace(obs=put(b.obs, at, frame_), action=put(b.action, at, action_),
                          reward=put(b.reward, at, reward_), not_done=put(b.not_done, at, not_done_),
                          pos=put(b.pos, at, pos_), valid=put(b.valid, stale, False),
                          is_step=put(b.is_step, at, is_step), added=put(b.added, at, b.adds))

    buf = write(buf, p, frame, action, reward, 1.0 - terminated.astype(jnp.float32), pos, True)
    done = jnp.logical_or(terminated, truncated)
    # the start `horizon` slots back is now complete (its last s' is this slot's observation)
    start = (p - horizon) % slots
    ready = pos >= horizon
    buf = buf._replace(valid=buf.valid.at[start].set(jnp.where(ready, True, buf.valid[start])),
                       priority=buf.priority.at[start].set(jnp.where(ready, buf.max_priority, buf.priority[start])))
    # episode end: the final observation in the next slot (no transition starts there). Written as
    # dropped scatters when the episode goes on: a select between two whole buffers costs a pass over them.
    buf = write(buf, (p + 1) % slots, next_frame, jnp.zeros_like(action), 0.0, 0.0, pos + 1, False, keep=done)
    back = jnp.arange(horizon)  # the episode's last starts: p - horizon + 1 .. p
    last = (p - back) % slots
    open_ = jnp.logical_and(terminated, back <= pos)  # a termination opens them (a no-op write otherwise)
    buf = buf._replace(valid=buf.valid.at[last].set(jnp.where(open_, True, buf.valid[last])),
                       priority=buf.priority.at[last].set(jnp.where(open_, buf.max_priority, buf.priority[last])))
    return buf._replace(ptr=(p + jnp.where(done, 2, 1)) % slots)


SAMPLE_BLOCK = 256  # slots per block of the two-level prioritised sampler


def replay_weight(buf: Replay, i, decay: float = 0.9999, floor: float = 0.1):
    """Sampling weight of slots i: priority x valid x clip(decay^age, floor, 1), age = steps stored since."""
    fade = jnp.clip(jnp.exp((buf.adds - buf.added[i]).astype(jnp.float32) * math.log(decay)), floor, 1.0)
    return jnp.where(buf.valid[i], buf.priority[i] * fade, 0.0)


def replay_cdf(buf: Replay, decay: float = 0.9999, floor: float = 0.1):
    """Cumulative sum of the blocks' total sampling weight [ceil(S / SAMPLE_BLOCK)]: the first level of
    the sampling distribution (fixed during an encoder burst)."""
    w = replay_weight(buf, jnp.arange(buf.priority.shape[0]), decay, floor)
    block = min(SAMPLE_BLOCK, w.shape[0])
    return jnp.cumsum(jnp.pad(w, (0, -w.shape[0] % block)).reshape(-1, block).sum(-1))


def replay_sample_starts(buf: Replay, key, batch: int, cdf, decay: float = 0.9999, floor: float = 0.1):
    """Starts drawn with probability priority x valid x fade / total, in two levels: a block by `cdf`, then a
    slot by the cumulative sum inside the block. Why: one cumsum over the whole buffer per update
    was slow on XLA:CPU at 1M slots; this reads the buffer once, in a blocked sum (the same
    distribution, up to float rounding)."""
    slots = buf.priority.shape[0]
    block = min(SAMPLE_BLOCK, slots)
    u = jax.random.uniform(key, (batch,)) * cdf[-1]
    blk = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), cdf.shape[0] - 1)
    u = u - jnp.where(blk > 0, cdf[blk - 1], 0.0)
    slot = blk[:, None] * block + jnp.arange(block)  # [B, block]
    w = jnp.where(slot < slots, replay_weight(buf, jnp.minimum(slot, slots - 1), decay, floor), 0.0)
    i = jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="right"))(jnp.cumsum(w, -1), u)
    last = block - 1 - jnp.argmax(w[:, ::-1] > 0, -1)  # u rounded past the block's total: its last sampleable slot
    return jnp.minimum(blk * block + jnp.minimum(i, last), slots - 1)


def replay_sample(buf: Replay, key, batch: int, horizon: int = 5, history: int = 1, cdf=None, decay: float = 0.9999,
                  floor: float = 0.1):
    """Prioritised starts (`replay_sample_starts`) and their windows: obs [B, horizon + 1, history * C,
    ...] (or [B, horizon + 1, obs_dim]), action/reward/not_done [B, horizon]."""
    slots = buf.obs.shape[0]
    start = replay_sample_starts(buf, key, batch, replay_cdf(buf, decay, floor) if cdf is None else cdf, decay, floor)
    steps = (start[:, None] + jnp.arange(horizon + 1)) % slots  # [B, h + 1]
    back = jnp.arange(history - 1, -1, -1)  # oldest frame first
    frames = (steps[..., None] - jnp.minimum(back, buf.pos[steps][..., None])) % slots  # [B, h + 1, H]
    obs = buf.obs[frames]  # [B, h + 1, H, *frame]
    obs = obs.reshape(*obs.shape[:2], -1, *obs.shape[4:]) if obs.ndim > 4 else obs.reshape(*obs.shape[:2], -1)
    t = steps[:, :horizon]
    return start, obs, buf.action[t], buf.reward[t], buf.not_done[t]


# ---------------------------------------------------------------------------------------------
# Losses (docs/facts.md#drq-training-step)
# ---------------------------------------------------------------------------------------------
def value_target(ret, mask, q_next, discount: float, q_horizon: int):
    """y = R + mask * gamma^n * Q'(s_n, a'), in reward units (DR.Q drops MR.Q's reward scaling)."""
    return ret + mask * discount ** q_horizon * q_next


def huber(x):
    """smooth L1 with delta 1 (torch's default), elementwise."""
    a = jnp.abs(x)
    return jnp.where(a < 1.0, 0.5 * x ** 2, a - 0.5)


def lap_priority(q, y, alpha: float = 0.4, min_priority: float = 1.0):
    """max over heads |Q - y|, clamped below at min_priority, to the power alpha: [B, 2], [B] -> [B]."""
    return jnp.maximum(jnp.abs(q - y[:, None]).max(-1), min_priority) ** alpha


def policy_loss(q):
    """-mean over both heads and the batch (DR.Q drops MR.Q's pre-activation penalty)."""
    return -q.mean()


def info_nce(pred, target, temperature: float = 0.1):
    """[B] InfoNCE with in-batch negatives: cross-entropy of the cosine similarities of the predicted
    [B, D] against every target [B, D], over the temperature, the matching row as the label."""
    unit = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # torch F.normalize
    logits = unit(pred) @ unit(target).T / temperature  # [B, B]
    return -jnp.diagonal(jax.nn.log_softmax(logits, axis=-1))


def encoder_loss(encoder: Encoder, params, target_params, obs, action, reward, not_done, bins,
                 dyn_weight: float = 1.0, reward_weight: float = 0.1, infonce_weight: float = 0.1,
                 temperature: float = 0.1, original_infonce_mask: bool = False):
    """Unrolled model loss on [B, h + 1] observations and [B, h] actions/rewards/not-done flags.

    zs_0 = f(s_0); each step predicts (done, zs_{i+1}, reward) from g(zs_i, a_i) and feeds the
    *predicted* zs_{i+1} back. Targets are the target encoder's f(s_{i+1}). Step i is weighted by
    prod_{j<i} not_done_j (steps after a termination are ignored; the terminal step counts), as a
    mean over all elements. The done prediction is not trained. `original_infonce_mask`: the
    authors' InfoNCE weighting, mean(loss) x mean(mask)."""
    b, h = action.shape[:2]
    flat = obs[:, 1:].reshape(b * h, *obs.shape[2:])  # s_1 .. s_h: s_0 needs no target
    targets = jax.lax.stop_gradient(encoder.apply(target_params, flat, method=Encoder.f)).reshape(b, h, -1)
    zs = encoder.apply(params, obs[:, 0], method=Encoder.f)
    mask = jnp.ones((b,), jnp.float32)
    total, parts = 0.0, {"dyn": 0.0, "reward": 0.0, "infonce": 0.0}
    for i in range(h):
        _, zs, reward_logits = encoder.apply(
            params, encoder.apply(params, zs, action[:, i], method=Encoder.g), method=Encoder.predict)
        dyn = (((zs - targets[:, i]) ** 2) * mask[:, None]).mean()
        rew = (two_hot_cross_entropy(reward_logits, reward[:, i], bins) * mask).mean()
        nce = info_nce(zs, targets[:, i], temperature)
        nce = nce.mean() * mask.mean() if original_infonce_mask else (nce * mask).mean()
        total = total + dyn_weight * dyn + reward_weight * rew + infonce_weight * nce
        parts = {"dyn": parts["dyn"] + dyn, "reward": parts["reward"] + rew, "infonce": parts["infonce"] + nce}
        mask = mask * not_done[:, i]
    return total, parts


# ---------------------------------------------------------------------------------------------
# Learner and its two updates (docs/facts.md#drq-training-step). One seed; the training loop vmaps over seeds.
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    encoder: dict
    encoder_target: dict
    policy: dict
    policy_target: dict
    value: dict
    value_target: dict
    encoder_opt: optax.OptState
    policy_opt: optax.OptState
    value_opt: optax.OptState
    reward_scale: jnp.ndarray  # mean |r| of the buffer at the last target copy
    target_reward_scale: jnp.ndarray  # the one before (0 at the start)
    key: jnp.ndarray


class Nets(NamedTuple):
    encoder: Encoder
    policy: Policy
    value: Value
    encoder_tx: optax.GradientTransformation
    policy_tx: optax.GradientTransformation
    value_tx: optax.GradientTransformation


def make_nets(obs_is_pixels: bool, action_dim: int, discrete: bool, enc_lr=3e-4, enc_wd=0.01, value_lr=3e-4,
              value_wd=0.01, policy_lr=3e-4, policy_wd=0.01, zs_dim=512, za_dim=256,
              zsa_dim=512, enc_hidden=750, value_hidden=512, policy_hidden=512, num_bins=65,
              gumbel_tau=10.0) -> Nets:
    """AdamW everywhere (decoupled decay on every parameter); no gradient clipping."""
    return Nets(Encoder(obs_is_pixels, zs_dim, za_dim, zsa_dim, enc_hidden, num_bins),
                Policy(action_dim, discrete, policy_hidden, gumbel_tau), Value(value_hidden),
                optax.adamw(enc_lr, weight_decay=enc_wd),
                optax.adamw(policy_lr, weight_decay=policy_wd),
                optax.adamw(value_lr, weight_decay=value_wd))


def learner_init(nets: Nets, key, obs_example, action_dim: int) -> Learner:
    k_enc, k_pol, k_val, key = jax.random.split(key, 4)
    enc = nets.encoder.init(k_enc, obs_example[None], jnp.zeros((1, action_dim)))
    zs = jnp.zeros((1, nets.encoder.zs_dim))
    pol = nets.policy.init(k_pol, zs, k_pol)
    val = nets.value.init(k_val, jnp.zeros((1, nets.encoder.zsa_dim)))
    return Learner(enc, enc, pol, pol, val, val, nets.encoder_tx.init(enc), nets.policy_tx.init(pol),
                   nets.value_tx.init(val), jnp.ones(()), jnp.zeros(()), key)


def target_action(nets: Nets, params, zs, key, noise: float, noise_clip: float):
    """Target policy action with clipped Gaussian noise: clipped to [-1, 1], or one-hot(argmax) if discrete
    (where the caller passes the halved noise)."""
    k_g, k_n = jax.random.split(key)
    a, _ = nets.policy.apply(params, zs, k_g)
    a = a + jnp.clip(noise * jax.random.normal(k_n, a.shape), -noise_clip, noise_clip)
    if nets.policy.discrete:
        return jax.nn.one_hot(a.argmax(-1), a.shape[-1])
    return jnp.clip(a, -1.0, 1.0)


def rl_update(nets: Nets, learner: Learner, obs, action, reward, not_done, discount=0.99, q_horizon=3,
              noise=0.2, noise_clip=0.3, alpha=0.4, min_priority=1.0):
    """One value step then one policy step on windows [B, >= q_horizon + 1]. Returns the learner, the
    new LAP priorities [B] (in reward units) and metrics."""
    key, k_t, k_p = jax.random.split(learner.key, 3)
    enc, enc_t = nets.encoder, learner.encoder_target
    ret, mask = multi_step_return(reward[:, :q_horizon], not_done[:, :q_horizon], discount)
    next_zs = enc.apply(enc_t, obs[:, q_horizon], method=Encoder.f)
    a_next = target_action(nets, learner.policy_target, next_zs, k_t, noise, noise_clip)
    q_next = nets.value.apply(learner.value_target, enc.apply(enc_t, next_zs, a_next, method=Encoder.g)).min(-1)
    y = value_target(ret, mask, q_next, discount, q_horizon)
    y = jax.lax.stop_gradient(y)
    zs = jax.lax.stop_gradient(enc.apply(learner.encoder, obs[:, 0], method=Encoder.f))
    zsa = jax.lax.stop_gradient(enc.apply(learner.encoder, zs, action[:, 0], method=Encoder.g))

    def value_loss(vp):
        q = nets.value.apply(vp, zsa)
        return huber(q - y[:, None]).mean(), q

    (v_loss, q), grads = jax.value_and_grad(value_loss, has_aux=True)(learner.value)
    updates, value_opt = nets.value_tx.update(grads, learner.value_opt, learner.value)
    value = optax.apply_updates(learner.value, updates)

    def pol_loss(pp):
        a, _ = nets.policy.apply(pp, zs, k_p)
        q_pi = nets.value.apply(value, enc.apply(learner.encoder, zs, a, method=Encoder.g))
        return policy_loss(q_pi)

    p_loss, grads = jax.value_and_grad(pol_loss)(learner.policy)
    updates, policy_opt = nets.policy_tx.update(grads, learner.policy_opt, learner.policy)
    policy = optax.apply_updates(learner.policy, updates)
    learner = learner._replace(value=value, value_opt=value_opt, policy=policy, policy_opt=policy_opt, key=key)
    return learner, lap_priority(q, y, alpha, min_priority), {"value_loss": v_loss, "policy_loss": p_loss, "q": q.mean()}


def encoder_update(nets: Nets, learner: Learner, obs, action, reward, not_done, bins, **weights):
    """One AdamW step on the unrolled model loss (the training loop runs 250 of them per burst).
    `weights`: dyn_weight, reward_weight, infonce_weight, temperature, original_infonce_mask of `encoder_loss`."""
    (loss, parts), grads = jax.value_and_grad(
        lambda p: encoder_loss(nets.encoder, p, learner.encoder_target, obs, action, reward, not_done, bins,
                               **weights), has_aux=True)(learner.encoder)
    updates, opt = nets.encoder_tx.update(grads, learner.encoder_opt, learner.encoder)
    return learner._replace(encoder=optax.apply_updates(learner.encoder, updates), encoder_opt=opt), \
        {"encoder_loss": loss, **parts}


def copy_targets(learner: Learner, buffer_mean_abs_reward) -> Learner:
    """Every 250 training steps: hard copies, and the reward scale refresh (kept from MR.Q by the
    authors' code; DR.Q's targets do not read it)."""
    return learner._replace(encoder_target=learner.encoder, policy_target=learner.policy,
                            value_target=learner.value, target_reward_scale=learner.reward_scale,
                            reward_scale=jnp.maximum(buffer_mean_abs_reward, 1e-8))


def random_shift(key, x, pad: int = 4):
    """Pixel augmentation as the authors': pad by `pad` replicating the edges, crop back at a
    random integer offset, one offset per image shared by its channels (its history frames)."""
    b, c, h, w = x.shape
    padded = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)
    return jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (0, o[0], o[1]), (c, h, w)))(padded, offsets)


# ---------------------------------------------------------------------------------------------
# Agent: acting, the buffer write and the training step, vmapped over seeds
# ---------------------------------------------------------------------------------------------
class Transition(NamedTuple):
    """One env step of every seed, as the host hands it over ([N, ...])."""

    frame: np.ndarray  # [N, *frame] the newest frame of s (the whole vector for states)
    action: np.ndarray  # [N, A] in [-1, 1], or [N] action indices
    reward: np.ndarray  # [N]
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    next_frame: np.ndarray  # [N, *frame] the newest frame of s' (stored only at episode ends)
    pos: np.ndarray  # [N] int32: steps of the episode before this one


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Replay), stacked
    act: callable  # (learner, obs [N, *obs_shape], random) -> (learner, env action [N, A] or [N])
    policy: callable  # (encoder, policy, obs [N, *obs_shape], keys [N]) -> evaluation action
    step: callable  # (learner, replay, transition, obs, train, burst, random_next) -> (learner, replay, action, metrics)
    nets: Nets
    slots: int
    frame_channels: int  # channels of one stored frame (0 for state vectors)
    parts: dict  # the jitted pieces of `step` by name (add, start_burst, encoder_step, train_and_act), for profiling


def replay_slots(args: Args) -> int:
    """Slots the run can fill, capped by --buffer-size: every episode takes its length + 1 slots; DMC
    episodes are 500 steps (or --max-episode-steps), other suites' can be as short as one."""
    t = args.total_timesteps
    shortest = (args.max_episode_steps or 500) if suite_of(args.env_id) == "dmc" else 1
    return min(args.buffer_size, t + t // shortest + 1)


def make_agent(args: Args, obs_shape, obs_dtype, action_dim: int, discrete: bool, history: int) -> Agent:
    pixels = len(obs_shape) == 3
    frame_channels = obs_shape[0] // history if pixels else 0
    frame_shape = (frame_channels, *obs_shape[1:]) if pixels else tuple(obs_shape)
    nets = make_nets(pixels, action_dim, discrete, args.enc_lr, args.enc_wd, args.value_lr, args.value_wd,
                     args.policy_lr, args.policy_wd, args.zs_dim, args.za_dim, args.zsa_dim,
                     args.enc_hdim, args.value_hdim, args.policy_hdim, args.num_bins, args.gumbel_tau)
    bins = reward_bins(args.num_bins)
    slots = replay_slots(args)
    noise_scale = 0.5 if discrete else 1.0  # every noise is halved for discrete actions
    h, weights = args.enc_horizon, {"dyn_weight": args.dyn_weight, "reward_weight": args.reward_weight,
                                    "infonce_weight": args.infonce_weight, "temperature": args.infonce_temperature,
                                    "original_infonce_mask": args.original_infonce_mask}
    fade = (args.forget_decay, args.forget_floor)

    def init(key):
        return (learner_init(nets, key, jnp.zeros(obs_shape, obs_dtype), action_dim),
                replay_init(slots, frame_shape, obs_dtype, action_dim))

    def act(learner, obs, random):
        key, k_a, k_g = jax.random.split(learner.key, 3)
        if random:  # uniform actions while the buffer fills
            a = (jax.random.randint(k_a, (), 0, action_dim) if discrete
                 else jax.random.uniform(k_a, (action_dim,), minval=-1.0, maxval=1.0))
        else:
            a = nets.policy.apply(learner.policy, nets.encoder.apply(learner.encoder, obs[None], method=Encoder.f),
                                  k_g)[0][0]
            a = a + jax.random.normal(k_a, a.shape) * args.exploration_noise * noise_scale
            a = a.argmax() if discrete else jnp.clip(a, -1.0, 1.0)  # discrete: noisy Gumbel sample, then argmax
        return learner._replace(key=key), a

    def policy(encoder, policy_params, obs, key):
        """No exploration noise; a discrete policy still draws its Gumbel sample (as the authors' evaluation)."""
        a = nets.policy.apply(policy_params, nets.encoder.apply(encoder, obs[None], method=Encoder.f), key)[0][0]
        return a.argmax() if discrete else a

    def augment(key, obs):
        """Random shift of every image of the windows [B, T, C, H, W], each with its own offset."""
        if not (pixels and args.pixel_augs):
            return obs
        return random_shift(key, obs.reshape(-1, *obs.shape[2:])).reshape(obs.shape)

    def add(buf, tr):
        action = jax.nn.one_hot(tr.action, action_dim) if discrete else tr.action
        return replay_add(buf, tr.frame, action, tr.reward, tr.terminated, tr.truncated, tr.next_frame, tr.pos,
                          h, history)

    def keep_if(ok, new, old):  # nothing sampleable yet (no start has h further steps): skip the update
        return jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

    def encoder_step(learner, buf, cdf):
        """One encoder update on a fresh prioritised batch of windows (cdf: the burst's, fixed)."""
        key, k_s, k_a = jax.random.split(learner.key, 3)
        _, obs, action, reward, not_done = replay_sample(buf, k_s, args.batch_size, h, history, cdf, *fade)
        new, m = encoder_update(nets, learner._replace(key=key), augment(k_a, obs), action, reward, not_done,
                                bins, **weights)
        return keep_if(cdf[-1] > 0, new, learner._replace(key=key)), m

    def start_burst(learner, buf):
        """Target copies and the reward-scale refresh; the sampling distribution of the burst."""
        return copy_targets(learner, replay_mean_abs_reward(buf)), replay_cdf(buf, *fade)

    def rl_step(learner, buf):
        key, k_s, k_a = jax.random.split(learner.key, 3)
        cdf = replay_cdf(buf, *fade)
        start, obs, action, reward, not_done = replay_sample(buf, k_s, args.batch_size, args.q_horizon, history, cdf,
                                                             *fade)
        new, prio, m = rl_update(nets, learner._replace(key=key), augment(k_a, obs), action, reward, not_done,
                                 args.discount, args.q_horizon, args.target_policy_noise * noise_scale,
                                 args.noise_clip * noise_scale, args.alpha, args.min_priority)
        ok = cdf[-1] > 0
        new_buf = buf._replace(priority=buf.priority.at[start].set(jnp.where(ok, prio, buf.priority[start])),
                               max_priority=jnp.where(ok, jnp.maximum(buf.max_priority, prio.max()), buf.max_priority))
        return keep_if(ok, new, learner._replace(key=key)), new_buf, m

    def train_and_act(learner, buf, obs, train, random_next):
        """One value/policy update if due, then the action for obs, for all seeds."""
        metrics = {}
        if train:
            learner, buf, metrics = jax.vmap(rl_step)(learner, buf)
        learner, action = jax.vmap(act, in_axes=(0, 0, None))(learner, obs, random_next)
        return learner, buf, action, metrics

    # As in td3.py: the write and the update are separate jitted calls, both donating their state,
    # so XLA updates the buffer in place. The burst's encoder updates are dispatched one by one
    # from the host (asynchronously): inside a lax.scan, XLA:CPU ran the pixel encoder's update
    # 7x slower than as a call of its own (22 s against 3 s per update at batch 256).
    add = jax.jit(jax.vmap(add), donate_argnums=0)
    start_burst = jax.jit(jax.vmap(start_burst), donate_argnums=0)
    encoder_step = jax.jit(jax.vmap(encoder_step), donate_argnums=0)
    train_and_act = jax.jit(train_and_act, static_argnames=("train", "random_next"), donate_argnums=(0, 1))

    def step(learner, buf, transition, obs, train, burst, random_next):
        """Store the transition; every target_update_freq training steps copy the targets and run
        the encoder burst; then one value/policy update if due and the action for obs."""
        buf = add(buf, transition)
        burst_metrics = {}
        if train and burst:
            learner, cdf = start_burst(learner, buf)
            for _ in range(args.target_update_freq):
                learner, burst_metrics = encoder_step(learner, buf, cdf)  # the last update's losses are logged
        learner, buf, action, metrics = train_and_act(learner, buf, obs, train=train, random_next=random_next)
        return learner, buf, action, {**burst_metrics, **metrics}

    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, None)), static_argnums=2),
        policy=jax.jit(jax.vmap(policy)),
        step=step,
        nets=nets,
        slots=slots,
        frame_channels=frame_channels,
        parts={"add": add, "start_burst": start_burst, "encoder_step": encoder_step, "train_and_act": train_and_act},
    )


def schedule(t: int, learning_starts: int, target_update_freq: int) -> tuple[bool, bool, bool]:
    """Host-side flags after storing env step t (0-based): (train, burst, random_next_action).

    Training runs once the buffer holds more than learning_starts transitions; training step k
    (1-based) starts with a target copy and an encoder burst when (k - 1) % target_update_freq == 0.
    """
    train = t + 1 > learning_starts
    k = t + 1 - learning_starts
    return train, train and (k - 1) % target_update_freq == 0, t + 1 < learning_starts


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
def env_kwargs(args: Args, evaluation: bool) -> dict:
    """Atari: epsilon = 0.001 random actions in evaluation only (DR.Q's fix); --max-episode-steps for
    every suite."""
    suite, kw = suite_of(args.env_id), {}
    if args.max_episode_steps is not None:
        kw["max_episode_steps" if suite == "gym" else "max_steps"] = args.max_episode_steps
    if suite == "atari":
        kw["epsilon"] = 0.001 if evaluation else 0.0
    return kw


def _make_envs(args: Args, seeds):
    kw = {"discrete_ok": True, "pixels_ok": True, "workers": args.env_workers}
    train_envs = envs.SeedEnvs(args.env_id, seeds, env_kwargs=env_kwargs(args, False), **kw)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes,
                               env_kwargs=env_kwargs(args, True), **kw)
    return train_envs, evaluator


def _agent_for(args: Args, spaces) -> Agent:
    return make_agent(args, spaces.obs_shape, spaces.obs_dtype, spaces.action_dim, spaces.discrete,
                      spaces.frame_history)


def _eval_policy(agent: Agent, learner, seeds, step: int):
    """Policy for the Evaluator: its own key stream per seed and evaluation (for the Gumbel samples)."""
    base = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s + 100), step) for s in seeds])
    calls = iter(range(1 << 62))
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    return lambda o: agent.policy(learner.encoder, learner.policy, o, fold(base, next(calls)))


RING = ("obs", "action", "reward", "not_done", "pos", "is_step", "added")  # replay fields written only at the write pointer


def split_replay(replay: Replay) -> tuple[dict, dict]:
    """(fields written only at the pointer, saved incrementally; the others, saved whole)."""
    rest = replay._asdict()
    return {k: rest.pop(k) for k in RING}, rest


def train(args: Args) -> dict:
    """Train args.num_seeds agents; returns the final learner, replay and run facts."""
    run = runs.Run(ALGO, args, Args)
    run.args = args = resolve_presets(run.args)  # with --resume, the checkpoint's args
    seeds = run.seeds
    check_args(args)
    train_envs, evaluator = _make_envs(args, seeds)
    agent = run.devices.agent(_agent_for(args, train_envs))  # seeds over devices
    learner, replay = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    per_slot = sum(x.nbytes for x in replay) // (args.num_seeds * agent.slots)
    params = count_params(jax.tree.map(lambda x: x[0], (learner.encoder, learner.policy, learner.value)))
    replay_info = {"slots": agent.slots, "bytes_per_slot": per_slot, "mb_per_seed": round(per_slot * agent.slots / 1e6, 1),
                   "parameters": params}
    if run.checkpoint:
        ring, rest = split_replay(replay)
        obs_template = jnp.zeros((len(seeds), *train_envs.obs_shape), train_envs.obs_dtype)
        action = jax.eval_shape(agent.act, learner, obs_template, False)[1]
        saved, ring = run.checkpoint.load({"learner": learner, "action": action, "replay": rest}, ring, args)
        learner, action, replay = saved["learner"], saved["action"], Replay(**ring, **saved["replay"])
        host = run.checkpoint.host
        t0, ep_pos, written = host["t"], host["ep_pos"], host["written"]
        obs = train_envs.set_state(host["envs"])
    else:
        t0, ep_pos, written = 0, np.zeros(args.num_seeds, np.int32), np.zeros(args.num_seeds, np.int64)
        obs = train_envs.reset()
        learner, action = agent.act(learner, obs, args.learning_starts > 0)
    run.start(replay_info)
    run.print(f"{params:,} parameters; replay on {jax.devices()[0].platform}: {agent.slots} slots x {per_slot} bytes = "
              f"{replay_info['mb_per_seed']} MB per seed, {args.num_seeds} seed(s)")

    def frame(o):  # the newest frame of stacked pixels; state vectors whole
        return o[:, -agent.frame_channels:] if agent.frame_channels else o

    compile_s, sps_from, loop_end = None, None, None  # for the steps/s figure, compilation excluded
    metrics, last_eval = {}, None

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(_eval_policy(agent, learner, seeds, step))
        run.evaluation([{"seed": s, "step": step, "return": r} for s, r in zip(seeds, last_eval)], host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        for t in range(t0, args.total_timesteps):
            flags = schedule(t, args.learning_starts, args.target_update_freq)
            action_host = np.asarray(action)  # the one device -> host transfer per env step
            env_step = train_envs.step(action_host)
            transition = Transition(frame(obs), action_host, env_step.reward, env_step.terminated,
                                    env_step.truncated, frame(env_step.next_obs), ep_pos)
            ep_pos = np.where(env_step.terminated | env_step.truncated, 0, ep_pos + 1).astype(np.int32)
            written = written + 1 + (env_step.terminated | env_step.truncated)  # an episode end adds its final obs
            obs = env_step.obs
            tc = time.time()
            learner, replay, action, new = agent.step(learner, replay, transition, obs, *flags)
            if flags[0] and compile_s is None:  # the first training step compiles the updates
                compile_s = (jax.block_until_ready(action), time.time() - tc)[1]
            metrics = {**metrics, **new}
            for i, ret, length in env_step.episodes:
                run.episode(seeds[i], t + 1, ret, length)
            if sps_from is None and t >= args.learning_starts + 1:  # both variants (burst, plain) compiled
                sps_from = (t, time.time())
            if (t + 1) % 200 == 0:
                run.advance(t + 1, (t - sps_from[0]) / (time.time() - sps_from[1]) if sps_from and t > sps_from[0]
                            else None)
            if t + 1 == args.total_timesteps:
                jax.block_until_ready(action)  # wait for the last update before reading the clock
                loop_end = time.time()
            if (t + 1) % args.eval_freq == 0 or t + 1 == args.total_timesteps:
                evaluate(t + 1)
                if run.checkpoint_due(t + 1):  # the ring fields go in chunks: the slots written since the last save
                    ring, rest = split_replay(replay)
                    run.save(t + 1, {"learner": learner, "action": action, "replay": rest},
                             {"t": t + 1, "envs": train_envs.get_state(), "ep_pos": ep_pos, "written": written},
                             ring=ring, written=written, per_slot=("replay",))
    run.close()
    train_envs.close()
    evaluator.close()
    steps_timed = (args.total_timesteps - 1 - sps_from[0]) if sps_from else 0
    return {
        "run_dir": run.dir, "learner": learner, "replay": replay, "final_eval": last_eval,
        "compile_s": compile_s, "parameters": params, "replay_mb_per_seed": replay_info["mb_per_seed"],
        "train_loop_steps_per_s": steps_timed / (loop_end - sps_from[1]) if steps_timed > 0 else None,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved policy
# ---------------------------------------------------------------------------------------------
def evaluate_checkpoint(args: Args) -> np.ndarray:
    def policy_from(saved: Args, evaluator, ckpt):
        agent = _agent_for(saved, evaluator)
        seeds = [saved.seed + i for i in range(saved.num_seeds)]
        learner, _ = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
        learner = ckpt.load({"learner": learner}, args=saved)[0]["learner"]
        return _eval_policy(agent, learner, seeds, ckpt.step)

    check_args(args)
    return runs.evaluate_saved(ALGO, args, Args, policy_from, lambda saved: dict(
        discrete_ok=True, pixels_ok=True, env_kwargs=env_kwargs(saved, True)))

if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
