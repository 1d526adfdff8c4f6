"""Host env stepping against the seed count, serial and in worker processes (issue 16: host envs that
keep up with many seeds).

Times `envs.SeedEnvs.step` for 1, 8 and 32 seeds: in this process, one env after another
(`workers=1`, the "before"), and with the seeds split over 2 and 4 worker processes (`workers=2`,
`workers=4`, envs/workers.py), beside the bare `env.step` calls of the same envs (the simulator and
gymnasium's wrappers, nothing of ours) and a thread pool over the bare calls (MuJoCo releases the
GIL inside mj_step). Random actions in [-1, 1]; episodes reset as they end. Also measured: where one
env step's time goes (inside MuJoCo's C `mj_step`/`mj_rnePostConstraint` against gymnasium's
Python), what a worker round trip costs with nothing to step, and what moving pixel observations
(9x84x84 uint8 per seed) through a pipe costs.

    python benchmarks/envs_step.py        # Hopper-v4 -> results/bench/envs_step_cpu.md and .json
    python benchmarks/envs_step.py --env-id HalfCheetah-v4 --seeds 1 8 32 --workers 2 4
"""

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402

import envs  # noqa: E402
from envs import runs  # noqa: E402
from envs.workers import decode, encode, mp_context  # noqa: E402


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat, clock-tick resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _timed_rounds(fns: dict, steps: int, rounds: int) -> tuple[dict, dict]:
    """Wall seconds per step (median over rounds) of each ``fns[key] = (fn, worker_pids)``, and CPU
    seconds per step (median over rounds) of this process, of the busiest worker and of all workers."""
    wall, cpu = {k: [] for k in fns}, {k: [] for k in fns}
    for _ in range(rounds):  # interleaved: the machine's drift hits all alike
        for key, (fn, pids) in fns.items():
            c0, w0 = time.process_time(), [_cpu_s(p) for p in pids]
            t0 = time.perf_counter()
            fn()
            wall[key].append((time.perf_counter() - t0) / steps)
            used = [_cpu_s(p) - w for p, w in zip(pids, w0)]
            cpu[key].append(((time.process_time() - c0) / steps, max(used, default=0.0) / steps, sum(used) / steps))
    return ({k: float(np.median(v)) for k, v in wall.items()},
            {k: [float(x) for x in np.median(np.array(v), 0)] for k, v in cpu.items()})


def time_seed_envs(env_id: str, n: int, steps: int, rounds: int, workers: list[int]) -> dict:
    train = envs.SeedEnvs(env_id, list(range(n)))
    train.reset()
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, n, *train.action_shape)).astype(np.float32)
    bare = train.envs
    env_actions = np.array([[train.to_env_action(a) for a in step] for step in actions])  # what SeedEnvs sends

    def stepper(e):
        def run():
            for a in actions:
                e.step(a)
        return run

    def plain():
        for a in env_actions:
            for e, ai in zip(bare, a):
                _, _, term, trunc, _ = e.step(ai)
                if term or trunc:
                    e.reset()

    pool = ThreadPoolExecutor(max_workers=os.cpu_count())

    def one(e, ai):
        _, _, term, trunc, _ = e.step(ai)
        if term or trunc:
            e.reset()

    def threaded():
        for a in env_actions:
            list(pool.map(one, bare, a))

    fns = {"workers=1": (stepper(train), []), "bare": (plain, []), "threads": (threaded, [])}
    parallel, start = {}, {}
    for w in workers:
        if w <= n:  # more workers than seeds is clamped: nothing new to time
            t0 = time.perf_counter()
            parallel[w] = envs.SeedEnvs(env_id, list(range(n)), workers=w)
            parallel[w].reset()
            start[w] = time.perf_counter() - t0
            fns[f"workers={w}"] = (stepper(parallel[w]), [p.pid for p in parallel[w]._pool.procs])
    out, cpu = _timed_rounds(fns, steps, rounds)
    pool.shutdown()
    train.close()
    for p in parallel.values():
        p.close()
    return {"step_s": out, "cpu_s": cpu, "start_s": {f"workers={w}": s for w, s in start.items()}}


