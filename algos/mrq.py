"""MR.Q in JAX (WORK IN PROGRESS on branch `mrq`: building blocks only, no training loop yet).

Paper: S. Fujimoto, P. D'Oro, A. Zhang, Y. Tian, M. Rabbat. "Towards General-Purpose Model-Free
Reinforcement Learning". ICLR 2025. Implemented from the facts in ALGORITHMS.md s8 and the paper;
the authors' code is under a non-commercial licence and is not followed line by line.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

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
