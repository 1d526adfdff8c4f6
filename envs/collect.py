"""Dataset recipes: roll out this project's saved TD3/TD7/DDPG (and DDQN) policies and write a Minari dataset.

    python -m envs.collect --recipe medium --checkpoint runs/td3__Hopper-v4__0x1__... --steps 1000000

The standard D4RL datasets cannot be downloaded everywhere, and researchers also want their own.
The recipes follow D4RL (and BCQ for ``imperfect``):

* ``random``: uniform random actions (D4RL used a randomly initialised policy);
* ``medium`` / ``expert``: the checkpoint's policy (pick a run whose return is about a third of
  the expert's for medium) with Gaussian noise ``--noise`` (default 0.1 of max_action; D4RL sampled
  its SAC policies);
* ``medium-replay``: the checkpoint's training replay buffer, every transition up to the checkpoint;
* ``medium-expert``: ``--steps`` of the medium policy, then ``--steps`` of the expert one (two
  ``--checkpoint``s: medium first);
* ``imperfect`` (BCQ paper section 2.4): each step a uniform random action with probability 0.3,
  else the policy's action plus N(0, 0.3) noise; 100k transitions in the paper.
* ``behavioural`` (discrete actions; "Benchmarking Batch Deep RL Algorithms", arXiv:1910.01708, and
  sfujim/BCQ discrete_BCQ/main.py --generate_buffer): a saved DDQN policy. Each episode is "low
  noise" with probability ``--low-noise-p`` (0.2): it acts epsilon-greedily with ``--eval-eps``;
  in the other episodes each step is a uniform random action with probability ``--rand-action-p``
  (0.2) minus ``--eval-eps``, else the same epsilon-greedy action. 1M transitions (the paper's
  buffer). ``--eval-eps`` defaults to the run's evaluation epsilon, the authors' eval_eps: 0.001 on
  dqn-atari:, 0 elsewhere (their non-Atari dict, under which the random share is 0.2).
* ``sr-dice`` (off-policy evaluation data, sfujim/SR-DICE main.py): continuous, each step a uniform random
  action with probability ``--ope-random`` (0.2), else the policy's action plus N(0, ``--ope-noise``^2)
  (0.2 of max_action), 50k transitions; discrete (a DDQN run), the ``behavioural`` mixture with no
  low-noise episodes and a random action with probability ``--ope-random`` (0.1, their Atari setting),
  else the greedy action (``--eval-eps`` 0, their Atari eval_eps: random actions exactly 0.1 of the steps),
  1M transitions. Every episode's first observation is its start state (algos/sr_dice.py reads them).
* ``ogbench-play`` / ``ogbench-noisy`` (``--env-id ogbench:<env>-<play|noisy>-singletask-task<k>-v0``, env
  cube-single, cube-double, scene, puzzle-3x3 or puzzle-4x4): OGBench's manipulation datasets from the
  scripted oracles packaged in ``ogbench`` (envs/ogbench_data.py), ``--episodes`` (1,000) episodes of 1,001
  steps plus a tenth as validation, in OGBench's own ``.npz`` layout at ``--out`` (default
  ``$OGBENCH_DATA_DIR`` or ``~/.ogbench/data``, ``<env>-<type>-v0.npz`` and ``-val.npz``); read with
  ``--dataset ogbench:...``. Not Minari: the rest of this text is about the other recipes.

Discrete-action envs (``random`` and ``behavioural``) store integer actions and their observations
in the env's dtype (uint8 images stay uint8, never JPEG-encoded). A frame-stacked env (dqn-atari:,
``frame_history`` k > 1 with one channel group per frame) stores one frame per step, the newest of
each observation, as the authors' Atari buffer does; the metadata's ``frames`` says how the stacks
are rebuilt (k, and whether the frames before an episode's start are zeros or its first frame), and
the collection checks every observation against that rule. ``envs.offline.load_discrete`` rebuilds
them.

The dataset is a Minari dataset (``minari:<id>`` for the algorithms' ``--dataset``, and Minari's own
tools read it), under ``MINARI_DATASETS_PATH`` or Minari's default root. Episodes cut by the step
budget, or by the env's time limit or step cap, end with a truncation (loaders that follow the authors'
Atari buffer drop those transitions). The metadata (key ``fujimoto_jax`` of the dataset's metadata.json)
records the recipe, the policy runs with their step and measured return, the env id and versions,
the seeds and the reference scores: D4RL's for its locomotion tasks, else the measured random and
expert returns when the recipe has an expert, else ``--ref-min-score/--ref-max-score`` if given.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np

from envs import offline, ogbench_data, runs
from envs.gym import Evaluator, SeedEnvs, _scale_action
from envs.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("random", "medium", "expert", "medium-replay", "medium-expert", "imperfect", "behavioural", "sr-dice",
           *ogbench_data.RECIPES)
POLICY_ALGOS = ("td3", "td7", "ddpg", "ddqn", "ddqn_lap", "ddqn_pal", "ddqn_per")
DISCRETE_ALGOS = ("ddqn", "ddqn_lap", "ddqn_pal", "ddqn_per")  # their policies act in Discrete spaces: behavioural


@dataclass
class Args:
    recipe: str
    """random | medium | expert | medium-replay | medium-expert | imperfect | behavioural | sr-dice | ogbench-play |
    ogbench-noisy"""
    checkpoint: tuple[str, ...] = ()
    """run folder(s) with a checkpoint (--save-model): one for medium/expert/medium-replay/imperfect/behavioural/
    sr-dice, medium then expert for medium-expert"""
    env_id: runs.UnsetStr = ""
    """env to collect on; default: the checkpoint's (required for random and the ogbench recipes:
    ogbench:<env>-<play|noisy>-singletask-task<k>-v0)"""
    steps: Optional[int] = None
    """transitions to collect (per policy for medium-expert; medium-replay takes the whole buffer); unset: 1M as
    D4RL's datasets and the discrete BCQ paper's buffers (behavioural), 100k for imperfect as the BCQ paper's,
    sr-dice 50k (continuous) or 1M (discrete) as the SR-DICE code's"""
    dataset_id: runs.UnsetStr = ""
    """Minari id, namespace/env/name-vN; default fujimoto-jax/<env>/<recipe>-v0"""
    d4rl_out: str = ""
    """write a D4RL-format .hdf5 file at this path instead of a Minari dataset (read with --dataset d4rl:PATH)"""
    seed: int = 0
    """seed of the collection envs (env i of --num-envs gets seed + i) and of the noise"""
    num_envs: int = 8
    """envs stepped together (one policy call for all of them)"""
    policy_seed: runs.UnsetInt = -1
    """which seed of a multi-seed run acts (its seed value); default the run's first"""
    noise: float = 0.1
    """std of the Gaussian action noise of medium/expert/medium-expert, in units of max_action"""
    p_random: float = 0.3
    """imperfect: probability of a uniform random action"""
    imperfect_noise: float = 0.3
    """imperfect: std of the Gaussian noise on the policy's action, in units of max_action"""
    low_noise_p: float = 0.2
    """behavioural: probability that an episode is low-noise (only the --eval-eps-greedy policy acts)"""
    rand_action_p: float = 0.2
    """behavioural: in the other episodes a step is a uniform random action with probability rand_action_p - eval_eps,
    else the --eval-eps-greedy policy's action"""
    ope_random: Optional[float] = None
    """sr-dice: probability of a uniform random action; unset: 0.2 continuous (--random), 0.1 discrete"""
    ope_noise: float = 0.2
    """sr-dice (continuous): std of the Gaussian noise on the policy's action, in units of max_action (expl_noise)"""
    eval_eps: Optional[float] = None
    """behavioural: epsilon of the policy's epsilon-greedy action (and of its measured return); unset: the run's
    evaluation epsilon, the authors' 0.001 on dqn-atari: and 0 elsewhere; sr-dice (discrete): unset 0, the
    SR-DICE Atari code's eval_eps, so that a step is random with probability exactly --ope-random"""
    eval_episodes: int = 10
    """episodes that measure each policy's return (and the random return) for the metadata"""
    ref_min_score: Optional[float] = None
    """reference random return for the normalised score (D4RL tasks use D4RL's)"""
    ref_max_score: Optional[float] = None
    """reference expert return for the normalised score (D4RL tasks use D4RL's)"""
    author: str = "fujimoto-jax"
    """dataset author recorded by Minari"""
    # OGBench recipes (envs/ogbench_data.py)
    episodes: Optional[int] = None
    """ogbench recipes: training episodes of 1,001 steps (the val file gets a tenth, at least 1); unset: 1000, as
    OGBench's datasets"""
    out: runs.UnsetStr = ""
    """ogbench recipes: the training file, <name>.npz (the val file is <name>-val.npz beside it); default
    $OGBENCH_DATA_DIR (else ~/.ogbench/data)/<env>-<play|noisy>-v0.npz, where --dataset ogbench:<id> looks"""


