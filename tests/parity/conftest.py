"""Parity tests: float64 for this process, the authors' code from AUTHORS_DIR, results/parity.md at the end."""

import importlib.util
import json
import os
import shutil
import time

import jax
import pytest

jax.config.update("jax_enable_x64", True)

from tests.parity import harness  # noqa: E402

TORCH_MISSING = "torch is missing: `make parity` installs it (pip install torch==2.13.0, the `parity` extra)"


class _SkippedModule(pytest.Module):
    """A test module that is not imported (it imports torch) and skips with one line."""

    def collect(self):
        pytest.skip(TORCH_MISSING)


if importlib.util.find_spec("torch") is None:
    def pytest_pycollect_makemodule(module_path, parent):
        return _SkippedModule.from_parent(parent, path=module_path)


REPORT_MD = harness.ROOT / "results" / "parity.md"
REPORT_JSON = harness.ROOT / "results" / "parity.json"


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.parity)


@pytest.fixture(autouse=True)
def _torch_and_authors(request):
    """Skip with one line when torch or the authors' repository of the test (its `authors` mark) is missing."""
    import torch
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # small float64 updates: a thread pool costs ~10x the CPU on 2 cores, for nothing
    torch.manual_seed(0)
    mark = request.node.get_closest_marker("authors")
    if mark is not None:
        for repo in mark.args:
            reason = harness.missing_reason(repo)
            if reason:
                pytest.skip(reason)
    yield
    torch.set_default_dtype(torch.float32)


def _is_controller(config) -> bool:
    return not hasattr(config, "workerinput")


def pytest_configure(config):
    """A fragment folder of this session's own, so that parity sessions running at once never drop each other's
    rows; xdist workers, started after this, inherit it through the environment."""
    if _is_controller(config):
        folder = harness.ROOT / "build" / "parity" / f"session-{os.getpid()}-{time.time_ns()}"
        os.environ[harness.FRAGMENTS_ENV] = str(folder)


def _still_exists(nodeid: str) -> bool:
    path, _, name = nodeid.partition("::")
    f = harness.ROOT / path
    return bool(name) and f.is_file() and f"def {name.split('[')[0]}(" in f.read_text()


def pytest_sessionfinish(session, exitstatus):
    """Merge this run's rows into results/parity.json (keyed by file and piece) and rewrite results/parity.md."""
    folder = harness.fragments_dir()
    if not _is_controller(session.config) or not folder.is_dir():
        return
    new = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]
    shutil.rmtree(folder, ignore_errors=True)
    if not new:
        return
    old = json.loads(REPORT_JSON.read_text()) if REPORT_JSON.exists() else []
    ran = {r["test"] for r in new}
    # A test that ran replaces all its old rows (renamed pieces leave none behind); rows of deleted tests go.
    rows = {(r["file"], r["piece"]): r for r in old if r.get("test") not in ran and _still_exists(r.get("test", ""))}
    rows.update({(r["file"], r["piece"]): r for r in new})
    ordered = [rows[k] for k in sorted(rows)]
    tmp = REPORT_JSON.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ordered, indent=1) + "\n")
    os.replace(tmp, REPORT_JSON)
    lines = [
        "# Parity with the authors' code",
        "",
        "Written by `make parity` (tests/parity/): the authors' unchanged code (`AUTHORS_DIR`, the commits in",
        "docs/parity.md) and this project's file run side by side in float64 on the same initial weights, batch and",
        "random draws. *worst* is the largest relative difference, max |ours − theirs| / max |theirs|, of any",
        "compared tensor or value over all iterations; a row passes at or below *tol*.",
        "",
        "| file | piece | compared | iterations | worst | tol | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ordered:
        status = "" if r["worst"] <= r["tol"] else " **FAIL**"
        lines.append(f"| {r['file']} | {r['piece']} | {', '.join(r['compared'])} | {r['iterations']:,} | "
                     f"{r['worst']:.1e}{status} | {r['tol']:.0e} | {r['note']} |")
    tmp = REPORT_MD.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, REPORT_MD)
