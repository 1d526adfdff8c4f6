"""Seeds over devices and processes: the seed axis of a run split over local devices, and over
processes through ``jax.distributed``. Part of the run contract (``envs/runs.py`` makes one per run).

**Devices.** ``SeedDevices(num_seeds)`` lays the seed axis over the local devices with a
``NamedSharding`` (mesh axis ``"seed"``): device d holds seeds [d*b, (d+1)*b), b = num_seeds / devices.
``seed_devices(fn)`` wraps an algorithm's jitted, seed-batched function so that every device runs
the *one-device program* on its own block, with its own keys and buffers: no cross-device
communication exists in what runs. State lives between calls as ``Blocks`` (one array per device,
a leaf of the learner's pytree); ``np.asarray`` gathers it, ``global_array`` views it as one
``jax.Array`` with the seed sharding (checkpoints use that).

Why per-device programs and not one SPMD program over the mesh: XLA's partitioned program is a
different compilation, and on XLA:CPU its float results differ from the one-device program's in the
last bit (measured on TD3's update: the Adam step of one 64x64 kernel differed in 1,807 of 4,096
elements by 1 ulp), which a long run turns into different returns. Per-device programs make a
sharded run give exactly the numbers of the same run on one device (tests/test_scale.py). The
price: each device compiles the program once (the second start of a process reads them all from
the persistent compilation cache).

With one device (any CPU machine) ``seed_devices(fn)`` is ``fn`` itself: nothing changes.

**Processes.** ``--distributed`` calls ``jax.distributed.initialize`` (coordinator, process count and
index from ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, or detected on
SLURM / Open MPI). Process i trains seeds block i of ``--num-seeds`` on its local devices and
writes its own run folder ``<results-dir>/<run-name>/process-<i>``, a complete run of those seeds
(its config.json says ``--seed`` and ``--num-seeds`` of the block); ``reproduce.summarize`` reads
the process folders of a run as one run.
"""

from __future__ import annotations

import functools
import os
from typing import Callable, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from envs.runs import UserError


class Blocks:
    """An array with a leading seed axis held as per-device blocks: ``parts[d]`` on device d."""

    __slots__ = ("parts", "sharding")

    def __init__(self, parts: list, sharding: NamedSharding):
        self.parts, self.sharding = parts, sharding

    @property
    def shape(self) -> tuple:
        return (sum(p.shape[0] for p in self.parts), *self.parts[0].shape[1:])

    dtype = property(lambda self: self.parts[0].dtype)
    ndim = property(lambda self: self.parts[0].ndim)
    size = property(lambda self: sum(p.size for p in self.parts))
    nbytes = property(lambda self: sum(p.nbytes for p in self.parts))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = np.concatenate([np.asarray(p) for p in self.parts])
        return out if dtype is None else out.astype(dtype)

    def global_array(self) -> jax.Array:
        """One jax.Array over the mesh (NamedSharding, axis "seed"); no copy."""
        return jax.make_array_from_single_device_arrays(self.shape, self.sharding, self.parts)

    def __getitem__(self, index):
        return self.global_array()[index]

    def block_until_ready(self):
        for p in self.parts:
            p.block_until_ready()
        return self

    def __repr__(self) -> str:
        return f"Blocks({self.dtype}{list(self.shape)} over {len(self.parts)} devices)"


def global_arrays(tree):
    """The tree with every ``Blocks`` leaf viewed as one sharded jax.Array (for checkpoints)."""
    return jax.tree.map(lambda x: x.global_array() if isinstance(x, Blocks) else x, tree)


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
        self.sharding = NamedSharding(mesh, PartitionSpec("seed"))
        self.replicated = NamedSharding(mesh, PartitionSpec())

    def describe(self) -> str:
        kind = self.devices[0].platform
        if self.count == 1:
            return f"{self.num_seeds} seed(s) on 1 {kind} device"
        return f"{self.num_seeds} seeds over {self.count} {kind} devices, {self.block} per device"

    def replicate(self, tree):
        """Data every seed reads (an offline dataset): one copy per device, stored once per device."""
        return tree if self.count == 1 else jax.device_put(tree, self.replicated)

    def __call__(self, fn: Callable) -> Callable:
        """``fn`` (seed-batched: array arguments and results have the leading seed axis, or are
        replicated data / scalars) run as the same one-device program on every device's block."""
        if self.count == 1:
            return fn

        @functools.wraps(fn)
        def per_device(*args, **kwargs):
            leaves, treedef = jax.tree.flatten((args, kwargs))
            outs = []
            for d in range(self.count):  # dispatch is asynchronous: the devices run at once
                a, k = jax.tree.unflatten(treedef, [self._part(x, d) for x in leaves])
                outs.append(fn(*a, **k))
            flat = [jax.tree.flatten(o) for o in outs]
            merged = [Blocks(list(parts), self.sharding) if hasattr(parts[0], "shape") and np.ndim(parts[0]) else
                      parts[0] for parts in zip(*(f[0] for f in flat))]
            return jax.tree.unflatten(flat[0][1], merged)

        return per_device

    def agent(self, agent, keep: tuple = ()):
        """An algorithm's Agent (a NamedTuple of seed-batched functions) with every function wrapped,
        but those named in ``keep`` (e.g. TD7's policy, which acts on a host copy of the actor)."""
        return agent._replace(**{k: self(v) for k, v in agent._asdict().items() if callable(v) and k not in keep})

    @staticmethod
    def view(tree):
        """``tree`` with its ``Blocks`` as sharded jax.Arrays, for jitted code outside the Agent (slicing a
        seed, ``jax.eval_shape``); on one device, ``tree`` itself."""
        return global_arrays(tree)

    def _part(self, x, d: int):
        if isinstance(x, Blocks):
            return x.parts[d]
        if isinstance(x, jax.Array) and len(x.sharding.device_set) > 1:  # replicated data, or a global array
            shard = next(s for s in x.addressable_shards if s.device == self.devices[d])
            if x.sharding.is_fully_replicated:
                return shard.data
            if x.shape[0] != self.num_seeds or shard.data.shape[0] != self.block:
                raise ValueError(f"an argument sharded as {x.sharding} is not split on the seed axis")
            return shard.data
        if isinstance(x, (np.ndarray, jax.Array)) and x.ndim >= 1 and x.shape[0] == self.num_seeds:
            return jax.device_put(x[d * self.block:(d + 1) * self.block], self.devices[d])
        return x  # scalars and static flags


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
