"""Checkpoint time and size: TD7, 5 seeds, Hopper-v4, a 200k-step buffer (the paper's 1M capacity).

Before: the pickle-era save of commit 27816fa (the whole filled buffer rewritten at every checkpoint),
loaded from git. After: envs/runs.Run.save, whose replay chunks hold only the slots written since the
previous checkpoint (5,000 steps per seed at the default --eval-freq).

    python benchmarks/checkpoint.py [--out results/bench/checkpoint_cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from algos import td7  # noqa: E402
from envs import runs  # noqa: E402

BEFORE = "27816fa0ea097c7cedc4d23836b08155b6ae270d"


def _old_td7():
    return runs.load_file(runs.algo_file_at(BEFORE, "td7", tempfile.mkdtemp()), "td7_before")


def _du(*paths) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for p in paths if os.path.exists(p) for d, _, fs in os.walk(p)
               for f in fs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--filled", type=int, default=200_000)
    parser.add_argument("--step", type=int, default=5_000, help="env steps per seed between checkpoints")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    a = parser.parse_args()
    n, filled = a.seeds, a.filled
    args = td7.Args(env_id="Hopper-v4", num_seeds=n, save_model=True)  # the paper's 1M steps: a 1M-slot buffer
    agent = td7.make_agent(args, 11, 3)
    learner, buffer, prio = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(n)]))
    rng = np.random.default_rng(0)
    buffer = td7.Buffer(*[x.at[:, :filled].set(jnp.asarray(rng.normal(size=(n, filled, *x.shape[2:])), x.dtype))
                          for x in buffer])
    prio = prio._replace(value=prio.value.at[:, :filled].set(1.0), count=jnp.full(n, filled, jnp.int32))
    host = {"t": np.full(n, filled), "pending": np.zeros(n, np.int64), "steps": np.full(n, filled - 25_000),
            "envs": {"env_id": "Hopper-v4", "seeds": list(range(n)), "reset_rng": [None] * n,
                     "actions": [rng.uniform(-1, 1, (500, 3)).astype(np.float32) for _ in range(n)]}}
    jax.block_until_ready(buffer)
    rows = []

    def timed(fn):
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    # Before: every checkpoint writes the whole filled buffer again.
    old = _old_td7()
    with tempfile.TemporaryDirectory() as d:
        s = timed(lambda: old.save_checkpoint(d, learner, buffer, prio, filled, host))
        rows.append({"what": "before (27816fa): every checkpoint", "seconds": s,
                     "bytes_written": _du(os.path.join(d, "checkpoint")), "bytes_on_disk": _du(d)})

    # After: the first save of a run that reached 200k writes the buffer once; later ones only the new slots.
    with tempfile.TemporaryDirectory() as d:
        run = runs.Run("td7", td7.Args(**{**vars(args), "results_dir": d, "run_name": "r"}), td7.Args)
        run.start({})
        tree = {"learner": learner, "prio": prio}
        t0 = time.perf_counter()
        run.save(filled, tree, host, ring=buffer, written=np.full(n, filled), per_slot=("prio",))
        first = time.perf_counter() - t0
        rows.append({"what": "after: first checkpoint (whole buffer once)", "seconds": first,
                     "bytes_written": _du(os.path.join(d, "r", "checkpoint"), os.path.join(d, "r", "replay")),
                     "bytes_on_disk": _du(d)})
        written, sizes, times = filled, [], []
        for _ in range(a.repeats):
            written += a.step  # the next a.step slots of every seed (contents do not matter for the timing)
            t0 = time.perf_counter()
            out = run.save(written, tree, {**host, "t": np.full(n, written)}, ring=buffer, written=np.full(n, written),
                           per_slot=("prio",))
            times.append(time.perf_counter() - t0)
            sizes.append(out["state_bytes"] + out["chunk_bytes"])
        rows.append({"what": f"after: each later checkpoint ({a.step} new steps per seed)",
                     "seconds": float(np.median(times)), "bytes_written": int(np.median(sizes)),
                     "bytes_on_disk": _du(d)})
        run.close()
    info = {"command": "python benchmarks/checkpoint.py " + " ".join(sys.argv[1:]), "seeds": n, "filled": filled,
            "capacity": agent.capacity, "learner_bytes": int(sum(x.nbytes for x in jax.tree.leaves(learner))),
            "versions": runs.versions(), "git": runs.git_info(),
            "machine": f"{platform.platform()}, {os.cpu_count()} CPUs", "date": time.strftime("%Y-%m-%d"), "rows": rows}
    lines = [f"# Checkpoint time and size: TD7, {n} seeds, Hopper-v4, {filled:,} steps in a {agent.capacity:,}-slot "
             "buffer", "", f"`{info['command']}` on {info['machine']}, jax {info['versions']['jax']}, "
             f"{info['date']}, commit {info['git']['commit']} (dirty: {info['git']['dirty']}).", "",
             "| save | seconds (median) | MB written | MB in the run folder after it |", "|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['seconds']:.2f} | {r['bytes_written'] / 1e6:.1f} | {r['bytes_on_disk'] / 1e6:.1f} |"
              for r in rows]
    lines += ["", f"Of each checkpoint, the learner alone (parameters, Adam moments, targets, checkpoint and evaluation "
                  f"copies, {n} seeds) is {info['learner_bytes'] / 1e6:.1f} MB."]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
        with open(a.out + ".md", "w") as f:
            f.write(text)
        with open(a.out + ".json", "w") as f:
            json.dump(info, f, indent=2)
    shutil.rmtree(os.path.dirname(old.__file__), ignore_errors=True)


if __name__ == "__main__":
    main()
