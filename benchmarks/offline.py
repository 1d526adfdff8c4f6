"""`make bench` (offline part): gradient updates per second of the offline loops, against the pure update.

For TD3+BC and DriftQL with 1 and 10 seeds (and BCQ and offline TD7 with 1 seed), on Hopper-v4 shapes with
the papers' networks and batch, on a 1M-transition dataset of random numbers written as a D4RL file:

  * loop: `algos/<algo>.py`'s own `train()` on that file: lax.scan chunks of --eval-freq updates,
    the dataset once on the device; its updates/s exclude compilation (the first chunk) and the
    evaluations (1 episode each), as `train()` reports them;
  * pure update: the same jitted, vmapped single update called in a Python loop (the actor every
    second call where the algorithm delays it), blocked on at the end: the per-call rate that a loop
    without scan would reach.

loop / update >= 0.95 means the scanned loop loses nothing to the host. Results go to
results/bench/offline_<platform>.json and .md with the machine, versions and command.

DriftQL keeps the paper's sizes (4 x 512 GELU generator and critics, N = 32 candidates per state, batch 256,
--preset none: the code's defaults) but few updates: one costs about 46 GFLOP per seed (0.65 s on 2 CPU
cores), so its cases time chunks of 20 (1 seed) and 4 (10 seeds) updates and as many pure-update calls (the
4th field of a case). `--cases driftql:1:2:2 --size 20000 --chunks 1 --out /tmp/b` is a smoke of the command.
"""

import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from algos import bcq, driftql, td3_bc, td7  # noqa: E402
from benchmarks.bench import _report, _write_md  # noqa: E402

OBS_DIM, ACT_DIM = 11, 3  # Hopper-v4


def write_dataset(path: str, size: int) -> str:
    import h5py
    rng = np.random.default_rng(0)
    ends = np.zeros(size, bool)
    ends[999::1000] = True  # 1000-step episodes cut by the time limit
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(size, OBS_DIM)).astype(np.float32)
        f["next_observations"] = rng.normal(size=(size, OBS_DIM)).astype(np.float32)
        f["actions"] = rng.uniform(-1, 1, (size, ACT_DIM)).astype(np.float32)
        f["rewards"] = rng.normal(size=size).astype(np.float32)
        f["terminals"] = rng.uniform(size=size) < 0.001
        f["timeouts"] = ends
    return path


def pure_update_rate(algo: str, num_seeds: int, size: int, calls: int) -> float:
    rng = np.random.default_rng(1)
    arrays = (rng.normal(size=(size, OBS_DIM)), rng.uniform(-1, 1, (size, ACT_DIM)), rng.normal(size=size),
              rng.normal(size=(size, OBS_DIM)), np.zeros(size))
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)])
    if algo == "td3_bc":
        agent = td3_bc.make_agent(td3_bc.Args(), OBS_DIM, ACT_DIM)
        data, learner = td3_bc.Buffer(*(jnp.asarray(a, jnp.float32) for a in arrays)), agent.init(keys)
        step = lambda lrn, i: agent.update(lrn, data, i % 2 == 1)[0]  # noqa: E731
    elif algo == "bcq":
        agent = bcq.make_agent(bcq.Args(), OBS_DIM, ACT_DIM)
        data, learner = bcq.Buffer(*(jnp.asarray(a, jnp.float32) for a in arrays)), agent.init(keys)
        step = lambda lrn, i: agent.update(lrn, data)[0]  # noqa: E731
    elif algo == "driftql":  # the code's defaults (no preset row): N = 32, Laplace, 4 x 512
        args, _ = driftql.resolve_presets(driftql.Args(preset="none"))
        agent = driftql.make_agent(args, OBS_DIM, ACT_DIM)
        data, learner = driftql.Buffer(*(jnp.asarray(a, jnp.float32) for a in arrays)), agent.init(keys)
        step = lambda lrn, i: agent.update(lrn, data)[0]  # noqa: E731
    else:  # offline TD7: the online file's vmapped update, with the dataset as every seed's buffer
        args = td7.Args(offline=True)
        agent = td7.make_agent(args, OBS_DIM, ACT_DIM)
        learner = agent.init(keys)[0]
        data = td7.Buffer(*(jnp.broadcast_to(jnp.asarray(a, jnp.float32), (num_seeds, *a.shape)) for a in arrays))
        prio = [td7.Priorities(jnp.ones((num_seeds, size)), jnp.ones(num_seeds), jnp.full(num_seeds, size, jnp.int32))]
        mask = np.ones(num_seeds, bool)

        def step(lrn, i):
            lrn, prio[0], _ = agent.update(lrn, data, prio[0], mask, i % 2 == 1, i % 250 == 249)
            return lrn
    for i in range(2):  # compile the variants
        learner = step(learner, i)
    if algo == "td7":
        learner = step(learner, 249)
    jax.block_until_ready(learner)
    t0 = time.time()
    for i in range(calls):
        learner = step(learner, i)
    jax.block_until_ready(learner)
    return calls / (time.time() - t0)


