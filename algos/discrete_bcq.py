"""Discrete BCQ: batch-constrained Q-learning for discrete actions, offline, in JAX, many seeds per process.

Paper: S. Fujimoto, E. Conti, M. Ghavamzadeh, J. Pineau. "Benchmarking Batch Deep Reinforcement Learning
Algorithms". NeurIPS 2019 Deep RL workshop. arXiv:1910.01708.
Follows: github.com/sfujim/BCQ @ 4876f7e5afa9eb2981feec5daf67202514477518, discrete_BCQ/ (discrete_BCQ.py,
main.py: its atari_parameters and regular_parameters dicts, utils.py: the Atari buffer).

Usage:  python algos/discrete_bcq.py --dataset minari:fujimoto-jax/dqn-atari-pong/behavioural-v0 --num-seeds 4
        python algos/discrete_bcq.py --dataset minari:fujimoto-jax/cartpole/behavioural-v0
Buffers: python -m envs.collect --recipe behavioural --checkpoint <a ddqn run with --save-model>

One network: a shared trunk with a Q head and an imitation head pi_b(a | s) (the behaviour policy's
softmax). Each iteration, on a uniform batch:
  1. Actions the data makes likely at s': keep a with pi_b(a | s') / max_a' pi_b(a' | s') > tau (0.3),
     relative to the most likely action, not pi_b > tau; the current network's imitation head decides.
  2. a' = argmax of the CURRENT network's Q(s', .) over the kept actions; y = r + gamma * (1 -
     terminated) * Q_target(s', a') (the TARGET network values it, Double-DQN style).
  3. Loss = Huber(Q(s, a) - y) (smooth L1, delta 1) + NLL(log pi_b(a | s)) + 0.01 * mean(logits^2)
     (the imitation head's pre-softmax logits); one Adam step on the whole network.
  4. Target: every target_update_freq iterations, target <- tau_t * Q + (1 - tau_t) * target.
Acting (evaluation): the same thresholded argmax on s, a uniform action with probability eval_eps.

Presets by suite (the authors' two dicts; any flag overrides):
- dqn-atari: (DQN-era Atari, 4 x 84 x 84 uint8 stacks): Adam 6.25e-5 (eps 1.5e-4), batch 32, hard target
  copy every 8k iterations, evaluation every 50k iterations with eval_eps 0.001, rewards clipped to
  [-1, 1] (envs.atari.clip_reward: the authors store clipped rewards; returns are reported raw), the
  transition ended by the 27k-step cap dropped (the authors never store it). Network: the Nature trunk
  32(8x8/4)-64(4x4/2)-64(3x3/1), flatten 3136, then each head 512 -> num_actions.
- everything else: Adam 3e-4 (eps 1e-8, torch's default), batch 64, Polyak 0.005 every iteration,
  evaluation every 5k iterations with eval_eps 0 (greedy), unclipped rewards, time-limit transitions kept
  and bootstrapped (the authors' buffer stores done = 0 at the time limit). Vectors: FC_Q, two separate
  MLPs state -> 256 -> 256 -> num_actions. minatar: (10 x 10 x C states): conv 16 (3x3/1, VALID) shared,
  then each head 128 -> num_actions, the MinAtar paper's DQN net (Young & Tian 2019); a choice of ours:
  the authors had no MinAtar.
Every layer has torch's default initialisation, weight and bias ~ U(+-1/sqrt(fan_in)) (fan_in of a conv
= in_channels * kh * kw). Pixels enter as raw 0-255 values, cast to float and NOT divided by 255 (Adam's
eps 1.5e-4 was tuned for that scale); --scale-obs divides by 255, a deviation.

Data (envs/offline.py load_discrete): the dataset is stored once on the device for all seeds (each draws
its own indices) as a table holding every observation once and per transition the table rows of s and
s'. For frame-stacked envs (dqn-atari:) the rows are single 84 x 84 frames, a transition holds 4 rows per
observation, row 0 is a zero frame (the frames before an episode's start), and the update rebuilds the
stacks inside the jitted step (1M transitions take 7 GB instead of 2 x 28 GB of full stacks).

Deviations and notes:
- Frame stacks have the newest frame last (the authors: first), an equivalent permutation of the input
  channels. The authors' buffer rebuilds a stack from frames of the previous episode when the buffer
  holds a dropped capped transition's frame; ours rebuilds exactly the env's stacks.
- The authors' Atari loop stops at max_timesteps inside an episode and keeps that episode's last
  transition; envs.collect ends such an episode with a truncation, which the Atari preset drops (one
  transition per collection env).
- Every random draw (batch indices, evaluation epsilon) comes from each seed's JAX key.
- --total-timesteps counts gradient steps per seed (the authors' max_timesteps, in iterations). eval.csv
  has a step-0 row and the final step is evaluated when total_timesteps is not a multiple of eval_freq.
- --bcq-threshold 0 keeps every action (p / max p > 0 always holds): offline Double DQN with Adam and
  the same network, whose imitation head then trains but never acts.
- The logged losses are the means over each chunk of eval_freq updates; `kept_actions` is the mean
  number of actions the threshold keeps at s'.
"""

