"""DR.Q's faded replay: what the forget weights cost per env step at the run's 1M slots.

The authors multiply every slot's forget weight by 0.9999 at each stored step. algos/drq.py keeps
each slot's write count instead and computes 0.9999^age where the sampler reads the buffer (one
cumulative sum per update). This times, per env step, in one process and interleaved:

- MR.Q's sampling distribution (priority x valid: the cost without any fading);
- DR.Q's (priority x valid x clip(0.9999^age, 0.1, 1) from the counters);
- the rewrite the authors do (a stored weight array multiplied by 0.9999 and one slot set to 1, in
  place), plus the sampling distribution that reads the stored weights.

    python benchmarks/drq_fade.py        # writes results/bench/drq_fade_cpu.md
"""

import argparse
import math
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from algos import drq, mrq  # noqa: E402
from envs import runs  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slots", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=300, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench", "drq_fade_cpu.md"))
    opts = parser.parse_args()
    s = opts.slots
    rng = np.random.default_rng(0)
    valid = jnp.asarray(rng.random(s) < 0.99)
    priority = jnp.asarray(rng.random(s).astype(np.float32) + 1.0)
    buf = drq.replay_init(s, (1,), jnp.float32, 1)._replace(
        valid=valid, priority=priority, added=jnp.asarray(rng.integers(0, 2 * s, s), jnp.int32), adds=jnp.int32(2 * s))
    plain = mrq.replay_init(s, (1,), jnp.float32, 1)._replace(valid=valid, priority=priority)

    def stored_cdf(priority, valid, weight):  # the authors' form: the weights are an array
        w = jnp.where(valid, priority * jnp.clip(weight, 0.1, 1.0), 0.0)
        return jnp.cumsum(jnp.pad(w, (0, -s % drq.SAMPLE_BLOCK)).reshape(-1, drq.SAMPLE_BLOCK).sum(-1))

    def decay(weight, slot):  # one stored step: every weight times 0.9999, the new slot's 1
        return (weight * 0.9999).at[slot].set(1.0)

    cases = {
        "MR.Q: priority x valid (no fading)": (jax.jit(mrq.replay_cdf), lambda: (plain,)),
        "DR.Q here: counters, 0.9999^age in the sampler": (jax.jit(drq.replay_cdf), lambda: (buf,)),
    }
    decay_jit = jax.jit(decay, donate_argnums=0)
    stored = jax.jit(stored_cdf)
    weight = [jnp.asarray(rng.random(s).astype(np.float32))]

    def rewrite_step(i):
        weight[0] = decay_jit(weight[0], jnp.int32(i % s))
        return stored(priority, valid, weight[0])

    times = {k: [] for k in [*cases, "authors' form: rewrite every weight, then the sampler"]}
    for name, (fn, args) in cases.items():
        jax.block_until_ready(fn(*args()))
    jax.block_until_ready(rewrite_step(0))
    for _ in range(opts.rounds):
        for name, (fn, args) in cases.items():
            a = args()
            t0 = time.perf_counter()
            for _ in range(opts.calls):
                y = fn(*a)
            jax.block_until_ready(y)
            times[name].append((time.perf_counter() - t0) / opts.calls)
        t0 = time.perf_counter()
        for i in range(opts.calls):
            y = rewrite_step(i)
        jax.block_until_ready(y)
        times["authors' form: rewrite every weight, then the sampler"].append((time.perf_counter() - t0) / opts.calls)
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    base = med["MR.Q: priority x valid (no fading)"]
    device = jax.devices()[0]
    lines = ["# DR.Q's faded replay: cost per env step", "",
             f"`python benchmarks/drq_fade.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` on "
             f"{os.cpu_count()} CPUs, JAX device {device.platform}:{device.device_kind}, jax {jax.__version__}, "
             f"{time.strftime('%Y-%m-%d %H:%M')}, commit {runs.git_info()['commit'][:10]}. {s:,} slots; per env step "
             f"one sampling distribution (the value update's; the encoder burst's is one per 250 steps); median of "
             f"{opts.rounds} interleaved rounds of {opts.calls} calls. ln 0.1 / ln 0.9999 = "
             f"{math.log(0.1) / math.log(0.9999):,.1f} steps to the floor.", "",
             "| per env step | ms | over MR.Q, ms |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {v - base:+.3f} |" for k, v in med.items()]
    with open(opts.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
