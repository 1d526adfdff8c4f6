"""Seeds over devices and processes (envs/devices.py): a run split over 4 CPU devices, or over 2
processes through jax.distributed, gives the eval.csv of the same run on one device, and its
parameters to float32 rounding (XLA compiles a partitioned program with other reduction orders,
so bit equality of the parameters is not attainable: see envs/devices.py).

The 4 devices are XLA's host-platform devices (--xla_force_host_platform_device_count=4), so the
sharded runs go in a subprocess: this pytest process has already started JAX with one device.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from envs import runs
from envs.devices import SeedDevices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"td3": dict(env_id="Pendulum-v1", learning_starts=200, hidden_dim=32, batch_size=32),
        "td7": dict(env_id="Pendulum-v1", learning_starts=100, batch_size=16, zs_dim=8, enc_hdim=16, critic_hdim=16, actor_hdim=16,
                    steps_before_checkpointing=400, max_eps_when_checkpointing=2)}
COMMON = dict(num_seeds=4, eval_freq=400, eval_episodes=1, save_model=True)


def eval_rows(run_dir: str) -> list[tuple]:
    """eval.csv without its wall-clock column."""
    import csv

    with open(os.path.join(run_dir, "eval.csv"), newline="") as f:
        return sorted(tuple(v for k, v in row.items() if k != "time_s") for row in csv.DictReader(f))


def checkpoint_arrays(run_dir: str) -> dict:
    with np.load(os.path.join(run_dir, "checkpoint", "state.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_same_checkpoint(a: str, b: str, tol) -> None:
    """The final checkpoints (parameters, optimiser moments, priorities, keys, replay) of two runs of
    the same seeds: integers (keys, counters) equal, floats within ``tol`` (TD3: float32 rounding grown
    over the run, measured at most 8e-5 after 1,000 updates; TD7's prioritised sampling lets a
    rounding difference pick another transition, so no tolerance holds: None), and every seed's
    parameters nearest to its own seed's in the other run (a block of seeds on the wrong device, or a
    seed trained with another's key or buffer, fails this)."""
    x, y = checkpoint_arrays(a), checkpoint_arrays(b)
    assert sorted(x) == sorted(y)
    for k in x:
        if not np.issubdtype(x[k].dtype, np.floating):
            assert np.array_equal(x[k], y[k]), f"{k} differs between {a} and {b}"
        elif tol is not None:
            np.testing.assert_allclose(x[k], y[k], rtol=tol, atol=tol, err_msg=f"{k}: {a} vs {b}")
    params = [k for k in x if k.startswith("learner.") and np.issubdtype(x[k].dtype, np.floating)]
    flat = lambda z: np.concatenate([z[k].reshape(len(z[k]), -1) for k in params], 1)  # noqa: E731  [seeds, P]
    dist = np.linalg.norm(flat(x)[:, None] - flat(y)[None], axis=-1)
    assert np.array_equal(dist.argmin(1), np.arange(len(dist))), dist


SHARDED = textwrap.dedent("""
    import json, sys
    import jax
    from envs import runs
    sys.path.insert(0, "algos")
    algo, out, tiny, common = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    resume = algo == "td3"  # TD7 runs 800 steps on 4 devices straight (its compile is the test's cost)
    module = runs.load_file(f"algos/{algo}.py", algo)
    runs.compile_cache()  # as runs.cli does: the update lowered for the HLO check below is read back from it
    assert len(jax.local_devices()) == 4
    facts = {}
    # one device, 800 steps (the reference); 4 devices for 400 steps, resumed on 2 devices to 800 (TD3)
    module.train(module.Args(**tiny, **common, total_timesteps=800, devices=1, results_dir=out, run_name="one"))
    r = module.train(module.Args(**tiny, **common, total_timesteps=400 if resume else 800, devices=4,
                                 results_dir=out, run_name="four"))
    leaf = jax.tree.leaves(r["learner"])[-1]
    facts["learner_devices"] = sorted(str(d) for d in leaf.devices())
    facts["sharding"] = str(leaf.sharding.spec)
    if resume:
        module.train(module.Args(resume=f"{out}/four", total_timesteps=800, devices=2))
    # the compiled update of seeds sharded over 4 devices holds no cross-device communication
    from envs.devices import SeedDevices
    a = module.Args(**tiny, **common, total_timesteps=1200)
    agent = SeedDevices(4).agent(module.make_agent(a, 3, 1))
    state = agent.init(jax.numpy.stack([jax.random.PRNGKey(s) for s in range(4)]))
    facts["state_sharding"] = sorted({str(x.sharding.spec) for x in jax.tree.leaves(state)})
    args = (state[0], state[1], 100, True) if algo == "td3" else (*state, jax.numpy.ones(4, bool), True, True)
    hlo = agent.update.lower(*args).compile().as_text()
    facts["collectives"] = [op for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute",
                                          "reduce-scatter") if op + "(" in hlo or op + "-start(" in hlo]
    facts["partitions"] = "num_partitions=4" in hlo
    for bad in (3, 5):
        try:
            module.train(module.Args(**tiny, **common, total_timesteps=400, devices=bad, results_dir=out,
                                     run_name=f"bad{bad}"))
        except runs.UserError as e:
            facts[f"devices_{bad}"] = str(e)
    print("FACTS " + json.dumps(facts))
""")


