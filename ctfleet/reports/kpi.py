"""The programme KPIs read back from Prometheus's HTTP API (the recording rules of
``monitors/rules/kpi.rules.yml``), as rows for a table, CSV or JSON.

The query function is injected, so this module stays pure: tests hand it recorded
answers, the demo hands it a real Prometheus.
"""

from __future__ import annotations

from typing import Callable

#: In the programme table's order; meeting + failing + not assessed = CTs (the rules ensure it).
KPIS = ("cts", "cts_connected", "cts_meeting_norms", "cts_failing", "cts_not_assessed", "cts_with_waivers", "cts_equipped",
        "cts_hosted")
Query = Callable[[str], list[dict]]


def kpi_rows(query: Query, by: str) -> list[dict]:
    """One row per lot / segment / region: CTs, connected, meeting norms, failing, not
    assessed, with waivers, equipped, hosted, coverage.

    >>> fake = lambda q: [{"metric": {"lot": "1"}, "value": [0, "190" if q.startswith("ctfleet:cts:") else "0.5"]}]
    >>> kpi_rows(fake, "lot")[0]["cts"]
    190
    """
    if by not in ("lot", "segment", "region"):
        raise ValueError(f"by must be lot, segment or region, not {by!r}")
    rows: dict[str, dict] = {}
    for kpi in KPIS:
        for s in query(f"ctfleet:{kpi}:count_by_{by}"):
            key = s["metric"].get(by, "")
            rows.setdefault(key, {by: key})[kpi] = int(float(s["value"][1]))
    for s in query(f"ctfleet:ct_coverage:avg_by_{by}"):
        key = s["metric"].get(by, "")
        rows.setdefault(key, {by: key})["coverage"] = float(s["value"][1])
    for r in rows.values():
        for kpi in KPIS:
            r.setdefault(kpi, 0)
        r.setdefault("coverage", 0.0)
    return [rows[k] for k in sorted(rows)]


def national_row(query: Query) -> dict:
    row: dict = {"scope": "national"}
    for kpi in KPIS:
        res = query(f"ctfleet:{kpi}:count")
        row[kpi] = int(float(res[0]["value"][1])) if res else 0
    res = query("ctfleet:ct_coverage:avg")
    row["coverage"] = float(res[0]["value"][1]) if res else 0.0
    return row
