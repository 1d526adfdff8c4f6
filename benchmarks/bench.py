"""`make bench`: TD3, TD7 and MR.Q speed on this machine, compilation excluded (reported separately).

Measures, for each algorithm and seed count:
  * the training loop: env steps per second of `algos/<algo>.py` on Hopper-v4 with paper
    shapes, after the warm-up steps and compilation, evaluation excluded (TD7: default
    checkpoints, so training comes in bursts at episode ends);
  * the pure jitted update: updates per second on the same network and batch shapes (random
    buffer, no env), half of them with the delayed actor step, as in training;
  * TD3 only: the same loop's device calls with a fixed transition instead of the env; and the
    env step alone, to show where the loop's time goes.
The loop's overhead is the ratio loop / update.

TD7 also: the pure update at the run's replay size (1M slots) with its two-level prioritised
sampler against one cumulative sum over the whole buffer (the sampler before issue 17), interleaved.

MR.Q has its own benchmark: benchmarks/mrq_speed.py (`make bench` runs both).

Results go to results/bench/<algo>_<platform>.json and .md, with the machine, library versions and
the command.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import envs  # noqa: E402
from algos import td3, td7  # noqa: E402
from envs import runs  # noqa: E402

ALGOS = {"td3": td3, "td7": td7}
TIMED_STEPS = {"td3": 1_500, "td7": 800}  # default timed steps per round


class PureUpdate:
    """Updates on a random buffer of Hopper shapes, no env: the compute-bound ceiling."""

    def __init__(self, algo: str, num_seeds: int, obs_dim: int, action_dim: int):
        self.algo = algo
        self.agent = ALGOS[algo].make_agent(ALGOS[algo].Args(total_timesteps=100_000), obs_dim, action_dim)
        state = self.agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
        self.learner = state[0]
        self.buffer = jax.tree.map(lambda x: x + jax.random.normal(jax.random.PRNGKey(1), x.shape), state[1])
        if algo == "td7":  # a full buffer, all priorities 1, every seed updated (no mask)
            self.prio = state[2]._replace(value=jnp.ones_like(state[2].value),
                                          count=jnp.full((num_seeds,), self.agent.capacity, jnp.int32))
            self.mask = np.ones(num_seeds, bool)
        t0 = time.time()
        self.run(2)  # compiles both variants (critic only, critic + actor)
        self.compile_s = time.time() - t0

    def run(self, iters: int) -> float:
        size = jnp.int32(self.agent.capacity)
        t0 = time.time()
        for i in range(iters):  # the training schedule: the actor on every second iteration
            if self.algo == "td7":
                self.learner, self.prio, _ = self.agent.update(self.learner, self.buffer, self.prio, self.mask,
                                                               i % 2 == 1, False)
            else:
                self.learner, _ = self.agent.update(self.learner, self.buffer, size, i % 2 == 1)
        jax.block_until_ready(self.learner)
        return iters / (time.time() - t0)

    def run_loop_without_env(self, iters: int, obs: np.ndarray) -> float:
        """The training loop's device calls (buffer write, update, action, action to host) with a
        fixed transition instead of the env: what the loop would reach with a free env."""
        n = obs.shape[0]
        action = jnp.zeros((n, self.buffer.action.shape[-1]))
        transition = td3.Buffer(obs, np.zeros((n, self.buffer.action.shape[-1]), np.float32), np.zeros(n, np.float32),
                                obs, np.zeros(n, np.float32))
        buffer = jax.tree.map(jnp.copy, self.buffer)
        learner = jax.tree.map(jnp.copy, self.learner)
        t_start = self.agent.capacity  # a full buffer
        for warm in (True, False):
            t0 = time.time()
            for t in range(t_start, t_start + (4 if warm else iters)):
                np.asarray(action)
                learner, buffer, action, _ = self.agent.step(learner, buffer, transition, obs, t,
                                                             *td3.schedule(t, 0, 2))
            jax.block_until_ready(action)
        return iters / (time.time() - t0)


def env_step_us(env_id: str, num_seeds: int, steps: int = 2000) -> float:
    """Microseconds per SeedEnvs.step of all seeds, alone (random actions)."""
    e = envs.SeedEnvs(env_id, list(range(num_seeds)))
    e.reset()
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, num_seeds, e.action_dim)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        e.step(a)
    return (time.perf_counter() - t0) / steps * 1e6


def loop_rate(algo: str, num_seeds: int, steps: int, env_id: str, out_dir: str) -> dict:
    warmup = 1_000
    module = ALGOS[algo]
    args = module.Args(env_id=env_id, num_seeds=num_seeds, learning_starts=warmup, total_timesteps=warmup + steps,
                       eval_freq=10 * (warmup + steps), eval_episodes=1, results_dir=out_dir)
    out = module.train(args)
    # TD7 trains in bursts at episode ends: over a short window its env steps run ahead of its
    # updates, so the loop's training rate is its updates per second (equal for TD3)
    return {"loop_steps_per_s": out["train_loop_steps_per_s"], "compile_s": out["compile_s"],
            "loop_updates_per_s": out.get("train_loop_updates_per_s") or out["train_loop_steps_per_s"],
            "masking": out.get("masking")}


def bench(algo: str, opts, obs_dim: int, action_dim: int, tmp: str) -> list[dict]:
    rows = []
    steps = opts.steps or TIMED_STEPS[algo]
    for n in opts.seeds:
        pure = PureUpdate(algo, n, obs_dim, action_dim)
        obs = envs.SeedEnvs(opts.env_id, list(range(n))).reset()
        rounds = []
        for _ in range(opts.rounds):  # interleaved, so machine noise hits all figures alike
            loop = loop_rate(algo, n, steps, opts.env_id, tmp)
            noenv = pure.run_loop_without_env(steps, obs) if algo == "td3" else float("nan")
            rounds.append((loop["loop_steps_per_s"], pure.run(steps), noenv, loop["compile_s"], loop["masking"],
                           loop["loop_updates_per_s"]))
        loop_sps, update_sps, noenv_sps, compile_s = (float(np.median(x)) for x in list(zip(*rounds))[:4])
        rows.append({"num_seeds": n, "loop_steps_per_s": loop_sps, "loop_env_steps_per_s": loop_sps * n,
                     "loop_updates_per_s": float(np.median([r[5] for r in rounds])), "update_per_s": update_sps,
                     "loop_over_update": float(np.median([r[5] / r[1] for r in rounds])),
                     "loop_without_env_per_s": noenv_sps, "env_step_us": env_step_us(opts.env_id, n),
                     "loop_compile_s": compile_s, "update_compile_s": pure.compile_s,
                     "rounds": [{"loop_steps_per_s": a, "update_per_s": b, "loop_without_env_per_s": c, "masking": m}
                                for a, b, c, _, m, _ in rounds]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _report(algo: str, benchmark: str, rows: list[dict], out: str, extra: dict | None = None) -> tuple[dict, str, list[str]]:
    """The report's provenance (command, machine, versions, commit), its file stem and Markdown header."""
    device = jax.devices()[0]
    report = {
        "benchmark": benchmark,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
                    "jax_device": f"{device.platform}:{device.device_kind}"},
        "versions": runs.versions(), "git": runs.git_info(), "date": time.strftime("%Y-%m-%d"), "rows": rows,
        **(extra or {}),
    }
    os.makedirs(out, exist_ok=True)
    name = os.path.join(out, f"{algo}_{device.platform}")
    with open(f"{name}.json", "w") as f:
        json.dump(report, f, indent=2)
    header = [f"# {report['benchmark']}", "", f"`{report['command']}` on {report['machine']['platform']}, "
              f"{report['machine']['cpu_count']} CPUs, JAX device {report['machine']['jax_device']}, "
              f"jax {report['versions']['jax']}, {report['date']}, commit {report['git']['commit']}.", ""]
    return report, name, header