# TD7's variant runs in `make test-slow` (78 s on a fresh clone): the default suite keeps under 15 minutes
@pytest.mark.parametrize("algo", ["td3", pytest.param("td7", marks=pytest.mark.slow)])
def test_a_run_sharded_over_4_devices_equals_the_one_device_run(tmp_path, algo):
    """TD3, and TD7 whose seeds follow their own checkpoint schedules (masked updates, bursts): 4
    seeds over 4 devices (TD3: then resumed on 2) give the run on one device: TD3 its eval.csv exactly,
    TD7 its checkpoint schedule exactly and its returns to 2%; the final checkpoints (every parameter,
    optimiser moment, priority, key and replay slot) agree to float32 rounding."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDED, algo, str(tmp_path), json.dumps(TINY[algo]),
                           json.dumps(COMMON)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.split("FACTS ")[-1])
    assert len(set(facts["learner_devices"])) == 4  # the learner lives on 4 devices, one block each
    assert facts["sharding"] == "P('seed',)"  # a NamedSharding over the mesh axis "seed"
    assert facts["state_sharding"] == ["P('seed',)"]  # learner and replay created sharded, every array
    assert facts["partitions"] and facts["collectives"] == []
    assert "--devices 3 must divide the seeds of this process (4)" in facts["devices_3"]
    assert "--devices must be in [1, 4]" in facts["devices_5"]
    one, four = tmp_path / "one", tmp_path / "four"
    assert len(eval_rows(one)) == 4 * 3  # steps 0, 400, 800 for each seed
    if algo == "td3":
        assert eval_rows(one) == eval_rows(four)
    else:  # TD7's per-seed schedules (checkpoints, early stops, bursts) are the same; returns to 2%
        with open(one / "checkpoints.csv") as f, open(four / "checkpoints.csv") as g:
            assert f.read() == g.read()
        a, b = eval_rows(one), eval_rows(four)
        assert [r[:4] + r[5:] for r in a] == [r[:4] + r[5:] for r in b]  # seeds, steps, policy updates
        np.testing.assert_allclose([float(r[4]) for r in a], [float(r[4]) for r in b], rtol=0.02)
    assert_same_checkpoint(one, four, tol=1e-3 if algo == "td3" else None)
    with open(four / "config.json") as f:
        config = json.load(f)
    assert config["machine"]["seed_devices"] == "4 seeds over 4 cpu devices, 1 per device"
    if algo == "td3":
        assert config["args"]["devices"] == 2 and len(config["resumed"]) == 1  # the resume's own device count


def test_seed_devices_on_one_device():
    """With one device nothing changes; the device count is the largest divisor of the seeds."""
    import jax.numpy as jnp

    d = SeedDevices(5)
    assert d.count == 1 and d.block == 5 and d.describe() == "5 seed(s) on 1 cpu device"
    agent = runs  # any object: with one device the agent is returned as it is
    assert d.agent(agent) is agent
    tree = {"a": jnp.ones(3)}
    assert d.replicate(tree) is tree


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_through_jax_distributed_equal_one_process(tmp_path):
    """--distributed with 2 processes (jax.distributed on CPU): process i trains seeds block i into
    <run>/process-<i>; the summary reads the two folders as one run, equal to the 4-seed run of one process."""
    args = ["--env-id", "Pendulum-v1", "--num-seeds", "4", "--total-timesteps", "800", "--learning-starts", "200",
            "--eval-freq", "400", "--eval-episodes", "1", "--hidden-dim", "32", "--batch-size", "32",
            "--results-dir", str(tmp_path)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu",  # the two processes share the compilation cache
           "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{_free_port()}", "JAX_NUM_PROCESSES": "2"}
    procs = [subprocess.Popen([sys.executable, "algos/td3.py", *args, "--distributed", "--run-name", "dist"], cwd=ROOT,
                              env={**env, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for i in range(2)]
    ref = subprocess.run([sys.executable, "algos/td3.py", *args, "--run-name", "one"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert ref.returncode == 0, ref.stderr[-2000:]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-2000:]
    assert "process 1 of 2" in outs[1]
    with open(tmp_path / "dist" / "process-1" / "config.json") as f:
        config = json.load(f)
    assert (config["args"]["seed"], config["args"]["num_seeds"], config["machine"]["process"]) == (2, 2, [1, 2])
    merged = sorted(eval_rows(tmp_path / "dist" / "process-0") + eval_rows(tmp_path / "dist" / "process-1"))
    assert merged == eval_rows(tmp_path / "one")

    from reproduce.summarize import load_run

    dist, one = load_run(str(tmp_path / "dist")), load_run(str(tmp_path / "one"))
    assert dist.seeds == 4 and np.array_equal(dist.returns, one.returns) and np.array_equal(dist.steps, one.steps)

    # the errors of a distributed run: one line each, exit 2
    bad = subprocess.run([sys.executable, "algos/td3.py", *args, "--distributed"], cwd=ROOT, capture_output=True,
                         text=True, env={**env, "JAX_PROCESS_ID": "0", "JAX_NUM_PROCESSES": "1"}, timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "error: --distributed needs --run-name: every process writes <run-name>/process-<i>"


def test_devices_and_workers_flags_may_change_on_resume(tmp_path):
    """--devices and --env-workers say where a run executes, not what it computes: a resume may change
    them (another machine); any other flag is still refused."""
    from algos import td3

    a = td3.Args(env_id="Pendulum-v1", total_timesteps=400, learning_starts=100, eval_freq=200, eval_episodes=1,
                 hidden_dim=16, batch_size=16, save_model=True, results_dir=str(tmp_path), run_name="r")
    td3.train(a)
    run = runs.Run("td3", td3.Args(resume=str(tmp_path / "r"), total_timesteps=600, devices=1, env_workers=2),
                   td3.Args)
    assert (run.args.devices, run.args.env_workers, run.args.total_timesteps) == (1, 2, 600)
    with pytest.raises(runs.UserError, match="--hidden-dim 8 differs"):
        runs.Run("td3", td3.Args(resume=str(tmp_path / "r"), total_timesteps=600, hidden_dim=8), td3.Args)
