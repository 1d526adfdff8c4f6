"""Double DQN on the DQN-era Atari preprocessing (issue 13): update rate and env steps/s with 1 and 4 seeds.

* updates/s: one jitted, vmapped training iteration of algos/ddqn.py (and its LAP / PAL / PER siblings)
  on the Nature network at the Atari dict's batch 32, over a replay of real dqn-atari frames (uniform-random
  play), after compilation; "seed-updates/s" counts every seed's update;
* env steps/s: `envs.SeedEnvs.step` of dqn-atari:<Game> (4 frames, max-pool, resize, stack) with random
  actions, all seeds stepped in this process, and the whole training loop's step (env step, store, one
  update every 4 steps as the Atari dict) measured through agent.step.

    python benchmarks/ddqn.py            # -> results/bench/ddqn_atari_cpu.md and .json
    python benchmarks/ddqn.py --game Breakout --seeds 1 4 --updates 50
"""

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from envs import runs  # noqa: E402

ALGOS = ("ddqn", "ddqn_lap", "ddqn_pal", "ddqn_per")


def _module(name):
    return runs.load_file(os.path.join(ROOT, "algos", f"{name}.py"), f"_bench_{name}")


def _fill(module, env, seeds, slots, capacity):
    """An agent of ``module`` and its replay holding ``slots`` steps of random play on ``env``."""
    args = module.resolve_presets(module.Args(env_id=env, num_seeds=seeds, buffer_size=capacity,
                                              total_timesteps=10 * capacity))
    train_envs = envs.SeedEnvs(env, list(range(seeds)), discrete_ok=True, pixels_ok=True)
    agent = module.make_agent(args, train_envs.obs_shape, train_envs.obs_dtype, train_envs.action_dim, 4)
    learner, buffer = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(seeds)]))
    obs, count = train_envs.reset(), np.zeros(seeds, np.int64)
    rng = np.random.default_rng(0)
    for _ in range(slots):
        pos = train_envs.ep_length.astype(np.int32)
        action = rng.integers(0, train_envs.action_dim, seeds)
        step = train_envs.step(action)
        store = ~step.truncated
        end = store & step.terminated
        tr = module.Transition(obs[:, -1:], action.astype(np.int32), np.clip(step.reward, -1, 1),
                               step.terminated.astype(np.float32), step.next_obs[:, -1:], pos, store, end)
        learner, buffer, _, _ = agent.step(learner, buffer, tr, count, step.obs, False, False, True)
        count, obs = count + 1 + end, step.obs
    return args, agent, learner, buffer, train_envs, obs, count


def bench_updates(module, env, seeds, updates):
    args, agent, learner, buffer, train_envs, _, count = _fill(module, env, seeds, 600, 2_000)
    train_envs.close()
    count = jnp.asarray(count)
    t0 = time.perf_counter()
    learner, m = agent.update(learner, buffer, count, False)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(updates):
            learner, m = agent.update(learner, buffer, count, False)
        jax.block_until_ready(m)
        times.append((time.perf_counter() - t0) / updates)
    per = float(np.median(times))
    return {"compile_s": compile_s, "ms_per_update": 1e3 * per, "updates_per_s": 1 / per,
            "seed_updates_per_s": seeds / per}


def bench_env(env, seeds, steps):
    train_envs = envs.SeedEnvs(env, list(range(seeds)), discrete_ok=True, pixels_ok=True)
    train_envs.reset()
    rng = np.random.default_rng(0)
    actions = rng.integers(0, train_envs.action_dim, (steps, seeds))
    t0 = time.perf_counter()
    for a in actions:
        train_envs.step(a)
    per = (time.perf_counter() - t0) / steps
    train_envs.close()
    return {"ms_per_step": 1e3 * per, "steps_per_s": 1 / per, "seed_steps_per_s": seeds / per}


