"""Dataset recipes: roll out this project's saved TD3/TD7/DDPG policies and write a Minari dataset.

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

The dataset is a Minari dataset (``minari:<id>`` for the algorithms' ``--dataset``, and Minari's own
tools read it), under ``MINARI_DATASETS_PATH`` or Minari's default root. Episodes cut by the step
budget end with a truncation. The metadata (key ``fujimoto_jax`` of the dataset's metadata.json)
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

from envs import offline, runs
from envs.gym import Evaluator, SeedEnvs, _scale_action
from envs.runs import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("random", "medium", "expert", "medium-replay", "medium-expert", "imperfect")
POLICY_ALGOS = ("td3", "td7", "ddpg")


@dataclass
class Args:
    recipe: str
    """random | medium | expert | medium-replay | medium-expert | imperfect"""
    checkpoint: tuple[str, ...] = ()
    """run folder(s) with a checkpoint (--save-model): one for medium/expert/medium-replay/imperfect, medium then expert for medium-expert"""
    env_id: str = ""
    """env to collect on; default: the checkpoint's (required for random)"""
    steps: Optional[int] = None
    """transitions to collect (per policy for medium-expert; medium-replay takes the whole buffer); unset: 1M as
    D4RL's datasets, 100k for imperfect as the BCQ paper's buffers"""
    dataset_id: str = ""
    """Minari id, namespace/env/name-vN; default fujimoto-jax/<env>/<recipe>-v0"""
    d4rl_out: str = ""
    """write a D4RL-format .hdf5 file at this path instead of a Minari dataset (read with --dataset d4rl:PATH)"""
    seed: int = 0
    """seed of the collection envs (env i of --num-envs gets seed + i) and of the noise"""
    num_envs: int = 8
    """envs stepped together (one policy call for all of them)"""
    policy_seed: int = -1
    """which seed of a multi-seed run acts (its seed value); default the run's first"""
    noise: float = 0.1
    """std of the Gaussian action noise of medium/expert/medium-expert, in units of max_action"""
    p_random: float = 0.3
    """imperfect: probability of a uniform random action"""
    imperfect_noise: float = 0.3
    """imperfect: std of the Gaussian noise on the policy's action, in units of max_action"""
    eval_episodes: int = 10
    """episodes that measure each policy's return (and the random return) for the metadata"""
    ref_min_score: Optional[float] = None
    """reference random return for the normalised score (D4RL tasks use D4RL's)"""
    ref_max_score: Optional[float] = None
    """reference expert return for the normalised score (D4RL tasks use D4RL's)"""
    author: str = "fujimoto-jax"
    """dataset author recorded by Minari"""


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
        spaces = SeedEnvs(self.saved.env_id, [0])
        spaces.close()
        # policy: obs [copies, obs_dim] -> [copies, action_dim], every row through this seed's parameters
        self.policy, self.ring = module.saved_policy(self.saved, spaces, self.ckpt, replay, self.index, copies)
        self.written = int(np.asarray(self.ckpt.meta["ring"]["written"])[self.index]) if replay else 0

    def describe(self, ret: float) -> dict:
        return {"run": os.path.abspath(self.run_dir), "algo": self.algo, "seed": self.seed,
                "step": int(self.ckpt.step), "return": float(ret), "env_id": self.saved.env_id}


# ---------------------------------------------------------------------------------------------
# Roll-outs into Minari episode buffers
# ---------------------------------------------------------------------------------------------
class Episodes:
    """Minari EpisodeBuffers from step-by-step data of K envs, actions in env units."""

    def __init__(self, low, high):
        self.low, self.high, self.done, self.seeds = low, high, [], {}
        self.open: dict[int, dict] = {}

    def add(self, i, obs, action, reward, next_obs, terminated, truncated):
        ep = self.open.setdefault(i, {"obs": [obs], "act": [], "rew": [], "term": [], "trunc": []})
        ep["act"].append(_scale_action(action, self.low, self.high))
        ep["rew"].append(float(reward))
        ep["term"].append(bool(terminated))
        ep["trunc"].append(bool(truncated))
        ep["obs"].append(next_obs)
        if terminated or truncated:
            self.done.append(self.open.pop(i))

    def close_all(self):
        """Episodes cut by the budget end with a truncation (their last state bootstraps)."""
        for i in sorted(self.open):
            ep = self.open.pop(i)
            ep["trunc"][-1] = True
            self.done.append(ep)

    def buffers(self, first_id: int = 0):
        from minari.data_collector import EpisodeBuffer
        return [EpisodeBuffer(id=first_id + k, observations=np.asarray(ep["obs"], np.float32),
                              actions=np.asarray(ep["act"], np.float32), rewards=np.asarray(ep["rew"], np.float64),
                              terminations=np.asarray(ep["term"]), truncations=np.asarray(ep["trunc"]), infos={})
                for k, ep in enumerate(self.done)]


