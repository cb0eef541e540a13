"""Shared fixtures: the real project, and throw-away copies of its data to break on purpose."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from booted import fleet  # noqa: F401  (the booted test fleet, one per session)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _cli_profile_is_per_invocation():
    """`ctfleet --profile F` keeps F in ctfleet.cli.main._state for the process (one command per process);
    tests invoke many commands in one process, some on a sub-app without the main callback: each test
    starts and ends with no profile remembered, so one test's profile never reaches another's commands."""
    import sys

    main = sys.modules.get("ctfleet.cli.main")
    if main is not None:
        main._state["profile"] = None
    yield
    main = sys.modules.get("ctfleet.cli.main")
    if main is not None:
        main._state["profile"] = None


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def project():
    """The whole project with the generated national fleet (loaded once)."""
    from ctfleet.project import load_project

    return load_project(root=ROOT)


@pytest.fixture(scope="session")
def registry_only():
    from ctfleet.project import load_project

    return load_project(root=ROOT, with_fleet=False)


@pytest.fixture()
def data_copy(tmp_path: Path) -> Path:
    """A copy of inventory/ and standards/ (and the default profile) to mutate in a test."""
    dst = tmp_path / "proj"
    dst.mkdir()
    shutil.copytree(ROOT / "inventory", dst / "inventory", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    shutil.copytree(ROOT / "standards", dst / "standards")
    shutil.copy(ROOT / "ctfleet.yaml", dst / "ctfleet.yaml")
    return dst


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    """Replace text in a copied data file; fail loudly if the text is not there."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


@pytest.fixture(scope="session")
def postgresql(tmp_path_factory):
    """A real PostgreSQL (Debian package) on loopback for the whole session; stopped after.
    Absent, it fails (never skips): scripts/setup installs it."""
    from ctfleet.lab.procs.postgres import PostgreSQL

    pg = PostgreSQL(tmp_path_factory.mktemp("postgresql")).start()
    try:
        yield pg
    finally:
        pg.stop()
