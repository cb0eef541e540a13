"""``ctfleet report``: the programme KPI report (HTML, CSV, JSON) from Prometheus, and
``ctfleet report dashboards``: the Grafana dashboards' JSON.

Thin: loads the names (HCP registry, norms catalogue), queries Prometheus's HTTP API
through :mod:`ctfleet.reports.report` and prints where the files are.
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
           ) -> None:
    """Write the KPI report: table per lot, segment and region with trend, map of the 12 regions, failing CTs per control."""
    if ctx.invoked_subcommand is not None:
        return
    from ctfleet.reports.report import Names, PrometheusAPI, make_report

    if lang not in ("fr", "ar"):
        raise InputError(Problem("--lang", f"{lang!r} is not a report language", valid="fr, ar"))
    p = _project()
    files = make_report(PrometheusAPI(prometheus), Names.from_project(p), out_dir if out_dir.is_absolute() else Path.cwd() / out_dir,
                        lang=lang, range_text=range_, at=at, waivers=p.norms.waivers)
    for kind, path in files.items():
        out.print(f"{kind}: {path}")
    import json

    nat = json.loads(files["json"].read_text(encoding="utf-8"))["national"]
    pct = lambda k: f"{nat[k]:,} ({nat[k] / nat['cts']:.0%})" if nat["cts"] else "0"  # noqa: E731
    out.print(f"national: {nat['cts']:,} CTs; connected {pct('cts_connected')}; meeting norms {pct('cts_meeting_norms')}; "
              f"failing {pct('cts_failing')}; not assessed {pct('cts_not_assessed')}; with waivers {nat['cts_with_waivers']:,}; "
              f"equipped {pct('cts_equipped')}; coverage {nat['coverage']:.0%}")


@app.command("dashboards")
@reports_errors
def dashboards(out_dir: Path = typer.Option(None, "--out", help="Default: monitors/dashboards of the project.")) -> None:
    """Write the Grafana dashboards (national, region, CT) and provisioning files, generated from code."""
    from ctfleet.reports.dashboards import regions_from_project, write

    p = _project(with_fleet=False)
    for path in write(out_dir or p.root / "monitors/dashboards", regions_from_project(p)):
        out.print(str(path))