from __future__ import annotations

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

ALGO = "discrete_bcq"

# The authors' two dicts (discrete_BCQ/main.py): atari_parameters and regular_parameters.
ATARI = dict(eval_freq=50_000, eval_eps=0.001, batch_size=32, lr=6.25e-5, adam_eps=1.5e-4, target_update_freq=8_000,
             tau=1.0, hidden_dim=512, clip_rewards=True, drop_capped=True)
REGULAR = dict(eval_freq=5_000, eval_eps=0.0, batch_size=64, lr=3e-4, adam_eps=1e-8, target_update_freq=1, tau=0.005,
               hidden_dim=256, clip_rewards=False, drop_capped=False)
PRESETS = {"atari": ATARI, "minatar": {**REGULAR, "hidden_dim": 128}, "gym": REGULAR}


def suite_of(env_id: str) -> str:
    return "atari" if env_id.startswith("dqn-atari:") else "minatar" if env_id.startswith("minatar:") else "gym"


@dataclass
class Args(runs.RunArgs):
    # Experiment (the run folder's flags come from runs.RunArgs)
    dataset: str = ""
    """offline data with Discrete actions: minari:<dataset id> or d4rl:<path to .hdf5> (make one with
    python -m envs.collect --recipe behavioural)"""
    env_id: runs.UnsetStr = ""
    """env of the evaluations (dqn-atari:<Game>, minatar:<game>, CartPole-v1, ...); default: the dataset's own"""
    seed: int = 0
    """seed of the first agent; agent i uses seed + i (its eval env uses seed + i + 100)"""
    num_seeds: int = 1
    """number of independent agents trained together in this process (vmapped)"""
    total_timesteps: int = 1_000_000
    """gradient steps per seed (the authors' max_timesteps)"""
    eval_freq: Optional[int] = None
    """evaluate every this many gradient steps (and at step 0 and at the end); unset: dqn-atari 50k, else 5k"""
    eval_episodes: int = 10
    """evaluation episodes per seed"""
    eval_eps: Optional[float] = None
    """probability of a uniform random action when acting (evaluation); unset: dqn-atari 0.001, else 0"""
    # Discrete BCQ
    bcq_threshold: float = 0.3
    """tau: keep actions with pi_b(a|s) / max_a' pi_b(a'|s) > tau (0 keeps all: offline Double DQN)"""
    logit_penalty: float = 0.01
    """weight of mean(logits^2) of the imitation head in the loss"""
    discount: float = 0.99
    """discount factor gamma"""
    batch_size: Optional[int] = None
    """transitions per update; unset: dqn-atari 32, else 64"""
    lr: Optional[float] = None
    """Adam learning rate; unset: dqn-atari 6.25e-5, else 3e-4"""
    adam_eps: Optional[float] = None
    """Adam epsilon (outside the square root, as torch); unset: dqn-atari 1.5e-4, else 1e-8"""
    target_update_freq: Optional[int] = None
    """iterations between target updates; unset: dqn-atari 8k (hard copies), else 1"""
    tau: Optional[float] = None
    """target update rate (1 = hard copy); unset: dqn-atari 1, else 0.005 (Polyak)"""
    hidden_dim: Optional[int] = None
    """width of each head's hidden layer(s); unset: dqn-atari 512, minatar 128, vectors 256 (two layers)"""
    clip_rewards: Optional[bool] = None
    """train on rewards clipped to [-1, 1] (returns are reported raw); unset: dqn-atari yes, else no"""
    drop_capped: Optional[bool] = None
    """drop the dataset's truncated transitions (the authors' Atari buffer never stores one); unset: dqn-atari yes,
    else they bootstrap"""
    scale_obs: bool = False
    """deviation flag: divide uint8 observations by 255 (the authors feed raw 0-255 values)"""


