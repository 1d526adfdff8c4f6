"""Seeds over devices and processes: the seed axis of a run split over local devices, and over
processes through ``jax.distributed``. Part of the run contract (``envs/runs.py`` makes one per run).

**Devices.** ``SeedDevices(num_seeds)`` lays the seed axis over the local devices with a
``NamedSharding`` (mesh axis ``"seed"``): device d holds seeds [d*b, (d+1)*b), b = num_seeds / devices.
``seed_devices.agent(agent)`` makes the agent's ``init`` create the learner and replay sharded, so no
device ever holds every seed; from there jit's sharding propagation runs each jitted, vmapped update
as one program partitioned over the mesh: every op is batched over the seed axis, so each device
computes its own seeds from its own keys and buffers, and the compiled programs hold no collective
(tests/test_scale.py checks their HLO). Host inputs (a step's transitions) are split by jit;
``np.asarray`` gathers an output. Offline data goes to every device once (``replicate``).

Numbers: a sharded run equals the same run on one device at test scale (TD3: its eval.csv exactly;
TD7: its checkpoint schedule exactly, its returns to 2%), and its parameters to float32 rounding, not
bit for bit. XLA compiles the partitioned program (and any
program over a different number of seeds) with other reduction orders: TD3's first update on 4
devices gave bias gradients 1 ulp away from the one-device run's. No partitioning of a vmapped
program avoids that; over a long run those ulps grow into different (equally valid) returns.

With one device (any CPU machine) nothing changes: ``agent`` returns the agent as it is.

**Processes.** ``--distributed`` calls ``jax.distributed.initialize`` (coordinator, process count and
index from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, or detected on
SLURM / Open MPI). Process i trains seeds block i of ``--num-seeds`` on its local devices and
writes its own run folder ``<results-dir>/<run-name>/process-<i>``, a complete run of those seeds
(its config.json says ``--seed`` and ``--num-seeds`` of the block); ``reproduce.summarize`` reads
the process folders of a run as one run. No array crosses processes.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from envs.errors import UserError


class SeedDevices:
    """The seed axis of ``num_seeds`` over ``devices`` local devices (unset: the most local devices
    that divide ``num_seeds``, so one seed uses one device)."""

    def __init__(self, num_seeds: int, devices: Optional[int] = None):
        local = jax.local_devices()
        if devices is None:
            devices = max(d for d in range(1, len(local) + 1) if num_seeds % d == 0)
        elif devices < 1 or devices > len(local):
            raise UserError(f"--devices must be in [1, {len(local)}] (the local {local[0].platform} devices), "
                            f"got {devices}")
        elif num_seeds % devices:
            raise UserError(f"--devices {devices} must divide the seeds of this process ({num_seeds}): "
                            "each device trains an equal block of seeds")
        self.num_seeds, self.count, self.block = num_seeds, devices, num_seeds // devices
        self.devices = local[:devices]
        mesh = Mesh(np.array(self.devices), ("seed",))
        self.sharding = NamedSharding(mesh, PartitionSpec("seed"))  # leading axis split, the rest whole
        self.replicated = NamedSharding(mesh, PartitionSpec())

    def describe(self) -> str:
        kind = self.devices[0].platform
        if self.count == 1:
            return f"{self.num_seeds} seed(s) on 1 {kind} device"
        return f"{self.num_seeds} seeds over {self.count} {kind} devices, {self.block} per device"

    def agent(self, agent):
        """An algorithm's Agent (a NamedTuple whose ``init`` maps keys [N] to the stacked learner state)
        with ``init`` creating every array sharded on the seed axis."""
        if self.count == 1:
            return agent
        init = jax.jit(agent.init, out_shardings=self.sharding)
        return agent._replace(init=lambda keys, *a: init(jax.device_put(keys, self.sharding), *a))

    def place(self, array) -> jax.Array:
        """A loaded checkpoint's array ([N, ...], per seed) on the seed devices."""
        if self.count == 1 or np.ndim(array) == 0 or np.shape(array)[0] != self.num_seeds:
            return jax.numpy.asarray(array)
        return jax.device_put(array, self.sharding)

    def replicate(self, tree):
        """Data every seed reads (an offline dataset): one copy per device, put there once."""
        return tree if self.count == 1 else jax.device_put(tree, self.replicated)


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
def init_distributed() -> tuple[int, int]:
    """``jax.distributed.initialize`` once; returns (process index, process count)."""
    if not jax.distributed.is_initialized():
        env = {k: os.environ.get(f"JAX_{k.upper()}") for k in ("num_processes", "process_id")}
        kwargs = {k: int(v) for k, v in env.items() if v not in (None, "")}
        try:
            jax.distributed.initialize(**kwargs)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"--distributed: jax.distributed.initialize failed ({e}); set JAX_COORDINATOR_ADDRESS "
                            "(host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID, or run under "
                            "SLURM / Open MPI") from None
    return jax.process_index(), jax.process_count()