def time_inside_mujoco(env_id: str, steps: int) -> dict:
    """One env's step, and the part of it spent inside MuJoCo's C simulation calls (timed by wrapping
    the `mujoco.mj_step` and `mujoco.mj_rnePostConstraint` that gymnasium's MujocoEnv calls)."""
    import mujoco

    env = envs.make_env(env_id)
    env.reset(seed=0)
    acts = np.random.default_rng(0).uniform(env.action_space.low, env.action_space.high,
                                            (steps, *env.action_space.shape))
    inside = [0.0]
    originals = {name: getattr(mujoco, name) for name in ("mj_step", "mj_rnePostConstraint")}

    def wrap(fn):
        def timed(*a, **k):
            t0 = time.perf_counter()
            fn(*a, **k)
            inside[0] += time.perf_counter() - t0
        return timed

    best = None
    for _ in range(3):
        for name, fn in originals.items():
            setattr(mujoco, name, wrap(fn))
        inside[0] = 0.0
        try:
            t0 = time.perf_counter()
            for a in acts:
                _, _, term, trunc, _ = env.step(a)
                if term or trunc:
                    env.reset()
            total = time.perf_counter() - t0
        finally:
            for name, fn in originals.items():
                setattr(mujoco, name, fn)
        if best is None or total < best[0]:
            best = (total, inside[0])
    env.close()
    total, c = best
    return {"env_step_us": total / steps * 1e6, "mujoco_c_us": c / steps * 1e6, "mujoco_c_share": c / total}


def _echo(conn):
    while True:
        msg = decode(conn.recv_bytes())
        if msg is None:
            return
        conn.send_bytes(encode(msg))


