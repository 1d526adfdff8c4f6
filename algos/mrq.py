"""MR.Q in JAX (WORK IN PROGRESS on branch `mrq`: building blocks only, no training loop yet).

Paper: S. Fujimoto, P. D'Oro, A. Zhang, Y. Tian, M. Rabbat. "Towards General-Purpose Model-Free
Reinforcement Learning". ICLR 2025. Implemented from the facts in ALGORITHMS.md s8 and the paper;
the authors' code is under a non-commercial licence and is not followed line by line.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

ALGO = "mrq"


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
def multi_step_return(rewards, not_done, discount: float, terminal_reward: bool = True):
    """n-step return over [B, n] rewards and not-done flags, and the bootstrap mask [B].

    Textbook (default): R = sum_i gamma^i r_i prod_{j<i} not_done_j; the bootstrap mask is
    prod_i not_done_i. With `terminal_reward=False`, the original code's form: each r_i is
    weighted by its own not_done_i (the reward of a terminal transition is dropped).
    """
    n = rewards.shape[-1]
    alive_before = jnp.cumprod(jnp.concatenate([jnp.ones_like(not_done[..., :1]), not_done[..., :-1]], -1), -1)
    weight = alive_before if terminal_reward else not_done
    gammas = discount ** jnp.arange(n, dtype=rewards.dtype)
    return (rewards * weight * gammas).sum(-1), jnp.prod(not_done, -1)


# ---------------------------------------------------------------------------------------------
# Network blocks: LayerNorm without parameters, Xavier-uniform(gain sqrt 2) weights, zero biases
# ---------------------------------------------------------------------------------------------
def layer_norm(x, eps: float = 1e-5):
    """torch.nn.functional.layer_norm with no weight/bias: nothing to learn."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + eps)


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
        act = getattr(nn, self.activation)
        x = act(layer_norm(dense(self.hidden)(x)))
        x = act(layer_norm(dense(self.hidden)(x)))
        return dense(self.out)(x)


def count_params(params) -> int:
    return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))



# ---------------------------------------------------------------------------------------------
# Encoder, policy, value (ALGORITHMS.md s8.1)
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
                x = nn.elu(conv(x))
            return nn.elu(layer_norm(self.state_out(x.reshape(x.shape[0], -1))))
        return nn.elu(layer_norm(self.state_mlp(obs)))

    def g(self, zs, action):
        za = nn.elu(self.action_in(action))
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
            x = nn.elu(layer_norm(MLP(self.hidden, self.hidden, "elu")(zsa)))
            heads.append(dense(1)(x))
        return jnp.concatenate(heads, -1)


# ---------------------------------------------------------------------------------------------
# Replay: one frame per slot, histories and windows rebuilt from indices (ALGORITHMS.md s8.4)
# ---------------------------------------------------------------------------------------------
class Replay(NamedTuple):
    """One seed's buffer (vmapped over seeds). Slot i holds the observation (one frame for pixels)
    and, for a transition starting there, its action, reward and not-done flag. An episode that
    ends takes one extra slot for its final observation, so s' of slot i is always slot i + 1.
    `pos` is the slot's step within its episode: histories stop at the episode's first frame."""

    obs: jnp.ndarray  # [S, *frame]
    action: jnp.ndarray  # [S, A]
    reward: jnp.ndarray  # [S]
    not_done: jnp.ndarray  # [S]
    pos: jnp.ndarray  # [S] int32
    valid: jnp.ndarray  # [S] bool: the window starting here may be sampled
    priority: jnp.ndarray  # [S]
    max_priority: jnp.ndarray  # []
    ptr: jnp.ndarray  # [] int32, next slot to write


def replay_init(slots: int, frame_shape, frame_dtype, action_dim: int) -> Replay:
    return Replay(jnp.zeros((slots, *frame_shape), frame_dtype), jnp.zeros((slots, action_dim), jnp.float32),
                  jnp.zeros(slots, jnp.float32), jnp.zeros(slots, jnp.float32), jnp.zeros(slots, jnp.int32),
                  jnp.zeros(slots, bool), jnp.zeros(slots, jnp.float32), jnp.ones((), jnp.float32),
                  jnp.zeros((), jnp.int32))


