"""SR-DICE: off-policy evaluation with the successor representation, with the Deep SR and deep TD (FQE)
baselines, in JAX, many seeds per process.

Paper: S. Fujimoto, D. Meger, D. Precup. "A Deep Reinforcement Learning Approach to Marginalized
Importance Sampling with the Successor Representation". ICML 2021. arXiv:2106.06854.
Follows: github.com/sfujim/SR-DICE @ 7c71d888ca1059f017d5623b414391dbbf55ca1b (continuous/: SR_DICE.py,
Deep_SR.py, Deep_TD.py, main.py; atari/: the same three with the Atari networks).

Usage:  python -m envs.collect --recipe sr-dice --checkpoint runs/td3__Hopper-v4__...   (50k transitions)
        python algos/sr_dice.py --dataset minari:fujimoto-jax/hopper/sr-dice-v0 --num-seeds 5
The evaluated (target) policy is the dataset's own source policy (recorded by envs.collect), or --policy
<run folder> of a td3 / td7 / ddpg run (continuous) or a ddqn run (dqn-atari:). It is the policy with
Gaussian noise N(0, 0.1^2) on its [-1, 1] action, clipped (continuous), or greedy (dqn-atari:).

Per seed, three phases (phases 1-2 are shared by SR-DICE and Deep SR), each a lax.scan over chunks:
  1. Encoder-decoder (30k iterations, batch 256): phi(s, a) (ReLU, 256 dims) with decoders of s', a and
     a bias-free reward head r ~ <phi, w_r>; loss MSE(s') + 0.1 MSE(r) + MSE(a).
  2. Successor representation (100k, batch 256): psi(s, a) regresses phi(s, a) + gamma * not_done *
     psi_target(s', a'), a' from the target policy; Polyak 0.005 every iteration. phi is frozen.
  3. Estimation (--total-timesteps, 250k; estimates every --eval-freq, 1k), phi and psi frozen:
     - SR-DICE: W (256, initialised to ones) minimises 0.5 E_D[<phi(s,a), W>^2] - (1 - gamma) <E_s0[psi(s0,
       a0)], W> with <x, W> the MEAN over the 256 dims of x * W; batch 2048 transitions + 2048 start states;
       estimate E_D[<phi, W> r] over 10k sampled transitions.
     - Deep SR: w (ones) regresses r ~ <phi(s, a), w> (batch 2048); estimate (1 - gamma) E_s0[<psi(s0, a0), w>]
       over 2048 sampled start states.
     - Deep TD (FQE): Q(s, a) (256-256-1) regresses r + gamma * not_done * Q_target(s', a') (batch 256,
       Polyak 0.005); estimate (1 - gamma) E_s0[Q(s0, a0)] over 2048 start states.
All estimates are of the normalised value (1 - gamma) E[sum_t gamma^t r_t]. All optimisers Adam 3e-4.

dqn-atari: (the Atari code): phi(s) ignores the action: the Nature trunk (raw 0-255 pixels, no /255) ->
512 -> 256 (ReLU); its decoder 256 -> 3136 -> transposed convs 64-64 (3x3/1), 64-32 (4x4/2), 32-1 (8x8/4)
rebuilds the newest frame of s'; loss MSE(frame) + 0.1 MSE(r) + 0.1 mean(phi^2). psi(s) is the trunk ->
512 -> num_actions x 256 (one vector per action), the TD critic the trunk -> 512 -> num_actions. Adam
6.25e-5 (eps 1.5e-4) for phi, psi and Q, Adam 3e-4 for W and w; batch 32 everywhere (start states too);
hard target copies every 8k iterations; the evaluated action is the DDQN's greedy one (eps 0, as the
SR_DICE class); rewards clipped to [-1, 1] (the authors' buffer stores clipped rewards) in the data and the
ground truth; transitions ended by the 27k-step cap dropped. Estimates use 10k samples (their 100 x 100).

Ground truth (eval.csv's `truth`; config.json's replay_buffer.truth): (1 - gamma) x the mean over --eval-episodes
(100) episodes of sum_t gamma^t r_t with the evaluated policy itself (continuous: the noisy target policy;
dqn-atari: the greedy DDQN policy, no random actions), on envs seeded --truth-seed + i, each episode stopped
at its end or once gamma^t < 1e-4 (envs.gym.discounted_value). Their Atari ground-truth routine (atari/main.py
eval_policy) also takes random actions 10% of the time while their estimators evaluate the greedy policy; the
truth here is the value of the policy the estimators evaluate, so the error measures the estimators alone.
The metric: per seed and estimator, log10 of the squared error (estimate - truth)^2 (`log_se_<estimator>`),
at every estimate.

Deviations and notes:
- Deep SR shares phi and psi with SR-DICE of the same seed, and its w the same 2048-transition batch as W
  (the authors train the two in separate runs): their estimates are correlated, each follows its procedure.
- The authors' Atari SR-DICE estimate is 1/(1 - gamma) E_D[<phi, W> r] (the un-normalised value) while
  their Atari Deep TD reports (1 - gamma) E[Q]; here every estimate is the normalised value.
- The authors' Atari Deep SR estimate (atari/Deep_SR.py) takes the mean of psi(s0, a0) over the start states
  and the features before the product with w: (1 - gamma) mean(w) mean(psi), not the (1 - gamma)
  E_s0[<psi, w>] of their continuous Deep SR and of the method. Here (1 - gamma) E_s0[<psi, w>];
  --original-atari-deep-sr reproduces theirs (off by default).
- The authors' Atari buffer keeps the start states of the last 1,000 episodes only, and a batch that asks
  for more start states than it holds gets all of them; here every episode's start state is kept and
  batches are sampled with replacement.
- The authors' Atari buffer builds s' from the next stored frame, so the last stored transition of every
  episode gets the next episode's first frame as the newest frame of s' (the decoder's target; at a capped
  episode's last kept transition, also the bootstrapped state); here every transition has its own s'.
- The authors' eval_policy (continuous main.py) divides the discounted return by episodes x timesteps;
  its ground truth is not used (the issue's (1 - gamma) normalisation is).
- Start states are the first observation of every dataset episode (the authors store each reset's state,
  including one after the last episode that has no transition).
- Time-limit ends bootstrap (the authors' done_bool is 0 at the time limit); an Atari capped transition
  is dropped as in their Atari buffer, and so is the dataset's last transition when the collection's step
  budget cut its episode (stored as truncated; their buffer keeps it).
- Every random draw (batches, policy noise) comes from each seed's JAX key; seeds are vmapped.
- --total-timesteps counts estimation iterations (the authors' 250,001-iteration loop evaluates at k = 0,
  1000, ..., 250000 after the update; here at 0 before any update, then after every 1000).
"""

