"""The ``ctfleet`` command: registry, norms, validation, import, inventory and the demo.

Thin: every command loads the project (profile, registry, norms, fleet) and renders what
the pure core computes. Errors from bad input are printed once, without a traceback, and
the command exits non-zero.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ctfleet.core.errors import InputError, Problem
from ctfleet.core.models import Level, Segment
from ctfleet.project import Project, load_project

app = typer.Typer(help="Infrastructure-as-code and fleet management for Morocco's territorial collectivities.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None)
registry_app = typer.Typer(help="The CT registry: collectivities, segments, lots, hosting, fleet.", no_args_is_help=True)
norms_app = typer.Typer(help="Norms as code: the control catalogue and resolved values.", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
app.add_typer(norms_app, name="norms")

from ctfleet.cli.common import out, reports_errors  # noqa: E402

_state: dict = {"profile": None}


@app.callback()
def _main(profile: Optional[Path] = typer.Option(None, "--profile", envvar="CTFLEET_PROFILE",
                                                 help="Profile file (default: ctfleet.yaml at the project root).")) -> None:
    _state["profile"] = profile


def project(with_fleet: bool = True) -> Project:
    return load_project(_state["profile"], with_fleet=with_fleet)


# ------------------------------------------------------------------ registry
@registry_app.command("stats")
@reports_errors
def registry_stats(as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON.")) -> None:
    """The programme table: CTs per segment and per lot, computed from the data."""
    from ctfleet.reports.stats import registry_figures

    p = project(with_fleet=False)
    figures = registry_figures(p.registry, p.rules)
    if as_json:
        out.print_json(json.dumps(figures, ensure_ascii=False))
        return
    scope = f"region {p.profile.region}" if p.profile.region else "national"
    t = Table(title=f"Collectivities by segment ({scope}; RGPH 2014 population)")
    t.add_column("segment")
    t.add_column("label")
    t.add_column("CTs", justify="right")
    t.add_column("programme (DGCT 2021)", justify="right")
    for row in figures["segments"]:
        t.add_row(row["segment"], row["label"], f"{row['count']:,}", _ref(row["programme"]))
    t.add_row("", "total", f"{figures['total']:,}", "", end_section=True)
    out.print(t)
    lt = Table(title="Roll-out lots")
    lt.add_column("lot", justify="right")
    lt.add_column("seat list + rules", justify="right")
    lt.add_column("with data overrides", justify="right")
    lt.add_column("programme (DGCT 2021)", justify="right")
    for row in figures["lots"]:
        lt.add_row(str(row["lot"]), f"{row['from_rules']:,}", f"{row['with_overrides']:,}", _ref(row["programme"]))
    out.print(lt)
    seats = figures["seats"]
    out.print(f"Chefs-lieux: {seats['count']} seats listed ({seats['doubtful']} doubtful) in inventory/seats.yaml; "
              f"{len(figures['lot_overrides'])} lot override(s) in inventory/overrides.yaml.")
    for o in figures["lot_overrides"]:
        out.print(f"  {o['code']} {o['name']}: lot {o['from_rules']} -> {o['lot']} ({o['reason']})")


def _ref(v) -> str:
    return "" if v is None else f"{v:,}"


@registry_app.command("show")
@reports_errors
def registry_show(code: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """One collectivity: names, parents, segment, lot (and why), hosting tiers, site and devices."""
    p = project()
    ct = p.registry.ct(code)
    sites = p.registry.sites_of(code)
    devices = p.registry.devices_of(code)
    if as_json:
        data = ct.model_dump(mode="json")
        data["sites"] = [s.model_dump(mode="json") for s in sites]
        data["devices"] = [d.model_dump(mode="json") for d in devices]
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    reg = p.national.regions[ct.region_code]
    t = Table(show_header=False, title=f"{ct.code} {ct.name_fr} / {ct.name_ar}")
    t.add_column("key", style="bold")
    t.add_column("value")
    t.add_row("level", ct.level.value)
    t.add_row("region", f"{reg.code} {reg.name_fr}")
    if ct.province_code and ct.level == Level.COMMUNE:
        prov = p.national.provinces[ct.province_code]
        t.add_row("province", f"{prov.code} {prov.name_fr} ({prov.kind})")
    if ct.population_2014 is not None or ct.level == Level.COMMUNE:
        t.add_row("population 2014 / 2024", f"{_num(ct.population_2014)} / {_num(ct.population_2024)}")
    t.add_row("segment", f"{ct.segment.value} ({p.rules.segments[ct.segment].label_fr})")
    t.add_row("lot", f"{ct.lot} — {ct.lot_reason}")
    if ct.is_seat:
        t.add_row("chef-lieu", "yes, seat of its province")
    if ct.arrondissements:
        t.add_row("arrondissements", ", ".join(p.national.arrondissements[a].name_fr for a in ct.arrondissements))
    t.add_row("hosting tiers", ", ".join(x.value for x in ct.tiers))
    if ct.grouping:
        g = p.national.groupings[ct.grouping]
        t.add_row("grouping", f"{g.code} {g.name}" + (" (illustrative)" if g.illustrative else ""))
    for s in sites:
        backup = f", backup {s.backup.type.value} {s.backup.bandwidth_mbps:g} Mbit/s" if s.backup else ""
        t.add_row("site", f"{s.code} {s.name}: uplink {s.uplink.type.value} {s.uplink.bandwidth_mbps:g} Mbit/s{backup}")
    roles = p.registry.role_counts(code)
    if roles:
        t.add_row("devices", ", ".join(f"{n} {r.value}(s)" for r, n in sorted(roles.items(), key=lambda kv: kv[0].value))
                  + f"  [{p.registry.fleet_label}]")
    out.print(t)


def _num(v) -> str:
    return "—" if v is None else f"{v:,}"


@registry_app.command("list")
@reports_errors
def registry_list(region: Optional[str] = typer.Option(None, help="HCP region code, e.g. 04."),
                  province: Optional[str] = typer.Option(None, help="HCP province code, e.g. 04.421."),
                  segment: Optional[Segment] = typer.Option(None, case_sensitive=False),
                  lot: Optional[int] = typer.Option(None, min=1, max=3),
                  level: Optional[Level] = typer.Option(None),
                  fmt: str = typer.Option("table", "--format", help="table, csv or json")) -> None:
    """List collectivities, filtered by region, province, segment, lot or level."""
    from ctfleet.core.errors import InputError, Problem

    if fmt not in ("table", "csv", "json"):
        raise InputError(Problem("--format", f"unknown format {fmt!r}", valid="table, csv, json"))
    p = project(with_fleet=False)
    cts = p.registry.select(region=region, segment=segment, lot=lot, level=level, province=province)
    rows = [dict(code=c.code, name_fr=c.name_fr, name_ar=c.name_ar, level=c.level.value, region=c.region_code,
                 province=c.province_code or "", segment=c.segment.value, lot=c.lot,
                 population_2014="" if c.population_2014 is None else c.population_2014,
                 tiers=" ".join(t.value for t in c.tiers)) for c in cts]
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
    elif fmt == "csv":
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["code"])
        w.writeheader()
        w.writerows(rows)
    else:
        t = Table(title=f"{len(rows)} collectivities")
        for col in ("code", "name_fr", "segment", "lot", "population_2014", "tiers"):
            t.add_column(col, justify="right" if col in ("lot", "population_2014") else "left")
        for r in rows:
            t.add_row(r["code"], r["name_fr"], r["segment"], str(r["lot"]), f"{r['population_2014']:,}" if r["population_2014"] != "" else "", r["tiers"])
        out.print(t)


# ------------------------------------------------------------------ norms
@norms_app.command("show")
@reports_errors
def norms_show(target: str = typer.Argument(..., help="A segment name (e.g. commune_under_15k) or a CT code."),
               lot: Optional[int] = typer.Option(None, min=1, max=3, help="Lot, when TARGET is a segment (default: the segment's lot)."),
               link: Optional[str] = typer.Option(None, help="Link type, when TARGET is a segment: fibre, adsl, 4g, vsat or none."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """Resolved norms of a segment or a CT, with the file and line each value comes from.

    A CT's link norms (LNK-*) follow its site's link type, from the fleet."""
    from ctfleet.core.errors import InputError, Problem, one_of
    from ctfleet.core.models import LinkType

    link_types = [t.value for t in LinkType]
    if link is not None and link not in link_types:
        raise InputError(Problem("--link", f"unknown link type {link!r}", valid=one_of(link_types)))
    if target in {s.value for s in Segment}:
        p = project(with_fleet=False)
        seg = Segment(target)
        lot = lot or p.rules.segments[seg].lot
        kind = LinkType(link) if link else None
        resolved = p.norms.resolve_for(seg, lot, link=kind)
        layers = p.norms.layers_for(seg, lot, link=kind)
        title = f"Norms of segment {seg.value}, lot {lot}" + (f", on {kind.value}" if kind else "")
    else:
        p = project(with_fleet=True)  # the CT's link type is its site's, from the fleet
        if target not in p.national.cts:
            raise InputError(Problem("TARGET", f"{target!r} is neither a segment nor a CT code",
                                     valid=one_of([s.value for s in Segment]) + ", or an HCP code such as 01.511.01.0"))
        if link is not None:
            raise InputError(Problem("--link", "a CT's link type is its site's, from the fleet", valid="--link only with a segment"))
        ct = p.national.cts[target]
        kind = p.norms.link_of(ct)
        resolved = p.norms.resolve(ct)
        layers = p.norms.layers_of(ct)
        title = (f"Norms of {ct.code} {ct.name_fr} (segment {ct.segment.value}, lot {ct.lot}, "
                 f"link {kind.value if kind else 'unknown: no site in the fleet'})")
    layer_names = [layer.name for layer in layers]
    if as_json:
        data = {cid: {"value": r.value, "applicable": r.applicable, "source": r.source, "layer": r.layer,
                      "title": r.control.title, "unit": r.control.unit} for cid, r in resolved.items()}
        out.print_json(json.dumps(data, ensure_ascii=False))  # each value names its layer ("link vsat", ...)
        return
    t = Table(title=title, caption="layers applied, later winning: " + " > ".join(layer_names))
    for col in ("control", "title", "value", "applies to"):
        t.add_column(col)
    t.add_column("from", no_wrap=True)
    for cid, r in resolved.items():
        value = "not applicable" if not r.applicable else _fmt_value(r.value, r.control.unit)
        t.add_row(cid, r.control.title, value, ", ".join(r.control.applies_to), r.source)
    out.print(t)


def _fmt_value(v, unit) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(map(str, v))
    return f"{v:g} {unit}" if isinstance(v, (int, float)) and unit else str(v)


@norms_app.command("controls")
@reports_errors
def norms_controls() -> None:
    """The control catalogue: id, title, topic, severity and sources."""
    p = project(with_fleet=False)
    t = Table(title=f"{len(p.norms.controls)} controls")
    for col in ("id", "title", "topic", "level", "severity", "sources"):
        t.add_column(col)
    for c in p.norms.controls.values():
        t.add_row(c.id, c.title, c.topic, str(c.level), c.severity, "; ".join(s.source + (f" {s.ref}" if s.ref else "") for s in c.sources))
    out.print(t)


# ------------------------------------------------------------------ validate / import / inventory
@app.command()
@reports_errors
def validate() -> None:
    """Load everything (registry, seats, groupings, overrides, norms, fleet) and derive every name other tools get
    (Ansible groups, stack names, namespaces); exit 1 naming the first bad file, line, key or name collision."""
    from ctfleet import ansible_inventory
    from ctfleet.stacks.names import check_namespaces, stack_index

    from ctfleet.core.targets import load_targets

    p = project()
    ansible_inventory.render(p)  # raises when two codes give one group name
    load_targets(p.paths.standards, p.paths.show, {s.id for s in p.norms.catalogue.sources})  # standards/targets.yaml
    try:
        stack_index(p.national)
        check_namespaces(p.national)
    except ValueError as exc:
        raise InputError(Problem("stacks", str(exc), valid="names that differ after lower-casing and keeping only letters and digits")) from None
    r = p.registry
    roles = r.role_counts()
    out.print(f"ok: {len(r.cts):,} CTs ({len(r.regions)} regions, {len(r.provinces)} councils, "
              f"{sum(1 for c in r.cts.values() if c.level == Level.COMMUNE):,} communes, {len(r.arrondissements)} arrondissements), "
              f"{len(p.norms.controls)} controls, {len(r.sites):,} sites, "
              + ", ".join(f"{n:,} {k.value}s" for k, n in sorted(roles.items(), key=lambda kv: kv[0].value))
              + f" [{r.fleet_label}]", soft_wrap=True)


def _import_help() -> str:
    from ctfleet.importer import format_help

    paragraphs = [*format_help().split("\n\n"), "Example: ctfleet import sites-04.xlsx devices-04.csv --into /srv/ctfleet/fleet-04"]
    # "\b" before a paragraph keeps Click from re-wrapping it (the column table above all).
    return "Import sites and devices from regional spreadsheets into a fleet directory.\n\n" + \
        "\n\n".join("\b\n" + p for p in paragraphs)


@app.command("import", help=_import_help())
@reports_errors
def import_(files: list[Path] = typer.Argument(..., help="CSV or XLSX files of sites and/or devices."),
            into: Path = typer.Option(..., "--into", help="Fleet directory to merge into (sites.csv, devices.csv)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Validate only; write nothing.")) -> None:
    from ctfleet.importer import import_files

    p = project(with_fleet=False)
    summary = import_files(files, p.national, into, dry_run=dry_run)
    verb = "would write" if dry_run else "wrote"
    t = Table(title=f"{verb} {summary['out_dir']} from {', '.join(summary['files'])}")
    for col in ("table", "rows imported", "added", "updated", "total in the fleet"):
        t.add_column(col, justify="left" if col == "table" else "right")
    for kind in ("sites", "devices"):
        c = summary[kind]
        t.add_row(kind, f"{c['imported']:,}", f"{c['added']:,}", f"{c['updated']:,}", f"{c['total']:,}")
    out.print(t)


@app.command()
@reports_errors
def inventory(list_: bool = typer.Option(False, "--list", help="Ansible dynamic inventory (JSON)."),
              host: Optional[str] = typer.Option(None, "--host", help="Variables of one host (JSON).")) -> None:
    """Ansible dynamic inventory from the registry (what inventory/ctfleet_inventory.py prints)."""
    from ctfleet import ansible_inventory

    p = project()
    if host:
        data = ansible_inventory.host_vars(p, host)
    else:
        data = ansible_inventory.render(p)
    sys.stdout.write(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")


@app.command()
def collect(config: Path = typer.Option(..., "--config", help="Collector YAML configuration (see ctfleet/monitors/collector.py)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Validate the configuration and the registry, then exit."),
            once: bool = typer.Option(False, "--once", help="One sweep, a summary, and exit (no server).")) -> None:
    """Run the SNMP and reachability collector on its shard and serve /metrics (SIGHUP reloads)."""
    from ctfleet.monitors.collector import main as collector_main

    argv = ["--config", str(config)] + (["--dry-run"] if dry_run else []) + (["--once"] if once else [])
    raise typer.Exit(collector_main(argv))


@app.command()
@reports_errors
def demo(region: Optional[str] = typer.Option(None, help="Limit the simulated fleet to one region (HCP code, e.g. 12)."),
         limit: Optional[int] = typer.Option(None, min=1, help="Only the first N routers (hostname order)."),
         sweeps: int = typer.Option(2, min=1, max=20, help="Collector sweeps before the KPIs are read back."),
         interval: float = typer.Option(60.0, min=5.0, help="Sweep interval in seconds."),
         keep_running: bool = typer.Option(False, "--keep-running", help="Keep sweeping and serving until Ctrl-C."),
         registry_only: bool = typer.Option(False, "--registry-only", help="Only load the registry and print its figures."),
         workdir: Path = typer.Option(Path("var/demo"), help="Where the demo keeps its agents' data, Prometheus data and logs.")) -> None:
    """The main job on this machine: simulated fleet -> collectors -> real Prometheus -> programme KPIs."""
    from ctfleet.lab.registry_demo import run_demo

    p = project()
    run_demo(p, out)
    if registry_only:
        return
    from ctfleet.lab.monitoring_demo import DemoOptions, run

    wd = workdir if workdir.is_absolute() else p.root / workdir
    run(p, DemoOptions(workdir=wd, region=region or p.profile.region, limit=limit, sweeps=sweeps, interval=interval,
                       keep_running=keep_running), out)


def _mount_optional() -> None:
    """Sub-apps of later parts (stacks, monitors, rollout), mounted when present."""
    import importlib
    import importlib.util

    for module, name in (("ctfleet.cli.stacks", "stacks"), ("ctfleet.cli.routers", "routers"), ("ctfleet.cli.report", "report"),
                         ("ctfleet.cli.rollout", "rollout"), ("ctfleet.cli.backups", "backups"),
                         ("ctfleet.cli.results", "results"), ("ctfleet.cli.equipment", "equipment")):
        if importlib.util.find_spec(module) is None:
            continue
        mod = importlib.import_module(module)  # an import error in it must show
        app.add_typer(mod.app, name=name)
        if hasattr(mod, "playbooks_app"):  # ctfleet playbooks generate|check, beside rollout
            app.add_typer(mod.playbooks_app, name="playbooks")


_mount_optional()

if __name__ == "__main__":  # pragma: no cover
    # `python -m ctfleet.cli.main`: run the app of the module the sub-commands import, so
    # `--profile` reaches them (this __main__ copy's _state is not theirs).
    from ctfleet.cli.main import app as _app

    _app()
