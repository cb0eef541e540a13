"""The layer rules of docs/ARCHITECTURE.md, as import-linter contracts (pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter is a test dependency (pyproject.toml [test]); scripts/setup installs it"
    run = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The check can fail: an edge importing another edge breaks the layers contract."""
    pkg = tmp_path / "ctfleet"
    shutil.copytree(ROOT / "ctfleet", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (pkg / "routers" / "zz_bad.py").write_text("import ctfleet.monitors.exporter\n", encoding="utf-8")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    run = subprocess.run([exe, "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert run.returncode != 0, run.stdout
    assert "ctfleet.routers.zz_bad -> ctfleet.monitors.exporter" in run.stdout
