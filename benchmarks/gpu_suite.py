"""`make bench-gpu`: env steps/s of TD3, TD7 and MR.Q (Gym and DMC pixels) with 1, 10 and 32 seeds, in
one command that fits 8 minutes on one accelerator (issue 16), then DriftQL's offline updates/s (issue 27).

Every (algo, seeds) config runs in its own process (one at a time; the parent never touches the
accelerator): the algorithm file's real `train` (env stepping, buffer writes, updates, acting) for
a warm-up, then a fixed number of timed steps. Per config:

  * loop steps/s: env steps per second of each seed (one loop iteration steps every seed), after
    the warm-up and compilation, as the file's own `train_loop_steps_per_s`; seed-steps/s = that
    x seeds. TD7 trains in bursts at episode ends, so over a short window its env steps run ahead
    of its updates (the run's last episodes are not trained yet): its updates/s is shown too, its
    long-run rate lies between the two, and the slower (a lower bound) is used for the goals;
  * compile s: the file's `compile_s`, the first training step (TD3, MR.Q: incl. MR.Q's first
    burst of encoder updates) or the first call of each update variant (TD7); a cold compile (the
    children do not turn on the persistent cache; see benchmarks/compile_cache.py for a second
    start);
  * peak device memory per seed: `peak_bytes_in_use` of `jax.local_devices()[0].memory_stats()`
    at the end of the process / seeds ("n/a" where the backend has none, e.g. the CPU), beside the
    replay's own size per seed;
  * the process's wall time (imports, device start, envs, warm-up, compile, timed steps).

Evaluation is replaced by a stub in the children (no eval env is built, returns read 0): it lies
outside every timed window anyway, and DMC pixel episodes would cost minutes of wall time.
Replay: the runs' own sizes (TD3/TD7/MR.Q Gym: 1M transitions per seed, so the prioritised samplers
pay their real cost; DMC pixels: capped at --pixel-slots, 100k = 2.1 GB per seed, since the
preset's 501k slots x 32 seeds would not fit 139 GiB). MR.Q pixels uses --target-update-freq 50
instead of 250: the same compute per env step (one encoder update and one value/policy update per
step on average, in bursts of target_update_freq), in shorter whole periods; every MR.Q window is
a whole number of periods. When the algorithm files have an `env_workers` field (parallel host env
stepping), the 10- and 32-seed configs on an accelerator use min(seeds, host cores / 2) workers.

Budget on one H200 with 16 host cores (8 minutes = 480 s, --budget 470 s). Estimates from
results/bench/td3_gpu.md and td7_gpu.md (H100: TD3 424 / 207 loop steps/s at 1 / 10 seeds, compile
2.5 s; TD7 289 / 63 steps/s, compile 11 / 27 s), results/bench/envs_cpu.md (Hopper host step
150 us per seed) and mrq_cpu.md (MR.Q compile 10-20 s; pixel encoder update 49 GFLOP per seed);
about 7 s per process for Python, imports, device and env start:

    config        seeds: timed steps  est. loop steps/s  est. process s (start + compile + warm-up + timed)
                                        at 1 / 10 / 32     at 1 + 10 + 32 seeds
    td3           1: 2000  10: 2000  32: 1000   420 / 200 / 130   18 + 22 + 20        =  60
    td7           1: 1000  10:  600  32:  400   290 /  63 /  25   22 + 45 + 55        = 122
    mrq (Gym)     1:  500  10:  500  32:  250   150 / 100 /  50   30 + 35 + 35        = 100
    mrq-pixels    1:  150  10:  100  32:  100    50 /  15 /   6   45 + 55 + 85        = 185
                                                                                total ~ 467 s

DriftQL (offline, issue 27) comes last: `algos/driftql.py`'s own `train` on a D4RL-format file of 1M
random Hopper-v4 transitions (benchmarks/offline.py's), at the paper's sizes (4 x 512, N = 32, batch 256,
--preset none), one scanned chunk of --eval-freq updates to compile, then one timed chunk (the file's
`updates_per_s`); 1 / 10 / 32 seeds time 1000 / 300 / 100 updates. One update is about 46 GFLOP per seed
(results/bench/flops_cpu.md); the paper reads about 23.5 min per 1M updates of one run off its Fig. 4
(one RTX 4090, antmaze-large), which the report sets beside ours. Estimated 15 + 20 + 30 s of process:
past the 470 s budget of the estimates above, so it is skipped with a note unless the others finish early;
`--algos driftql` runs it alone (about a minute), `--budget 560` runs everything.

so the figures of the goals (TD3 and TD7 at 10 seeds) come early, and the configs run in that
order: a config that has less than --min-left seconds left is skipped with a note, and each runs
under min(--config-timeout, time left), so the suite never overruns --budget. --steps-scale scales
every timed step count (e.g. 0.5 for a quick rerun).

The goals of issue 16, extrapolated in the report from the 10-seed rates: 10 seeds x 1M TD3 steps
on Hopper in <= 10 minutes (>= 16.7k seed-steps/s) and TD7 in <= 30 minutes (>= 5.6k seed-steps/s);
training loop only (compilation, the faster random warm-up and evaluation left out).

    python benchmarks/gpu_suite.py                      # the suite -> results/bench/gpu_suite_<platform>.md/.json
    python benchmarks/gpu_suite.py --tiny               # tiny networks, seeds 1 2, a few hundred steps: a CPU smoke
    python benchmarks/gpu_suite.py --algos td3 td7 --seeds 10

--tiny shrinks everything (widths 32, batch 32 (MR.Q pixels: 4, the CNN stays), seeds 1 and 2,
4 to 200 timed steps, replay sized to the short run, XLA without LLVM optimisations to halve the
compile time, 2 configs at a time): 8 processes, about 2 CPU minutes (results/bench/gpu_suite_cpu_tiny.md);
its figures say that the command works, not how fast anything is.
"""

