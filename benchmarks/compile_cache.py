"""Compile once (issue 16): the first and the second start of TD7 (Hopper-v4) and MR.Q (dmc-pixels:walker-walk),
paper networks and batch, with JAX's persistent compilation cache (envs/runs.py `compile_cache`).

As benchmarks/mrq_speed.py does for MR.Q's state envs: a new process with an empty cache folder, then a
new process with the folder the first one filled (FUJIMOTO_JAX_CACHE pointed at a temporary folder).
Each process turns the cache on as `runs.cli` does and runs the algorithm file's real `train` for a
short run (evaluation stubbed out, replay at the run's size: TD7 1M transitions, MR.Q pixels capped at
20k slots as in mrq_speed.py):

  * TD7: `compile_s` of `train`, the first call of each update variant (critic; + actor; + target
    sync, reached after 250 updates), each of which also computes one update (~30 ms here);
  * MR.Q: the first training step (start of a burst, 2 encoder updates, 1 value/policy update),
    timed as a whole (`agent.step` blocked on), and the same step once compiled (the third training
    step, again a burst): first - third = compile. --target-update-freq 2 keeps the burst to 2 encoder
    updates (the compiled programs are those of 250);
  * both: the whole process's wall time (imports, envs, every jitted function of the loop, the run).

The machine is shared, so every measurement is repeated (--repeats, each with a new empty cache) and
all repeats are reported with their minimum. Writes results/bench/compile_cache_<platform>.md and .json.

    python benchmarks/compile_cache.py                  # TD7 and MR.Q pixels, 2 repeats
    python benchmarks/compile_cache.py --algos td7 --repeats 1
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

T_PROCESS = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import gpu_suite  # noqa: E402  (NoEval, load_algo, args_for, run_size_replay)
from envs import runs  # noqa: E402

PROBES = {  # algo -> (suite config name, warm-up steps, steps after it, extra args)
    "td7": ("td7", 300, 450, {}),  # about 400 updates: every variant, the target sync's (at 250) included, compiled
    "mrq-pixels": ("mrq-pixels", 10, 1, {"target_update_freq": 2}),  # training steps 1 (burst), 2, 3 (burst)
}
PIXEL_SLOTS = 20_000
RESULT = "COMPILE_CACHE_RESULT "


def probe(algo: str) -> dict:
    """One start: train a short run with the persistent cache on; the compile figures of that start."""
    import jax

    cache = runs.compile_cache()
    name, warmup, steps, extra = PROBES[algo]
    file, env_id = gpu_suite.ALGOS[name]
    module = gpu_suite.load_algo(file)
    gpu_suite.run_size_replay(module, name)
    step_times = []
    if algo == "mrq-pixels":  # every agent.step blocked on and timed, with its flags
        make_agent = module.make_agent

        def timed_agent(*a, **k):
            agent = make_agent(*a, **k)

            def step(*args):
                t0 = time.perf_counter()
                out = agent.step(*args)
                jax.block_until_ready(out[2])
                step_times.append((bool(args[4]), bool(args[5]), time.perf_counter() - t0))
                return out

            return agent._replace(step=step)

        module.make_agent = timed_agent
    with tempfile.TemporaryDirectory() as tmp:
        args = gpu_suite.args_for(module, name, env_id, 1, steps, warmup, False, tmp, pixel_slots=PIXEL_SLOTS,
                                  extra=extra)
        out = module.train(args)
    row = {"algo": algo, "env_id": env_id, "cache": cache, "compile_s": out["compile_s"],
           "process_s": time.time() - T_PROCESS, "platform": jax.devices()[0].platform}
    if algo == "td7":
        row["updates"] = int(out["training_steps"].min())
        assert row["updates"] >= 250, f"{row['updates']} updates: the target-sync variant was not reached"
    else:
        train = [(burst, s) for is_train, burst, s in step_times if is_train]
        assert [b for b, _ in train[:3]] == [True, False, True], train
        row.update(first_step_s=train[0][1], compiled_step_s=train[2][1], step_compile_s=train[0][1] - train[2][1])
    return row


def start(algo: str, cache: str) -> dict:
    env = {**os.environ, "FUJIMOTO_JAX_CACHE": cache}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", algo], env=env,
                          capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{algo} probe failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len(RESULT):])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=[*PROBES], choices=[*PROBES])
    parser.add_argument("--repeats", type=int, default=2, help="first/second start pairs, each with a new empty cache")
    parser.add_argument("--out", default=None,
                        help="path without suffix (default results/bench/compile_cache_<platform>)")
    parser.add_argument("--probe", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.probe:
        print(RESULT + json.dumps(probe(opts.probe)), flush=True)
        return
    pairs = {algo: [] for algo in opts.algos}
    load_before = os.getloadavg()[0]
    for rep in range(opts.repeats):  # interleaved: the machine's drifts hit both algorithms alike
        for algo in opts.algos:
            with tempfile.TemporaryDirectory() as cache:
                first = start(algo, cache)
                files = sum(len(f) for _, _, f in os.walk(cache))
                second = start(algo, cache)
            pairs[algo].append({"first": first, "second": second, "cache_files": files})
            print(json.dumps(pairs[algo][-1]), flush=True)
    load_after = os.getloadavg()[0]
    plat = next(iter(pairs.values()))[0]["first"]["platform"]
    out = opts.out or os.path.join(ROOT, "results", "bench", f"compile_cache_{plat}")
    report = {"command": " ".join(["python", os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "jax_platform": plat},
              "versions": runs.versions(), "git": runs.git_info(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "load_average_1min": {"before": load_before, "after": load_after}, "pixel_slots": PIXEL_SLOTS,
              "pairs": pairs}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(f"{out}.json", "w") as f:
        json.dump(report, f, indent=2)
    git = report["git"]
    lines = ["# Compile once: first and second start with the persistent compilation cache", "",
             f"`{report['command']}` on {report['machine']['platform']}, {report['machine']['cpu_count']} CPUs, JAX "
             f"platform {plat}, jax {report['versions']['jax']}, {report['date']}, commit {(git['commit'] or '?')[:10]}"
             f"{' (+ local changes)' if git.get('dirty') else ''}; load average (1 min) {load_before:.1f} before, "
             f"{load_after:.1f} after.", "",
             "Each pair: a new process with an empty cache folder (first start), then a new process with the folder "
             "the first filled (second start); the cache is on as in every `algos/*.py` run (`runs.compile_cache`, "
             f"compilations of 1 s or more stored). Paper networks and batch; replay at the run's size (TD7 1M; MR.Q "
             f"pixels capped at {PIXEL_SLOTS:,} slots). {opts.repeats} pairs per algorithm on a shared machine, "
             "interleaved; all are shown, and the minimum.", "",
             "- TD7, Hopper-v4: compile = `train`'s `compile_s`, the first call of each of the 3 update variants "
             "(each with one update's compute, ~30 ms here).",
             "- MR.Q, dmc-pixels:walker-walk: first training step (a burst: 2 encoder updates and 1 value/policy "
             "update, as --target-update-freq 2), the same step once compiled (the third), and their difference = "
             "compile.",
             "- process: the whole short run's wall time (imports, envs, every jitted function, warm-up and training "
             "steps); the same work in both starts.", "",
             "What the second start still spends: reading the cache, and the compilations under 1 s (not stored).", "",
             "| algo | env | pair | cache files | compile s, 1st start | compile s, 2nd start | first training step "
             "s, 1st / 2nd | same step compiled s, 1st / 2nd | process s, 1st start | process s, 2nd start |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def compile_of(r):
        return r["step_compile_s"] if "step_compile_s" in r else r["compile_s"]

    for algo, ps in pairs.items():
        for i, p in enumerate(ps):
            a, b = p["first"], p["second"]
            steps = (f"{a['first_step_s']:.1f} / {b['first_step_s']:.1f}", f"{a['compiled_step_s']:.1f} / "
                     f"{b['compiled_step_s']:.1f}") if "first_step_s" in a else ("", "")
            lines.append(f"| {algo} | {a['env_id']} | {i + 1} | {p['cache_files']} | {compile_of(a):.1f} | "
                         f"{compile_of(b):.1f} | {steps[0]} | {steps[1]} | {a['process_s']:.1f} | "
                         f"{b['process_s']:.1f} |")
        lines.append(f"| {algo} | | min | | {min(compile_of(p['first']) for p in ps):.1f} | "
                     f"{min(compile_of(p['second']) for p in ps):.1f} | | | "
                     f"{min(p['first']['process_s'] for p in ps):.1f} | {min(p['second']['process_s'] for p in ps):.1f} |")
    with open(f"{out}.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
