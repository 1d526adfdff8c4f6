"""Parity of algos/td3_bc.py and its data path (envs/offline.py) with sfujim/TD3_BC (TD3_BC.py, utils.py), float64.

Update: the same initial weights (the authors' torch init, converted), the same batch indices and target noise: our
side draws them from its key schedule inside `agent.update`; the test replays it (the learner's key split into next,
k_idx, k_noise) and hands the authors' `train` the same values through a stub buffer and torch.randn_like;
torch.Tensor.backward records their losses. Our scanned loop (`train_chunk`) from the same start is compared at the
end as well.
Data: one small D4RL HDF5 file (terminals, timeouts, a stored next_observations, a cut last episode) read by our
loader (`--dataset d4rl:<file>`, as td3_bc.py's train reads and normalises it) and, as `d4rl.qlearning_dataset`
returns it, by the authors' ReplayBuffer.convert_D4RL and normalize_states.
"""


import h5py
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from tests.parity.harness import td3_actor as actor_p, td3_critic as critic_p, StubBuffer, argparse_defaults, Parity, adam_moment, authors_dir, load_authors, ours, rel, t64, tree_rel

OBS, ACT, B, SIZE, ITERS = 11, 3, 64, 500, 8


def host(tree):
    """Seed 0 of a seed-stacked pytree, as numpy (no eager JAX op per leaf)."""
    return jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(tree))


