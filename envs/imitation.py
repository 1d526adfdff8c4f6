"""Imitation from observation: the expert's state trajectories of an offline dataset, and their statistics.

    expert = envs.imitation.expert_states("minari:fujimoto-jax/pendulum/expert-v0", "Pendulum-v1", episodes=1)

The dataset is read by ``envs.offline.load`` (the same ``minari:`` / ``d4rl:`` specs and checks as
``--dataset``; its actions and rewards are read but never used), with ``timeouts="bootstrap"`` so that
every transition of an episode is kept, the time-limit one included. ``load`` returns flat transitions;
an episode ends at a termination or where a transition's next observation is not the next row's
observation (the loader concatenates episodes in order, and a reset state never equals the previous
episode's final state in a continuous env). Episodes that ``envs.collect`` cut at its step budget (its
metadata's ``cut_episodes``) are not whole expert episodes and are skipped.

An expert for the "imitation" setting comes from this project's own runs: a deterministic policy,
``python -m envs.collect --recipe expert --noise 0 --checkpoint <a td3 run> --steps N --num-envs 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from envs import offline
from envs.errors import UserError


@dataclass
class ExpertStates:
    """The first ``episodes`` whole expert episodes, states only: obs[k] and next_obs[k] are [T_k, obs_dim]."""

    obs: list
    next_obs: list
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def lengths(self) -> list[int]:
        return [len(o) for o in self.obs]

    def fingerprint(self) -> str:
        """A short digest of the states used (a resumed run refuses another expert), as offline.Transitions'."""
        return offline.digest(*(np.asarray(a, np.float32) for pair in zip(self.obs, self.next_obs) for a in pair))


def episode_bounds(data: offline.Transitions) -> list[tuple[int, int]]:
    """[start, end) row ranges of the episodes of flat transitions (see the module docstring)."""
    last = np.nonzero(offline.trajectory_ends(data.obs, data.next_obs, data.terminated))[0]  # each one's final row
    starts = np.r_[0, last[:-1] + 1]
    return list(zip(starts.tolist(), (last + 1).tolist()))


def expert_states(spec: str, env_id: str, episodes: int) -> ExpertStates:
    """The first ``episodes`` whole episodes of the dataset ``spec``, checked against ``env_id`` (one
    ``UserError`` line naming --expert-dataset for a missing dataset, other observation dimensions, ...)."""
    try:
        data = offline.load(spec, env_id, timeouts="bootstrap")
    except UserError as e:  # the loader names --dataset; here the flag is --expert-dataset
        raise UserError(str(e).replace("--dataset ", "--expert-dataset ", 1)) from None
    cut = set(offline.collection_facts(spec).get("cut_episodes") or ())
    whole = [b for k, b in enumerate(episode_bounds(data)) if k not in cut]
    if len(whole) < episodes:
        raise UserError(f"--expert-episodes {episodes}: --expert-dataset {spec} holds {len(whole)} whole episode(s)"
                        + (f" ({len(cut)} cut by the collection's step budget are left out)" if cut else ""))
    take = whole[:episodes]
    return ExpertStates([data.obs[a:b] for a, b in take], [data.next_obs[a:b] for a, b in take], spec,
                        {"episodes": episodes, "lengths": [b - a for a, b in take],
                         "dataset_episodes": len(whole), "cut_episodes_skipped": len(cut)})


def normalization(expert: ExpertStates, std_clip: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the expert's states as OOPS's utils.ExpertDataset computes them: over the states s_t of
    its (s_t, s_t+1) pairs of consecutive rows, so each episode's last stored state s_T-1 is left out; the std
    with ddof=1, a zero std replaced by 1, then clipped below at ``std_clip`` (main.py)."""
    states = np.concatenate([o[:-1] for o in expert.obs]).astype(np.float64)
    if len(states) < 2:
        raise UserError(f"--expert-dataset {expert.source}: {len(states)} expert state(s) for the normalisation; "
                        "need at least 2 (an episode of T steps gives T - 1)")
    mean, std = states.mean(0), states.std(0, ddof=1)
    std = np.where(np.isclose(std, 0.0), 1.0, std)
    return mean, np.maximum(std, std_clip)


def check_resume(expert: ExpertStates, host: dict) -> None:
    """A resumed run must imitate the expert states it started with (the same file may have been rewritten)."""
    if host.get("expert") != expert.fingerprint():
        raise UserError(f"--expert-dataset {expert.source} is not the expert this run was trained on "
                        f"(fingerprint {expert.fingerprint()}, the checkpoint's {host.get('expert')})")


def max_episode_steps(env_id: str) -> int:
    """The env's time limit (the learner's episodes are staged in a buffer of this length): the gymnasium spec's
    max_episode_steps, else the adapter's own limit (envs.dmc: max_steps, 500 agent steps); UserError without one."""
    import envs
    env = envs.make_env(env_id)
    try:
        steps = env.spec.max_episode_steps if env.spec is not None else None
        steps = steps or getattr(env.unwrapped, "max_steps", None)  # dmc: no spec, its own truncation
    finally:
        env.close()
    if not steps:
        raise UserError(f"{env_id} has no time limit (max_episode_steps); OT imitation stages each episode in a "
                        "buffer of that length")
    return int(steps)