def time_pipes(seeds: list[int], rounds: int = 200) -> dict:
    """Round trips parent -> worker -> parent through a pipe (what one pool call does per worker), with
    a tiny message and with pixel observations [n, 9, 84, 84] uint8."""
    ctx = mp_context()  # the workers' own: the fork server with envs.gym imported
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_echo, args=(child,), daemon=True)
    proc.start()
    child.close()
    out = {}
    for name, payload in [("tiny", np.zeros(3, np.float32))] + [
            (f"pixels x{n}", np.zeros((n, 9, 84, 84), np.uint8)) for n in seeds]:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            parent.send_bytes(encode(payload))  # the workers' own messages (envs/workers.py, no pickle)
            decode(parent.recv_bytes())
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times))
    parent.send_bytes(encode(None))
    proc.join()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env-id", default="Hopper-v4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4], help="worker processes to compare")
    parser.add_argument("--steps", type=int, default=1000, help="timed steps of all seeds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench", "envs_step_cpu.md"))
    opts = parser.parse_args()
    load_before = os.getloadavg()
    inside = time_inside_mujoco(opts.env_id, 3000)
    print("inside mujoco", inside, flush=True)
    pipes = time_pipes(opts.seeds)
    print("pipes", pipes, flush=True)
    rows = []
    for n in opts.seeds:
        t = time_seed_envs(opts.env_id, n, opts.steps, opts.rounds, opts.workers)
        rows.append((n, t))
        print(n, t, flush=True)
    load_after = os.getloadavg()
    device = jax.devices()[0]
    versions, git = runs.versions(), runs.git_info()
    cols = ["workers=1", "bare", "threads"] + [f"workers={w}" for w in opts.workers]
    header = (f"`python benchmarks/envs_step.py{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` on "
              f"{os.cpu_count()} CPUs (JAX device {device.platform}), gymnasium {versions.get('gymnasium')}, "
              f"mujoco {versions.get('mujoco')}, {time.strftime('%Y-%m-%d %H:%M')}, commit "
              f"{git['commit'][:10]}{' + uncommitted changes' if git['dirty'] else ''}; load average (1 min) "
              f"{load_before[0]:.1f} before, "
              f"{load_after[0]:.1f} after: the machine was shared with other jobs.")
    lines = [f"# Host env stepping against the seed count ({opts.env_id}), serial and in worker processes", "",
             header, "",
             f"Median of {opts.rounds} interleaved rounds of {opts.steps} steps of all seeds, random actions. "
             "`workers=1`: `SeedEnvs.step` in this process, one env after another (the \"before\"); "
             "`workers=W`: `SeedEnvs(..., workers=W).step`, the seeds in W contiguous blocks stepped in W "
             "worker processes (envs/workers.py); bare: the same envs' `env.step` (and reset) alone, serial; "
             f"threads: the bare calls on a thread pool of {os.cpu_count()} threads. A `-` where W > seeds "
             "(clamped to the serial case).", "",
             "| seeds | " + " | ".join(f"{c}, ms" for c in cols) + " | workers=1, us per seed-step | "
             + " | ".join(f"workers={w}, us per seed-step" for w in opts.workers) + " |",
             "|---" * (1 + len(cols) + 1 + len(opts.workers)) + "|"]
    for n, t in rows:
        s = t["step_s"]
        cells = [f"{s[c] * 1e3:.3f}" if c in s else "-" for c in cols]
        per = [f"{s[c] / n * 1e6:.1f}" if c in s else "-"
               for c in ["workers=1"] + [f"workers={w}" for w in opts.workers]]
        lines.append(f"| {n} | " + " | ".join(cells) + " | " + " | ".join(per) + " |")
    lines += ["", "CPU time per step of all seeds (user + system, /proc; the same rounds): this process, the busiest "
              "worker, and all of it per seed-step. This process plus the busiest worker is about the wall time "
              "a step would take with a free core for each process (the parent waits while its workers step).", "",
              "| seeds | variant | this process, ms | busiest worker, ms | this + busiest, ms | "
              "all CPU, us per seed-step |", "|---|---|---|---|---|---|"]
    for n, t in rows:
        for c in cols:
            if c in t["cpu_s"]:
                own, busiest, total = t["cpu_s"][c]
                lines.append(f"| {n} | {c} | {own * 1e3:.3f} | {busiest * 1e3:.3f} | {(own + busiest) * 1e3:.3f} | "
                             f"{(own + total) / n * 1e6:.1f} |")
    starts = "; ".join(f"{n} seeds, {k}: {v:.2f} s" for n, t in rows for k, v in t["start_s"].items())
    lines += ["", f"Starting the workers (construction and first reset): {starts}. The first pool of the "
              "process also starts the fork server, which imports envs.gym (jax, gymnasium, mujoco) once.", "",
              f"Where one {opts.env_id} step goes (one env, 3000 steps, the fastest of 3 passes): "
              f"{inside['env_step_us']:.1f} us per `env.step`, of which {inside['mujoco_c_us']:.1f} us "
              f"({inside['mujoco_c_share']:.0%}) inside MuJoCo's C calls (`mj_step` with frame_skip substeps, "
              "`mj_rnePostConstraint`), the GIL released; the rest is gymnasium's Python (wrappers, "
              "observation and reward) under the GIL.", "",
              "Pipe round trip to a worker process (send, echo, receive; median of 200): "
              + ", ".join(f"{k}: {v * 1e6:.0f} us" for k, v in pipes.items())
              + ". One `SeedEnvs` call with W workers does W of these (actions out, `EnvStep` back) at the "
              "same time."]
    with open(opts.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(opts.out)[0] + ".json", "w") as f:
        json.dump({"env_id": opts.env_id, "cpus": os.cpu_count(), "steps": opts.steps, "rounds": opts.rounds,
                   "load_avg_before": load_before, "load_avg_after": load_after, "inside_mujoco": inside,
                   "pipe_round_trip_s": pipes, "seeds": {str(n): t for n, t in rows}}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
