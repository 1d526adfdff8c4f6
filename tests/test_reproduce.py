"""make reproduce: grid files, expansion, launcher state and resume, summary statistics and verdicts."""

import csv
import io
import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from reproduce import grid, launch, summarize

REF_HEADER = ",".join(summarize.REFERENCE_HEADER)


def write_grid(folder, name="t", scale_body=None, extra="", reference=None):
    folder.mkdir(exist_ok=True)
    reference = reference or str(folder / "ref.csv")
    if not os.path.exists(reference):
        with open(reference, "w") as f:
            f.write(REF_HEADER + "\n")
    body = scale_body or ('algos = ["td3"]\nenvs = ["Pendulum-v1"]\nseeds = 2\nbudgets = [400]\neval_freq = 200\n'
                          'eval_episodes = 1\nargs = ["--learning-starts", "100"]')
    (folder / f"{name}.toml").write_text(f'[paper]\nid = "{name}"\ntitle = "{name}"\nreference = "{reference}"\n'
                                         f'[scale.quick]\n{body}\n{extra}')
    return folder


def open_text(*parts):
    with open(os.path.join(*parts)) as f:
        return f.read()


def fake_run(root, algo, env, returns, steps, seeds_arg=None, total=None, eval_freq=None, eval_episodes=10,
             normalized=None, **extra):
    """A run folder as the algorithms write it: returns (and normalized scores) are (seeds, evals) at
    `steps`; an offline run passes env_id= and dataset= in extra (its folder is the dataset's name)."""
    run_dir = os.path.join(root, algo, env)
    os.makedirs(run_dir, exist_ok=True)
    n = len(returns)
    args = {"env_id": env, "seed": 0, "num_seeds": seeds_arg or n, "total_timesteps": total or steps[-1],
            "eval_freq": eval_freq or (steps[1] - steps[0]), "eval_episodes": eval_episodes, **extra}
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"algo": algo, "args": args, "command": f"python algos/{algo}.py --env-id {env}",
                   "versions": {"jax": "x"}, "git": {"commit": "abc", "dirty": False}, "machine": {}}, f)
    with open(os.path.join(run_dir, "eval.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "env", "seed", "step", "return", "time_s"] + (["normalized_score"] if normalized else []))
        for t, step in enumerate(steps):
            for s in range(n):
                w.writerow([algo, env, s, step, returns[s][t], 1.0] + ([normalized[s][t]] if normalized else []))
    return run_dir


# ---------------------------------------------------------------------------------------------
# Grid files and expansion
# ---------------------------------------------------------------------------------------------
def test_repo_grids_load_and_merge_shared_runs():
    papers = grid.load_papers()
    assert {p.id for p in papers} >= {"td3", "td7", "mrq"}
    for p in papers:
        assert os.path.exists(os.path.join(grid.ROOT, p.reference)), p.reference
        summarize.load_reference(os.path.join(grid.ROOT, p.reference))  # valid rows with sources
    quick = {r.name: r for r in grid.expand(papers, "quick")}
    # TD3 on Hopper is asked for by the TD3 paper (3 seeds) and as TD7's baseline (2 seeds): one run
    td3 = quick["td3/Hopper-v4"]
    assert set(td3.papers) >= {"td3", "td7"} and td3.seeds == 3 and td3.steps == 50_000
    full = {r.name: r for r in grid.expand(papers, "full")}
    # the full TD3 run on Hopper serves TD3's 1M and TD7's 5M budgets
    assert full["td3/Hopper-v4"].steps == 5_000_000 and full["td3/Reacher-v4"].steps == 1_000_000
    # per-env flags reach their runs: the TD3 repo's 1k start steps on Reacher, none on Hopper
    assert full["td3/Reacher-v4"].args == ("--learning-starts", "1000") and full["td3/Hopper-v4"].args == ()
    # every full-scale paper budget is reached by the run that serves it
    for p in papers:
        s = p.scales["full"]
        for algo in s.algos:
            for env in s.envs:
                assert full[f"{algo}/{env}"].steps >= max(s.budgets_for(env)) and full[f"{algo}/{env}"].seeds >= s.seeds


def test_repo_offline_grids():
    """TD3+BC, BCQ and offline TD7: D4RL files at full scale, one dataset collected from the quick TD3
    run at quick scale; offline TD7 runs never merge with online ones; no reference number is invented."""
    from minari.dataset.minari_dataset import parse_dataset_id

    from envs import collect
    assert grid.RECIPES + grid.OGBENCH_RECIPES == collect.RECIPES and grid.SOURCE_ALGOS == collect.POLICY_ALGOS
    papers = {p.id: p for p in grid.load_papers()}
    for pid in ("td3_bc", "bcq", "td7_offline", "discrete_bcq", "sr_dice"):
        assert summarize.load_reference(os.path.join(grid.ROOT, papers[pid].reference)) == []
    quick = {r.name: r for r in grid.expand(list(papers.values()), "quick")}
    offline = {n: r for n, r in quick.items() if r.dataset}
    assert set(offline) == {"td3_bc/hopper-medium", "bcq/hopper-medium", "td7/hopper-medium",
                            "discrete_bcq/minatar-breakout-behavioural", "sr_dice/pendulum-sr-dice",
                            *(f"{a}/cube-single-play-task2-quick" for a in ("driftql", "td3_bc", "td7")),
                            "td3_ot/pendulum-expert", "td3_bc/pendulum-expert-noisy",
                            "td3_bc_sparse/pendulum-expert-noisy"}
    # the imitation run's expert: its own TD3 source run, rolled out without noise; Sparse-Reg's data: the same
    # TD3's D4RL-style expert data (noise 0.1), cut to its first 10k transitions by the runs
    ot = quick["td3_ot/pendulum-expert"].dataset
    assert (ot.recipe, ot.noise, ot.sources) == ("expert", 0.0, ("td3/Pendulum-v1+pendulum-expert",))
    assert quick["td3/Pendulum-v1+pendulum-expert"].steps == 20_000
    sparse = quick["td3_bc_sparse/pendulum-expert-noisy"]
    assert sparse.dataset.sources == ot.sources and sparse.dataset.noise is None
    assert sparse.args == ("--max-transitions", "10000")
    assert quick["td3_bc/pendulum-expert-noisy"].args == ("--max-transitions", "10000", "--actor-lr", "1e-3",
                                                          "--critic-lr", "1e-3")
    ope = quick["sr_dice/pendulum-sr-dice"]  # evaluates the quick TD3 of the LAP/PAL grid, 1,000 truth episodes
    assert (ope.dataset.recipe, ope.dataset.source, ope.dataset.steps, ope.eval_episodes) == \
        ("sr-dice", "td3/Pendulum-v1", 50_000, 1_000) and "td3/Pendulum-v1" in quick
    ds = quick["discrete_bcq/minatar-breakout-behavioural"].dataset  # from the LAP/PAL grid's quick Double DQN
    assert (ds.recipe, ds.source, ds.env) == ("behavioural", "ddqn/minatar:breakout", "minatar:breakout")
    assert quick["td7/hopper-medium"].args == ("--offline",) and quick["td7/Hopper-v4"].dataset is None
    assert quick["td7/hopper-medium"].run_dir("R") != quick["td7/Hopper-v4"].run_dir("R")
    ds = quick["td3_bc/hopper-medium"].dataset
    assert (ds.recipe, ds.source, ds.steps, ds.env) == ("medium", "td3/Hopper-v4", 20_000, "Hopper-v4")
    assert parse_dataset_id(ds.minari_id) == ("fujimoto-jax-quick/hopper", "hopper-medium", 0)
    assert quick["td7/hopper-medium"].steps % 250 == 0 and quick["td7/hopper-medium"].eval_freq % 250 == 0
    full = {r.name: r for r in grid.expand(list(papers.values()), "full")}
    td3_bc = [r for r in full.values() if r.algo == "td3_bc" and "td3_bc" in r.papers]
    assert len(td3_bc) == 15 and all(r.dataset.d4rl for r in td3_bc) and {r.seeds for r in td3_bc} == {5}
    small = full["td3_bc_sparse/hopper-expert-v2-10k"]  # Sparse-Reg: the same D4RL file, its first 10k transitions
    assert small.dataset.d4rl == "hopper_expert-v2.hdf5" and small.args == ("--max-transitions", "10000")
    assert full["td3_bc/hopper-expert-v2-10k"].args[:2] == ("--max-transitions", "10000")
    assert full["td3_bc/hopper-medium-replay-v2"].dataset.d4rl == "hopper_medium_replay-v2.hdf5"
    assert full["td7/walker2d-expert-v2"].args == ("--offline",) and full["td7/Walker2d-v4"].dataset is None
    imperfect = full["bcq/hopper-imperfect"].dataset
    assert (imperfect.recipe, imperfect.source, imperfect.steps) == ("imperfect", "ddpg/Hopper-v4", 100_000)


GYM5 = ["Ant-v4", "HalfCheetah-v4", "Hopper-v4", "Humanoid-v4", "Walker2d-v4"]


def test_drq_grid_expands_and_shares_its_mrq_runs_with_the_mrq_paper():
    """DR.Q's grid: DR.Q and our MR.Q on the paper's Gym tasks; the MR.Q runs are mrq.toml's (one
    process each, the most seeds and steps either asks for), so DR.Q adds only its own runs."""
    papers = {p.id: p for p in grid.load_papers()}
    drq = papers["drq"]
    assert drq.reference == "results/reference/drq.csv" and drq.cost["drq"] > drq.cost["mrq"]
    (agg,) = drq.aggregates
    assert (agg.algo, agg.baseline, agg.envs) == ("drq", "mrq", tuple(GYM5))
    for scale in ("quick", "full"):
        alone = {r.name: r for r in grid.expand([drq], scale)}
        merged = {r.name: r for r in grid.expand(list(papers.values()), scale)}
        s = drq.scales[scale]
        assert set(alone) == {f"{a}/{e}" for a in ("drq", "mrq") for e in s.envs}
        for name, run in alone.items():
            assert (run.steps, run.seeds, run.eval_freq, run.eval_episodes) == (max(s.budgets), s.seeds, 5_000, 10)
            assert merged[name].steps >= run.steps and merged[name].seeds >= run.seeds
            assert merged[name].papers == (("drq",) if run.algo == "drq" else ("mrq", "drq")), name
    quick = {r.name: r for r in grid.expand(list(papers.values()), "quick")}
    # the quick comparison is MR.Q's own quick run: same env, budget and seeds
    assert (quick["drq/Hopper-v4"].steps, quick["drq/Hopper-v4"].seeds) == (15_000, 1)
    assert (quick["mrq/Hopper-v4"].steps, quick["mrq/Hopper-v4"].seeds) == (15_000, 1)
    assert [r.name for r in grid.expand(list(papers.values()), "quick") if r.algo == "drq"] == ["drq/Hopper-v4"]
    assert drq.scales["full"].envs == tuple(GYM5) and drq.scales["full"].budgets == (100_000, 300_000, 500_000,
                                                                                     1_000_000)


def test_drq_reference_rows():
    """results/reference/drq.csv: the authors' results/drq.csv per task, Gym at the grid's budgets, DMC
    in agent steps (the csv's env_step / 2), HumanoidBench for reading only; spot values as in the
    project's reference notes (ALGORITHMS.md section 9.5, last logged point)."""
    from envs import dmc
    rows = summarize.load_reference(os.path.join(grid.ROOT, "results", "reference", "drq.csv"))
    by = {(r["env"], r["budget"]): r for r in rows}
    assert len(by) == len(rows)  # one row per env and budget
    assert all(r["paper"] == "drq" and r["algo"] == "drq" and r["statistic"] == "mean_at_budget"
               and r["spread_kind"] == "std" for r in rows)
    # every run of the full grid has a reference at every budget
    full = grid.load_paper(os.path.join(grid.GRID_DIR, "drq.toml")).scales["full"]
    assert {(e, b) for e in full.envs for b in full.budgets} == {k for k in by if k[0] in full.envs}
    suites = {"dmc:": set(), "dmc-pixels:": set(), "HBench-": set()}
    for env, budget in by:
        for prefix in suites:
            if env.startswith(prefix):
                suites[prefix].add(budget)
                if prefix != "HBench-":
                    dmc.parse_id(env)  # a real DeepMind Control task, spelled as envs.dmc spells it
    assert suites == {"dmc:": {100_000, 500_000}, "dmc-pixels:": {500_000}, "HBench-": {500_000}}
    envs = {e for e, _ in by}
    assert (len({e for e in envs if e.startswith("dmc:")}), len({e for e in envs if e.startswith("dmc-pixels:")}),
            len({e for e in envs if e.startswith("HBench-")})) == (28, 12, 30)
    for (env, budget), r in by.items():  # the frames inference is stated where it applies
        assert ("counts frames" in r["source"]) == (not env.endswith(("-v4",))), env
        assert ("not runnable here" in r["source"]) == env.startswith("HBench-"), env
    spot = {("HalfCheetah-v4", 1_000_000): (14775.2, 210.2, 10), ("dmc:cheetah-run", 500_000): (911.1, 9.9, 10),
            ("Hopper-v4", 1_000_000): (2503.9, 877.1, 10), ("dmc-pixels:walker-run", 500_000): (745.9, 49.7, 10),
            ("dmc:ball_in_cup-catch", 500_000): (980.2, 2.6, 10),
            ("HBench-h1hand-cabinet-v0", 500_000): (219.7, 131.3, 5)}
    for key, (mean, std, seeds) in spot.items():
        assert (by[key]["mean"], by[key]["spread"], by[key]["seeds"]) == (mean, std, seeds), key
    # DMC states at 100k agent steps lie below their 500k values on the hard tasks (a budget mix-up would not)
    for task in ("dog-run", "humanoid-run", "hopper-hop"):
        assert by[(f"dmc:{task}", 100_000)]["mean"] < by[(f"dmc:{task}", 500_000)]["mean"] / 2, task


def offline_grid(tmp_path, envs='["pend", "pend-d4rl"]', datasets=None, online_algos='["td3", "td7"]'):
    """Online TD3 and TD7 on Pendulum (file 'on'); TD3+BC and offline TD7 on a dataset collected from
    the TD3 run and on a D4RL file (files 'off' and 'off7', each defining the datasets)."""
    datasets = datasets or ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", source = "td3/Pendulum-v1", '
                            'steps = 400 }\npend-d4rl = { env = "Pendulum-v1", d4rl = "pend.hdf5" }\n')
    d = write_grid(tmp_path / "g", "on", f'algos = {online_algos}\nenvs = ["Pendulum-v1"]\nseeds = 2\nbudgets = [400]\n'
                   'eval_freq = 200\neval_episodes = 1\nargs = ["--learning-starts", "100"]')
    write_grid(d, "off", f'algos = ["td3_bc"]\nenvs = {envs}\nseeds = 2\nbudgets = [200]\neval_freq = 100\n'
               'eval_episodes = 1', datasets)
    write_grid(d, "off7", f'algos = ["td7"]\nenvs = {envs}\nseeds = 2\nbudgets = [500]\neval_freq = 250\n'
               'eval_episodes = 1\nargs = ["--offline"]', datasets)  # offline TD7 counts in 250-step target periods
    return d


def test_offline_runs_expand_to_dataset_commands(tmp_path):
    root, d4rl_dir = str(tmp_path / "runs"), str(tmp_path / "d4rl")
    runs = {r.name: r for r in grid.expand(grid.load_papers(str(offline_grid(tmp_path))), "quick")}
    assert set(runs) == {"td3/Pendulum-v1", "td7/Pendulum-v1", "td3_bc/pend", "td3_bc/pend-d4rl", "td7/pend",
                         "td7/pend-d4rl"}
    assert runs["td7/pend"].args == ("--offline",) and runs["td7/Pendulum-v1"].args == ("--learning-starts", "100")
    run = runs["td3_bc/pend"]
    assert (run.env, run.env_id, run.run_dir(root)) == ("pend", "Pendulum-v1", os.path.join(root, "td3_bc", "pend"))
    cmd = launch.command(run, root, launch.State("todo"), d4rl_dir)
    assert cmd[2:6] == ["--dataset", "minari:fujimoto-jax-quick/pendulum/pend-v0", "--env-id", "Pendulum-v1"]
    assert cmd[cmd.index("--run-name") + 1] == "pend" and cmd[cmd.index("--results-dir") + 1] == os.path.join(root, "td3_bc")
    assert launch.process_env(root, run.dataset)["MINARI_DATASETS_PATH"] == os.path.join(root, "datasets")
    assert launch.collect_command(run.dataset, root)[2:] == [
        "envs.collect", "--recipe", "medium", "--env-id", "Pendulum-v1", "--dataset-id",
        "fujimoto-jax-quick/pendulum/pend-v0", "--seed", "0", "--steps", "400",
        "--checkpoint", os.path.join(root, "td3", "Pendulum-v1")]
    ext = runs["td7/pend-d4rl"]
    cmd = launch.command(ext, root, launch.State("todo"), d4rl_dir)
    assert cmd[2:6] == ["--dataset", f"d4rl:{d4rl_dir}/pend.hdf5", "--env-id", "Pendulum-v1"] and cmd[-1] == "--offline"
    assert launch.process_env(root, ext.dataset).get("MINARI_DATASETS_PATH") == os.environ.get("MINARI_DATASETS_PATH")
    # state on disk: the dataset is part of the protocol, wherever --d4rl-dir puts a D4RL file
    td7 = dict(eval_freq=250, eval_episodes=1, env_id="Pendulum-v1")
    fake_run(root, "td7", "pend-d4rl", [[0, 1, 2]] * 2, [0, 250, 500], dataset="d4rl:/elsewhere/pend.hdf5", offline=True,
             **td7)
    assert launch.run_state(ext, root).kind == "done"
    fake_run(root, "td3_bc", "pend", [[0, 1, 2]] * 2, [0, 100, 200], dataset="minari:x/pendulum/other-v0",
             eval_episodes=1, env_id="Pendulum-v1")
    st = launch.run_state(run, root)
    assert st.kind == "conflict" and "dataset minari:x/pendulum/other-v0 vs minari:fujimoto-jax-quick" in st.detail
    fake_run(root, "td7", "pend", [[0, 1, 2]] * 2, [0, 250, 500], dataset="minari:fujimoto-jax-quick/pendulum/pend-v0",
             **td7)  # an online td7 run (no --offline) in its folder
    st = launch.run_state(runs["td7/pend"], root)
    assert st.kind == "conflict" and "offline <absent> vs True" in st.detail


@pytest.mark.parametrize("datasets,envs,match", [
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", source = "td3/Pendulum-v1", steps = 4, noisy = 1 }',
     None, "unknown keys \\['noisy'\\]"),
    ('[dataset]\npend = { env = "Pendulum-v1", d4rl = "p.hdf5", noise = 0 }', None,
     "\\['noise'\\] describe a collection"),
    ('[dataset]\npend = { env = "Pendulum-v1" }', None, "exactly one of 'recipe'"),
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", d4rl = "p.hdf5" }', None, "exactly one of 'recipe'"),
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "best", source = "td3/Pendulum-v1", steps = 4 }', None,
     "unknown recipe 'best'"),
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium-expert", source = "td3/Pendulum-v1", steps = 4 }',
     None, "takes source \\(medium\\) and source2"),
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "random", source = "td3/Pendulum-v1", steps = 4 }', None,
     "takes no source"),
    ('[dataset]\npend = { env = "Hopper-v4", recipe = "medium", source = "td3/Pendulum-v1", steps = 4 }', None,
     "must be a run 'algo/Hopper-v4'"),
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", source = "td3/Pendulum-v1" }', None, "needs steps"),
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium-replay", source = "td3/Pendulum-v1", steps = 4 }',
     None, "no 'steps'"),
    ('[dataset]\npend = { env = "Pendulum-v1", d4rl = "p.hdf5", steps = 4 }', None, "describe a collection"),
    ('[dataset]\npend = { env = "Pendulum-v1", minari = "not an id" }', None, "not a Minari id"),
    ('[dataset]\nPend = { env = "Pendulum-v1", d4rl = "p.hdf5" }', '["Pend"]', "lower-case"),
    ('[dataset]\npend = { env = "Pendulum-v1", d4rl = "p.hdf5" }', '["pend", "Pendulum-v1"]',
     "mixes dataset names and env ids"),
    ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", source = "ddpg/Pendulum-v1", steps = 4 }', '["pend"]',
     "source 'ddpg/Pendulum-v1' is not a run of scale 'quick'"),
    ('[datasets]\npend = { env = "Pendulum-v1", d4rl = "p.hdf5" }', '["Pendulum-v1"]', "unknown tables"),
])
def test_bad_dataset_tables_name_the_problem(tmp_path, datasets, envs, match):
    d = offline_grid(tmp_path, envs or '["pend"]', datasets)
    with pytest.raises(ValueError, match=match):
        grid.load_papers(str(d))