def rollout(env_id: str, steps: int, seed: int, num_envs: int, policy=None, noise: float = 0.0,
            p_random: float = 0.0) -> Episodes:
    """``steps`` transitions from ``num_envs`` envs: uniform actions with probability p_random (always
    without a policy), else policy(obs) + N(0, noise^2), clipped to [-1, 1]."""
    envs_ = SeedEnvs(env_id, [seed + i for i in range(num_envs)])
    rng = np.random.default_rng(seed)
    low, high = envs_.envs[0].action_space.low, envs_.envs[0].action_space.high
    out, obs, taken = Episodes(low, high), envs_.reset(), 0
    from rich.progress import Progress
    with Progress(transient=True) as bar:
        task = bar.add_task(f"collecting {env_id}", total=steps)
        while taken < steps:
            k = min(num_envs, steps - taken)
            uniform = rng.uniform(-1, 1, (num_envs, envs_.action_dim)).astype(np.float32)
            if policy is None:
                action = uniform
            else:
                action = np.clip(np.asarray(policy(obs), np.float32)
                                 + noise * rng.standard_normal((num_envs, envs_.action_dim)), -1, 1)
                action = np.where((rng.random(num_envs) < p_random)[:, None], uniform, action).astype(np.float32)
            active = np.arange(num_envs) < k
            step = envs_.step(action, active) if k < num_envs else envs_.step(action)
            for i in range(k):
                out.add(i, obs[i], action[i], step.reward[i], step.next_obs[i], step.terminated[i], step.truncated[i])
            obs, taken = step.obs, taken + k
            bar.update(task, completed=taken)
    out.close_all()
    envs_.close()
    return out


def replay_episodes(run: SavedRun, low, high) -> Episodes:
    """The seed's replay buffer up to the checkpoint, split into episodes: a new one starts where s'
    of a transition is not s of the next (the buffer stores the true final observation)."""
    ring = [np.asarray(x[run.index]) for x in (run.ring.obs, run.ring.action, run.ring.reward, run.ring.next_obs,
                                                run.ring.terminated)]
    cap = len(ring[0])
    n = min(run.written, cap)
    order = np.arange(run.written - n, run.written) % cap  # oldest first
    obs, action, reward, next_obs, term = (x[order] for x in ring)
    cut = np.r_[np.any(next_obs[:-1] != obs[1:], axis=1) | (term[:-1] > 0), True]
    out = Episodes(low, high)
    ep = 0
    for t in range(n):
        out.add(ep, obs[t], action[t], reward[t], next_obs[t], term[t] > 0, bool(cut[t] and not term[t]))
        ep += int(cut[t])
    return out


