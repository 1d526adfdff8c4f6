"""The README, the docs pages and the mkdocs site: short README, no broken link, every page in the nav, the
parity figures of the algorithm table equal to results/parity.md, the home page generated from the README with
links that resolve, and a strict build (where mkdocs is installed: `make docs` installs it; `make test` without
it skips those tests with a reason)."""

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
HAS_MKDOCS = all(importlib.util.find_spec(m) is not None for m in ("mkdocs", "material"))
needs_mkdocs = pytest.mark.skipif(not HAS_MKDOCS, reason="mkdocs-material is not installed (`make docs` installs it)")


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def test_readme_is_at_most_250_lines():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines"


def test_links_are_found_outside_code_only():
    text = textwrap.dedent("""\
        See [a page](usage.md#flags), ![a plot](../results/plots/quick/td7.png "TD7") and
        [a site](https://example.org), [`code in the text`](../algos/td3.py), [top](#top).

        ```bash
        echo "[not a link](missing.md)"
        ```

        Inline `[not a link](missing2.md)` either. [ref]: ../results/parity.md
        [ref2]: ../results/SUMMARY.md
        """)
    assert hooks.links(text) == [
        "usage.md#flags", "../results/plots/quick/td7.png", "https://example.org", "../algos/td3.py", "#top",
        "../results/SUMMARY.md",
    ]
    assert [hooks.relative_path(t) for t in hooks.links(text)] == [
        "usage.md", "../results/plots/quick/td7.png", None, "../algos/td3.py", None, "../results/SUMMARY.md",
    ]


def leads_somewhere(page_dir: Path, path: str) -> bool:
    """A relative link's path leads to a file of the repository, or to docs/ (the site's home page)."""
    resolved = (page_dir / path).resolve()
    return resolved == DOCS or (ROOT in resolved.parents and resolved.is_file())


def test_every_relative_link_leads_to_a_file():
    broken = []
    for md in markdown_files():
        for target in hooks.links(md.read_text(encoding="utf-8")):
            path = hooks.relative_path(target)
            if path is not None and not leads_somewhere(md.parent, path):
                broken.append(f"{md.relative_to(ROOT)}: {target}")
    assert not broken, "links to no file:\n" + "\n".join(broken)


def test_home_page_links_are_the_readmes_made_docs_relative():
    readme = textwrap.dedent("""\
        In [`docs/`](docs/), [TD3](docs/algos/td3.md#flags), [`algos/td3.py`](algos/td3.py), [top](#top),
        ![plot](results/plots/quick/td7.png "TD7"), [web](https://example.org), [me](README.md).

        ```bash
        cat [not a link](docs/usage.md)
        ```
        [ref]: ./results/parity.md
        """)
    assert hooks.links(hooks.home_markdown(readme)) == [
        ".", "algos/td3.md#flags", "../algos/td3.py", "#top", "../results/plots/quick/td7.png", "https://example.org",
        "../README.md", "../results/parity.md"]
    assert "cat [not a link](docs/usage.md)" in hooks.home_markdown(readme)


def test_the_generated_home_pages_links_resolve():
    home = hooks.home_markdown((ROOT / "README.md").read_text(encoding="utf-8"))
    targets = [t for t in hooks.links(home) if hooks.relative_path(t) is not None]
    assert any(t.startswith("algos/") for t in targets) and any(t.startswith("../algos/") for t in targets)
    broken = [t for t in targets if not leads_somewhere(DOCS, hooks.relative_path(t))]
    assert not broken, "links of the home page (README.md made docs-relative) to no file: " + ", ".join(broken)


def nav_pages() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    return re.findall(r"^\s*-\s*(?:[^:\n]+:\s*)?(\S+\.md)\s*$", nav, re.MULTILINE)


def test_nav_lists_every_page_once_and_nothing_else():
    pages = nav_pages()
    assert not (DOCS / "index.md").exists(), "docs/index.md: the home page is generated from README.md (docs/hooks.py)"
    on_disk = sorted([hooks.HOME, *(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))])
    assert len(pages) == len(set(pages)), "a page is listed twice"
    assert sorted(pages) == on_disk, (
        f"in the nav, not on disk: {sorted(set(pages) - set(on_disk))}; "
        f"on disk, not in the nav: {sorted(set(on_disk) - set(pages))}")