def test_a_dataset_name_means_one_dataset_in_every_grid_file(tmp_path):
    d = offline_grid(tmp_path, '["pend"]')
    write_grid(d, "other", 'algos = ["bcq"]\nenvs = ["pend"]\nseeds = 1\nbudgets = [200]\neval_freq = 100\n'
               'eval_episodes = 1', '[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", '
               'source = "td3/Pendulum-v1", steps = 800 }')
    with pytest.raises(ValueError, match=r"other.toml: \[dataset.pend\] differs from its definition in"):
        grid.load_papers(str(d))
    # an online run never merges with an offline one of the same folder name
    (d / "other.toml").unlink()
    write_grid(d, "other", 'algos = ["td7"]\nenvs = ["pend"]\nseeds = 1\nbudgets = [500]\neval_freq = 250\n'
               'eval_episodes = 1\nargs = ["--offline"]')
    with pytest.raises(ValueError, match="td7 on pend is asked for with two protocols"):
        grid.expand(grid.load_papers(str(d)), "quick")


def test_expand_filters_and_protocol_conflict(tmp_path):
    d = write_grid(tmp_path / "g", "a")
    write_grid(d, "b", 'algos = ["td3", "ddpg"]\nenvs = ["Pendulum-v1", "Hopper-v4"]\nseeds = 1\nbudgets = [200, 800]\n'
                       'eval_freq = 200\neval_episodes = 1\nargs = ["--learning-starts", "100"]')
    runs = grid.expand(grid.load_papers(str(d)), "quick")
    assert [r.name for r in runs] == ["td3/Pendulum-v1", "td3/Hopper-v4", "ddpg/Pendulum-v1", "ddpg/Hopper-v4"]
    merged = runs[0]
    assert (merged.steps, merged.seeds, merged.papers) == (800, 2, ("a", "b"))
    assert [r.name for r in grid.expand(grid.load_papers(str(d)), "quick", algos=["ddpg"], envs=["Hopper-v4"])] \
        == ["ddpg/Hopper-v4"]
    assert grid.expand(grid.load_papers(str(d)), "full") == []
    write_grid(d, "c", 'algos = ["td3"]\nenvs = ["Pendulum-v1"]\nseeds = 1\nbudgets = [400]\neval_freq = 100\n'
                       'eval_episodes = 1')
    with pytest.raises(ValueError, match="two protocols"):
        grid.expand(grid.load_papers(str(d)), "quick")
    with pytest.raises(ValueError, match="unknown paper"):
        grid.load_papers(str(d), only=["zzz"])


