"""Audit reports -> the shared compliance model, and the pull-mode queue's delivery.

Reports come from two places: the event stream of a push run (:class:`RunState`), and
files hosts queued while offline (``/var/spool/ctfleet/audit/<run>-<phase>-<role>.json``,
fetched by ``playbooks/collect_audits.yml``). Both become :class:`ControlResult` rows
(source ``audit``) merged into the results store, one batch per host
(``audit/<host>.jsonl``): a control observed again replaces its older row; controls not
observed this time keep theirs (a ``--tags SYS-3`` audit does not erase the others).

Delivery of queued reports is exactly-once: a ledger (``audit/.delivered``) remembers
every (host, file) already merged; a file fetched twice (the link dropped before the host
deleted it) is skipped, and hosts delete only files the ledger holds (the ack).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ctfleet.core.compliance import ControlResult, Source, Status
from ctfleet.results import ResultsStore, atomic_write_text

_STATUSES = {s.value for s in Status}


def report_to_results(report: dict[str, Any], host: str | None = None) -> list[ControlResult]:
    """Rows of one role's report.

    >>> rows = report_to_results({"host": "th01", "ct": "04.161.01.03", "observed_at": "2026-11-27T08:00:00Z",
    ...     "results": {"SYS-3": {"status": "fail", "observed": False, "expected": True, "evidence": "sshd -T: permitrootlogin yes"}}})
    >>> (rows[0].device, rows[0].control, rows[0].status.value, rows[0].source.value)
    ('th01', 'SYS-3', 'fail', 'audit')
    """
    device = host or report.get("host")
    ct = report.get("ct") or ""
    when = _parse_time(report.get("observed_at"))
    out = []
    for cid, r in sorted((report.get("results") or {}).items()):
        status = r.get("status") if r.get("status") in _STATUSES - {"waived"} else "unknown"
        out.append(ControlResult(ct=ct, device=device, control=cid, status=status, source=Source.AUDIT,
                                 evidence=str(r.get("evidence", ""))[:500], observed=_jsonable(r.get("observed")),
                                 expected=_jsonable(r.get("expected")), observed_at=when))
    return out


def report_to_inventory(report: dict[str, Any], host: str | None = None):
    """The inventory record of the baseline role's ``baseline_inventory_report``.

    >>> r = report_to_inventory({"host": "th01", "ct": "04.161.01.03", "observed_at": "2026-12-01T08:00:00Z", "packages": 300,
    ...     "facts": {"memtotal_mb": 7900, "distribution": "Debian", "distribution_major_version": "12", "product_serial": "NA"},
    ...     "root_mount": [{"mount": "/", "size_total": 21474836480}]})
    >>> r.device, r.memory_gib, r.os_id, r.serial, r.packages, r.disk_gib
    ('th01', 8, 'debian-12', None, 300, 20.0)
    >>> report_to_inventory({"host": "th02", "ct": "c", "facts": {}, "root_mount": [], "root_df": ["   1B-blocks", "10737418240"]}).disk_gib
    10.0
    """
    from ctfleet.core.inventory import from_ansible_facts

    facts = dict(report.get("facts") or {})
    facts["mounts"] = report.get("root_mount") or []
    df = [str(x).strip() for x in report.get("root_df") or []]
    if not facts["mounts"] and df and df[-1].isdigit():  # `df -B1 --output=size /`: header, then bytes
        facts["mounts"] = [{"mount": "/", "size_total": int(df[-1])}]
    pk = report.get("packages")
    try:
        packages = int(pk) if pk is not None else None
    except (TypeError, ValueError):
        packages = None
    return from_ansible_facts(facts, str(report.get("ct") or ""), str(host or report.get("host")), packages=packages or None,
                              observed_at=_parse_time(report.get("observed_at")))


def _jsonable(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return str(v)


def _parse_time(s: Any) -> datetime:
    if isinstance(s, str):
        try:
            return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return datetime.now(timezone.utc)


def batch_path(store: ResultsStore, host: str) -> Path:
    return store.root / Source.AUDIT.value / f"{host}.jsonl"


def read_batch(store: ResultsStore, host: str) -> list[ControlResult]:
    path = batch_path(store, host)
    if not path.exists():
        return []
    return [ControlResult.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def merge_into_store(store: ResultsStore, host: str, rows: Iterable[ControlResult]) -> Path:
    """Merge rows into the host's batch: per (CT, device, control) the newest row wins."""
    by_key = {r.key: r for r in read_batch(store, host)}
    for r in rows:
        prev = by_key.get(r.key)
        if prev is None or r.observed_at >= prev.observed_at:
            by_key[r.key] = r
    return store.write_batch(Source.AUDIT, host, sorted(by_key.values(), key=lambda r: (r.ct, r.device or "", r.control)))


# ---------------------------------------------------------------------- pull-mode queue
class Ledger:
    """Queued report files already merged, per host (a JSON file written atomically)."""

    def __init__(self, path: Path):
        self.path = path
        self.delivered: dict[str, set[str]] = {}
        if path.exists():
            self.delivered = {h: set(v) for h, v in json.loads(path.read_text(encoding="utf-8")).items()}

    def has(self, host: str, name: str) -> bool:
        return name in self.delivered.get(host, set())

    def add(self, host: str, name: str) -> None:
        self.delivered.setdefault(host, set()).add(name)

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({h: sorted(v) for h, v in sorted(self.delivered.items())}, indent=1) + "\n")


def ingest_inbox(inbox: Path, store: ResultsStore) -> dict[str, Any]:
    """Merge every fetched queue file of ``inbox/<host>/*.json`` not yet in the ledger.

    Returns {"merged": n files, "skipped": n already delivered, "rows": n results, "acks": {host: [names]},
    "new": the new results (for the region's results service), "inventories": the new inventory records}
    where ``acks`` lists, per host, every file the store now holds (new or old): those the
    host may delete. The ledger is saved after the store is written, so a crash in between
    re-merges (harmless: same rows, same keys) rather than losing a report.
    """
    ledger = Ledger(store.root / Source.AUDIT.value / ".delivered.json")
    merged = skipped = rows = 0
    acks: dict[str, list[str]] = {}
    new: list[ControlResult] = []
    inventories: list = []
    for host_dir in sorted(p for p in inbox.iterdir() if p.is_dir()) if inbox.is_dir() else []:
        host = host_dir.name
        new_rows: list[ControlResult] = []
        new_inventories: list = []
        names = []
        for f in sorted(host_dir.glob("*.json")):
            if ledger.has(host, f.name):
                skipped += 1
            else:
                report = json.loads(f.read_text(encoding="utf-8"))
                if report.get("phase") in ("before",):
                    pass  # the pre-change audit of a pull run is kept on the host's fact file only
                elif report.get("kind") == "inventory":  # the baseline role's queued inventory
                    if report.get("ct"):
                        new_inventories.append(report_to_inventory(report, host))
                else:
                    new_rows += report_to_results(report, host)
                merged += 1
            names.append(f.name)
        if new_rows:
            merge_into_store(store, host, new_rows)
            rows += len(new_rows)
            new += new_rows
        if new_inventories:
            store.write_inventory(host, new_inventories)
            inventories += new_inventories
        for n in names:
            ledger.add(host, n)
        acks[host] = names
    ledger.save()
    return {"merged": merged, "skipped": skipped, "rows": rows, "acks": acks, "new": new, "inventories": inventories}
