"""Router configuration backups in a git repository kept outside the project.

Two copies of every router's running configuration, side by side::

    <region>/<ct slug>/<hostname>.cfg       masked (secrets shown as <secret>): for diffs, review, display
    <region>/<ct slug>/<hostname>.cfg.age   the full configuration, encrypted with age to the
                                            settings' ``backup_recipients`` (public keys): for restores

The masked copy has the lines that change on every read dropped, so ``git log -p
04/04-161-01-01/`` shows what changed on a router and when. The encrypted copy is
rewritten only when the full configuration changed (a keyed fingerprint, kept outside
the history, tells), so a changed secret makes a commit of the ``.age`` file alone and
never shows in clear. The scheduled job only needs the public keys: the identity that
decrypts (``backup_identity``, a credentials reference) is needed for a restore only.
One commit per run, naming the CTs whose routers changed (and the device's own "last
change by" when it says)::

    backup 2026-11-27T08:00Z: 2 of 3 routers changed

    01.511.01.0 Assilah: r-01-511-01-0 (device: last change at 07:55:12 UTC Fri Nov 27 2026 by admin)
    01.511.01.1 ...: r-01-511-01-1
    unchanged: 1; failed: 0

When each router was last fetched (changed or not: that is the backup's age, RTR-7)
is kept in ``.git/ctfleet-backups.json``, beside the history and outside it, so an
unchanged configuration does not make a commit; :func:`write_metrics` turns it into
node_exporter textfile metrics. Plain ``git`` through subprocess; age through pyrage
(the Rust ``rage`` implementation of the age format, same files as the ``age`` CLI).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import subprocess
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.models import CT, Device
from ctfleet.core.secrets import Secret
from ctfleet.results import atomic_write_text
from ctfleet.routers.settings import check_backup_path

STATE = "ctfleet-backups.json"
FINGERPRINT_KEY = "ctfleet-backups.key"  # keys the fingerprints of full configurations; never committed
SEALED = ".age"


# ---------------------------------------------------------------- age encryption
def seal(text: str, recipients: Sequence[str]) -> str:
    """``text`` encrypted to every recipient (``age1...``), ASCII-armoured (diffable as a blob)."""
    import pyrage

    try:
        keys = [pyrage.x25519.Recipient.from_str(r) for r in recipients]
    except Exception:  # noqa: BLE001 - pyrage.RecipientError; the value is a public key, safe to name
        raise InputError(Problem("router settings", f"backup_recipients: not age public keys: {list(recipients)}",
                                 key="backup_recipients", valid="age1... (ctfleet routers keygen prints one)")) from None
    return pyrage.encrypt(text.encode("utf-8"), keys, armored=True).decode("ascii")


def unseal(armored: str | bytes, identity: Secret, where: str) -> Secret:
    """The full configuration behind an encrypted copy, as a :class:`Secret`."""
    import pyrage

    # An identity file as ``ctfleet routers keygen`` (or age-keygen) writes it: comments, then the key.
    lines = [ln.strip() for ln in identity.reveal().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        ident = pyrage.x25519.Identity.from_str(lines[-1] if lines else "")
    except Exception:  # noqa: BLE001
        raise InputError(Problem("backup_identity", "not an age identity (value not shown)",
                                 valid="AGE-SECRET-KEY-1... (ctfleet routers keygen writes one)")) from None
    data = armored.encode("ascii") if isinstance(armored, str) else armored
    try:
        return Secret(pyrage.decrypt(data, [ident]).decode("utf-8"))
    except Exception:  # noqa: BLE001
        raise InputError(Problem(where, "cannot decrypt the encrypted copy with backup_identity",
                                 valid="the identity whose public key is in backup_recipients at the time of that backup")) from None


def new_identity() -> tuple[Secret, str]:
    """A new age key pair: (identity ``AGE-SECRET-KEY-1...``, recipient ``age1...``)."""
    import pyrage

    ident = pyrage.x25519.Identity.generate()
    return Secret(str(ident)), str(ident.to_public())


@dataclass(frozen=True)
class Saved:
    path: str  # relative to the repository
    changed: bool  # masked or encrypted copy rewritten
    sealed: bool = False  # the encrypted full copy is kept


@dataclass(frozen=True)
class Revision:
    """One router's backup at one commit."""

    commit: str
    when: str
    masked: str
    sealed: str | None  # armoured age file, or None when that backup kept no full copy


