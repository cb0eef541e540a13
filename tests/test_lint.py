"""pyflakes-level lint (ruff's F rules) over the project's Python: unused imports, undefined
names and the like are bugs waiting, so the suite fails on them."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_ruff_pyflakes_rules_pass():
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F", "--no-cache",
                          "ctfleet", "tests", "bench", "infra", "inventory"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