@pytest.mark.authors("TD3_BC")
def test_td3_bc_update_matches_authors():
    td3_bc, TD3_BC = ours("td3_bc"), load_authors("TD3_BC", "TD3_BC")
    torch.manual_seed(0)
    th = TD3_BC.TD3_BC(OBS, ACT, 1.0)  # the repo's defaults; main.py scales both noises by max_action (1 here)
    args = td3_bc.Args(dataset="d4rl:x.hdf5", env_id="Hopper-v4", batch_size=B)
    agent = td3_bc.make_agent(args, OBS, ACT)
    a, c = jax.device_get((actor_p(th.actor), critic_p(th.critic)))
    key = np.asarray(agent.init(jnp.stack([jax.random.PRNGKey(0)])).key)
    adam = lambda p: jax.tree.map(lambda x: np.zeros(x.shape, x.dtype),  # noqa: E731  (optax's Adam starts at 0)
                                  jax.eval_shape(optax.adam(args.actor_lr).init, p))
    start = jax.tree.map(lambda x: np.asarray(x)[None], td3_bc.Learner(a, a, c, c, adam(a), adam(c), key[0]))
    rng = np.random.default_rng(1)
    data = jax.device_put(td3_bc.Buffer(rng.normal(size=(SIZE, OBS)), rng.uniform(-1, 1, (SIZE, ACT)),
                                        3 * rng.normal(size=SIZE), rng.normal(size=(SIZE, OBS)),
                                        (rng.uniform(size=SIZE) < 0.1).astype(np.float64)))
    stub = StubBuffer(data)

    @jax.jit
    def draws(key):  # update's split: (next, k_idx, k_noise)
        _, k_idx, k_noise = jax.random.split(key[0], 3)
        return jax.random.randint(k_idx, (B,), 0, SIZE), jax.random.normal(k_noise, (B, ACT))

    p = Parity("td3_bc.py", "update: critic, delayed actor with BC term (lambda = alpha / mean abs Q1), "
                            "Polyak targets, Adam moments, losses")
    backward, losses = torch.Tensor.backward, []

    def record(self, *a, **k):
        losses.append(float(self.detach()))
        return backward(self, *a, **k)

    learner, noise = start, [None]
    orig = torch.randn_like
    torch.randn_like, torch.Tensor.backward = (lambda x, **kw: t64(noise[0])), record
    try:
        for it in range(1, ITERS + 1):
            idx, noise[0] = draws(learner.key)
            stub.idx = np.asarray(idx)
            del losses[:]
            th.train(stub, B)
            update_actor = it % args.policy_freq == 0  # the authors' total_it % policy_freq, as train_chunk runs
            learner, m = agent.update(learner, data, update_actor)
            s, m = host(learner), host(m)
            ca, aa = s.critic_opt[0], s.actor_opt[0]
            moment = lambda conv, net, opt, which: conv(net, adam_moment(opt, which))  # noqa: E731
            p.check(it=it,
                    critic=tree_rel(s.critic, critic_p(th.critic)),
                    critic_target=tree_rel(s.critic_target, critic_p(th.critic_target)),
                    actor=tree_rel(s.actor, actor_p(th.actor)),
                    actor_target=tree_rel(s.actor_target, actor_p(th.actor_target)),
                    critic_adam=max(tree_rel(ca.mu, moment(critic_p, th.critic, th.critic_optimizer, "exp_avg")),
                                    tree_rel(ca.nu, moment(critic_p, th.critic, th.critic_optimizer, "exp_avg_sq"))),
                    actor_adam=max(tree_rel(aa.mu, moment(actor_p, th.actor, th.actor_optimizer, "exp_avg")),
                                   tree_rel(aa.nu, moment(actor_p, th.actor, th.actor_optimizer, "exp_avg_sq"))),
                    adam_steps=abs(int(ca.count) - it) + abs(int(aa.count) - it // 2),
                    losses=rel([m["critic_loss"]] + ([m["actor_loss"]] if update_actor else []), losses))
    finally:
        torch.randn_like, torch.Tensor.backward = orig, backward
    p.finish(ITERS)

    # the scanned offline loop from the same start: ITERS / policy_freq periods in one call
    chunk, metrics = agent.train_chunk(jax.device_put(start), data, ITERS // args.policy_freq)
    s = host(chunk)
    q = Parity("td3_bc.py", f"train_chunk (the scanned offline loop): {ITERS} updates in one call")
    q.check(it=ITERS, critic=tree_rel(s.critic, critic_p(th.critic)),
            critic_target=tree_rel(s.critic_target, critic_p(th.critic_target)),
            actor=tree_rel(s.actor, actor_p(th.actor)), actor_target=tree_rel(s.actor_target, actor_p(th.actor_target)),
            key=rel(s.key, host(learner).key))
    q.finish(ITERS, note="compared with the authors' state after the same updates")


# ---------------------------------------------------------------------------------------------
# Data: the D4RL file through our loader and normalisation, and through convert_D4RL + normalize_states
# ---------------------------------------------------------------------------------------------
# (steps, end): "term" terminal, "trunc" time limit, "both" a terminal row that is also a timeout, "cut" neither
EPISODES = [(7, "term"), (9, "trunc"), (5, "both"), (8, "trunc"), (6, "term"), (4, "cut")]


def d4rl_file(path, obs_dim, act_dim, bound, seed=0):
    """A D4RL-layout HDF5 file (float32, as D4RL's), with next_observations (which d4rl.qlearning_dataset ignores)."""
    rng = np.random.default_rng(seed)
    parts = {k: [] for k in ("observations", "next_observations", "actions", "rewards", "terminals", "timeouts")}
    for t, end in EPISODES:
        obs = (rng.normal(size=(t + 1, obs_dim)) * rng.uniform(0.5, 3, obs_dim) + rng.normal(size=obs_dim))
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(rng.uniform(-bound, bound, (t, act_dim)))
        parts["rewards"].append(rng.normal(size=t))
        parts["terminals"].append(np.arange(t) == t - 1 if end in ("term", "both") else np.zeros(t, bool))
        parts["timeouts"].append(np.arange(t) == t - 1 if end in ("trunc", "both") else np.zeros(t, bool))
    with h5py.File(path, "w") as f:
        for k, v in parts.items():
            v = np.concatenate(v)
            f[k] = v if v.dtype == bool else v.astype(np.float32)
    return str(path)


def qlearning_dataset(path):
    """d4rl.qlearning_dataset on the file (terminate_on_end=False, the file's timeouts): D4RL's loop written again
    (D4RL and mujoco-py do not install here). float32 arrays and bool terminals, as D4RL returns them."""
    with h5py.File(path, "r") as f:
        raw = {k: f[k][()] for k in f}
    out = {k: [] for k in ("observations", "actions", "next_observations", "rewards", "terminals")}
    for i in range(len(raw["rewards"]) - 1):
        if bool(raw["timeouts"][i]):
            continue
        out["observations"].append(raw["observations"][i].astype(np.float32))
        out["next_observations"].append(raw["observations"][i + 1].astype(np.float32))
        out["actions"].append(raw["actions"][i].astype(np.float32))
        out["rewards"].append(raw["rewards"][i].astype(np.float32))
        out["terminals"].append(bool(raw["terminals"][i]))
    return {k: np.array(v) for k, v in out.items()}


def authors_buffer(utils, dataset):
    rb = utils.ReplayBuffer(dataset["observations"].shape[1], dataset["actions"].shape[1], max_size=1)
    rb.convert_D4RL(dataset)
    return rb


@pytest.mark.authors("TD3_BC")
def test_td3_bc_data_matches_convert_d4rl_and_normalize_states(tmp_path, monkeypatch):
    from envs import offline, runs
    td3_bc, utils = ours("td3_bc"), load_authors("TD3_BC", "utils")
    path = d4rl_file(tmp_path / "hopper.hdf5", OBS, ACT, 1.0)
    dataset = qlearning_dataset(path)

    # ours: td3_bc.py's train on the file (2 updates, 1 evaluation episode), recording the statistics it computes
    # and the Buffer it puts on the device (normalised states)
    stats, built, normalization, buffer = [], [], offline.normalization, td3_bc.Buffer
    monkeypatch.setattr(offline, "normalization", lambda obs: stats.append(normalization(obs)) or stats[-1])
    monkeypatch.setattr(td3_bc, "Buffer", lambda *a: built.append(jax.device_get(a)) or buffer(*a))
    runs.cli(td3_bc.Args, td3_bc.train, td3_bc.evaluate_checkpoint, argv=[
        "--dataset", f"d4rl:{path}", "--env-id", "Hopper-v4", "--total-timesteps", "2", "--eval-freq", "2",
        "--eval-episodes", "1", "--hidden-dim", "8", "--batch-size", "8", "--results-dir", str(tmp_path / "runs")])
    (our_mean, our_std), = stats
    obs_n, action, reward, next_n, terminated = built[0]
    data = offline.load(f"d4rl:{path}", "Hopper-v4", "drop")  # the loader train called

    # theirs: convert_D4RL of the float32 dict D4RL returns, then normalize_states; and on a float64 copy
    rb = authors_buffer(utils, dataset)
    raw = {k: np.array(getattr(rb, k)) for k in ("state", "action", "next_state", "reward", "not_done")}
    mean, std = rb.normalize_states()
    mean64, std64 = authors_buffer(utils, {k: v.astype(np.float64) for k, v in dataset.items()}).normalize_states()

    assert len(data) == len(raw["reward"]) == sum(t for t, _ in EPISODES) - 1 - 3  # the last row, three timeouts
    p = Parity("td3_bc.py", "data: D4RL file -> our loader and train's device Buffer vs convert_D4RL (states, "
                            "actions, next states, rewards, not_done); our statistics vs theirs in float64")
    p.check(states=rel(data.obs, raw["state"]), next_states=rel(data.next_obs, raw["next_state"]),
            actions=max(rel(data.action, raw["action"]), rel(action, raw["action"])),
            rewards=max(rel(data.reward, raw["reward"][:, 0]), rel(reward, raw["reward"][:, 0])),
            not_done=max(rel(1 - data.terminated, raw["not_done"][:, 0]), rel(1 - terminated, raw["not_done"][:, 0])),
            mean_float64=rel(our_mean, mean64[0].astype(np.float32)),
            std_float64=rel(our_std, std64[0].astype(np.float32)))
    p.finish(1, note="equal: our mean and std are theirs computed in float64, rounded once to float32")
    q = Parity("td3_bc.py", "data: normalize_states (mean, std + 1e-3, normalised states and next states)", tol=1e-6)
    q.check(mean=rel(our_mean, mean[0]), std=rel(our_std, std[0]), states=rel(obs_n, rb.state),
            next_states=rel(next_n, rb.next_state))
    q.finish(1, note="tol 1e-6: float32 on both sides (D4RL's dict, our Transitions); their numpy statistics "
                     "accumulate in float32, ours in float64 (rounded once)")


@pytest.mark.authors("TD3_BC")
def test_td3_bc_actions_are_mapped_onto_unit_bounds():
    """The documented difference (td3_bc.py's header): on an env whose bounds are not +-1 our loader maps actions
    onto [-1, 1], where the authors' buffer keeps them in env units (D4RL's MuJoCo tasks are all +-1)."""
    import tempfile

    from envs import offline
    utils = load_authors("TD3_BC", "utils")
    with tempfile.TemporaryDirectory() as d:
        path = d4rl_file(f"{d}/pendulum.hdf5", 3, 1, 2.0, seed=1)
        theirs = authors_buffer(utils, qlearning_dataset(path))
        mine = offline.load(f"d4rl:{path}", "Pendulum-v1", "drop")
    assert np.abs(theirs.action).max() > 1.5
    np.testing.assert_array_equal(mine.action, theirs.action / 2.0)
    np.testing.assert_array_equal(mine.obs, theirs.state)


@pytest.mark.authors("TD3_BC")
def test_td3_bc_defaults_match_authors():
    import inspect
    TD3_BC, a = load_authors("TD3_BC", "TD3_BC"), ours("td3_bc").Args()
    ctor = {k: v.default for k, v in inspect.signature(TD3_BC.TD3_BC).parameters.items() if v.default is not v.empty}
    main = argparse_defaults(authors_dir() / "TD3_BC" / "main.py")
    theirs = {**ctor, "batch_size": main["--batch_size"], "eval_freq": main["--eval_freq"],
              "total_timesteps": main["--max_timesteps"], "normalize": main["--normalize"]}
    assert theirs == {k: getattr(a, k) for k in theirs}
    assert (main["--discount"], main["--tau"], main["--policy_noise"], main["--noise_clip"], main["--policy_freq"],
            main["--alpha"]) == (a.discount, a.tau, a.policy_noise, a.noise_clip, a.policy_freq, a.alpha)
