"""DDPG as the TD3 paper's "Our DDPG" baseline, in JAX, many seeds per process.

Paper: S. Fujimoto, H. van Hoof, D. Meger. "Addressing Function Approximation Error in
Actor-Critic Methods". ICML 2018. arXiv:1802.09477 ("Our DDPG" in Table 1).
Follows: github.com/sfujim/TD3 @ 34770ccdcb51df6f6c7d85c1ba7e40d71b940d16, OurDDPG.py with the
repo's current defaults (256-256 networks, Adam 3e-4, batch 256, tau 0.005, 25k start steps).
This is not the "original" DDPG.py of that repo (400-300, critic action at layer 2, L2 decay).

Usage:  python algos/ddpg.py --env-id Hopper-v4 --num-seeds 5

Per env step once t >= learning_starts: sample a uniform batch; critic target
y = r + gamma * (1 - terminated) * Q'(s', pi'(s')) with no target noise; one Adam step on the
single critic; one actor step on -Q(s, pi(s)); a Polyak update of both targets. TD3 without
its three changes (clipped double-Q, target policy smoothing, delayed updates).

Deviations and notes (none changes the algorithm):
- Actions live in [-1, 1]; the `envs` adapter maps them onto the env's bounds. Exploration
  noise 0.1 is therefore in units of max_action, as the repo's `expl_noise * max_action`.
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

import csv
import importlib.metadata
import io
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tyro

import envs

ALGO = "ddpg"


@dataclass
class Args:
    # Experiment
    env_id: str = "Hopper-v4"
    """gymnasium id of a continuous-control env"""
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
    results_dir: str = "results/runs"
    """where run folders are created"""
    run_name: Optional[str] = None
    """run folder name (default: <algo>__<env>__<seed>x<num_seeds>__<time>)"""
    save_model: bool = False
    """checkpoint the whole learner state (params, optimisers, buffer, keys, counters) at every evaluation"""
    resume: Optional[str] = None
    """run folder of a killed --save-model run to continue (its config.json supplies all other args)"""
    eval_only: bool = False
    """evaluate the policy saved in --checkpoint instead of training"""
    checkpoint: Optional[str] = None
    """run folder whose checkpoint --eval-only evaluates"""
    capture_video: bool = False
    """with --eval-only: record the first seed's evaluation episodes to <checkpoint>/videos (needs the `video` extra)"""
    tb: bool = False
    """log to TensorBoard in the run folder (needs the `tb` extra)"""
    track: bool = False
    """log to Weights & Biases (needs the `track` extra)"""
    wandb_project: str = "fujimoto-jax"
    """W&B project for --track"""
    # DDPG ("Our DDPG")
    buffer_size: int = 1_000_000
    """replay buffer capacity per seed"""
    hidden_dim: int = 256
    """width of both hidden layers of actor and critic"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic"""
    batch_size: int = 256
    """transitions per update"""
    discount: float = 0.99
    """discount factor gamma"""
    tau: float = 0.005
    """Polyak rate of the target networks"""
    expl_noise: float = 0.1
    """std of the Gaussian exploration noise, in units of max_action"""


def check_args(args: Args) -> None:
    positive = ("num_seeds", "total_timesteps", "eval_freq", "eval_episodes", "buffer_size", "batch_size",
                "hidden_dim")
    for name in positive:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.learning_starts < 0:
        raise ValueError(f"--learning-starts must be >= 0, got {args.learning_starts}")
    if args.eval_only and not args.checkpoint:
        raise ValueError("--eval-only needs --checkpoint RUN_DIR")


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


class Critic(nn.Module):
    """One Q network."""

    hidden_dim: int = 256

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)  # the action enters at the first layer
        x = nn.relu(Linear(self.hidden_dim)(x))
        x = nn.relu(Linear(self.hidden_dim)(x))
        return Linear(1)(x)[..., 0]


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
# DDPG pieces as pure functions
# ---------------------------------------------------------------------------------------------
def ddpg_target(reward, terminated, q_next, discount):
    """DDPG target: y = r + gamma * (1 - terminated) * Q'(s', pi'(s')), no target noise."""
    return reward + discount * (1.0 - terminated) * q_next


