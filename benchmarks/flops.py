"""`make bench` (FLOP part): each algorithm's pure jitted update, its GFLOP (XLA's cost analysis) and its GFLOP/s,
next to a lone float32 matmul of the networks' dominant shape measured in the same run: the ratio is our
distance from this machine's limit.

One seed, paper networks and batches, on random data (the update's cost does not depend on the values):
Hopper-v4 shapes (11-dim states, 3-dim actions) for the continuous files, dqn-atari shapes (4 x 84 x 84 uint8,
6 actions) for the DQN family and discrete BCQ. MR.Q and DR.Q have the same table in results/bench/mrq_cpu.md
and drq_cpu.md (benchmarks/mrq_speed.py). Each update is timed as the median of --rounds rounds of --calls
calls after compilation. FLOPs are those of the HLO before optimisation (no second compile); a matmul of
[m, k] x [k, n] counts 2mkn. Results go to results/bench/flops_<platform>.json and .md.
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
from benchmarks.bench import _report, _write_md  # noqa: E402

OBS, ACT = 11, 3
ATARI_SHAPE, ATARI_ACTIONS, HISTORY = (4, 84, 84), 6, 4


def _mod(name):
    import importlib
    return importlib.import_module(f"algos.{name}")


def _seed_keys():
    return jnp.stack([jax.random.PRNGKey(0)])


def _noise(tree, key=1):
    """Random values in every float leaf (a buffer of zeros would take the same FLOPs, but NaN-free values
    keep the timing honest)."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.PRNGKey(key), len(leaves))
    out = [x + jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
           for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, out)


# ---------------------------------------------------------------- one case per algorithm file
# Each returns (jitted fn, positional args, static kwargs, call(state) -> state, state, matmul shape, what).

def _online_td3_family(name):
    m = _mod(name)
    args = m.Args(env_id="Hopper-v4", total_timesteps=100_000)
    agent = m.make_agent(args, OBS, ACT)
    state = agent.init(_seed_keys())
    learner, buffer = state[0], _noise(state[1])
    size = jnp.int32(agent.capacity)
    shape = (args.batch_size, 256, 256)
    if len(state) == 3:  # LAP / PER: priorities spread over [1, 5]
        prio = state[2]._replace(value=jax.random.uniform(jax.random.PRNGKey(2), state[2].value.shape,
                                                          minval=1.0, maxval=5.0))
        return (agent.update, (learner, buffer, prio, True), lambda s: agent.update(s, buffer, prio, True)[0],
                learner, shape, "critic + actor + targets")
    if name == "ddpg":
        return (agent.update, (learner, buffer, size), lambda s: agent.update(s, buffer, size)[0], learner, shape,
                "critic + actor + targets")
    return (agent.update, (learner, buffer, size, True), lambda s: agent.update(s, buffer, size, True)[0], learner,
            shape, "critic + delayed actor + targets (an actor iteration)")


def _td7(offline=False):
    m = _mod("td7")
    args = m.Args(env_id="Hopper-v4", total_timesteps=100_000, offline=offline)
    agent = m.make_agent(args, OBS, ACT)
    learner, buffer, prio = agent.init(_seed_keys())
    buffer = _noise(buffer)
    prio = prio._replace(value=jnp.ones_like(prio.value), count=jnp.full(prio.count.shape, agent.capacity, jnp.int32))
    mask = np.ones(1, bool)
    box = {"prio": prio}

    def call(s):
        s, box["prio"], _ = agent.update(s, buffer, box["prio"], mask, True, False)
        return s
    return (agent.update, (learner, buffer, prio, mask, True, False), call, learner, (args.batch_size, 256, 256),
            "encoder + critic + actor + LAP (an actor iteration)")


