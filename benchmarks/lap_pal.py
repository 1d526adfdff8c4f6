"""TD3 against TD3 + LAP, TD3 + PAL and TD3 + PER: training steps per second, compilation excluded.

For each algorithm and seed count, on Hopper-v4 shapes with the paper's networks and batch:
  * device step: the training loop's device calls per env step (buffer write, one update, half of
    them with the actor step, the next action and its copy to the host) with a fixed transition
    instead of the env, on a full buffer of --capacity slots (default 1M, the runs' buffer: LAP's and
    PER's sampler reads every slot's priority at each update, so its cost grows with the buffer);
  * training loop: env steps per second of algos/<algo>.py itself on Hopper-v4 after --warmup
    uniform-random steps, evaluation excluded (its buffer holds warmup + loop-steps slots).
Rounds are interleaved over the algorithms, so machine noise hits all of them alike; medians are
reported, with the load average before and after (a shared machine shows there).

    python benchmarks/lap_pal.py            # writes results/bench/lap_pal_td3_<platform>.json and .md
    python benchmarks/lap_pal.py --steps 300 --rounds 3 --loop-steps 500
"""

import argparse
import json
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
from algos import td3, td3_lap, td3_pal, td3_per  # noqa: E402
from benchmarks.bench import _write_md  # noqa: E402
from envs import runs  # noqa: E402

ALGOS = {"td3": td3, "td3_lap": td3_lap, "td3_pal": td3_pal, "td3_per": td3_per}


class DeviceStep:
    """One algorithm's agent on a full random buffer; `run` times its `step` (the loop's device calls)."""

    def __init__(self, name: str, num_seeds: int, capacity: int, obs: np.ndarray, action_dim: int):
        module = ALGOS[name]
        self.agent = module.make_agent(module.Args(total_timesteps=capacity), obs.shape[1], action_dim)
        state = self.agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
        key = jax.random.PRNGKey(1)
        self.learner = state[0]
        self.buffer = jax.tree.map(lambda x: x + jax.random.normal(key, x.shape), state[1])
        # LAP / PER: every slot filled, priorities spread over [1, 5]
        self.prio = state[2]._replace(value=jax.random.uniform(key, state[2].value.shape, minval=1.0, maxval=5.0)) \
            if len(state) == 3 else None
        n = num_seeds
        self.obs = obs
        self.transition = module.Buffer(obs, np.zeros((n, action_dim), np.float32), np.zeros(n, np.float32), obs,
                                        np.zeros(n, np.float32))
        self.action = jnp.zeros((n, action_dim))
        self.t = self.agent.capacity  # a full buffer; the schedule of learning_starts 0, policy_freq 2
        t0 = time.time()
        self.run(4)  # compiles both update variants
        self.compile_s = time.time() - t0

    def run(self, iters: int) -> float:
        t0 = time.time()
        for t in range(self.t, self.t + iters):
            np.asarray(self.action)  # the loop's one device -> host transfer per env step
            flags = td3.schedule(t, 0, 2)
            if self.prio is None:
                self.learner, self.buffer, self.action, _ = self.agent.step(
                    self.learner, self.buffer, self.transition, self.obs, t, *flags)
            else:
                self.learner, self.buffer, self.prio, self.action, _ = self.agent.step(
                    self.learner, self.buffer, self.prio, self.transition, self.obs, t, *flags)
        jax.block_until_ready(self.action)
        self.t += iters
        return iters / (time.time() - t0)