def loop_rate(algo: str, num_seeds: int, dataset: str, chunk: int, chunks: int, tmp: str) -> dict:
    module = {"td3_bc": td3_bc, "bcq": bcq, "td7": td7, "driftql": driftql}[algo]
    extra = {"offline": True} if algo == "td7" else {"preset": "none"} if algo == "driftql" else {}
    args = module.Args(dataset=f"d4rl:{dataset}", env_id="Hopper-v4", num_seeds=num_seeds,
                       total_timesteps=chunk * (chunks + 1), eval_freq=chunk, eval_episodes=1, results_dir=tmp,
                       run_name=f"{algo}_{num_seeds}_{time.time_ns()}", **extra)
    out = module.train(args)
    return {"loop_updates_per_s": out["updates_per_s"], "loop_compile_s": out["compile_s"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1_000_000, help="dataset transitions")
    parser.add_argument("--chunks", type=int, default=2, help="timed chunks per loop (after the compiling one)")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    parser.add_argument("--cases", nargs="+", default=["td3_bc:1:5000", "td3_bc:10:1000", "bcq:1:1000", "td7:1:500",
                                                        "driftql:1:20:20", "driftql:10:4:4"],
                        help="algo:seeds:chunk[:calls] (updates per scanned chunk = --eval-freq; calls of the pure "
                             "update, default max(chunk / 2, 100))")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        dataset = write_dataset(os.path.join(tmp, "hopper_random_numbers.hdf5"), opts.size)
        for case in opts.cases:
            algo, seeds, chunk, *calls = case.split(":")
            seeds, chunk = int(seeds), int(chunk)
            calls = int(calls[0]) if calls else max(chunk // 2, 100)
            row = {"algo": algo, "num_seeds": seeds, "chunk": chunk, "dataset": opts.size}
            row.update(loop_rate(algo, seeds, dataset, chunk, opts.chunks, tmp))
            row["update_per_s"] = pure_update_rate(algo, seeds, opts.size, calls)
            row["calls"] = calls
            row["loop_over_update"] = row["loop_updates_per_s"] / row["update_per_s"]
            rows.append(row)
            print(row, flush=True)
    _, name, lines = _report("offline", f"Offline updates/s on Hopper-v4 shapes (paper networks and batches), "
                             f"{opts.size:,}-transition dataset on the device", rows, opts.out)
    lines += ["| algo | seeds | scanned chunk | loop updates/s (per seed) | updates/s (all seeds) | pure update/s "
              "(calls) | loop / update | first chunk s (compile + its updates) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['algo']} | {r['num_seeds']} | {r['chunk']} | {r['loop_updates_per_s']:.4g} | "
                     f"{r['loop_updates_per_s'] * r['num_seeds']:.4g} | {r['update_per_s']:.4g} ({r['calls']}) | "
                     f"{r['loop_over_update']:.3f} | {r['loop_compile_s']:.1f} |")
    lines += ["", "For scale (not measured here): JAX-CORL reports about 430 s per 1M TD3+BC updates on a GPU "
              "(2,300 updates/s), the PyTorch CORL about 2.5 h (110 updates/s). DriftQL's paper reads about 23.5 min "
              "per 1M updates (N = 32) off its Fig. 4 on one RTX 4090, about 710 updates/s for one run (the authors' code "
              "trains one seed per process); its rows here time few updates (the chunk and the pure-update calls in "
              "the table) at the paper's sizes."]
    _write_md(name, lines)


if __name__ == "__main__":
    main()
