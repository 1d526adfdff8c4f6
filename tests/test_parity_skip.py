"""`make parity` without the authors' code: every parity test skips with one line saying what is missing and
how to get it (tests/parity/harness.py), and the run still succeeds."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_parity_tests_skip_with_one_line_without_the_authors_code(tmp_path):
    env = {**os.environ, "AUTHORS_DIR": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-rs",
                          "tests/parity/test_td3.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips, out.stdout
    if importlib.util.find_spec("torch") is None:
        expected = "torch is missing: `make parity` installs it"
    else:
        expected = f"AUTHORS_DIR={tmp_path} has no TD3/: clone github.com/sfujim/TD3 there at 34770cc"
    assert all(expected in line for line in skips), out.stdout
    assert "passed" not in out.stdout.splitlines()[-1]
