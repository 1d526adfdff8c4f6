"""`make setup`: a quiet install of exact versions (issue 29).

The lock pins setuptools (it builds the editable install, so an unpinned one changes under us), pyproject's
license is an SPDX string (the TOML-table form warns in setuptools >= 77), the `tb` extra brings the viewer and
the docs extra has exact versions.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins(path: Path) -> dict[str, Version]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_lock_pins_setuptools_that_meets_the_build_requirement():
    pins = _pins(ROOT / "requirements.lock")
    assert "setuptools" in pins
    for req in map(Requirement, _pyproject()["build-system"]["requires"]):
        if req.name == "setuptools":
            assert req.specifier.contains(pins["setuptools"]), (req, pins["setuptools"])


def test_license_is_an_spdx_string():
    from packaging.licenses import canonicalize_license_expression

    license = _pyproject()["project"]["license"]
    assert isinstance(license, str) and canonicalize_license_expression(license) == license


def test_building_the_project_prints_no_deprecation(tmp_path):
    # What `make setup`'s editable install runs, without installing: setuptools' verbose build output.
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    assert "deprecated" not in text.lower(), re.findall(r".*deprecated.*", text, flags=re.I)[:3]


def test_extras_are_locked_exactly():
    extras = _pyproject()["project"]["optional-dependencies"]
    lock = _pins(ROOT / "requirements.lock")
    docs_lock = _pins(ROOT / "requirements-docs.lock")
    # --tb writes with tensorboardX; the viewer is tensorboard.
    assert {Requirement(r).name for r in extras["tb"]} >= {"tensorboardX", "tensorboard"}
    for group, pins in (("tb", lock), ("docs", docs_lock)):
        for req in map(Requirement, extras[group]):
            name = req.name.lower().replace("_", "-")
            assert name in pins, f"{group}: {name} not in its lock"
            assert req.specifier.contains(pins[name]), (group, req, pins[name])
    # The docs lock adds to requirements.lock and never pins a package differently.
    for name, version in docs_lock.items():
        assert lock.get(name, version) == version, name


def test_makefile_installs_quietly():
    # -qq: errors only. At -q pip prints a warning per package about local index folders of this machine's pip config.
    installs = [ln for ln in (ROOT / "Makefile").read_text().splitlines() if "pip install" in ln]
    assert installs
    assert all(" -qq " in ln for ln in installs), [ln for ln in installs if " -qq " not in ln]