def replay_add(buf: Replay, frame, action, reward, terminated, truncated, next_frame, pos, horizon: int = 5,
               history: int = 1) -> Replay:
    """Store one transition whose observation is `pos` steps into its episode; at an episode end also
    store the final observation in the next slot. Starts become sampleable once `horizon` further
    steps of their episode exist; at a termination the episode's last starts become sampleable too
    (the steps after it are masked in the losses); at a truncation they never do."""
    slots = buf.obs.shape[0]
    p = buf.ptr

    def write(b: Replay, at, frame_, action_, reward_, not_done_, pos_):
        # the overwritten slot and the old starts whose history reads it are no longer sampleable
        stale = (at + jnp.arange(history)) % slots
        return b._replace(obs=b.obs.at[at].set(frame_), action=b.action.at[at].set(action_),
                          reward=b.reward.at[at].set(reward_), not_done=b.not_done.at[at].set(not_done_),
                          pos=b.pos.at[at].set(pos_), valid=b.valid.at[stale].set(False))

    buf = write(buf, p, frame, action, reward, 1.0 - terminated.astype(jnp.float32), pos)
    done = jnp.logical_or(terminated, truncated)
    # the start `horizon` slots back is now complete (its last s' is this slot's observation)
    start = (p - horizon) % slots
    ready = pos >= horizon
    buf = buf._replace(valid=buf.valid.at[start].set(jnp.where(ready, True, buf.valid[start])),
                       priority=buf.priority.at[start].set(jnp.where(ready, buf.max_priority, buf.priority[start])))
    # episode end: the final observation in the next slot (no transition starts there)
    ended = write(buf, (p + 1) % slots, next_frame, jnp.zeros_like(action), 0.0, 0.0, pos + 1)
    back = jnp.arange(horizon)  # the episode's last starts: p - horizon + 1 .. p
    last = (p - back) % slots
    in_episode = back <= pos
    open_ = jnp.logical_and(terminated, in_episode)
    ended = ended._replace(valid=ended.valid.at[last].set(jnp.where(open_, True, ended.valid[last])),
                           priority=ended.priority.at[last].set(jnp.where(open_, ended.max_priority,
                                                                          ended.priority[last])))
    buf = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), ended, buf)
    return buf._replace(ptr=(p + jnp.where(done, 2, 1)) % slots)


def replay_sample(buf: Replay, key, batch: int, horizon: int = 5, history: int = 1):
    """Prioritised starts (cumsum + searchsorted over priority x valid) and their windows:
    obs [B, horizon + 1, history * C, ...] (or [B, horizon + 1, obs_dim]), action/reward/not_done
    [B, horizon]."""
    slots = buf.obs.shape[0]
    weights = jnp.where(buf.valid, buf.priority, 0.0)
    cdf = jnp.cumsum(weights)
    u = jax.random.uniform(key, (batch,)) * cdf[-1]
    start = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), slots - 1)
    steps = (start[:, None] + jnp.arange(horizon + 1)) % slots  # [B, h + 1]
    back = jnp.arange(history - 1, -1, -1)  # oldest frame first
    frames = (steps[..., None] - jnp.minimum(back, buf.pos[steps][..., None])) % slots  # [B, h + 1, H]
    obs = buf.obs[frames]  # [B, h + 1, H, *frame]
    obs = obs.reshape(*obs.shape[:2], -1, *obs.shape[4:]) if obs.ndim > 4 else obs.reshape(*obs.shape[:2], -1)
    t = steps[:, :horizon]
    return start, obs, buf.action[t], buf.reward[t], buf.not_done[t]


# ---------------------------------------------------------------------------------------------
# Losses (ALGORITHMS.md s8.3)
# ---------------------------------------------------------------------------------------------
def value_target(ret, mask, q_next, discount: float, q_horizon: int, reward_scale, target_reward_scale):
    """y = (R + mask * gamma^n * Q'(s_n, a') * previous scale) / current scale, in scaled units."""
    return (ret + mask * discount ** q_horizon * q_next * target_reward_scale) / reward_scale


def huber(x):
    """smooth L1 with delta 1 (torch's default), elementwise."""
    a = jnp.abs(x)
    return jnp.where(a < 1.0, 0.5 * x ** 2, a - 0.5)


def lap_priority(q, y, alpha: float = 0.4, min_priority: float = 1.0):
    """max over heads |Q - y|, clamped below at min_priority, to the power alpha: [B, 2], [B] -> [B]."""
    return jnp.maximum(jnp.abs(q - y[:, None]).max(-1), min_priority) ** alpha


def policy_loss(q, pre, pre_activ_weight: float = 1e-5):
    """-mean over both heads and the batch, plus a small penalty on the policy's pre-activations."""
    return -q.mean() + pre_activ_weight * (pre ** 2).mean()


def encoder_loss(encoder: Encoder, params, target_params, obs, action, reward, not_done, bins,
                 env_terminates, dyn_weight: float = 1.0, reward_weight: float = 0.1, done_weight: float = 0.1):
    """Unrolled model loss on [B, h + 1] observations and [B, h] actions/rewards/not-done flags.

    zs_0 = f(s_0); each step predicts (done, zs_{i+1}, reward) from g(zs_i, a_i) and feeds the
    *predicted* zs_{i+1} back. Targets are the target encoder's f(s_{i+1}). Step i is weighted by
    prod_{j<i} not_done_j (steps after a termination are ignored; the terminal step counts), as a
    mean over all elements. The done term counts only once the env has ever terminated."""
    b, h = action.shape[:2]
    flat = obs.reshape(b * (h + 1), *obs.shape[2:])
    targets = jax.lax.stop_gradient(encoder.apply(target_params, flat, method=Encoder.f)).reshape(b, h + 1, -1)
    zs = encoder.apply(params, obs[:, 0], method=Encoder.f)
    mask = jnp.ones((b,), jnp.float32)
    total, parts = 0.0, {"dyn": 0.0, "reward": 0.0, "done": 0.0}
    for i in range(h):
        done_logit, zs, reward_logits = encoder.apply(
            params, encoder.apply(params, zs, action[:, i], method=Encoder.g), method=Encoder.predict)
        dyn = (((zs - targets[:, i + 1]) ** 2) * mask[:, None]).mean()
        rew = (two_hot_cross_entropy(reward_logits, reward[:, i], bins) * mask).mean()
        done = (((done_logit - (1.0 - not_done[:, i])) ** 2) * mask).mean() * env_terminates
        total = total + dyn_weight * dyn + reward_weight * rew + done_weight * done
        parts = {"dyn": parts["dyn"] + dyn, "reward": parts["reward"] + rew, "done": parts["done"] + done}
        mask = mask * not_done[:, i]
    return total, parts


