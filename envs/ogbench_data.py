"""OGBench's manipulation datasets, generated here with the scripted oracles that ship inside ``ogbench``.

    python -m envs.collect --recipe ogbench-play --env-id ogbench:cube-single-play-singletask-task2-v0 --episodes 100

OGBench (Park et al., ICLR 2025) generated its cube / scene / puzzle datasets with a script that lives only in
its repository (``data_gen_scripts/generate_manipspace.py``, MIT; the commands in ``data_gen_scripts/
commands.sh``). This is our own code for the same protocol, against the packaged oracles
(``ogbench.manipspace.oracles``):

* the env in data-collection mode (``mode='data_collection'``, ``terminate_at_goal=False``, time limit 1,001
  steps): it draws a new target (a cube to move, a button to press, the drawer or window to slide) whenever
  the acting oracle says its task is done, so one episode chains many tasks;
* ``play``: the non-Markovian plan oracles (``*PlanOracle``), which follow keyframes interpolated into a plan
  plus temporally smoothed noise (noise 0.1, smoothing 0.5); no random actions;
* ``noisy``: the closed-loop Markov oracles (``*MarkovOracle``, min_norm 0.4) plus Gaussian noise of std
  (xi, xi, xi, 3 xi, 10 xi) on (x, y, z, yaw, gripper), xi ~ U(0, 0.1) drawn per episode, and a uniform
  random action with probability 0.1 (cube, scene) or 0.2 (puzzle: commands.sh);
* the probability that a new cube target is a stack on another cube: 0 (cube-single), U(0, 0.25) per episode
  (cube-double), 0.5 (scene; the puzzle ignores it);
* scene's health check: an episode whose cube leaves the table to the right (y >= 0.29) or to the left
  outside the drawer is thrown away and collected again;
* per step: the observation, the action (clipped to [-1, 1]), ``terminals`` (1 at the last step of an
  episode: a trajectory boundary, never a termination), the qpos / qvel (and button states) of the state
  the observation shows, which OGBench's single-task reward relabelling reads;
* ``episodes`` training episodes in ``<stem>.npz``, then ``episodes // 10`` (at least 1) validation
  episodes in ``<stem>-val.npz``, OGBench's layout (``ogbench.make_env_and_datasets(..., dataset_path=)``
  reads both).

Differences from the hosted files: other seeds (the script seeds nothing; here every draw follows
``--seed``), so the data are statistically equivalent, not byte-identical; ``terminals`` is stored as
float32 (the script stores bool; OGBench's loader casts it to float32 either way); one extra key
``fujimoto_jax`` (a 0-d string: JSON metadata), which OGBench's loader ignores.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

import numpy as np

from envs import ogbench, runs
from envs.errors import UserError

RECIPES = {"ogbench-play": "play", "ogbench-noisy": "noisy"}
EPISODE_STEPS = 1001  # commands.sh: --max_episode_steps=1001 for every manipulation dataset
DEFAULT_EPISODES = 1000  # commands.sh: --num_episodes=1000 for the five envs here
PLAN_NOISE, PLAN_NOISE_SMOOTHING = 0.1, 0.5  # the script's --noise / --noise_smoothing defaults (play)
MARKOV_MIN_NORM, MARKOV_NOISE = 0.4, 0.1  # --min_norm and --noise (the bound of xi) defaults (noisy)
NOTE = ("Same generator as OGBench's hosted files (its data_gen_scripts/generate_manipspace.py protocol, rewritten "
        "against the oracles packaged in ogbench), other seeds: statistically equivalent, not byte-identical.")


def p_random_action(env: str, dataset_type: str) -> float:
    """commands.sh: play 0; noisy 0.1, except the puzzles' 0.2."""
    if dataset_type == "play":
        return 0.0
    return 0.2 if env.startswith("puzzle") else 0.1


