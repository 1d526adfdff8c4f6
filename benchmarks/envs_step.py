"""Host env stepping against the seed count: the "before" figure of issue 16 (host envs that keep up
with many seeds).

Times `envs.SeedEnvs.step` (one gymnasium env per seed, stepped one after another, with the
truncation contract's bookkeeping) for 1, 8 and 32 seeds, beside the bare `env.step` calls of the
same envs (the simulator and gymnasium's wrappers, nothing of ours), and a thread pool over the bare
calls (MuJoCo releases the GIL inside mj_step), to see what parallel stepping could gain on this
machine. Random actions in [-1, 1]; episodes reset as they end.

    python benchmarks/envs_step.py                       # Hopper-v4 -> results/bench/envs_cpu.md
    python benchmarks/envs_step.py --env-id HalfCheetah-v4 --seeds 1 8 32
"""

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from envs import runs  # noqa: E402


def time_seed_envs(env_id: str, n: int, steps: int, rounds: int) -> dict:
    train = envs.SeedEnvs(env_id, list(range(n)))
    train.reset()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, n, *train.action_shape)).astype(np.float32)
    bare = train.envs
    env_actions = np.array([[train.to_env_action(a) for a in step] for step in actions])  # what SeedEnvs sends

    def ours():
        for a in actions:
            train.step(a)

    def plain():
        for a in env_actions:
            for e, ai in zip(bare, a):
                _, _, term, trunc, _ = e.step(ai)
                if term or trunc:
                    e.reset()

    pool = ThreadPoolExecutor(max_workers=os.cpu_count())

    def one(e, ai):
        _, _, term, trunc, _ = e.step(ai)
        if term or trunc:
            e.reset()

    def threaded():
        for a in env_actions:
            list(pool.map(one, bare, a))

    out = {k: [] for k in ("seed_envs", "bare", "threads")}
    for _ in range(rounds):  # interleaved: the machine's drift hits all three alike
        for key, fn in (("seed_envs", ours), ("bare", plain), ("threads", threaded)):
            t0 = time.perf_counter()
            fn()
            out[key].append((time.perf_counter() - t0) / steps)
    pool.shutdown()
    train.close()
    return {k: float(np.median(v)) for k, v in out.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="Hopper-v4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=2000, help="timed steps of all seeds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench", "envs_cpu.md"))
    opts = parser.parse_args()
    rows = []
    for n in opts.seeds:
        t = time_seed_envs(opts.env_id, n, opts.steps, opts.rounds)
        rows.append((n, t))
        print(n, t, flush=True)
    device = jax.devices()[0]
    lines = [f"# Host env stepping against the seed count ({opts.env_id})", "",
             f"`python benchmarks/envs_step.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` on "
             f"{os.cpu_count()} CPUs (JAX device {device.platform}), gymnasium {runs.versions().get('gymnasium')}, "
             f"mujoco {runs.versions().get('mujoco')}, {time.strftime('%Y-%m-%d %H:%M')}, commit "
             f"{runs.git_info()['commit'][:10]}. Median of {opts.rounds} interleaved rounds of {opts.steps} steps of "
             "all seeds, random actions. `SeedEnvs.step`: ours, one env after another (the training loops' call); "
             "bare: the same envs' `env.step` (and reset) alone; threads: the bare calls on a thread pool of "
             f"{os.cpu_count()} workers.", "",
             "| seeds | SeedEnvs.step, ms | per seed, us | bare env.step, ms | threads, ms | SeedEnvs seed-steps/s |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {t['seed_envs'] * 1e3:.3f} | {t['seed_envs'] / n * 1e6:.1f} | {t['bare'] * 1e3:.3f} | "
              f"{t['threads'] * 1e3:.3f} | {n / t['seed_envs']:,.0f} |" for n, t in rows]
    with open(opts.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