# ---------------------------------------------------------------------------------------------
# Saved policies (the algorithm file's saved_policy, loaded by path: algos/ is not a package API)
# ---------------------------------------------------------------------------------------------
def _algo_module(algo: str):
    return runs.load_file(os.path.join(ROOT, "algos", f"{algo}.py"), f"_fujimoto_{algo}")


class SavedRun:
    """The policy (and replay) of one seed of a run folder's checkpoint."""

    def __init__(self, run_dir: str, policy_seed: int, copies: int, replay: bool = False):
        meta_path = runs.Checkpoint.find(run_dir) if os.path.isdir(run_dir) else None
        if meta_path is None:
            runs.Checkpoint(run_dir, "?")  # raises the contract's error (no folder, no checkpoint, old pickle)
        try:
            with open(os.path.join(meta_path, "meta.json")) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"damaged checkpoint: cannot read {meta_path}/meta.json ({e})") from None
        algo = meta.get("algo") if isinstance(meta, dict) else None
        if algo not in POLICY_ALGOS:
            raise UserError(f"--checkpoint {run_dir} holds a {algo} checkpoint; the recipes roll out "
                            f"{', '.join(POLICY_ALGOS)} policies")
        module = _algo_module(algo)
        self.ckpt = runs.Checkpoint(run_dir, algo)
        self.saved = self.ckpt.make_args(module.Args)
        if getattr(self.saved, "offline", False):
            raise UserError(f"--checkpoint {run_dir} is an offline run; its policy never acted in the env")
        seeds = [self.saved.seed + i for i in range(self.saved.num_seeds)]
        seed = seeds[0] if policy_seed < 0 else policy_seed
        if seed not in seeds:
            raise UserError(f"--policy-seed {policy_seed}: {run_dir} trained seeds {seeds}")
        self.algo, self.run_dir, self.index, self.seed = algo, run_dir, seeds.index(seed), seed
        self.discrete = algo in DISCRETE_ALGOS
        resolve = getattr(module, "resolve_presets", None)  # the run's own evaluation epsilon (ddqn)
        self.eval_eps = getattr(resolve(self.saved) if resolve else self.saved, "eval_eps", None)
        spaces = SeedEnvs(self.saved.env_id, [0], discrete_ok=True, pixels_ok=True)
        spaces.close()
        # policy: obs [copies, *obs_shape] -> [copies, action_dim] in [-1, 1] (discrete: greedy int actions
        # [copies]), every row through this seed's parameters
        self.policy, self.ring = module.saved_policy(self.saved, spaces, self.ckpt, replay, self.index, copies)
        self.written = int(np.asarray(self.ckpt.meta["ring"]["written"])[self.index]) if replay else 0

    def describe(self, ret: float) -> dict:
        return {"run": os.path.abspath(self.run_dir), "algo": self.algo, "seed": self.seed,
                "step": int(self.ckpt.step), "return": float(ret), "env_id": self.saved.env_id}