def schedule(t: int, learning_starts: int) -> tuple[bool, bool]:
    """Host-side flags for env step t (0-based): (train, random_next_action).

    The repo trains from t == start_timesteps on; actor and targets move on every iteration.
    """
    return t >= learning_starts, t + 1 < learning_starts


class Agent(NamedTuple):
    init: callable  # keys [N] -> (Learner, Buffer), stacked
    act: callable  # (learner, obs [N, obs_dim], random) -> (learner, action [N, action_dim])
    policy: callable  # (actor params, obs [N, obs_dim]) -> deterministic action [N, action_dim]
    update: callable  # (learner, buffer, size) -> (learner, metrics)
    step: callable  # (learner, buffer, transition, obs, t, flags...) -> (learner, buffer, action, metrics)
    capacity: int


def make_agent(args: Args, obs_dim: int, action_dim: int) -> Agent:
    actor, critic = Actor(action_dim, args.hidden_dim), Critic(args.hidden_dim)
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

    def update(learner, buffer, size):
        key, k_idx = jax.random.split(learner.key)
        idx = jax.random.randint(k_idx, (args.batch_size,), 0, size)
        b = jax.tree.map(lambda x: x[idx], buffer)

        # Critic: DDPG target from the target actor and target critic
        q_next = critic.apply(learner.critic_target, b.next_obs, actor.apply(learner.actor_target, b.next_obs))
        target = jax.lax.stop_gradient(ddpg_target(b.reward, b.terminated, q_next, args.discount))

        def critic_loss_fn(params):
            return jnp.mean((critic.apply(params, b.obs, b.action) - target) ** 2)

        critic_loss, grads = jax.value_and_grad(critic_loss_fn)(learner.critic)
        updates, critic_opt = critic_tx.update(grads, learner.critic_opt, learner.critic)
        critic_params = optax.apply_updates(learner.critic, updates)

        # Actor: deterministic policy gradient through the updated critic, every iteration
        def actor_loss_fn(params):
            return -critic.apply(critic_params, b.obs, actor.apply(params, b.obs)).mean()

        actor_loss, grads = jax.value_and_grad(actor_loss_fn)(learner.actor)
        updates, actor_opt = actor_tx.update(grads, learner.actor_opt, learner.actor)
        actor_params = optax.apply_updates(learner.actor, updates)
        # Targets: Polyak-averaged every iteration
        learner = Learner(actor_params, optax.incremental_update(actor_params, learner.actor_target, args.tau),
                          critic_params, optax.incremental_update(critic_params, learner.critic_target, args.tau),
                          actor_opt, critic_opt, key)
        return learner, {"critic_loss": critic_loss, "actor_loss": actor_loss, "idx": idx}

    def add(buffer, transition, t):
        """Store transition t ([N, ...]) of every seed in slot t (the seeds step in lockstep)."""
        return jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, t % capacity, 1), buffer, transition)

    def train_and_act(learner, buffer, obs, t, train, random_next):
        """One training iteration if due, then the action for obs (env step t + 1), for all seeds."""
        metrics = {}
        if train:
            learner, metrics = jax.vmap(update, in_axes=(0, 0, None))(learner, buffer, jnp.minimum(t + 1, capacity))
            metrics.pop("idx")
        learner, action = jax.vmap(act, in_axes=(0, 0, None))(learner, obs, random_next)
        return learner, action, metrics

    # The write and the update are two jitted calls: fused into one, XLA copies the whole buffer
    # every step to keep the batch gather apart from the in-place write. Both donate their state.
    add = jax.jit(add, donate_argnums=0)
    train_and_act = jax.jit(train_and_act, static_argnames=("train", "random_next"), donate_argnums=0)

    def step(learner, buffer, transition, obs, t, train, random_next):
        """Store transition t, train once if due, then pick the action for obs (step t + 1)."""
        buffer = add(buffer, transition, t)
        learner, action, metrics = train_and_act(learner, buffer, obs, t, train=train, random_next=random_next)
        return learner, buffer, action, metrics

    return Agent(
        init=jax.jit(jax.vmap(init)),
        act=jax.jit(jax.vmap(act, in_axes=(0, 0, None)), static_argnums=2),
        policy=jax.jit(jax.vmap(actor.apply)),
        update=jax.jit(jax.vmap(update, in_axes=(0, 0, None))),
        step=step,
        capacity=capacity,
    )


