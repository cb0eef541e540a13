"""``ctfleet report``: the programme KPI report (HTML, CSV, JSON) from Prometheus, and
``ctfleet report dashboards``: the Grafana dashboards' JSON.

Thin: loads the names (HCP registry, norms catalogue), queries Prometheus's HTTP API
through :mod:`ctfleet.reports.programme_report` and prints where the files are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ctfleet.cli.common import out, reports_errors
from ctfleet.core.errors import InputError, Problem

app = typer.Typer(help="The programme KPI report (HTML, CSV, JSON) from Prometheus; the Grafana dashboards.",
                  invoke_without_command=True)


def _project(with_fleet: bool = True):
    from ctfleet.cli.main import project  # the --profile given to the main command

    return project(with_fleet=with_fleet)


@app.callback()
@reports_errors
def report(ctx: typer.Context,
           prometheus: str = typer.Option("http://127.0.0.1:9090", "--prometheus", envvar="CTFLEET_PROMETHEUS",
                                          help="Prometheus base URL (the one that loads monitors/rules/kpi.rules.yml)."),
           out_dir: Path = typer.Option(Path("var/report"), "--out", help="Directory for report-<lang>.html, kpis-<lang>.csv, kpis.json."),
           lang: str = typer.Option("fr", "--lang", help="fr (default) or ar (Arabic, right to left)."),
           range_: str = typer.Option("7d", "--range", help="Trend window, e.g. 1h, 24h, 7d, 30d."),
           at: Optional[float] = typer.Option(None, "--at", help="Evaluate at this Unix time instead of now (reproducible reports)."),
           history: Optional[Path] = typer.Option(None, "--history", help="Monthly KPI snapshots (default: history/kpi of the project)."),
           ) -> None:
    """Write the KPI report: table per lot, segment and region with trend, map of the 12 regions, failing CTs per control."""
    if ctx.invoked_subcommand is not None:
        return
    from ctfleet.reports.programme_report import Names, PrometheusAPI, make_report

    if lang not in ("fr", "ar"):
        raise InputError(Problem("--lang", f"{lang!r} is not a report language", valid="fr, ar"))
    p = _project()
    targets, snapshots = _targets_and_history(p, history)
    files = make_report(PrometheusAPI(prometheus), Names.from_project(p), out_dir if out_dir.is_absolute() else Path.cwd() / out_dir,
                        lang=lang, range_text=range_, at=at, waivers=p.norms.waivers, targets=targets, history=snapshots)
    for kind, path in files.items():
        out.print(f"{kind}: {path}")
    import json

    nat = json.loads(files["json"].read_text(encoding="utf-8"))["national"]
    pct = lambda k: f"{nat[k]:,} ({nat[k] / nat['cts']:.0%})" if nat["cts"] else "0"  # noqa: E731
    out.print(f"national: {nat['cts']:,} CTs; connected {pct('cts_connected')}; meeting norms {pct('cts_meeting_norms')}; "
              f"failing {pct('cts_failing')}; not assessed {pct('cts_not_assessed')}; with waivers {nat['cts_with_waivers']:,}; "
              f"equipped {pct('cts_equipped')}; hosted {pct('cts_hosted')}; mutualisations {nat['mutualisations']:,} "
              f"of {nat['mutualisations_declared']:,}; coverage {nat['coverage']:.0%}")


def _history_dir(p, history: Path | None) -> Path:
    from ctfleet.reports.history import HISTORY_DIR

    return history if history is not None else p.root / HISTORY_DIR


def _targets_and_history(p, history: Path | None):
    from ctfleet.core.targets import load_targets
    from ctfleet.reports.history import load_history

    targets = load_targets(p.paths.standards, p.paths.show, {s.id for s in p.norms.catalogue.sources})
    return targets, load_history(_history_dir(p, history), p.paths.show)


@app.command("snapshot")
@reports_errors
def snapshot(prometheus: str = typer.Option("http://127.0.0.1:9090", "--prometheus", envvar="CTFLEET_PROMETHEUS",
                                            help="Prometheus base URL (the one that loads monitors/rules/)."),
             history: Optional[Path] = typer.Option(None, "--history", help="Where the monthly snapshots are kept (default: history/kpi)."),
             at: Optional[float] = typer.Option(None, "--at", help="Read the KPIs at this Unix time instead of now."),
             replace: bool = typer.Option(False, "--replace", help="Record this month again (the file is replaced whole)."),
             ) -> None:
    """Record this month's KPIs in history/kpi/YYYY-MM.json (commit the file: the programme's durable record)."""
    import time

    from ctfleet.reports.history import take_snapshot, write_snapshot
    from ctfleet.reports.programme_report import PrometheusAPI, PrometheusError

    p = _project()
    api = PrometheusAPI(prometheus)
    when = time.time() if at is None else at
    snap = take_snapshot(lambda q: api.query(q, when), when, api.url, p.registry.fleet_label)
    if not snap["national"]["cts"]:
        raise PrometheusError(f"Prometheus at {api.url} has no ctfleet:cts:count at {when:.0f}: nothing to record")
    path = write_snapshot(_history_dir(p, history), snap, replace=replace)
    nat = snap["national"]
    out.print(f"{path}: {snap['month']}, {nat['cts']:,} CTs, connected {nat['cts_connected']:,}, meeting norms "
              f"{nat['cts_meeting_norms']:,}, equipped {nat['cts_equipped']:,}, hosted {nat['cts_hosted']:,}, "
              f"mutualisations {nat['mutualisations']:,} of {nat['mutualisations_declared']:,}")


@app.command("dashboards")
@reports_errors
def dashboards(out_dir: Path = typer.Option(None, "--out", help="Default: monitors/dashboards of the project.")) -> None:
    """Write the Grafana dashboards (national, region, CT) and provisioning files, generated from code."""
    from ctfleet.reports.dashboards import regions_from_project, write

    p = _project(with_fleet=False)
    for path in write(out_dir or p.root / "monitors/dashboards", regions_from_project(p)):
        out.print(str(path))
