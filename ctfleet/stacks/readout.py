"""What ``ctfleet stacks`` reads out, computed here so the CLI only parses and prints.

- :func:`load_plan`: a stack's plan from its config file (errors carry the file's lines);
- :func:`stack_rows`: every stack of the registry with the state of its config (``list``);
- :func:`plan_report`: everything ``plan`` shows — summary, policy results, destructive changes
  against the deployed inventory, totals — as one :class:`PlanReport`;
- :func:`manifests_yaml`: the stack's objects as a YAML stream (``plan --manifests``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctfleet.core.errors import CtfleetError, InputError, Problem, one_of
from ctfleet.stacks.config import validate_config
from ctfleet.stacks.generate import config_line_of, read_stack_file
from ctfleet.stacks.hosting import Quota
from ctfleet.stacks.manifests import render
from ctfleet.stacks.plan import StackPlan, yaml_text
from ctfleet.stacks.policies import POLICIES, NormOracle, Violation, check
from ctfleet.stacks.program import STACKS_DIR, Inputs, plan_config
from ctfleet.stacks.safety import Change, data_inventory, destructive_changes


class StackFileMissing(InputError):
    """The stack exists in the registry but its ``Pulumi.<stack>.yaml`` does not."""


def check_stack_name(inputs: Inputs, stack: str) -> None:
    from ctfleet.stacks.names import stack_index
    from ctfleet.stacks.scope import out_of_scope

    why = out_of_scope(stack, stack_index(inputs.registry), inputs.registry, inputs.region)
    if why:
        raise InputError(Problem("stack name", f"{stack} {why}", valid=one_of(inputs.stacks)))
    if stack not in inputs.stacks:
        raise InputError(Problem("stack name", f"no hosting unit is called {stack!r}", valid=one_of(inputs.stacks)))


def stack_file(inputs: Inputs, stack: str, config_file: Path | None = None) -> tuple[Path, str]:
    """The config file of ``stack`` and how to name it in messages."""
    check_stack_name(inputs, stack)
    path = config_file or inputs.root / STACKS_DIR / f"Pulumi.{stack}.yaml"
    shown = str(path) if config_file else str(STACKS_DIR / path.name)
    if not path.exists():
        raise StackFileMissing(Problem(shown, "file not found", valid="run `ctfleet stacks generate` to write the stack configs"))
    return path, shown


def load_plan(inputs: Inputs, stack: str, config_file: Path | None = None) -> StackPlan:
    """The stack's plan from its config file; errors carry the file's line numbers."""
    path, shown = stack_file(inputs, stack, config_file)
    raw, doc = read_stack_file(path, shown)
    line_of = config_line_of(doc)
    cfg = validate_config(raw, stack, inputs.registry, shown, line_of)
    return plan_config(inputs, stack, cfg, shown, line_of)


def stack_rows(inputs: Inputs) -> list[dict[str, Any]]:
    """One row per stack: tier, unit, title, tenant count and whether its config is valid."""
    rows = []
    for name, ref in inputs.stacks.items():
        status, tenants = "ok", ""
        try:
            tenants = str(len(load_plan(inputs, name).tenants))
        except StackFileMissing:
            status = "missing"
        except InputError as exc:
            status = f"invalid: {exc.problem.message}"
        except CtfleetError as exc:
            n = len(getattr(exc, "problems", [])) or 1
            status = f"invalid: {n} problem{'s' if n != 1 else ''} (ctfleet stacks plan {name})"
        rows.append({"stack": name, "tier": ref.tier, "unit": ref.unit, "title": ref.title, "tenants": tenants, "config": status})
    return rows


def read_deployed(path: Path) -> dict[str, Any]:
    """The ``dataInventory`` output of the stack's last update (``pulumi stack output dataInventory --json``)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(Problem(str(path), "file not found",
                                 valid="pulumi stack output dataInventory --json > deployed.json")) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(Problem(str(path), f"not JSON ({exc})", valid="the output of pulumi stack output dataInventory --json")) from None
    if not isinstance(data, dict) or not isinstance(data.get("namespaces", []), list) or not isinstance(data.get("volumes", {}), dict):
        raise InputError(Problem(str(path), "not a data inventory",
                                 valid='{"namespaces": [...], "volumes": {...}} as pulumi stack output dataInventory --json prints'))
    return data


@dataclass
class PlanReport:
    plan: StackPlan
    summary: dict[str, Any]
    violations: list[Violation]
    destructive: list[Change]  # against the deployed inventory, when given
    total: Quota

    @property
    def refused(self) -> bool:
        """What ``pulumi up`` would refuse: a policy violation, or a destructive change the config does not allow."""
        return bool(self.violations) or (bool(self.destructive) and not self.plan.config.allowDestructiveChanges)


def plan_report(inputs: Inputs, stack: str, config_file: Path | None = None, deployed: Path | None = None) -> PlanReport:
    plan = load_plan(inputs, stack, config_file)
    objects = render(plan)
    violations = check(objects, NormOracle(inputs.registry, inputs.norms, inputs.hosting))
    changes = destructive_changes(read_deployed(deployed), data_inventory(objects)) if deployed else []
    kinds = Counter(o["kind"] for o in objects)
    k = plan.config.kubernetes
    target = f"render YAML to {k.renderYamlToDirectory}" if k.renderYamlToDirectory else \
        f"context {k.context} of the secret ctfleet:kubeconfig" + ("" if plan.config.kubeconfig else
                                                                   " (not set yet: pulumi up refuses to run without it)")
    total = plan.quota_total()
    summary = {
        "stack": plan.ref.name, "tier": plan.ref.tier, "unit": plan.ref.unit, "title": plan.ref.title, "target": target,
        "objects": dict(sorted(kinds.items())), "notes": plan.notes,
        "tenants": [{"namespace": t.namespace, "kind": t.kind, "title": t.title,
                     "segment": t.labels.get("ctfleet.ma/segment"), "lot": t.labels.get("ctfleet.ma/lot"),
                     "quota": t.quota.hard(), "quota_source": t.quota_source, "pod_security": t.psa_level,
                     "default_deny": t.default_deny, "flows": [f"{f.policy}: {f.name}: {f.show()}" for f in t.flows],
                     "operators": list(t.operator_groups), "members": list(t.members)} for t in plan.tenants],
        "total": total.hard(),
        "workloads": [{"name": a.name, "namespace": a.namespace, "image": a.image, "port": a.port,
                       "published": a.expose.show() if a.expose else "inside the cluster only"} for a in plan.apps],
        "policies": {pid: [str(v) for v in violations if v.policy == pid] for pid in POLICIES},
        "destructive_changes": [str(c) for c in changes],
        "data_path": plan.datapath.as_dict() if plan.datapath is not None else None,
    }
    return PlanReport(plan, summary, violations, changes, total)


def manifests_yaml(plan: StackPlan) -> str:
    """Every object of the stack as one YAML stream, in render order."""
    return "---\n".join(yaml_text(o) for o in render(plan))