# ---------------------------------------------------------------------------------------------
# Roll-outs into Minari episode buffers
# ---------------------------------------------------------------------------------------------
class Episodes:
    """Minari EpisodeBuffers from step-by-step data of K envs: actions in env units (integers for Discrete),
    observations in the env's dtype, or one frame per step for frame-stacked envs (``frames``)."""

    def __init__(self, spaces, frames: bool = False):
        self.spaces, self.done, self.open = spaces, [], {}
        self.history = spaces.frame_history if frames else 1
        self.channels = spaces.obs_shape[0] // self.history  # channels of one frame
        self.padding: Optional[str] = None  # frames before an episode's start: "zeros" or "first"

    def add(self, i, obs, action, reward, next_obs, terminated, truncated, **extra):
        ep = self.open.get(i)
        if ep is None:
            ep = self.open[i] = {"obs": [self._first(obs)], "act": [], "rew": [], "term": [], "trunc": [],
                                 **{k: [] for k in extra}}
        elif self.history > 1 and not np.array_equal(obs, ep["last"]):
            raise RuntimeError(f"{self.spaces.env_id}: an observation is not the previous step's next observation")
        if self.history > 1:
            c = self.channels
            if not np.array_equal(next_obs[:-c], obs[c:]):
                raise RuntimeError(f"{self.spaces.env_id}: the frame stack did not shift by one frame; cannot store "
                                   "it as frames")
            ep["last"] = next_obs
        ep["act"].append(int(action) if self.spaces.discrete else
                         _scale_action(action, self.spaces.low, self.spaces.high))
        ep["rew"].append(float(reward))
        ep["term"].append(bool(terminated))
        ep["trunc"].append(bool(truncated))
        # a copy: a view would keep the whole step's [num_envs, *obs_shape] array alive
        ep["obs"].append(np.array(next_obs[-self.channels:] if self.history > 1 else next_obs))
        for k, v in extra.items():
            ep[k].append(v)
        if terminated or truncated:
            self.done.append(self.open.pop(i))

    def _first(self, obs):
        """The first observation of an episode; for frames, its newest frame, after checking the padding."""
        if self.history == 1:
            return np.array(obs)
        c, first = self.channels, np.array(obs[-self.channels:])
        zeros = not np.any(obs[:-c])
        repeated = all(np.array_equal(obs[j * c:(j + 1) * c], first) for j in range(self.history - 1))
        if not (zeros or repeated):
            raise RuntimeError(f"{self.spaces.env_id}: a reset's frame stack is neither zeros nor copies of its "
                               "first frame before it; cannot store it as frames")
        if zeros != repeated:  # both: an all-zero first frame, rebuilt the same either way
            mode = "zeros" if zeros else "first"
            if self.padding not in (None, mode):
                raise RuntimeError(f"{self.spaces.env_id}: resets pad the frame stack in two ways")
            self.padding = mode
        return first

    def frames_meta(self) -> Optional[dict]:
        """How the stacks are rebuilt from the stored frames (None: whole observations are stored)."""
        return {"history": self.history, "padding": self.padding or "zeros"} if self.history > 1 else None

    def close_all(self):
        """Episodes cut by the budget end with a truncation (their last state bootstraps)."""
        for i in sorted(self.open):
            ep = self.open.pop(i)
            ep["trunc"][-1] = ep["cut"] = True
            self.done.append(ep)

    def buffers(self, first_id: int = 0):
        from minari.data_collector import EpisodeBuffer
        act_dtype = np.int64 if self.spaces.discrete else np.float32
        return [EpisodeBuffer(id=first_id + k, observations=np.asarray(ep["obs"], self.spaces.obs_dtype),
                              actions=np.asarray(ep["act"], act_dtype), rewards=np.asarray(ep["rew"], np.float64),
                              terminations=np.asarray(ep["term"]), truncations=np.asarray(ep["trunc"]), infos={})
                for k, ep in enumerate(self.done)]

    def observation_space(self, env_space):
        """The space of what is stored: the env's, or one frame of it."""
        if self.history == 1:
            return env_space
        import gymnasium as gym
        c = self.channels
        return gym.spaces.Box(env_space.low[-c:], env_space.high[-c:], (c, *self.spaces.obs_shape[1:]),
                              env_space.dtype)


