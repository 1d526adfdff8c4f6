"""MR.Q (and DR.Q) speed on this machine: the training loop's steps/s, each jitted piece's FLOP/s, compile time.

Per env step MR.Q makes one value/policy update (`train_and_act`) and, every 250 steps, a burst of
250 encoder updates (`encoder_step`). The bench times plain steps of the training loop's own calls
(env step, buffer write, update, action) and short bursts (encoder update = (burst - plain step) /
burst length), and reports

    steps/s = 1 / (plain step + one encoder update),

the rate of the paper's schedule, without running 250-update bursts (minutes with pixels on a CPU).
Replay: state envs use the run's default size (1M slots, so the per-update cost of the prioritised
sampler is the real one); pixel envs are capped at --pixel-slots (10.6 GB per seed at the default).

Versions: `--before COMMIT` also loads algos/mrq.py of that commit (git show) and times both in the
same process, round by round, so that the machine's drifts hit both alike (on this shared 2-core
machine a plain matmul's rate moved by 40% between two runs 10 minutes apart).

For the current file each jitted piece is then timed alone; its FLOPs are XLA's cost analysis,
against the rate of a plain float32 matmul of the networks' shapes measured in the same run.
Compile time: seconds from the agent's creation to the end of its first burst and first plain
step, in a new process with an empty persistent compilation cache, then again with it filled.

    python benchmarks/mrq_speed.py                      # the current algos/mrq.py
    python benchmarks/mrq_speed.py --before 58b475f     # and the version before issue 17, interleaved
    python benchmarks/mrq_speed.py --also algos/drq.py --out results/bench/drq_cpu   # DR.Q beside MR.Q

`--also FILE` times another file with MR.Q's interface (algos/drq.py, DR.Q's sibling) in the same
rounds. Writes results/bench/mrq_cpu.json and .md (or --out).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from envs import runs  # noqa: E402

AUTHORS = 5.19  # the authors' PyTorch MR.Q, HalfCheetah-v4, 2 threads, this machine class (issue 17)


def load_mrq(path: str, name: str = "mrq_under_bench"):
    return runs.load_file(path, name)


def filled(mrq, env_id: str, num_seeds: int, slots: int, burst: int, warm: int = 300):
    """An agent with `warm` random steps stored (learning starts right after), bursts of `burst` updates."""
    args = mrq.resolve_presets(mrq.Args(env_id=env_id, num_seeds=num_seeds, learning_starts=warm, buffer_size=slots,
                                        target_update_freq=burst))
    train_envs = envs.SeedEnvs(env_id, list(range(num_seeds)), discrete_ok=True, pixels_ok=True)
    agent = mrq._agent_for(args, train_envs)
    learner, replay = agent.init(jnp.stack([jax.random.PRNGKey(s) for s in range(num_seeds)]))
    state = {"learner": learner, "replay": replay, "obs": train_envs.reset(), "pos": np.zeros(num_seeds, np.int32)}
    state["learner"], state["action"] = agent.act(learner, state["obs"], True)
    frame = (lambda o: o[:, -agent.frame_channels:]) if agent.frame_channels else (lambda o: o)

    def drive(n, flags):
        t0 = time.perf_counter()
        for _ in range(n):
            a = np.asarray(state["action"])
            step = train_envs.step(a)
            tr = mrq.Transition(frame(state["obs"]), a, step.reward, step.terminated, step.truncated,
                                frame(step.next_obs), state["pos"])
            state["pos"] = np.where(step.terminated | step.truncated, 0, state["pos"] + 1).astype(np.int32)
            state["obs"] = step.obs
            state["learner"], state["replay"], state["action"], _ = agent.step(
                state["learner"], state["replay"], tr, state["obs"], *flags)
        jax.block_until_ready(state["action"])
        return (time.perf_counter() - t0) / n

    drive(warm, (False, False, True))
    return agent, state, drive, train_envs


def piece_rates(agent, state, reps: int) -> dict:
    """Seconds and XLA FLOPs of encoder_step and train_and_act alone, on the filled state."""
    parts = getattr(agent, "parts", None)
    if parts is None:
        return {}
    out = {}
    learner, cdf = parts["start_burst"](state["learner"], state["replay"])
    replay, obs = state["replay"], state["obs"]
    calls = {
        "encoder_step": (lambda lr: (parts["encoder_step"](lr, replay, cdf)[0], replay),
                         (parts["encoder_step"], (learner, replay, cdf), {})),
        "train_and_act": (lambda lr: parts["train_and_act"](lr, replay, obs, train=True, random_next=False)[:2],
                          (parts["train_and_act"], (learner, replay, obs), {"train": True, "random_next": False})),
    }
    for name, (call, (fn, a, kw)) in calls.items():
        cost = fn.lower(*a, **kw).cost_analysis()  # of the HLO before optimisation: no second compile
        flops = (cost[0] if isinstance(cost, list) else cost).get("flops", float("nan"))
        learner, replay = call(learner)  # warm
        jax.block_until_ready(learner)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            learner, replay = call(learner)
            jax.block_until_ready(learner)
            times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        out[name] = {"s": t, "gflop": flops / 1e9, "gflop_per_s": flops / t / 1e9}
    state["learner"], state["replay"] = learner, replay
    return out


def matmul_rates() -> dict:
    """GFLOP/s of plain float32 matmuls of the networks' shapes (batch 256; the encoder's targets 1280 rows)."""
    out = {}
    for m, k, n in [(256, 512, 512), (256, 768, 512), (1280, 512, 512)]:
        x, w = jnp.ones((m, k)), jnp.ones((k, n))
        f = jax.jit(lambda x, w: x @ w)
        jax.block_until_ready(f(x, w))
        t0 = time.perf_counter()
        for _ in range(200):
            y = f(x, w)
        jax.block_until_ready(y)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n * 200 / (time.perf_counter() - t0) / 1e9
    return out


def compile_probe(mrq_file: str, env_id: str) -> None:
    """One start: seconds from the agent's creation to the end of its first burst and plain step."""
    runs.compile_cache()
    mrq = load_mrq(mrq_file)
    t0 = time.perf_counter()
    agent, state, drive, train_envs = filled(mrq, env_id, 1, 2_000, burst=2, warm=6)
    drive(1, (True, True, False))
    drive(1, (True, False, False))
    train_envs.close()
    print(json.dumps({"compile_s": time.perf_counter() - t0}))


