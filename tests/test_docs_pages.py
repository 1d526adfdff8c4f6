"""docs/algos/<name>.md: one page per algos/*.py, generated blocks in sync (docs/pages.py), flags that exist."""

import ast
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "docs"))
sys.dont_write_bytecode = True  # no docs/__pycache__ for the site build to pick up
import pages  # noqa: E402

sys.dont_write_bytecode = False

FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)(?!\w)")


# ---------------------------------------------------------------------------------------------
# The flags of each program, read with ast (no imports, no --help runs)
# ---------------------------------------------------------------------------------------------
def _dataclass_flags(path: str, cls: str) -> set[str]:
    tree = ast.parse(open(path, encoding="utf-8").read())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    flags = {"help"}
    for s in node.body:
        if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name):
            name = s.target.id.replace("_", "-")
            flags.add(name)
            if ast.unparse(s.annotation) == "bool":
                flags.add(f"no-{name}")
    return flags


def _argparse_flags(path: str) -> set[str]:
    text = open(path, encoding="utf-8").read()
    return {"help"} | set(re.findall(r"add_argument\(\s*\"--([a-z0-9-]+)\"", text))


def program_flags(root: str = ROOT) -> dict[str, set[str]]:
    shared = _dataclass_flags(os.path.join(root, "envs", "runs.py"), "RunArgs")
    flags = {name: shared | _dataclass_flags(os.path.join(root, "algos", f"{name}.py"), "Args")
             for name in pages.algo_names(root)}
    flags["envs.collect"] = _dataclass_flags(os.path.join(root, "envs", "collect.py"), "Args")
    flags["reproduce.launch"] = _argparse_flags(os.path.join(root, "reproduce", "launch.py"))
    return flags


def unknown_flags(text: str, page: str, flags: dict[str, set[str]]) -> list[str]:
    """`--flag`s of the hand-written parts of a page that the program they are given to lacks: command lines
    (fenced blocks) by the program each line runs, table rows by the page's file, prose by any program."""
    text = pages.BLOCK_RE.sub("", text)
    everything = set().union(*flags.values())
    bad = []
    fenced = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    for block in fenced:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
            m = re.search(r"algos/(\w+)\.py", line)
            prog = (m.group(1) if m else "envs.collect" if "-m envs.collect" in line
                    else "reproduce.launch" if "-m reproduce.launch" in line else page if line.startswith("make") else None)
            for f in FLAG.findall(line):
                if prog is None or f not in flags.get(prog, set()):
                    bad.append(f"{page}: command line: --{f} ({prog or 'no known program'})")
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", text, flags=re.S | re.M)
    for line in prose.splitlines():
        allowed = flags[page] if line.startswith("|") else everything
        bad += [f"{page}: {'table' if line.startswith('|') else 'text'}: --{f}" for f in FLAG.findall(line)
                if f not in allowed]
    return bad


def _copy_inputs(dst) -> None:
    for pattern in pages.INPUTS + (f"{pages.PAGES}/*.md",):
        for path in glob.glob(os.path.join(ROOT, pattern)):
            rel = os.path.relpath(path, ROOT)
            os.makedirs(os.path.dirname(os.path.join(dst, rel)), exist_ok=True)
            shutil.copy(path, os.path.join(dst, rel))


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
def test_committed_pages_are_up_to_date():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "pages.py"), "--check"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_page_for_every_algorithm_file_and_no_other():
    algos = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "algos", "*.py"))} - {"__init__"}
    assert set(pages.page_names(ROOT)) == algos
    for name in algos:
        text = open(os.path.join(ROOT, pages.PAGES, f"{name}.md"), encoding="utf-8").read()
        assert all(pages.START.format(b) in text for b in pages.BLOCKS), name
        assert f"](../../algos/{name}.py)" in text, f"{name}.md does not link its file"


def test_changed_header_parity_row_or_file_set_makes_the_check_fail(tmp_path):
    _copy_inputs(tmp_path)
    assert pages.stale(str(tmp_path)) == []
    td3 = tmp_path / "algos" / "td3.py"
    td3.write_text(td3.read_text().replace("Deviations and notes", "Deviations and notes (a new one)", 1))
    parity = tmp_path / "results" / "parity.md"
    parity.write_text(parity.read_text().replace("| bcq.py | update:", "| bcq.py | UPDATE:", 1))
    shutil.copy(tmp_path / "algos" / "ddpg.py", tmp_path / "algos" / "ddpg2.py")
    (tmp_path / "docs" / "algos" / "td3_pal.md").unlink()
    assert pages.stale(str(tmp_path)) == ["docs/algos/bcq.md: parity", "docs/algos/ddpg2.md: missing",
                                          "docs/algos/td3.md: header", "docs/algos/td3_pal.md: missing"]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "pages.py"), "--check", "--root", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "stale: docs/algos/td3.md: header" in r.stdout
    # the generator mends them: blocks rewritten, missing pages created with every block
    assert pages.main(["--root", str(tmp_path)]) == 0
    assert pages.stale(str(tmp_path)) == []
    assert "Deviations and notes (a new one)" in (tmp_path / "docs" / "algos" / "td3.md").read_text()
    assert "| bcq.py | UPDATE:" in (tmp_path / "docs" / "algos" / "bcq.md").read_text()
    # a page whose file is gone is reported, not deleted
    (tmp_path / "algos" / "ddpg2.py").unlink()
    assert pages.stale(str(tmp_path)) == ["docs/algos/ddpg2.md: no algos/ddpg2.py"]
    assert pages.main(["--root", str(tmp_path)]) == 1