# ---------------------------------------------------------------------------------------------
# Run folder: results, config, checkpoints, logging
# ---------------------------------------------------------------------------------------------
EVAL_HEADER = ["algo", "env", "seed", "step", "return", "time_s"]
EPISODE_HEADER = ["algo", "env", "seed", "step", "episode_return", "episode_length"]


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco", "tyro"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _git() -> dict:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        # dirty = tracked files modified; untracked ones (results, logs) do not change the code
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                                capture_output=True, text=True, timeout=10)
        if commit.returncode == 0:
            return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": None, "dirty": None}


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_rows(path: str, max_step: int) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("step", "").isdigit() and int(row["step"]) <= max_step]


class RunLogger:
    """eval.csv (rewritten atomically at each evaluation), train_episodes.csv (appended, flushed at
    each evaluation), config.json, and optional TensorBoard / W&B."""

    def __init__(self, run_dir: str, args: Args, replay: dict, resume_step: Optional[int] = None):
        self.run_dir, self.args, self.replay = run_dir, args, replay
        self.eval_path = os.path.join(run_dir, "eval.csv")
        self.episodes_path = os.path.join(run_dir, "train_episodes.csv")
        keep = -1 if resume_step is None else resume_step  # rows after the checkpoint are dropped
        self.eval_rows = _read_rows(self.eval_path, keep)
        episode_rows = _read_rows(self.episodes_path, keep)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, EPISODE_HEADER)
        writer.writeheader()
        writer.writerows(episode_rows)
        _write_atomic(self.episodes_path, buf.getvalue())
        self.episodes_file = open(self.episodes_path, "a", newline="")
        self.episodes_csv = csv.writer(self.episodes_file)
        self.write_config(resume_step)
        self.tb = self.wandb = None
        if args.tb:
            try:
                from tensorboardX import SummaryWriter
            except ImportError as e:
                raise ImportError("--tb needs tensorboardX: pip install -e '.[tb]'") from e
            self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
        if args.track:
            try:
                import wandb
            except ImportError as e:
                raise ImportError("--track needs wandb: pip install -e '.[track]'") from e
            self.wandb = wandb.init(project=args.wandb_project, name=os.path.basename(run_dir), config=asdict(args),
                                    dir=run_dir, resume="allow", id=os.path.basename(run_dir).replace(":", "-"))

    def write_config(self, resume_step):
        path = os.path.join(self.run_dir, "config.json")
        config = json.load(open(path)) if os.path.exists(path) and resume_step is not None else {
            "algo": ALGO, "args": asdict(self.args), "versions": _versions(), "git": _git(),
            "command": " ".join([os.path.basename(sys.executable)] + sys.argv), "cwd": os.getcwd(),
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "cpu_count": os.cpu_count(), "jax_devices": [str(d) for d in jax.devices()]},
            "replay_buffer": self.replay, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed": []}
        if resume_step is not None:
            config.setdefault("resumed", []).append({"step": resume_step, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                     "command": " ".join(sys.argv), "versions": _versions(),
                                                     "git": _git()})
        _write_atomic(path, json.dumps(config, indent=2) + "\n")

    def episode(self, seed: int, step: int, ret: float, length: int):
        self.episodes_csv.writerow([ALGO, self.args.env_id, seed, step, f"{ret:.6g}", length])
        if self.tb:
            self.tb.add_scalar(f"train/episode_return_seed{seed}", ret, step)

    def evaluation(self, step: int, returns: np.ndarray, elapsed: float, metrics: dict):
        for i, r in enumerate(returns):
            self.eval_rows.append({"algo": ALGO, "env": self.args.env_id, "seed": self.args.seed + i, "step": step,
                                   "return": f"{r:.6g}", "time_s": f"{elapsed:.1f}"})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, EVAL_HEADER)
        writer.writeheader()
        writer.writerows(self.eval_rows)
        _write_atomic(self.eval_path, buf.getvalue())
        self.episodes_file.flush()
        os.fsync(self.episodes_file.fileno())
        scalars = {"eval/return_mean": float(np.mean(returns))}
        scalars.update({f"eval/return_seed{self.args.seed + i}": float(r) for i, r in enumerate(returns)})
        scalars.update({f"losses/{k}_mean": float(np.mean(v)) for k, v in metrics.items()})
        if self.tb:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb:
            self.wandb.log(scalars, step=step)

    def close(self):
        self.episodes_file.close()
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()