class Noisy:
    """The continuous recipes' actions for all envs: uniform with probability p_random (always without a
    policy; discrete envs: uniform integers), else policy(obs) + N(0, noise^2), clipped to [-1, 1]."""

    def __init__(self, spaces, rng, policy=None, noise: float = 0.0, p_random: float = 0.0):
        self.spaces, self.rng, self.policy, self.noise, self.p_random = spaces, rng, policy, noise, p_random

    def __call__(self, obs) -> tuple[np.ndarray, dict]:
        n, rng = len(obs), self.rng
        if self.spaces.discrete:
            return rng.integers(self.spaces.action_dim, size=n), {}
        uniform = rng.uniform(-1, 1, (n, self.spaces.action_dim)).astype(np.float32)
        if self.policy is None:
            return uniform, {}
        action = np.clip(np.asarray(self.policy(obs), np.float32)
                         + self.noise * rng.standard_normal((n, self.spaces.action_dim)), -1, 1)
        return np.where((rng.random(n) < self.p_random)[:, None], uniform, action).astype(np.float32), {}

    def episode_start(self, i: int) -> None:
        pass


class Behavioural:
    """The discrete BCQ paper's buffer mixture (sfujim/BCQ discrete_BCQ/main.py, --generate_buffer), for all
    envs: an episode is low-noise with probability low_noise_p (drawn at its start); in a low-noise episode
    every step is eval_eps-greedy; in the others a step is a uniform random action with probability
    rand_action_p - eval_eps, else eval_eps-greedy. ``policy``: obs [num_envs, ...] -> greedy int actions.
    Each step reports per env ``low_noise`` and ``branch``: 0 greedy, 1 the eval_eps draw, 2 the mixture's
    random action."""

    def __init__(self, spaces, rng, policy, low_noise_p: float = 0.2, rand_action_p: float = 0.2,
                 eval_eps: float = 0.001):
        self.spaces, self.rng, self.policy = spaces, rng, policy
        self.low_noise_p, self.rand_action_p, self.eval_eps = low_noise_p, rand_action_p, eval_eps
        self.low_noise = rng.random(spaces.num) < low_noise_p

    def __call__(self, obs) -> tuple[np.ndarray, dict]:
        n, rng = len(obs), self.rng
        greedy = np.asarray(self.policy(obs)).astype(np.int64)
        u_mix, u_eps, uniform = rng.random(n), rng.random(n), rng.integers(self.spaces.action_dim, size=n)
        mixture = ~self.low_noise & (u_mix < self.rand_action_p - self.eval_eps)
        eps = ~mixture & (u_eps < self.eval_eps)  # the policy's own epsilon-greedy draw (select_action(eval=True))
        branch = np.where(mixture, 2, np.where(eps, 1, 0))
        return np.where(mixture | eps, uniform, greedy), {"low_noise": self.low_noise.copy(), "branch": branch}

    def episode_start(self, i: int) -> None:
        self.low_noise[i] = self.rng.random() < self.low_noise_p