def _write_md(name: str, lines: list[str]) -> None:
    with open(f"{name}.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_report(algo: str, opts, rows: list[dict], sampler: dict | None = None) -> None:
    _, name, lines = _report(algo, f"{algo.upper()} {opts.env_id}, paper shapes (256 wide, batch 256), median of "
                             f"{opts.rounds} rounds of {opts.steps or TIMED_STEPS[algo]} timed steps", rows, opts.out,
                             {"sampler_at_run_size": sampler} if sampler else {})
    lines += ["| seeds | loop env steps/s (per seed) | env steps/s (all seeds) | loop updates/s (per seed) "
             "| pure update/s | loop / update | loop without env, steps/s | env step alone, us | compile s (loop) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['num_seeds']} | {r['loop_steps_per_s']:.1f} | {r['loop_env_steps_per_s']:.1f} | "
                     f"{r['loop_updates_per_s']:.1f} | {r['update_per_s']:.1f} | {r['loop_over_update']:.3f} | "
                     f"{r['loop_without_env_per_s']:.1f} | {r['env_step_us']:.0f} | {r['loop_compile_s']:.2f} |")
    if sampler:
        lines += ["", f"Pure update (1 seed) with a full {sampler['capacity']:,}-slot buffer, the run's default: "
                  f"{sampler['two-level ms']:.2f} ms with the two-level prioritised sampler, "
                  f"{sampler['one cumsum ms']:.2f} ms with one cumulative sum over the buffer per update "
                  "(the sampler before issue 17); median of 5 interleaved rounds of 40 updates. The rows above "
                  "use a 100k-slot buffer (total_timesteps 100k)."]
    _write_md(name, lines)


# ---------------------------------------------------------------------------------------------
# TD7's sampler at the run's replay size
# ---------------------------------------------------------------------------------------------
def flat_lap_sample(key, priority, batch_size):
    """TD7's sampler before issue 17: one cumulative sum over the whole buffer per update."""
    csum = jnp.cumsum(priority)
    u = jax.random.uniform(key, (batch_size,)) * csum[-1]
    return jnp.minimum(jnp.searchsorted(csum, u, side="left"), priority.shape[0] - 1)


def td7_sampler_ab(obs_dim: int, action_dim: int, capacity: int, rounds: int = 5, iters: int = 40) -> dict:
    """Milliseconds per pure TD7 update (critic + actor alternating, 1 seed, full buffer) with each sampler."""
    two_level, built = td7.lap_sample, {}
    for name, sampler in [("one cumsum", flat_lap_sample), ("two-level", two_level)]:
        td7.lap_sample = sampler  # read when the update is traced, on its first call below
        try:
            agent = td7.make_agent(td7.Args(total_timesteps=capacity), obs_dim, action_dim)
            learner, buffer, prio = agent.init(jnp.stack([jax.random.PRNGKey(0)]))[:3]
            prio = prio._replace(value=jnp.ones_like(prio.value), count=jnp.full((1,), agent.capacity, jnp.int32))
            for i in range(2):
                learner, prio, _ = agent.update(learner, buffer, prio, np.ones(1, bool), i % 2 == 1, False)
            jax.block_until_ready(learner)
        finally:
            td7.lap_sample = two_level
        built[name] = [agent, learner, buffer, prio]
    times = {name: [] for name in built}
    for _ in range(rounds):  # interleaved, so machine noise hits both alike
        for name, b in built.items():
            agent, learner, buffer, prio = b
            t0 = time.perf_counter()
            for i in range(iters):
                learner, prio, _ = agent.update(learner, buffer, prio, np.ones(1, bool), i % 2 == 1, False)
            jax.block_until_ready(learner)
            times[name].append((time.perf_counter() - t0) / iters * 1e3)
            b[1], b[3] = learner, prio
    return {"capacity": capacity, **{f"{name} ms": float(np.median(t)) for name, t in times.items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=[*ALGOS], choices=[*ALGOS])
    parser.add_argument("--env-id", default="Hopper-v4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--steps", type=int, default=None,
                        help=f"timed training steps per round (default {TIMED_STEPS})")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved loop/update rounds; medians are reported")
    parser.add_argument("--td7-capacity", type=int, default=1_000_000, help="replay slots of the TD7 sampler A/B")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    opts = parser.parse_args()
    probe = envs.SeedEnvs(opts.env_id, [0])
    with tempfile.TemporaryDirectory() as tmp:
        for algo in opts.algos:
            write_report(algo, opts, bench(algo, opts, probe.obs_dim, probe.action_dim, tmp),
                         td7_sampler_ab(probe.obs_dim, probe.action_dim, opts.td7_capacity) if algo == "td7" else None)


if __name__ == "__main__":
    main()