def test_generated_blocks_pick_the_right_sources():
    # parity: only the file's own rows; bench: td3_bc_sparse_cpu.md is td3_bc_sparse's, not td3's or td3_bc's
    parity = pages.parity_block(ROOT, "td3")
    rows = [l for l in parity.splitlines() if l.startswith("| ") and not l.startswith("| file")]
    assert rows and all(r.startswith("| td3.py |") for r in rows)
    assert "td3_bc_sparse_cpu.md" in pages.bench_block(ROOT, "td3_bc_sparse")
    assert "td3_bc_sparse_cpu.md" not in pages.bench_block(ROOT, "td3")
    assert pages._bench_owner("td3_bc_sparse_cpu", pages.algo_names(ROOT)) == "td3_bc_sparse"
    assert pages._bench_owner("drq_fade_cpu", pages.algo_names(ROOT)) == "drq"
    # curves: a plot for every quick grid that runs the file, and only those
    curves = pages.curves_block(ROOT, "td3_pal")
    assert "results/plots/quick/lap_pal_td3.png" in curves and "results/plots/quick/td3.png" not in curves


def test_counts_are_singular_or_plural(tmp_path):
    grids = tmp_path / "reproduce" / "grids"
    grids.mkdir(parents=True)
    (grids / "one.toml").write_text('[scale.quick]\nalgos = ["td3"]\nenvs = ["Hopper-v4"]\nseeds = 1\n'
                                    'budgets = [15_000]\n')
    (grids / "two.toml").write_text('[scale.quick]\nalgos = ["td3"]\nenvs = ["Hopper-v4"]\nseeds = 2\n'
                                    'budgets = [5_000, 10_000]\n')
    curves = pages.curves_block(str(tmp_path), "td3")
    assert "Hopper-v4, 1 seed, budget 15,000;" in curves and "Hopper-v4, 2 seeds, budgets 5,000, 10,000;" in curves
    bench = tmp_path / "results" / "bench"
    bench.mkdir(parents=True)
    table = "| algo | x |\n|---|---|\n" + "".join(f"| td3 | {i} |\n" for i in range(pages.BENCH_ROWS + 1))
    (bench / "td3_cpu.md").write_text("# TD3 speed\n\n" + table)
    (tmp_path / "algos").mkdir()
    (tmp_path / "algos" / "td3.py").write_text('"""TD3."""\n')
    assert "(1 more row in the file.)" in pages.bench_block(str(tmp_path), "td3")


def test_tomli_stands_in_for_tomllib_before_python_3_11(monkeypatch):
    fake = types.ModuleType("tomli")
    monkeypatch.setitem(sys.modules, "tomli", fake)
    monkeypatch.setattr(sys, "version_info", (3, 10, 14, "final", 0))
    spec = importlib.util.spec_from_file_location("pages_py310", os.path.join(ROOT, "docs", "pages.py"))
    module = importlib.util.module_from_spec(spec)
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = False
    assert module.tomllib is fake


def test_every_flag_on_a_page_exists():
    flags = program_flags()
    bad = []
    for name in pages.page_names(ROOT):
        bad += unknown_flags(open(os.path.join(ROOT, pages.PAGES, f"{name}.md"), encoding="utf-8").read(), name, flags)
    assert bad == []


def test_a_renamed_flag_is_caught():
    flags = program_flags()
    page = "```bash\n.venv/bin/python algos/td3.py --env-id Hopper-v4 \\\n    --policy-delay 2   # renamed\n" \
           ".venv/bin/python -m envs.collect --recipe medium --policy-noise 0.1\n```\n" \
           "| `--expl-noise` | 0.1 |\n| `--lmbda` | 0.1 |\n"
    assert unknown_flags(page, "td3", flags) == [
        "td3: command line: --policy-delay (td3)", "td3: command line: --policy-noise (envs.collect)",
        "td3: table: --lmbda"]
    assert "no-save-model" in flags["td3"] and "scale" in flags["reproduce.launch"]


@pytest.mark.parametrize("argv, message", [(["--bogus"], "unrecognized arguments"),
                                           (["no_such_algo"], "no algos/<name>.py for: no_such_algo"),
                                           (["--check", "td3", "no_such_algo"], "no algos/<name>.py for: no_such_algo")])
def test_bad_input_is_one_line_and_status_2(argv, message):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "docs", "pages.py"), *argv], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr and not r.stdout