def compile_times(mrq_file: str, env_id: str) -> dict:
    """compile_probe in a new process, with an empty then a filled persistent cache."""
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "FUJIMOTO_JAX_CACHE": cache}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        for key in ("first_start_s", "second_start_s"):
            proc = subprocess.run([sys.executable, __file__, "--compile-probe", env_id, "--mrq-file", mrq_file],
                                  env=env, capture_output=True, text=True, check=True)
            out[key] = json.loads(proc.stdout.strip().splitlines()[-1])["compile_s"]
    return out


def bench_env(versions: dict, opts, env_id: str, num_seeds: int) -> list[dict]:
    """Rows of every version for one (env, seeds), timed in interleaved rounds."""
    pixels = env_id.startswith(("dmc-pixels:", "atari:"))
    cpu = jax.devices()[0].platform == "cpu"
    plain, burst, rounds = (3, 2, 1) if pixels and cpu else (opts.plain, opts.burst, opts.rounds)
    built = {}
    for label, mrq in versions.items():
        slots = opts.pixel_slots if pixels else mrq.replay_slots(mrq.resolve_presets(mrq.Args(env_id=env_id)))
        agent, state, drive, train_envs = filled(mrq, env_id, num_seeds, slots, burst)
        t0 = time.perf_counter()
        drive(1, (True, True, False))
        drive(1, (True, False, False))
        built[label] = {"agent": agent, "state": state, "drive": drive, "envs": train_envs,
                        "compile": time.perf_counter() - t0, "plain": [], "enc": []}  # compile + one burst
    for _ in range(rounds):
        for b in built.values():
            t_plain = b["drive"](plain, (True, False, False))
            t_burst = b["drive"](1, (True, True, False))  # the burst's updates, then one plain step
            b["plain"].append(t_plain)
            b["enc"].append(max(t_burst - t_plain, 0.0) / burst)
    rows = []
    for label, b in built.items():
        t_plain, t_enc = float(np.median(b["plain"])), float(np.median(b["enc"]))
        rows.append({"version": label, "algo": versions[label].ALGO, "env_id": env_id, "num_seeds": num_seeds, "slots": b["agent"].slots,
                     "plain_step_s": t_plain, "encoder_update_s": t_enc, "env_steps_per_s": num_seeds / (t_plain + t_enc),
                     "steps_per_s_per_seed": 1.0 / (t_plain + t_enc), "compile_and_first_burst_s": b["compile"],
                     "rounds": rounds, "plain_steps": plain, "burst": burst,
                     "pieces": piece_rates(b["agent"], b["state"], reps=1 if pixels and cpu else 5)})
        b["envs"].close()
    return rows