# ---------------------------------------------------------------------------------------------
# Learner and its two updates (ALGORITHMS.md s8.3). One seed; the training loop vmaps over seeds.
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


def make_nets(obs_is_pixels: bool, action_dim: int, discrete: bool, enc_lr=1e-4, enc_wd=1e-4, value_lr=3e-4,
              value_wd=1e-4, value_grad_clip=20.0, policy_lr=3e-4, policy_wd=1e-4) -> Nets:
    """AdamW everywhere (decoupled decay on every parameter); the value's gradient is clipped by norm."""
    return Nets(Encoder(pixels=obs_is_pixels), Policy(action_dim, discrete), Value(),
                optax.adamw(enc_lr, weight_decay=enc_wd),
                optax.adamw(policy_lr, weight_decay=policy_wd),
                optax.chain(optax.clip_by_global_norm(value_grad_clip), optax.adamw(value_lr, weight_decay=value_wd)))


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
              noise=0.2, noise_clip=0.3, terminal_reward=True, pre_activ_weight=1e-5):
    """One value step then one policy step on windows [B, >= q_horizon + 1]. Returns the learner, the
    new LAP priorities [B] (in reward-scaled units) and metrics."""
    key, k_t, k_p = jax.random.split(learner.key, 3)
    enc, enc_t = nets.encoder, learner.encoder_target
    ret, mask = multi_step_return(reward[:, :q_horizon], not_done[:, :q_horizon], discount, terminal_reward)
    next_zs = enc.apply(enc_t, obs[:, q_horizon], method=Encoder.f)
    a_next = target_action(nets, learner.policy_target, next_zs, k_t, noise, noise_clip)
    q_next = nets.value.apply(learner.value_target, enc.apply(enc_t, next_zs, a_next, method=Encoder.g)).min(-1)
    y = value_target(ret, mask, q_next, discount, q_horizon, learner.reward_scale, learner.target_reward_scale)
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
        a, pre = nets.policy.apply(pp, zs, k_p)
        q_pi = nets.value.apply(value, enc.apply(learner.encoder, zs, a, method=Encoder.g))
        return policy_loss(q_pi, pre, pre_activ_weight)

    p_loss, grads = jax.value_and_grad(pol_loss)(learner.policy)
    updates, policy_opt = nets.policy_tx.update(grads, learner.policy_opt, learner.policy)
    policy = optax.apply_updates(learner.policy, updates)
    learner = learner._replace(value=value, value_opt=value_opt, policy=policy, policy_opt=policy_opt, key=key)
    return learner, lap_priority(q, y), {"value_loss": v_loss, "policy_loss": p_loss, "q": q.mean()}


def encoder_update(nets: Nets, learner: Learner, obs, action, reward, not_done, bins, env_terminates):
    """One AdamW step on the unrolled model loss (the training loop runs 250 of them per burst)."""
    (loss, parts), grads = jax.value_and_grad(
        lambda p: encoder_loss(nets.encoder, p, learner.encoder_target, obs, action, reward, not_done, bins,
                               env_terminates), has_aux=True)(learner.encoder)
    updates, opt = nets.encoder_tx.update(grads, learner.encoder_opt, learner.encoder)
    return learner._replace(encoder=optax.apply_updates(learner.encoder, updates), encoder_opt=opt), \
        {"encoder_loss": loss, **parts}


def copy_targets(learner: Learner, buffer_mean_abs_reward) -> Learner:
    """Every 250 training steps: hard copies, and the reward scale refresh (the old scale is kept
    for the bootstrap: targets mix the previous and the current scale)."""
    return learner._replace(encoder_target=learner.encoder, policy_target=learner.policy,
                            value_target=learner.value, target_reward_scale=learner.reward_scale,
                            reward_scale=jnp.maximum(buffer_mean_abs_reward, 1e-8))


def random_shift(key, x, pad: int = 4):
    """Pixel augmentation: pad by `pad` (edge replication, an assumption to check) and crop back at a
    random offset, one offset per sample shared by all its channels (the frames of its history)."""
    b, c, h, w = x.shape
    padded = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    offsets = jax.random.randint(key, (b, 2), 0, 2 * pad + 1)
    return jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (0, o[0], o[1]), (c, h, w)))(padded, offsets)