from __future__ import annotations

import os
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
from envs.runs import UserError

ALGO = "sr_dice"
ESTIMATORS = ("sr_dice", "deep_sr", "deep_td")

# The authors' settings: continuous main.py / the three classes, and their Atari parameters dict.
CONTINUOUS = dict(lr=3e-4, adam_eps=1e-8, batch_size=256, ope_batch_size=2048, start_batch_size=2048,
                  eval_batch_size=10_000, eval_start_batch_size=2048, target_update_freq=1, tau=0.005,
                  clip_rewards=False, drop_capped=False)
ATARI = dict(lr=6.25e-5, adam_eps=1.5e-4, batch_size=32, ope_batch_size=32, start_batch_size=32,
             eval_batch_size=10_000, eval_start_batch_size=10_000, target_update_freq=8_000, tau=1.0,
             clip_rewards=True, drop_capped=True)
PRESETS = {"atari": ATARI, "continuous": CONTINUOUS}


def suite_of(env_id: str) -> str:
    return "atari" if env_id.startswith("dqn-atari:") else "continuous"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    dataset: str = ""
    """offline data with start states: minari:<dataset id> or d4rl:<path> (make one with python -m envs.collect
    --recipe sr-dice --checkpoint <the target policy's run>)"""
    policy: runs.UnsetStr = ""
    """run folder of the evaluated policy (td3/td7/ddpg, or ddqn on dqn-atari:); default: the dataset's source"""
    policy_seed: runs.UnsetInt = -1
    """which seed of that run is evaluated (its seed value); default: the dataset's, else the run's first"""
    env_id: runs.UnsetStr = ""
    """env of the ground truth; default: the dataset's own"""
    seed: int = 0
    """seed of the first estimator; estimator i uses seed + i"""
    num_seeds: int = 1
    """number of independent estimators (networks, keys) trained together in this process (vmapped)"""
    total_timesteps: int = 250_000
    """iterations of the estimation phase (SR-DICE's W, Deep SR's w, deep TD's critic)"""
    eval_freq: int = 1_000
    """estimate every this many estimation iterations (and at 0 and at the end)"""
    eval_episodes: int = 100
    """episodes of the noisy target policy whose normalised discounted return is the ground truth"""
    truth_seed: int = 100
    """the ground-truth envs are seeded truth_seed + i (i < 10), its noise drawn from default_rng(truth_seed)"""
    truth_tol: float = 1e-4
    """a ground-truth episode stops once gamma^t < truth_tol (the rest weighs at most truth_tol x max |r|)"""
    estimators: str = "sr_dice,deep_sr,deep_td"
    """comma-separated estimators to train: sr_dice, deep_sr, deep_td"""
    # SR-DICE
    encoder_iterations: int = 30_000
    """phase 1: encoder-decoder iterations"""
    sr_iterations: int = 100_000
    """phase 2: successor-representation iterations"""
    discount: float = 0.99
    """discount factor gamma"""
    target_noise: float = 0.1
    """std of the Gaussian noise of the continuous target policy, in units of max_action"""
    latent_dim: int = 256
    """dimension of phi, psi, W and w"""
    hidden_dim: int = 256
    """width of the continuous networks' hidden layers"""
    reward_weight: float = 0.1
    """weight of the reward reconstruction in the encoder-decoder loss"""
    latent_penalty: float = 0.1
    """dqn-atari: weight of mean(phi^2) in the encoder-decoder loss"""
    w_lr: float = 3e-4
    """Adam learning rate of W and w"""
    lr: Optional[float] = None
    """Adam learning rate of phi, psi and the TD critic; unset: dqn-atari 6.25e-5, else 3e-4"""
    adam_eps: Optional[float] = None
    """Adam epsilon of phi, psi and the TD critic; unset: dqn-atari 1.5e-4, else 1e-8"""
    batch_size: Optional[int] = None
    """batch of phases 1-2 and of deep TD; unset: dqn-atari 32, else 256"""
    ope_batch_size: Optional[int] = None
    """transitions per W / w iteration; unset: dqn-atari 32, else 2048"""
    start_batch_size: Optional[int] = None
    """start states per W iteration; unset: dqn-atari 32, else 2048"""
    eval_batch_size: Optional[int] = None
    """transitions of each SR-DICE estimate; unset: 10k"""
    eval_start_batch_size: Optional[int] = None
    """start states of each Deep SR / deep TD estimate; unset: dqn-atari 10k, else 2048"""
    target_update_freq: Optional[int] = None
    """iterations between target updates of psi and Q; unset: dqn-atari 8k (hard copies), else 1"""
    tau: Optional[float] = None
    """target update rate (1 = hard copy); unset: dqn-atari 1, else 0.005 (Polyak)"""
    clip_rewards: Optional[bool] = None
    """clip rewards to [-1, 1] in the data and the ground truth; unset: dqn-atari yes, else no"""
    drop_capped: Optional[bool] = None
    """drop the dataset's truncated transitions; unset: dqn-atari yes (the authors' Atari buffer), else they
    bootstrap"""
    original_atari_deep_sr: bool = False
    """dqn-atari: Deep SR's estimate as the authors' atari/Deep_SR.py computes it, (1 - gamma) mean(w) x
    mean(psi(s0, a0)) (psi averaged before the product); off: (1 - gamma) E_s0[<psi(s0, a0), w>]"""


