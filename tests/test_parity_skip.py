"""`make parity` without torch: every parity test module skips with one line saying what is missing and how to
get it (tests/parity/conftest.py), and the run succeeds. (Without the authors' code: tests/parity/test_convert.py.)"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# pytest in a process where `import torch` fails, as on a machine without the `parity` extra
NO_TORCH = """
import importlib.util, sys
import pytest
sys.modules["torch"] = None
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "torch" else find_spec(name, *a)
sys.exit(pytest.main(sys.argv[1:]))
"""


def run_parity(args, env=None):
    return subprocess.run([sys.executable, "-c", NO_TORCH, "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-rs",
                           *args], cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
                          capture_output=True, text=True, timeout=300)


def test_parity_tests_skip_with_one_line_without_torch():
    out = run_parity(["tests/parity/test_td3.py", "tests/parity/test_convert.py"])
    assert out.returncode == 5, out.stdout + out.stderr  # no test collected: `make parity` counts that as success
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("torch is missing: `make parity` installs it" in line for line in skips), out.stdout
    assert "2 skipped" in out.stdout.splitlines()[-1] and "Traceback" not in out.stdout + out.stderr