import argparse
import dataclasses
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

T_PROCESS = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from envs import runs  # noqa: E402  (imports jax, but starts no backend: the parent stays off the device)

# algo -> (algorithm file, env)
ALGOS = {"td3": ("td3", "Hopper-v4"), "td7": ("td7", "Hopper-v4"), "mrq": ("mrq", "Hopper-v4"),
         "mrq-pixels": ("mrq", "dmc-pixels:walker-walk"), "driftql": ("driftql", "Hopper-v4")}
OFFLINE = ("driftql",)  # updates/s on a dataset, no env steps
SEEDS = [1, 10, 32]
# timed steps by seed count (the largest key <= seeds applies), warm-up steps, MR.Q target period
TIMED = {"td3": {1: 2000, 10: 2000, 32: 1000}, "td7": {1: 1000, 10: 600, 32: 400},
         "mrq": {1: 500, 10: 500, 32: 250}, "mrq-pixels": {1: 150, 10: 100, 32: 100},
         "driftql": {1: 1000, 10: 300, 32: 100}}  # DriftQL: timed updates (and the compiling chunk's)
WARMUP = {"td3": 500, "td7": 500, "mrq": 300, "mrq-pixels": 100, "driftql": 0}
OFFLINE_DATASET = 1_000_000  # transitions of DriftQL's dataset (--tiny: 10,000)
PERIOD = {"mrq": 250, "mrq-pixels": 50}
RUN_STEPS = {"td3": 1_000_000, "td7": 1_000_000}  # replay size of a real run; MR.Q: its suite preset
# --tiny: a CPU smoke of the command
TINY_SEEDS = [1, 2]
TINY_TIMED = {"td3": 200, "td7": 150, "mrq": 40, "mrq-pixels": 4, "driftql": 4}
TINY_WARMUP = {"td3": 100, "td7": 100, "mrq": 30, "mrq-pixels": 10, "driftql": 0}
TINY_PERIOD = {"mrq": 10, "mrq-pixels": 2}
TINY_SIZES = {"td3": dict(hidden_dim=32, batch_size=32),
              "td7": dict(zs_dim=32, enc_hdim=32, critic_hdim=32, actor_hdim=32, batch_size=32),
              "mrq": dict(zs_dim=32, za_dim=16, zsa_dim=32, enc_hdim=32, value_hdim=32, policy_hdim=32, batch_size=32),
              "driftql": dict(hidden_dim=32, batch_size=32, drift_ngen=4)}