def parity_worst() -> dict[str, tuple[float, bool]]:
    """Per file, the worst difference of its rows at tol 1e-9 (float64), and whether every row passes."""
    worst: dict[str, float] = {}
    passes: dict[str, bool] = {}
    for line in (ROOT / "results" / "parity.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 6 or not re.fullmatch(r"[\d.]+e[-+]\d+", cells[4]):
            continue
        name, value, tol = cells[0], float(cells[4]), float(cells[5])
        passes[name] = passes.get(name, True) and value <= tol
        if tol == 1e-9:
            worst[name] = max(worst.get(name, 0.0), value)
    return {name: (worst[name], passes[name]) for name in worst}


def test_parity_column_is_results_parity_md():
    table = parity_worst()
    rows = [line for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if re.search(r"\]\(algos/\w+\.py\)", line)]
    assert len(rows) == len(list((ROOT / "algos").glob("[!_]*.py"))), "one row per file of algos/"
    for row in rows:
        stem = re.search(r"\]\(algos/(\w+)\.py\)", row).group(1)
        shown = row.rstrip().rstrip("|").split("|")[-1].strip().split()[0]
        worst, passing = table[f"{stem}.py"]
        assert shown == f"{worst:.1e}", f"README.md, {stem}: shows {shown}, results/parity.md has {worst:.1e}"
        assert passing, f"{stem}: a row of results/parity.md is above its tolerance"


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=300)


@needs_mkdocs
def test_the_site_builds_in_strict_mode(tmp_path):
    proc = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "algos" / "td3" / "index.html").is_file()
    assert (site / "_repo" / "results" / "plots" / "quick" / "td7.png").is_file()  # the home page's figure
    assert 'src="../_repo/results/plots/quick/td7.png"' in (site / "reproduce" / "index.html").read_text()
    home = (site / "index.html").read_text()  # README.md, its links made the site's
    assert 'src="_repo/results/plots/quick/td7.png"' in home and 'href="algos/td3/"' in home
    assert 'href="_repo/algos/td3.py"' in home and not (site / "_repo" / "README").exists()


def hook_site(tmp_path: Path, readme: str) -> Path:
    """A repository of README.md, docs/other.md and data/ with the hook; returns its mkdocs.yml."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("x\n")
    (tmp_path / "data" / "notes.md").write_text("# Notes\n\nBack [home](../README.md), [docs](../docs/), [x](x.txt).\n")
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n[The files](../README.md#files).\n")
    (tmp_path / "mkdocs.yml").write_text(textwrap.dedent(f"""\
        site_name: t
        theme: {{name: mkdocs}}
        hooks: [{DOCS / 'hooks.py'}]
        nav: [index.md, other.md]
        validation: {{not_found: warn, unrecognized_links: warn, absolute_links: warn, anchors: warn}}
        """))
    return tmp_path / "mkdocs.yml"


README_PAGE = textwrap.dedent("""\
    # Home

    ## Files

    [x](data/x.txt), [notes](data/notes.md#notes), [other](docs/other.md), [docs](docs/).

    ```
    [in code](data/missing.txt)
    ```
    """)


@needs_mkdocs
def test_the_hook_makes_the_home_page_and_serves_repo_files(tmp_path):
    config = hook_site(tmp_path, README_PAGE)
    proc = build(config, tmp_path / "site")
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = tmp_path / "site"
    assert (site / "_repo" / "data" / "x.txt").read_text() == "x\n"
    home = (site / "index.html").read_text()
    assert 'href="_repo/data/x.txt"' in home and 'href="_repo/data/notes/#notes"' in home
    assert 'href="other/"' in home and '<a href="./">docs</a>' in home and "[in code](data/missing.txt)" in home
    notes = (site / "_repo" / "data" / "notes" / "index.html").read_text()  # a served page's links are followed
    assert '<a href="../../../">home</a>' in notes and '<a href="../../../">docs</a>' in notes
    assert '<a href="../x.txt">x</a>' in notes
    assert '<a href="../#files">The files</a>' in (site / "other" / "index.html").read_text()
    assert not (site / "_repo" / "README").exists()


@needs_mkdocs
@pytest.mark.parametrize("case", ["README link to no file", "docs/index.md kept"])
def test_a_broken_home_page_fails_the_build(tmp_path, case):
    readme = README_PAGE + "\n[gone](data/missing.txt)\n" if case == "README link to no file" else README_PAGE
    config = hook_site(tmp_path, readme)
    if case == "docs/index.md kept":
        (tmp_path / "docs" / "index.md").write_text("# A hand-kept copy\n")
    proc = build(config, tmp_path / "site")
    assert proc.returncode != 0
    if case == "README link to no file":
        assert "README.md (the home page) links to 'data/missing.txt'" in proc.stderr
    else:
        assert "docs/index.md exists, but the home page is generated from README.md" in proc.stderr
        assert "Traceback" not in proc.stderr


def test_readme_quotes_the_makefiles_make_test_time():
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    head = make[:make.index("\ntest: ")]
    block = head[head.rindex("\n\n"):]  # the comment just above the target
    comment = " ".join(line.lstrip("# ").strip() for line in block.splitlines() if line.startswith("#"))
    count, fresh = re.search(r"(\d[\d,]*) tests in ([\d,]+) s", comment).groups()
    install = re.search(r"\(([\d,]+) s with the install\)", comment).group(1)
    warm = re.search(r"([\d,]+) s with a warm cache", comment).group(1)
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for quoted in (f"{count} tests in {fresh} s", f"({install} s with the install)", f"{warm} s with a warm"):
        assert quoted in readme, f"the Makefile's comment on `make test` says {quoted!r}; the README does not"
