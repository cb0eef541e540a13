"""The policies of :mod:`ctfleet.stacks.policies` as a Pulumi CrossGuard policy pack.

``infra/policy/__main__.py`` serves :func:`policies` as the ``ctfleet-tenancy`` pack, so an
operator can run ``pulumi preview --policy-pack infra/policy``. Each policy id becomes one
stack validation policy (mandatory: a violation blocks the update), so a team can see and
configure them one by one; all of them call the same pure ``check`` the tests use.

The pack builds the norm oracle from the registry and norms of the ctfleet checkout it
runs from (the pack's virtualenv must have ctfleet installed, see infra/README.md, "Policies as code").
"""

from __future__ import annotations

import re
from typing import Any, Callable, Iterable

from ctfleet.stacks.policies import POLICIES, Oracle, check

_TYPE = re.compile(r"^kubernetes:(?P<group>[^:]+):(?P<kind>[A-Za-z]+)$")


def resource_manifest(resource_type: str, props: dict[str, Any]) -> dict[str, Any] | None:
    """A policy resource's properties as a Kubernetes object (``kubernetes:apps/v1:Deployment``)."""
    m = _TYPE.match(resource_type)
    if not m:
        return None
    group = m.group("group")
    api_version = group.split("/", 1)[1] if group.startswith("core/") else group
    obj = dict(props)
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", m.group("kind"))
    return obj if "metadata" in obj else None


def policies(oracle_factory: Callable[[], Oracle]) -> list:
    """One StackValidationPolicy per policy id; the oracle is built once, on first use."""
    from pulumi_policy import EnforcementLevel, StackValidationPolicy

    cache: dict[str, Oracle] = {}

    def make(pid: str) -> Callable:
        def validate(args, report_violation) -> None:
            if "oracle" not in cache:
                cache["oracle"] = oracle_factory()
            objs, urns = [], {}
            for r in args.resources:
                obj = resource_manifest(r.resource_type, dict(r.props))
                if obj is not None:
                    objs.append(obj)
                    md = obj["metadata"]
                    urns[f"{obj['kind']}/{md.get('namespace') + '/' if md.get('namespace') else ''}{md.get('name')}"] = r.urn
            for v in check(objs, cache["oracle"]):
                if v.policy == pid:
                    report_violation(f"{v.subject}: {v.message}", urns.get(v.subject))
        return validate

    return [StackValidationPolicy(name=pid, description=text, validate=make(pid), enforcement_level=EnforcementLevel.MANDATORY)
            for pid, text in POLICIES.items()]


def norm_oracle() -> Oracle:
    from ctfleet.stacks.policies import NormOracle
    from ctfleet.stacks.program import load_inputs

    inputs = load_inputs()
    return NormOracle(inputs.registry, inputs.norms, inputs.hosting)


def violations_of(resources: Iterable[tuple[str, dict[str, Any]]], pid: str, oracle: Oracle) -> list[str]:
    """Run policy ``pid`` of the pack over (type, props) pairs, as the engine would; for tests."""
    from pulumi_policy import StackValidationArgs
    from pulumi_policy.policy import PolicyResource

    # resource options are not read by the ctfleet policies
    res = [PolicyResource(t, p, f"urn:pulumi:test::ctfleet::{t}::{i}", str(i), None, None, None, [], {})  # type: ignore[arg-type]
           for i, (t, p) in enumerate(resources)]
    found: list[str] = []
    policy = next(p for p in policies(lambda: oracle) if p.name == pid)
    policy.validate(StackValidationArgs(res), lambda message, urn=None: found.append(message))
    return found