GOALS = {"td3": 10.0, "td7": 30.0}  # minutes for 10 seeds x 1M steps
PAPER_DRIFTQL_MIN = 23.5  # DriftQL paper, Fig. 4 (read off): minutes per 1M updates of one run, N = 32, one RTX 4090
RESULT = "GPU_SUITE_RESULT "


# ---------------------------------------------------------------------------------------------
# Helpers shared with benchmarks/compile_cache.py
# ---------------------------------------------------------------------------------------------
class NoEval:
    """Stands in for envs.Evaluator: steps no env, evaluates nothing, every return reads 0 (success: NaN). The
    offline files read the env's dimensions from it: those build the env once, on demand."""

    def __init__(self, env_id, eval_seeds, episodes, *args, **kwargs):
        import numpy as np
        self.n, self.env_id = len(eval_seeds), env_id
        self.successes = np.full(self.n, np.nan)

    def _dims(self):
        import gymnasium as gym
        env = gym.make(self.env_id)
        dims = (int(env.observation_space.shape[0]), int(env.action_space.shape[0]))
        env.close()
        return dims

    @property
    def obs_dim(self) -> int:
        return self._dims()[0]

    @property
    def action_dim(self) -> int:
        return self._dims()[1]

    def __call__(self, policy, active=None):
        import numpy as np
        return np.zeros(self.n) if active is None else np.where(active, 0.0, np.nan)

    def close(self):
        pass


def load_algo(file: str, evaluation: bool = False):
    """algos/<file>.py as a module; without `evaluation`, its evaluator is the NoEval stub (this process only)."""
    import envs
    if not evaluation:
        envs.Evaluator = NoEval  # the algorithm files call envs.Evaluator(...)
    return importlib.import_module(f"algos.{file}")


