"""make summary: reads only committed files, writes nothing that did not change, and places our runs among the
authors' shipped per-seed curves (reproduce.authors_curves converts them)."""

import csv
import io
import json
import os
import shutil
import subprocess
from contextlib import redirect_stdout

import numpy as np
import pytest

from envs.errors import UserError
from reproduce import authors_curves, grid, launch, summarize
from tests.test_reproduce import fake_run, offline_grid, write_grid

MRQ_TEXT = """--------------------
Env: Gym-Hopper-v4
Timestep\tSeed 0\t\tSeed 1\t\tSeed 2
0\t\t1.50000\t\t2.25000\t\t-3.00000
5000\t\t10.00000\t20.00000\t30.00000
--------------------
Env: Dmc-cheetah-run
Timestep\tSeed 0\t\tSeed 1\t\tSeed 2
0\t\t9.0\t\t9.0\t\t9.0
"""
DRQ_TEXT = """,exp_name,env_name,seed,metric,env_step,value
0,drq,Hopper_v4,0,avg_return,0,7.5
1,drq,Hopper_v4,0,avg_return,25000,300.25
2,drq,Hopper_v4,10,avg_return,0,-1.0
3,drq,Hopper_v4,10,avg_return,25000,400.0
4,drq,cheetah_run,0,avg_return,0,5.0
"""


# ---------------------------------------------------------------------------------------------
# The converter
# ---------------------------------------------------------------------------------------------
def test_converter_reads_both_shipped_formats():
    assert authors_curves.parse_mrq(MRQ_TEXT) == [  # the Gym block only, each number as written
        ("mrq", "Hopper-v4", 0, 0, "1.50000"), ("mrq", "Hopper-v4", 1, 0, "2.25000"), ("mrq", "Hopper-v4", 2, 0, "-3.00000"),
        ("mrq", "Hopper-v4", 0, 5000, "10.00000"), ("mrq", "Hopper-v4", 1, 5000, "20.00000"),
        ("mrq", "Hopper-v4", 2, 5000, "30.00000")]
    assert authors_curves.parse_drq(DRQ_TEXT) == [  # Gym rows (<Name>_v4) only; the file's seed numbers
        ("drq", "Hopper-v4", 0, 0, "7.5"), ("drq", "Hopper-v4", 0, 25000, "300.25"),
        ("drq", "Hopper-v4", 10, 0, "-1.0"), ("drq", "Hopper-v4", 10, 25000, "400.0")]
    with pytest.raises(authors_curves.CurveError, match="line 3: 3 fields, expected a step and 3 seeds"):
        authors_curves.parse_mrq("Env: Gym-A-v4\nTimestep\tSeed 0\tSeed 1\tSeed 2\n0\t1.0\t2.0\n")
    with pytest.raises(authors_curves.CurveError, match="no column env_step"):
        authors_curves.parse_drq("env_name,seed,metric,value\n")