def _offline(name):
    m = _mod(name)
    rng = np.random.default_rng(1)
    n = 100_000
    data = m.Buffer(*(jnp.asarray(a, jnp.float32) for a in (
        rng.normal(size=(n, OBS)), rng.uniform(-1, 1, (n, ACT)), rng.normal(size=n), rng.normal(size=(n, OBS)),
        np.zeros(n))))
    args = m.Args(env_id="Hopper-v4")
    if name == "driftql":  # the code's defaults (no preset row): N = 32, Laplace, 4 x 512
        args, _ = m.resolve_presets(m.Args(env_id="Hopper-v4", preset="none"))
    agent = m.make_agent(args, OBS, ACT)
    learner = agent.init(_seed_keys())
    if name == "td3_bc":
        return (agent.update, (learner, data, True), lambda s: agent.update(s, data, True)[0], learner,
                (args.batch_size, 256, 256), "critic + actor with BC + targets (an actor iteration)")
    if name == "driftql":  # the dominant matmul: a 512 x 512 layer of the generator on batch x N candidate rows
        return (agent.update, (learner, data), lambda s: agent.update(s, data)[0], learner,
                (args.batch_size * args.drift_ngen, args.hidden_dim, args.hidden_dim),
                f"generator on {args.batch_size} x {args.drift_ngen} candidates + drift + critic ensemble + Polyak")
    return (agent.update, (learner, data), lambda s: agent.update(s, data)[0], learner, (args.batch_size, 750, 750),
            "VAE + critic on 10 candidates + perturbation actor + targets")


def _ddqn(name):
    m = _mod(name)
    args = m.resolve_presets(m.Args(env_id="dqn-atari:Pong", buffer_size=5_000, total_timesteps=50_000))
    agent = m.make_agent(args, ATARI_SHAPE, np.dtype(np.uint8), ATARI_ACTIONS, HISTORY)
    state = agent.init(_seed_keys())
    learner, buffer = state[0], state[1]
    cap = buffer.frame.shape[1]
    rng = np.random.default_rng(0)
    buffer = buffer._replace(frame=jnp.asarray(rng.integers(0, 255, buffer.frame.shape), jnp.uint8),
                             action=jnp.asarray(rng.integers(0, ATARI_ACTIONS, (1, cap)), jnp.int32),
                             reward=jnp.asarray(rng.normal(size=(1, cap)), jnp.float32),
                             not_done=jnp.ones((1, cap)), pos=jnp.asarray(np.arange(cap)[None] % 500, jnp.int32),
                             valid=jnp.ones((1, cap), bool))
    count = jnp.full(1, cap, jnp.int32)
    if "priority" in buffer._fields:  # LAP / PER: priorities spread over [1, 5]
        buffer = buffer._replace(priority=jax.random.uniform(jax.random.PRNGKey(2), buffer.priority.shape,
                                                             minval=1.0, maxval=5.0))
    call = lambda s: agent.update(s, buffer, count, False)[0]  # noqa: E731
    return (agent.update, (learner, buffer, count, False), call, learner, (args.batch_size, 3136, 512),
            "Q + target, Nature CNN (no target copy)")


def _discrete_bcq():
    m = _mod("discrete_bcq")
    args = m.resolve_presets(m.Args(env_id="dqn-atari:Pong"))
    agent = m.make_agent(args, ATARI_SHAPE, np.dtype(np.uint8), ATARI_ACTIONS)
    learner = agent.init(_seed_keys())
    rng = np.random.default_rng(0)
    rows, n = 20_000, 20_000
    data = m.Data(jnp.asarray(rng.integers(0, 255, (rows, 84, 84)), jnp.uint8),
                  jnp.asarray(rng.integers(1, rows, (n, HISTORY)), jnp.int32),
                  jnp.asarray(rng.integers(1, rows, (n, HISTORY)), jnp.int32),
                  jnp.asarray(rng.integers(0, ATARI_ACTIONS, n), jnp.int32), jnp.asarray(rng.normal(size=n), jnp.float32),
                  jnp.zeros(n))
    return (agent.update, (learner, data), lambda s: agent.update(s, data)[0], learner, (args.batch_size, 3136, 512),
            "Q + imitation heads, Nature CNN, thresholded target")


def _sr_dice(phase):
    from benchmarks import sr_dice as bsd
    sd = _mod("sr_dice")
    args = sd.resolve_presets(sd.Args(env_id="Hopper-v4", estimators="sr_dice,deep_sr,deep_td"))
    agent = sd.make_agent(args, (OBS,), ACT, bsd.policy(), atari=False)
    d = bsd.data()
    chunk = {"encoder-decoder": agent.ed_chunk, "SR": agent.sr_chunk, "estimation": agent.ope_chunk}[phase]
    learner = agent.init(_seed_keys())
    shape = (2048, 256, 256) if phase == "estimation" else (256, 256, 256)
    # one iteration = a lax.scan of length 1 (the loop scans chunks of such iterations)
    return (chunk, (learner, d, 1), lambda s: chunk(s, d, 1)[0], learner, shape,
            {"encoder-decoder": "phase 1 iteration", "SR": "phase 2 iteration (psi, soft target)",
             "estimation": "phase 3 iteration, all three estimators"}[phase])