def timed_steps(algo: str, seeds: int, scale: float = 1.0, tiny: bool = False) -> int:
    if tiny:
        steps = TINY_TIMED[algo]
    else:
        table = TIMED[algo]
        steps = table[max([k for k in table if k <= seeds] or [min(table)])]
    steps = max(1, round(steps * scale))
    period = (TINY_PERIOD if tiny else PERIOD).get(algo, 1)
    return -(-steps // period) * period  # whole MR.Q target periods


def args_for(module, algo: str, env_id: str, seeds: int, steps: int, warmup: int, tiny: bool, results_dir: str,
             env_workers: int | None = None, pixel_slots: int | None = None, extra: dict | None = None):
    """The algorithm's Args for `warmup` random steps and then about `steps` timed ones (see each file's window);
    DriftQL: a compiling chunk and a timed chunk of `steps` updates each on the dataset in `extra`."""
    if algo in OFFLINE:
        kw = dict(env_id=env_id, num_seeds=seeds, eval_episodes=1, results_dir=results_dir, preset="none",
                  total_timesteps=2 * steps, eval_freq=steps)
        kw.update({**(TINY_SIZES[algo] if tiny else {}), **(extra or {})})
        return module.Args(**kw)
    kw = dict(env_id=env_id, num_seeds=seeds, learning_starts=warmup, eval_episodes=1, results_dir=results_dir)
    if algo == "td3":
        total = warmup + 2 * module.Args.policy_freq + 1 + steps  # its window opens once every variant has run
    elif algo == "td7":
        total = warmup + steps  # its window opens at the first update
    else:
        kw["target_update_freq"] = (TINY_PERIOD if tiny else PERIOD)[algo]
        total = warmup + 2 + steps  # window from the second training step: steps / period whole bursts
        if pixel_slots and algo == "mrq-pixels":
            kw["buffer_size"] = pixel_slots
    kw.update(total_timesteps=total, eval_freq=10 * total)
    if tiny:
        kw.update(TINY_SIZES["mrq" if algo.startswith("mrq") else algo])
        if algo == "mrq-pixels":
            kw["batch_size"] = 4  # the pixel encoder is the paper's CNN whatever the widths
    if env_workers:
        kw["env_workers"] = env_workers
    kw.update(extra or {})
    return module.Args(**kw)


def run_size_replay(module, algo: str) -> None:
    """The replay of a real run instead of one sized to this short run: make_agent sees the run's length."""
    make_agent = module.make_agent
    if algo in RUN_STEPS:
        run_steps = lambda args: RUN_STEPS[algo]  # noqa: E731
    else:
        run_steps = lambda args: module.PRESETS[module.suite_of(args.env_id)]["total_timesteps"]  # noqa: E731

    def patched(args, *a, **k):
        return make_agent(dataclasses.replace(args, total_timesteps=max(args.total_timesteps, run_steps(args))), *a, **k)

    module.make_agent = patched


def tree_mb(tree) -> float:
    import jax
    return sum(x.nbytes for x in jax.tree.leaves(tree)) / 1e6


# ---------------------------------------------------------------------------------------------
# One config, in its own process
# ---------------------------------------------------------------------------------------------
def child(cfg: dict) -> dict:
    import jax
    import numpy as np

    algo, seeds = cfg["algo"], cfg["seeds"]
    file, env_id = ALGOS[algo]
    module = load_algo(file)
    if not cfg["tiny"] and algo not in OFFLINE:
        run_size_replay(module, algo)
    fields = {f.name for f in dataclasses.fields(module.Args)}
    backend = jax.default_backend()
    workers = None
    if "env_workers" in fields and algo not in OFFLINE:
        if cfg["env_workers"] is not None:
            workers = cfg["env_workers"] or None
        elif backend != "cpu" and seeds > 1:
            workers = min(seeds, max(1, (os.cpu_count() or 2) // 2))
    with tempfile.TemporaryDirectory() as tmp:
        extra = None
        if algo in OFFLINE:  # the dataset: 1M random transitions of Hopper-v4's shapes as a D4RL file
            from benchmarks.offline import write_dataset
            size = 10_000 if cfg["tiny"] else OFFLINE_DATASET
            extra = {"dataset": "d4rl:" + write_dataset(os.path.join(tmp, "hopper_random_numbers.hdf5"), size)}
        args = args_for(module, algo, env_id, seeds, cfg["steps"], cfg["warmup"], cfg["tiny"], tmp, workers,
                        cfg["pixel_slots"], extra)
        t_train = time.time()
        out = module.train(args)
        train_s = time.time() - t_train
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    if algo in OFFLINE:  # the dataset is the replay: on the device once, shared by the seeds
        data = out["dataset"]
        replay_mb = sum(np.asarray(getattr(data, k)).nbytes for k in ("obs", "action", "reward", "next_obs",
                                                                      "terminated")) / 1e6
        sps, ups = None, out["updates_per_s"]
    else:
        replay = out.get("replay", out.get("buffer"))
        replay_mb = tree_mb(replay) + (tree_mb(out["priorities"]) if "priorities" in out else 0.0)
        sps = out["train_loop_steps_per_s"]
        ups = out.get("train_loop_updates_per_s")
    return {
        "algo": algo, "env_id": env_id, "num_seeds": seeds, "timed_steps": cfg["steps"], "warmup": cfg["warmup"],
        "loop_steps_per_s": sps, "seed_steps_per_s": sps * seeds if sps else None,
        "loop_updates_per_s": ups, "train_rate_per_s": min(sps, ups) if sps and ups else sps or ups,
        "compile_s": out["compile_s"], "peak_bytes": peak, "peak_mb_per_seed": peak / seeds / 1e6 if peak else None,
        "replay_mb_per_seed": replay_mb / seeds, "env_workers": getattr(args, "env_workers", "no flag"),
        "masked_update_fraction": (out.get("masking") or {}).get("masked_update_fraction"),
        "start_s": t_train - T_PROCESS, "train_s": train_s,
        "args": {k: v for k, v in dataclasses.asdict(args).items() if k != "results_dir"},
        "device": {"platform": device.platform, "kind": device.device_kind, "count": jax.device_count()},
    }


def run_config(cfg: dict, timeout: float) -> dict:
    env = {**os.environ}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # a cold compile in every config
    if cfg["tiny"]:  # XLA without its LLVM optimisations: compiles about twice as fast; the smoke times nothing
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
    t0 = time.time()
    base = {"algo": cfg["algo"], "env_id": ALGOS[cfg["algo"]][1], "num_seeds": cfg["seeds"], "timed_steps": cfg["steps"]}
    # its own process group: a timeout ends the config's env worker processes with it
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", json.dumps(cfg)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        return {**base, "error": f"timed out after {timeout:.0f} s", "process_s": time.time() - t0,
                "stderr_tail": stderr[-3000:]}
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT)]
    if proc.returncode or not lines:
        tail = (stderr.strip().splitlines() or ["(no stderr)"])[-1]
        return {**base, "error": f"exit {proc.returncode}: {tail[:300]}", "process_s": time.time() - t0,
                "stderr_tail": stderr[-3000:]}
    return {**json.loads(lines[-1][len(RESULT):]), "process_s": time.time() - t0}


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def fmt(x, spec: str = ".1f", none: str = "n/a") -> str:
    return none if x is None else format(x, spec)


