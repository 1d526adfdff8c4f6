"""make reproduce for DriftQL and OGBench: reproduce/grids/driftql.toml, the OGBench datasets in the grid machinery
(one generated file per env, shared by its tasks and by every algorithm), per-algorithm flags, per-env budgets,
results/reference/driftql.csv, and the summary's success-rate statistics and labels."""

import csv
import io
import json
import os

import numpy as np
import pytest

from reproduce import grid, launch, summarize

REF_HEADER = ",".join(summarize.REFERENCE_HEADER)
DRIFTQL = os.path.join(grid.GRID_DIR, "driftql.toml")
OG_ENVS = ("cube-single-play", "cube-double-play", "scene-play", "puzzle-3x3-play", "puzzle-4x4-play")
D4RL = [f"{e}-{d}" for e in ("halfcheetah", "hopper", "walker2d") for d in ("medium", "medium-replay", "medium-expert")]
QUICK = "cube-single-play-task2-quick"


def write_grid(folder, name, body, extra="", reference=None):
    folder.mkdir(exist_ok=True)
    reference = reference or str(folder / "ref.csv")
    if not os.path.exists(reference):
        with open(reference, "w") as f:
            f.write(REF_HEADER + "\n")
    (folder / f"{name}.toml").write_text(f'[paper]\nid = "{name}"\ntitle = "{name}"\nreference = "{reference}"\n'
                                         f'[scale.quick]\n{body}\n{extra}')
    return folder