def resolve_presets(args: Args) -> Args:
    """Fill the flags left unset from the suite's preset."""
    preset = PRESETS[suite_of(args.env_id)]
    return Args(**{**asdict(args), **{k: v for k, v in preset.items() if getattr(args, k) is None}})


def estimators_of(args: Args) -> tuple[str, ...]:
    names = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
    bad = [e for e in names if e not in ESTIMATORS]
    if bad or not names or len(set(names)) != len(names):
        raise UserError(f"--estimators {args.estimators!r}: a comma-separated list of distinct "
                        f"{', '.join(ESTIMATORS)}")
    return names


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("encoder_iterations", "sr_iterations", "latent_dim", "hidden_dim", "batch_size",
                                  "ope_batch_size", "start_batch_size", "eval_batch_size", "eval_start_batch_size",
                                  "target_update_freq"),
                    nonneg=("reward_weight", "latent_penalty", "target_noise", "truth_seed"),
                    positive=("lr", "adam_eps", "w_lr", "truth_tol"), unit=("tau",))
    if not 0.0 < args.discount < 1.0:
        raise UserError(f"--discount must be in (0, 1) (the values are normalised by 1 - gamma), got {args.discount}")
    if args.truth_tol >= 1.0:
        raise UserError(f"--truth-tol must be in (0, 1), got {args.truth_tol}")
    estimators_of(args)
    if args.original_atari_deep_sr and suite_of(args.env_id) != "atari":
        raise UserError("--original-atari-deep-sr reproduces the authors' atari/Deep_SR.py estimate; it applies to "
                        f"dqn-atari: envs only, not {args.env_id}")