def goal_lines(rows: list[dict]) -> list[str]:
    lines = []
    for algo, minutes in GOALS.items():
        for r in rows:
            if r["algo"] != algo or not r.get("train_rate_per_s"):
                continue
            n, rate = r["num_seeds"], r["train_rate_per_s"]
            took = 1e6 / rate / 60
            need = 1e6 / (minutes * 60)
            verdict = (f"meets the goal ({minutes:.0f} min)" if took <= minutes else
                       f"{took / minutes:.1f}x the goal ({minutes:.0f} min; needs {need:.0f} steps/s per seed, "
                       f"{need * n:,.0f} seed-steps/s)")
            what = "updates/s and env steps/s, the slower" if algo == "td7" else "loop steps/s"
            lines.append(f"- {algo.upper()}, {n} seed{'s' * (n > 1)} x 1M steps on Hopper-v4 at {rate:.1f} steps/s per "
                         f"seed ({what}; {rate * n:,.0f} seed-steps/s): {took:.0f} min"
                         + (f", {verdict}" if n == 10 else ""))
    return lines or ["- no TD3/TD7 rate measured"]


def driftql_lines(rows: list[dict]) -> list[str]:
    """DriftQL's time per 1M updates of each seed beside the paper's (one run per process on an RTX 4090)."""
    lines = []
    for r in rows:
        if r["algo"] != "driftql" or not r.get("loop_updates_per_s"):
            continue
        n, rate = r["num_seeds"], r["loop_updates_per_s"]
        took = 1e6 / rate / 60
        lines.append(f"- DriftQL, {n} seed{'s' * (n > 1)} x 1M updates at {rate:.1f} updates/s per seed "
                     f"({rate * n:,.0f} seed-updates/s): {took:.1f} min, {took / n:.1f} min per seed-run; the paper, "
                     f"one run on an RTX 4090: about {PAPER_DRIFTQL_MIN} min (Fig. 4, read off), "
                     f"{took / n / PAPER_DRIFTQL_MIN:.2f}x that per seed")
    return lines