def run_actor(env_id: str, steps: int, seed: int, num_envs: int, make_actor) -> Episodes:
    """``steps`` transitions from ``num_envs`` envs (env i seeded seed + i) acting with
    ``make_actor(spaces, rng)`` (a Noisy or Behavioural), rng = default_rng(seed)."""
    envs_ = SeedEnvs(env_id, [seed + i for i in range(num_envs)], discrete_ok=True, pixels_ok=True)
    rng = np.random.default_rng(seed)
    try:
        actor = make_actor(envs_, rng)
        out, obs, taken = Episodes(envs_, frames=envs_.frame_history > 1), envs_.reset(), 0
        from rich.progress import Progress
        with Progress(transient=True) as bar:
            task = bar.add_task(f"collecting {env_id}", total=steps)
            while taken < steps:
                k = min(num_envs, steps - taken)
                action, extra = actor(obs)
                active = np.arange(num_envs) < k
                step = envs_.step(action, active) if k < num_envs else envs_.step(action)
                for i in range(k):
                    out.add(i, obs[i], action[i], step.reward[i], step.next_obs[i], step.terminated[i],
                            step.truncated[i], **{key: v[i].item() for key, v in extra.items()})
                    if step.terminated[i] or step.truncated[i]:
                        actor.episode_start(i)
                obs, taken = step.obs, taken + k
                bar.update(task, completed=taken)
        out.close_all()
    finally:
        envs_.close()
    return out


def rollout(env_id: str, steps: int, seed: int, num_envs: int, policy=None, noise: float = 0.0,
            p_random: float = 0.0) -> Episodes:
    """``steps`` transitions of ``Noisy`` actions (uniform without a policy)."""
    return run_actor(env_id, steps, seed, num_envs, lambda spaces, rng: Noisy(spaces, rng, policy, noise, p_random))


def behavioural_rollout(env_id: str, steps: int, seed: int, num_envs: int, policy, low_noise_p: float = 0.2,
                        rand_action_p: float = 0.2, eval_eps: float = 0.001) -> Episodes:
    """``steps`` transitions of the ``Behavioural`` mixture around any greedy policy callable."""
    return run_actor(env_id, steps, seed, num_envs, lambda spaces, rng: Behavioural(
        spaces, rng, policy, low_noise_p, rand_action_p, eval_eps))


def mixture_stats(episodes: Episodes) -> dict:
    """What the behavioural mixture did: episodes and steps per kind, measured on the collected data."""
    eps = episodes.done
    low = [bool(e["low_noise"][0]) for e in eps]
    high_branch = np.concatenate([e["branch"] for e, lo in zip(eps, low) if not lo] or [np.zeros(0)])
    low_branch = np.concatenate([e["branch"] for e, lo in zip(eps, low) if lo] or [np.zeros(0)])
    share = lambda x, v: float(np.mean(x == v)) if len(x) else None  # noqa: E731
    return {"low_noise_episodes": int(sum(low)), "episodes": len(eps), "low_noise_steps": len(low_branch),
            "other_steps": len(high_branch), "mixture_random_share": share(high_branch, 2),
            "eps_random_share": share(np.concatenate([high_branch, low_branch]), 1)}


def replay_episodes(run: SavedRun, spaces) -> Episodes:
    """The seed's replay buffer up to the checkpoint, split into episodes: a new one starts where s'
    of a transition is not s of the next (the buffer stores the true final observation)."""
    ring = [np.asarray(x[run.index]) for x in (run.ring.obs, run.ring.action, run.ring.reward, run.ring.next_obs,
                                                run.ring.terminated)]
    cap = len(ring[0])
    n = min(run.written, cap)
    order = np.arange(run.written - n, run.written) % cap  # oldest first
    obs, action, reward, next_obs, term = (x[order] for x in ring)
    cut = np.r_[np.any(next_obs[:-1] != obs[1:], axis=1) | (term[:-1] > 0), True]
    out = Episodes(spaces)
    ep = 0
    for t in range(n):
        out.add(ep, obs[t], action[t], reward[t], next_obs[t], term[t] > 0, bool(cut[t] and not term[t]))
        ep += int(cut[t])
    return out


