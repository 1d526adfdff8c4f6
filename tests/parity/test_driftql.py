"""Parity of algos/driftql.py with DT6A/driftql @ 1ad1bbc (agents/driftql.py, utils/networks.py,
utils/flax_utils.py, utils/evaluation.py), float64.

Both sides are JAX/Flax, so nothing is replayed through stubs: the authors' DriftQLAgent runs its own `create`,
`update` and `sample_actions`. distrax and ml_collections are not installed; two small stand-ins cover what the
import needs (utils/networks.py subclasses distrax.Transformed for a Gaussian actor DriftQL never builds;
get_config() builds an ml_collections.ConfigDict with two placeholders, a plain dict of None here).

- Start: their `create` (jitted: the same parameters, 3x faster) on cube-single shapes (obs 28, action 5) with
  get_config()'s values (the paper's 4 x 512 networks; batch 16 instead of 256 to keep the test fast) and the
  case's overrides. flax keeps float32 parameters even under jax_enable_x64, so their parameters are cast to
  float64 once and their Adam state re-initialised (optax would round every step back to float32 otherwise); then
  converted into our Learner.
- Updates: a fresh random batch per step (fixed numpy seed), the same on both sides (their dict of masks, our
  Buffer of terminated = 1 - mask). Their `update` splits agent.rng into (new_rng, rng) and passes rng to
  total_loss; ours `update_on(learner, batch, rng)` gets that rng, and both split it the same way below
  (critic_loss -> sample_actions, actor_loss -> drifting_bc_loss), so the noises and the drift subsample agree.
  After every update: actor, critic, target critic (Polyak every update), Adam's moments and count (their
  target-critic moments must stay zero), and the losses and logged values, at the harness's 1e-9 (float64; the
  issue asks for float32 rounding; the worst seen is ~6e-14).
- Cases: the code defaults (Laplace, q_agg min, q_agg_actor mean, N = 32, noise_dim = action dim, dim scaling, whole
  batch, eta 1), and "alternatives", every option switched: the README's cube-double-play command (Gaussian, q_agg
  mean, noise_dim 8, N = 4) with cube-single-play's temp 0.02 and discount 0.995, q_agg_actor min, no dim
  scaling, drift_normalize, normalize_q_loss, a drift subsample of half the batch, eta 0.5. Observations are
  N(0, 6^2), so some candidates start beyond the clip at +-1. (Each case costs ~15 s of compiling, both sides.)
- The evaluation policy: their utils.evaluation.supply_rng(sample_actions) over a few env steps beside our
  `policy` (key -> next key, k per step), and one batched sample_actions beside our `sample`.
- The scanned loop: our `train_chunk` (seed-vmapped, as `train` runs it) against `update_on` on the rows and keys
  of its key schedule (ours against ours: the loop adds nothing to the compared update).
- Sharpness: drift_temp x 1.0005 on our side alone fails the comparison by orders of magnitude.
- The settings: our defaults against get_config(), our PRESETS against the README's command list.
"""

import functools
import re
import types

import jax
import numpy as np
import pytest

from tests.parity.harness import TOL, Parity, authors_dir, load_authors, ours, rel, tree_rel

OBS, ACT = 28, 5  # cube-single's observation and action dims
B = 16  # the paper's 256: 16x the rows through the same code
ITERS = 6  # updates per case: Polyak and Adam act every update, so a few steps reach every branch
SEED = 0

OBS_SCALE = 6.0  # observations ~ N(0, 6^2): about 7% of the initial generator's outputs then lie beyond +-1