def resolve_presets(args: Args) -> Args:
    """Fill the flags left unset from the suite's preset."""
    preset = PRESETS[suite_of(args.env_id)]
    return Args(**{**asdict(args), **{k: v for k, v in preset.items() if getattr(args, k) is None}})


def check_args(args: Args) -> None:
    runs.check_args(args, counts=("batch_size", "target_update_freq", "hidden_dim"), nonneg=("logit_penalty",),
                    positive=("lr", "adam_eps"), unit=("discount", "tau"))
    if not 0.0 <= args.bcq_threshold < 1.0:
        raise runs.UserError(f"--bcq-threshold must be in [0, 1) (the most likely action has ratio 1), "
                             f"got {args.bcq_threshold}")
    if not 0.0 <= args.eval_eps <= 1.0:
        raise runs.UserError(f"--eval-eps must be in [0, 1], got {args.eval_eps}")


# ---------------------------------------------------------------------------------------------
# Networks (torch's default initialisation throughout)
# ---------------------------------------------------------------------------------------------
def _torch_uniform(fan_in: int):
    bound = 1.0 / np.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Linear(nn.Module):
    """torch.nn.Linear with its default initialisation: weight and bias ~ U(+-1/sqrt(fan_in))."""

    features: int

    @nn.compact
    def __call__(self, x):
        init = _torch_uniform(x.shape[-1])
        return x @ self.param("kernel", init, (x.shape[-1], self.features)) + self.param("bias", init, (self.features,))


class Conv(nn.Module):
    """torch.nn.Conv2d (VALID padding) with its default initialisation, fan_in = in_channels * k * k."""

    features: int
    kernel: int
    stride: int

    @nn.compact
    def __call__(self, x):  # [B, H, W, C]
        init = _torch_uniform(x.shape[-1] * self.kernel ** 2)
        return nn.Conv(self.features, (self.kernel, self.kernel), self.stride, padding="VALID", kernel_init=init,
                       bias_init=init)(x)


class BCQNetwork(nn.Module):
    """(Q [B, A], log pi_b [B, A], logits [B, A]) of observations [B, *obs_shape]. "nature" / "minatar": a
    shared conv trunk and two heads (hidden -> A); "fc": two separate MLPs (hidden -> hidden -> A), FC_Q."""

    num_actions: int
    arch: str  # "nature" (dqn-atari), "minatar" or "fc"
    hidden_dim: int
    scale_obs: bool = False

    @nn.compact
    def __call__(self, obs):
        x = obs.astype(jnp.float32)  # raw 0-255 pixels: the authors do not divide by 255
        if self.scale_obs:
            x = x / 255.0
        if self.arch == "fc":
            q = nn.relu(Linear(self.hidden_dim)(nn.relu(Linear(self.hidden_dim)(x))))
            i = nn.relu(Linear(self.hidden_dim)(nn.relu(Linear(self.hidden_dim)(x))))
        else:
            x = jnp.moveaxis(x, -3, -1)  # [B, C, H, W] -> [B, H, W, C]
            layers = ((32, 8, 4), (64, 4, 2), (64, 3, 1)) if self.arch == "nature" else ((16, 3, 1),)
            for features, kernel, stride in layers:
                x = nn.relu(Conv(features, kernel, stride)(x))
            x = x.reshape(*x.shape[:-3], -1)  # nature: 7 * 7 * 64 = 3136
            q, i = nn.relu(Linear(self.hidden_dim)(x)), nn.relu(Linear(self.hidden_dim)(x))
        logits = Linear(self.num_actions)(i)
        return Linear(self.num_actions)(q), jax.nn.log_softmax(logits), logits