# ---------------------------------------------------------------------------------------------
# Networks (torch's default initialisation throughout)
# ---------------------------------------------------------------------------------------------
def _torch_uniform(fan_in: int):
    bound = 1.0 / np.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Linear(nn.Module):
    """torch.nn.Linear with its default initialisation: weight and bias ~ U(+-1/sqrt(fan_in))."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        init = _torch_uniform(x.shape[-1])
        y = x @ self.param("kernel", init, (x.shape[-1], self.features))
        return y + self.param("bias", init, (self.features,)) if self.use_bias else y


class Conv(nn.Module):
    """torch.nn.Conv2d (VALID) with its default initialisation, fan_in = in_channels * k * k."""

    features: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, C]
        init = _torch_uniform(x.shape[-1] * self.kernel ** 2)
        return nn.Conv(self.features, (self.kernel, self.kernel), self.stride, padding="VALID", kernel_init=init,
                       bias_init=init)(x)


class ConvTranspose(nn.Module):
    """torch.nn.ConvTranspose2d (no padding: out = (in - 1) * stride + k); torch's fan_in of its weight
    [in, out, k, k] is out_channels * k * k."""

    features: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, C]
        init = _torch_uniform(self.features * self.kernel ** 2)
        return nn.ConvTranspose(self.features, (self.kernel, self.kernel), (self.stride, self.stride),
                                padding="VALID", kernel_init=init, bias_init=init)(x)


class Trunk(nn.Module):
    """The Nature-DQN trunk of [B, 4, 84, 84] uint8 stacks (raw 0-255 values) -> 512 (ReLU)."""

    @nn.compact
    def __call__(self, obs):
        x = jnp.moveaxis(obs.astype(jnp.float32), -3, -1)  # [B, C, H, W] -> [B, H, W, C]
        for features, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
            x = nn.relu(Conv(features, kernel, stride)(x))
        return nn.relu(Linear(512)(x.reshape(*x.shape[:-3], -1)))  # 7 * 7 * 64 = 3136 -> 512


class EncoderDecoder(nn.Module):
    """Continuous: phi(s, a) = ReLU MLP (s || a) -> 256 -> 256, decoders of s' and a (256 -> 256 -> dim), a
    bias-free reward head. Atari: phi(s) (the action is ignored) = trunk -> 512 -> 256 (ReLU), a frame
    decoder of the newest frame of s', the bias-free reward head. ``__call__`` returns (s' or frame, r,
    a or None, phi); ``latent`` phi alone."""

    atari: bool
    obs_dim: int
    action_dim: int
    latent_dim: int = 256
    hidden_dim: int = 256

    def setup(self):
        if self.atari:
            self.trunk, self.enc = Trunk(), Linear(self.latent_dim)
            self.dec_in = Linear(3136)
            self.dec = [ConvTranspose(64, 3, 1), ConvTranspose(32, 4, 2), ConvTranspose(1, 8, 4)]
        else:
            self.e1, self.e2 = Linear(self.hidden_dim), Linear(self.latent_dim)
            self.s1, self.s2 = Linear(self.hidden_dim), Linear(self.obs_dim)
            self.a1, self.a2 = Linear(self.hidden_dim), Linear(self.action_dim)
        self.reward = Linear(1, use_bias=False)

    def latent(self, obs, action):
        if self.atari:
            return nn.relu(self.enc(self.trunk(obs)))
        return nn.relu(self.e2(nn.relu(self.e1(jnp.concatenate([obs, action], -1)))))

    def __call__(self, obs, action):
        lat = self.latent(obs, action)
        r = self.reward(lat)[..., 0]
        if self.atari:
            x = nn.relu(self.dec_in(lat)).reshape(*lat.shape[:-1], 7, 7, 64)  # torch's [64, 7, 7], channels last
            x = nn.relu(self.dec[0](x))  # 9 x 9
            x = nn.relu(self.dec[1](x))  # 20 x 20
            return self.dec[2](x)[..., 0], r, None, lat  # [B, 84, 84]
        return self.s2(nn.relu(self.s1(lat))), r, self.a2(nn.relu(self.a1(lat))), lat


class Successor(nn.Module):
    """psi. Continuous: (s || a) -> 256 -> 256 -> latent (linear output). Atari: trunk -> 512 -> A x latent,
    one vector per action. Returns [B, latent] for the given actions."""

    atari: bool
    num_actions: int = 0
    latent_dim: int = 256
    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs, action):
        if self.atari:
            x = Linear(self.num_actions * self.latent_dim)(Trunk()(obs))
            x = x.reshape(*x.shape[:-1], self.num_actions, self.latent_dim)
            return jnp.take_along_axis(x, action[..., None, None], -2)[..., 0, :]
        x = nn.relu(Linear(self.hidden_dim)(jnp.concatenate([obs, action], -1)))
        x = nn.relu(Linear(self.hidden_dim)(x))
        return Linear(self.latent_dim)(x)


class Critic(nn.Module):
    """Deep TD's Q. Continuous: (s || a) -> 256 -> 256 -> 1. Atari: trunk -> 512 -> num_actions. -> [B]."""

    atari: bool
    num_actions: int = 0
    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs, action):
        if self.atari:
            q = Linear(self.num_actions)(Trunk()(obs))
            return jnp.take_along_axis(q, action[..., None], -1)[..., 0]
        x = nn.relu(Linear(self.hidden_dim)(jnp.concatenate([obs, action], -1)))
        return Linear(1)(nn.relu(Linear(self.hidden_dim)(x)))[..., 0]


# ---------------------------------------------------------------------------------------------
# The losses, targets and estimates as pure functions (shapes: [B, ...] batches, [D] weights)
# ---------------------------------------------------------------------------------------------
def mse(x, y):
    return jnp.mean(jnp.square(x - y))


def encoder_decoder_loss(next_hat, next_obs, r_hat, reward, action_hat=None, action=None, latent=None,
                         reward_weight=0.1, latent_penalty=0.1):
    """Continuous: MSE(s') + reward_weight MSE(r) + MSE(a). Atari (no action decoder): MSE(frame) +
    reward_weight MSE(r) + latent_penalty mean(phi^2)."""
    loss = mse(next_hat, next_obs) + reward_weight * mse(r_hat, reward)
    if action_hat is not None:
        return loss + mse(action_hat, action)
    return loss + latent_penalty * jnp.mean(jnp.square(latent))


def sr_target(latent, psi_next, not_done, discount):
    """phi(s, a) + gamma * not_done * psi_target(s', a'): [B, D]."""
    return latent + discount * not_done[:, None] * psi_next


def inner(x, w):
    """<x, w>: the MEAN over the feature dimension of x * w (the authors' scale): [B, D], [D] -> [B]."""
    return jnp.mean(x * w, -1)