def write_report(rows: list[dict], notes: list[str], opts, out_dir: str) -> str:
    ok = [r for r in rows if "error" not in r and "device" in r]
    device = ok[0]["device"] if ok else {"platform": "unknown", "kind": "unknown", "count": None}
    versions = runs.versions(("jax-cuda12-plugin", "jax-cuda12-pjrt", "dm_control"))
    git = runs.git_info()
    report = {
        "benchmark": "gpu_suite" + (" --tiny (a smoke of the command, not a speed measurement)" if opts.tiny else ""),
        "command": " ".join(["python"] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "machine": {"platform": platform.platform(), "host_cpus": os.cpu_count(),
                    "device": f"{device['platform']}:{device['kind']}", "device_count": device["count"]},
        "versions": versions, "git": git, "date": time.strftime("%Y-%m-%d %H:%M"), "tiny": opts.tiny,
        "budget_s": opts.budget, "total_s": time.time() - T_PROCESS, "rows": rows, "notes": notes,
    }
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"gpu_suite_{device['platform']}{'_tiny' if opts.tiny else ''}")
    with open(f"{stem}.json", "w") as f:
        json.dump(report, f, indent=2)
    m = report["machine"]
    title = ("# GPU suite, --tiny: a smoke test of the command on this machine, NOT a speed measurement"
             if opts.tiny else f"# GPU suite: TD3, TD7, MR.Q env steps/s on {m['device']}")
    lines = [title, "",
             f"`{report['command']}` on {m['platform']}, {m['host_cpus']} host CPUs, device {m['device']} "
             f"(x{m['device_count']}), jax {versions['jax']} (jaxlib {versions['jaxlib']}, cuda12 plugin "
             f"{versions['jax-cuda12-plugin']}), flax {versions['flax']}, gymnasium {versions['gymnasium']}, mujoco "
             f"{versions['mujoco']}, dm_control {versions['dm_control']}, {report['date']}, commit "
             f"{(git['commit'] or 'unknown')[:10]}{' (+ local changes)' if git.get('dirty') else ''}; "
             f"{report['total_s']:.0f} s of a {opts.budget:.0f} s budget.", ""]
    if opts.tiny:
        lines += ["> Tiny networks (width 32, batch 32; MR.Q pixels batch 4 with the paper's CNN), seeds 1 and 2, 4 to "
                  "200 timed steps, replay sized to the short run, XLA without LLVM optimisations, 2 configs at a time: "
                  "these figures only show that `make bench-gpu` runs end to end.", ""]
    lines += ["One process per row, the algorithm file's `train` (env stepping included) after a warm-up of random steps; "
              "loop steps/s = env steps per second of each seed after compilation, seed-steps/s = x seeds. TD7: "
              "updates/s per seed too (it trains in bursts at episode ends, so its long-run rate lies between "
              "the two; the goals use the slower, a lower bound). "
              "Compile: the first training step (TD7: first call of each update variant), cold. Peak: the device's "
              "peak_bytes_in_use / seeds (n/a: the backend reports none). Process: wall time of the whole process. "
              "Evaluation stubbed out. DriftQL is offline: no env steps, its timed steps are updates of one scanned "
              "chunk after a first chunk of as many (its compile s includes them), on 1M random transitions of "
              "Hopper-v4's shapes, its replay the dataset (shared by the seeds).", "",
              "| algo | env | seeds | timed steps | loop steps/s (each seed) | seed-steps/s | updates/s (each seed; TD7, "
              "DriftQL) "
              "| compile s | peak device MB per seed | replay MB per seed | env workers | process s | note |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['algo']} | {r['env_id']} | {r['num_seeds']} | {r['timed_steps']} | | | | | | | | "
                         f"{fmt(r.get('process_s'), '.0f', '')} | {r['error']} |")
            continue
        lines.append(f"| {r['algo']} | {r['env_id']} | {r['num_seeds']} | {r['timed_steps']} | "
                     f"{fmt(r['loop_steps_per_s'])} | {fmt(r['seed_steps_per_s'], ',.0f')} | "
                     f"{fmt(r['loop_updates_per_s'], '.1f', '')} | {fmt(r['compile_s'], '.1f')} | "
                     f"{fmt(r['peak_mb_per_seed'], ',.0f')} | {r['replay_mb_per_seed']:,.1f} | {r['env_workers']} | "
                     f"{r['process_s']:.0f} | |")
    lines += ["", "Goals of issue 16 (training loop at the measured rate; compilation, warm-up and evaluation left out):", ""]
    lines += goal_lines(ok)
    if drift := driftql_lines(ok):
        lines += ["", "DriftQL (issue 27), the training loop's updates/s after its compiling chunk (paper sizes unless --tiny), against "
                  "the paper's compute figure:", ""] + drift
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    with open(f"{stem}.md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return stem


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", nargs="+", default=[*ALGOS], choices=[*ALGOS])
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help=f"seed counts (default {SEEDS}; --tiny {TINY_SEEDS})")
    parser.add_argument("--tiny", action="store_true", help="tiny networks and runs: a CPU smoke of the command")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="scales every timed step count")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the whole suite (default 470; --tiny 240)")
    parser.add_argument("--config-timeout", type=float, default=None,
                        help="seconds per config (default 180; --tiny 120)")
    parser.add_argument("--min-left", type=float, default=None,
                        help="skip a config with less time left (default 30; --tiny 5)")
    parser.add_argument("--pixel-slots", type=int, default=100_000, help="replay slots per seed for DMC pixels")
    parser.add_argument("--env-workers", type=int, default=None,
                        help="the files' --env-workers, where they have it (default: min(seeds, cores/2) on an "
                             "accelerator for more than one seed, else the files' default; 0: the files' default)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="configs at a time (default 1; --tiny 2, its figures mean nothing anyway)")
    parser.add_argument("--out", default=os.path.join(ROOT, "results", "bench"), help="folder of the report")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    if opts.child:
        print(RESULT + json.dumps(child(json.loads(opts.child))), flush=True)
        return
    opts.budget = opts.budget if opts.budget is not None else (240.0 if opts.tiny else 470.0)
    timeout = opts.config_timeout or (120.0 if opts.tiny else 180.0)
    min_left = opts.min_left if opts.min_left is not None else (5.0 if opts.tiny else 30.0)
    seeds = opts.seeds or (TINY_SEEDS if opts.tiny else SEEDS)
    deadline = T_PROCESS + opts.budget
    configs = [{"algo": algo, "seeds": n, "tiny": opts.tiny, "steps": timed_steps(algo, n, opts.steps_scale, opts.tiny),
                "warmup": (TINY_WARMUP if opts.tiny else WARMUP)[algo], "pixel_slots": opts.pixel_slots,
                "env_workers": opts.env_workers} for algo in opts.algos for n in seeds]
    notes = []

    def run(cfg):  # the deadline is checked as the config starts
        left = deadline - time.time()
        if left < min_left:
            n = cfg["seeds"]
            notes.append(f"{cfg['algo']} with {n} seed{'s' * (n > 1)} skipped: {max(left, 0):.0f} s of the "
                         f"{opts.budget:.0f} s budget left")
            print(notes[-1], flush=True)
            return None
        row = run_config(cfg, min(timeout, left))
        print(json.dumps({k: v for k, v in row.items() if k != "args"}), flush=True)
        return row

    jobs = opts.jobs or (2 if opts.tiny else 1)
    with ThreadPoolExecutor(jobs) as pool:  # in config order; jobs > 1 only where the figures do not matter
        rows = [row for row in pool.map(run, configs) if row is not None]
    if jobs > 1:
        notes.append(f"{jobs} configs at a time (--jobs): the processes shared the machine")
    if any(r.get("device", {}).get("platform") == "cpu" for r in rows) and not opts.tiny:
        notes.append("measured on the CPU: JAX found no accelerator")
    write_report(rows, notes, opts, opts.out)


if __name__ == "__main__":
    main()
