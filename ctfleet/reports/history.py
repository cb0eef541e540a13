"""Monthly KPI snapshots kept under version control, and the KPIs against the programme's targets.

Prometheus keeps weeks; the programme is judged over years. Once a month
``ctfleet report snapshot`` reads the KPIs at one instant and writes
``history/kpi/YYYY-MM.json`` (one file per month, never overwritten unless asked). The
files are committed with the project: a reviewed, dated record the DGCT can sign, with
``git log`` saying who recorded it, and no database to back up. Shape::

    {"month": "2026-11", "at": 1795757205.3, "source": "http://127.0.0.1:9090",
     "fleet": "generated (seed 2014) - simulated fleet, not real equipment",
     "national": {"cts": 1590, "cts_connected": 1554, ..., "cts_hosted": 1500,
                  "mutualisations": 10, "mutualisations_declared": 14},
     "lot": [{"lot": "1", "cts": 190, ...}], "region": [...]}

:func:`against_targets` turns the snapshots and ``standards/targets.yaml`` into the
report's table: per KPI, its target and deadline, the share at the end of each quarter
(the quarter's last snapshot), the share now, and where it stands (met, open, overdue).
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.targets import Target, quarter_of, status
from ctfleet.reports.kpi import kpi_rows, national_row

HISTORY_DIR = Path("history") / "kpi"
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
#: Beyond the table's KPIs: mutualisations realised and declared (monitors/rules/hosting.rules.yml).
EXTRA = {"mutualisations": "ctfleet:mutualisations:total",
         "mutualisations_declared": "sum(ctfleet:mutualisations_declared:count_by_region_tier)"}


def month_of(at: float) -> str:
    """>>> month_of(1795757205.3)
    '2026-11'
    """
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m")


def take_snapshot(query: Callable[[str], list[dict]], at: float, source: str, fleet: str) -> dict:
    """The KPIs at one instant (``query`` answers instant queries at ``at``)."""
    nat = national_row(query)
    nat.pop("scope", None)
    for name, promql in EXTRA.items():
        res = query(promql)
        nat[name] = int(float(res[0]["value"][1])) if res else 0
    return {"month": month_of(at), "at": at, "source": source, "fleet": fleet, "national": nat,
            "lot": kpi_rows(query, "lot"), "region": kpi_rows(query, "region")}


def write_snapshot(directory: Path, snap: dict, replace: bool = False) -> Path:
    """Write ``directory/YYYY-MM.json`` whole (temporary file, then rename); an existing
    month is kept unless ``replace``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{snap['month']}.json"
    if path.exists() and not replace:
        raise InputError(Problem(str(path), f"a snapshot for {snap['month']} is already recorded",
                                 valid="--replace to record this month again, or --month for another month"))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(snap, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_history(directory: Path, show=str) -> list[dict]:
    """Every snapshot of ``directory``, oldest first; a bad file is an error naming it."""
    if not directory.is_dir():
        return []
    out = []
    for path in sorted(directory.glob("*.json")):
        if not _MONTH.match(path.stem):
            raise InputError(Problem(show(path), f"{path.name!r} is not a month's snapshot", valid="YYYY-MM.json, e.g. 2026-11.json"))
        try:
            snap = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(Problem(show(path), f"not a JSON snapshot ({e})", line=getattr(e, "lineno", None))) from None
        nat = snap.get("national") if isinstance(snap, dict) else None
        if not isinstance(nat, dict) or not isinstance(nat.get("cts"), int) or snap.get("month") != path.stem:
            raise InputError(Problem(show(path), "not a KPI snapshot", key="month, national.cts",
                                     valid=f"a file written by ctfleet report snapshot, whose month is {path.stem}"))
        out.append(snap)
    return out


def quarterly(history: list[dict]) -> list[tuple[str, dict]]:
    """The last snapshot of each quarter, oldest first.

    >>> quarterly([{"month": "2026-07"}, {"month": "2026-09"}, {"month": "2026-10"}])
    [('2026-Q3', {'month': '2026-09'}), ('2026-Q4', {'month': '2026-10'})]
    """
    by_q: dict[str, dict] = {}
    for snap in sorted(history, key=lambda s: s["month"]):
        year, month = map(int, snap["month"].split("-"))
        by_q[f"{year}-Q{(month - 1) // 3 + 1}"] = snap
    return sorted(by_q.items())


def _share(nat: dict, t: Target) -> float | None:
    num, den = nat.get(t.kpi), nat.get(t.denominator)
    return num / den if isinstance(num, (int, float)) and den else None


def against_targets(targets: list[Target], history: list[dict], now: dict | None, at: float) -> dict:
    """The report's targets table: quarters (oldest first) and one row per target."""
    quarters = quarterly(history)
    on = datetime.fromtimestamp(at, tz=timezone.utc).date()
    rows = []
    for t in targets:
        current = _share(now, t) if now else None
        rows.append({
            "kpi": t.kpi, "target": t.share, "deadline": t.deadline, "source": t.source,
            "refs": [f"{s.source}" + (f": {s.ref}" if s.ref else "") for s in t.sources],
            "quarters": [_share(snap["national"], t) for _, snap in quarters],
            "now": current, "value": (now or {}).get(t.kpi), "of": (now or {}).get(t.denominator),
            "status": status(t, current, on),
        })
    return {"quarters": [q for q, _ in quarters], "current_quarter": quarter_of(on), "rows": rows}
