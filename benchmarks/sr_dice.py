"""`make bench` (SR-DICE part): iterations per second of algos/sr_dice.py's three phases.

On Hopper-v4 shapes (11-dim states, 3-dim actions) with the paper's networks and batches, a 50k-transition
dataset of random numbers (250 start states) and a random 256-256 tanh MLP as the evaluated policy: the
jitted, vmapped lax.scan chunk of each phase (encoder-decoder, SR, estimation with all three estimators
and with each alone), timed after compilation, median of --rounds rounds of --iterations iterations, for
1 and --seeds seeds. Results go to results/bench/sr_dice_<platform>.json and .md with the machine,
versions and command.
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from algos import sr_dice as sd  # noqa: E402
from benchmarks.bench import _report, _write_md  # noqa: E402

OBS_DIM, ACT_DIM, N, STARTS = 11, 3, 50_000, 250


def data():
    rng = np.random.default_rng(0)
    f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return sd.Data(f(N, OBS_DIM), f(N, OBS_DIM), f(STARTS, OBS_DIM), jnp.zeros((1, 1), jnp.int32),
                   jnp.zeros((1, 1), jnp.int32), jnp.zeros((STARTS, 1), jnp.int32),
                   jnp.asarray(rng.uniform(-1, 1, (N, ACT_DIM)), jnp.float32), f(N), jnp.ones(N))


def policy():
    rng = np.random.default_rng(1)
    ws = [jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]), jnp.float32) for s in ((OBS_DIM, 256), (256, 256),
                                                                                  (256, ACT_DIM))]
    return lambda o: jnp.tanh(jax.nn.relu(jax.nn.relu(o @ ws[0]) @ ws[1]) @ ws[2])


def rate(chunk, learner, d, iterations: int, rounds: int) -> tuple[float, float]:
    tc = time.time()
    learner, _ = chunk(learner, d, iterations)
    jax.block_until_ready(learner)
    compile_s = time.time() - tc
    times = []
    for _ in range(rounds):
        t = time.time()
        learner, _ = chunk(learner, d, iterations)
        jax.block_until_ready(learner)
        times.append(time.time() - t)
    return iterations / float(np.median(times)), compile_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    opts = p.parse_args()
    d, target = data(), policy()
    rows = []
    for seeds in sorted({1, opts.seeds}):
        keys = jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)])
        for phase, estimators in (("encoder-decoder", "sr_dice,deep_sr,deep_td"), ("SR", "sr_dice,deep_sr,deep_td"),
                                  ("estimation", "sr_dice,deep_sr,deep_td"), ("estimation", "sr_dice"),
                                  ("estimation", "deep_sr"), ("estimation", "deep_td")):
            args = sd.resolve_presets(sd.Args(env_id="Hopper-v4", estimators=estimators))
            agent = sd.make_agent(args, (OBS_DIM,), ACT_DIM, target, atari=False)
            chunk = {"encoder-decoder": agent.ed_chunk, "SR": agent.sr_chunk, "estimation": agent.ope_chunk}[phase]
            its, compile_s = rate(chunk, agent.init(keys), d, opts.iterations, opts.rounds)
            rows.append({"seeds": seeds, "phase": phase, "estimators": estimators if phase == "estimation" else "",
                         "iterations_per_s": its, "seed_iterations_per_s": its * seeds, "compile_s": compile_s})
            print(rows[-1], flush=True)
    _, name, lines = _report("sr_dice", f"SR-DICE phases, Hopper-v4 shapes, paper batches (256; 2048 + 2048 start "
                             f"states), median of {opts.rounds} rounds of {opts.iterations} iterations", rows, opts.out)
    lines += ["| seeds | phase | estimators | iterations/s | seed-iterations/s | compile s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seeds']} | {r['phase']} | {r['estimators'] or '—'} | {r['iterations_per_s']:.1f} | "
                     f"{r['seed_iterations_per_s']:.1f} | {r['compile_s']:.1f} |")
    full = next(r for r in rows if r["seeds"] == 1 and r["estimators"] == "sr_dice,deep_sr,deep_td")
    ed = next(r for r in rows if r["seeds"] == 1 and r["phase"] == "encoder-decoder")
    sr = next(r for r in rows if r["seeds"] == 1 and r["phase"] == "SR")
    hours = (30_000 / ed["iterations_per_s"] + 100_000 / sr["iterations_per_s"] + 250_000 / full["iterations_per_s"]) / 3600
    lines += ["", f"One seed through the paper's 30k + 100k + 250k iterations with all three estimators: "
              f"{hours:.2f} h at these rates (not counting the estimates every 1k and the ground truth)."]
    _write_md(name, lines)


if __name__ == "__main__":
    main()