CASES = {
    "td3.py": lambda: _online_td3_family("td3"),
    "ddpg.py": lambda: _online_td3_family("ddpg"),
    "td3_lap.py": lambda: _online_td3_family("td3_lap"),
    "td3_pal.py": lambda: _online_td3_family("td3_pal"),
    "td3_per.py": lambda: _online_td3_family("td3_per"),
    "td7.py": lambda: _td7(),
    "td7.py --offline": lambda: _td7(offline=True),
    "td3_bc.py": lambda: _offline("td3_bc"),
    "bcq.py": lambda: _offline("bcq"),
    "driftql.py": lambda: _offline("driftql"),
    "ddqn.py": lambda: _ddqn("ddqn"),
    "ddqn_lap.py": lambda: _ddqn("ddqn_lap"),
    "ddqn_pal.py": lambda: _ddqn("ddqn_pal"),
    "ddqn_per.py": lambda: _ddqn("ddqn_per"),
    "discrete_bcq.py": _discrete_bcq,
    "sr_dice.py (encoder-decoder)": lambda: _sr_dice("encoder-decoder"),
    "sr_dice.py (SR)": lambda: _sr_dice("SR"),
    "sr_dice.py (estimation)": lambda: _sr_dice("estimation"),
}


def xla_flops(fn, args) -> float:
    cost = fn.lower(*args).cost_analysis()  # static arguments are passed as they were at jit time
    return float((cost[0] if isinstance(cost, list) else cost).get("flops", float("nan")))


def timed(call, state, calls: int, rounds: int) -> float:
    state = call(state)
    jax.block_until_ready(state)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            state = call(state)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - t0) / calls)
    return float(np.median(times))


def matmul_rate(m: int, k: int, n: int, calls: int, rounds: int) -> float:
    x = jax.random.normal(jax.random.PRNGKey(0), (m, k))
    w = jax.random.normal(jax.random.PRNGKey(1), (k, n)) / np.sqrt(k)
    g = jax.jit(lambda x, w: x @ w)
    jax.block_until_ready(g(x, w))
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            y = g(x, w)
        jax.block_until_ready(y)
        times.append((time.perf_counter() - t0) / calls)
    return 2 * m * k * n / float(np.median(times)) / 1e9


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    opts = p.parse_args()
    rows = []
    for name, make in CASES.items():
        if opts.only and not any(o in name for o in opts.only):
            continue
        fn, args, call, state, shape, what = make()
        flops = xla_flops(fn, args)
        s = timed(call, state, opts.calls, opts.rounds)
        mm = matmul_rate(*shape, calls=max(opts.calls, 100), rounds=opts.rounds)
        rows.append({"file": name, "what": what, "gflop": flops / 1e9, "ms": 1e3 * s, "gflop_per_s": flops / s / 1e9,
                     "matmul": "x".join(map(str, shape)), "matmul_gflop_per_s": mm,
                     "fraction": flops / s / 1e9 / mm})
        print(rows[-1], flush=True)
    _, out, lines = _report("flops", f"Pure jitted updates: GFLOP (XLA cost analysis) and GFLOP/s against a lone "
                            f"matmul, 1 seed, paper shapes, median of {opts.rounds} rounds of {opts.calls} calls",
                            rows, opts.out)
    lines += ["| file | pure update | GFLOP | ms | GFLOP/s | lone matmul [m, k] x [k, n] | its GFLOP/s | fraction |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['file']} | {r['what']} | {r['gflop']:.3f} | {r['ms']:.2f} | {r['gflop_per_s']:.1f} | "
                     f"{r['matmul']} | {r['matmul_gflop_per_s']:.1f} | {r['fraction']:.2f} |")
    lines += ["", "MR.Q and DR.Q: the same columns per jitted piece in results/bench/mrq_cpu.md and drq_cpu.md. "
              "Convolutional updates (DQN family, discrete BCQ) are compared with the dense matmul of their 3136 -> "
              "512 layer; most of their FLOPs are convolutions, which XLA:CPU runs at a lower rate (MR.Q's pixel encoder: "
              "results/bench/mrq_cpu.md)."]
    _write_md(out, lines)


if __name__ == "__main__":
    main()