def loop_rate(name: str, num_seeds: int, warmup: int, steps: int, env_id: str, out_dir: str) -> dict:
    module = ALGOS[name]
    out = module.train(module.Args(env_id=env_id, num_seeds=num_seeds, learning_starts=warmup,
                                   total_timesteps=warmup + steps, eval_freq=10 * (warmup + steps), eval_episodes=1,
                                   results_dir=out_dir))
    return {"loop_steps_per_s": out["train_loop_steps_per_s"], "loop_compile_s": out["compile_s"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=[*ALGOS], choices=[*ALGOS])
    parser.add_argument("--env-id", default="Hopper-v4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--capacity", type=int, default=1_000_000, help="replay slots of the device-step figure")
    parser.add_argument("--steps", type=int, default=500, help="timed device steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved device-step rounds; medians reported")
    parser.add_argument("--warmup", type=int, default=1_000, help="random steps before the timed loop steps")
    parser.add_argument("--loop-steps", type=int, default=1_000, help="timed training-loop steps (one run each)")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench"))
    parser.add_argument("--render", metavar="JSON", help="only rewrite the .md beside a saved report .json")
    opts = parser.parse_args()
    if opts.render:
        with open(opts.render) as f:
            write_md(json.load(f), os.path.splitext(opts.render)[0])
        return
    load_before = os.getloadavg()
    probe = envs.SeedEnvs(opts.env_id, [0])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in opts.seeds:
            obs = envs.SeedEnvs(opts.env_id, list(range(n))).reset()
            steppers = {a: DeviceStep(a, n, opts.capacity, obs, probe.action_dim) for a in opts.algos}
            rates = {a: [] for a in opts.algos}
            for _ in range(opts.rounds):  # interleaved
                for a, s in steppers.items():
                    rates[a].append(s.run(opts.steps))
            del steppers  # frees the 1M-slot buffers before the loop runs
            for a in opts.algos:
                row = {"algo": a, "num_seeds": n, "device_steps_per_s": float(np.median(rates[a])),
                       "device_rounds": rates[a], **loop_rate(a, n, opts.warmup, opts.loop_steps, opts.env_id, tmp)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    load_after = os.getloadavg()
    write_report(opts, rows, load_before, load_after)


def write_report(opts, rows: list[dict], load_before, load_after) -> None:
    """results/bench/lap_pal_td3_<platform>.json (every round, the options, the provenance) and .md."""
    device = jax.devices()[0]
    report = {
        "benchmark": f"TD3 vs TD3 + LAP / PAL / PER on {opts.env_id}, paper shapes (256-256, batch 256)",
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "jax_device": f"{device.platform}:{device.device_kind}",
                    "load_average_1_5_15min": {"before": load_before, "after": load_after}},
        "versions": runs.versions(), "git": runs.git_info(), "date": time.strftime("%Y-%m-%d"),
        "options": vars(opts), "rows": rows,
    }
    os.makedirs(opts.out, exist_ok=True)
    name = os.path.join(opts.out, f"lap_pal_td3_{device.platform}")
    with open(f"{name}.json", "w") as f:
        json.dump(report, f, indent=2)
    write_md(report, name)


def write_md(report: dict, name: str) -> None:
    opts, rows, git, machine = report["options"], report["rows"], report["git"], report["machine"]
    load = machine["load_average_1_5_15min"]
    cpus = machine["cpu_count"]
    base = {r["num_seeds"]: r for r in rows if r["algo"] == "td3"}
    lines = [f"# {report['benchmark']}", "",
             f"`{report['command']}` on {machine['platform']}, {cpus} CPUs, JAX device {machine['jax_device']}, "
             f"jax {report['versions']['jax']}, {report['date']}, commit {git['commit']}"
             f"{' (uncommitted changes)' if git['dirty'] else ''}.", "",
             f"Load average (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in load['before'])} before, "
             f"{', '.join(f'{x:.2f}' for x in load['after'])} after. The machine is shared: a load near or above "
             f"{cpus} means other processes used the cores for part of the run. The device-step rounds are "
             "interleaved over the algorithms so that this hits them alike: their ratios to TD3 are the figures "
             "to read (the spread of the rounds is in the .json). The training loop is one run per algorithm, "
             "one after the other, so its figures carry the load of their moment.", "",
             f"Device step: the loop's device calls per env step (buffer write, one update, the actor step every "
             f"second one, the next action to the host), fixed transition, full {opts['capacity']:,}-slot buffer, "
             f"median of {opts['rounds']} interleaved rounds of {opts['steps']} steps. Training loop: "
             f"algos/<algo>.py on {opts['env_id']}, {opts['loop_steps']} timed steps after {opts['warmup']} "
             f"random ones (buffer of {opts['warmup'] + opts['loop_steps']:,} slots), one run. Steps per second "
             "are per seed.", "",
             "| algo | seeds | device steps/s | vs TD3 | training loop steps/s | vs TD3 | update compile s (loop) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        b = base.get(r["num_seeds"])
        rel = lambda k: f"{r[k] / b[k]:.2f}" if b and b[k] else "—"  # noqa: E731
        lines.append(f"| {r['algo']} | {r['num_seeds']} | {r['device_steps_per_s']:.1f} | {rel('device_steps_per_s')} "
                     f"| {r['loop_steps_per_s']:.1f} | {rel('loop_steps_per_s')} | {r['loop_compile_s']:.2f} |")
    _write_md(name, lines)


if __name__ == "__main__":
    main()