def measure(env_id: str, policy, episodes: int, seed: int, copies: int = 1, eps: float = 0.0) -> float:
    """Mean return of a deterministic policy (uniform random when None; with ``eps`` a uniform action with that
    probability, drawn from default_rng(seed)) on one env seeded seed + 100."""
    rng = np.random.default_rng(seed)
    evaluator = Evaluator(env_id, [seed + 100], episodes, discrete_ok=True, pixels_ok=True)
    n = evaluator.action_dim

    def uniform(rows):
        return rng.integers(n, size=rows) if evaluator.discrete else \
            rng.uniform(-1, 1, (rows, n)).astype(np.float32)

    if policy is None:
        ret = evaluator(lambda o: uniform(len(o)))[0]
    else:
        def act(o):  # the policy takes as many rows as it has copies: pad the one env's observation
            a = np.asarray(policy(np.repeat(o, copies, 0)))[:1]
            return np.where(rng.random() < eps, uniform(1), a) if eps > 0 else a
        ret = evaluator(act)[0]
    evaluator.close()
    return float(ret)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def check(args: Args) -> None:
    if args.recipe not in RECIPES:
        raise UserError(f"--recipe {args.recipe!r}: choose one of {', '.join(RECIPES)}")
    if args.episodes is not None or args.out:
        given = "--episodes" if args.episodes is not None else "--out"
        raise UserError(f"--recipe {args.recipe} does not take {given} (the ogbench recipes do; use --steps, "
                        "--dataset-id or --d4rl-out)")
    need = {"random": (0, 0), "medium-expert": (2, 2)}.get(args.recipe, (1, 1))
    if not need[0] <= len(args.checkpoint) <= need[1]:
        what = {0: "no --checkpoint", 1: "one --checkpoint", 2: "two --checkpoint run folders (medium, then expert)"}
        raise UserError(f"--recipe {args.recipe} takes {what[need[0]]}, got {len(args.checkpoint)}")
    if args.recipe == "random" and not args.env_id:
        raise UserError("--recipe random needs --env-id")
    if args.steps is None and args.recipe != "sr-dice":  # sr-dice: set once the policy's action kind is known
        args.steps = 100_000 if args.recipe == "imperfect" else 1_000_000
    for name in ("steps", "num_envs", "eval_episodes"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UserError(f"{runs.flag(name)} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    for name in ("noise", "imperfect_noise", "ope_noise"):
        if not getattr(args, name) >= 0:
            raise UserError(f"{runs.flag(name)} must be >= 0, got {getattr(args, name)}")
    for name in ("p_random", "low_noise_p", "rand_action_p", "eval_eps", "ope_random"):
        value = getattr(args, name)
        if value is not None and not 0 <= value <= 1:
            raise UserError(f"{runs.flag(name)} must be in [0, 1], got {value}")
    if (args.ref_min_score is None) != (args.ref_max_score is None):
        raise UserError("--ref-min-score and --ref-max-score go together")
    if args.ref_min_score is not None and not args.ref_max_score > args.ref_min_score:
        raise UserError("--ref-max-score must exceed --ref-min-score")


def collect(args: Args) -> str:
    """Write the dataset; returns its Minari id (the ogbench recipes: the path of their training file)."""
    if args.recipe in ogbench_data.RECIPES:
        return ogbench_data.collect(args)
    check(args)
    if args.d4rl_out:
        runs.require("h5py", "--d4rl-out", "offline")
        if os.path.exists(args.d4rl_out):
            raise UserError(f"--d4rl-out {args.d4rl_out} already exists; nothing is overwritten")
        parent = os.path.dirname(os.path.abspath(args.d4rl_out))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            raise UserError(f"--d4rl-out {args.d4rl_out}: the folder {parent} does not exist or is not writable")
    else:
        runs.require("minari", "python -m envs.collect", "offline")
    runs_ = [SavedRun(d, args.policy_seed, args.num_envs, replay=args.recipe == "medium-replay") for d in args.checkpoint]
    env_id = args.env_id or runs_[0].saved.env_id
    for r in runs_:
        if r.saved.env_id != env_id:
            raise UserError(f"--checkpoint {r.run_dir} was trained on {r.saved.env_id}, not {env_id}")
        if r.discrete != (args.recipe == "behavioural") and args.recipe != "sr-dice":
            raise UserError(f"--checkpoint {r.run_dir} holds a {r.algo} policy; --recipe behavioural takes a "
                            f"discrete-action one ({', '.join(DISCRETE_ALGOS)}), the other recipes but sr-dice a "
                            f"continuous one ({', '.join(a for a in POLICY_ALGOS if a not in DISCRETE_ALGOS)})")
    discrete_ope = args.recipe == "sr-dice" and runs_[0].discrete
    if args.recipe == "sr-dice":
        args.steps = args.steps or (1_000_000 if discrete_ope else 50_000)
        args.ope_random = args.ope_random if args.ope_random is not None else 0.1 if discrete_ope else 0.2
    family = env_id.split("/")[-1].split("-v")[0].replace(":", "-").lower()
    dataset_id = args.dataset_id or f"fujimoto-jax/{family}/{args.recipe}-v0"
    if not args.d4rl_out:
        _check_new_id(dataset_id)
    probe = SeedEnvs(env_id, [args.seed], discrete_ok=True, pixels_ok=True)
    # the spaces go to Minari explicitly: suites without a gymnasium spec (dmc:) have none to read them from
    env_spec, obs_space, act_space = probe.envs[0].spec, probe.envs[0].observation_space, probe.envs[0].action_space
    frames = probe.frame_history > 1
    probe.close()
    if frames and args.d4rl_out:
        raise UserError(f"--d4rl-out: {env_id} stacks {probe.frame_history} frames; a D4RL file would hold every "
                        "stack whole, so these datasets are Minari only (one frame per step)")
    if discrete_ope and args.eval_eps is None:  # sfujim/SR-DICE atari/main.py: eval_eps 0, random w.p. 0.1 - 0
        args.eval_eps = 0.0
    if args.recipe == "behavioural" and args.eval_eps is None:
        args.eval_eps = runs_[0].eval_eps if runs_[0].eval_eps is not None else \
            0.001 if env_id.startswith("dqn-atari:") else 0.0
    if args.recipe == "behavioural" and args.rand_action_p < args.eval_eps:
        raise UserError(f"--rand-action-p ({args.rand_action_p}) must be >= --eval-eps ({args.eval_eps}): a step of a "
                        "noisy episode is random with probability rand_action_p - eval_eps")

    if discrete_ope and args.ope_random < args.eval_eps:
        raise UserError(f"--ope-random ({args.ope_random}) must be >= --eval-eps ({args.eval_eps})")
    eps = args.eval_eps if args.recipe == "behavioural" or discrete_ope else 0.0
    policies = [{**r.describe(measure(env_id, r.policy, args.eval_episodes, args.seed, args.num_envs, eps))}
                for r in runs_]
    random_return = measure(env_id, None, args.eval_episodes, args.seed)
    mixture = None
    if args.recipe == "random":
        collected = rollout(env_id, args.steps, args.seed, args.num_envs)
    elif args.recipe == "medium-replay":
        collected = replay_episodes(runs_[0], probe)
    elif args.recipe == "imperfect":
        collected = rollout(env_id, args.steps, args.seed, args.num_envs, runs_[0].policy, args.imperfect_noise,
                            args.p_random)
    elif args.recipe == "behavioural":
        collected = behavioural_rollout(env_id, args.steps, args.seed, args.num_envs, runs_[0].policy,
                                        args.low_noise_p, args.rand_action_p, args.eval_eps)
        mixture = mixture_stats(collected)
    elif discrete_ope:
        collected = behavioural_rollout(env_id, args.steps, args.seed, args.num_envs, runs_[0].policy, 0.0,
                                        args.ope_random, args.eval_eps)
    elif args.recipe == "sr-dice":
        collected = rollout(env_id, args.steps, args.seed, args.num_envs, runs_[0].policy, args.ope_noise,
                            args.ope_random)
    if args.recipe in ("medium", "expert", "medium-expert"):
        parts = [rollout(env_id, args.steps, args.seed + 1000 * k, args.num_envs, r.policy, args.noise)
                 for k, r in enumerate(runs_)]
    else:
        parts = [collected]
    episodes = []
    for part in parts:
        episodes += part.buffers(len(episodes))
    frames_meta = parts[0].frames_meta()
    if frames_meta:
        obs_space = parts[0].observation_space(obs_space)
    spaces = {"observation_space": obs_space, "action_space": act_space}
    ref, ref_source = offline.d4rl_reference(env_id), "D4RL (d4rl/infos.py)"
    if ref is None and args.ref_min_score is not None:
        ref, ref_source = (args.ref_min_score, args.ref_max_score), "--ref-min-score/--ref-max-score"
    elif ref is None and args.recipe in ("expert", "medium-expert") and policies[-1]["return"] > random_return:
        ref, ref_source = (random_return, policies[-1]["return"]), "measured: uniform random and the expert policy"
    facts = {"recipe": args.recipe, "steps": int(sum(len(e.rewards) for e in episodes)), "episodes": len(episodes),
             "policies": policies, "random_return": random_return, "env_id": env_id, "collection_seed": args.seed,
             "num_envs": args.num_envs, "noise": args.noise if args.recipe in ("medium", "expert", "medium-expert")
             else None, "p_random": args.p_random if args.recipe == "imperfect" else None,
             "imperfect_noise": args.imperfect_noise if args.recipe == "imperfect" else None,
             **({"low_noise_p": args.low_noise_p, "rand_action_p": args.rand_action_p, "eval_eps": args.eval_eps,
                 "mixture": mixture} if args.recipe == "behavioural" else {}),
             **({"ope_random": args.ope_random, "ope_noise": None if discrete_ope else args.ope_noise,
                 "eval_eps": args.eval_eps if discrete_ope else None, "start_states": "each episode's first observation"}
                if args.recipe == "sr-dice" else {}),
             "frames": frames_meta, "mean_episode_return": _mean_return(parts), "cut_episodes": _cut_ids(parts),
             "ref_min_score": ref[0] if ref else None, "ref_max_score": ref[1] if ref else None,
             "ref_source": ref_source if ref else None, "versions": runs.versions(("minari",)), "git": runs.git_info(),
             "command": " ".join([os.path.basename(sys.executable), "-m", "envs.collect", *sys.argv[1:]])}
    description = (f"fujimoto-jax {args.recipe} dataset of {env_id}: "
                   + (", ".join(f"{p['algo']} seed {p['seed']} at step {p['step']} (return {p['return']:.1f})"
                                for p in policies) or "uniform random actions"))
    if args.d4rl_out:
        write_d4rl(args.d4rl_out, episodes, facts)
        print(f"wrote d4rl:{args.d4rl_out}: {facts['steps']} transitions in {len(episodes)} episodes")
        return args.d4rl_out
    from minari.storage import get_dataset_path
    write_minari(dataset_id, episodes, env_spec, spaces, facts, description, args.author)
    print(f"wrote minari:{dataset_id}: {facts['steps']} transitions in {len(episodes)} episodes "
          f"({get_dataset_path(dataset_id)})")
    for p in policies:
        print(f"  policy {p['algo']} {p['run']} seed {p['seed']} step {p['step']}: return {p['return']:.1f}"
              + (f" (epsilon {args.eval_eps})" if args.recipe == "behavioural" else ""))
    if mixture:
        print(f"  low-noise episodes {mixture['low_noise_episodes']}/{mixture['episodes']}, random actions "
              f"{mixture['mixture_random_share']} of the other episodes' steps; mean episode return "
              f"{facts['mean_episode_return']}")
    if ref:
        print(f"  reference scores ({ref_source}): random {ref[0]:.2f}, expert {ref[1]:.2f}")
    return dataset_id


def write_minari(dataset_id: str, episodes, env_spec, spaces: dict, facts: dict, description: str = "",
                 author: str = "fujimoto-jax") -> None:
    """The Minari dataset: the episode buffers, the spaces of what they store, the facts as metadata key
    fujimoto_jax (written last: a dataset without it is incomplete), the reference scores of the facts."""
    minari = runs.require("minari", "python -m envs.collect", "offline")
    try:
        with warnings.catch_warnings():  # Minari's reminders about permalinks and e-mails
            warnings.simplefilter("ignore")
            dataset = minari.create_dataset_from_buffers(
                dataset_id, episodes, env=env_spec, algorithm_name=f"fujimoto-jax {facts['recipe']}", author=author,
                code_permalink="https://github.com/fujimoto-jax", description=description,
                ref_min_score=facts.get("ref_min_score"), ref_max_score=facts.get("ref_max_score"),
                jpeg_encoding=False, **spaces)  # Minari would JPEG-encode (lossy) 2-D uint8 frames
            dataset.storage.update_metadata({"fujimoto_jax": json.dumps(facts)})
    except BaseException:  # a half-written dataset would block the next try and load as damaged
        shutil.rmtree(os.path.join(offline.minari_root(), dataset_id), ignore_errors=True)
        raise


def _mean_return(parts: list[Episodes]) -> Optional[float]:
    """Mean return of the collected episodes that the env ended (not those cut by the step budget)."""
    whole = [float(np.sum(e["rew"])) for part in parts for e in part.done if not e.get("cut")]
    return float(np.mean(whole)) if whole else None


def _cut_ids(parts: list[Episodes]) -> list[int]:
    """Ids (as written: in order over the parts) of the episodes cut by the step budget."""
    flags = [bool(e.get("cut")) for part in parts for e in part.done]
    return [k for k, cut in enumerate(flags) if cut]


def _check_new_id(dataset_id: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id
    try:
        parse_dataset_id(dataset_id)
    except Exception as e:
        raise UserError(f"--dataset-id {dataset_id!r}: not a Minari id (namespace/env/name-vN): {e}") from None
    if os.path.exists(os.path.join(offline.minari_root(), dataset_id)):
        raise UserError(f"dataset {dataset_id} already exists ({os.path.join(offline.minari_root(), dataset_id)}); "
                        "pass another --dataset-id or delete it with `minari delete`")


def write_d4rl(path: str, episodes, facts: dict) -> None:
    """The D4RL layout: flat observations, actions, rewards, terminals, timeouts, next_observations,
    and the facts as the file's attribute ``fujimoto_jax`` (JSON). Written to a temporary file, then renamed."""
    tmp = path + ".partial"
    try:
        _write_d4rl_file(tmp, episodes, facts)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _write_d4rl_file(tmp: str, episodes, facts: dict) -> None:
    import h5py
    cat = lambda f: np.concatenate([f(e) for e in episodes])  # noqa: E731
    with h5py.File(tmp, "w") as f:
        f["observations"] = cat(lambda e: e.observations[:-1])
        f["next_observations"] = cat(lambda e: e.observations[1:])
        f["actions"] = cat(lambda e: e.actions)
        f["rewards"] = cat(lambda e: e.rewards)
        f["terminals"] = cat(lambda e: e.terminations)
        f["timeouts"] = cat(lambda e: e.truncations)
        f.attrs["fujimoto_jax"] = json.dumps(facts)


def main(argv=None) -> None:
    import tyro
    args = tyro.cli(Args, args=argv)
    try:
        collect(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted; no dataset was written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
