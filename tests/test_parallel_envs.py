"""Env worker processes (``SeedEnvs(..., workers=W)``, issue 16): bit for bit the serial envs, resume
replay included; worker errors come back as themselves; ``close()`` leaves no process behind."""

import multiprocessing

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.runs import Diverged, SpaceError, UserError
from envs.workers import blocks, check_workers

FIELDS = ("obs", "next_obs", "reward", "terminated", "truncated")
SEEDS = [3, 4, 5, 6, 7]


def _assert_same_step(a: envs.EnvStep, b: envs.EnvStep, where):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and np.array_equal(x, y), (f, where)
    assert a.episodes == b.episodes, where


def _assert_same_state(a: dict, b: dict):
    assert a["env_id"] == b["env_id"] and a["seeds"] == b["seeds"] and a["reset_rng"] == b["reset_rng"]
    assert len(a["actions"]) == len(b["actions"])
    for x, y in zip(a["actions"], b["actions"]):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def _no_children(pool):
    assert not pool.alive
    assert not {p.pid for p in pool.procs} & {p.pid for p in multiprocessing.active_children()}


def _actions(e, rng, steps):
    if e.discrete:
        return rng.integers(0, e.action_dim, (steps, e.num))
    return rng.uniform(-1, 1, (steps, e.num, e.action_dim)).astype(np.float32)


@pytest.mark.parametrize("env_id, kw", [
    ("Hopper-v4", dict(env_kwargs={"max_episode_steps": 40})),  # falls (terminated) or hits the 40-step limit
    ("CartPole-v1", dict(discrete_ok=True, env_kwargs={"max_episode_steps": 30})),
])
def test_parallel_stepping_equals_serial_bit_for_bit_with_resume(env_id, kw):
    steps, cut = 240, 150
    rng = np.random.default_rng(0)
    serial = envs.SeedEnvs(env_id, SEEDS, **kw)
    acts = _actions(serial, rng, steps)
    active = rng.uniform(size=(steps, len(SEEDS))) < 0.8  # TD7's per-seed masks
    active[:20] = True
    obs0 = serial.reset()
    ref, ref_state = [], None
    for t in range(steps):
        if t == cut:
            ref_state = serial.get_state()
        ref.append(serial.step(acts[t], active[t]))
    ref_counters = serial.ep_return.copy(), serial.ep_length.copy()
    assert sum(len(s.episodes) for s in ref) > 10
    if env_id == "Hopper-v4":
        assert any(s.terminated.any() for s in ref) and any(s.truncated.any() for s in ref)

    for workers in (2, 3):
        par = envs.SeedEnvs(env_id, SEEDS, workers=workers, **kw)
        try:
            assert not hasattr(par, "envs") and par.workers == workers
            assert (par.obs_shape, par.obs_dtype, par.action_dim, par.discrete) == \
                (serial.obs_shape, serial.obs_dtype, serial.action_dim, serial.discrete)
            o = par.reset()
            assert o.dtype == obs0.dtype and np.array_equal(o, obs0)
            for t in range(steps):
                if t == cut:
                    state = par.get_state()
                    _assert_same_state(state, ref_state)
                _assert_same_step(par.step(acts[t], active[t]), ref[t], (workers, t))
                assert np.array_equal(par.obs, ref[t].obs)
            assert np.array_equal(par.ep_return, ref_counters[0]) and np.array_equal(par.ep_length, ref_counters[1])
            _assert_same_state(par.get_state(), serial.get_state())

            # resume replay from a mid-episode state, in both directions between the two modes
            back = par.set_state(ref_state)
            assert np.array_equal(back, ref[cut - 1].obs) and np.array_equal(par.obs, back)
            serial.set_state(state)
            for t in range(cut, steps):
                a, b = par.step(acts[t], active[t]), serial.step(acts[t], active[t])
                _assert_same_step(a, b, ("resumed", workers, t))
                _assert_same_step(a, ref[t], ("resumed vs first run", workers, t))

            # a bad action is refused in the parent, as in serial, and steps nothing
            bad = acts[0].copy()
            if par.discrete:
                bad[1] = par.action_dim
                err = ValueError
            else:
                bad[1:3] = np.nan
                err = Diverged
            with pytest.raises(err) as serial_err:
                serial.step(bad)
            with pytest.raises(err) as par_err:
                par.step(bad)
            assert str(par_err.value) == str(serial_err.value)
            _assert_same_state(par.get_state(), serial.get_state())
        finally:
            par.close()
        _no_children(par._pool)
    serial.close()


def test_evaluator_workers_give_the_same_returns():
    w = np.random.default_rng(1).normal(size=(11, 3)) * 0.3
    policy = lambda obs: np.tanh(obs @ w).astype(np.float32)  # noqa: E731
    kw = dict(env_kwargs={"max_episode_steps": 60})
    serial = envs.Evaluator("Hopper-v4", [100, 101, 102, 103], episodes=2, **kw)
    par = envs.Evaluator("Hopper-v4", [100, 101, 102, 103], episodes=2, workers=2, **kw)
    try:
        for active in (None, np.array([True, False, True, False]), np.array([False, False, True, True])):
            a, b = serial(policy, active), par(policy, active)
            assert np.array_equal(a, b, equal_nan=True), (active, a, b)
    finally:
        par.close()
        serial.close()
    _no_children(par._pool)