@pytest.mark.parametrize("body,match", [
    ('algos = ["td3"]\nenvs = ["Hopper-v4"]\nseeds = 1\nbudgets = [300]\neval_freq = 200\neval_episodes = 1',
     "multiple of eval_freq"),
    ('algos = ["td3"]\nenvs = ["Hopper-v4"]\nseeds = 1\nbudgets = [400]\neval_freq = 200\neval_episodes = 1\n'
     'steps = 3', "unknown keys"),
    ('algos = ["td3"]\nenvs = ["Hopper-v4"]\nbudgets = [400]\neval_freq = 200\neval_episodes = 1', "missing keys"),
])
def test_bad_grid_files_name_the_problem(tmp_path, body, match):
    d = write_grid(tmp_path / "g", "bad", body)
    with pytest.raises(ValueError, match=match):
        grid.load_papers(str(d))


def test_bad_reference_rows_name_the_problem(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text(REF_HEADER + "\np,td3,Hopper-v4,1000,mean_at_budget,1.0,2.0,std,10,\n")
    with pytest.raises(ValueError, match="line 2: every reference row names its source"):
        summarize.load_reference(str(path))
    path.write_text(REF_HEADER + "\np,td3,Hopper-v4,1000,median,1.0,2.0,std,10,src\n")
    with pytest.raises(ValueError, match="unknown statistic 'median'"):
        summarize.load_reference(str(path))
    path.write_text(REF_HEADER + "\np,td3,Hopper-v4,1000,mean_at_budget,1.0,2.0,std,10,Someone (2023, arXiv:1)\n")
    with pytest.raises(ValueError, match="line 2: 1 field\\(s\\) too many"):
        summarize.load_reference(str(path))
    for ref in ("td3", "td7", "mrq"):  # the committed references load
        assert summarize.load_reference(os.path.join(summarize.ROOT, "results", "reference", f"{ref}.csv"))


def test_the_papers_td3_normalisation_reproduces_their_reported_gym_means():
    """(return - random) / (TD3 - random) with MR.Q's Appendix B.3 normalisers, applied to the committed
    per-task 1M means, gives the papers' aggregates: TD7 1.57 and MR.Q 1.46 (docs/facts.md)."""
    refs = {p: summarize.load_reference(os.path.join(summarize.ROOT, "results", "reference", f"{p}.csv"))
            for p in ("td7", "mrq")}
    gym = ["Ant-v4", "HalfCheetah-v4", "Hopper-v4", "Humanoid-v4", "Walker2d-v4"]
    norm = summarize.normalisers(refs["mrq"], gym)
    for algo, reported in (("td7", 1.57), ("mrq", 1.46)):
        means = {r["env"]: r["mean"] for r in refs[algo] if r["algo"] == algo and r["budget"] == 1_000_000
                 and r["statistic"] == "mean_at_budget" and r["env"] in gym}
        score = np.mean([(means[e] - norm[e][1]) / (norm[e][0] - norm[e][1]) for e in gym])
        assert round(score, 2) == reported, (algo, score)


# ---------------------------------------------------------------------------------------------
# Statistics and verdicts on data with known answers
# ---------------------------------------------------------------------------------------------
def test_statistics_on_hand_values():
    m = np.array([[0.0, 10.0, 4.0], [2.0, 6.0, 8.0]])  # 2 seeds x 3 evaluations
    assert summarize.STATISTICS["mean_at_budget"](m) == 6.0
    assert summarize.STATISTICS["max_of_mean_curve"](m) == 8.0  # mean curve [1, 8, 6]
    assert summarize.STATISTICS["mean_last_10_evals"](m) == 5.0
    m12 = np.arange(24.0).reshape(2, 12)
    assert summarize.STATISTICS["mean_last_10_evals"](m12) == np.mean(m12[:, 2:])
    # the same statistics on a stack of resamples
    stack = np.stack([m, m[::-1]])
    assert summarize.STATISTICS["max_of_mean_curve"](stack).tolist() == [8.0, 8.0]


def test_bootstrap_ci_matches_normal_theory_and_collapses_on_constants():
    mean, lo, hi = summarize.bootstrap_ci(np.full((5, 3), 7.0), summarize.STATISTICS["mean_at_budget"])
    assert (mean, lo, hi) == (7.0, 7.0, 7.0)
    x = np.random.default_rng(1).normal(100.0, 10.0, size=(200, 1))
    mean, lo, hi = summarize.bootstrap_ci(x, summarize.STATISTICS["mean_at_budget"])
    assert mean == pytest.approx(x.mean())
    half = 1.96 * x.std() / np.sqrt(len(x))  # the normal-theory 95% CI of a mean of 200 draws
    assert lo == pytest.approx(mean - half, rel=0, abs=0.15 * half)
    assert hi == pytest.approx(mean + half, rel=0, abs=0.15 * half)


def test_verdicts():
    ref = {"mean": 100.0, "spread": 10.0, "spread_kind": "std", "seeds": 4}  # CI 100 +- t(3) * 10 / 2
    assert summarize.reference_interval(ref) == pytest.approx((100 - 3.182446 * 5, 100 + 3.182446 * 5))
    assert summarize.t975(9) == pytest.approx(2.262157)
    assert summarize.verdict(115, 0, 0, ref) == "inside"
    assert summarize.verdict(116, 0, 0, ref) == "above"
    assert summarize.verdict(84, 0, 0, ref) == "below"
    assert summarize.verdict(84, 0, 0, {**ref, "source": "x, third-party"}) == "below (third-party sanity range)"
    ci = {"mean": 100.0, "spread": 5.0, "spread_kind": "ci95", "seeds": 10}
    assert summarize.verdict(106, 0, 0, ci) == "above"
    bare = {"mean": 100.0, "spread": None, "spread_kind": "", "seeds": 10}
    assert summarize.verdict(95, 90, 101, bare) == "reference inside our CI"
    assert summarize.verdict(95, 90, 99, bare) == "below"
    assert summarize.verdict(105, 101, 110, bare) == "above"
    assert summarize.verdict(80, 0, 0, ref, "v1 reference, v4 run") == \
        "not comparable (v1 reference, v4 run); would be: below"
    assert summarize.comparability("Hopper-v1", "Hopper-v4") == "v1 reference, v4 run"
    assert summarize.comparability("Hopper-v4", "Hopper-v4") is None


def test_summary_on_synthetic_runs(tmp_path):
    """Two algorithms on two envs with returns chosen so every statistic, CI, verdict and aggregate is known."""
    ref = tmp_path / "ref.csv"
    ref.write_text(REF_HEADER + "\n" + "\n".join([
        "t,td7,A-v4,400,mean_at_budget,30,1,std,4,src-a",  # ours 30 exactly: inside
        "t,td7,A-v1,400,max_of_mean_curve,10,,,,src-b",  # v1: not comparable, would be above
        "t,td7,B-v4,800,mean_at_budget,1,1,std,4,src-c",  # budget 800 never evaluated
        "t,nosuch,A-v4,400,mean_at_budget,1,1,std,4,src-d",  # there is no algos/nosuch.py
        "t,td7,gym-2,400,mean_pct_gain_over_td3,200,,,,src-e",
    ]) + "\n")
    body = ('algos = ["td7", "td3", "nosuch"]\nenvs = ["A-v4", "B-v4"]\nseeds = 3\nbudgets = [400]\neval_freq = 200\n'
            'eval_episodes = 10')
    agg = '[[aggregate]]\nname = "gain"\nalgo = "td7"\nbaseline = "td3"\nenvs = ["A-v4", "B-v4"]\nreference_env = "gym-2"\n'
    d = write_grid(tmp_path / "g", "t", body, agg, reference=str(ref))
    root = tmp_path / "runs"
    steps = [0, 200, 400]
    fake_run(root, "td7", "A-v4", [[0, 40, 30]] * 3, steps)  # every seed identical: CIs collapse
    fake_run(root, "td3", "A-v4", [[0, 5, 10]] * 3, steps)
    fake_run(root, "td7", "B-v4", [[0, 1, 20]] * 3, steps)
    fake_run(root, "td3", "B-v4", [[0, 1, 10]] * 3, steps)
    out = tmp_path / "out"
    rows = summarize.summarize(str(d), {"quick": str(root)}, str(out / "SUMMARY.md"), str(out / "summary.csv"),
                               str(out / "plots"))
    by_source = {r["reference_source"]: r for r in rows}
    assert (by_source["src-a"]["ours_mean"], by_source["src-a"]["ours_lo"], by_source["src-a"]["ours_hi"]) == (30, 30, 30)
    assert by_source["src-a"]["verdict"] == "inside" and by_source["src-a"]["seeds"] == 3
    assert by_source["src-b"]["ours_mean"] == 40  # max of the mean curve [0, 40, 30]
    assert by_source["src-b"]["verdict"] == "not comparable (v1 reference, v4 run); would be: above"
    assert by_source["src-c"]["ours_mean"] is None and "800 not reached" in by_source["src-c"]["verdict"]
    assert by_source["src-d"]["verdict"] == "no run: there is no algos/nosuch.py in this repo"
    assert "src-e" not in by_source  # aggregates are reported in their own table
    with open(out / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    provenance = json.loads((out / "summary.json").read_text())
    assert provenance["command"] == "python -m reproduce.summarize" and "matplotlib" in provenance["versions"]
    assert not {"git", "generated", "machine"} & set(provenance)  # nothing that changes with the clone or the day
    text = (out / "SUMMARY.md").read_text()
    assert "REDUCED grid" in text and "![t quick](plots/quick/t.png)" in text and (out / "plots/quick/t.png").exists()
    # aggregate: td7/td3 = 3 on A and 2 on B for every seed -> IQM = mean = 2.5, gain = 150% (reference 200: below)
    paper = grid.load_papers(str(d))[0]
    (a,) = summarize.aggregate_rows("quick", paper, paper.aggregates[0], summarize.load_reference(str(ref)),
                                    summarize.load_runs(str(root)))
    assert a["envs"] == ["A-v4", "B-v4"] and a["seeds"] == 3
    assert a["iqm"] == pytest.approx((2.5, 2.5, 2.5)) and a["mean"] == pytest.approx((2.5, 2.5, 2.5))
    assert a["gain"] == pytest.approx((150.0, 150.0, 150.0))
    assert a["verdict"] == "below"
    assert "| 400 | A-v4, B-v4 | 3 | 2.5 [2.5, 2.5] | 2.5 [2.5, 2.5] | 150.0 [150.0, 150.0] | 200.0 (src-e) | below |" in text


def test_summary_of_offline_runs(tmp_path):
    """Offline runs report their return and normalised score; a self-collected dataset is never
    compared, a D4RL copy is compared where the reference has a number; online and offline TD7 on
    the same env stay apart."""
    ref = tmp_path / "ref.csv"
    ref.write_text(REF_HEADER + "\n" + "\n".join([
        "t,td7,pend-d4rl,200,normalized_mean_at_budget,50,5,ci95,5,src-d4rl",  # ours 52: inside
        "t,td7,pend,200,mean_at_budget,1,1,std,4,src-self",  # a row for a collected dataset: never comparable
    ]) + "\n")
    datasets = ('[dataset]\npend = { env = "Pendulum-v1", recipe = "medium", source = "td7/Pendulum-v1", steps = 400 }\n'
                'pend-d4rl = { env = "Pendulum-v1", d4rl = "pend.hdf5" }\n')
    d = write_grid(tmp_path / "g", "on", 'algos = ["td7"]\nenvs = ["Pendulum-v1"]\nseeds = 2\nbudgets = [200]\n'
                   'eval_freq = 100\neval_episodes = 1', reference=str(ref))
    write_grid(d, "t", 'algos = ["td7"]\nenvs = ["pend", "pend-d4rl"]\nseeds = 2\nbudgets = [200]\neval_freq = 100\n'
               'eval_episodes = 1\nargs = ["--offline"]', datasets, reference=str(ref))
    root = tmp_path / "runs"
    steps = [0, 100, 200]
    fake_run(root, "td7", "Pendulum-v1", [[-500, -300, -200]] * 2, steps)
    fake_run(root, "td7", "pend", [[-900, -850, -800]] * 2, steps, normalized=[[0, 10, 20]] * 2, env_id="Pendulum-v1")
    fake_run(root, "td7", "pend-d4rl", [[-300, -200, -100]] * 2, steps, normalized=[[0, 40, 52]] * 2, env_id="Pendulum-v1")
    os.makedirs(root / "datasets" / "fujimoto-jax-quick")  # the collected datasets are no run
    runs = summarize.load_runs(str(root))
    assert set(runs) == {("td7", "Pendulum-v1"), ("td7", "pend"), ("td7", "pend-d4rl")}
    assert runs[("td7", "pend")].normalized.tolist() == [[0, 10, 20]] * 2 and runs[("td7", "Pendulum-v1")].normalized is None
    out = tmp_path / "out"
    rows = summarize.summarize(str(d), {"quick": str(root)}, str(out / "SUMMARY.md"), str(out / "summary.csv"),
                               str(out / "plots"))
    by_source = {r["reference_source"]: r for r in rows}
    assert by_source["src-d4rl"]["ours_mean"] == 52 and by_source["src-d4rl"]["verdict"] == "inside"
    assert by_source["src-self"]["verdict"] == "not comparable (self-collected dataset); would be: below"
    text = (out / "SUMMARY.md").read_text()
    assert "| td7 | pend | 200 | 2 | -800.0 [-800.0, -800.0] | -800.0 [-800.0, -800.0] | 20.0 [20.0, 20.0] | " \
           "not comparable (self-collected dataset) |" in text
    assert "| td7 | pend-d4rl | 200 | 2 | -100.0 [-100.0, -100.0] | -100.0 [-100.0, -100.0] | 52.0 [52.0, 52.0] | " \
           "compared above |" in text
    assert "| td7 | Pendulum-v1 | 200 | 2 | -200.0 [-200.0, -200.0] | -200.0 [-200.0, -200.0] |\n" in text
    assert "normalised score, mean at budget" in text and "D4RL file `pend.hdf5`" in text


def test_gain_ci_resamples_within_envs():
    rng = np.random.default_rng(0)
    algo = [rng.normal(200, 20, 10), rng.normal(50, 5, 10)]
    base = [np.full(10, 100.0), np.full(10, 50.0)]
    point, lo, hi = summarize.gain_ci(algo, base)
    assert point == pytest.approx(100 * ((algo[0].mean() / 100 + algo[1].mean() / 50) / 2 - 1))
    assert lo < point < hi and hi - lo < 30


def test_difference_ci_resamples_each_run_on_its_own():
    assert summarize.difference_ci(np.full(5, 3.0), np.full(7, 1.0)) == (2.0, 2.0, 2.0)
    rng = np.random.default_rng(2)
    a, b = rng.normal(50.0, 10.0, 400), rng.normal(20.0, 5.0, 100)
    point, lo, hi = summarize.difference_ci(a, b)
    assert point == pytest.approx(a.mean() - b.mean())
    half = 1.96 * np.sqrt(a.var() / len(a) + b.var() / len(b))  # normal theory for independent samples
    assert lo == pytest.approx(point - half, abs=0.15 * half) and hi == pytest.approx(point + half, abs=0.15 * half)


def test_head_to_head_of_two_algorithms_on_synthetic_runs(tmp_path):
    """An aggregate drq-vs-mrq gives, per env and budget both runs reached, each mean with its CI, the
    difference and its reading, and the difference of the two papers' reference means."""
    d = tmp_path / "g"
    ref_m, ref_d = tmp_path / "m.csv", tmp_path / "d.csv"
    ref_m.write_text(REF_HEADER + "\np1,mrq,A-v4,400,mean_at_budget,10,1,std,4,src-m\n")
    ref_d.write_text(REF_HEADER + "\np2,drq,A-v4,400,mean_at_budget,25,1,std,4,src-d\n")
    body = 'envs = ["A-v4", "B-v4", "C-v4"]\nseeds = 3\nbudgets = [200, 400]\neval_freq = 200\neval_episodes = 10'
    write_grid(d, "p1", 'algos = ["mrq"]\n' + body, reference=str(ref_m))
    write_grid(d, "p2", 'algos = ["drq", "mrq"]\n' + body, '[[aggregate]]\nname = "h2h"\nalgo = "drq"\n'
               'baseline = "mrq"\nenvs = ["A-v4", "B-v4", "C-v4"]\n', reference=str(ref_d))
    root = tmp_path / "runs"
    steps = [0, 200, 400]
    fake_run(root, "drq", "A-v4", [[0, 10, 30]] * 3, steps)  # identical seeds: every CI collapses
    fake_run(root, "mrq", "A-v4", [[0, 5, 10]] * 3, steps)
    fake_run(root, "drq", "B-v4", [[0, 1, 2], [0, 3, 4], [0, 5, 6]], steps)
    fake_run(root, "mrq", "B-v4", [[0, 10, 4]] * 3, steps)
    fake_run(root, "mrq", "C-v4", [[0, 1, 2]] * 3, steps)  # no DR.Q run: no row
    papers = {p.id: p for p in grid.load_papers(str(d))}
    refs = {pid: summarize.load_reference(str(path)) for pid, path in (("p1", ref_m), ("p2", ref_d))}
    paper = papers["p2"]
    rows = summarize.head_to_head_rows("quick", paper, paper.aggregates[0], refs, summarize.load_runs(str(root)))
    assert [(r["env"], r["budget"]) for r in rows] == [("A-v4", 200), ("A-v4", 400), ("B-v4", 200), ("B-v4", 400)]
    a200, a400, b200, b400 = rows
    assert (a400["algo"], a400["baseline"], a400["difference"]) == ((30, 30, 30), (10, 10, 10), (20, 20, 20))
    assert a400["reading"] == "higher" and a400["seeds"] == (3, 3)
    assert a400["reference_difference"] == (15.0, "p2", "p1")  # drq from p2's file, mrq from p1's
    assert a200["difference"] == (5, 5, 5) and a200["reference_difference"] is None  # no reference at 200
    assert b200["difference"][0] == pytest.approx(3 - 10) and b200["reading"] == "lower"
    assert b400["difference"][0] == pytest.approx(0) and b400["reading"] == "CI contains 0"
    assert b400["difference"][1] < 0 < b400["difference"][2]
    out = tmp_path / "out"
    summarize.summarize(str(d), {"quick": str(root)}, str(out / "SUMMARY.md"), str(out / "summary.csv"),
                        str(out / "plots"))
    text = (out / "SUMMARY.md").read_text()
    assert "Head to head, h2h: per env, mean at the budget of our drq and our mrq runs" in text
    assert "| A-v4 | 400 | 3 / 3 | 30.0 [30.0, 30.0] | 10.0 [10.0, 10.0] | 20.0 [20.0, 20.0] | higher | " \
           "15.0 (p2 − p1) |" in text
    assert "| A-v4 | 200 | 3 / 3 | 10.0 [10.0, 10.0] | 5.0 [5.0, 5.0] | 5.0 [5.0, 5.0] | higher | — |" in text
    assert "| C-v4 |" not in text.split("Head to head, h2h")[1].split("\n\n")[1]


def test_summary_compares_drq_with_our_mrq_at_both_scales(tmp_path):
    """With the repo's grids and references: DR.Q and MR.Q runs of the same env give the DR.Q-vs-MR.Q
    rows at the quick scale (one seed: no interval) and at the full scale (with the difference of the
    two papers' reference means at that budget)."""
    quick, full = tmp_path / "quick", tmp_path / "full"
    fake_run(quick, "drq", "Hopper-v4", [[10, 100, 200, 300]], [0, 5_000, 10_000, 15_000])
    fake_run(quick, "mrq", "Hopper-v4", [[10, 100, 150, 200]], [0, 5_000, 10_000, 15_000])
    fake_run(full, "drq", "HalfCheetah-v4", [[0, 5_000, 9_000], [0, 6_000, 10_000]], [0, 50_000, 100_000])
    fake_run(full, "mrq", "HalfCheetah-v4", [[0, 4_000, 7_000], [0, 5_000, 8_000]], [0, 50_000, 100_000])
    out = tmp_path / "out"
    summarize.summarize(roots={"quick": str(quick), "full": str(full)}, out_md=str(out / "SUMMARY.md"),
                        out_csv=str(out / "summary.csv"), plots_dir=str(out / "plots"))
    text = (out / "SUMMARY.md").read_text()
    quick_text, full_text = text.split("## Scale: quick")[1], text.split("## Scale: full")[1].split("## Scale:")[0]
    assert quick_text.count("Head to head, DR.Q vs MR.Q on Gym") == 1
    assert "| Hopper-v4 | 15k | 1 / 1 | 300.0 [300.0, 300.0] | 200.0 [200.0, 200.0] | 100.0 [100.0, 100.0] | " \
           "one seed: no interval | — |" in quick_text
    assert "| 15k | Hopper-v4 | 1 | 1.5 [1.5, 1.5] | 1.5 [1.5, 1.5] | 50.0 [50.0, 50.0] | — |" in quick_text
    ref = {(r["algo"], r["env"], r["budget"]): r["mean"] for p in ("drq", "mrq")
           for r in summarize.load_reference(os.path.join(grid.ROOT, "results", "reference", f"{p}.csv"))}
    expected = summarize.fmt(ref[("drq", "HalfCheetah-v4", 100_000)] - ref[("mrq", "HalfCheetah-v4", 100_000)])
    table = full_text.split("Head to head, DR.Q vs MR.Q on Gym")[1].split("\n\n")[1].splitlines()[2:]
    assert len(table) == 1  # one env, and budgets the runs did not reach have no row
    assert table[0].startswith("| HalfCheetah-v4 | 100k | 2 / 2 | 9500.0 [9000.0, 10000.0] | "
                               "7500.0 [7000.0, 8000.0] | 2000.0 [")
    assert table[0].endswith(f"| {expected} (drq − mrq) |")


# ---------------------------------------------------------------------------------------------
# Launcher: state on disk, commands, and real runs
# ---------------------------------------------------------------------------------------------
def test_run_states_and_commands(tmp_path):
    root = str(tmp_path)
    run = grid.Run("td3", "Hopper-v4", 400, 2, 200, 10, ("--learning-starts", "100"), ("p",))
    assert launch.run_state(run, root).kind == "todo"
    cmd = launch.command(run, root, launch.State("todo"))
    assert cmd[cmd.index("--num-seeds") + 1] == "2" and cmd[cmd.index("--total-timesteps") + 1] == "400"
    assert "--save-model" in cmd and cmd[-2:] == ["--learning-starts", "100"]
    run_dir = fake_run(root, "td3", "Hopper-v4", [[0, 1], [0, 1]], [0, 200], total=400, learning_starts=100)
    st = launch.run_state(run, root)
    assert (st.kind, st.step) == ("restart", 200)  # killed before its first checkpoint
    os.makedirs(os.path.join(run_dir, "checkpoint.old"))
    open(os.path.join(run_dir, "checkpoint.old", "meta.json"), "w").close()
    st = launch.run_state(run, root)
    assert (st.kind, st.step) == ("resume", 200)
    assert launch.command(run, root, st)[-2:] == ["--resume", run_dir]
    fake_run(root, "td3", "Hopper-v4", [[0, 1, 2], [0, 1, 2]], [0, 200, 400], total=400, learning_starts=100)
    assert launch.run_state(run, root).kind == "done"
    fake_run(root, "td3", "Hopper-v4", [[0, 1, 2]], [0, 200, 400], total=400, learning_starts=100)  # 1 seed on disk, grid wants 2
    st = launch.run_state(run, root)
    assert st.kind == "conflict" and "num_seeds 1 vs 2" in st.detail
    # a larger run (more seeds, more steps) serves a smaller grid once it passed the grid's budget
    fake_run(root, "td3", "Hopper-v4", [[0, 1, 2]] * 3, [0, 200, 400], total=800, learning_starts=100)
    assert launch.run_state(run, root).kind == "done"
    # ... but a run made with other flags is never taken for this grid's
    changed = grid.Run("td3", "Hopper-v4", 400, 2, 200, 10, ("--learning-starts", "500"), ("p",))
    assert launch.run_state(run, root).kind == "done"
    st = launch.run_state(changed, root)
    assert st.kind == "conflict" and "learning_starts 100 vs 500" in st.detail
    assert launch.parse_flags(("--learning-starts", "1000", "--no-checkpoints", "--tb")) == \
        {"learning_starts": "1000", "checkpoints": False, "tb": True}
    assert launch.run_state(grid.Run("nope", "Hopper-v4", 400, 2, 200, 10, (), ("p",)), root).kind == "unavailable"
    moved = launch.set_aside(run, root)
    assert not os.path.exists(run_dir) and os.path.exists(os.path.join(moved, "eval.csv"))


def test_dataset_states_unavailable_and_the_source_checkpoint(tmp_path):
    """A collected dataset waits for its source run, cannot be had from a source done without a
    checkpoint or outside the launch, and keeps the source's checkpoint until it is written; a
    missing D4RL file makes its runs unavailable."""
    d = str(offline_grid(tmp_path, online_algos='["td3"]'))
    root, d4rl_dir = str(tmp_path / "runs"), str(tmp_path / "d4rl")
    every = grid.expand(grid.load_papers(d), "quick")

    def plan(papers=None):
        return launch.plan(grid.expand(grid.load_papers(d, papers), "quick"), every, root, d4rl_dir)

    states, collects = plan()
    assert states["td3_bc/pend"].kind == "todo" and collects["pend"][1] == launch.State("wait", "after td3/Pendulum-v1")
    missing = os.path.join(d4rl_dir, "pend.hdf5")
    assert states["td7/pend-d4rl"] == launch.State("unavailable", f"needs {missing} (set --d4rl-dir / D4RL_DIR)")
    os.makedirs(d4rl_dir)
    open(missing, "w").close()
    assert plan()[0]["td7/pend-d4rl"].kind == "todo"
    # the source is done but its checkpoint is gone (a fresh clone): say what to do, do not crash
    src = fake_run(root, "td3", "Pendulum-v1", [[0, 1, 2]] * 2, [0, 200, 400], eval_freq=200, eval_episodes=1,
                   learning_starts=100)
    states, collects = plan()
    assert collects["pend"][1].kind == "unavailable" and states["td3_bc/pend"].kind == "unavailable"
    assert "td3/Pendulum-v1 is done but has no checkpoint" in states["td7/pend"].detail
    assert f"move {os.path.relpath(src, grid.ROOT)} away and launch again" in states["td7/pend"].detail
    os.makedirs(os.path.join(src, "checkpoint"))
    open(os.path.join(src, "checkpoint", "meta.json"), "w").close()
    states, collects = plan()
    assert collects["pend"][1].kind == "todo" and states["td3_bc/pend"].kind == "todo"
    assert launch.needed_sources(every, root) == {"td3/Pendulum-v1"}  # kept while the dataset is missing
    # a source outside this launch that is not done: nothing will make it
    os.remove(os.path.join(src, "eval.csv"))
    states, collects = plan(["off"])
    assert collects["pend"][1] == launch.State("unavailable", "needs td3/Pendulum-v1 run first (not in this launch)")
    # once written (envs.collect's facts in metadata.json), the dataset needs its source no more
    ds = next(r.dataset for r in every if r.name == "td7/pend")
    meta = os.path.join(launch.minari_dir(ds, root), "data", "metadata.json")
    os.makedirs(os.path.dirname(meta))
    with open(meta, "w") as f:
        json.dump({"fujimoto_jax": "{}"}, f)
    assert launch.is_collected(ds, root) and launch.needed_sources(every, root) == set()
    assert plan()[1]["pend"][1].kind == "done"
    out = io.StringIO()
    result = launch.launch("quick", root, d, dry_run=True, out=out, d4rl_dir=d4rl_dir)
    assert result["collect:pend"] == "done" and "collect pend" in out.getvalue()


def test_launcher_collects_a_dataset_after_its_source_then_trains_on_it(tmp_path):
    """Real tiny runs: TD3 on Pendulum, then envs.collect from its kept checkpoint into <root>/datasets,
    then TD3+BC on the dataset; the checkpoint is dropped once the dataset is written."""
    d = str(offline_grid(tmp_path, '["pend"]', online_algos='["td3"]'))
    (tmp_path / "g" / "off7.toml").unlink()
    root = str(tmp_path / "runs")
    out = io.StringIO()
    result = launch.launch("quick", root, d, poll_s=0.2, out=out)
    log = out.getvalue()
    assert result == {"td3/Pendulum-v1": "done", "collect:pend": "done", "td3_bc/pend": "done"}, log
    assert log.index("done  td3/Pendulum-v1") < log.index("start collect:pend") < log.index("done  collect:pend") \
        < log.index("start td3_bc/pend")
    assert not launch.has_checkpoint(os.path.join(root, "td3", "Pendulum-v1"))
    assert os.path.exists(os.path.join(root, "logs", "collect__pend.log"))
    # the collected dataset's facts, copied into the committed datasets.json when the collection completed
    recorded = json.loads(open_text(root, "datasets.json"))["datasets"]
    entry = recorded["datasets/fujimoto-jax-quick/pendulum/pend-v0/data/metadata.json"]
    assert entry["dataset"] == "pend" and entry["facts"]["policies"][0]["algo"] == "td3"
    args = json.loads(open_text(root, "td3_bc", "pend", "config.json"))["args"]
    assert (args["dataset"], args["env_id"]) == ("minari:fujimoto-jax-quick/pendulum/pend-v0", "Pendulum-v1")
    with open(os.path.join(root, "td3_bc", "pend", "eval.csv")) as f:
        assert {(int(r["seed"]), int(r["step"])) for r in csv.DictReader(f)} == {(s, t) for s in (0, 1) for t in (0, 100, 200)}


def test_a_failed_collection_makes_its_runs_unavailable(tmp_path):
    """envs.collect fails on a broken checkpoint: reported with its log, the runs on the dataset are
    unavailable, the source keeps its checkpoint (the dataset is still missing), the launch exits 1."""
    d = str(offline_grid(tmp_path, '["pend"]', online_algos='["td3"]'))
    (tmp_path / "g" / "off7.toml").unlink()
    root = str(tmp_path / "runs")
    src = fake_run(root, "td3", "Pendulum-v1", [[0, 1, 2]] * 2, [0, 200, 400], eval_freq=200, eval_episodes=1,
                   learning_starts=100)
    os.makedirs(os.path.join(src, "checkpoint"))
    with open(os.path.join(src, "checkpoint", "meta.json"), "w") as f:
        f.write("{}")
    out = io.StringIO()
    result = launch.launch("quick", root, d, poll_s=0.2, out=out)
    log = out.getvalue()
    assert result == {"td3/Pendulum-v1": "done", "collect:pend": "failed", "td3_bc/pend": "unavailable"}, log
    assert "FAILED collect:pend" in log and "collect__pend.log" in log
    assert "UNAVAILABLE: td3_bc/pend: dataset pend was not collected (failed: see " in log
    assert launch.has_checkpoint(src)
    assert launch.main(["--scale", "quick", "--grid-dir", d, "--root", root, "--no-summary"]) == 1


def test_progress_counts_work_and_eta():
    a = grid.Run("td3", "A-v4", 1000, 2, 100, 1, (), ("p",), cost=1.0)
    b = grid.Run("td7", "A-v4", 1000, 2, 100, 1, (), ("p",), cost=3.0)  # 3x the work of a
    p = launch.Progress([a, b], {"td3/A-v4": 10 ** 12, "td7/A-v4": 0}, window_s=100)  # a already done
    assert "1/2 runs done" in p.line(1, [], 0, 2) and "25% of the work" in p.line(1, [], 0, 2)
    assert "ETA ?" in p.line(1, [], 0, 2)  # nothing gained in this session yet
    t = time.time()
    p.samples = [(t - 300, 0.0), (t - 120, 2000.0)]  # a fast phase long ago would not count...
    p.update("td7/A-v4", 500)  # ... only the last 120 s, in which half of b was done: ETA 120 s
    line = p.line(1, ["td7/A-v4"], 0, 2)
    assert "62% of the work" in line and "running: td7/A-v4 500/1,000" in line
    assert any(f"ETA {e}" in line for e in ("2m00s", "1m59s", "2m01s")), line


def test_launcher_runs_a_tiny_grid_reports_failures_and_skips_completed(tmp_path):
    """Smoke run: TD3 on Pendulum (2 seeds, 400 steps) completes; a bad env id fails and is reported
    without stopping the grid; a second launch skips the completed run and retries the failed one."""
    d = write_grid(tmp_path / "g", "t", 'algos = ["td3"]\nenvs = ["Pendulum-v1", "Nope-v0"]\nseeds = 2\n'
                   'budgets = [400]\neval_freq = 200\neval_episodes = 1\nargs = ["--learning-starts", "100"]')
    root = str(tmp_path / "runs")
    out = io.StringIO()
    result = launch.launch("quick", root, str(d), jobs=2, poll_s=0.2, out=out)
    assert result == {"td3/Pendulum-v1": "done", "td3/Nope-v0": "failed"}, out.getvalue()
    log = out.getvalue()
    assert "FAILED td3/Nope-v0" in log and "Unknown env id 'Nope-v0'" in log
    assert "[grid] finished: done 1, failed 1" in log
    run_dir = os.path.join(root, "td3", "Pendulum-v1")
    with open(os.path.join(run_dir, "eval.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted((int(r["seed"]), int(r["step"])) for r in rows) == [(s, t) for s in (0, 1) for t in (0, 200, 400)]
    assert not any(n.startswith("checkpoint") for n in os.listdir(run_dir))  # dropped once complete
    assert json.loads(open_text(root, "launches.json"))[0]["scale"] == "quick"
    out2 = io.StringIO()
    result = launch.launch("quick", root, str(d), jobs=1, poll_s=0.2, out=out2)
    assert result["td3/Pendulum-v1"] == "done" and result["td3/Nope-v0"] == "failed"
    assert "start td3/Pendulum-v1" not in out2.getvalue() and "start td3/Nope-v0" in out2.getvalue()
    assert launch.main(["--scale", "quick", "--grid-dir", str(d), "--root", root, "--no-summary",
                        "--envs", "Pendulum-v1"]) == 0


def test_launcher_resumes_a_killed_run(tmp_path):
    """A run killed after its first checkpoint is resumed, not restarted: every (seed, step) row
    appears once and config.json records the resume."""
    d = write_grid(tmp_path / "g", "t", 'algos = ["td3"]\nenvs = ["Pendulum-v1"]\nseeds = 2\nbudgets = [1000]\n'
                   'eval_freq = 200\neval_episodes = 1\nargs = ["--learning-starts", "100"]')
    root = str(tmp_path / "runs")
    (run,) = grid.expand(grid.load_papers(str(d)), "quick")
    env = {**os.environ, "PYTHONPATH": grid.ROOT}
    proc = subprocess.Popen(launch.command(run, root, launch.State("todo")), cwd=grid.ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = run.run_dir(root)
    deadline = time.time() + 120
    while not launch.has_checkpoint(run_dir) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = launch.run_state(run, root)
    assert state.kind == "resume" and 200 <= state.step < 1000, state
    out = io.StringIO()
    assert launch.launch("quick", root, str(d), poll_s=0.2, out=out) == {"td3/Pendulum-v1": "done"}
    assert "start td3/Pendulum-v1 (resume from its last checkpoint" in out.getvalue()
    with open(os.path.join(run_dir, "eval.csv")) as f:
        keys = [(int(r["seed"]), int(r["step"])) for r in csv.DictReader(f)]
    assert sorted(keys) == [(s, t) for s in (0, 1) for t in range(0, 1001, 200)]
    assert len(json.loads(open_text(run_dir, "config.json"))["resumed"]) == 1


def test_launcher_cli_errors(tmp_path, capsys):
    assert launch.main(["--scale", "quick", "--grid-dir", str(tmp_path)]) == 2
    assert "no grid files" in capsys.readouterr().err
    d = write_grid(tmp_path / "g")
    assert launch.main(["--scale", "quick", "--grid-dir", str(d), "--algos", "zzz", "--root", str(tmp_path)]) == 2
    assert "expands to no run" in capsys.readouterr().err


def test_one_launcher_per_results_folder(tmp_path):
    (tmp_path / ".launcher.pid").write_text(str(os.getppid()))  # a live process
    with pytest.raises(ValueError, match="another launcher"):
        launch._acquire_lock(str(tmp_path))
    (tmp_path / ".launcher.pid").write_text("999999999")  # gone: a stale lock is taken over
    assert (tmp_path / ".launcher.pid").exists() and launch._acquire_lock(str(tmp_path))
    assert (tmp_path / ".launcher.pid").read_text() == str(os.getpid())


def test_an_off_policy_evaluation_run_keeps_its_policy_checkpoint(monkeypatch, tmp_path):
    """sr_dice loads its dataset's source policy: the source's checkpoint stays after the collection, until the
    sr_dice run is done; its completion frees it (a td3_bc run on the same dataset frees only itself)."""
    ds = grid.Dataset("pend", "Pendulum-v1", recipe="sr-dice", source="td3/Pendulum-v1", steps=100, scale="quick")
    ope = grid.Run("sr_dice", "pend", 100, 2, 50, 5, (), ("p",), dataset=ds)
    bc = grid.Run("td3_bc", "pend", 100, 2, 50, 5, (), ("p",), dataset=ds)
    root = str(tmp_path)
    assert launch.needed_sources([ope, bc], root) == {"td3/Pendulum-v1"}  # not collected yet
    monkeypatch.setattr(launch, "is_collected", lambda d, r: True)
    assert launch.needed_sources([bc], root) == set()
    assert launch.needed_sources([ope, bc], root) == {"td3/Pendulum-v1"}  # collected, sr_dice not done
    monkeypatch.setattr(launch, "run_state", lambda r, root_: launch.State("done"))
    assert launch.needed_sources([ope, bc], root) == set()
    assert launch.freed_by(ope) == ["sr_dice/pend", "td3/Pendulum-v1"] and launch.freed_by(bc) == ["td3_bc/pend"]
    assert launch.freed_by(ds) == ["td3/Pendulum-v1"]


def test_imitation_runs_read_their_dataset_through_their_flag_and_face_the_baseline_on_its_env(tmp_path):
    """td3_ot learns online from expert states: its run on a dataset passes --expert-dataset (not --dataset),
    the dataset's collection passes --noise 0 (a deterministic expert), and the head-to-head table compares it
    with td3's run of the dataset's env (baseline_envs); ratio = false drops the normalised table."""
    datasets = ('[dataset]\npend-expert = { env = "Pendulum-v1", recipe = "expert", source = "td3/Pendulum-v1", '
                'steps = 400, noise = 0.0 }\n')
    d = write_grid(tmp_path / "g", "on", 'algos = ["td3"]\nenvs = ["Pendulum-v1"]\nseeds = 2\nbudgets = [400]\n'
                   'eval_freq = 200\neval_episodes = 1\nargs = ["--learning-starts", "100"]')
    write_grid(d, "ot", 'algos = ["td3_ot"]\nenvs = ["pend-expert"]\nseeds = 2\nbudgets = [400]\neval_freq = 200\n'
               'eval_episodes = 1\nargs = ["--learning-starts", "100"]',
               datasets + '[[aggregate]]\nname = "ot"\nalgo = "td3_ot"\nbaseline = "td3"\nenvs = ["pend-expert"]\n'
               'baseline_envs = { pend-expert = "Pendulum-v1" }\nratio = false\n')
    papers = grid.load_papers(str(d))
    runs = {r.name: r for r in grid.expand(papers, "quick")}
    root = str(tmp_path / "runs")
    ot = runs["td3_ot/pend-expert"]
    cmd = launch.command(ot, root, launch.State("todo"))
    assert cmd[cmd.index("--expert-dataset") + 1] == f"minari:{ot.dataset.minari_id}" and "--dataset" not in cmd
    assert cmd[cmd.index("--env-id") + 1] == "Pendulum-v1"
    collect = launch.collect_command(ot.dataset, root)
    assert collect[collect.index("--noise") + 1] == "0.0" and collect[collect.index("--recipe") + 1] == "expert"
    td3 = launch.command(runs["td3/Pendulum-v1"], root, launch.State("todo"))
    assert "--expert-dataset" not in td3 and "--dataset" not in td3

    fake_run(root, "td3_ot", "pend-expert", [[-1200, -400, -200]] * 2, [0, 200, 400], env_id="Pendulum-v1",
             eval_episodes=1, learning_starts=100, expert_dataset=f"minari:{ot.dataset.minari_id}")
    assert launch.run_state(ot, root).kind == "done"  # its config.json names the data expert_dataset
    fake_run(root, "td3", "Pendulum-v1", [[-1200, -900, -700]] * 2, [0, 200, 400])
    paper = next(p for p in papers if p.id == "ot")
    rows = summarize.head_to_head_rows("quick", paper, paper.aggregates[0], {}, summarize.load_runs(root))
    assert [(r["env"], r["budget"], r["difference"]) for r in rows] == [("pend-expert", 400, (500, 500, 500))]
    out = tmp_path / "out"
    summarize.summarize(str(d), {"quick": root}, str(out / "SUMMARY.md"), str(out / "summary.csv"), str(out / "plots"))
    text = (out / "SUMMARY.md").read_text()
    assert "| pend-expert (vs td3 on Pendulum-v1) | 400 | 2 / 2 | -200.0 [-200.0, -200.0] | " \
           "-700.0 [-700.0, -700.0] | 500.0 [500.0, 500.0] | higher | — |" in text
    assert "Aggregate, ot: td3_ot normalised by td3" not in text


@pytest.mark.parametrize("extra, match", [
    ('[[aggregate]]\nname = "a"\nalgo = "td3"\nbaseline = "td3"\nenvs = ["Pendulum-v1"]\nbaseline_env = {}\n',
     r"\[\[aggregate\]\] unknown keys \['baseline_env'\]"),
    ('[[aggregate]]\nname = "a"\nalgo = "td3"\nbaseline = "td3"\nenvs = ["Pendulum-v1"]\n'
     'baseline_envs = { Hopper-v4 = "Pendulum-v1" }\n', r"baseline_envs names envs outside its envs: \['Hopper-v4'\]"),
])
def test_bad_aggregate_tables_name_the_problem(tmp_path, extra, match):
    d = write_grid(tmp_path / "g", "bad", None, extra)
    with pytest.raises(ValueError, match=match):
        grid.load_papers(str(d))