def write_md(rep: dict, path: str) -> None:
    algos = sorted({r.get("algo", "mrq") for r in rep["rows"]}, key=lambda a: a != "mrq")
    names = " and ".join({"mrq": "MR.Q", "drq": "DR.Q"}.get(a, a) for a in algos)
    lines = [f"# {names} speed, paper networks and batch (batch 256), the paper's update schedule", "",
             f"`{rep['command']}` on {rep['machine']['platform']}, {rep['machine']['cpu_count']} CPUs, JAX device "
             f"{rep['machine']['jax_device']}, jax {rep['versions']['jax']}, {rep['date']}, commit "
             f"{rep['git']['commit'][:10]}{' (+ local changes)' if rep['git'].get('dirty') else ''}.", "",
             "steps/s = 1 / (plain step + one encoder update): one value/policy update per env step and a burst of "
             "250 encoder updates every 250 steps. Gym replay at the run's default size; pixels capped (slots). "
             f"x authors': against the authors' PyTorch MR.Q on HalfCheetah-v4, {AUTHORS} steps/s (2 threads, this "
             "machine class, measured for issue 17, not in this run). Versions: "
             + "; ".join(f"{k} = {v}" for k, v in rep["version_files"].items()) + ", timed in the same process, "
             "round by round (medians).", "",
             "| version | env | seeds | slots | env steps/s (all seeds) | per seed | x authors' | plain step, ms "
             "| encoder update, ms | compile + first burst, s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        ratio = f"{r['steps_per_s_per_seed'] / AUTHORS:.2f}" if (r["env_id"] == "HalfCheetah-v4" and r["num_seeds"] == 1
                                                                 and r.get("algo", "mrq") == "mrq") else ""
        lines.append(f"| {r['version']} | {r['env_id']} | {r['num_seeds']} | {r['slots']:,} | {r['env_steps_per_s']:.2f} "
                     f"| {r['steps_per_s_per_seed']:.2f} | {ratio} | {r['plain_step_s'] * 1e3:.1f} | "
                     f"{r['encoder_update_s'] * 1e3:.1f} | {r['compile_and_first_burst_s']:.1f} |")
    pieces = [(r, k, v) for r in rep["rows"] for k, v in r.get("pieces", {}).items()]
    if pieces:
        lines += ["", "Each jitted piece alone (FLOPs from XLA's cost analysis):", "",
                  "| version | env | seeds | jitted piece | ms | GFLOP | GFLOP/s |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['version']} | {r['env_id']} | {r['num_seeds']} | {k} | {v['s'] * 1e3:.1f} | {v['gflop']:.2f} | "
                  f"{v['gflop_per_s']:.0f} |" for r, k, v in pieces]
    lines += ["", "Plain float32 matmul in the same run, GFLOP/s: " + ", ".join(
        f"{k} {v:.0f}" for k, v in rep["matmul_gflop_per_s"].items()) + "."]
    if rep.get("compile"):
        lines += ["", "Compile time in a new process (agent creation to the end of its first burst of 2 updates and "
                  "first plain step), empty then filled persistent compilation cache:", ""]
        lines += [f"- {label}, {env}: {c['first_start_s']:.1f} s -> {c['second_start_s']:.1f} s"
                  for label, per_env in rep["compile"].items() for env, c in per_env.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v4", "dmc-pixels:walker-walk"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--plain", type=int, default=30, help="timed plain steps per round (pixels on a CPU: 3)")
    parser.add_argument("--burst", type=int, default=10, help="encoder updates per timed burst (pixels on a CPU: 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (pixels on a CPU: 1)")
    parser.add_argument("--pixel-slots", type=int, default=20_000, help="replay slots per seed for pixel envs")
    parser.add_argument("--before", metavar="COMMIT", help="also time algos/mrq.py of this commit, interleaved")
    parser.add_argument("--also", nargs="+", default=[], metavar="FILE",
                        help="also time these algorithm files with MR.Q's interface (algos/drq.py), interleaved")
    parser.add_argument("--mrq-file", default=os.path.join(ROOT, "algos", "mrq.py"), help=argparse.SUPPRESS)
    parser.add_argument("--no-compile", action="store_true", help="skip the two-process compile-time measurement")
    parser.add_argument("--compile-probe", metavar="ENV", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench", "mrq_cpu"), help="path without suffix")
    opts = parser.parse_args()
    if opts.compile_probe:
        return compile_probe(opts.mrq_file, opts.compile_probe)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"current": opts.mrq_file}
        if opts.before:
            try:
                before = runs.algo_file_at(opts.before, "mrq", tmp)
            except runs.UserError as e:
                print(f"error: --before: {e}", file=sys.stderr)
                sys.exit(2)
            files = {f"before ({opts.before})": before, "current": opts.mrq_file}
        for path in opts.also:
            if not os.path.isfile(path):
                print(f"error: --also: no file {path}", file=sys.stderr)
                sys.exit(2)
            files[os.path.splitext(os.path.basename(path))[0]] = os.path.abspath(path)
        versions = {label: load_mrq(path, f"mrq_{i}") for i, (label, path) in enumerate(files.items())}
        rows = []
        for env_id in opts.envs:
            for n in opts.seeds:
                rows += bench_env(versions, opts, env_id, n)
                for r in rows[-len(versions):]:
                    print(json.dumps(r), flush=True)
        device = jax.devices()[0]
        report = {"command": " ".join(["python"] + sys.argv),
                  "version_files": {k: (f"algos/mrq.py at {opts.before}" if k.startswith("before") else
                                        os.path.relpath(v, ROOT)) for k, v in files.items()},
                  "machine": {"platform": f"{os.uname().sysname} {os.uname().release}", "cpu_count": os.cpu_count(),
                              "jax_device": f"{device.platform}:{device.device_kind}"},
                  "versions": runs.versions(), "git": runs.git_info(), "date": time.strftime("%Y-%m-%d %H:%M"),
                  "rows": rows, "matmul_gflop_per_s": matmul_rates()}
        if not opts.no_compile:
            report["compile"] = {label: {env_id: compile_times(path, env_id) for env_id in opts.envs}
                                 for label, path in files.items()}
    os.makedirs(os.path.dirname(opts.out), exist_ok=True)
    with open(f"{opts.out}.json", "w") as f:
        json.dump(report, f, indent=2)
    write_md(report, f"{opts.out}.md")


if __name__ == "__main__":
    main()