def val_episodes(episodes: int) -> int:
    return max(1, episodes // 10)


# ---------------------------------------------------------------------------------------------
# The env and its oracles
# ---------------------------------------------------------------------------------------------
def make_env(env: str, episode_steps: int = EPISODE_STEPS):
    """OGBench's env in data-collection mode: targets are drawn as the oracles finish, never a termination."""
    import gymnasium
    with warnings.catch_warnings():  # GLFW without a display, gymnasium's float64 Box bounds: harmless here
        warnings.simplefilter("ignore")
        import ogbench.manipspace  # noqa: F401  (registers the manipulation envs)
        return gymnasium.make(f"{env}-v0", terminate_at_goal=False, mode="data_collection",
                              max_episode_steps=episode_steps)


def make_oracles(env: str, dataset_type: str, gym_env) -> dict:
    """The oracle of each kind of target (info['privileged/target_task']), as the script builds them."""
    from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
    from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
    from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
    from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle
    from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
    from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
    from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
    from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

    if dataset_type == "play":
        plan = {"env": gym_env, "noise": PLAN_NOISE, "noise_smoothing": PLAN_NOISE_SMOOTHING}
        if env.startswith("cube"):
            return {"cube": CubePlanOracle(**plan)}
        if env == "scene":
            return {"cube": CubePlanOracle(**plan), "button": ButtonPlanOracle(**plan),
                    "drawer": DrawerPlanOracle(**plan), "window": WindowPlanOracle(**plan)}
        return {"button": ButtonPlanOracle(gripper_always_closed=True, **plan)}  # puzzles: buttons only
    markov = {"env": gym_env, "min_norm": MARKOV_MIN_NORM}
    if env.startswith("cube"):
        return {"cube": CubeMarkovOracle(**markov)}
    if env == "scene":
        # max_step=100 as the script passes it (CubeMarkovOracle.reset sets 200 again: kept as it is)
        return {"cube": CubeMarkovOracle(max_step=100, **markov), "button": ButtonMarkovOracle(**markov),
                "drawer": DrawerMarkovOracle(**markov), "window": WindowMarkovOracle(**markov)}
    return {"button": ButtonMarkovOracle(gripper_always_closed=True, **markov)}


def draw_p_stack(env: str, rng: np.random.Generator) -> float:
    """Probability that a new cube target sits on another cube, drawn per episode."""
    if env == "cube-single":
        return 0.0
    if env == "cube-double":
        return float(rng.uniform(0.0, 0.25))
    return 0.5


def healthy(qpos: np.ndarray) -> bool:
    """Scene's check (the script's): the cube (qpos 14:17) stays on the table and visible, unless it is in the
    drawer (left, at drawer height 0.06-0.08)."""
    xyz = qpos[:, 14:17]
    right = xyz[:, 1] >= 0.29
    left_not_in_drawer = (xyz[:, 1] <= -0.3) & ((xyz[:, 2] < 0.06) | (xyz[:, 2] > 0.08))
    return not (right.any() or left_not_in_drawer.any())


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
def split_seeds(seed: int, split: int) -> dict:
    """Independent streams per split (0 train, 1 val) from --seed: the env's own RNG (first reset), the global
    numpy RNG the packaged oracles draw from, and our generator (noise, random actions, p_stack)."""
    state = np.random.SeedSequence(seed, spawn_key=(split,)).generate_state(3)  # 3 uint32
    env_seed, oracle_seed, rng_seed = (int(x) for x in state)
    return {"env": env_seed, "oracles": oracle_seed, "actions": rng_seed}


def generate_split(env: str, dataset_type: str, episodes: int, seeds: dict, episode_steps: int = EPISODE_STEPS,
                   progress=None) -> tuple[dict, dict]:
    """``episodes`` episodes of ``episode_steps`` steps -> (arrays in OGBench's layout, facts).
    ``progress(steps)`` is called with the steps recorded so far (retried scene episodes count again)."""
    gym_env = make_env(env, episode_steps)
    oracles = make_oracles(env, dataset_type, gym_env)
    has_buttons = hasattr(gym_env.unwrapped, "_cur_button_states")
    p_random = p_random_action(env, dataset_type)
    rng = np.random.default_rng(seeds["actions"])
    with warnings.catch_warnings():  # the env builds a new Box (float64 bounds, a warning) at each access
        warnings.simplefilter("ignore")
        space = gym_env.action_space
    # the oracles draw from numpy's global RNG: seeded here, and the caller's state is put back afterwards
    saved_state = np.random.get_state()
    np.random.seed(seeds["oracles"])
    try:
        with warnings.catch_warnings():  # the first reset builds the spaces (gymnasium's float64 Box warning)
            warnings.simplefilter("ignore")
            ob, info = gym_env.reset(seed=seeds["env"])  # seeds the env's RNG; later resets continue its stream
        rows = episodes * episode_steps
        out = {"observations": np.zeros((rows, ob.shape[0]), np.float32),
               "actions": np.zeros((rows, space.shape[0]), np.float32),
               "terminals": np.zeros(rows, np.float32),
               "qpos": np.zeros((rows, info["prev_qpos"].shape[0]), np.float32),
               "qvel": np.zeros((rows, info["prev_qvel"].shape[0]), np.float32)}
        if has_buttons:  # int64 as the script stores them; the relabelling compares them with the goal's
            out["button_states"] = np.zeros((rows, info["prev_button_states"].shape[0]), np.int64)
        retries, done_steps, first = 0, 0, True
        ep = 0
        while ep < episodes:
            if not first:
                ob, info = gym_env.reset()
            first = False
            p_stack = draw_p_stack(env, rng)
            xi = rng.uniform(0, MARKOV_NOISE) if dataset_type == "noisy" else 0.0  # this episode's noise level
            agent = oracles[info["privileged/target_task"]]
            agent.reset(ob, info)
            start = ep * episode_steps
            for t in range(episode_steps):
                if rng.random() < p_random:
                    action = rng.uniform(space.low, space.high)
                else:
                    action = np.array(agent.select_action(ob, info))
                    if dataset_type == "noisy":
                        action = action + rng.normal(0, [xi, xi, xi, 3 * xi, 10 * xi])
                action = np.clip(action, -1, 1)
                next_ob, _, terminated, truncated, info = gym_env.step(action)
                if agent.done:  # a new target; the next action still reads this step's info, as the script does
                    agent_ob, agent_info = gym_env.unwrapped.set_new_target(p_stack=p_stack)
                    agent = oracles[agent_info["privileged/target_task"]]
                    agent.reset(agent_ob, agent_info)
                end = terminated or truncated
                if end != (t == episode_steps - 1):  # data-collection mode never terminates; the limit truncates
                    raise RuntimeError(f"{env}: episode ended at step {t + 1}, expected exactly {episode_steps}")
                row = start + t
                out["observations"][row] = ob
                out["actions"][row] = action
                out["terminals"][row] = float(end)
                out["qpos"][row] = info["prev_qpos"]  # the state before the step: the one `ob` shows
                out["qvel"][row] = info["prev_qvel"]
                if has_buttons:
                    out["button_states"][row] = info["prev_button_states"]
                ob = next_ob
                done_steps += 1
                if progress is not None and (done_steps % 100 == 0 or end):
                    progress(done_steps)
            if env == "scene" and not healthy(out["qpos"][start:start + episode_steps]):
                retries += 1  # the same rows are written again by the next try
                continue
            ep += 1
    finally:
        np.random.set_state(saved_state)
        gym_env.close()
    return out, {"unhealthy_retries": retries, "steps": rows, "collected_steps": done_steps,
                 "oracles": {kind: type(o).__name__ for kind, o in oracles.items()}}


# ---------------------------------------------------------------------------------------------
# The command (python -m envs.collect --recipe ogbench-play | ogbench-noisy)
# ---------------------------------------------------------------------------------------------
def paths(out: str, dataset_name: str) -> tuple[str, str]:
    """(train, val): OGBench's loader finds the val file as the train path with '.npz' -> '-val.npz'."""
    train = out or os.path.join(ogbench.dataset_dir(), f"{dataset_name}.npz")
    return train, train[:-len(".npz")] + "-val.npz"


def check(args) -> tuple:
    """The ogbench recipes' flags -> (OGBenchId, episodes, train path, val path); UserError before anything is
    built or written."""
    og = ogbench.parse_id(args.env_id) if args.env_id else None
    if og is None:
        kind = RECIPES[args.recipe]
        raise UserError(f"--recipe {args.recipe} needs --env-id ogbench:<env>-{kind}-singletask-task<k>-v0 "
                        f"(e.g. ogbench:cube-single-{kind}-singletask-task2-v0)")
    if not args.env_id.startswith(ogbench.PREFIX):
        raise UserError(f"--env-id {args.env_id!r}: the ogbench recipes take an ogbench:<name> id "
                        f"(ogbench:{og.name})")
    if og.dataset_type != RECIPES[args.recipe]:
        other = next(r for r, t in RECIPES.items() if t == og.dataset_type)
        raise UserError(f"--env-id {args.env_id}: a {og.dataset_type} dataset; --recipe {args.recipe} writes "
                        f"{RECIPES[args.recipe]} datasets (use --recipe {other}, or a -{RECIPES[args.recipe]}- id)")
    unused = [name for name, value in (("checkpoint", args.checkpoint), ("steps", args.steps),
                                       ("d4rl_out", args.d4rl_out), ("dataset_id", args.dataset_id)) if value]
    if unused:
        raise UserError(f"--recipe {args.recipe} does not take {runs.flag(unused[0])}: it writes "
                        f"--episodes episodes of {EPISODE_STEPS} steps (+ validation) to --out")
    episodes = DEFAULT_EPISODES if args.episodes is None else args.episodes
    if episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {episodes}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    out = args.out
    if out and (not out.endswith(".npz") or out.count(".npz") != 1):
        raise UserError(f"--out {out}: must end in .npz and hold '.npz' nowhere else (OGBench's loader finds the "
                        "val file by replacing '.npz' with '-val.npz')")
    train, val = paths(out, og.dataset_name)
    for path in (train, val):
        if os.path.exists(path):
            raise UserError(f"{path} already exists; nothing is overwritten (delete it, or pass another --out)")
    parent = os.path.dirname(os.path.abspath(train))
    if out and not os.path.isdir(parent):
        raise UserError(f"--out {out}: the folder {parent} does not exist")
    if os.path.isdir(parent) and not os.access(parent, os.W_OK):
        raise UserError(f"{parent} is not writable")
    return og, episodes, train, val


def collect(args) -> str:
    """Generate and write the train and val files; returns the train file's path."""
    og, episodes, train_path, val_path = check(args)
    ogbench.require_ogbench(f"--recipe {args.recipe}")
    n_val = val_episodes(episodes)
    seeds = {"train": split_seeds(args.seed, 0), "val": split_seeds(args.seed, 1)}
    total = (episodes + n_val) * EPISODE_STEPS
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    start = time.perf_counter()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as bar:
        task = bar.add_task(f"collecting {og.dataset_name}", total=total)
        # EPISODE_STEPS read here, not bound as a default: the tests shorten it
        train, train_facts = generate_split(og.env, og.dataset_type, episodes, seeds["train"], EPISODE_STEPS,
                                            progress=lambda n: bar.update(task, completed=n))
        done = train_facts["collected_steps"]
        val, val_facts = generate_split(og.env, og.dataset_type, n_val, seeds["val"], EPISODE_STEPS,
                                        progress=lambda n: bar.update(task, completed=done + n))
    seconds = time.perf_counter() - start
    collected = train_facts["collected_steps"] + val_facts["collected_steps"]
    facts = metadata(args, og, episodes, n_val, seeds, train_facts, val_facts)
    write_pair(train_path, train, val_path, val, facts)
    print(f"wrote {train_path} ({train_facts['steps']} steps, {episodes} episodes) and {val_path} "
          f"({val_facts['steps']} steps, {n_val} episodes): {collected} env steps in {seconds:.0f} s "
          f"({collected / seconds:.0f} steps/s)")
    return train_path


def metadata(args, og, episodes: int, n_val: int, seeds: dict, train_facts: dict, val_facts: dict) -> dict:
    return {
        "recipe": args.recipe, "env_id": args.env_id, "dataset_name": og.dataset_name, "env": f"{og.env}-v0",
        "mode": "data_collection", "dataset_type": og.dataset_type, "oracles": train_facts["oracles"],
        "oracle_settings": ({"noise": PLAN_NOISE, "noise_smoothing": PLAN_NOISE_SMOOTHING} if og.dataset_type == "play"
                            else {"min_norm": MARKOV_MIN_NORM, "noise_max": MARKOV_NOISE,
                                  "noise_scale": [1, 1, 1, 3, 10]}),
        "p_random_action": p_random_action(og.env, og.dataset_type),
        "episodes": episodes, "val_episodes": n_val, "steps_per_episode": EPISODE_STEPS,
        "train_steps": train_facts["steps"], "val_steps": val_facts["steps"],
        "unhealthy_retries": {"train": train_facts["unhealthy_retries"], "val": val_facts["unhealthy_retries"]},
        "seed": args.seed, "seeds": seeds,
        "terminals": "1 at the last step of each episode: a trajectory boundary (time limit), not a termination",
        "generator": "fujimoto-jax envs/ogbench_data.py, following OGBench's data_gen_scripts/generate_manipspace.py",
        "note": NOTE, "versions": runs.versions(("ogbench", "dm_control")), "git": runs.git_info(),
        "command": " ".join([os.path.basename(sys.executable), "-m", "envs.collect", *sys.argv[1:]]),
    }


def write_pair(train_path: str, train: dict, val_path: str, val: dict, facts: dict) -> None:
    """Both files, each to a temporary file first, then renamed (val before train, so a train file never
    lacks its val file); a failure leaves neither."""
    os.makedirs(os.path.dirname(os.path.abspath(train_path)), exist_ok=True)
    tmps, renamed = [train_path + ".partial", val_path + ".partial"], []
    try:
        for tmp, arrays, split in zip(tmps, (train, val), ("train", "val")):
            meta = np.array(json.dumps({**facts, "split": split}))  # 0-d unicode: loads without pickle
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
                np.savez_compressed(f, **arrays, fujimoto_jax=meta)
        for tmp, path in ((tmps[1], val_path), (tmps[0], train_path)):
            os.replace(tmp, path)
            renamed.append(path)
    except BaseException:
        for path in renamed:
            os.remove(path)
        raise
    finally:
        for tmp in tmps:
            if os.path.exists(tmp):
                os.remove(tmp)