# The case's overrides of get_config(). "alternatives" switches every option away from its default: the README's
# cube-double-play command (Gaussian, q_agg mean, noise_dim 8 != action dim 5, N = 4, alpha 100) with cube-single-
# play's sharper temp 0.02 and discount 0.995, and the options no command changes (q_agg_actor min, no dim scaling,
# drift_normalize, normalize_q_loss, a drift subsample of half the batch, eta 0.5).
CASES = {
    "default": {},
    "alternatives": dict(kernel="gaussian", q_agg="mean", noise_dim=8, drift_ngen=4, alpha=100.0, drift_temp=0.02,
                         discount=0.995, q_agg_actor="min", dim_scale=False, drift_normalize=True,
                         normalize_q_loss=True, drift_batch_size=B // 2, drift_eta=0.5),
}
# get_config() keys that are our Args fields of the same name and meaning
SHARED = ("lr", "discount", "tau", "q_agg", "q_agg_actor", "normalize_q_loss", "alpha", "kernel", "drift_temp",
          "drift_ngen", "drift_eta", "dim_scale", "drift_normalize", "drift_eps", "noise_dim", "actor_layer_norm")


# ---------------------------------------------------------------------------------------------
# The authors' side
# ---------------------------------------------------------------------------------------------
def distrax_stub() -> types.ModuleType:
    mod = types.ModuleType("distrax")

    class Transformed:  # subclassed at import by utils/networks.py's TransformedWithMode
        def __init__(self, *a, **k):
            raise RuntimeError("distrax is stubbed in the parity tests")

    mod.Transformed = Transformed
    return mod


def ml_collections_stub() -> types.ModuleType:
    mod = types.ModuleType("ml_collections")
    mod.ConfigDict = dict
    mod.config_dict = types.SimpleNamespace(placeholder=lambda type_: None)  # unset until create() fills it
    return mod


@functools.lru_cache(maxsize=None)
def authors():
    """(agents.driftql, utils.evaluation) of the authors' repo."""
    return load_authors("driftql", "agents.driftql", "utils.evaluation",
                        stubs={"distrax": distrax_stub(), "ml_collections": ml_collections_stub()})


def authors_config(case: str) -> dict:
    cfg = dict(authors()[0].get_config())
    drift_bs = CASES[case].get("drift_batch_size", B)
    return {**cfg, **CASES[case], "batch_size": B, "drift_batch_size": drift_bs}


def float64_agent(agent):
    """Their agent with float64 parameters and a fresh Adam state of them (create() made float32 ones)."""
    net = agent.network
    params = jax.tree.map(lambda x: np.asarray(x, np.float64), net.params)
    return agent.replace(network=net.replace(params=params, opt_state=net.tx.init(params)))


def batches(n, seed=1):
    """Random transitions in the authors' dict layout: actions inside +-(1 - 1e-5) as both loaders clip them."""
    rng = np.random.default_rng(seed)
    return [dict(observations=OBS_SCALE * rng.normal(size=(B, OBS)), actions=rng.uniform(-1, 1, (B, ACT)) * (1 - 1e-5),
                 rewards=rng.normal(size=B), masks=(rng.uniform(size=B) > 0.2).astype(np.float64),
                 next_observations=OBS_SCALE * rng.normal(size=(B, OBS))) for _ in range(n)]


@functools.lru_cache(maxsize=None)
def authors_run(case: str):
    """Their agent after create (float64) and after each of ITERS updates, the key each update passed to
    total_loss, its info, and the batches. Cached: the sharpness test replays the default case."""
    dq, cfg, data = authors()[0], authors_config(case), batches(ITERS)
    # their create, jitted (3x faster than eagerly here; the same parameters)
    create = jax.jit(lambda obs, action: dq.DriftQLAgent.create(SEED, obs, action, dict(cfg)))
    agent = float64_agent(create(data[0]["observations"], data[0]["actions"]))
    agents, keys, infos = [agent], [], []
    for batch in data:
        keys.append(np.asarray(jax.random.split(agent.rng)[1]))  # update: new_rng, rng = split(self.rng)
        agent, info = agent.update(batch)
        agents.append(agent)
        infos.append(jax.device_get(info))
    return agents, keys, infos, data


# ---------------------------------------------------------------------------------------------
# Their state as our Learner, our side's Args
# ---------------------------------------------------------------------------------------------
def actor_p(t):
    return {"params": {"MLP_0": t["modules_actor_bc_drift"]["mlp"]}}


def critic_p(t, name="modules_critic"):
    return {"params": {"VmapMLP_0": t[name]["value_net"]}}


def as_learner(td, agent, key=None):
    """Their TrainState (params, one Adam over all modules) in our Learner's layout, numpy."""
    net = jax.device_get(agent.network)
    adam, rest = net.opt_state[0], net.opt_state[1:]
    both = lambda t: {"actor": actor_p(t), "critic": critic_p(t)}  # noqa: E731
    opt = (adam._replace(mu=both(adam.mu), nu=both(adam.nu)), *rest)
    return td.Learner(actor_p(net.params), critic_p(net.params), critic_p(net.params, "modules_target_critic"), opt,
                      np.zeros(2, np.uint32) if key is None else key)


def our_args(td, cfg: dict, **changes):
    hidden = set(cfg["actor_hidden_dims"]) | set(cfg["value_hidden_dims"])
    assert len(hidden) == 1 and len(cfg["actor_hidden_dims"]) == len(cfg["value_hidden_dims"])
    args = td.Args(preset="none", hidden_dim=hidden.pop(), num_layers=len(cfg["value_hidden_dims"]),
                   critic_layer_norm=cfg["layer_norm"], batch_size=cfg["batch_size"],
                   drift_batch_size=cfg["drift_batch_size"] if cfg["drift_batch_size"] < cfg["batch_size"] else 0,
                   **{k: cfg[k] for k in SHARED})
    resolved, _ = td.resolve_presets(args)
    assert resolved == args  # every preset field given: nothing filled in
    return td.Args(**{**vars(args), **changes})


def our_batch(td, batch):
    return td.Buffer(batch["observations"], batch["actions"], batch["rewards"], batch["next_observations"],
                     1.0 - batch["masks"])


def compare(p, it, learner, theirs, td, m=None, info=None):
    s, t = jax.device_get(learner), as_learner(td, theirs)
    (adam, t_adam), their_mu = (s.opt[0], t.opt[0]), jax.device_get(theirs.network.opt_state[0])
    target_moments = max(float(np.abs(x).max()) for x in jax.tree.leaves(
        (their_mu.mu["modules_target_critic"], their_mu.nu["modules_target_critic"])))
    diffs = dict(actor=tree_rel(s.actor, t.actor), critic=tree_rel(s.critic, t.critic),
                 critic_target=tree_rel(s.critic_target, t.critic_target),
                 adam_mu=tree_rel(adam.mu, t_adam.mu), adam_nu=tree_rel(adam.nu, t_adam.nu),
                 adam_count=abs(int(adam.count) - int(t_adam.count)), their_target_moments=target_moments)
    if m is not None:
        m = jax.device_get(m)
        diffs.update(critic_loss=rel(m["critic_loss"], info["critic/critic_loss"]),
                     actor_loss=rel(m["actor_loss"], info["actor/actor_loss"]),
                     drift_loss=rel(m["drift_loss"], info["actor/bc_drift_loss_raw"]),
                     logged=max(rel(m["drift_norm"], info["actor/drift_norm"]), rel(m["q_pi"], info["actor/q"]),
                                rel(m["q_data"], info["critic/q_mean"])))
    p.check(it=it, **diffs)
    return diffs


@functools.lru_cache(maxsize=None)
def our_agent(case: str):
    """(args, agent) of the case; cached, so its update_on compiles once for the tests that share it."""
    td = ours("driftql")
    args = our_args(td, authors_config(case))
    return args, td.make_agent(args, OBS, ACT)


def run_ours(agent, td, start, keys, data, steps):
    learner, out = start, []
    for k, batch in zip(keys[:steps], data[:steps]):
        learner, m = agent.update_on(learner, our_batch(td, batch), k)
        out.append((learner, m))
    return agent, out


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
@pytest.mark.authors("driftql")
@pytest.mark.parametrize("case", list(CASES))
def test_driftql_update_matches_authors(case):
    td = ours("driftql")
    agents, keys, infos, data = authors_run(case)
    cfg = authors_config(case)
    start = as_learner(td, agents[0])
    # the start really is theirs (concat(obs, noise of noise_dim) into the generator), and the clip at +-1 is
    # reached: some of the first drift candidates lie beyond it
    noise_dim = cfg["noise_dim"] or ACT
    assert start.actor["params"]["MLP_0"]["Dense_0"]["kernel"].shape[0] == OBS + noise_dim
    assert agents[0].config["noise_dim"] == noise_dim
    raw = jax.jit(agents[0].network.select("actor_bc_drift"))(
        data[0]["observations"], np.random.default_rng(3).normal(size=(B, noise_dim)))
    assert 0.01 < float(np.mean(np.abs(raw) > 1)) < 0.5
    _, steps = run_ours(our_agent(case)[1], td, start, keys, data, ITERS)
    p = Parity("driftql.py", f"update_on, {case}: actor, critic ensemble, Polyak target critic, one Adam's "
                             "moments and count, critic / actor / drift losses and logged values")
    for it, (learner, m) in enumerate(steps, 1):
        compare(p, it, learner, agents[it], td, m, infos[it - 1])
    # the test moves something: the networks changed
    first, last = jax.device_get(start), jax.device_get(steps[-1][0])
    assert tree_rel(last.critic_target, first.critic_target) > 1e-6 and tree_rel(last.actor, first.actor) > 1e-4
    settings = ", ".join(f"{k}={v}" for k, v in CASES[case].items()) or "get_config() defaults"
    p.finish(ITERS, note=f"{settings}; 4x512 networks, batch {B}, obs 28 (N(0, {OBS_SCALE:g}^2)), action 5; "
                         "compared after every update")


@pytest.mark.authors("driftql")
@pytest.mark.parametrize("case", list(CASES))
def test_driftql_policy_matches_authors(case):
    """Their evaluation's supply_rng(sample_actions) (one observation per env step, the key split before each call)
    beside our `policy` (key -> next key, k), and one batched sample_actions beside our `sample`; the parameters
    of their last update."""
    td, (_, evaluation) = ours("driftql"), authors()
    theirs = authors_run(case)[0][-1]
    actor = as_learner(td, theirs).actor
    agent = our_agent(case)[1]
    obs = OBS_SCALE * np.random.default_rng(2).normal(size=(4, OBS))
    key0 = jax.random.PRNGKey(7)
    act = evaluation.supply_rng(theirs.sample_actions, rng=key0)
    keys, stacked = key0[None], jax.tree.map(lambda x: x[None], actor)
    q = Parity("driftql.py", f"policy, {case}: sample_actions through supply_rng (3 env steps) and batched")
    for t in range(3):
        keys, a = agent.policy(stacked, keys, obs[t][None])
        q.check(it=t + 1, env_step=rel(a[0], act(observations=obs[t], temperature=0.0)))
    k = jax.random.PRNGKey(8)
    q.check(batched=rel(agent.sample(actor, k, obs), theirs.sample_actions(obs, seed=k)))
    q.finish(3, note="temperature is ignored by both; noise_dim "
                     f"{authors_config(case)['noise_dim'] or ACT}")


@pytest.mark.authors("driftql")
def test_driftql_train_chunk_replays_update_on():
    """Our scanned, seed-vmapped loop (`train_chunk`, which `train` runs) from their start, against `update_on` on the
    rows and keys its documented schedule draws (key -> next key, k_idx, k_update; indices uniform over the data):
    the loop adds nothing to the update the rows above compare with the authors'."""
    td, agents, _, _, data = ours("driftql"), *authors_run("default")
    args, agent = our_agent("default")
    rows = td.Buffer(*(np.concatenate([our_batch(td, b)[i] for b in data]) for i in range(5)))  # ITERS * B rows
    learner = start = as_learner(td, agents[0], np.asarray(jax.random.PRNGKey(11)))
    n = 3
    chunk, _ = agent.train_chunk(jax.tree.map(lambda x: np.asarray(x)[None], learner), rows, n)
    for _ in range(n):
        key, k_idx, k_update = jax.random.split(learner.key, 3)
        idx = np.asarray(jax.random.randint(k_idx, (args.batch_size,), 0, len(rows.reward)))
        batch = td.Buffer(*(x[idx] for x in rows))
        learner, _ = agent.update_on(learner._replace(key=key), batch, k_update)
    s, t = jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(chunk)), jax.device_get(learner)
    p = Parity("driftql.py", f"train_chunk (the scanned, seed-vmapped loop): {n} updates against update_on on the "
                             "rows and keys of its key schedule")
    p.check(it=n, actor=tree_rel(s.actor, t.actor), critic=tree_rel(s.critic, t.critic),
            critic_target=tree_rel(s.critic_target, t.critic_target), adam=tree_rel(s.opt, t.opt),
            key=float(np.any(s.key != t.key)))
    assert tree_rel(s.actor, start.actor) > 1e-4  # it moved
    p.finish(n, note="ours against ours: update_on is what the update_on rows compare with the authors' update")


