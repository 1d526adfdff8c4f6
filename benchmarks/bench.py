"""`make bench`: TD3 speed on this machine, compilation excluded (reported separately).

Measures, for each seed count:
  * the training loop: env steps per second of `algos/td3.py` on Hopper-v4 with paper
    shapes, after the warm-up steps and compilation, evaluation excluded;
  * the pure jitted update: TD3 updates per second on the same network and batch shapes
    (random buffer, no env), half of them with the delayed actor step, as in training.
The loop's overhead is the ratio loop / update. Results go to results/bench/td3_<platform>.json
and .md, with the machine, library versions and the command.
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from algos import td3  # noqa: E402


def pure_update_rate(num_seeds: int, iters: int, obs_dim: int, action_dim: int) -> tuple[float, float]:
    args = td3.Args(total_timesteps=100_000)
    agent = td3.make_agent(args, obs_dim, action_dim)
    learner, buffer = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
    buffer = jax.tree.map(lambda x: x + jax.random.normal(jax.random.PRNGKey(1), x.shape), buffer)
    size = jnp.int32(agent.capacity)
    t0 = time.time()
    for flag in (False, True):  # compile both variants
        learner, _ = agent.update(learner, buffer, size, flag)
    jax.block_until_ready(learner)
    compile_s = time.time() - t0
    t0 = time.time()
    for i in range(iters):
        learner, _ = agent.update(learner, buffer, size, i % 2 == 1)
    jax.block_until_ready(learner)
    return iters / (time.time() - t0), compile_s


def loop_rate(num_seeds: int, steps: int, env_id: str, out_dir: str) -> dict:
    warmup = 1_000
    args = td3.Args(env_id=env_id, num_seeds=num_seeds, learning_starts=warmup, total_timesteps=warmup + steps,
                    eval_freq=10 * (warmup + steps), eval_episodes=1, results_dir=out_dir)
    out = td3.train(args)
    return {"loop_steps_per_s": out["train_loop_steps_per_s"], "compile_s": out["compile_s"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="Hopper-v4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=3_000, help="timed training steps per seed count")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    opts = parser.parse_args()
    import tempfile

    import envs

    probe = envs.SeedEnvs(opts.env_id, [0])
    obs_dim, action_dim = probe.obs_dim, probe.action_dim
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in opts.seeds:
            upd, upd_compile = pure_update_rate(n, opts.steps, obs_dim, action_dim)
            loop = loop_rate(n, opts.steps, opts.env_id, tmp)
            rows.append({"num_seeds": n, "loop_steps_per_s": loop["loop_steps_per_s"],
                         "loop_env_steps_per_s": loop["loop_steps_per_s"] * n, "loop_compile_s": loop["compile_s"],
                         "update_per_s": upd, "update_compile_s": upd_compile,
                         "loop_over_update": loop["loop_steps_per_s"] / upd})
            print(json.dumps(rows[-1]), flush=True)
    device = jax.devices()[0]
    report = {
        "benchmark": f"TD3 {opts.env_id}, paper shapes (256-256, batch 256), {opts.steps} timed steps",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
                    "jax_device": f"{device.platform}:{device.device_kind}"},
        "versions": td3._versions(), "git": td3._git(), "date": time.strftime("%Y-%m-%d"), "rows": rows,
    }
    os.makedirs(opts.out, exist_ok=True)
    name = f"td3_{device.platform}"
    with open(os.path.join(opts.out, f"{name}.json"), "w") as f:
        json.dump(report, f, indent=2)
    lines = [f"# {report['benchmark']}", "", f"`{report['command']}` on {report['machine']['platform']}, "
             f"{report['machine']['cpu_count']} CPUs, JAX device {report['machine']['jax_device']}, "
             f"jax {report['versions']['jax']}, {report['date']}, commit {report['git']['commit']}.", "",
             "| seeds | loop steps/s (per seed) | env steps/s (all seeds) | pure update/s | loop / update | compile s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['num_seeds']} | {r['loop_steps_per_s']:.1f} | {r['loop_env_steps_per_s']:.1f} | "
                     f"{r['update_per_s']:.1f} | {r['loop_over_update']:.3f} | {r['loop_compile_s']:.2f} |")
    with open(os.path.join(opts.out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