def save_checkpoint(run_dir: str, learner, buffer, size: int, action, host: dict) -> None:
    """Write <run_dir>/checkpoint atomically (a new folder renamed over the old one)."""
    final, tmp, old = (os.path.join(run_dir, n) for n in ("checkpoint", "checkpoint.tmp", "checkpoint.old"))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    np.savez(os.path.join(tmp, "learner.npz"), *[np.asarray(x) for x in jax.tree.leaves(learner)])
    np.savez(os.path.join(tmp, "buffer.npz"), *[np.asarray(x[:, :size]) for x in buffer])
    np.save(os.path.join(tmp, "action.npy"), np.asarray(action))
    with open(os.path.join(tmp, "host.pkl"), "wb") as f:
        pickle.dump(host, f)
    if os.path.exists(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _checkpoint_dir(run_dir: str) -> str:
    for name in ("checkpoint", "checkpoint.old"):  # .old survives a crash between the two renames
        if os.path.exists(os.path.join(run_dir, name, "host.pkl")):
            return os.path.join(run_dir, name)
    raise FileNotFoundError(f"no checkpoint in {run_dir!r}: was it trained with --save-model?")


def load_learner(run_dir: str, template):
    path = _checkpoint_dir(run_dir)
    leaves, treedef = jax.tree.flatten(template)
    with np.load(os.path.join(path, "learner.npz")) as data:
        saved = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(saved) != len(leaves) or any(a.shape != b.shape for a, b in zip(saved, leaves)):
        raise ValueError(f"checkpoint in {path} does not match this network (different dims or --num-seeds?)")
    return jax.tree.unflatten(treedef, [jnp.asarray(x) for x in saved])


def load_checkpoint(run_dir: str, learner_template, buffer_template):
    path = _checkpoint_dir(run_dir)
    learner = load_learner(run_dir, learner_template)
    with np.load(os.path.join(path, "buffer.npz")) as data:
        parts = [data[f"arr_{i}"] for i in range(len(data.files))]
    buffer = Buffer(*[np.asarray(b).copy() for b in buffer_template])
    for b, part in zip(buffer, parts):
        b[:, : part.shape[1]] = part
    buffer = Buffer(*[jnp.asarray(b) for b in buffer])
    action = jnp.asarray(np.load(os.path.join(path, "action.npy")))
    with open(os.path.join(path, "host.pkl"), "rb") as f:
        host = pickle.load(f)
    return learner, buffer, action, host


# ---------------------------------------------------------------------------------------------
# Progress bar
# ---------------------------------------------------------------------------------------------
def _progress(total: int, completed: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[sps]} steps/s"), TextColumn("ETA"), TimeRemainingColumn(),
                        TextColumn("{task.fields[evals]}"), refresh_per_second=2)
    task = progress.add_task(ALGO, total=total, completed=completed, sps="-", evals="")
    return progress, task


