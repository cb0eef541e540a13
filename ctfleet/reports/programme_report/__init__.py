"""The programme KPI report: Prometheus -> figures (:mod:`.figures`) -> HTML/CSV/JSON
(:mod:`.formats`), in French or Arabic (:mod:`.i18n`).

    >>> # api = PrometheusAPI("http://127.0.0.1:9090")
    >>> # files = make_report(api, Names.from_project(project), Path("out"), lang="ar", range_text="7d")
    >>> # files -> {"html": out/report-ar.html, "csv": out/kpis-ar.csv, "json": out/kpis.json}
"""

from __future__ import annotations

import time
from pathlib import Path

from ctfleet.reports.programme_report.figures import Names, collect
from ctfleet.reports.programme_report.prometheus_api import PrometheusAPI, PrometheusError, parse_duration
from ctfleet.reports.programme_report.formats import write_report

__all__ = ["Names", "PrometheusAPI", "PrometheusError", "collect", "make_report", "write_report"]


def make_report(api: PrometheusAPI, names: Names, out_dir: Path, lang: str = "fr", range_text: str = "7d",
                at: float | None = None, points: int = 60, waivers=None, targets=None, history=None) -> dict[str, Path]:
    """Query ``api`` (every instant query at ``at``, default now) and write the files; with
    ``targets`` and ``history`` the KPIs against the programme's targets, by quarter."""
    seconds = parse_duration(range_text)
    at = time.time() if at is None else at
    data = collect(api.query, api.query_range, names, at, range_text, seconds, points, waivers=waivers,
                   targets=targets, history=history)
    if not data["national"]["cts"]:
        raise PrometheusError(f"Prometheus at {api.url} has no ctfleet:cts:count at {at:.0f}: "
                              "is it scraping a ctfleet exporter and loading monitors/rules/kpi.rules.yml?")
    return write_report(out_dir, data, names, lang, api.url)