@pytest.mark.authors("driftql")
def test_driftql_comparison_is_sharp():
    """drift_temp x 1.0005 on our side alone (their Laplace temp 0.2): two updates already fail the comparison."""
    td = ours("driftql")
    agents, keys, infos, data = authors_run("default")
    cfg = authors_config("default")
    args = our_args(td, cfg, drift_temp=cfg["drift_temp"] * 1.0005)
    _, steps = run_ours(td.make_agent(args, OBS, ACT), td, as_learner(td, agents[0]), keys, data, 2)
    p = Parity("driftql.py", "sharpness (not recorded)")
    diffs = [compare(p, it, s, agents[it], td, m, infos[it - 1]) for it, (s, m) in enumerate(steps, 1)]
    # the generator and the moments by orders of magnitude; the critic (through the second step's target actions)
    # and the drift loss alone by several times the tolerance
    assert min(diffs[0]["actor"], diffs[1]["adam_mu"]) > 1e3 * TOL, diffs
    assert min(diffs[1]["critic"], *(d["drift_loss"] for d in diffs)) > 5 * TOL, diffs


@pytest.mark.authors("driftql")
def test_driftql_defaults_match_authors():
    td = ours("driftql")
    cfg = dict(authors()[0].get_config())
    args, _ = td.resolve_presets(td.Args(preset="none"))
    assert {k: getattr(args, k) for k in SHARED} == {k: cfg[k] for k in SHARED}
    assert (args.hidden_dim,) * args.num_layers == cfg["actor_hidden_dims"] == cfg["value_hidden_dims"]
    assert (args.batch_size, args.critic_layer_norm) == (cfg["batch_size"], cfg["layer_norm"])
    assert cfg["drift_batch_size"] == cfg["batch_size"] and args.drift_batch_size == 0  # 0: the whole batch


def readme_commands():
    """{task group: {flag: value}} of every `python main.py --env_name=... --agent.x=y` line of the README; the five
    singletask variants of a group must agree."""
    out = {}
    for line in (authors_dir() / "driftql" / "README.md").read_text().splitlines():
        m = re.match(r"python main\.py --env_name=(\S+)(.*)", line.strip())
        if not m:
            continue
        env = re.sub(r"(-singletask-task\d)?-v\d+$", "", m.group(1))
        flags = dict(re.findall(r"--agent\.(\w+)=(\S+)", m.group(2)))
        assert out.setdefault(env, flags) == flags, (env, flags)
    return out


@pytest.mark.authors("driftql")
def test_driftql_presets_match_authors_readme():
    td = ours("driftql")
    cfg = dict(authors()[0].get_config())
    commands = readme_commands()
    assert len(commands) == 37 and set(commands) == set(td.PRESETS)  # 10 OGBench, 9 + 6 D4RL, 12 Adroit
    for env, flags in commands.items():
        info = td.resolve_presets(td.Args(preset=env))[1]
        expect = {k: type(cfg[k])(flags[k]) if k in flags else cfg[k] for k in td.PRESET_FIELDS}
        assert info["values"] == expect, env
