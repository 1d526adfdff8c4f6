"""TD3 + OT rewards against TD3: the cost of the OT reward per episode and the training loop's env steps per second.

  * Sinkhorn: one jitted td3_ot.ot_rewards (sqrt-euclidean cost, log-domain Sinkhorn, rewards) per learner
    episode, float32, a fixed number of iterations (--ot-tol 0): 200 x 200 pairs of Pendulum-v1's 3-d states
    (6 features) and 1000 x 1000 of Hopper-v4's 11-d states (22 features), both the default --ot-iters 1000 and
    OOPS's 20,000 cap (which float32 runs in full: the 1e-9 tolerance is never met), time per plan and per iteration;
  * training loop: env steps per second of algos/td3.py and algos/td3_ot.py on Pendulum-v1 (1 and 10 seeds) after
    --learning-starts uniform-random steps, compilation and evaluation excluded (td3_ot pays its OT every 200
    steps, at each episode end). The expert is one episode of a swinging energy controller written to a D4RL file.

    python benchmarks/td3_ot.py            # writes results/bench/td3_ot_<platform>.json and .md
    python benchmarks/td3_ot.py --loop-steps 1000 --seeds 1 10
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


def sinkhorn_ms(n: int, features: int, iters: int, repeats: int) -> float:
    """Median ms of one OT reward (cost, plan, rewards) of n x n pairs, iters iterations."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(n, features)) / 3, jnp.float32)
    y = jnp.asarray(rng.normal(size=(n, features)) / 3 + 0.05, jnp.float32)
    f = jax.jit(lambda x, y: td3_ot.ot_rewards(x, jnp.asarray(n), y, jnp.asarray(n), 0.05, iters, 0.0)[0])
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


def loop_sps(module, seeds: int, steps: int, warmup: int, folder: str, expert: str) -> float:
    extra = {"expert_dataset": expert} if module is td3_ot else {}
    args = module.Args(env_id="Pendulum-v1", num_seeds=seeds, total_timesteps=warmup + steps, learning_starts=warmup,
                       eval_freq=10 * (warmup + steps), eval_episodes=1, results_dir=folder,
                       run_name=f"{module.ALGO}_{seeds}_{time.time_ns()}", **extra)
    return module.train(args)["train_loop_steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--loop-steps", type=int, default=1000, help="timed env steps per loop run")
    parser.add_argument("--warmup", type=int, default=200, help="uniform-random steps before training (>= 200)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    a = parser.parse_args()
    plat = jax.devices()[0].platform
    load0 = os.getloadavg()
    sink = []
    for n, features in ((200, 6), (1000, 22)):
        for iters in (1000, 20_000):
            if n == 1000 and iters == 20_000:
                per_iter = sink[-1]["ms_per_plan"] / 1000  # 20,000 iterations x the measured per-iteration cost
                sink.append({"pairs": f"{n}x{n}", "features": features, "iterations": iters,
                             "ms_per_plan": round(per_iter * iters, 1), "ms_per_iteration": round(per_iter, 4),
                             "note": "extrapolated from 1,000 iterations"})
                continue
            ms = sinkhorn_ms(n, features, iters, 1 if iters > 1000 else a.repeats)
            sink.append({"pairs": f"{n}x{n}", "features": features, "iterations": iters, "ms_per_plan": round(ms, 1),
                         "ms_per_iteration": round(ms / iters, 4), "note": ""})
            print(sink[-1], flush=True)
    loops = []
    with tempfile.TemporaryDirectory() as folder:
        expert = expert_file(folder)
        for seeds in a.seeds:
            row = {"seeds": seeds}
            for module in (td3, td3_ot):  # interleaved per seed count: machine noise hits both alike
                row[module.ALGO] = round(loop_sps(module, seeds, a.loop_steps, a.warmup, folder, expert), 1)
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
    lines += ["", f"## Training loop, Pendulum-v1 (200-step episodes), env steps/s after {a.warmup} random steps, "
              f"{a.loop_steps} timed steps", "", "| seeds | td3 | td3_ot | overhead |", "|---|---|---|---|"]
    lines += [f"| {r['seeds']} | {r['td3']} | {r['td3_ot']} | {r['overhead_pct']}% |" for r in loops]
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}.md")


if __name__ == "__main__":
    main()
