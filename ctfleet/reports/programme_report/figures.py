"""The report's figures, read from Prometheus through injected query functions (pure).

Everything comes from the recording rules of ``monitors/rules/kpi.rules.yml`` (the
KPI contract of ``monitors/METRICS.md``) and from ``ctfleet_ct_control_failing``; names
come from the HCP registry and the norms catalogue (:class:`Names`), never from labels
or from the map file. Shape of the result (abridged)::

    {"at": 1795757205.3, "range": "7d", "range_seconds": 604800, "step_seconds": 10080,
     "times": [1795152405.3, ...],                       # the trend's time grid (unix)
     "national": {"cts": 1590, "cts_connected": 1554, "cts_meeting_norms": 1068,
                  "cts_equipped": 713, "coverage": 0.48,
                  "trend": {"connected": [0.97, ...], "meeting_norms": [0.41, ...],
                            "equipped": [...], "coverage": [...]}},   # shares, None = no data
     "lot": [{"lot": "1", "cts": 190, ..., "trend": {...}}, ...],
     "segment": [...], "region": [...],
     "failing": [{"control": "RTR-2", "severity": "high", "title": "...",
                  "cts": [{"ct": "01.511.01.0", "region": "01", "devices": 1}, ...]}, ...]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ctfleet.reports.kpi import KPIS, kpi_rows, national_row

QueryAt = Callable[[str, float], list[dict]]
QueryRange = Callable[[str, float, float, float], list[dict]]
DIMENSIONS = ("lot", "segment", "region")
#: The programme table's shares, in its order: connected, then the three outcomes, then equipped and hosted.
SHARES = {"connected": "cts_connected", "meeting_norms": "cts_meeting_norms", "failing": "cts_failing",
          "not_assessed": "cts_not_assessed", "equipped": "cts_equipped", "hosted": "cts_hosted"}
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


@dataclass
class Names:
    """What a person reads instead of codes, in French and Arabic (from the registry)."""

    regions: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (fr, ar)
    segments: dict[str, tuple[str, str]] = field(default_factory=dict)
    cts: dict[str, tuple[str, str]] = field(default_factory=dict)
    controls: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (title, severity)
    fleet_label: str = ""

    @classmethod
    def from_project(cls, project) -> "Names":
        reg = project.national  # names of every CT, whatever the profile's scope
        return cls(
            regions={r.code: (r.name_fr, r.name_ar) for r in reg.regions.values()},
            segments={s.value: (d.label_fr, d.label_ar) for s, d in project.rules.segments.items()},
            cts={c.code: (c.name_fr, c.name_ar) for c in reg.cts.values()},
            controls={c.id: (c.title, c.severity) for c in project.norms.controls.values()},
            fleet_label=project.registry.fleet_label,
        )


def time_grid(at: float, range_seconds: int, points: int = 60) -> tuple[list[float], float]:
    """``points``+1 evenly spaced times ending at ``at`` (step at least 1 s).

    >>> time_grid(1000.0, 60, points=3)
    ([940.0, 960.0, 980.0, 1000.0], 20.0)
    """
    step = max(float(range_seconds) / points, 1.0)
    n = int(range_seconds // step)
    start = at - n * step
    return [start + i * step for i in range(n + 1)], step


def _aligned(series: list[dict], key: str, times: list[float], step: float) -> dict[str, list[float | None]]:
    """Range-query series by label ``key`` (or "" for national), on the grid; None where no sample."""
    out: dict[str, list[float | None]] = {}
    t0 = times[0]
    for s in series:
        k = s["metric"].get(key, "") if key else ""
        row: list[float | None] = [None] * len(times)
        for t, v in s["values"]:
            i = round((float(t) - t0) / step)
            if 0 <= i < len(row):
                row[i] = float(v)
        out[k] = row
    return out


def _shares(num: list[float | None], den: list[float | None]) -> list[float | None]:
    return [None if n is None or not d else n / d for n, d in zip(num, den)]


def waiver_rows(waivers, at: float) -> dict[str, list[dict]]:
    """Waivers in force at ``at`` and those of them expiring within 30 days (from the
    reviewed files of ``standards/waivers/``, not from Prometheus)."""
    from datetime import datetime, timezone

    if waivers is None:
        return {"in_force": [], "expiring": []}
    when = datetime.fromtimestamp(at, tz=timezone.utc)

    def row(w) -> dict:
        return {"ct": w.ct, "device": w.device or "", "control": w.control, "reason": w.reason, "approved_by": w.approved_by,
                "approved_on": w.approved_on.isoformat(), "reference": w.reference, "expires": w.expires.isoformat(),
                "expiring": w.expiring(when), "source": w.source}

    in_force = [row(w) for w in waivers.in_force(when)]
    return {"in_force": in_force, "expiring": [r for r in in_force if r["expiring"]]}


def collect(query_at: QueryAt, query_range: QueryRange, names: Names, at: float, range_text: str,
            range_seconds: int, points: int = 60, waivers=None, targets=None, history: list[dict] | None = None) -> dict:
    """Every figure of the report at ``at``; with ``targets`` (standards/targets.yaml) and
    the monthly ``history`` (:mod:`ctfleet.reports.history`), each KPI against its target."""
    from ctfleet.reports.history import EXTRA, against_targets

    q = lambda promql: query_at(promql, at)  # noqa: E731 - every figure at the same instant
    times, step = time_grid(at, range_seconds, points)
    start = times[0]

    def trend(metric_by: str, key: str) -> dict[str, dict[str, list[float | None]]]:
        """Shares over time for every key of one dimension ("" for national)."""
        counts = {kpi: _aligned(query_range(f"ctfleet:{kpi}:{metric_by}", start, at, step), key, times, step) for kpi in KPIS}
        cov_name = "ctfleet:ct_coverage:avg" + (f"_by_{key}" if key else "")
        coverage = _aligned(query_range(cov_name, start, at, step), key, times, step)
        empty: list[float | None] = [None] * len(times)
        out = {}
        for k, den in counts["cts"].items():
            out[k] = {name: _shares(counts[kpi].get(k, empty), den) for name, kpi in SHARES.items()}
            out[k]["coverage"] = coverage.get(k, empty)
        return out

    data: dict = {"at": at, "range": range_text, "range_seconds": range_seconds, "step_seconds": step, "times": times}
    nat = national_row(q)
    nat.pop("scope", None)
    nat["trend"] = trend("count", "").get("", {name: [None] * len(times) for name in (*SHARES, "coverage")})
    for name, promql in EXTRA.items():  # mutualisations realised and declared
        res = q(promql)
        nat[name] = int(float(res[0]["value"][1])) if res else 0
    data["national"] = nat
    if targets is not None:
        data["targets"] = against_targets(targets, history or [], nat, at)
    for by in DIMENSIONS:
        rows = kpi_rows(q, by)
        tr = trend(f"count_by_{by}", by)
        for r in rows:
            r["trend"] = tr.get(r[by], {name: [None] * len(times) for name in (*SHARES, "coverage")})
        data[by] = rows

    failing: dict[tuple[str, str], list[dict]] = {}
    for s in q("max by (ct, region, control, severity) (ctfleet_ct_control_failing)"):
        m = s["metric"]
        failing.setdefault((m.get("control", ""), m.get("severity", "")), []).append(
            {"ct": m.get("ct", ""), "region": m.get("region", ""), "devices": int(float(s["value"][1]))})
    data["waivers"] = waiver_rows(waivers, at)
    data["failing"] = [
        {"control": cid, "severity": sev, "title": names.controls.get(cid, ("", ""))[0],
         "cts": sorted(cts, key=lambda c: (c["region"], c["ct"]))}
        for (cid, sev), cts in sorted(failing.items(), key=lambda kv: (SEVERITY_ORDER.get(kv[0][1], 9), _control_key(kv[0][0])))
    ]
    return data


def _control_key(cid: str) -> tuple:
    prefix, _, num = cid.partition("-")
    try:
        return prefix, float(num)
    except ValueError:
        return prefix, 0.0