def fake_run(root, algo, env, returns, steps, success=None, normalized=None, env_id="x", **args):
    """A run folder as the offline files write it: returns / success fractions / normalised scores are (seeds, evals)."""
    run_dir = os.path.join(root, algo, env)
    os.makedirs(run_dir, exist_ok=True)
    n = len(returns)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump({"algo": algo, "args": {"env_id": env_id, "seed": 0, "num_seeds": n, "total_timesteps": steps[-1],
                                          "eval_freq": steps[1] - steps[0], **args},
                   "command": f"python algos/{algo}.py", "versions": {}, "git": {}, "machine": {}}, f)
    with open(os.path.join(run_dir, "eval.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["algo", "env", "seed", "step", "return", "time_s"] + (["normalized_score"] if normalized else [])
                   + (["success"] if success else []))
        for t, step in enumerate(steps):
            for s in range(n):
                w.writerow([algo, env, s, step, returns[s][t], 1.0] + ([normalized[s][t]] if normalized else [])
                           + ([success[s][t]] if success else []))
    return run_dir


# ---------------------------------------------------------------------------------------------
# The repo's grid
# ---------------------------------------------------------------------------------------------
def test_driftql_full_grid_follows_the_papers_protocol():
    """25 OGBench manipulation tasks (1M updates) and 9 D4RL locomotion stand-ins (500k), 8 seeds, evaluation
    every 100k with 50 episodes; five generated files, one per env, shared by its five tasks."""
    papers = grid.load_papers()
    paper = grid.load_paper(DRIFTQL)
    full = {r.name: r for r in grid.expand(papers, "full")}
    og = [f"{e}-singletask-task{k}-v0" for e in OG_ENVS for k in range(1, 6)]
    d4 = [f"{d}-td3" for d in D4RL]
    assert paper.scales["full"].envs == tuple(og + d4) and paper.scales["full"].algos == ("driftql",)
    for env in og + d4:
        r = full[f"driftql/{env}"]
        assert (r.seeds, r.eval_freq, r.eval_episodes) == (8, 100_000, 50), env
        assert r.steps == (1_000_000 if env in og else 500_000), env
    for env in og:
        r = full[f"driftql/{env}"]
        assert r.env_id == f"ogbench:{env}" and r.dataset.episodes == 1_000 and r.dataset.recipe == "ogbench-play"
        assert r.args == ("--preset", env.split("-singletask")[0])  # the row of its env, tuned on the default task
    # five files: the tasks of an env share one collection, named by the file and made with the env's task1 id
    collections = {full[f"driftql/{env}"].dataset.collection for env in og}
    assert sorted(c.name for c in collections) == sorted(f"ogbench-{e}-v0" for e in OG_ENVS)
    assert {c.env for c in collections} == {f"ogbench:{e}-singletask-task1-v0" for e in OG_ENVS}
    # D4RL rows: our own recipes from a 100k-step TD3 run (medium, its replay buffer) and td3.toml's full TD3 (expert)
    for name in D4RL:
        env, kind = name.split("-", 1)
        gym_id = {"halfcheetah": "HalfCheetah-v4", "hopper": "Hopper-v4", "walker2d": "Walker2d-v4"}[env]
        r = full[f"driftql/{name}-td3"]
        ds = r.dataset
        assert (ds.env, ds.recipe, ds.reference, r.args) == (gym_id, kind, f"{name}-v2", ("--preset", name))
        medium = f"td3/{gym_id}+{env}-medium-td3"
        assert ds.sources == ((medium,) if kind != "medium-expert" else (medium, f"td3/{gym_id}"))
        assert ds.steps == (0 if kind == "medium-replay" else 1_000_000)
        src = full[medium]
        assert (src.steps, src.seeds, src.eval_freq, src.args, src.dataset) == (100_000, 8, 100_000, (), None)
        assert full[f"td3/{gym_id}"].steps >= 1_000_000  # the expert: td3.toml's (and td7.toml's) full run
    assert {n for n in full if n.startswith("driftql/")} == {f"driftql/{e}" for e in og + d4}


def test_driftql_quick_grid():
    """100 generated episodes of cube-single task2; DriftQL, TD3+BC and offline TD7 on that one file, 3 seeds, a
    reduced budget with at least 3 evaluations (the last-3 rule) and 10 evaluation episodes; td7 alone gets
    --offline, DriftQL alone its preset."""
    quick = {r.name: r for r in grid.expand(grid.load_papers(), "quick") if r.env == QUICK}
    assert set(quick) == {f"{a}/{QUICK}" for a in ("driftql", "td3_bc", "td7")}
    for r in quick.values():
        assert (r.seeds, r.steps, r.eval_freq, r.eval_episodes) == (3, 750, 250, 10)
        assert r.env_id == "ogbench:cube-single-play-singletask-task2-v0"
        assert (r.dataset.episodes, r.dataset.reference) == (100, "cube-single-play-singletask-task2-v0")
        assert r.steps // r.eval_freq >= 3
    note = grid.load_paper(DRIFTQL).scales["quick"].note
    assert "REDUCED" in note and "750 updates instead of 1M" in note and "10 evaluation episodes instead of 50" in note
    assert quick[f"td7/{QUICK}"].steps % 250 == 0 and quick[f"td7/{QUICK}"].eval_freq % 250 == 0  # TD7's target period
    assert quick[f"td7/{QUICK}"].args == ("--offline",)
    assert quick[f"driftql/{QUICK}"].args == ("--preset", "cube-single-play")
    assert quick[f"td3_bc/{QUICK}"].args == ()


def test_quick_grid_commands(tmp_path):
    """The launcher writes the file once (collect with the env's task1 id and --out under the root's datasets/ogbench)
    and every run reads it by path, evaluating on its own task."""
    root = str(tmp_path / "runs")
    runs = {r.algo: r for r in grid.expand(grid.load_papers(), "quick") if r.env == QUICK}
    path = os.path.join(root, "datasets", "ogbench", "cube-single-play-v0.npz")
    coll = runs["driftql"].dataset.collection
    assert launch.collect_command(coll, root)[1:] == [
        "-m", "envs.collect", "--recipe", "ogbench-play", "--env-id", "ogbench:cube-single-play-singletask-task1-v0",
        "--episodes", "100", "--seed", "0", "--out", path]
    for algo, extra in (("driftql", ["--preset", "cube-single-play"]), ("td3_bc", []), ("td7", ["--offline"])):
        cmd = launch.command(runs[algo], root, launch.State("todo"))
        assert cmd[1] == os.path.join(grid.ROOT, "algos", f"{algo}.py")
        assert cmd[2:] == ["--dataset", f"ogbench:{path}", "--env-id", "ogbench:cube-single-play-singletask-task2-v0",
                           "--num-seeds", "3", "--total-timesteps", "750", "--eval-freq", "250", "--eval-episodes", "10",
                           "--save-model", "--results-dir", os.path.join(root, algo), "--run-name", QUICK, *extra]
        env = launch.process_env(root, runs[algo].dataset)
        assert env.get("MINARI_DATASETS_PATH") == os.environ.get("MINARI_DATASETS_PATH")  # a path, not a Minari root
    # the dry run: one collection for the three runs, which wait for it
    out = io.StringIO()
    result = launch.launch("quick", root, papers=["driftql"], dry_run=True, out=out)
    assert result == {**{f"{a}/{QUICK}": "todo" for a in ("driftql", "td3_bc", "td7")},
                      "collect:ogbench-cube-single-play-v0": "todo"}
    text = out.getvalue()
    assert text.count("after collect ogbench-cube-single-play-v0") == 3
    assert f"100 episodes of OGBench's oracle -> ogbench:{path}" in text


def test_grid_flags_are_driftqls():
    """Every preset the grid names is a row of algos/driftql.py's PRESETS, the one --preset auto would pick from
    the OGBench task (the D4RL stand-ins need the explicit row: a self-collected dataset's name has none)."""
    driftql = pytest.importorskip("algos.driftql")
    runs = [r for s in ("full", "quick") for r in grid.expand(grid.load_papers(), s) if r.algo == "driftql"]
    assert len(runs) == 35
    root = "/r"
    for r in runs:
        flags = launch.parse_flags(r.args)
        assert set(flags) == {"preset"} and flags["preset"] in driftql.PRESETS, r.name
        spec = launch.dataset_spec(r.dataset, root=root)
        auto = driftql.preset_key(spec, r.env_id)
        assert auto == (flags["preset"] if r.dataset.ogbench else None), r.name


# ---------------------------------------------------------------------------------------------
# Grid machinery: OGBench tables, per-algo flags, per-env budgets, own medium source runs
# ---------------------------------------------------------------------------------------------
OG_TABLES = ('[dataset]\nt1 = { env = "ogbench:cube-single-play-singletask-task1-v0", recipe = "ogbench-play", '
             'episodes = 4 }\nt3 = { env = "ogbench:cube-single-play-singletask-task3-v0", recipe = "ogbench-play", '
             'episodes = 4 }\n')


def test_ogbench_tasks_share_one_collection(tmp_path):
    d = write_grid(tmp_path / "g", "og", 'algos = ["driftql", "td7"]\nenvs = ["t1", "t3"]\nseeds = 2\nbudgets = [500]\n'
                   'eval_freq = 250\neval_episodes = 1\n[scale.quick.algo_args]\ntd7 = ["--offline"]\n'
                   '[scale.quick.algo_env_args.driftql]\nt3 = ["--alpha", "5"]', OG_TABLES)
    runs = {r.name: r for r in grid.expand(grid.load_papers(str(d)), "quick")}
    assert runs["td7/t1"].args == ("--offline",) and runs["driftql/t1"].args == ()
    assert runs["driftql/t3"].args == ("--alpha", "5") and runs["td7/t3"].args == ("--offline",)
    assert runs["td7/t3"].env_id == "ogbench:cube-single-play-singletask-task3-v0"
    root = str(tmp_path / "runs")
    states, collects = launch.plan(list(runs.values()), list(runs.values()), root, "")
    assert list(collects) == ["ogbench-cube-single-play-v0"] and collects["ogbench-cube-single-play-v0"][1].kind == "todo"
    # collected: both files there (envs.collect renames each into place whole); a lone train file is not
    ds = runs["td7/t3"].dataset
    train, val = launch.ogbench_paths(ds, root)
    assert (train, val) == (os.path.join(root, "datasets", "ogbench", "cube-single-play-v0.npz"),
                            os.path.join(root, "datasets", "ogbench", "cube-single-play-v0-val.npz"))
    os.makedirs(os.path.dirname(train))
    open(train, "w").close()
    assert not launch.is_collected(ds, root)
    said = []
    launch.prepare(ds.collection, root, "", said.append)  # a killed collection's file goes before it starts again
    assert not os.path.exists(train) and "removed the incomplete dataset file" in said[0]
    open(train, "w").close()
    open(val, "w").close()
    assert launch.is_collected(ds, root) and launch.is_collected(runs["driftql/t1"].dataset, root)
    assert launch.plan(list(runs.values()), list(runs.values()), root, "")[1]["ogbench-cube-single-play-v0"][1].kind \
        == "done"
    # a run on disk is the grid's wherever its root was, but not on another file
    fake_run(root, "td7", "t3", [[0, 0, 0]] * 2, [0, 250, 500], eval_episodes=1, offline=True,
             env_id="ogbench:cube-single-play-singletask-task3-v0", dataset="ogbench:/moved/cube-single-play-v0.npz")
    assert launch.run_state(runs["td7/t3"], root).kind == "done"
    fake_run(root, "td7", "t3", [[0, 0, 0]] * 2, [0, 250, 500], eval_episodes=1, offline=True,
             env_id="ogbench:cube-single-play-singletask-task3-v0", dataset="ogbench:/moved/scene-play-v0.npz")
    st = launch.run_state(runs["td7/t3"], root)
    assert st.kind == "conflict" and "dataset ogbench:/moved/scene-play-v0.npz vs ogbench:" in st.detail


def test_a_scale_defines_each_ogbench_file_once(tmp_path):
    """Two tables of one env at one scale must describe the same file; the quick and full scales write their own."""
    tables = OG_TABLES.replace('task3-v0", recipe = "ogbench-play", episodes = 4', 'task3-v0", recipe = '
                               '"ogbench-play", episodes = 5')
    d = write_grid(tmp_path / "g", "og", 'algos = ["td7"]\nenvs = ["t1", "t3"]\nseeds = 1\nbudgets = [250]\n'
                   'eval_freq = 250\neval_episodes = 1', tables)
    with pytest.raises(ValueError, match=r"\[dataset.t3\] and \[dataset.t1\] .* read the same OGBench file "
                                         r"cube-single-play-v0.npz at scale 'quick'"):
        grid.load_papers(str(d))
    (d / "og.toml").write_text((d / "og.toml").read_text().replace('envs = ["t1", "t3"]', 'envs = ["t1"]')
                               + '[scale.full]\nalgos = ["td7"]\nenvs = ["t3"]\nseeds = 1\nbudgets = [250]\n'
                                 'eval_freq = 250\neval_episodes = 1\n')
    assert {r.dataset.episodes for s in ("quick", "full") for r in grid.expand(grid.load_papers(str(d)), s)} == {4, 5}


@pytest.mark.parametrize("table,match", [
    ('{ env = "ogbench:cube-single-noisy-singletask-task1-v0", recipe = "ogbench-play", episodes = 4 }',
     "recipe ogbench-play makes play data; .* is a noisy task"),
    ('{ env = "ogbench:cube-single-play-singletask-task1-v0", recipe = "ogbench-play" }', "needs episodes >= 1"),
    ('{ env = "ogbench:cube-single-play-singletask-task1-v0", recipe = "ogbench-play", episodes = 4, steps = 9 }',
     r"no \['steps'\]"),
    ('{ env = "ogbench:antmaze-large-navigate-singletask-task1-v0", recipe = "ogbench-play", episodes = 4 }',
     "need OGBench's expert policies"),
    ('{ env = "ogbench:cube-single-play-singletask-v0", recipe = "ogbench-play", episodes = 4 }',
     "must be the explicit single-task id 'ogbench:cube-single-play-singletask-task2-v0'"),
    ('{ env = "cube-single-play-singletask-task1-v0", recipe = "ogbench-play", episodes = 4 }',
     "must be the explicit single-task id"),
    ('{ env = "Pendulum-v1", recipe = "random", steps = 4, episodes = 2 }', "'episodes' belongs to the OGBench"),
    ('{ env = "Pendulum-v1", d4rl = "p.hdf5", episodes = 2 }', "describe a collection"),
])
def test_bad_ogbench_tables_name_the_problem(tmp_path, table, match):
    d = write_grid(tmp_path / "g", "og", 'algos = ["td7"]\nenvs = ["t"]\nseeds = 1\nbudgets = [250]\neval_freq = 250\n'
                   'eval_episodes = 1', f"[dataset]\nt = {table}\n")
    with pytest.raises(ValueError, match=match):
        grid.load_papers(str(d))


@pytest.mark.parametrize("extra,match", [
    ('[scale.quick.algo_args]\ntd3 = ["--x"]', r"algo_args\] names algos outside the grid: \['td3'\]"),
    ('[scale.quick.algo_env_args.td7]\nt9 = ["--x"]', r"algo_env_args.td7\] names envs outside the grid: \['t9'\]"),
    ('[scale.quick.env_budgets]\nt1 = [300]', r"multiple of eval_freq=250, .*\(env_budgets.t1\)"),
    ('[scale.quick.env_budgets]\nt9 = [250]', r"env_budgets\] names envs outside the grid: \['t9'\]"),
])
def test_bad_scale_flags_name_the_problem(tmp_path, extra, match):
    d = write_grid(tmp_path / "g", "og", 'algos = ["td7"]\nenvs = ["t1"]\nseeds = 1\nbudgets = [500]\neval_freq = 250\n'
                   'eval_episodes = 1\n' + extra, OG_TABLES)
    with pytest.raises(ValueError, match=match):
        grid.load_papers(str(d))


def test_env_budgets_and_a_shared_medium_source_run(tmp_path):
    """A medium dataset's own source run has source_steps; the replay and medium-expert datasets name it as their
    source (one run, kept until all three are written); env_budgets shortens one dataset's runs."""
    datasets = ('[dataset]\nmed = { env = "Pendulum-v1", recipe = "medium", source = "td3/Pendulum-v1", '
                'source_steps = 200, steps = 50 }\nrep = { env = "Pendulum-v1", recipe = "medium-replay", '
                'source = "td3/Pendulum-v1+med" }\nme = { env = "Pendulum-v1", recipe = "medium-expert", '
                'source = "td3/Pendulum-v1+med", source2 = "td3/Pendulum-v1", steps = 50 }\n')
    d = write_grid(tmp_path / "g", "on", 'algos = ["td3"]\nenvs = ["Pendulum-v1"]\nseeds = 2\nbudgets = [400]\n'
                   'eval_freq = 200\neval_episodes = 1')
    write_grid(d, "off", 'algos = ["td3_bc"]\nenvs = ["med", "rep", "me"]\nseeds = 3\nbudgets = [400]\neval_freq = 100\n'
               'eval_episodes = 1\n[scale.quick.env_budgets]\nrep = [200]', datasets)
    runs = {r.name: r for r in grid.expand(grid.load_papers(str(d)), "quick")}
    assert set(runs) == {"td3/Pendulum-v1", "td3_bc/med", "td3_bc/rep", "td3_bc/me", "td3/Pendulum-v1+med"}
    assert (runs["td3_bc/rep"].steps, runs["td3_bc/med"].steps) == (200, 400)
    src = runs["td3/Pendulum-v1+med"]  # the offline runs' seeds and evaluation, its own length
    assert (src.steps, src.seeds, src.eval_freq, src.env_id, src.args) == (200, 3, 100, "Pendulum-v1", ())
    assert runs["td3_bc/me"].dataset.sources == ("td3/Pendulum-v1+med", "td3/Pendulum-v1")
    root = str(tmp_path / "runs")
    assert launch.collect_command(runs["td3_bc/rep"].dataset, root)[-2:] == ["--checkpoint", os.path.join(
        root, "td3", "Pendulum-v1+med")]
    assert launch.needed_sources(list(runs.values()), root) == {"td3/Pendulum-v1+med", "td3/Pendulum-v1"}
    # the shared run must exist: a dataset naming another's own run that no table of the scale makes fails
    (d / "off.toml").write_text((d / "off.toml").read_text().replace('envs = ["med", "rep", "me"]', 'envs = ["rep"]'))
    with pytest.raises(ValueError, match="source 'td3/Pendulum-v1\\+med' is not a run of scale 'quick'"):
        grid.load_papers(str(d))


def test_source_steps_must_fit_the_evaluations(tmp_path):
    datasets = ('[dataset]\nmed = { env = "Pendulum-v1", recipe = "medium", source = "td3/Pendulum-v1", '
                'source_steps = 150, steps = 50 }\n')
    d = write_grid(tmp_path / "g", "off", 'algos = ["td3_bc"]\nenvs = ["med"]\nseeds = 1\nbudgets = [400]\n'
                   'eval_freq = 100\neval_episodes = 1', datasets)
    with pytest.raises(ValueError, match="source_steps 150 must be a multiple of the eval_freq \\(100\\)"):
        grid.expand(grid.load_papers(str(d)), "quick")


# ---------------------------------------------------------------------------------------------
# Reference rows
# ---------------------------------------------------------------------------------------------
def test_driftql_reference_rows():
    """results/reference/driftql.csv: per task of the grid, DriftQL, FQL and ReBRAC from the paper's Table 3:
    OGBench as success x100, mean of the last 3 evaluations at 1M over 8 seeds; D4RL as the normalised score at
    500k (ReBRAC: its own 1M protocol, no spread)."""
    rows = summarize.load_reference(os.path.join(grid.ROOT, "results", "reference", "driftql.csv"))
    by = {(r["algo"], r["env"]): r for r in rows}
    assert len(by) == len(rows) == 3 * (25 + 9)
    paper = grid.load_paper(DRIFTQL)
    stand_ins = {paper.datasets[e].reference for e in paper.scales["full"].envs if paper.datasets[e].reference}
    for (algo, env), r in by.items():
        assert algo in ("driftql", "fql", "rebrac") and "Table 3" in r["source"]
        if "singletask" in env:
            assert env in paper.scales["full"].envs
            assert (r["budget"], r["statistic"], r["spread_kind"], r["seeds"]) == \
                (1_000_000, "success_mean_last_3_evals", "std", 8)
        else:
            assert env in stand_ins and r["statistic"] == "normalized_mean_at_budget"
            assert (r["budget"], r["spread"]) == ((1_000_000, None) if algo == "rebrac" else (500_000, r["spread"]))
    spot = {("driftql", "cube-single-play-singletask-task1-v0"): (94, 3), ("fql", "scene-play-singletask-task4-v0"): (5, 1),
            ("driftql", "scene-play-singletask-task4-v0"): (83, 10), ("rebrac", "puzzle-3x3-play-singletask-task1-v0"):
            (97, 4), ("driftql", "hopper-medium-expert-v2"): (110, 3), ("fql", "walker2d-medium-replay-v2"): (39, 5),
            ("rebrac", "halfcheetah-medium-expert-v2"): (104, None)}
    for key, (mean, spread) in spot.items():
        assert (by[key]["mean"], by[key]["spread"]) == (mean, spread), key
    # the defaults tasks are marked, as OGBench defines them (cube/scene task2, puzzle task4)
    marked = {e.split("-singletask-")[1] for (a, e), r in by.items() if a == "driftql" and "default task" in r["source"]}
    assert marked == {"task2-v0", "task4-v0"}


# ---------------------------------------------------------------------------------------------
# Summary: success rates, the last-3 rule, the labels
# ---------------------------------------------------------------------------------------------
def test_last_3_statistic_on_hand_values():
    stat, column = summarize.run_statistic("success_mean_last_3_evals")
    assert column == "success"
    m = np.array([[0.0, 10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 50.0, 60.0, 70.0]])  # 2 seeds x 5 evaluations
    assert stat(m) == pytest.approx((20 + 30 + 40 + 50 + 60 + 70) / 6)  # 45
    assert stat(np.stack([m, m[::-1]])).tolist() == pytest.approx([45.0, 45.0])
    assert summarize.run_statistic("normalized_mean_at_budget")[1] == "normalized"
    assert summarize.run_statistic("mean_last_3_evals")[1] == "return"
    assert summarize.last_n("success_mean_last_3_evals") == 3 and summarize.last_n("mean_at_budget") == 0


def test_summary_of_ogbench_and_stand_in_runs(tmp_path):
    """Success rates (eval.csv's fractions) x 100 and their last-3 mean beside the paper's row: a full-size
    OGBench dataset is compared, a 100-episode one is not, nor are too few evaluations; a self-collected D4RL
    stand-in is shown against the row of the dataset it stands in for, never compared."""
    ref = tmp_path / "ref.csv"
    ref.write_text(REF_HEADER + "\n" + "\n".join([
        "t,td7,cube-single-play-singletask-task2-v0,400,success_mean_last_3_evals,50,4,std,8,src-full",
        "t,td7,og-few,400,success_mean_last_3_evals,50,4,std,8,src-few",
        "t,td7,hopper-medium-v2,400,normalized_mean_at_budget,60,5,std,8,src-d4rl",
        "t,td7,short,100,success_mean_last_3_evals,50,4,std,8,src-short",
    ]) + "\n")
    datasets = ('[dataset]\n"cube-single-play-singletask-task2-v0" = { env = "ogbench:cube-single-play-singletask-task2-v0", '
                'recipe = "ogbench-play", episodes = 1000 }\n'
                'og-few = { env = "ogbench:scene-play-singletask-task2-v0", recipe = "ogbench-play", episodes = 100 }\n'
                'short = { env = "ogbench:puzzle-3x3-play-singletask-task2-v0", recipe = "ogbench-play", episodes = 1000 }\n'
                'hop = { env = "Hopper-v4", recipe = "random", steps = 100, reference = "hopper-medium-v2" }\n')
    d = write_grid(tmp_path / "g", "t", 'algos = ["td7"]\nenvs = ["cube-single-play-singletask-task2-v0", "og-few", '
                   '"short", "hop"]\nseeds = 2\nbudgets = [400]\neval_freq = 100\neval_episodes = 10\n'
                   'args = ["--offline"]', datasets, reference=str(ref))
    root = tmp_path / "runs"
    steps = [0, 100, 200, 300, 400]
    # success fractions per seed: seed means of the last 3 = 50 and 70 -> 60; at the budget: (60 + 80) / 2 = 70
    success = [[0, 0.1, 0.4, 0.5, 0.6], [0, 0.2, 0.6, 0.7, 0.8]]
    fake_run(root, "td7", "cube-single-play-singletask-task2-v0", [[0] * 5] * 2, steps, success=success)
    fake_run(root, "td7", "og-few", [[0] * 5] * 2, steps, success=success)
    fake_run(root, "td7", "short", [[0] * 5] * 2, steps, success=success)  # up to its reference budget 100: 0, 100
    fake_run(root, "td7", "hop", [[5, 6, 7, 8, 9]] * 2, steps, normalized=[[1, 2, 3, 4, 80]] * 2)
    runs = summarize.load_runs(str(root))
    np.testing.assert_allclose(runs[("td7", "og-few")].success, [[0, 10, 40, 50, 60], [0, 20, 60, 70, 80]])
    assert runs[("td7", "hop")].success is None
    out = tmp_path / "out"
    rows = summarize.summarize(str(d), {"quick": str(root)}, str(out / "SUMMARY.md"), str(out / "summary.csv"),
                               str(out / "plots"))
    by = {r["reference_source"]: r for r in rows}
    assert by["src-full"]["ours_mean"] == pytest.approx(60.0)
    # reference CI 50 +- t(7) * 4 / sqrt(8) = [46.66, 53.34]: ours is above
    assert by["src-full"]["verdict"] == "above" and by["src-full"]["seeds"] == 2
    assert by["src-few"]["verdict"] == "not comparable (dataset of 100 episodes, the paper's 1,000); would be: above"
    assert by["src-short"]["verdict"] == "not comparable (fewer than 3 evaluations up to this budget)"
    assert (by["src-d4rl"]["env"], by["src-d4rl"]["ours_mean"]) == ("hop", 80.0)
    assert by["src-d4rl"]["verdict"] == "not comparable (self-collected dataset); would be: above"
    text = (out / "SUMMARY.md").read_text()
    assert "success %, mean of last 3 evals [95% CI]" in text and "success %, mean of last 3 evals | 60.0 [" in text
    assert "| td7 | cube-single-play-singletask-task2-v0 | 400 | 2 | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] | " \
           "not in eval.csv | 70.0 [60.0, 80.0] | 60.0 [50.0, 70.0] | compared above |" in text
    assert "| td7 | og-few | 400 | 2 |" in text and "| not comparable (dataset of 100 episodes, the paper's 1,000) |" in text
    assert "| td7 | hop | 400 | 2 | 9.0 [9.0, 9.0] | 9.0 [9.0, 9.0] | 80.0 [80.0, 80.0] | budget not reached " \
           "| budget not reached |" not in text  # a return-only run has no success cells to fill
    assert "| td7 | hop | 400 | 2 | 9.0 [9.0, 9.0] | 9.0 [9.0, 9.0] | 80.0 [80.0, 80.0] | not in eval.csv | " \
           "not in eval.csv | not comparable (self-collected dataset) |" in text
    assert "generated here by `python -m envs.collect --recipe ogbench-play --env-id " \
           "ogbench:scene-play-singletask-task1-v0 --episodes 100`" in text
    assert "standing in for hopper-medium-v2" in text
    assert (out / "plots" / "quick" / "t.png").exists()


def test_summary_of_the_repo_quick_grid(tmp_path):
    """With the repo's grids: the three quick runs on the generated cube-single data get success cells, their rows
    against the paper's task2 numbers say why they are not compared, FQL and ReBRAC rows have no run, and the
    quick scale's note says what was cut."""
    quick = tmp_path / "quick"
    steps = [0, 250, 500, 750]
    for algo in ("driftql", "td3_bc", "td7"):
        fake_run(quick, algo, QUICK, [[0] * 4] * 3, steps, success=[[0, 0.1, 0.2, 0.3]] * 3,
                 env_id="ogbench:cube-single-play-singletask-task2-v0")
    out = tmp_path / "out"
    rows = summarize.summarize(roots={"quick": str(quick)}, out_md=str(out / "SUMMARY.md"),
                               out_csv=str(out / "summary.csv"), plots_dir=str(out / "plots"))
    mine = {(r["algo"], r["reference_env"]): r for r in rows if r["paper"] == "driftql"}
    assert set(mine) == {(a, "cube-single-play-singletask-task2-v0") for a in ("driftql", "fql", "rebrac")}
    assert mine[("driftql", "cube-single-play-singletask-task2-v0")]["verdict"] == \
        "not comparable (budget 1M not reached: the run ends at 750; dataset of 100 episodes, the paper's 1,000)"
    assert mine[("fql", "cube-single-play-singletask-task2-v0")]["verdict"] == \
        "no run: there is no algos/fql.py in this repo"
    text = (out / "SUMMARY.md").read_text().split("### DriftQL (Houssaini et al., NeurIPS 2026)")[1].split("\n### ")[0]
    assert "REDUCED for the CPU" in text
    for algo in ("driftql", "td3_bc", "td7"):  # last 3 evaluations: (10 + 20 + 30) / 3
        assert f"| {algo} | {QUICK} | 750 | 3 | 0.0 [0.0, 0.0] | 0.0 [0.0, 0.0] | not in eval.csv | 30.0 [30.0, 30.0] | " \
               "20.0 [20.0, 20.0] | not comparable (dataset of 100 episodes, the paper's 1,000) |" in text


@pytest.mark.slow
def test_launcher_generates_one_ogbench_file_and_trains_two_methods_on_it(tmp_path):
    """Real tiny runs (about 2 minutes on 2 cores): the launcher generates 2 episodes of cube-single play once, then
    DriftQL (tiny networks) and TD3+BC train on that file and evaluate on task2; eval.csv has the success column and
    the summary its success cells."""
    tables = '[dataset]\nog = { env = "ogbench:cube-single-play-singletask-task2-v0", recipe = "ogbench-play", episodes = 2 }\n'
    d = write_grid(tmp_path / "g", "og", 'algos = ["driftql", "td3_bc"]\nenvs = ["og"]\nseeds = 2\nbudgets = [20]\n'
                   'eval_freq = 10\neval_episodes = 1\n[scale.quick.algo_args]\ndriftql = ["--preset", "cube-single-play", '
                   '"--hidden-dim", "16", "--num-layers", "1", "--drift-ngen", "4", "--batch-size", "16"]', tables)
    root = str(tmp_path / "runs")
    out = io.StringIO()
    result = launch.launch("quick", root, str(d), poll_s=0.2, out=out)
    log = out.getvalue()
    assert result == {"driftql/og": "done", "td3_bc/og": "done", "collect:ogbench-cube-single-play-v0": "done"}, log
    assert log.count("start collect:ogbench-cube-single-play-v0") == 1
    assert log.index("done  collect:ogbench-cube-single-play-v0") < log.index("start driftql/og")
    path = os.path.join(root, "datasets", "ogbench", "cube-single-play-v0.npz")
    with np.load(path) as f:
        assert f["observations"].shape[0] == 2 * 1001
    for algo in ("driftql", "td3_bc"):
        with open(os.path.join(root, algo, "og", "config.json")) as f:
            args = json.load(f)["args"]
        assert (args["dataset"], args["env_id"]) == (f"ogbench:{path}", "ogbench:cube-single-play-singletask-task2-v0")
        with open(os.path.join(root, algo, "og", "eval.csv")) as f:
            rows = list(csv.DictReader(f))
        assert {(int(r["seed"]), int(r["step"])) for r in rows} == {(s, t) for s in (0, 1) for t in (0, 10, 20)}
        assert all(float(r["success"]) in (0.0, 1.0) for r in rows)  # one episode: succeeded or not
    run = summarize.load_runs(root)[("driftql", "og")]
    assert run.success.shape == (2, 3)