def measure(env_id: str, policy, episodes: int, seed: int, copies: int = 1) -> float:
    """Mean return of a deterministic policy (uniform random when None) on one env seeded seed + 100."""
    if policy is None:
        rng = np.random.default_rng(seed)
        evaluator = Evaluator(env_id, [seed + 100], episodes)
        ret = evaluator(lambda o: rng.uniform(-1, 1, (len(o), evaluator.action_dim)).astype(np.float32))[0]
    else:
        evaluator = Evaluator(env_id, [seed + 100], episodes)
        # the policy takes as many rows as it has copies: pad the one env's observation
        ret = evaluator(lambda o: np.asarray(policy(np.repeat(o, copies, 0)))[:1])[0]
    evaluator.close()
    return float(ret)


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def check(args: Args) -> None:
    if args.recipe not in RECIPES:
        raise UserError(f"--recipe {args.recipe!r}: choose one of {', '.join(RECIPES)}")
    need = {"random": (0, 0), "medium-expert": (2, 2)}.get(args.recipe, (1, 1))
    if not need[0] <= len(args.checkpoint) <= need[1]:
        what = {0: "no --checkpoint", 1: "one --checkpoint", 2: "two --checkpoint run folders (medium, then expert)"}
        raise UserError(f"--recipe {args.recipe} takes {what[need[0]]}, got {len(args.checkpoint)}")
    if args.recipe == "random" and not args.env_id:
        raise UserError("--recipe random needs --env-id")
    if args.steps is None:
        args.steps = 100_000 if args.recipe == "imperfect" else 1_000_000
    for name in ("steps", "num_envs", "eval_episodes"):
        if getattr(args, name) < 1:
            raise UserError(f"{runs.flag(name)} must be >= 1, got {getattr(args, name)}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    for name in ("noise", "imperfect_noise"):
        if not getattr(args, name) >= 0:
            raise UserError(f"{runs.flag(name)} must be >= 0, got {getattr(args, name)}")
    if not 0 <= args.p_random <= 1:
        raise UserError(f"--p-random must be in [0, 1], got {args.p_random}")
    if (args.ref_min_score is None) != (args.ref_max_score is None):
        raise UserError("--ref-min-score and --ref-max-score go together")
    if args.ref_min_score is not None and not args.ref_max_score > args.ref_min_score:
        raise UserError("--ref-max-score must exceed --ref-min-score")


def collect(args: Args) -> str:
    """Write the dataset; returns its Minari id."""
    check(args)
    if args.d4rl_out:
        runs.require("h5py", "--d4rl-out", "offline")
        if os.path.exists(args.d4rl_out):
            raise UserError(f"--d4rl-out {args.d4rl_out} already exists; nothing is overwritten")
        parent = os.path.dirname(os.path.abspath(args.d4rl_out))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
            raise UserError(f"--d4rl-out {args.d4rl_out}: the folder {parent} does not exist or is not writable")
    else:
        minari = runs.require("minari", "python -m envs.collect", "offline")
    runs_ = [SavedRun(d, args.policy_seed, args.num_envs, replay=args.recipe == "medium-replay") for d in args.checkpoint]
    env_id = args.env_id or runs_[0].saved.env_id
    for r in runs_:
        if r.saved.env_id != env_id:
            raise UserError(f"--checkpoint {r.run_dir} was trained on {r.saved.env_id}, not {env_id}")
    family = env_id.split("/")[-1].split("-v")[0].replace(":", "-").lower()
    dataset_id = args.dataset_id or f"fujimoto-jax/{family}/{args.recipe}-v0"
    if not args.d4rl_out:
        _check_new_id(dataset_id)
    probe = SeedEnvs(env_id, [args.seed])
    low, high = probe.envs[0].action_space.low, probe.envs[0].action_space.high
    # the spaces go to Minari explicitly: suites without a gymnasium spec (dmc:) have none to read them from
    env_spec, spaces = probe.envs[0].spec, {"observation_space": probe.envs[0].observation_space,
                                            "action_space": probe.envs[0].action_space}
    probe.close()

    policies = [{**r.describe(measure(env_id, r.policy, args.eval_episodes, args.seed, args.num_envs))} for r in runs_]
    random_return = measure(env_id, None, args.eval_episodes, args.seed)
    if args.recipe == "random":
        episodes = rollout(env_id, args.steps, args.seed, args.num_envs).buffers()
    elif args.recipe == "medium-replay":
        episodes = replay_episodes(runs_[0], low, high).buffers()
    elif args.recipe == "imperfect":
        episodes = rollout(env_id, args.steps, args.seed, args.num_envs, runs_[0].policy, args.imperfect_noise,
                           args.p_random).buffers()
    else:
        episodes = []
        for k, r in enumerate(runs_):
            episodes += rollout(env_id, args.steps, args.seed + 1000 * k, args.num_envs, r.policy,
                                args.noise).buffers(len(episodes))
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
    try:
        with warnings.catch_warnings():  # Minari's reminders about permalinks and e-mails
            warnings.simplefilter("ignore")
            dataset = minari.create_dataset_from_buffers(
                dataset_id, episodes, env=env_spec, algorithm_name=f"fujimoto-jax {args.recipe}", author=args.author,
                code_permalink="https://github.com/fujimoto-jax", description=description,
                ref_min_score=ref[0] if ref else None, ref_max_score=ref[1] if ref else None, **spaces)
            dataset.storage.update_metadata({"fujimoto_jax": json.dumps(facts)})
    except BaseException:  # a half-written dataset would block the next try and load as damaged
        shutil.rmtree(os.path.join(offline.minari_root(), dataset_id), ignore_errors=True)
        raise
    print(f"wrote minari:{dataset_id}: {facts['steps']} transitions in {len(episodes)} episodes "
          f"({get_dataset_path(dataset_id)})")
    for p in policies:
        print(f"  policy {p['algo']} {p['run']} seed {p['seed']} step {p['step']}: return {p['return']:.1f}")
    if ref:
        print(f"  reference scores ({ref_source}): random {ref[0]:.2f}, expert {ref[1]:.2f}")
    return dataset_id


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
