"""``ctfleet stacks``: generate the stack configs, list the stacks, read what a stack will do.

``plan STACK`` runs the same validation and planning as the Pulumi program, and the same
policies as the tests, on the stack's config file — no cloud, no Pulumi CLI — so an SDR
team reads exactly what ``pulumi up`` would declare before running it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

app = typer.Typer(help="Pulumi stacks: national, regional (SDR), ECI/GCT and SDL clouds.", no_args_is_help=True)

from ctfleet.cli.common import out, styled  # noqa: E402
from ctfleet.cli.common import reports_errors as _reports_errors  # noqa: E402


def _inputs():
    """The stacks' inputs; a regional --profile limits them to its region's stacks."""
    from ctfleet.cli.main import _state
    from ctfleet.stacks.program import load_inputs

    return load_inputs(profile=_state.get("profile"))


# ------------------------------------------------------------------ generate
@app.command("generate")
@_reports_errors
def generate_cmd(
    directory: Optional[Path] = typer.Option(None, "--dir", help="Where to write Pulumi.<stack>.yaml (default: infra/stacks)."),
    image_registry: str = typer.Option("registry.ctfleet.ma/ctfleet", "--image-registry",
                                       help="Registry holding the images built here (collector, apt-cacher-ng), for new files."),
) -> None:
    """Write one Pulumi.<stack>.yaml per hosting unit, from the registry (keeps operators' values)."""
    from ctfleet.stacks.generate import generate
    from ctfleet.stacks.program import STACKS_DIR

    from ctfleet.cli.main import _state

    inputs = _inputs()
    target = directory or inputs.root / STACKS_DIR
    result = generate(inputs.stacks, target, image_registry, profile=_state.get("profile"), root=inputs.root)
    out.print(f"{len(inputs.stacks)} stacks: {len(result.written)} written, {len(result.unchanged)} unchanged, in {target}")
    for p in result.written:
        out.print(f"  wrote {p.name}")
    for p in result.stale:
        out.print("  ", styled("stale:", "yellow"), f" {p.name} names no hosting unit of the registry (not deleted)", sep="")


# ------------------------------------------------------------------ list
@app.command("list")
@_reports_errors
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every stack the registry calls for, what it provisions, and whether its config is valid."""
    from ctfleet.stacks.readout import stack_rows

    rows = stack_rows(_inputs())
    if as_json:
        out.print_json(json.dumps(rows, ensure_ascii=False))
        return
    t = Table(title=f"Pulumi stacks ({len(rows)})")
    for col, just in (("stack", "left"), ("tier", "left"), ("unit", "left"), ("provisions", "left"), ("tenants", "right"), ("config", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in rows:
        style = None if r["config"] == "ok" else "red"
        t.add_row(r["stack"], r["tier"], r["unit"] or "", r["title"], r["tenants"], r["config"], style=style)
    out.print(t)


# ------------------------------------------------------------------ plan
@app.command("plan")
@_reports_errors
def plan_cmd(
    stack: str = typer.Argument(..., help="Stack name, e.g. national, sdr-rabat-sale-kenitra, eci-gct-zagora-draa, sdl-sale."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="Config file (default: infra/stacks/Pulumi.<stack>.yaml)."),
    deployed: Optional[Path] = typer.Option(None, "--deployed", help="The stack's last inventory (pulumi stack output "
                                            "dataInventory --json > FILE): list the changes that would destroy data."),
    manifests: bool = typer.Option(False, "--manifests", help="Print every Kubernetes object as YAML instead of the summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """What STACK declares — tenants, quotas and where they come from, network flows, workloads, policies — without a cloud.

    Exits 1 when a policy fails, or when --deployed shows a destructive change the config does not allow."""
    from ctfleet.stacks.readout import load_plan, manifests_yaml, plan_report

    inputs = _inputs()
    if manifests:
        out.print(manifests_yaml(load_plan(inputs, stack, config_file)), markup=False, soft_wrap=True)
        return
    report = plan_report(inputs, stack, config_file, deployed)
    if as_json:
        out.print_json(json.dumps(report.summary, ensure_ascii=False))
    else:
        _print_plan(report)
    if report.refused:
        raise typer.Exit(1)


def _print_plan(report) -> None:
    from ctfleet.stacks.policies import POLICIES

    plan, summary, violations = report.plan, report.summary, report.violations
    out.print(styled(plan.ref.name, "bold"), f" — {plan.ref.title}", sep="")
    out.print(f"target: {summary['target']}")
    out.print("declares: " + ", ".join(f"{n} {kind}" for kind, n in summary["objects"].items())
              + f" ({sum(summary['objects'].values())} objects)")
    t = Table(title=f"Tenants ({len(plan.tenants)})")
    for col, just in (("namespace", "left"), ("tenant", "left"), ("segment", "left"), ("lot", "right"), ("cpu", "right"),
                      ("memory", "right"), ("storage", "right"), ("pods", "right"), ("PSA", "left"), ("quota from", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for tp in plan.tenants:
        hard = tp.quota.hard()
        t.add_row(tp.namespace, tp.title, tp.labels.get("ctfleet.ma/segment", tp.kind), tp.labels.get("ctfleet.ma/lot", ""),
                  hard["limits.cpu"], hard["limits.memory"], hard["requests.storage"], hard["pods"],
                  tp.psa_level + ("" if tp.default_deny else " (no default deny)"), tp.quota_source)
    total = summary["total"]
    t.add_row("total", "", "", "", total["limits.cpu"], total["limits.memory"], total["requests.storage"], total["pods"], "", "",
              style="bold")
    out.print(t)

    # flows: tenants sharing the same set are shown once
    groups: dict[tuple, list[str]] = {}
    for tp in plan.tenants:
        groups.setdefault(tp.flows, []).append(tp.namespace)
    f = Table(title="Network: default deny, then only these flows")
    for col in ("tenants", "policy: flow", "flow", "why"):
        f.add_column(col)
    for flows, namespaces in groups.items():
        who = namespaces[0] if len(namespaces) == 1 else f"{len(namespaces)} tenants ({namespaces[0]} ...)"
        for i, flow in enumerate(flows):
            f.add_row(who if i == 0 else "", f"{flow.policy}: {flow.name}", flow.show(), flow.why)
    out.print(f)
    from ctfleet.stacks.tenant_policies import BOUNDS_ANNOTATION, admission_objects, bounds_from_json

    for vap in (o for o in admission_objects(plan) if o["kind"] == "ValidatingAdmissionPolicy"):
        bs = bounds_from_json(vap["metadata"]["annotations"][BOUNDS_ANNOTATION])
        out.print(f"tenants' own NetworkPolicies (ValidatingAdmissionPolicy {vap['metadata']['name']}): admitted only "
                  f"within {'; '.join(f'{b.direction} {b.show()}' for b in bs)}; the stack's policies cannot be changed")

    if plan.apps:
        a = Table(title="Workloads (unprivileged: non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault)")
        for col in ("namespace", "name", "image", "port", "requests", "limits", "data", "published"):
            a.add_column(col)
        for app_ in plan.apps:
            s = app_.spec
            a.add_row(app_.namespace, app_.name, app_.image, str(app_.port), f"{s.requests.cpu:g} cpu, {s.requests.memoryMiB}Mi",
                      f"{s.limits.cpu:g} cpu, {s.limits.memoryMiB}Mi", f"{s.dataGiB:g}Gi" if s.dataGiB else "",
                      app_.expose.show() if app_.expose else "in-cluster")
        out.print(a)
    out.print(f"operators: ClusterRole {plan.cluster_role} (no write access to quotas or limits) "
              f"bound in every tenant to: {', '.join(plan.config.operatorGroups)}"
              + (" ({namespace} = the tenant's namespace)" if any("{namespace}" in g for g in plan.config.operatorGroups) else ""))
    p = Table(title="Policies")
    for col in ("policy", "checks", "result"):
        p.add_column(col)
    for pid, text in POLICIES.items():
        found = [v for v in violations if v.policy == pid]
        p.add_row(pid, text, styled("pass", "green") if not found else styled(f"{len(found)} violation(s)", "red"))
    out.print(p)
    for v in violations:
        out.print("  ", styled(v, "red"), sep="")
    if summary.get("data_path"):
        from rich.text import Text

        d = Table(title="Data path")
        for col in ("piece", "where / how"):
            d.add_column(col)
        for piece in summary["data_path"]["pieces"]:
            d.add_row(Text(piece["what"]), Text(piece["how"]))
        out.print(d)
        out.print("Secrets the operators create (never in Pulumi state): " + "; ".join(
            f"{s['namespace']}/{s['name']} ({s['holds']})" for s in summary["data_path"]["secrets"]), markup=False)
    if report.destructive:
        allowed = plan.config.allowDestructiveChanges
        out.print(styled("destructive changes", "bold red"), f" against the deployed stack ({len(report.destructive)}): "
                  + ("allowed by ctfleet:allowDestructiveChanges" if allowed else
                     "pulumi up refuses them (protected); back up, then set ctfleet:allowDestructiveChanges: true"), sep="")
        for c in report.destructive:
            out.print("  ", styled(c, "red"), sep="")
    for note in plan.notes:
        out.print(styled("note:", "yellow"), f" {note}", sep="")