def arch_of(env_id: str, obs_shape) -> str:
    suite = suite_of(env_id)
    if suite in ("atari", "minatar"):
        return "nature" if suite == "atari" else "minatar"
    if len(obs_shape) != 1:
        raise runs.SpaceError(f"{env_id}: observations of shape {tuple(obs_shape)}; discrete BCQ takes vectors, "
                              "dqn-atari:<Game> or minatar:<game> images")
    return "fc"


# ---------------------------------------------------------------------------------------------
# Learner state (one seed; vmapped to [num_seeds, ...]) and the dataset (one copy for all seeds)
# ---------------------------------------------------------------------------------------------
class Learner(NamedTuple):
    q: dict
    q_target: dict
    opt: optax.OptState
    key: jax.Array
    iterations: jax.Array  # training iterations so far (the target schedule)


class Data(NamedTuple):
    table: jax.Array  # [M, *row] every observation (or frame) once; row 0 zeros
    obs_idx: jax.Array  # [N, k] int32 rows of s, oldest frame first
    next_idx: jax.Array  # [N, k] int32 rows of s'
    action: jax.Array  # [N] int32
    reward: jax.Array  # [N] (clipped with --clip-rewards)
    terminated: jax.Array  # [N] 1 only for real terminations


def stacks(table, idx, obs_shape):
    """Observations of table rows idx [B, k] -> [B, *obs_shape] (k frames oldest first, or k = 1 whole rows)."""
    return table[idx].reshape(idx.shape[0], *obs_shape)


# ---------------------------------------------------------------------------------------------
# Discrete BCQ pieces as pure functions
# ---------------------------------------------------------------------------------------------
def allowed(log_probs, threshold):
    """Actions the imitation head allows: pi_b(a|s) / max_a' pi_b(a'|s) > threshold (relative, not absolute)."""
    p = jnp.exp(log_probs)
    return p / p.max(-1, keepdims=True) > threshold


def constrained_argmax(q, keep):
    """argmax of q over the kept actions (the others at -1e8, as the authors mask them)."""
    return jnp.argmax(jnp.where(keep, q, -1e8), -1)


def bcq_target(reward, terminated, q_next, log_probs_next, q_next_target, discount, threshold):
    """y = r + gamma * (1 - terminated) * Q_target(s', a'), a' = the current network's constrained argmax at s'."""
    a_next = constrained_argmax(q_next, allowed(log_probs_next, threshold))
    value = jnp.take_along_axis(q_next_target, a_next[..., None], -1)[..., 0]
    return reward + discount * (1.0 - terminated) * value


def huber(x, delta=1.0):
    """torch's smooth_l1_loss (beta 1) elementwise: 0.5 x^2 if |x| < delta else delta * (|x| - 0.5 delta)."""
    a = jnp.abs(x)
    return jnp.where(a < delta, 0.5 * x ** 2, delta * (a - 0.5 * delta))


def bcq_loss(q, log_probs, logits, action, target, logit_penalty):
    """(total, q_loss, i_loss, penalty): Huber of Q(s, a) - y, NLL of a under pi_b, mean(logits^2)."""
    q_a = jnp.take_along_axis(q, action[:, None], -1)[:, 0]
    q_loss = huber(q_a - target).mean()
    i_loss = -jnp.take_along_axis(log_probs, action[:, None], -1)[:, 0].mean()
    penalty = (logits ** 2).mean()
    return q_loss + i_loss + logit_penalty * penalty, q_loss, i_loss, penalty


class Agent(NamedTuple):
    init: callable  # keys [N] -> Learner, stacked
    act: callable  # (q params [N], obs [N, ...], keys [N], eps) -> actions [N]
    update: callable  # (learner, data) -> (learner, metrics)
    train_chunk: callable  # (learner, data, iterations) -> (learner, mean metrics)


