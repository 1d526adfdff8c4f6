"""The rough edges of issue 29, each pinned: envs/ without an import circle, mrq/drq refusing MinAtar, the
provenance of the algorithm file that ran, makeable env-id suggestions, --capture-video's GL backend, help
texts without a contradicting placeholder default, and unwrapped log lines when stdout is not a terminal."""

import ast
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from envs import runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVS = os.path.join(ROOT, "envs")


def _cli(script, *args, cwd=None, env=None, timeout=300):
    """``python <script> args`` as a user runs it; returns the finished process (text output)."""
    environ = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    environ = {k: v for k, v in environ.items() if v is not None}
    return subprocess.run([sys.executable, script, *args], cwd=cwd or ROOT, env=environ, capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(proc, *words):
    """Exit status 2, one stderr line ``error: ...`` holding ``words``, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


# ---------------------------------------------------------------------------------------------
# 1. The house: envs/ imports form no circle, and errors.py sits at the bottom
# ---------------------------------------------------------------------------------------------
def _envs_imports(path: str) -> set[str]:
    """The envs modules a file imports, at module level or inside functions ("__init__" for the package)."""
    modules = {f[:-3] for f in os.listdir(ENVS) if f.endswith(".py")}
    with open(path) as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "envs":
                    out.add(parts[1] if len(parts) > 1 else "__init__")
        elif isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            if node.level == 0 and parts[0] != "envs":
                continue
            if node.level == 0 and len(parts) > 1:
                out.add(parts[1])
            elif node.level > 0 and parts[0]:
                out.add(parts[0])
            else:  # from envs import x: a submodule, or a name of the package
                out |= {a.name if a.name in modules else "__init__" for a in node.names}
    return out


def _cycle(graph: dict) -> list | None:
    """A cycle of ``graph`` (node -> set of nodes) as a path that returns to its start, else None."""
    state, path = {}, []

    def visit(m):
        state[m] = "open"
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_envs_import_graph_has_no_cycle():
    graph = {f[:-3]: _envs_imports(os.path.join(ENVS, f)) for f in os.listdir(ENVS) if f.endswith(".py")}
    assert graph["errors"] == set(), graph["errors"]  # the bottom: imports nothing of envs
    assert "gym" in graph["runs"]  # runs.py sits on top of gym.py
    for low in ("gym", "workers", "atari", "dmc", "minatar", "ogbench", "devices", "offline", "imitation"):
        assert "errors" in graph[low] and "runs" not in graph[low], (low, graph[low])  # errors from the bottom
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]  # the check checks
    assert _cycle(graph) is None, "import cycle in envs/: " + " -> ".join(_cycle(graph))
    # the errors the adapters raise are the ones runs re-exports (one class object: `except UserError` works)
    from envs import errors, gym as env_gym, workers
    assert runs.UserError is errors.UserError is env_gym.UserError is workers.UserError
    assert runs.require is errors.require and runs.Diverged is errors.Diverged and runs.SpaceError is errors.SpaceError


# ---------------------------------------------------------------------------------------------
# 2. mrq.py and drq.py refuse MinAtar in one line, before any env or run folder
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["mrq", "drq"])
def test_mrq_drq_refuse_minatar_in_one_line(algo, tmp_path):
    proc = _cli(os.path.join("algos", f"{algo}.py"), "--env-id", "minatar:breakout", "--results-dir",
                str(tmp_path / "runs"), "--total-timesteps", "100")
    _one_line_error(proc, f"{algo}.py does not run MinAtar (minatar:breakout)", "84x84", "algos/ddqn.py")
    assert not (tmp_path / "runs").exists()  # refused before the run folder
    with open(os.path.join(ROOT, "algos", f"{algo}.py")) as f:
        header = ast.get_docstring(ast.parse(f.read()))
    notes = header[header.index("Deviations and notes:"):]
    assert re.search(r"^- MinAtar \(`minatar:`\) is refused", notes, re.M)


# ---------------------------------------------------------------------------------------------
# 3. config.json describes the algorithm file that ran, not the project checkout
# ---------------------------------------------------------------------------------------------
def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def _outside_git(path) -> bool:
    return subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True).returncode != 0


def test_provenance_of_the_algorithm_file(tmp_path):
    source = os.path.join(ROOT, "algos", "td3.py")
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    _git(repo, "init", "-q")
    kept, edited = repo / "sub" / "my_td3.py", repo / "edited_td3.py"
    for path in (kept, edited):
        shutil.copy(source, path)
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "copies")
    head = _git(repo, "rev-parse", "HEAD")
    with open(edited, "a") as f:
        f.write("# a local change\n")

    same = runs.algo_provenance(str(kept))
    assert same["commit"] == head and same["algo_matches_commit"] is True and same["dirty"] is True
    assert same["algo_sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
    assert same["envs"]["commit"] == runs.git_info()["commit"]  # the project's plumbing, named apart
    changed = runs.algo_provenance(str(edited))
    assert changed["commit"] == head and changed["algo_matches_commit"] is False
    assert changed["algo_sha256"] == hashlib.sha256(edited.read_bytes()).hexdigest() != same["algo_sha256"]
    _git(repo, "commit", "-qam", "the change")  # committed: it matches again
    assert runs.algo_provenance(str(edited))["algo_matches_commit"] is True

    here = runs.algo_provenance(source)  # the project's own file: its commit, compared with it
    assert here["commit"] == runs.git_info()["commit"] and "envs" not in here
    assert here["algo_matches_commit"] is (subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "algos/td3.py"],
                                                          cwd=ROOT).returncode == 0)


def test_copied_algorithm_file_outside_any_repository_records_no_commit(tmp_path):
    """The issue's case: `cp algos/td3.py /tmp/x/my_td3.py; cd /tmp/x; python my_td3.py ...`."""
    if not _outside_git(tmp_path):
        pytest.skip(f"{tmp_path} is inside a git repository")
    copy = tmp_path / "my_td3.py"
    shutil.copy(os.path.join(ROOT, "algos", "td3.py"), copy)
    with open(copy, "a") as f:
        f.write("# edited copy\n")
    proc = _cli("my_td3.py", "--env-id", "Pendulum-v1", "--total-timesteps", "60", "--eval-freq", "60",
                "--eval-episodes", "1", "--learning-starts", "30", "--batch-size", "8", "--hidden-dim", "8",
                "--run-name", "copy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "results" / "runs" / "copy" / "config.json") as f:
        git = json.load(f)["git"]
    assert git["commit"] is None and git["dirty"] is None and git["algo_matches_commit"] is None
    assert git["algo_file"] == os.path.realpath(copy) and "no git repository" in git["note"]
    assert git["algo_sha256"] == hashlib.sha256(copy.read_bytes()).hexdigest()
    assert git["envs"]["commit"] == runs.git_info()["commit"]


# ---------------------------------------------------------------------------------------------
# 4. Env-id suggestions name only ids that can be made here; moved ids say so
# ---------------------------------------------------------------------------------------------
def test_env_id_suggestions_can_be_made_and_moved_ids_say_so(tmp_path):
    import gymnasium as gym

    import envs

    with pytest.raises(runs.UserError) as e:
        envs.make_env("Hoper-v4")
    suggested = re.search(r"Did you mean: (.*?)\?", str(e.value)).group(1).split(", ")
    assert "Hopper-v4" in suggested and not {"Hopper-v3", "Hopper-v2"} & set(suggested)
    for env_id in suggested:  # every suggestion is made without error
        gym.make(env_id, disable_env_checker=True).close()
    assert gym.registry["Hopper-v3"] is not None  # gymnasium still lists the moved ids: the filter is needed

    for moved in ("Hopper-v3", "HalfCheetah-v2"):
        with pytest.raises(runs.UserError, match=rf"'{moved}' has moved: .*mujoco-py.*gymnasium-robotics; use "
                                                 rf"{moved[:-3]}-v4 or {moved[:-3]}-v5"):
            envs.make_env(moved)
    proc = _cli(os.path.join("algos", "td3.py"), "--env-id", "Hopper-v3", "--results-dir", str(tmp_path / "runs"))
    _one_line_error(proc, "'Hopper-v3' has moved", "mujoco-py", "gymnasium-robotics", "Hopper-v4")
    proc = _cli(os.path.join("algos", "td3.py"), "--env-id", "Hoper-v4", "--results-dir", str(tmp_path / "runs"))
    line = _one_line_error(proc, "Unknown env id 'Hoper-v4'", "Hopper-v4")
    assert "Hopper-v3" not in line and "Hopper-v2" not in line
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# 5. --capture-video picks a MUJOCO_GL that renders, or fails in one line; no empty videos/ left
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hopper_checkpoint(tmp_path_factory):
    from algos import td3

    where = tmp_path_factory.mktemp("video")
    td3.train(td3.Args(env_id="Hopper-v4", total_timesteps=40, learning_starts=20, eval_freq=20, eval_episodes=1,
                       batch_size=8, hidden_dim=8, results_dir=str(where), run_name="hop", save_model=True))
    return where / "hop"


def _eval_video(checkpoint, capsys):
    from algos import td3

    argv = ["--eval-only", "--checkpoint", str(checkpoint), "--capture-video", "--eval-episodes", "1"]
    with pytest.raises(SystemExit) as e:
        runs.cli(td3.Args, td3.train, td3.evaluate_checkpoint, argv=argv)
    return e.value.code, capsys.readouterr().err


def test_capture_video_without_a_working_gl_backend_fails_in_one_line(hopper_checkpoint, monkeypatch, capsys):
    from envs import gym as env_gym

    tried = []
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(env_gym, "_gl_probe", lambda backend: tried.append(backend) or "no such library")
    code, err = _eval_video(hopper_checkpoint, capsys)
    assert code == 2 and tried[:2] == ["egl", "osmesa"] and "MUJOCO_GL" not in os.environ
    assert len(err.strip().splitlines()) == 1 and "MUJOCO_GL" in err and "libosmesa6" in err, err
    assert not (hopper_checkpoint / "videos").exists()

    monkeypatch.setenv("MUJOCO_GL", "no-such-backend")  # one that cannot work anywhere, probed for real
    code, err = _eval_video(hopper_checkpoint, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "MUJOCO_GL=no-such-backend" in err, err
    assert not (hopper_checkpoint / "videos").exists()


def test_gl_picker_takes_the_first_backend_that_renders(monkeypatch, capsys):
    """MUJOCO_GL unset: egl is tried first; when only osmesa renders, osmesa is set and said. A MuJoCo env only."""
    from envs import gym as env_gym

    tried = []
    monkeypatch.setenv("MUJOCO_GL", "")  # recorded, so the value the picker sets is undone after the test
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.setattr(env_gym, "_gl_probe",
                        lambda backend: tried.append(backend) or (None if backend == "osmesa" else "no EGL"))
    env_gym._gl_for_video("Pendulum-v1")  # classic control: no GL backend needed, nothing probed
    assert tried == [] and "MUJOCO_GL" not in os.environ
    env_gym._gl_for_video("Hopper-v4")
    assert tried == ["egl", "osmesa"] and os.environ["MUJOCO_GL"] == "osmesa"
    assert "rendering with MUJOCO_GL=osmesa" in capsys.readouterr().out
    tried.clear()
    env_gym._gl_for_video("Hopper-v4")  # now set and working: kept, probed once
    assert tried == ["osmesa"] and os.environ["MUJOCO_GL"] == "osmesa"


def test_capture_video_cli_with_mujoco_gl_unset(hopper_checkpoint):
    """As a user on a headless machine: a backend that renders is picked (a video is written), or one line."""
    proc = _cli(os.path.join("algos", "td3.py"), "--eval-only", "--checkpoint", str(hopper_checkpoint),
                "--capture-video", "--eval-episodes", "1", env={"MUJOCO_GL": None, "PYOPENGL_PLATFORM": None})
    videos = hopper_checkpoint / "videos"
    if proc.returncode == 0:
        assert re.search(r"rendering with MUJOCO_GL=(egl|osmesa|glfw)", proc.stdout), proc.stdout
        assert [f for f in os.listdir(videos) if f.endswith(".mp4") and os.path.getsize(videos / f) > 0]
        shutil.rmtree(videos)
    else:
        _one_line_error(proc, "MUJOCO_GL", "libegl1", "libosmesa6")
        assert not videos.exists()


# ---------------------------------------------------------------------------------------------
# 6. Help texts that state a default in words show no contradicting placeholder
# ---------------------------------------------------------------------------------------------
def _option_blocks(text: str) -> list[str]:
    """tyro's --help as one string per option (its wrapped lines joined)."""
    out, cur = [], None
    for raw in text.splitlines():
        line = raw.strip().strip("│").strip()
        if line.startswith("-"):
            if cur:
                out.append(cur)
            cur = line
        elif cur is not None and line and not line.startswith(("╭", "╰", "─")):
            cur += " " + line
        elif cur:
            out.append(cur)
            cur = None
    return out + ([cur] if cur else [])


def _contradictions(text: str) -> list[str]:
    bad = []
    for block in _option_blocks(text):
        m = re.search(r"\(default: ([^)]*)\)\s*$", block)
        if m and m.group(1) in ("''", "-1", "") and re.search(r"\bdefault\b", block[:m.start()]):
            bad.append(block)
    return bad


def test_help_texts_show_no_placeholder_default_against_the_words(monkeypatch):
    import tyro

    assert _contradictions("│ --env-id STR  env; default: the dataset's own (default: '') │")  # the check checks
    monkeypatch.setenv("COLUMNS", "120")
    files = sorted(os.path.join(ROOT, "algos", f) for f in os.listdir(os.path.join(ROOT, "algos"))
                   if f.endswith(".py") and f != "__init__.py") + [os.path.join(ENVS, "collect.py")]
    bad, worded = {}, 0
    for path in files:
        module = runs.load_file(path, f"_help_{os.path.basename(path)[:-3]}")
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
            tyro.cli(module.Args, args=["--help"])
        worded += sum("(optional)" in b and re.search(r"\bdefault\b", b) is not None for b in _option_blocks(out.getvalue()))
        if found := _contradictions(out.getvalue()):
            bad[os.path.basename(path)] = found
    assert not bad, bad
    assert worded >= 12  # td3_bc, bcq, sr_dice (3), ... and envs.collect (4) say "(optional)" there


# ---------------------------------------------------------------------------------------------
# 7. Evaluation log lines stay one line when stdout is not a terminal
# ---------------------------------------------------------------------------------------------
def test_eval_log_lines_do_not_wrap_when_piped(tmp_path):
    proc = _cli(os.path.join("algos", "td3.py"), "--env-id", "Pendulum-v1", "--num-seeds", "6",
                "--total-timesteps", "100", "--eval-freq", "50", "--eval-episodes", "1", "--learning-starts", "50",
                "--batch-size", "8", "--hidden-dim", "8", "--results-dir", str(tmp_path), "--run-name", "r",
                env={"COLUMNS": None})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if "eval return per seed" in line]
    steps = [int(re.search(r"\] step +(\d+) ", line).group(1)) for line in lines]
    assert steps == [0, 50, 100], proc.stdout
    with open(tmp_path / "r" / "eval.csv") as f:
        rows = f.read().splitlines()[1:]
    for line, step in zip(lines, steps):
        returns = [r.split(",")[4] for r in rows if int(r.split(",")[3]) == step]
        assert len(line) > 80 and re.search(r"\(mean -?\d+\.\d\d\)$", line), line  # all on one line
        assert [float(v) for v in line.split("per seed:")[1].split("(mean")[0].split()] == \
            pytest.approx([float(v) for v in returns], abs=0.006)
