"""``ctfleet stacks``: generate the stack configs, list the stacks, read what a stack will do.

``plan STACK`` runs the same validation and planning as the Pulumi program, and the same
policies as the tests, on the stack's config file — no cloud, no Pulumi CLI — so an SDR
team reads exactly what ``pulumi up`` would declare before running it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ctfleet.core.errors import CtfleetError, InputError, Problem, one_of

app = typer.Typer(help="Pulumi stacks: national, regional (SDR), ECI/GCT and SDL clouds.", no_args_is_help=True)

from ctfleet.cli.common import out  # noqa: E402
from ctfleet.cli.common import reports_errors as _reports_errors  # noqa: E402


def _inputs():
    from ctfleet.stacks.program import load_inputs

    return load_inputs()


def _stack_file(inputs, stack: str, config_file: Optional[Path]) -> tuple[Path, str]:
    from ctfleet.stacks.program import STACKS_DIR

    if stack not in inputs.stacks:
        raise InputError(Problem("stack name", f"no hosting unit is called {stack!r}", valid=one_of(inputs.stacks)))
    path = config_file or inputs.root / STACKS_DIR / f"Pulumi.{stack}.yaml"
    shown = str(path) if config_file else str(STACKS_DIR / path.name)
    if not path.exists():
        raise InputError(Problem(shown, "file not found", valid="run `ctfleet stacks generate` to write the stack configs"))
    return path, shown


def load_plan(inputs, stack: str, config_file: Optional[Path] = None):
    """The stack's plan from its config file; errors carry the file's line numbers."""
    from ctfleet.stacks.config import validate_config
    from ctfleet.stacks.generate import config_line_of, read_stack_file
    from ctfleet.stacks.plan import plan_stack

    path, shown = _stack_file(inputs, stack, config_file)
    raw, doc = read_stack_file(path, shown)
    cfg = validate_config(raw, stack, inputs.registry, shown, config_line_of(doc))
    ref = inputs.stacks[stack]
    return plan_stack(ref, cfg, inputs.registry, inputs.norms, inputs.hosting, inputs.rules if ref.tier == "sdr" else {})


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

    inputs = _inputs()
    target = directory or inputs.root / STACKS_DIR
    result = generate(inputs.stacks, target, image_registry)
    out.print(f"{len(inputs.stacks)} stacks: {len(result.written)} written, {len(result.unchanged)} unchanged, in {target}")
    for p in result.written:
        out.print(f"  wrote {p.name}")
    for p in result.stale:
        out.print(f"  [yellow]stale:[/] {p.name} names no hosting unit of the registry (not deleted)")


# ------------------------------------------------------------------ list
@app.command("list")
@_reports_errors
def list_cmd(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every stack the registry calls for, what it provisions, and whether its config is valid."""
    inputs = _inputs()
    rows = []
    for name, ref in inputs.stacks.items():
        status, tenants = "ok", ""
        try:
            plan = load_plan(inputs, name)
            tenants = str(len(plan.tenants))
        except InputError as exc:
            status = "missing" if "file not found" in str(exc) else f"invalid: {exc.problem.message}"
        except CtfleetError as exc:
            n = len(getattr(exc, "problems", [])) or 1
            status = f"invalid: {n} problem{'s' if n != 1 else ''} (ctfleet stacks plan {name})"
        rows.append({"stack": name, "tier": ref.tier, "unit": ref.unit, "title": ref.title, "tenants": tenants, "config": status})
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
    manifests: bool = typer.Option(False, "--manifests", help="Print every Kubernetes object as YAML instead of the summary."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """What STACK declares — tenants, quotas and where they come from, network flows, workloads, policies — without a cloud."""
    from ctfleet.stacks.manifests import render
    from ctfleet.stacks.plan import _yaml
    from ctfleet.stacks.policies import POLICIES, NormOracle, check

    inputs = _inputs()
    plan = load_plan(inputs, stack, config_file)
    objects = render(plan)
    if manifests:
        out.print("---\n".join(_yaml(o) for o in objects), markup=False, soft_wrap=True)
        return
    violations = check(objects, NormOracle(inputs.registry, inputs.norms, inputs.hosting))
    kinds = Counter(o["kind"] for o in objects)
    k = plan.config.kubernetes
    target = f"render YAML to {k.renderYamlToDirectory}" if k.renderYamlToDirectory else \
        f"context {k.context} of the secret ctfleet:kubeconfig" + ("" if plan.config.kubeconfig else
                                                                   " (not set yet: pulumi up refuses to run without it)")
    summary = {
        "stack": plan.ref.name, "tier": plan.ref.tier, "unit": plan.ref.unit, "title": plan.ref.title, "target": target,
        "objects": dict(sorted(kinds.items())), "notes": plan.notes,
        "tenants": [{"namespace": t.namespace, "kind": t.kind, "title": t.title,
                     "segment": t.labels.get("ctfleet.ma/segment"), "lot": t.labels.get("ctfleet.ma/lot"),
                     "quota": t.quota.hard(), "quota_source": t.quota_source, "pod_security": t.psa_level,
                     "default_deny": t.default_deny, "flows": [f"{f.policy}: {f.name}: {f.show()}" for f in t.flows],
                     "operators": list(t.operator_groups), "members": list(t.members)} for t in plan.tenants],
        "workloads": [{"name": a.name, "namespace": a.namespace, "image": a.image, "port": a.port} for a in plan.apps],
        "policies": {pid: [str(v) for v in violations if v.policy == pid] for pid in POLICIES},
    }
    if as_json:
        out.print_json(json.dumps(summary, ensure_ascii=False))
        raise typer.Exit(1 if violations else 0)
    _print_plan(plan, summary, violations)
    if violations:
        raise typer.Exit(1)


def _print_plan(plan, summary: dict, violations) -> None:
    from ctfleet.stacks.policies import POLICIES

    out.print(f"[bold]{plan.ref.name}[/] — {plan.ref.title}")
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
    total = plan.tenants[0].quota
    for tp in plan.tenants[1:]:
        total = total + tp.quota
    t.add_row("total", "", "", "", total.hard()["limits.cpu"], total.hard()["limits.memory"], total.hard()["requests.storage"],
              total.hard()["pods"], "", "", style="bold")
    out.print(t)

    # flows: tenants sharing the same set are shown once
    groups: dict[tuple, list[str]] = {}
    for tp in plan.tenants:
        groups.setdefault(tp.flows, []).append(tp.namespace)
    f = Table(title="Network: default deny, then only these flows")
    f.add_column("tenants")
    f.add_column("policy: flow")
    f.add_column("flow")
    f.add_column("why")
    for flows, namespaces in groups.items():
        who = namespaces[0] if len(namespaces) == 1 else f"{len(namespaces)} tenants ({namespaces[0]} ...)"
        for i, flow in enumerate(flows):
            f.add_row(who if i == 0 else "", f"{flow.policy}: {flow.name}", flow.show(), flow.why)
    out.print(f)

    if plan.apps:
        a = Table(title="Workloads (unprivileged: non-root, read-only root filesystem, no capabilities, seccomp RuntimeDefault)")
        for col in ("namespace", "name", "image", "port", "requests", "limits", "data"):
            a.add_column(col)
        for app_ in plan.apps:
            s = app_.spec
            a.add_row(app_.namespace, app_.name, app_.image, str(app_.port), f"{s.requests.cpu:g} cpu, {s.requests.memoryMiB}Mi",
                      f"{s.limits.cpu:g} cpu, {s.limits.memoryMiB}Mi", f"{s.dataGiB:g}Gi" if s.dataGiB else "")
        out.print(a)
    out.print(f"operators: ClusterRole {plan.cluster_role} (no write access to quotas, limits or network policies) "
              f"bound in every tenant to: {', '.join(plan.config.operatorGroups)}"
              + (" ({namespace} = the tenant's namespace)" if any("{namespace}" in g for g in plan.config.operatorGroups) else ""))
    p = Table(title="Policies")
    p.add_column("policy")
    p.add_column("checks")
    p.add_column("result")
    for pid, text in POLICIES.items():
        found = [v for v in violations if v.policy == pid]
        p.add_row(pid, text, "[green]pass[/]" if not found else f"[red]{len(found)} violation(s)[/]")
    out.print(p)
    for v in violations:
        out.print(f"  [red]{v}[/]")
    for note in plan.notes:
        out.print(f"[yellow]note:[/] {note}")