def make_agent(args: Args, obs_shape, obs_dtype, num_actions: int) -> Agent:
    net = BCQNetwork(num_actions, arch_of(args.env_id, obs_shape), args.hidden_dim, args.scale_obs)
    tx = optax.adam(args.lr, eps=args.adam_eps)

    def init(key):
        key, k_q = jax.random.split(key)
        params = net.init(k_q, jnp.zeros((1, *obs_shape), obs_dtype))
        return Learner(params, params, tx.init(params), key, jnp.zeros((), jnp.int32))

    def update(learner, data):
        key, k_idx = jax.random.split(learner.key)
        i = jax.random.randint(k_idx, (args.batch_size,), 0, data.reward.shape[0])
        obs = stacks(data.table, data.obs_idx[i], obs_shape)  # [B, *obs_shape], rebuilt here
        next_obs = stacks(data.table, data.next_idx[i], obs_shape)
        action, reward, terminated = data.action[i], data.reward[i], data.terminated[i]

        # Target: the current network picks a' among the allowed actions, the target network values it
        q_next, log_probs_next, _ = net.apply(learner.q, next_obs)
        q_next_target, _, _ = net.apply(learner.q_target, next_obs)
        target = jax.lax.stop_gradient(bcq_target(reward, terminated, q_next, log_probs_next, q_next_target,
                                                  args.discount, args.bcq_threshold))

        # Q and imitation losses, one step on the whole network (the trunk learns from both)
        def loss_fn(params):
            q, log_probs, logits = net.apply(params, obs)
            total, q_loss, i_loss, penalty = bcq_loss(q, log_probs, logits, action, target, args.logit_penalty)
            return total, (q_loss, i_loss, penalty, q)

        (loss, (q_loss, i_loss, penalty, q)), grads = jax.value_and_grad(loss_fn, has_aux=True)(learner.q)
        updates, opt = tx.update(grads, learner.opt, learner.q)
        params = optax.apply_updates(learner.q, updates)

        # Target network: hard copy (tau 1) or Polyak, every target_update_freq iterations
        iterations = learner.iterations + 1
        due = iterations % args.target_update_freq == 0
        moved = optax.incremental_update(params, learner.q_target, args.tau)
        q_target = jax.tree.map(lambda m, t: jnp.where(due, m, t), moved, learner.q_target)
        metrics = {"loss": loss, "q_loss": q_loss, "i_loss": i_loss, "logit_penalty": penalty, "q_mean": q.mean(),
                   "kept_actions": allowed(log_probs_next, args.bcq_threshold).sum(-1).mean()}
        return Learner(params, q_target, opt, key, iterations), metrics

    def act(params, obs, key, eps):
        """One seed, one state: the constrained argmax, a uniform action with probability eps."""
        k_eps, k_a = jax.random.split(key)
        q, log_probs, _ = net.apply(params, obs[None])
        a = constrained_argmax(q, allowed(log_probs, args.bcq_threshold))[0]
        return jnp.where(jax.random.uniform(k_eps) < eps, jax.random.randint(k_a, (), 0, num_actions), a)

    def train_chunk(learner, data, iterations):
        """``iterations`` updates of one seed in one lax.scan; the metrics are their means."""
        learner, metrics = jax.lax.scan(lambda learner, _: update(learner, data), learner, None, length=iterations)
        return learner, jax.tree.map(lambda x: x.mean(0), metrics)

    # The dataset is one device array for all seeds (in_axes None); each seed draws its own indices.
    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, 0, None))),
        update=jax.jit(jax.vmap(update, in_axes=(0, None))),
        train_chunk=jax.jit(jax.vmap(train_chunk, in_axes=(0, None, None)), static_argnums=2, donate_argnums=0),
    )


def eval_policy(agent: Agent, params, seeds, step: int, eps: float):
    """Policy for the Evaluator: obs [N, ...] -> actions [N]; the epsilon draws of call c of the evaluation at
    ``step`` use fold_in(fold_in(PRNGKey(seed + 100), step), c), apart from the learner's key."""
    base = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s + 100), step) for s in seeds])
    calls = iter(range(1 << 62))
    fold = jax.vmap(jax.random.fold_in, in_axes=(0, None))
    return lambda o: agent.act(params, o, fold(base, next(calls)), eps)