class BackupStore:
    def __init__(self, path: Path, project_root: Path | None = None, operator: str | None = None,
                 recipients: Sequence[str] = ()):
        self.path = check_backup_path(Path(path), project_root) if project_root else Path(path).resolve()
        self.operator = operator or os.environ.get("CTFLEET_OPERATOR") or _user()
        self.recipients = tuple(recipients)
        self._lock = threading.Lock()
        self._fetched: dict[str, dict] = {}
        self._run_changes: dict[str, tuple[CT, Device, str | None]] = {}
        self._run_paths: set[str] = set()
        self._run_seen = 0
        self._run_failed = 0

    # ---- repository
    def init(self) -> "BackupStore":
        if not (self.path / ".git").is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            self._git("init", "-q", "-b", "main")
            atomic_write_text(self.path / "README.md", "Router configuration backups written by `ctfleet routers backup`.\n"
                              "Layout: <region>/<ct slug>/<hostname>.cfg (secrets masked as <secret>) and "
                              "<hostname>.cfg.age (the full configuration, age-encrypted).\n"
                              "Restore: ctfleet routers restore --ct CODE [--rev R]\n")
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

    def _fingerprint(self, full: str) -> str:
        """A keyed fingerprint of a full configuration: tells a change without keeping it in clear
        (a plain hash of a short secret-bearing text could be brute-forced)."""
        key_path = self.path / ".git" / FINGERPRINT_KEY
        with self._lock:
            if not key_path.exists():
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(secrets.token_bytes(32))
        return hmac.new(key_path.read_bytes(), full.encode("utf-8"), hashlib.sha256).hexdigest()

    # ---- one run
    def relpath(self, device: Device, ct: CT) -> str:
        return f"{ct.region_code}/{ct.slug}/{device.hostname}.cfg"

    def save(self, device: Device, ct: CT, text: str, last_change_by: str | None = None,
             at: datetime | None = None, full: Secret | None = None) -> Saved:
        """Write one router's masked configuration and, with recipients, its encrypted full one
        (thread-safe; committed by :meth:`commit`)."""
        rel = self.relpath(device, ct)
        path = self.path / rel
        old = path.read_text(encoding="utf-8") if path.exists() else None
        changed = old != text
        if changed:
            atomic_write_text(path, text)
        touched = [rel] if changed else []
        fp = None
        if full is not None and self.recipients:
            fp = self._fingerprint(full.reveal())
            sealed_path = self.path / (rel + SEALED)
            if fp != self._state().get(device.hostname, {}).get("fp") or not sealed_path.exists():
                atomic_write_text(sealed_path, seal(full.reveal(), self.recipients))
                touched.append(rel + SEALED)
        with self._lock:
            self._run_seen += 1
            self._fetched[device.hostname] = {"at": (at or datetime.now(timezone.utc)).isoformat(), "path": rel,
                                              **({"fp": fp} if fp else {})}
            if touched:
                self._run_changes[device.hostname] = (ct, device, last_change_by)
                self._run_paths.update(touched)
        return Saved(rel, bool(touched), fp is not None)

    def failed(self) -> None:
        with self._lock:
            self._run_failed += 1

    def commit(self, when: datetime | None = None) -> str | None:
        """One commit for the run (when something changed); records every fetch time."""
        when = when or datetime.now(timezone.utc)
        state = self._state()
        for host, entry in self._fetched.items():
            state[host] = {**state.get(host, {}), **entry}
        atomic_write_text(self.path / ".git" / STATE, json.dumps(state, indent=1, sort_keys=True) + "\n")
        changes, touched, seen, failed = dict(self._run_changes), sorted(self._run_paths), self._run_seen, self._run_failed
        self._fetched.clear()
        self._run_changes.clear()
        self._run_paths.clear()
        self._run_seen = self._run_failed = 0
        if not changes:
            return None
        self._git("add", "-A", "--", *touched)
        lines = []
        for ct, d, by in sorted(changes.values(), key=lambda x: (x[0].code, x[1].hostname)):
            only_sealed = self.relpath(d, ct) not in touched
            lines.append(f"{ct.code} {ct.name_fr}: {d.hostname}" + (f" (device: last change at {by})" if by else "")
                         + (" (encrypted copy only: a secret changed)" if only_sealed else ""))
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

    def log(self, *paths: str, limit: int = 20) -> str:
        return self._git("log", f"-{limit}", "--format=%h %ad %an%n    %s%n%b", "--date=iso-strict", "--", *paths)

    def revision(self, device: Device, ct: CT, rev: str | None = None) -> Revision:
        """The router's backup at ``rev`` (a commit, ``HEAD~2``, a tag...; default: the latest that has it)."""
        rel = self.relpath(device, ct)
        if not (self.path / ".git").is_dir():
            raise InputError(Problem(str(self.path), "no backup repository here", valid="run ctfleet routers backup first"))
        spec = rev or "HEAD"
        commit = self._git("log", "-1", "--format=%H %cI", spec, "--", rel, rel + SEALED, check=False).split()
        if not commit:
            raise InputError(Problem(f"{self.path} {spec}", f"no backup of {device.hostname} at or before this revision",
                                     valid=f"a revision from: git -C {self.path} log -- {rel}"))
        sha, when = commit  # ``rev`` itself may not touch this router: its backup then is the latest before it
        masked = self._git("show", f"{sha}:{rel}")
        sealed = self._git("show", f"{sha}:{rel}{SEALED}", check=False) or None
        return Revision(sha, when, masked, sealed)

    def history(self) -> Iterable[tuple[str, str, bytes]]:
        """Every blob ever committed, as (commit, path, content): what a secrets scan must read."""
        for sha in self._git("rev-list", "--all").split():
            for line in self._git("ls-tree", "-r", sha).splitlines():
                meta, path = line.split("\t", 1)
                blob = meta.split()[2]
                data = subprocess.run(["git", "-C", str(self.path), "cat-file", "blob", blob], capture_output=True).stdout
                yield sha, path, data