class Exploding(gym.Env):
    """Raises Diverged (a UserError: one line, exit 2 in the CLI) from inside the env's step."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        if action[0] > 0.5:
            raise Diverged(f"exploded at action {float(action[0]):.2f}")
        return np.ones(2, np.float32), 1.0, False, False, {}


if "Exploding-v0" not in gym.registry:  # registered here only: the workers get it from the parent
    gym.register("Exploding-v0", entry_point=Exploding, max_episode_steps=10)


def test_worker_errors_come_back_as_themselves():
    with pytest.raises(UserError, match=r"Unknown env id 'Hoper-v4'.*Hopper-v4"):  # caught before any worker starts
        envs.SeedEnvs("Hoper-v4", [0, 1], workers=2)
    assert not multiprocessing.active_children()
    with pytest.raises(SpaceError, match="Discrete action space.*continuous"):  # raised inside both workers
        envs.SeedEnvs("CartPole-v1", [0, 1, 2], workers=2)
    assert not multiprocessing.active_children()

    e, serial = envs.SeedEnvs("Exploding-v0", [0, 1, 2], workers=2), envs.SeedEnvs("Exploding-v0", [0, 1, 2])
    try:
        errors = []
        for x in (e, serial):
            x.reset()
            x.step(np.zeros((3, 1), np.float32))
            with pytest.raises(Diverged) as info:
                x.step(np.array([[0.0], [0.0], [1.0]], np.float32))  # seed 2, in the second worker
            assert str(info.value) == "exploded at action 1.00"  # what the CLI prints
            errors.append(info.value)
        assert any("in env worker 1 (seeds 2..2)" in note for note in errors[0].__notes__)
        # the pool is still in step and left as the serial envs are
        _assert_same_state(e.get_state(), serial.get_state())
        _assert_same_step(e.step(np.zeros((3, 1), np.float32)), serial.step(np.zeros((3, 1), np.float32)), "after")
        assert np.array_equal(e.ep_length, serial.ep_length) and np.array_equal(e.ep_return, serial.ep_return)
        e.close()
        e.close()  # twice is fine
        _no_children(e._pool)
    finally:
        e.close()


def test_workers_flag_is_checked_and_clamped():
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(UserError, match="--env-workers must be an integer >= 1"):
            check_workers(bad, 4)
    assert check_workers(3, 8) == 3 and check_workers(9, 4) == 4
    assert blocks(5, 2) == [slice(0, 3), slice(3, 5)] and blocks(5, 3) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    one = envs.SeedEnvs("CountEnv-v0", [0], workers=4)  # clamped to one worker: in this process
    assert one.workers == 1 and one._pool is None and len(one.envs) == 1
    with pytest.raises(UserError, match="--env-workers"):
        envs.SeedEnvs("CountEnv-v0", [0, 1], workers=0)


def test_worker_messages_carry_data_only_and_never_pickle():
    """The pipes carry JSON headers and raw array bytes (envs/workers.py encode/decode): the types a
    SeedEnvs/Evaluator call exchanges round-trip exactly, an exception comes back only as a known type
    (any other as a RuntimeError naming it), a message naming anything else is refused, and the module
    imports no pickle."""
    import ast
    import json

    from envs import workers
    from envs.gym import EnvStep
    from envs.runs import Diverged

    state = {"env_id": "Hopper-v4", "reset_rng": [None, np.random.default_rng(3).bit_generator.state],
             "actions": [np.zeros((0, 3), np.float32), np.ones((2, 3), np.float32).T]}
    step = EnvStep(np.arange(6.0).reshape(2, 3), np.ones((2, 3)), np.array([1.5, -2.0], np.float32),
                   np.array([True, False]), np.array([False, True]), [(1, -3.25, 7)])
    msg = ("ok", (state, step, np.float64(0.1), np.int64(2), (gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4))))
    out = workers.decode(workers.encode(msg))
    assert out[1][0]["reset_rng"][1] == state["reset_rng"][1]  # a PCG64 state's 128-bit integers, exactly
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(out[1][0]["actions"], state["actions"]))
    for f in ("obs", "next_obs", "reward", "terminated", "truncated"):
        a, b = getattr(out[1][1], f), getattr(step, f)
        assert np.array_equal(a, b) and a.dtype == b.dtype
    assert out[1][1].episodes == [(1, -3.25, 7)]
    assert type(out[1][2]) is np.float64 and out[1][2] == 0.1 and type(out[1][3]) is np.int64
    assert out[1][4] == msg[1][4]

    err = workers.decode(workers.encode(Diverged("non-finite action for --seed 3")))
    assert type(err) is Diverged and str(err) == "non-finite action for --seed 3"

    class Custom(Exception):
        pass

    err = workers.decode(workers.encode(Custom("x")))
    assert type(err) is RuntimeError and str(err) == "Custom: x"
    with pytest.raises(TypeError, match="cannot be sent"):
        workers.encode(object())
    header = json.dumps({"tree": {"module:os.system": ["echo hi"]}, "nbytes": []}).encode()
    with pytest.raises(ValueError, match="unknown message part"):
        workers.decode(len(header).to_bytes(8, "little") + header)

    with open(workers.__file__) as f:
        tree = ast.parse(f.read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names} | {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"pickle", "cloudpickle", "dill", "marshal", "shelve"}