def device_data(data: offline.Frames, args: Args) -> Data:
    """The dataset as device arrays, rewards clipped with --clip-rewards."""
    reward = data.reward
    if args.clip_rewards:
        from envs.atari import clip_reward  # the DQN-era clip to [-1, 1], as the authors store rewards
        reward = clip_reward(reward)
    return Data(*(jnp.asarray(x) for x in (data.table, data.obs_idx, data.next_idx, data.action,
                                           np.asarray(reward, np.float32), data.terminated)))


# ---------------------------------------------------------------------------------------------
# Training loop (offline: the dataset instead of env steps)
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents on the dataset; returns the final learner and run facts."""
    offline.resolve_env(args)
    run = runs.Run(ALGO, args, Args)
    run.args = args = resolve_presets(run.args)  # with --resume, the checkpoint's args
    seeds = run.seeds
    check_args(args)
    data = offline.load_discrete(args.dataset, args.env_id, timeouts="drop" if args.drop_capped else "bootstrap")
    arch_of(args.env_id, data.obs_shape)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes, discrete_ok=True,
                               pixels_ok=True, workers=args.env_workers)
    run.eval_header = offline.eval_header(data, run.eval_header)
    agent = run.devices.agent(make_agent(args, data.obs_shape, data.table.dtype, data.num_actions))
    on_device = run.devices.replicate(device_data(data, args))  # one copy per device
    learner = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    t0 = 0
    if run.checkpoint:
        offline.check_resume(data, run.checkpoint.host)
        learner, t0 = run.checkpoint.load({"learner": learner}, args=args)[0]["learner"], run.checkpoint.step
    info = offline.describe(data, sum(x.nbytes for x in on_device))
    run.start({"dataset": info})
    frames = f", {data.info['frames']['history']}-frame stacks rebuilt from single frames" if data.info.get("frames") \
        else ""
    run.print(f"dataset {args.dataset}: {len(data)} transitions, {info['device_mb']} MB on "
              f"{jax.devices()[0].platform}{frames}, shared by {args.num_seeds} seed(s); "
              f"{info['dropped_timeouts']} truncated transitions dropped")

    metrics, last_eval, timing = {}, None, {"compile_s": None, "updates": 0, "seconds": 0.0}

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        run.check_finite(host_metrics, step)
        last_eval = evaluator(eval_policy(agent, learner.q, seeds, step, args.eval_eps))
        run.evaluation(offline.eval_rows(data, seeds, step, last_eval), host_metrics)

    with run.progress_bar(t0):
        if t0 == 0:
            evaluate(0)
        step = t0
        while step < args.total_timesteps:
            n = min(args.eval_freq - step % args.eval_freq, args.total_timesteps - step)  # updates to the next eval
            tc = time.time()
            learner, metrics = agent.train_chunk(learner, on_device, n)
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
def saved_policy(saved: Args, spaces, ckpt: runs.Checkpoint, replay: bool = False, seed_index=None, copies=1):
    """A checkpoint's policy obs [N, *obs_shape] -> int32 actions [N] with the run's eval_eps (row i is seed i;
    with ``seed_index``, ``copies`` rows of that seed); its draws are those of the training evaluation at the
    checkpoint's step. No replay buffer (offline): the second value is None."""
    saved = resolve_presets(saved)
    agent = make_agent(saved, spaces.obs_shape, spaces.obs_dtype, spaces.action_dim)
    seeds = [saved.seed + i for i in range(saved.num_seeds)]
    learner = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    learner = ckpt.load({"learner": learner}, args=saved)[0]["learner"]
    if seed_index is not None:
        learner, seeds = runs.take_seed(learner, seed_index, copies), [seeds[seed_index]] * copies
    return eval_policy(agent, learner.q, seeds, ckpt.step, saved.eval_eps), None


def evaluate_checkpoint(args: Args) -> np.ndarray:
    return runs.evaluate_saved(ALGO, args, Args, lambda saved, evaluator, ckpt: saved_policy(saved, evaluator, ckpt)[0],
                               lambda saved: dict(discrete_ok=True, pixels_ok=True))


if __name__ == "__main__":
    runs.cli(Args, train, evaluate_checkpoint)