def w_loss(W, latent, start_psi, discount):
    """SR-DICE's density-ratio objective: 0.5 E_D[<phi, W>^2] - (1 - gamma) <E_s0[psi(s0, a0)], W>."""
    start = (1.0 - discount) * jnp.mean(start_psi, 0)  # [D]
    return 0.5 * jnp.mean(jnp.square(inner(latent, W))) - jnp.mean(start * W)


def sr_dice_estimate(W, latent, reward):
    """E_D[<phi(s, a), W> r]: the normalised value (1 - gamma) E[sum_t gamma^t r_t]."""
    return jnp.mean(inner(latent, W) * reward)


def deep_sr_loss(w, latent, reward):
    """Deep SR's reward regression: MSE(<phi(s, a), w>, r)."""
    return mse(inner(latent, w), reward)


def deep_sr_estimate(w, start_psi, discount, original_atari=False):
    """(1 - gamma) E_s0[<psi(s0, a0), w>]; ``original_atari``: the authors' Atari form (1 - gamma) mean(w) mean(psi)."""
    if original_atari:
        return (1.0 - discount) * jnp.mean(w) * jnp.mean(start_psi)
    return (1.0 - discount) * jnp.mean(inner(start_psi, w))


def td_target(reward, q_next, not_done, discount):
    """r + gamma * not_done * Q_target(s', a'): [B]."""
    return reward + discount * not_done * q_next


def deep_td_estimate(q_start, discount):
    """(1 - gamma) E_s0[Q(s0, a0)]."""
    return (1.0 - discount) * jnp.mean(q_start)


def log_squared_error(estimate, truth):
    """The reported error: log10 (estimate - truth)^2."""
    return np.log10(np.square(np.asarray(estimate, np.float64) - truth))


# ---------------------------------------------------------------------------------------------
# Learner state (one seed; vmapped to [num_seeds, ...]) and the dataset (one copy for all seeds)
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    ed: dict  # phi and its decoders
    ed_opt: optax.OptState
    psi: dict
    psi_target: dict
    psi_opt: optax.OptState
    W: jax.Array  # [D] SR-DICE
    W_opt: optax.OptState
    w: jax.Array  # [D] Deep SR
    w_opt: optax.OptState
    q: dict  # deep TD
    q_target: dict
    q_opt: optax.OptState
    key: jax.Array
    sr_iterations: jax.Array  # SR updates so far (the hard-copy schedule)
    td_iterations: jax.Array


class Data(NamedTuple):
    """Continuous: table = s rows, next_table = s' rows, obs_idx [N, 1] = arange, start rows in start_table.
    dqn-atari: one frame table (row 0 zeros), obs_idx / next_idx / start_idx [., 4] rows, oldest first."""

    table: jax.Array
    next_table: jax.Array
    start_table: jax.Array
    obs_idx: jax.Array
    next_idx: jax.Array
    start_idx: jax.Array
    action: jax.Array  # [N, action_dim] in [-1, 1], or [N] int32
    reward: jax.Array  # [N] (clipped with --clip-rewards)
    not_done: jax.Array  # [N] 0 only for real terminations


class Agent(NamedTuple):
    init: callable
    ed_chunk: callable
    sr_chunk: callable
    ope_chunk: callable
    estimate: callable