def bench_loop(module, env, seeds, steps):
    """agent.step as train() calls it with the Atari dict's rhythm: a training iteration every 4th step."""
    args, agent, learner, buffer, train_envs, obs, count = _fill(module, env, seeds, 600, 2_000)
    rng = np.random.default_rng(1)
    action = jnp.zeros(seeds, jnp.int32)

    def one(t, learner, buffer, action, obs, count):
        pos = train_envs.ep_length.astype(np.int32)
        a = np.asarray(action)
        step = train_envs.step(a)
        store = ~step.truncated
        end = store & step.terminated
        tr = module.Transition(obs[:, -1:], a, np.clip(step.reward, -1, 1), step.terminated.astype(np.float32),
                               step.next_obs[:, -1:], pos, store, end)
        learner, buffer, action, _ = agent.step(learner, buffer, tr, count, step.obs, (t + 1) % 4 == 0, False, False)
        return learner, buffer, action, step.obs, count + 1 + end

    for t in range(8):  # compile every variant
        learner, buffer, action, obs, count = one(t, learner, buffer, action, obs, count)
    jax.block_until_ready(action)
    t0 = time.perf_counter()
    for t in range(steps):
        learner, buffer, action, obs, count = one(t, learner, buffer, action, obs, count)
    jax.block_until_ready(action)
    per = (time.perf_counter() - t0) / steps
    train_envs.close()
    del rng
    return {"ms_per_step": 1e3 * per, "steps_per_s": 1 / per, "seed_steps_per_s": seeds / per}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--updates", type=int, default=30, help="timed updates per round (3 rounds, median)")
    parser.add_argument("--env-steps", type=int, default=400)
    parser.add_argument("--loop-steps", type=int, default=200)
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench", "ddqn_atari_cpu"))
    a = parser.parse_args(argv)
    env = f"dqn-atari:{a.game}"
    out = {"env": env, "platform": jax.devices()[0].platform, "cpus": os.cpu_count(),
           "load_avg_start": os.getloadavg()[0], "versions": runs.versions(("ale-py", "opencv-python-headless")), "git": runs.git_info(),
           "updates": {}, "env_steps": {}, "loop": {}}
    for seeds in a.seeds:
        for name in ALGOS:
            out["updates"][f"{name}/{seeds}"] = r = bench_updates(_module(name), env, seeds, a.updates)
            print(f"{name:9s} seeds={seeds}: {r['ms_per_update']:.2f} ms/update, {r['seed_updates_per_s']:.1f} seed-updates/s")
        out["env_steps"][str(seeds)] = r = bench_env(env, seeds, a.env_steps)
        print(f"env      seeds={seeds}: {r['ms_per_step']:.2f} ms/step, {r['seed_steps_per_s']:.0f} seed-steps/s")
        out["loop"][str(seeds)] = r = bench_loop(_module("ddqn"), env, seeds, a.loop_steps)
        print(f"loop     seeds={seeds}: {r['ms_per_step']:.2f} ms/step, {r['seed_steps_per_s']:.0f} seed-steps/s")
    out["load_avg_end"] = os.getloadavg()[0]
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    v = out["versions"]
    lines = [f"# Double DQN on {env}: updates and env steps ({out['platform']}, {out['cpus']} CPUs)", "",
             f"`python benchmarks/ddqn.py` at commit {out['git'].get('commit', '?')[:10]}; jax {v.get('jax')}, "
             f"ale-py {v['ale-py']}, opencv {v['opencv-python-headless']}; load average {out['load_avg_start']:.1f} at the start, "
             f"{out['load_avg_end']:.1f} at the end. All after compilation; medians of 3 rounds.", "",
             "| | seeds | ms per call | per second (all seeds) |", "|---|---|---|---|"]
    for key, r in out["updates"].items():
        name, seeds = key.split("/")
        lines.append(f"| {name} update (batch 32, Nature net) | {seeds} | {r['ms_per_update']:.2f} | "
                     f"{r['seed_updates_per_s']:.1f} seed-updates |")
    for seeds, r in out["env_steps"].items():
        lines.append(f"| env step (SeedEnvs, random actions) | {seeds} | {r['ms_per_step']:.2f} | "
                     f"{r['seed_steps_per_s']:.0f} seed-steps |")
    for seeds, r in out["loop"].items():
        lines.append(f"| ddqn training loop step (update every 4th) | {seeds} | {r['ms_per_step']:.2f} | "
                     f"{r['seed_steps_per_s']:.0f} seed-steps |")
    lines += ["", "Compile time of the first update (s): " + ", ".join(
        f"{k} {r['compile_s']:.1f}" for k, r in out["updates"].items()), ""]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {a.out}.md")


if __name__ == "__main__":
    main()