# ---------------------------------------------------------------------------------------------
# Training loop
# ---------------------------------------------------------------------------------------------
def train(args: Args) -> dict:
    """Train args.num_seeds agents; returns the final learner, buffer and run facts."""
    if args.resume:
        overrides = {"resume": args.resume}
        with open(os.path.join(args.resume, "config.json")) as f:
            args = Args(**{**json.load(f)["args"], **overrides, "save_model": True})
        run_dir = args.resume
    else:
        run_dir = os.path.join(args.results_dir, args.run_name or
                               f"{ALGO}__{args.env_id}__{args.seed}x{args.num_seeds}__{time.strftime('%Y%m%d-%H%M%S')}")
        if os.path.exists(os.path.join(run_dir, "eval.csv")):
            raise FileExistsError(f"{run_dir} already holds a run; use --resume {run_dir} or another --run-name")
    check_args(args)
    seeds = [args.seed + i for i in range(args.num_seeds)]
    train_envs = envs.SeedEnvs(args.env_id, seeds)
    evaluator = envs.Evaluator(args.env_id, [s + 100 for s in seeds], args.eval_episodes)
    agent = make_agent(args, train_envs.obs_dim, train_envs.action_dim)
    learner, buffer = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    os.makedirs(run_dir, exist_ok=True)
    per_transition = sum(x.nbytes for x in buffer) // (args.num_seeds * agent.capacity)
    replay = {"capacity": agent.capacity, "bytes_per_transition": per_transition,
              "mb_per_seed": round(per_transition * agent.capacity / 1e6, 1)}
    print(f"[{ALGO} {args.env_id}] replay buffer on {jax.devices()[0].platform}: {agent.capacity} transitions x "
          f"{per_transition} bytes = {replay['mb_per_seed']} MB per seed, {args.num_seeds} seed(s)")

    if args.resume:
        learner, buffer, action, host = load_checkpoint(run_dir, learner, buffer)
        t0 = host["t"]
        obs = train_envs.set_state(host["envs"])
        logger = RunLogger(run_dir, args, replay, resume_step=t0)
    else:
        t0 = 0
        logger = RunLogger(run_dir, args, replay)
        obs = train_envs.reset()
        learner, action = agent.act(learner, obs, args.learning_starts > 0)

    start = time.time()
    progress, task = _progress(args.total_timesteps, t0)
    compile_s, sps_from, loop_end = None, None, None  # for the steps/s figure, compilation excluded
    metrics, last_eval = {}, None

    def evaluate(step):
        nonlocal last_eval
        host_metrics = jax.device_get(metrics)
        bad = {k: np.nonzero(~np.isfinite(v))[0].tolist() for k, v in host_metrics.items() if not np.all(np.isfinite(v))}
        if bad:
            raise FloatingPointError(f"non-finite loss at step {step} (seed indices {bad}); nothing after step "
                                     f"{int(logger.eval_rows[-1]['step']) if logger.eval_rows else 0} was saved")
        returns = evaluator(lambda o: agent.policy(learner.actor, o))
        logger.evaluation(step, returns, time.time() - start, host_metrics)
        last_eval = returns
        progress.update(task, evals="eval " + " ".join(f"{r:.0f}" for r in returns))
        progress.console.print(f"[{ALGO} {args.env_id}] step {step:>8d}  eval return per seed: "
                                + " ".join(f"{r:9.2f}" for r in returns) + f"  (mean {np.mean(returns):.2f})")

    with progress:
        if t0 == 0:
            evaluate(0)
        for t in range(t0, args.total_timesteps):
            flags = schedule(t, args.learning_starts)
            action_host = np.asarray(action)  # the one device -> host transfer per env step
            env_step = train_envs.step(action_host)
            transition = Buffer(obs, action, env_step.reward, env_step.next_obs,
                                env_step.terminated.astype(np.float32))
            obs = env_step.obs
            if flags[0] and compile_s is None:
                tc = time.time()
                learner, buffer, action, metrics = agent.step(learner, buffer, transition, obs, t, *flags)
                jax.block_until_ready(action)
                compile_s = time.time() - tc
            else:
                learner, buffer, action, metrics = agent.step(learner, buffer, transition, obs, t, *flags)
            for i, ret, length in env_step.episodes:
                logger.episode(seeds[i], t + 1, ret, length)
            if sps_from is None and t >= args.learning_starts + 2:  # every variant compiled
                sps_from = (t, time.time())
            if (t + 1) % 200 == 0:
                if sps_from and t > sps_from[0]:
                    progress.update(task, sps=f"{(t - sps_from[0]) / (time.time() - sps_from[1]):.0f}")
                progress.update(task, completed=t + 1)
            if t + 1 == args.total_timesteps:
                jax.block_until_ready(action)  # wait for the last update before reading the clock
                loop_end = time.time()
            if (t + 1) % args.eval_freq == 0 or t + 1 == args.total_timesteps:
                evaluate(t + 1)
                if args.save_model:
                    save_checkpoint(run_dir, learner, buffer, min(t + 1, agent.capacity), action,
                                    {"t": t + 1, "envs": train_envs.get_state()})
        progress.update(task, completed=args.total_timesteps)
    logger.close()
    train_envs.close()
    evaluator.close()
    steps_timed = (args.total_timesteps - 1 - sps_from[0]) if sps_from else 0
    return {
        "run_dir": run_dir, "learner": learner, "buffer": buffer, "final_eval": last_eval,
        "compile_s": compile_s,
        "train_loop_steps_per_s": steps_timed / (loop_end - sps_from[1]) if steps_timed > 0 else None,
    }


