"""TD3 + OT rewards against TD3: the cost of the OT reward per episode and the training loop's env steps per second.

  * Sinkhorn: one jitted td3_ot.ot_rewards (sqrt-euclidean cost, log-domain Sinkhorn, rewards) per learner
    episode, float32, a fixed number of iterations (--ot-tol 0): 200 x 200 pairs of Pendulum-v1's 3-d states
    (6 features), 1000 x 1000 of Hopper-v4's 11-d states (22 features), both the default --ot-iters 1000 and
    OOPS's 20,000 cap (which float32 runs in full: the 1e-9 tolerance is never met), and 1000 x 63, the plan a
    short Hopper episode pays (a 1,000-step expert against the T/16 learner bucket); time per plan and iteration;
  * training loop: env steps per second of algos/td3.py and algos/td3_ot.py after --learning-starts uniform-random
    steps, compilation and evaluation excluded: Pendulum-v1 (200-step episodes: td3_ot pays one 200 x 200 plan
    every 200 steps) and Hopper-v4 (episodes of random-play length, a few dozen steps, each paying a plan against a
    1,000-step expert; with several seeds only the seeds whose episode ended pay one). Experts: one Pendulum episode
    of a swinging energy controller, one smooth synthetic 1,000-step Hopper state trajectory (only its shape
    matters for the cost), written as D4RL files. A 10-seed Pendulum row (--pendulum-seeds 1 10) is off by default:
    on the shared 2-core machine its 10-seed td3 baseline was too noisy to give an overhead.

    python benchmarks/td3_ot.py            # writes results/bench/td3_ot_<platform>.json and .md
    python benchmarks/td3_ot.py --loop-steps 1000 --pendulum-seeds 1 10 --hopper-seeds 1 4
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from algos import td3, td3_ot  # noqa: E402


def sinkhorn_ms(n: int, m: int, features: int, iters: int, repeats: int) -> float:
    """Median ms of one OT reward (cost, plan, rewards) of n x m pairs, iters iterations."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, features)) / 3, jnp.float32)
    y = jnp.asarray(rng.normal(size=(m, features)) / 3 + 0.05, jnp.float32)
    f = jax.jit(lambda x, y: td3_ot.ot_rewards(x, jnp.asarray(n), y, jnp.asarray(m), 0.05, iters, 0.0)[0])
    f(x, y).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(x, y).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def expert_file(folder: str) -> str:
    """One 200-step Pendulum-v1 episode of an energy-pumping controller, as a D4RL file (states matter only)."""
    import gymnasium as gym
    import h5py
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    rows, acts = [obs], []
    for _ in range(200):
        a = np.array([2.0 * np.sign(obs[2] * (1.0 - obs[0]) + 1e-3)], np.float32)
        obs, *_ = env.step(a)
        rows.append(obs)
        acts.append(a)
    rows = np.asarray(rows, np.float32)
    path = os.path.join(folder, "pendulum_expert.hdf5")
    with h5py.File(path, "w") as f:
        f["observations"], f["next_observations"] = rows[:-1], rows[1:]
        f["actions"], f["rewards"] = np.asarray(acts), np.zeros(200, np.float32)
        f["terminals"], f["timeouts"] = np.zeros(200, bool), np.r_[np.zeros(199, bool), True]
    return f"d4rl:{path}"


def hopper_expert_file(folder: str, steps: int = 1000) -> str:
    """A smooth synthetic 1,000-step Hopper-v4 state trajectory (the reset state plus slow sinusoids), as D4RL."""
    import h5py
    rng = np.random.default_rng(0)
    t = np.arange(steps + 1)[:, None]
    rows = (0.1 * np.sin(t / rng.uniform(10, 50, 11) + rng.uniform(0, 6, 11))).astype(np.float32)
    rows[:, 0] += 1.25  # the torso height of a standing hopper
    path = os.path.join(folder, "hopper_expert.hdf5")
    with h5py.File(path, "w") as f:
        f["observations"], f["next_observations"] = rows[:-1], rows[1:]
        f["actions"], f["rewards"] = np.zeros((steps, 3), np.float32), np.zeros(steps, np.float32)
        f["terminals"], f["timeouts"] = np.zeros(steps, bool), np.r_[np.zeros(steps - 1, bool), True]
    return f"d4rl:{path}"


