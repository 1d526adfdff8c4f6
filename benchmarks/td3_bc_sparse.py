"""Sparse-Reg's cost: algos/td3_bc_sparse.py's scanned offline loop against algos/td3_bc.py's, and one mask recompute.

On Hopper-v4 shapes (11-dim states, 3-dim actions) with the paper's networks (256-256) and batch (256), both files
at the same learning rates, a dataset of --size random transitions on the device, 1 and 10 seeds (vmapped):

  * td3_bc: `train_chunk` of --chunk updates (lax.scan), as train() runs it between evaluations;
  * sparse, masks frozen: td3_bc_sparse's `train_chunk` from an update count past --sparse-until (no recompute):
    the cost of the masks in every forward pass and update (params x mask, updates x mask);
  * one recompute: `rescore` alone (the SNIP score, a gradient of both losses with respect to the masks on one
    batch, and the top-k of each network), jitted and vmapped over the seeds.

Rounds are interleaved over the variants (machine noise hits them alike); medians are reported, compilation
excluded. The amortised overhead of the default schedule (until 200k updates) is the frozen chunk plus one
recompute per 1,000 updates (--mask-every), against td3_bc's chunk; after 200k only the frozen overhead remains.

    python benchmarks/td3_bc_sparse.py      # writes results/bench/td3_bc_sparse_<platform>.json and .md
"""

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from algos import td3_bc, td3_bc_sparse  # noqa: E402
from benchmarks.bench import _report, _write_md  # noqa: E402
from envs import runs  # noqa: E402

OBS_DIM, ACT_DIM = 11, 3  # Hopper-v4


def _data(size):
    rng = np.random.default_rng(0)
    return td3_bc.Buffer(*(jnp.asarray(a, jnp.float32) for a in (
        rng.normal(size=(size, OBS_DIM)), rng.uniform(-1, 1, (size, ACT_DIM)), rng.normal(size=size),
        rng.normal(size=(size, OBS_DIM)), rng.uniform(size=size) < 0.001)))


def _timed(fn, state):
    t0 = time.perf_counter()
    state = fn(state)
    jax.block_until_ready(state)
    return time.perf_counter() - t0, state


def bench(num_seeds: int, chunk: int, rounds: int, size: int) -> dict:
    data = _data(size)
    lr = {"actor_lr": 1e-3, "critic_lr": 1e-3}  # the Sparse-Reg code's, for both files
    keys = jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)])
    base = td3_bc.make_agent(td3_bc.Args(**lr), OBS_DIM, ACT_DIM)
    args = td3_bc_sparse.Args(**lr)
    sparse = td3_bc_sparse.make_agent(args, OBS_DIM, ACT_DIM)
    periods = chunk // args.policy_freq
    frozen_t = args.sparse_until  # past the schedule: no recompute in the chunk
    variants = {
        "td3_bc": (lambda s: base.train_chunk(s, data, periods)[0], base.init(keys)),
        "sparse_frozen": (lambda s: sparse.train_chunk(s, data, periods, frozen_t)[0],
                          sparse.rescore(sparse.init(keys), data)),
        "rescore": (lambda s: sparse.rescore(s, data), sparse.init(keys)),
    }
    states, compile_s, times = {}, {}, {k: [] for k in variants}
    for name, (fn, state) in variants.items():  # the first call compiles
        compile_s[name], states[name] = _timed(fn, state)
    for _ in range(rounds):
        for name, (fn, _) in variants.items():
            dt, out = _timed(fn, states[name])
            if name != "rescore":  # the rescore keeps its input (a fresh score of the same learner each round)
                states[name] = out
            times[name].append(dt)
    med = {k: float(np.median(v)) for k, v in times.items()}
    row = {"num_seeds": num_seeds, "chunk": chunk, "rounds": rounds, "dataset": size,
           "td3_bc_updates_per_s": chunk / med["td3_bc"], "sparse_frozen_updates_per_s": chunk / med["sparse_frozen"],
           "rescore_ms": 1e3 * med["rescore"], "compile_s": compile_s}
    row["frozen_overhead"] = med["sparse_frozen"] / med["td3_bc"] - 1
    per_update = med["td3_bc"] / chunk
    row["rescore_in_updates"] = med["rescore"] / per_update  # one recompute costs this many td3_bc updates
    row["amortised_overhead"] = (med["sparse_frozen"] + med["rescore"] * chunk / args.mask_every) / med["td3_bc"] - 1
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000, help="dataset transitions (the paper's small data)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", nargs="+", default=["1:500", "10:50"], help="seeds:chunk (updates per chunk)")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    opts = parser.parse_args()
    runs.compile_cache()
    load_before = os.getloadavg()[0]
    rows = []
    for case in opts.cases:
        seeds, chunk = (int(x) for x in case.split(":"))
        rows.append(bench(seeds, chunk, opts.rounds, opts.size))
        print(rows[-1], flush=True)
    _, name, lines = _report("td3_bc_sparse", f"Sparse-Reg TD3+BC against TD3+BC: updates/s and one mask recompute "
                             f"on Hopper-v4 shapes (256-256, batch 256), {opts.size:,} transitions on the device, "
                             f"median of {opts.rounds} rounds", rows, opts.out,
                             {"load_average": [load_before, os.getloadavg()[0]]})
    lines += ["| seeds | chunk | td3_bc updates/s (per seed) | sparse, masks frozen | overhead | one recompute ms "
              "(all seeds) | = td3_bc updates | overhead with one recompute per 1k updates |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['num_seeds']} | {r['chunk']} | {r['td3_bc_updates_per_s']:.4g} | "
                     f"{r['sparse_frozen_updates_per_s']:.4g} | {100 * r['frozen_overhead']:+.1f}% | "
                     f"{r['rescore_ms']:.1f} | {r['rescore_in_updates']:.2f} | {100 * r['amortised_overhead']:+.1f}% |")
    lines += ["", "Frozen: the masks in every forward pass and update (the rate after --sparse-until, or throughout "
              "with --sparse-until 0). The last column adds one recompute per 1,000 updates (the default schedule, "
              "until 200k updates), computed from the columns. Both files at learning rate 1e-3 (the Sparse-Reg "
              "code's); td3_bc's default is 3e-4, which does not change its speed. 1-minute load average "
              f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (2 cores: above 2, other work shared them and "
              "the rates are noisy)."]
    _write_md(name, lines)


if __name__ == "__main__":
    main()