# ---------------------------------------------------------------- node_exporter textfile
@dataclass(frozen=True)
class BackupMetric:
    labels: dict[str, str]
    last_success: datetime | None
    max_age_hours: float | None  # the norm (RTR-7); None when the CT has none


def write_metrics(path: Path, rows: Iterable[BackupMetric], now: datetime | None = None) -> Path:
    """node_exporter textfile with, per router, the last successful backup time and the norm::

        ctfleet_router_backup_last_success_timestamp_seconds{ct="01.511.01.0",...,device="r-01"} 1.79e+09
        ctfleet_router_backup_max_age_seconds{ct="01.511.01.0",...,device="r-01"} 86400
        ctfleet_router_backup_run_timestamp_seconds 1.79e+09

    The age itself grows between runs, so Prometheus computes it (recording rule
    ``ctfleet_router_backup_age_seconds`` in ``monitors/rules/backups.rules.yml``): a job
    that stopped shows a growing age, not a frozen one. Written atomically by prometheus_client.
    """
    from prometheus_client import CollectorRegistry, write_to_textfile
    from prometheus_client.core import GaugeMetricFamily

    from ctfleet.core.conventions import (
        ROUTER_BACKUP_LAST_SUCCESS,
        ROUTER_BACKUP_MAX_AGE,
        ROUTER_BACKUP_RUN,
    )

    rows = list(rows)
    now = now or datetime.now(timezone.utc)

    class _Collector:
        def collect(self):
            names = list(rows[0].labels) if rows else []
            last = GaugeMetricFamily(ROUTER_BACKUP_LAST_SUCCESS, "Unix time of the router's last successful configuration backup.",
                                     labels=names)
            norm = GaugeMetricFamily(ROUTER_BACKUP_MAX_AGE, "The norm: oldest a router's backup may be (RTR-7), in seconds.",
                                     labels=names)
            for r in rows:
                if r.last_success is not None:
                    last.add_metric([r.labels[n] for n in names], r.last_success.timestamp())
                if r.max_age_hours is not None:
                    norm.add_metric([r.labels[n] for n in names], float(r.max_age_hours) * 3600)
            yield last
            yield norm
            yield GaugeMetricFamily(ROUTER_BACKUP_RUN, "Unix time the backup job last ran.", value=now.timestamp())

    reg = CollectorRegistry()
    reg.register(_Collector())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), reg)
    return path


def _user() -> str:
    try:
        import getpass

        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "ctfleet"
