"""Seeds over devices and processes (envs/devices.py): a run split over 4 CPU devices, or over 2
processes through jax.distributed, gives exactly the numbers of the same run on one device.

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
from envs.devices import Blocks, SeedDevices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"td3": dict(env_id="Pendulum-v1", learning_starts=200, hidden_dim=32, batch_size=32),
        "td7": dict(env_id="Pendulum-v1", learning_starts=200, batch_size=32, zs_dim=16, enc_hdim=32, critic_hdim=32, actor_hdim=32,
                    steps_before_checkpointing=300, max_eps_when_checkpointing=2)}
COMMON = dict(num_seeds=4, eval_freq=400, eval_episodes=1, save_model=True)


def eval_rows(run_dir: str) -> list[tuple]:
    """eval.csv without its wall-clock column."""
    import csv

    with open(os.path.join(run_dir, "eval.csv"), newline="") as f:
        return sorted(tuple(v for k, v in row.items() if k != "time_s") for row in csv.DictReader(f))


def checkpoint_arrays(run_dir: str) -> dict:
    with np.load(os.path.join(run_dir, "checkpoint", "state.npz"), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_same_checkpoint(a: str, b: str) -> None:
    x, y = checkpoint_arrays(a), checkpoint_arrays(b)
    assert sorted(x) == sorted(y)
    for k in x:
        assert np.array_equal(x[k], y[k]), f"{k} differs between {a} and {b}"


SHARDED = textwrap.dedent("""
    import json, sys
    import jax
    from envs import runs
    from envs.devices import Blocks
    sys.path.insert(0, "algos")
    algo, out, tiny, common = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    module = runs.load_file(f"algos/{algo}.py", algo)
    assert len(jax.local_devices()) == 4
    facts = {}
    # one device, 1200 steps (the reference); 4 devices for 800 steps, resumed on 2 devices to 1200
    module.train(module.Args(**tiny, **common, total_timesteps=1200, devices=1, results_dir=out, run_name="one"))
    r = module.train(module.Args(**tiny, **common, total_timesteps=800, devices=4, results_dir=out, run_name="four"))
    leaf = jax.tree.leaves(r["learner"])[0]
    facts["learner_devices"] = sorted(str(p.device) for p in leaf.parts) if isinstance(leaf, Blocks) else None
    facts["sharding"] = str(leaf.global_array().sharding.spec) if isinstance(leaf, Blocks) else None
    module.train(module.Args(resume=f"{out}/four", total_timesteps=1200, devices=2))
    for bad in (3, 5):
        try:
            module.train(module.Args(**tiny, **common, total_timesteps=400, devices=bad, results_dir=out,
                                     run_name=f"bad{bad}"))
        except runs.UserError as e:
            facts[f"devices_{bad}"] = str(e)
    print("FACTS " + json.dumps(facts))
""")


@pytest.mark.parametrize("algo", ["td3", "td7"])
def test_a_run_sharded_over_4_devices_equals_the_one_device_run(tmp_path, algo):
    """TD3, and TD7 whose seeds follow their own checkpoint schedules (masked updates, bursts): 4
    seeds over 4 devices, then resumed on 2, give the eval.csv and the checkpoint (every parameter,
    optimiser moment, priority and key) of the one-device run, bit for bit."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "FUJIMOTO_JAX_CACHE": "off"}
    proc = subprocess.run([sys.executable, "-c", SHARDED, algo, str(tmp_path), json.dumps(TINY[algo]),
                           json.dumps(COMMON)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.split("FACTS ")[-1])
    assert facts["learner_devices"] == [f"TFRT_CPU_{i}" for i in range(4)] or len(set(facts["learner_devices"])) == 4
    assert facts["sharding"] == "PartitionSpec('seed',)"
    assert "--devices 3 must divide the seeds of this process (4)" in facts["devices_3"]
    assert "--devices must be in [1, 4]" in facts["devices_5"]
    one, four = tmp_path / "one", tmp_path / "four"
    assert eval_rows(one) == eval_rows(four)
    assert len(eval_rows(one)) == 4 * 4  # steps 0, 400, 800, 1200 for each seed
    assert_same_checkpoint(one, four)
    with open(four / "config.json") as f:
        config = json.load(f)
    assert config["machine"]["seed_devices"] == "4 seeds over 4 cpu devices, 1 per device"
    assert config["args"]["devices"] == 2 and len(config["resumed"]) == 1  # the resume's own device count


def test_blocks_and_seed_devices_on_one_device():
    """With one device nothing is wrapped; the device count is the largest divisor of the seeds."""
    import jax.numpy as jnp

    d = SeedDevices(5)
    assert d.count == 1 and d.block == 5
    fn = lambda x: x + 1  # noqa: E731
    assert d(fn) is fn
    tree = {"a": jnp.ones(3)}
    assert d.replicate(tree) is tree and SeedDevices.view(tree) is tree
    b = Blocks([jnp.arange(2.0), jnp.arange(2.0, 5.0)], d.sharding)
    assert b.shape == (5,) and b.nbytes == 20 and np.array_equal(np.asarray(b), np.arange(5.0))


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
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "FUJIMOTO_JAX_CACHE": "off",
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
