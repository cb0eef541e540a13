"""Router configuration backups in a git repository kept outside the project.

Layout: ``<region>/<ct slug>/<hostname>.cfg``, each the router's running configuration
with secrets masked (:func:`ctfleet.routers.configtext.mask`) and the lines that change
on every read dropped, so ``git log -p 04/04-161-01-01/`` shows what changed on a
router and when, and ``git blame`` which run saw it first. One commit per run, naming
the CTs whose routers changed (and the device's own "last change by" when it says)::

    backup 2026-11-27T08:00Z: 2 of 3 routers changed

    01.511.01.0 Assilah: r-01-511-01-0 (device: last change at 07:55:12 UTC Fri Nov 27 2026 by admin)
    01.511.01.1 ...: r-01-511-01-1
    unchanged: 1; failed: 0

When each router was last fetched (changed or not: that is the backup's age, RTR-7)
is kept in ``.git/ctfleet-backups.json``, beside the history and outside it, so an
unchanged configuration does not make a commit. Plain ``git`` through subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.models import CT, Device
from ctfleet.results import atomic_write_text
from ctfleet.routers.settings import check_backup_path

STATE = "ctfleet-backups.json"


@dataclass(frozen=True)
class Saved:
    path: str  # relative to the repository
    changed: bool


class BackupStore:
    def __init__(self, path: Path, project_root: Path | None = None, operator: str | None = None):
        self.path = check_backup_path(Path(path), project_root) if project_root else Path(path).resolve()
        self.operator = operator or os.environ.get("CTFLEET_OPERATOR") or _user()
        self._lock = threading.Lock()
        self._fetched: dict[str, dict] = {}
        self._run_changes: dict[str, tuple[CT, Device, str | None]] = {}
        self._run_seen = 0
        self._run_failed = 0

    # ---- repository
    def init(self) -> "BackupStore":
        if not (self.path / ".git").is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            self._git("init", "-q", "-b", "main")
            atomic_write_text(self.path / "README.md", "Router configuration backups written by `ctfleet routers backup`.\n"
                              "Secrets are masked as <secret>. Layout: <region>/<ct slug>/<hostname>.cfg\n")
            self._git("add", "README.md")
            self._commit("backup repository created")
        return self

    def _git(self, *args: str, check: bool = True) -> str:
        env = dict(os.environ, GIT_AUTHOR_NAME=self.operator, GIT_AUTHOR_EMAIL=f"{self.operator}@ctfleet",
                   GIT_COMMITTER_NAME=self.operator, GIT_COMMITTER_EMAIL=f"{self.operator}@ctfleet",
                   GIT_TERMINAL_PROMPT="0")
        r = subprocess.run(["git", "-C", str(self.path), "-c", "commit.gpgsign=false", *args],
                           capture_output=True, text=True, env=env)
        if check and r.returncode != 0:
            raise InputError(Problem(str(self.path), f"git {args[0]} failed: {r.stderr.strip()}",
                                     valid="a git repository ctfleet may write to"))
        return r.stdout

    def _commit(self, message: str) -> str:
        self._git("commit", "-q", "-m", message)
        return self._git("rev-parse", "HEAD").strip()

    # ---- one run
    def relpath(self, device: Device, ct: CT) -> str:
        return f"{ct.region_code}/{ct.slug}/{device.hostname}.cfg"

    def save(self, device: Device, ct: CT, text: str, last_change_by: str | None = None,
             at: datetime | None = None) -> Saved:
        """Write one router's masked configuration (thread-safe; committed by :meth:`commit`)."""
        rel = self.relpath(device, ct)
        path = self.path / rel
        old = path.read_text(encoding="utf-8") if path.exists() else None
        changed = old != text
        if changed:
            atomic_write_text(path, text)
        with self._lock:
            self._run_seen += 1
            self._fetched[device.hostname] = {"at": (at or datetime.now(timezone.utc)).isoformat(), "path": rel}
            if changed:
                self._run_changes[device.hostname] = (ct, device, last_change_by)
        return Saved(rel, changed)

    def failed(self) -> None:
        with self._lock:
            self._run_failed += 1

    def commit(self, when: datetime | None = None) -> str | None:
        """One commit for the run (when something changed); records every fetch time."""
        when = when or datetime.now(timezone.utc)
        state = self._state()
        state.update(self._fetched)
        atomic_write_text(self.path / ".git" / STATE, json.dumps(state, indent=1, sort_keys=True) + "\n")
        changes, seen, failed = dict(self._run_changes), self._run_seen, self._run_failed
        self._fetched.clear()
        self._run_changes.clear()
        self._run_seen = self._run_failed = 0
        if not changes:
            return None
        self._git("add", "-A", "--", *sorted({self.relpath(d, ct) for ct, d, _ in changes.values()}))
        lines = []
        for ct, d, by in sorted(changes.values(), key=lambda x: (x[0].code, x[1].hostname)):
            lines.append(f"{ct.code} {ct.name_fr}: {d.hostname}" + (f" (device: last change at {by})" if by else ""))
        total = seen + failed
        head = f"backup {when:%Y-%m-%dT%H:%MZ}: {len(changes)} of {total} router{'s' if total != 1 else ''} changed"
        body = "\n".join(lines) + f"\nunchanged: {seen - len(changes)}; failed: {failed}"
        return self._commit(head + "\n\n" + body)

    # ---- reading
    def _state(self) -> dict:
        p = self.path / ".git" / STATE
        return json.loads(p.read_text()) if p.exists() else {}

    def last_fetch(self, hostname: str) -> datetime | None:
        entry = self._state().get(hostname)
        return datetime.fromisoformat(entry["at"]) if entry else None

    def age_hours(self, hostname: str, now: datetime | None = None) -> float | None:
        at = self.last_fetch(hostname)
        if at is None:
            return None
        return round(((now or datetime.now(timezone.utc)) - at).total_seconds() / 3600, 2)

    def ages(self, now: datetime | None = None) -> dict[str, float]:
        now = now or datetime.now(timezone.utc)
        return {h: round((now - datetime.fromisoformat(e["at"])).total_seconds() / 3600, 2) for h, e in self._state().items()}

    def log(self, *paths: str, limit: int = 20) -> str:
        return self._git("log", f"-{limit}", "--format=%h %ad %an%n    %s%n%b", "--date=iso-strict", "--", *paths)


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "ctfleet"
