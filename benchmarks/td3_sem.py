"""TD3 against TD3 + SEM (each --sem value): the overhead of the simplicial embedding layer, compilation excluded.

For each variant and seed count, with the default sizes (256-256 networks, batch 256, SEM L 8 x V 64 = 512 wide)
and Hopper-v4 shapes:
  * update/s: the jitted, seed-vmapped `agent.update` alone (actor step every second call, as policy_freq 2) on a
    random buffer of --capacity slots (uniform sampling: its cost does not depend on the capacity);
  * env steps/s: algos/<file>.py's own training loop on Hopper-v4 after --warmup uniform-random steps, evaluation
    excluded (per seed, and for all seeds together).
Update rounds are interleaved over the variants, so machine noise hits all of them alike; medians are reported
with the load average before and after. Overhead = rate(td3) / rate(variant) - 1.

    python benchmarks/td3_sem.py            # writes results/bench/td3_sem_<platform>.md
    python benchmarks/td3_sem.py --seeds 1 --updates 100 --loop-steps 200
"""

import argparse
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

import envs  # noqa: E402
from algos import td3, td3_sem  # noqa: E402
from benchmarks.bench import _write_md  # noqa: E402
from envs import runs  # noqa: E402

VARIANTS = {"td3": (td3, {}), "sem actor": (td3_sem, {"sem": "actor"}), "sem critic": (td3_sem, {"sem": "critic"}),
            "sem both": (td3_sem, {"sem": "both"})}


class Updater:
    """One variant's agent on a random buffer; `run` times its jitted update (alternating actor steps)."""

    def __init__(self, name: str, num_seeds: int, capacity: int, obs_dim: int, action_dim: int):
        module, extra = VARIANTS[name]
        self.agent = module.make_agent(module.Args(total_timesteps=capacity, **extra), obs_dim, action_dim)
        self.learner, buffer = self.agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
        key = jax.random.PRNGKey(1)
        self.buffer = jax.tree.map(lambda x: x + jax.random.normal(key, x.shape), buffer)
        self.size = jnp.int32(self.agent.capacity)
        t0 = time.time()
        self.run(2)  # compiles both update variants
        self.compile_s = time.time() - t0

    def run(self, iters: int) -> float:
        t0 = time.time()
        for i in range(iters):
            self.learner, _ = self.agent.update(self.learner, self.buffer, self.size, i % 2 == 1)
        jax.block_until_ready(self.learner)
        return iters / (time.time() - t0)


def loop_rate(name: str, num_seeds: int, warmup: int, steps: int, env_id: str, out_dir: str) -> dict:
    module, extra = VARIANTS[name]
    out = module.train(module.Args(env_id=env_id, num_seeds=num_seeds, learning_starts=warmup,
                                   total_timesteps=warmup + steps, eval_freq=10 * (warmup + steps), eval_episodes=1,
                                   results_dir=out_dir, **extra))
    return {"loop_steps_per_s": out["train_loop_steps_per_s"], "loop_compile_s": out["compile_s"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=[*VARIANTS], choices=[*VARIANTS])
    parser.add_argument("--env-id", default="Hopper-v4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--capacity", type=int, default=10_000, help="replay slots of the update figure")
    parser.add_argument("--updates", type=int, default=60, help="timed updates per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved update rounds; medians reported")
    parser.add_argument("--warmup", type=int, default=300, help="random steps before the timed loop steps")
    parser.add_argument("--loop-steps", type=int, default=150, help="timed training-loop steps (one run each)")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    opts = parser.parse_args()
    load_before = os.getloadavg()
    probe = envs.SeedEnvs(opts.env_id, [0])
    obs_dim, action_dim = probe.obs_dim, probe.action_dim
    probe.close()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in opts.seeds:
            updaters = {v: Updater(v, n, opts.capacity, obs_dim, action_dim) for v in opts.variants}
            rates = {v: [] for v in opts.variants}
            for _ in range(opts.rounds):  # interleaved
                for v, u in updaters.items():
                    rates[v].append(u.run(opts.updates))
            compile_s = {v: u.compile_s for v, u in updaters.items()}
            del updaters
            for v in opts.variants:
                row = {"variant": v, "num_seeds": n, "updates_per_s": float(np.median(rates[v])),
                       "update_rounds": rates[v], "update_compile_s": compile_s[v],
                       **loop_rate(v, n, opts.warmup, opts.loop_steps, opts.env_id, tmp)}
                rows.append(row)
                print(row, flush=True)
    write_md(opts, rows, load_before, os.getloadavg())


def write_md(opts, rows: list[dict], load_before, load_after) -> None:
    device = jax.devices()[0]
    git = runs.git_info()
    cpus = os.cpu_count()
    base = {r["num_seeds"]: r for r in rows if r["variant"] == "td3"}

    def over(r, k):
        b = base.get(r["num_seeds"])
        return f"{100 * (b[k] / r[k] - 1):+.0f}%" if b and b[k] and r[k] else "—"

    lines = [f"# TD3 vs TD3 + SEM (L 8 x V 64) on {opts.env_id} shapes, default sizes (256-256, batch 256)", "",
             f"`{' '.join(['python'] + sys.argv)}` on {platform.platform()}, {cpus} CPUs, JAX device "
             f"{device.platform}:{device.device_kind}, jax {runs.versions()['jax']}, {time.strftime('%Y-%m-%d')}, "
             f"commit {git['commit']}{' (uncommitted changes)' if git['dirty'] else ''}.", "",
             f"Load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load_before)} before, "
             f"{', '.join(f'{x:.2f}' for x in load_after)} after. The machine is shared: a load near or above {cpus} "
             "means other processes used the cores for part of the run. Update rounds are interleaved over the "
             "variants so that this hits them alike; the training loop is one run per variant, one after the other, "
             "so its figures carry the load of their moment.", "",
             f"update/s: the jitted update of all seeds (one call = one update per seed, the actor step every second "
             f"call), median of {opts.rounds} interleaved rounds of {opts.updates}. env steps/s: algos/<file>.py on "
             f"{opts.env_id}, {opts.loop_steps} timed steps after {opts.warmup} random ones, one run; per seed and "
             "for all seeds. Overhead: td3's rate / the variant's rate - 1 (+20% = 20% more time per step).", "",
             "| variant | seeds | update/s | overhead | env steps/s per seed | all seeds | overhead | "
             "update compile s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['num_seeds']} | {r['updates_per_s']:.1f} | {over(r, 'updates_per_s')} | "
                     f"{r['loop_steps_per_s']:.1f} | {r['loop_steps_per_s'] * r['num_seeds']:.1f} | "
                     f"{over(r, 'loop_steps_per_s')} | {r['update_compile_s']:.2f} |")
    os.makedirs(opts.out, exist_ok=True)
    _write_md(os.path.join(opts.out, f"td3_sem_{device.platform}"), lines)


if __name__ == "__main__":
    main()