def test_converter_writes_tidy_csvs_and_their_sources(tmp_path, capsys):
    authors = tmp_path / "authors"
    (authors / "MRQ" / "results").mkdir(parents=True)
    (authors / "MRQ" / "results" / "gym_results.txt").write_text(MRQ_TEXT)
    (authors / "DR.Q" / "results").mkdir(parents=True)
    (authors / "DR.Q" / "results" / "drq.csv").write_text(DRQ_TEXT)
    (authors / "TD3" / "learning_curves" / "Hopper").mkdir(parents=True)
    np.save(authors / "TD3" / "learning_curves" / "Hopper" / "TD3_Hopper-v1_3.npy", np.array([1.0, 2.5, -0.125]))
    out = tmp_path / "curves"
    assert authors_curves.main([str(authors), "--out", str(out)]) == 0
    with open(out / "drq_gym.csv") as f:
        assert list(csv.reader(f)) == [authors_curves.HEADER, ["drq", "Hopper-v4", "0", "0", "7.5"],
                                       ["drq", "Hopper-v4", "0", "25000", "300.25"],
                                       ["drq", "Hopper-v4", "10", "0", "-1.0"],
                                       ["drq", "Hopper-v4", "10", "25000", "400.0"]]
    with open(out / "td3_gym_v1.csv") as f:
        assert [r[1:] for r in list(csv.reader(f))[1:]] == [["Hopper-v1", "3", "0", "1.00000"],
                                                            ["Hopper-v1", "3", "5000", "2.50000"],
                                                            ["Hopper-v1", "3", "10000", "-0.12500"]]
    with open(out / "index.csv") as f:
        index = {r["file"]: r for r in csv.DictReader(f)}
    assert (index["mrq_gym.csv"]["repo"], index["mrq_gym.csv"]["commit"], index["mrq_gym.csv"]["seeds"]) == \
        ("github.com/facebookresearch/MRQ", "8a44a7d", "3")
    assert (index["drq_gym.csv"]["commit"], index["drq_gym.csv"]["shipped"]) == ("cc307a5", "DR.Q/results/drq.csv")
    # the summary reads them back: the curves of (algo, env), seeds x steps
    shutil.copytree(out, tmp_path / "root" / summarize.CURVES_DIR)
    curves = summarize.load_authors_curves(str(tmp_path / "root"))
    assert curves[("drq", "Hopper-v4")].returns.tolist() == [[7.5, 300.25], [-1.0, 400.0]]
    assert curves[("drq", "Hopper-v4")].label == "dmksjfl/DR.Q@cc307a5" and curves[("drq", "Hopper-v4")].every == 25000
    # a folder that is not the authors': one line, exit 2
    capsys.readouterr()
    assert authors_curves.main([str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "gym_results.txt does not exist" in err


def test_converter_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    """A shipped file that cannot be read (an OSError, a cut .npy) or an output folder that cannot be written:
    one line `error: ...` naming it, exit 2, and no output half-written."""
    authors = tmp_path / "authors"
    (authors / "MRQ" / "results").mkdir(parents=True)
    (authors / "MRQ" / "results" / "gym_results.txt").write_text(MRQ_TEXT)
    (authors / "DR.Q" / "results" / "drq.csv").mkdir(parents=True)  # a folder where a file should be
    (authors / "TD3" / "learning_curves" / "Hopper").mkdir(parents=True)
    out = tmp_path / "curves"

    def fails(*where):
        capsys.readouterr()
        assert authors_curves.main([str(authors), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and all(w in err for w in where), err
        assert not out.exists() or not any(out.iterdir())

    fails(os.path.join("DR.Q", "results", "drq.csv"), "Is a directory")
    (authors / "DR.Q" / "results" / "drq.csv").rmdir()
    (authors / "DR.Q" / "results" / "drq.csv").write_text(DRQ_TEXT)
    (authors / "TD3" / "learning_curves" / "Hopper" / "TD3_Hopper-v1_0.npy").write_bytes(b"")  # cut short
    fails(os.path.join("TD3", "learning_curves") + ": Hopper/TD3_Hopper-v1_0.npy: ")
    np.save(authors / "TD3" / "learning_curves" / "Hopper" / "TD3_Hopper-v1_0.npy", np.array([1.0]))
    out.write_text("a file, not a folder")
    capsys.readouterr()
    assert authors_curves.main([str(authors), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: cannot write {out}") and out.read_text().startswith("a file")
    out.unlink()
    assert authors_curves.main([str(authors), "--out", str(out)]) == 0


# ---------------------------------------------------------------------------------------------
# Our run among the authors' seeds
# ---------------------------------------------------------------------------------------------
def hand_curves(steps, returns, algo="mrq", env="Hopper-v4"):
    return summarize.AuthorsCurves(algo, env, np.array(steps), np.array(returns, dtype=float), "github.com/o/R",
                                   "abc1234", "results/x.txt", "results/reference/curves/x.csv")


def hand_run(steps, returns, algo="mrq", env="Hopper-v4"):
    return summarize.RunData(algo, env, "/nowhere", {}, np.array(steps), np.array(returns, dtype=float))


def test_verdicts_among_the_authors_seeds():
    theirs = np.array([10.0, 20.0, 30.0, 40.0])
    assert summarize.among_seeds(np.array([25.0]), theirs) == "within the authors' seeds (rank 3 of 5)"
    assert summarize.among_seeds(np.array([40.0]), theirs) == "within the authors' seeds (rank 1 of 5)"  # a tie: ours
    assert summarize.among_seeds(np.array([5.0]), theirs) == "below all 4 of the authors' seeds"
    assert summarize.among_seeds(np.array([50.0, 60.0]), theirs) == "above all 4 of the authors' seeds (all 2 of ours)"
    assert summarize.among_seeds(np.array([15.0, 35.0]), theirs) == "within the authors' seeds (ranks 4, 2 of 5)"
    assert summarize.among_seeds(np.array([5.0, 35.0]), theirs) == \
        "seed 0: below all 4 of the authors' seeds (rank 5 of 5); seed 1: within the authors' seeds (rank 2 of 5)"


def test_curve_comparison_at_shared_steps_and_the_budget():
    c = hand_curves([0, 5000, 10000, 15000], [[0, 10, 20, 100], [2, 12, 40, 200], [4, 14, 60, 300]])
    # inside at 0 and 15k, below at 10k (5k: above); budget 15k shared
    comp = summarize.curve_comparison(hand_run([0, 5000, 10000, 15000], [[3, 20, 5, 250]]), c, [15000])
    assert [p["step"] for p in comp["points"]] == [0, 5000, 10000, 15000]
    p0, p5, p10, p15 = comp["points"]
    assert (p0["authors_mean"], p0["authors_min"], p0["authors_max"], p0["ranks"]) == (2.0, 0.0, 4.0, [2])
    assert p5["reading"] == "above all 3 of the authors' seeds" and p10["reading"] == "below all 3 of the authors' seeds"
    assert comp["at_budget"] == [{"budget": 15000, "verdict": "within the authors' seeds (rank 2 of 4)"}]
    # theirs every 25k: at 15k only step 0 is shared
    c25 = hand_curves([0, 25000], [[0, 100], [10, 200]], "drq")
    comp = summarize.curve_comparison(hand_run([0, 5000, 10000, 15000], [[3, 4, 5, 6]], "drq"), c25, [15000])
    assert [p["step"] for p in comp["points"]] == [0]
    assert comp["at_budget"] == [{"budget": 15000, "verdict": "no authors' evaluation at 15k (theirs every 25k); "
                                                               "steps both evaluated: 0"}]
    # no shared step at all
    comp = summarize.curve_comparison(hand_run([1000, 2000], [[1, 2]]), c25, [2000])
    assert comp["points"] == [] and comp["at_budget"][0]["verdict"].endswith("steps both evaluated: none")


def test_summary_places_our_runs_among_the_authors_curves(tmp_path):
    """A paper's own algorithm with shipped curves: its section, csv rows, json entries and the plot; the
    same algorithm's curves on another env version are named once, not compared."""
    root = tmp_path / "repo"
    folder = root / summarize.CURVES_DIR
    folder.mkdir(parents=True)
    (folder / "index.csv").write_text(",".join(authors_curves.INDEX_HEADER) + "\n"
                                      "p_gym.csv,p,github.com/o/P,abc1234,results/p.txt,3,\n"
                                      "p_v1.csv,p,github.com/o/P,abc1234,curves/,3,\n")
    rows = [(s, t, r) for s, rs in enumerate([[0, 10, 20], [2, 12, 40], [4, 14, 60]]) for t, r in zip([0, 200, 400], rs)]
    (folder / "p_gym.csv").write_text("source_algo,env,seed,step,return\n"
                                      + "".join(f"p,A-v4,{s},{t},{r}\n" for s, t, r in rows))
    (folder / "p_v1.csv").write_text("source_algo,env,seed,step,return\n"
                                     + "".join(f"p,B-v1,{s},{t},{r}\n" for s, t, r in rows))
    d = write_grid(tmp_path / "g", "p", 'algos = ["p"]\nenvs = ["A-v4", "B-v4"]\nseeds = 1\nbudgets = [400]\n'
                                        'eval_freq = 200\neval_episodes = 10')
    runs = tmp_path / "runs"
    fake_run(runs, "p", "A-v4", [[3, 5, 70]], [0, 200, 400])
    fake_run(runs, "p", "B-v4", [[3, 5, 70]], [0, 200, 400])
    out = tmp_path / "out"
    rows = summarize.summarize(str(d), {"quick": str(runs)}, str(out / "SUMMARY.md"), str(out / "summary.csv"),
                               str(out / "plots"), ref_root=str(root))
    text = (out / "SUMMARY.md").read_text()
    assert "| p | A-v4 | 0 | 3.0 | 2.0 [0.0, 4.0] (3 seeds) | 2 of 4 | within the authors' seeds (rank 2 of 4) |" in text
    assert "| p | A-v4 | 200 | 5.0 | 12.0 [10.0, 14.0] (3 seeds) | 4 of 4 | below all 3 of the authors' seeds |" in text
    assert "Verdict at the quick budget, p on A-v4 at 400: above all 3 of the authors' seeds." in text
    assert text.count("are on B-v1: another version of the envs we ran, so they are not compared") == 1
    curve_rows = [r for r in rows if r["statistic"] == "return_among_authors_seeds"]
    assert [(r["budget"], r["ours_mean"], r["reference_mean"]) for r in curve_rows] == [(0, 3, 2), (200, 5, 12),
                                                                                        (400, 70, 40)]
    entries = json.loads((out / "summary.json").read_text())["authors_curves"]
    assert [(e["algo"], e["env"], e["at_budget"][0]["verdict"]) for e in entries] == \
        [("p", "A-v4", "above all 3 of the authors' seeds")]
    assert (out / "plots" / "quick" / "p.png").exists()


# ---------------------------------------------------------------------------------------------
# Dataset facts: written by the launcher into the committed datasets.json, read from there only
# ---------------------------------------------------------------------------------------------
def test_launcher_records_dataset_facts_that_the_summary_reads(tmp_path):
    ds = grid.Dataset("pend", "Pendulum-v1", recipe="medium", source="td3/Pendulum-v1", steps=100, scale="quick")
    root = str(tmp_path / "runs")
    assert not launch.record_dataset(ds, root)  # not collected: nothing to record
    meta = os.path.join(launch.minari_dir(ds, root), "data", "metadata.json")
    os.makedirs(os.path.dirname(meta))
    facts = {"policies": [{"algo": "td3", "step": 400, "return": -150.25}], "mean_episode_return": -170.0}
    with open(meta, "w") as f:
        json.dump({"fujimoto_jax": json.dumps(facts)}, f)  # as envs.collect writes it: a JSON string
    assert launch.record_dataset(ds, root)
    assert not launch.record_dataset(ds, root)  # unchanged: not rewritten
    record = json.loads(open(os.path.join(root, "datasets.json")).read())
    assert record["datasets"][f"datasets/{ds.minari_id}/data/metadata.json"] == {"dataset": "pend", "facts": facts}
    shutil.rmtree(os.path.join(root, "datasets"))  # a clone has no data, only the record
    assert summarize.behaviour_note(ds, root) == \
        "; behaviour data: its source policy: td3 step 400 returned -150.2; its episodes: mean return -170.0"
    assert subprocess.run(["git", "check-ignore", "-q", "results/runs/reproduce-quick/datasets.json"],
                          cwd=grid.ROOT).returncode == 1  # committed, unlike datasets/


def collected_offline_grid(tmp_path):
    """offline_grid's TD3 -> pend -> TD3+BC: the source run done, the dataset collected (its facts on disk), the
    TD3+BC run to do (so a launch records the dataset's facts before it starts anything)."""
    d = str(offline_grid(tmp_path, '["pend"]', online_algos='["td3"]'))
    (tmp_path / "g" / "off7.toml").unlink()
    root = str(tmp_path / "runs")
    fake_run(root, "td3", "Pendulum-v1", [[0, 1, 2]] * 2, [0, 200, 400], eval_freq=200, eval_episodes=1,
             learning_starts=100)
    (run,) = [r for r in grid.expand(grid.load_papers(d), "quick") if r.dataset]
    meta = os.path.join(launch.minari_dir(run.dataset, root), "data", "metadata.json")
    os.makedirs(os.path.dirname(meta))
    with open(meta, "w") as f:
        json.dump({"fujimoto_jax": json.dumps({"policies": [{"algo": "td3", "step": 400, "return": -150.0}]})}, f)
    return d, root, run.dataset


@pytest.mark.parametrize("text, match", [
    ('{"note": "x", "datasets": {"a": {"dataset": "b", "facts": {}}', "cannot read .*datasets.json \\(JSONDecodeError"),
    ('["datasets"]', 'datasets.json has no "datasets" object of entries'),
    ('{"datasets": {"a": 1}}', 'datasets.json has no "datasets" object of entries')])
def test_a_datasets_record_that_does_not_read_stops_the_launch_and_stays(tmp_path, capsys, text, match):
    """A corrupt datasets.json is not replaced by the one entry being recorded (the other datasets' facts would
    be lost): record_dataset, the launcher and the summary stop with one line naming it, and it keeps its bytes."""
    d, root, ds = collected_offline_grid(tmp_path)
    path = os.path.join(root, "datasets.json")
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(UserError, match=match):
        launch.record_dataset(ds, root)
    planned = launch.launch("quick", root, d, dry_run=True, out=io.StringIO())
    assert (planned["collect:pend"], planned["td3_bc/pend"]) == ("done", "todo")
    capsys.readouterr()
    assert launch.main(["--scale", "quick", "--grid-dir", d, "--root", root]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"error: {path}" if "object" in match else f"error: cannot read {path}")
    assert "restore it (it is committed), or delete it and launch again" in err
    assert "start td3_bc/pend" not in out and not os.path.exists(os.path.join(root, "td3_bc"))  # nothing ran
    with open(path) as f:
        assert f.read() == text and not os.path.exists(path + ".tmp")
    with pytest.raises(UserError, match=match):  # the summary does not print the dataset without its facts
        summarize.summarize(d, {"quick": root}, str(tmp_path / "S.md"), str(tmp_path / "s.csv"), str(tmp_path / "p"))
    checkout = tmp_path / "checkout"  # summarize's command line: the same, in one line
    shutil.copytree(root, checkout / "results" / "runs" / "reproduce-quick")  # its td3 run, its datasets.json
    assert summarize.main(["--root", str(checkout), "--grid-dir", d]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "reproduce-quick/datasets.json" in err
    assert not (tmp_path / "S.md").exists() and not (checkout / "results" / "SUMMARY.md").exists()
    # deleted, the facts of the dataset on disk are recorded anew (as the next launch does first)
    os.remove(path)
    assert launch.record_dataset(ds, root)
    assert "td3 step 400 returned -150.0" in summarize.dataset_line(ds, root)


def test_an_unreadable_datasets_record_is_one_line_too(tmp_path):
    _, root, ds = collected_offline_grid(tmp_path)
    os.makedirs(os.path.join(root, "datasets.json"))  # not a file: an OSError, not an empty record
    with pytest.raises(UserError, match="cannot read .*datasets.json \\(IsADirectoryError"):
        launch.record_dataset(ds, root)
    assert os.path.isdir(os.path.join(root, "datasets.json"))


def test_the_summary_reads_the_facts_under_the_launchers_key(tmp_path):
    """One key for both sides (launch.dataset_facts_key), OGBench files included."""
    og = grid.Dataset("cube", "ogbench:cube-single-play-singletask-task1-v0", recipe="ogbench-play", episodes=10,
                      scale="quick")
    root = tmp_path / "runs"
    root.mkdir()
    (root / "datasets.json").write_text(json.dumps({"datasets": {launch.dataset_facts_key(og): {
        "dataset": "cube", "facts": {"oracles": {"0": "cube-oracle"}, "episodes": 10, "seed": 3}}}}))
    assert launch.dataset_facts_key(og) == f"datasets/ogbench/{og.ogbench_file}.npz"
    assert summarize.ogbench_note(og, str(root)) == "; its metadata: oracle cube-oracle, episodes 10, seed 3"
    assert summarize.ogbench_note(og, None) == ""  # no run root: no facts


def test_writes_only_changed_bytes(tmp_path):
    assert summarize.write_if_changed is grid.write_if_changed is authors_curves.write_if_changed  # one definition
    path = str(tmp_path / "a" / "f.txt")
    assert grid.write_if_changed(path, "x\n")
    mtime = os.stat(path).st_mtime_ns
    assert not grid.write_if_changed(path, b"x\n") and os.stat(path).st_mtime_ns == mtime
    assert grid.write_if_changed(path, "y\n") and open(path).read() == "y\n"
    assert os.listdir(tmp_path / "a") == ["f.txt"]  # no .tmp left behind


# ---------------------------------------------------------------------------------------------
# A fresh clone: make summary leaves every committed output as it is
# ---------------------------------------------------------------------------------------------
def test_summary_on_a_clone_rewrites_nothing(tmp_path):
    """Only the files git keeps (tracked, or new and not ignored) that summarize reads, as a clone has them:
    no datasets/, no logs/. Every output comes out byte-identical and no file appears."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", "results",
                             "reproduce/grids", "algos"], cwd=grid.ROOT, capture_output=True, text=True, check=True)
    files = [f for f in listed.stdout.split("\0") if f and os.path.isfile(os.path.join(grid.ROOT, f))]
    assert "results/runs/reproduce-quick/datasets.json" in files
    assert not any("/datasets/" in f or "/logs/" in f for f in files)
    clone = tmp_path / "clone"
    for f in files:
        os.makedirs(clone / os.path.dirname(f), exist_ok=True)
        shutil.copy2(os.path.join(grid.ROOT, f), clone / f)
    before = sorted(str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file())
    with redirect_stdout(io.StringIO()) as said:
        assert summarize.main(["--root", str(clone)]) == 0
    assert "; 0 file(s) changed" in said.getvalue(), said.getvalue()
    after = sorted(str(p.relative_to(clone)) for p in clone.rglob("*") if p.is_file())
    assert after == before
    outputs = ["results/SUMMARY.md", "results/summary.csv", "results/summary.json"] + \
        [f for f in files if f.startswith("results/plots/")]
    for f in outputs:
        assert (clone / f).read_bytes() == open(os.path.join(grid.ROOT, f), "rb").read(), f
    # the dataset provenance comes from datasets.json, not from the data a clone lacks
    assert (clone / "results" / "SUMMARY.md").read_text().count("behaviour data: its source policy") >= 5


def test_summarize_root_must_be_a_checkout(tmp_path, capsys):
    assert summarize.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "has no results/ folder" in err
