"""``ctfleet equipment show CODE``: what a CT actually has (observed inventories) against its norm.

A separate command from ``ctfleet inventory`` (Ansible's dynamic inventory, whose
``--list``/``--host`` contract Ansible calls) so neither changes the other's output.

Per device: the newest observed inventory (CPU, memory, disk, OS, serial, packages, last
boot, when and how it was observed — ``simulated`` records are labelled so), the norm it
is judged against (EQP-2 and EQP-3 for a workstation, EQP-4's configuration type for a
server) and the verdict: at spec, under spec, not assessed. Then the CT's "equipped"
verdict: its router seen, EQP-1 workstations at spec, a server of its configuration type
when it hosts its own. Thin: the judgement is :func:`ctfleet.core.inventory.judge_equipment`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ctfleet.cli.common import out, reports_errors, styled

app = typer.Typer(help="Observed equipment (inventories from the audits) against the CT's norm.", no_args_is_help=True)

_FACT = {"memory_gib": "memory", "os": "OS", "cpu_count": "CPU", "disk_gib": "disk"}
_VERDICT = {"at_spec": ("at spec", "green"), "under_spec": ("under spec", "red"), "not_assessed": ("not assessed", "yellow")}


def _project():
    from ctfleet.cli.main import _state
    from ctfleet.project import load_project

    return load_project(_state.get("profile"))


def _store(p, results: Optional[str]):
    from ctfleet.results import open_store

    spec = results or p.profile.results_dir
    return open_store(spec if "://" in str(spec) or Path(str(spec)).is_absolute() else p.resolve_path(str(spec)))


def _unknown(v) -> str:
    return "unknown" if v is None else str(v)


def equipment_data(p, code: str, store) -> dict:
    """The JSON of ``equipment show``: the CT's verdict and, per device, observed vs norm."""
    from ctfleet.core.compliance import Status
    from ctfleet.core.inventory import judge_equipment

    ct = p.registry.ct(code)
    inventories = {r.device: r for r in store.iter_inventory({ct.code})}
    seen = {r.device for r in store.iter_results() if r.ct == ct.code and r.device and r.status in (Status.PASS, Status.FAIL)}
    e = judge_equipment(ct, p.registry, p.norms, seen, inventories)
    spec = p.norms.server_type(ct)
    devices = []
    for d in e.devices:
        r = d.record
        devices.append({
            "device": d.device, "role": d.role, "verdict": d.verdict.value, "why": d.why,
            "observed": None if r is None else {
                "origin": r.origin, "observed_at": r.observed_at.isoformat(), "cpu_count": r.cpu_count, "cpu_model": r.cpu_model,
                "memory_gib": r.memory_gib, "disk_gib": r.disk_gib, "os": r.os_id, "serial": r.serial, "packages": r.packages,
                "last_boot": r.last_boot.isoformat() if r.last_boot else None},
            "checks": [{"fact": c.fact, "observed": c.observed, "expected": c.expected, "verdict": c.verdict.value} for c in d.checks],
        })
    return {"ct": ct.code, "name_fr": ct.name_fr, "segment": ct.segment.value, "equipped": e.equipped,
            "router_seen": e.router_seen, "workstations_needed": e.workstations_needed,
            "workstations_at_spec": e.workstations_at_spec, "not_assessed": e.not_assessed,
            "norm": {"EQP-1": e.workstations_needed, "EQP-2": p.norms.value(ct, "EQP-2"), "EQP-3": p.norms.value(ct, "EQP-3"),
                     "EQP-4": p.norms.value(ct, "EQP-4"),
                     "server_type": None if spec is None else {"cpu_count": spec.cpu_count, "memory_gib": spec.memory_gib,
                                                               "disk_gib": spec.disk_gib, "from": spec.origin}},
            "server_needed": e.server_needed or None, "server_ok": e.server_ok, "devices": devices}


@app.command("show")
@reports_errors
def show(code: str = typer.Argument(..., help="HCP code of the CT, e.g. 04.161.01.03."),
         results: Optional[str] = typer.Option(None, "--results", help="Results store (directory or database URL; default: the profile's)."),
         as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Per device: observed inventory vs the norm of the CT's segment; then whether the CT is equipped."""
    p = _project()
    p.registry.ct(code)  # an unknown code is an error naming what is valid, before any store is opened
    data = equipment_data(p, code, _store(p, results))
    if as_json:
        out.print_json(json.dumps(data, ensure_ascii=False))
        return
    n = data["norm"]
    t = Table(title=f"{data['ct']} {data['name_fr']} — observed equipment vs norm ({data['segment']})")
    for col in ("device", "role", "CPU", "mem GiB", "disk GiB", "OS", "serial", "pkgs", "booted", "observed", "verdict"):
        t.add_column(col, no_wrap=col in ("device", "observed", "verdict"))
    for d in data["devices"]:
        o = d["observed"] or {}
        label, style = _VERDICT[d["verdict"]]
        under = [_FACT[c["fact"]] for c in d["checks"] if c["verdict"] != "at_spec"]
        seen = "-" if not o else o["observed_at"][:10] + (" SIMULATED" if o["origin"] == "simulated" else "")
        t.add_row(d["device"], "ws" if d["role"] == "workstation" else d["role"], _unknown(o.get("cpu_count")) if o else "-", _unknown(o.get("memory_gib")) if o else "-",
                  _unknown(o.get("disk_gib")) if o else "-", _unknown(o.get("os")) if o else "-", _unknown(o.get("serial")) if o else "-",
                  _unknown(o.get("packages")) if o else "-", (o.get("last_boot") or "unknown")[:10] if o else "-",
                  seen, styled(label + (f" ({', '.join(under)})" if under and d["verdict"] != "at_spec" else ""), style))
    out.print(f"Norm: {n['EQP-1']} workstations (EQP-1), each with >= {n['EQP-2']} GiB memory (EQP-2) and an OS in "
              f"{', '.join(map(str, n['EQP-3']))} (EQP-3)")
    st = n["server_type"]
    if data["server_needed"]:
        out.print(f"      server of configuration type {n['EQP-4']} (EQP-4)"
                  + (f": >= {st['cpu_count']} CPU, {st['memory_gib']} GiB memory, {st['disk_gib']} GiB disk ({st['from']})" if st else ""))
    out.print(t)
    out.print("role: ws = workstation; a fact that could not be observed shows as unknown (never guessed)")
    verdict = "EQUIPPED" if data["equipped"] else "NOT EQUIPPED"
    why = [f"workstations at spec {data['workstations_at_spec']}/{data['workstations_needed']} (EQP-1)",
           f"router {'seen' if data['router_seen'] else 'not seen'}"]
    if data["server_needed"]:
        why.append(f"server {data['server_needed']}: {'ok' if data['server_ok'] else 'not at spec or not observed'}")
    if data["not_assessed"]:
        why.append(f"{data['not_assessed']} device(s) not assessed (no inventory or a fact unknown)")
    out.print(styled(f"{verdict}: " + "; ".join(why), "bold green" if data["equipped"] else "bold red"))
    if any((d["observed"] or {}).get("origin") == "simulated" for d in data["devices"]):
        out.print("SIMULATED: some inventories above were made up by the demo, not observed.")