def loop_sps(module, env_id: str, seeds: int, steps: int, warmup: int, folder: str, expert: str):
    """(env steps/s, mean episode length of the timed steps) of one short training run."""
    extra = {"expert_dataset": expert} if module is td3_ot else {}
    args = module.Args(env_id=env_id, num_seeds=seeds, total_timesteps=warmup + steps, learning_starts=warmup,
                       eval_freq=10 * (warmup + steps), eval_episodes=1, results_dir=folder,
                       run_name=f"{module.ALGO}_{seeds}_{time.time_ns()}", **extra)
    out = module.train(args)
    import csv
    with open(os.path.join(out["run_dir"], "train_episodes.csv")) as f:
        lengths = [int(r["episode_length"]) for r in csv.DictReader(f) if int(r["step"]) > warmup]
    return out["train_loop_steps_per_s"], float(np.mean(lengths)) if lengths else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pendulum-seeds", type=int, nargs="*", default=[1])
    parser.add_argument("--hopper-seeds", type=int, nargs="*", default=[1, 3])
    parser.add_argument("--loop-steps", type=int, default=400, help="timed env steps per loop run")
    parser.add_argument("--warmup", type=int, default=200, help="Pendulum: uniform-random steps before training "
                        "(>= 200; Hopper-v4 always 1,000, its episode limit)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    a = parser.parse_args()
    plat = jax.devices()[0].platform
    load0 = os.getloadavg()
    sink = []
    for n, m, features in ((200, 200, 6), (1000, 1000, 22), (1000, 63, 22)):
        for iters in (1000, 20_000) if n == m else (1000,):
            if n == 1000 and iters == 20_000:
                per_iter = sink[-1]["ms_per_plan"] / 1000  # 20,000 iterations x the measured per-iteration cost
                sink.append({"pairs": f"{n}x{m}", "features": features, "iterations": iters,
                             "ms_per_plan": round(per_iter * iters, 1), "ms_per_iteration": round(per_iter, 4),
                             "note": "extrapolated from 1,000 iterations"})
                continue
            ms = sinkhorn_ms(n, m, features, iters, 1 if iters > 1000 else a.repeats)
            sink.append({"pairs": f"{n}x{m}", "features": features, "iterations": iters, "ms_per_plan": round(ms, 1),
                         "ms_per_iteration": round(ms / iters, 4), "note": ""})
            print(sink[-1], flush=True)
    loops = []
    with tempfile.TemporaryDirectory() as folder:
        experts = {"Pendulum-v1": expert_file(folder), "Hopper-v4": hopper_expert_file(folder)}
        for env_id, seed_counts, warmup in (("Pendulum-v1", a.pendulum_seeds, a.warmup),
                                            ("Hopper-v4", a.hopper_seeds, 1000)):
            for seeds in seed_counts:
                row = {"env": env_id, "seeds": seeds}
                for module in (td3, td3_ot):  # interleaved per seed count: machine noise hits both alike
                    sps, length = loop_sps(module, env_id, seeds, a.loop_steps, warmup, folder, experts[env_id])
                    row[module.ALGO] = round(sps, 1)
                    if module is td3_ot:
                        row["mean_episode_length"] = round(length, 1)
                row["overhead_pct"] = round(100 * (row["td3"] / row["td3_ot"] - 1), 1)
                loops.append(row)
                print(row, flush=True)
    load1 = os.getloadavg()
    out = a.out or os.path.join(ROOT, "results", "bench", f"td3_ot_{plat}")
    facts = {"platform": plat, "devices": [str(d) for d in jax.devices()], "machine": platform.platform(),
             "cpu_count": os.cpu_count(), "loadavg_before": load0, "loadavg_after": load1, "sinkhorn": sink,
             "loop": loops, "loop_steps": a.loop_steps, "warmup": a.warmup, "command": " ".join(sys.argv)}
    with open(out + ".json", "w") as f:
        json.dump(facts, f, indent=1)
    lines = [f"# TD3 + OT rewards vs TD3 ({plat})", "",
             f"`{' '.join(['python'] + sys.argv)}`; {os.cpu_count()} CPUs, load average {load0[0]:.1f} before, "
             f"{load1[0]:.1f} after (a shared machine).", "",
             "## OT reward per learner episode (float32, jitted, fixed iterations: --ot-tol 0)", "",
             "| pairs | features | iterations | ms per plan | ms per iteration | note |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['pairs']} | {r['features']} | {r['iterations']:,} | {r['ms_per_plan']} | {r['ms_per_iteration']} | "
              f"{r['note']} |" for r in sink]
    lines += ["", f"## Training loop, env steps/s after the random steps (Pendulum-v1 {a.warmup}, Hopper-v4 1,000), "
              f"{a.loop_steps} timed steps", "",
              "| env | seeds | mean episode length (timed, td3_ot) | td3 | td3_ot | overhead |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['env']} | {r['seeds']} | {r['mean_episode_length']} | {r['td3']} | {r['td3_ot']} | "
              f"{r['overhead_pct']}% |" for r in loops]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}.md")


if __name__ == "__main__":
    main()
