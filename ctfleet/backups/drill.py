"""The restore drill's verdict: what ``playbooks/backup_drill.yml`` reported, as a result.

The drill restores the newest off-site snapshot of a CT's reference server onto another
host with the escrowed password and checks every restored file against the checksum
manifest the backup job put inside the snapshot. Its report (JSON, written on the
controller by the play)::

    {"ct": "01.511.01.01", "server": "th01", "drill_host": "th03", "repository": "sftp:backup@...:/srv/backups/01.511.01.01",
     "snapshot": "4f1c2a9e", "snapshot_time": "2026-12-01T21:40:12+00:00", "files": 1234, "failed": 0,
     "bytes": 52428800, "seconds": 14.2, "check_output": "..."}

becomes one result for SRV-5 (the off-site copy exists *and restores*), source ``audit``:
pass when every file's checksum matched, fail otherwise, unknown when the drill could not
run to the comparison.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from ctfleet.core.compliance import ControlResult, Source, Status
from ctfleet.core.errors import InputError, Problem

CONTROL = "SRV-5"


def read_report(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(Problem(str(path), f"no drill report ({exc})", valid="the JSON the drill playbook writes")) from None
    return data


def verdict(report: dict, now: datetime | None = None) -> ControlResult:
    now = now or datetime.now(timezone.utc)
    files, failed = int(report.get("files") or 0), int(report.get("failed") or 0)
    if report.get("error") or not files:
        status = Status.UNKNOWN
        evidence = f"restore drill on {report.get('drill_host')} did not reach the comparison: {report.get('error') or 'no file restored'}"
    else:
        status = Status.PASS if failed == 0 else Status.FAIL
        evidence = (f"restore drill on {report.get('drill_host')}: snapshot {report.get('snapshot')} ({report.get('snapshot_time')}) "
                    f"from {report.get('repository')} restored with the escrowed password, {files - failed}/{files} files' "
                    f"checksums equal, {report.get('bytes')} bytes in {report.get('seconds')} s")
    return ControlResult(ct=report["ct"], device=report["server"], control=CONTROL, status=status, source=Source.AUDIT,
                         evidence=evidence, observed=failed == 0 and files > 0, expected=True, observed_at=now)