# ---------------------------------------------------------------------------------------------
# Evaluation of a saved policy
# ---------------------------------------------------------------------------------------------
def evaluate_checkpoint(args: Args) -> np.ndarray:
    with open(os.path.join(args.checkpoint, "config.json")) as f:
        saved = Args(**json.load(f)["args"])
    seeds = [saved.seed + i for i in range(saved.num_seeds)]
    video_dir = os.path.join(args.checkpoint, "videos") if args.capture_video else None
    if video_dir:
        try:
            import moviepy  # noqa: F401
        except ImportError as e:
            raise ImportError("--capture-video needs moviepy: pip install -e '.[video]'") from e
    evaluator = envs.Evaluator(saved.env_id, [s + 100 for s in seeds], args.eval_episodes, video_dir=video_dir)
    space = evaluator.envs[0].observation_space
    agent = make_agent(saved, space.shape[0], evaluator.envs[0].action_space.shape[0])
    learner, _ = jax.eval_shape(agent.init, jnp.stack([jax.random.PRNGKey(s) for s in seeds]))
    learner = load_learner(args.checkpoint, learner)
    returns = evaluator(lambda o: agent.policy(learner.actor, o))
    evaluator.close()
    host = pickle.load(open(os.path.join(_checkpoint_dir(args.checkpoint), "host.pkl"), "rb"))
    report = {"env": saved.env_id, "step": host["t"], "episodes": args.eval_episodes,
              "returns": {str(s): float(r) for s, r in zip(seeds, returns)}, "mean": float(np.mean(returns))}
    _write_atomic(os.path.join(args.checkpoint, "eval_only.json"), json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return returns


if __name__ == "__main__":
    cli_args = tyro.cli(Args)
    check_args(cli_args)
    if cli_args.eval_only:
        evaluate_checkpoint(cli_args)
    else:
        train(cli_args)