def make_agent(args: Args, obs_shape: tuple, action_dim: int, target, atari: bool) -> Agent:
    """``target(obs [B, ...]) -> greedy/deterministic action [B, ...]`` (a JAX function of the evaluated
    policy); the continuous target policy adds N(0, target_noise^2) and clips."""
    names = estimators_of(args)
    D = args.latent_dim
    ed_net = EncoderDecoder(atari, obs_shape[0], action_dim, D, args.hidden_dim)
    psi_net = Successor(atari, action_dim, D, args.hidden_dim)
    q_net = Critic(atari, action_dim, args.hidden_dim)
    opt = optax.adam(args.lr, eps=args.adam_eps)
    w_opt = optax.adam(args.w_lr)
    gamma = args.discount

    def stacks(table, idx):
        return table[idx].reshape(idx.shape[0], *obs_shape)

    def sample(key, data, size):
        i = jax.random.randint(key, (size,), 0, data.reward.shape[0])
        if atari:
            return stacks(data.table, data.obs_idx[i]), data.action[i], data.reward[i], \
                stacks(data.table, data.next_idx[i]), data.not_done[i]
        return data.table[i], data.action[i], data.reward[i], data.next_table[i], data.not_done[i]

    def sample_starts(key, data, size):
        j = jax.random.randint(key, (size,), 0, data.start_idx.shape[0])
        return stacks(data.table, data.start_idx[j]) if atari else data.start_table[j]

    def policy_action(key, obs):
        """a ~ the evaluated policy: greedy (Atari) or clip(mu(s) + N(0, target_noise^2), -1, 1)."""
        a = target(obs)
        if atari:
            return a.astype(jnp.int32)
        return jnp.clip(a + args.target_noise * jax.random.normal(key, a.shape), -1.0, 1.0)

    def init(key):
        key, k_ed, k_psi, k_q = jax.random.split(key, 4)
        obs = jnp.zeros((1, *obs_shape), jnp.uint8 if atari else jnp.float32)
        act = jnp.zeros((1,), jnp.int32) if atari else jnp.zeros((1, action_dim))
        ed = ed_net.init(k_ed, obs, act)
        psi = psi_net.init(k_psi, obs, act)
        q = q_net.init(k_q, obs, act)
        W = w = jnp.ones((D,))
        zero = jnp.zeros((), jnp.int32)
        return Learner(ed, opt.init(ed), psi, psi, opt.init(psi), W, w_opt.init(W), w, w_opt.init(w), q, q,
                       opt.init(q), key, zero, zero)

    def regress(net, params, target_params, opt_state, iterations, obs, action, y):
        """One Adam step of MSE(net(s, a), y), then the target update: Polyak with tau every
        target_update_freq iterations (tau = 1: the Atari hard copy). psi (phase 2) and deep TD's Q."""
        loss, grads = jax.value_and_grad(lambda p: mse(net.apply(p, obs, action), jax.lax.stop_gradient(y)))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        params, iterations = optax.apply_updates(params, updates), iterations + 1
        due = iterations % args.target_update_freq == 0
        target_params = jax.tree.map(lambda p, t: jnp.where(due, args.tau * p + (1 - args.tau) * t, t), params,
                                     target_params)
        return params, target_params, opt_state, iterations, loss

    # --- Phase 1: encoder-decoder -------------------------------------------------------------
    def ed_step(learner, data):
        key, k_b = jax.random.split(learner.key)
        obs, action, reward, next_obs, _ = sample(k_b, data, args.batch_size)

        def loss_fn(params):
            next_hat, r_hat, action_hat, lat = ed_net.apply(params, obs, action)
            goal = next_obs[:, -1].astype(jnp.float32) if atari else next_obs  # the newest frame of s'
            return encoder_decoder_loss(next_hat, goal, r_hat, reward, action_hat, None if atari else action,
                                        lat, args.reward_weight, args.latent_penalty)

        loss, grads = jax.value_and_grad(loss_fn)(learner.ed)
        updates, ed_opt = opt.update(grads, learner.ed_opt, learner.ed)
        return learner._replace(ed=optax.apply_updates(learner.ed, updates), ed_opt=ed_opt, key=key), loss

    # --- Phase 2: successor representation -----------------------------------------------------
    def sr_step(learner, data):
        key, k_b, k_a = jax.random.split(learner.key, 3)
        obs, action, _, next_obs, not_done = sample(k_b, data, args.batch_size)
        lat = ed_net.apply(learner.ed, obs, action, method=EncoderDecoder.latent)
        psi_next = psi_net.apply(learner.psi_target, next_obs, policy_action(k_a, next_obs))
        psi, psi_target, psi_opt, it, loss = regress(psi_net, learner.psi, learner.psi_target, learner.psi_opt,
                                                     learner.sr_iterations, obs, action,
                                                     sr_target(lat, psi_next, not_done, gamma))
        return learner._replace(psi=psi, psi_target=psi_target, psi_opt=psi_opt, key=key, sr_iterations=it), loss

    # --- Phase 3: the estimators ---------------------------------------------------------------
    def ope_step(learner, data):
        key, k_b, k_s, k_a, k_td, k_tda = jax.random.split(learner.key, 6)
        metrics = {}
        if "sr_dice" in names or "deep_sr" in names:
            obs, action, reward, _, _ = sample(k_b, data, args.ope_batch_size)
            lat = ed_net.apply(learner.ed, obs, action, method=EncoderDecoder.latent)
        if "sr_dice" in names:
            s0 = sample_starts(k_s, data, args.start_batch_size)
            start_psi = psi_net.apply(learner.psi, s0, policy_action(k_a, s0))
            loss, g = jax.value_and_grad(w_loss)(learner.W, lat, start_psi, gamma)
            updates, W_opt = w_opt.update(g, learner.W_opt)
            learner = learner._replace(W=optax.apply_updates(learner.W, updates), W_opt=W_opt)
            metrics["w_loss"] = loss
        if "deep_sr" in names:
            loss, g = jax.value_and_grad(deep_sr_loss)(learner.w, lat, reward)
            updates, w_opt_state = w_opt.update(g, learner.w_opt)
            learner = learner._replace(w=optax.apply_updates(learner.w, updates), w_opt=w_opt_state)
            metrics["deep_sr_loss"] = loss
        if "deep_td" in names:
            obs, action, reward, next_obs, not_done = sample(k_td, data, args.batch_size)
            q_next = q_net.apply(learner.q_target, next_obs, policy_action(k_tda, next_obs))
            q, q_target, q_opt, it, loss = regress(q_net, learner.q, learner.q_target, learner.q_opt,
                                                   learner.td_iterations, obs, action,
                                                   td_target(reward, q_next, not_done, gamma))
            learner = learner._replace(q=q, q_target=q_target, q_opt=q_opt, td_iterations=it)
            metrics["td_loss"] = loss
        return learner._replace(key=key), metrics

    def estimate(learner, data):
        """Each trained estimator's current estimate of the normalised value."""
        key, k_b, k_s, k_a = jax.random.split(learner.key, 4)
        out = {}
        s0 = sample_starts(k_s, data, args.eval_start_batch_size)
        a0 = policy_action(k_a, s0)
        if "sr_dice" in names:
            obs, action, reward, _, _ = sample(k_b, data, args.eval_batch_size)
            lat = ed_net.apply(learner.ed, obs, action, method=EncoderDecoder.latent)
            out["sr_dice"] = sr_dice_estimate(learner.W, lat, reward)
        if "deep_sr" in names:
            out["deep_sr"] = deep_sr_estimate(learner.w, psi_net.apply(learner.psi, s0, a0), gamma,
                                              args.original_atari_deep_sr)
        if "deep_td" in names:
            out["deep_td"] = deep_td_estimate(q_net.apply(learner.q, s0, a0), gamma)
        return learner._replace(key=key), out

    def chunk(step_fn):
        def run_chunk(learner, data, iterations):
            learner, metrics = jax.lax.scan(lambda lrn, _: step_fn(lrn, data), learner, None, length=iterations)
            return learner, jax.tree.map(jnp.mean, metrics)
        return jax.jit(jax.vmap(run_chunk, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0)

    return Agent(
        init=jax.jit(jax.vmap(init)),
        ed_chunk=chunk(ed_step),
        sr_chunk=chunk(sr_step),
        ope_chunk=chunk(ope_step),
        estimate=jax.jit(jax.vmap(estimate, in_axes=(0, None))),
    )


# ---------------------------------------------------------------------------------------------
# The dataset and the evaluated policy
# ---------------------------------------------------------------------------------------------
def load_data(args: Args, atari: bool):
    """(host dataset, device Data): continuous Transitions or dqn-atari Frames, with start states."""
    timeouts = "drop" if args.drop_capped else "bootstrap"
    if atari:
        data = offline.load_discrete(args.dataset, args.env_id, timeouts=timeouts)
        start_rows, starts = data.start_idx, np.zeros((1, 1), np.float32)
        table, next_table, obs_idx, next_idx = data.table, np.zeros((1, 1), np.float32), data.obs_idx, data.next_idx
    else:
        data = offline.load(args.dataset, args.env_id, timeouts=timeouts)
        starts = data.start_obs.astype(np.float32)
        start_rows = np.zeros((len(starts), 1), np.int32)
        table, next_table = data.obs, data.next_obs
        obs_idx = next_idx = np.zeros((1, 1), np.int32)  # unused: rows are the transitions themselves
    if len(start_rows) == 0:
        raise UserError(f"--dataset {args.dataset}: no episode start states")
    reward = data.reward
    if args.clip_rewards:
        from envs.atari import clip_reward  # the DQN-era clip to [-1, 1], as the authors store rewards
        reward = clip_reward(reward)
    device = Data(*(jnp.asarray(x) for x in (table, next_table, starts, obs_idx, next_idx, start_rows, data.action,
                                             np.asarray(reward, np.float32), 1.0 - data.terminated)))
    return data, device


def target_policy(args: Args):
    """The evaluated policy (envs.collect.SavedRun): (a JAX function obs [B, ...] -> action [B, ...], facts)."""
    from envs.collect import SavedRun
    source = (offline.collection_facts(args.dataset).get("policies") or [{}])[0]  # the policy that collected it
    run_dir = args.policy or source.get("run", "")
    if not run_dir:
        raise UserError(f"--dataset {args.dataset} does not record the policy that collected it; pass --policy "
                        "<run folder> of the evaluated policy")
    seed = args.policy_seed if args.policy_seed >= 0 else source.get("seed", -1) if not args.policy else -1
    saved = SavedRun(run_dir, seed, 1)
    if saved.saved.env_id != args.env_id:
        raise UserError(f"--policy {run_dir} was trained on {saved.saved.env_id}, not {args.env_id}")
    facts = {"run": os.path.abspath(run_dir), "algo": saved.algo, "seed": saved.seed, "step": int(saved.ckpt.step)}
    return jax.vmap(lambda o: saved.policy(o[None])[0]), facts, saved.discrete


def ground_truth(args: Args, target, atari: bool) -> dict:
    """(1 - gamma) E[sum_t gamma^t r_t] of the noisy target policy (module docstring)."""
    rng = np.random.default_rng(args.truth_seed)
    act = jax.jit(target)

    def policy(obs):
        a = np.asarray(act(jnp.asarray(obs)))
        if atari:
            return a.astype(np.int64)
        return np.clip(a + args.target_noise * rng.standard_normal(a.shape), -1.0, 1.0).astype(np.float32)

    reward_fn = None
    if args.clip_rewards:
        from envs.atari import clip_reward
        reward_fn = clip_reward
    truth = envs.gym.discounted_value(args.env_id, policy, args.eval_episodes, args.truth_seed, args.discount,
                                      args.truth_tol, reward_fn=reward_fn, discrete_ok=atari, pixels_ok=atari)
    truth.pop("sums")
    return truth


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Estimate the target policy's value with args.num_seeds independent copies of each estimator."""
    offline.resolve_env(args)
    names = estimators_of(args)
    header = runs.EVAL_HEADER + ["truth"] + list(names) + [f"log_se_{e}" for e in names]
    run = runs.Run(ALGO, args, Args, eval_header=header)
    run.args = args = resolve_presets(run.args)  # with --resume, the checkpoint's args
    seeds = run.seeds
    check_args(args)
    atari = suite_of(args.env_id) == "atari"
    target, policy_facts, discrete = target_policy(args)
    if discrete != atari:
        raise UserError(f"--env-id {args.env_id}: SR-DICE here evaluates continuous-action policies on vector "
                        "envs (td3/td7/ddpg) or Double DQN policies on dqn-atari:<Game>; got a "
                        f"{policy_facts['algo']} policy")
    data, device_data = load_data(args, atari)
    obs_shape = tuple(data.obs_shape) if atari else (data.obs.shape[1],)
    action_dim = data.num_actions if atari else data.action.shape[1]
    agent = run.devices.agent(make_agent(args, obs_shape, action_dim, target, atari))
    on_device = run.devices.replicate(device_data)
    learner = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    t0 = 0
    if run.checkpoint:
        offline.check_resume(data, run.checkpoint.host)
        learner, t0 = run.checkpoint.load({"learner": learner}, args=args)[0]["learner"], run.checkpoint.step
        truth = run.checkpoint.host["truth"]
    else:
        tt = time.time()
        truth = ground_truth(args, target, atari)
        truth["seconds"] = round(time.time() - tt, 1)
    info = offline.describe(data, sum(x.nbytes for x in on_device))
    info["start_states"] = int(device_data.start_idx.shape[0])
    run.start({"dataset": info, "policy": policy_facts, "truth": truth, "estimators": list(names)})
    run.print(f"dataset {args.dataset}: {len(data)} transitions, {info['start_states']} start states; evaluating "
              f"{policy_facts['algo']} seed {policy_facts['seed']} step {policy_facts['step']}")
    run.print(f"ground truth (1 - gamma) E[sum gamma^t r] = {truth['value']:.5g} +- {truth['stderr'] or 0:.2g} "
              f"({truth['episodes']} episodes, horizon {truth['horizon']}, mean length {truth['mean_length']:.0f})")

    timing = {"compile_s": None, "updates": 0, "seconds": 0.0}
    if t0 == 0 and {"sr_dice", "deep_sr"} & set(names):  # phases 1-2 (deep TD alone needs neither phi nor psi)
        for phase, total, step_chunk in (("encoder-decoder", args.encoder_iterations, agent.ed_chunk),
                                         ("successor representation", args.sr_iterations, agent.sr_chunk)):
            done, tp = 0, time.time()
            while done < total:
                n = min(args.eval_freq, total - done)
                learner, loss = step_chunk(learner, on_device, n)
                done += n
                loss = np.asarray(jax.device_get(loss))
                run.check_finite({f"{phase} loss": loss}, done)
                if done == total or done % (10 * args.eval_freq) == 0:
                    run.print(f"{phase}: {done}/{total} iterations, loss per seed "
                              + " ".join(f"{v:.4g}" for v in loss) + f" ({time.time() - tp:.0f} s)")

    metrics, last = {}, None

    def evaluate(step):
        nonlocal learner, last
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        learner, est = agent.estimate(learner, on_device)
        est = {k: np.asarray(v, np.float64) for k, v in jax.device_get(est).items()}
        run.check_finite({f"{k} estimate": v for k, v in est.items()}, step)
        rows = []
        for i, s in enumerate(seeds):
            row = {"seed": s, "step": step, "return": est[names[0]][i], "truth": f"{truth['value']:.6g}"}
            for e in names:
                row[e] = f"{est[e][i]:.6g}"
                row[f"log_se_{e}"] = f"{float(log_squared_error(est[e][i], truth['value'])):.4f}"
            rows.append(row)
        run.evaluation(rows, host_metrics)
        last = est
        run.print(f"step {step:>8d}  log10 squared error (mean over seeds): " + ", ".join(
            f"{e} {float(np.mean(log_squared_error(est[e], truth['value']))):.2f}" for e in names))

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        step = t0
        while step < args.total_timesteps:
            n = min(args.eval_freq - step % args.eval_freq, args.total_timesteps - step)
            tc = time.time()
            learner, metrics = agent.ope_chunk(learner, on_device, n)
            jax.block_until_ready(learner)
            if timing["compile_s"] is None:
                timing["compile_s"] = time.time() - tc
            else:
                timing["updates"], timing["seconds"] = timing["updates"] + n, timing["seconds"] + time.time() - tc
            step += n
            run.advance(step, timing["updates"] / timing["seconds"] if timing["seconds"] else None)
            evaluate(step)
            if run.checkpoint_due(step):
                run.save(step, {"learner": learner}, {"t": step, "dataset": info["fingerprint"], "truth": truth})
    run.close()
    return {"run_dir": run.dir, "learner": learner, "estimates": last, "truth": truth, "dataset": data,
            "compile_s": timing["compile_s"],
            "updates_per_s": timing["updates"] / timing["seconds"] if timing["seconds"] else None}


def evaluate_checkpoint(args: Args):
    raise UserError("sr_dice estimates a value and has no policy of its own; --eval-only does not apply "
                    "(the estimates over training are in the run's eval.csv)")


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
