"""The policies of :mod:`ctfleet.stacks.policies` as a Pulumi CrossGuard policy pack.

``infra/policy/__main__.py`` serves :func:`policies` as the ``ctfleet-tenancy`` pack, so an
operator can run ``pulumi preview --policy-pack infra/policy``. Each policy id becomes one
mandatory policy (a violation blocks the update): the per-object ones as
``ResourceValidationPolicy`` (the engine asks before creating or changing each object),
the ones that need a namespace and its contents as ``StackValidationPolicy``. All call the
same pure checks the tests and ``ctfleet stacks plan`` use.

What the engine hands a policy is not a dict: pulumi-policy wraps the properties in
read-only proxies (``_DictProxy``/``_ListProxy``) that raise ``UnknownValueError`` when a
value is not known yet (a preview). :func:`plain` turns them into plain dicts and lists
with :data:`~ctfleet.stacks.policies.UNKNOWN` in place of each unknown value, so a policy
decides on every known value: a privileged container is refused during a preview even if
its image is an unknown output. Only when nothing was found and an unknown value kept a
check from deciding does the policy raise ``UnknownValueError``, which the engine reports
as "can't run policy during preview" (it is then decided on the update itself).

The pack builds the norm oracle from the registry and norms of the ctfleet checkout it
runs from (the pack's virtualenv must have ctfleet installed, see infra/policy/README.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ctfleet.stacks.policies import (
    POLICIES,
    RESOURCE_POLICIES,
    STACK_POLICIES,
    UNKNOWN,
    Findings,
    Oracle,
    check_resource,
    check_stack,
)

_TYPE = re.compile(r"^kubernetes:(?P<group>[^:]+):(?P<kind>[A-Za-z]+)$")


def plain(value: Any) -> Any:
    """pulumi-policy's proxies (or plain data) as dicts and lists, unknown values as UNKNOWN."""
    from pulumi_policy.proxy import UnknownValueError

    if isinstance(value, Mapping):
        out = {}
        for key in value:
            try:
                out[key] = plain(value[key])
            except UnknownValueError:
                out[key] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        items = []
        for i in range(len(value)):
            try:
                items.append(plain(value[i]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def resource_manifest(resource_type: str, props: Any) -> dict[str, Any] | None:
    """A policy resource's properties as a Kubernetes object (``kubernetes:apps/v1:Deployment``)."""
    m = _TYPE.match(resource_type)
    if not m:
        return None
    group = m.group("group")
    api_version = group.split("/", 1)[1] if group.startswith("core/") else group
    obj = plain(props)
    obj.setdefault("apiVersion", api_version)
    obj.setdefault("kind", m.group("kind"))
    return obj if isinstance(obj.get("metadata"), dict) else None


def _urn_key(obj: dict[str, Any]) -> str:
    md = obj["metadata"]
    ns = md.get("namespace")
    return f"{obj['kind']}/{ns + '/' if isinstance(ns, str) and ns else ''}{md.get('name')}"


def _report(found: Findings, pid: str, report_violation, urns: dict[str, str]) -> None:
    """Report ``pid``'s violations; if none and unknowns kept it from deciding, say so as the engine expects."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

    mine = [v for v in found.violations if v.policy == pid]
    for v in mine:
        report_violation(f"{v.subject}: {v.message}", urns.get(v.subject))
    undecided = [u for u in found.undecided if u.startswith(pid + ":")]
    if not mine and undecided:
        raise UnknownValueError(UNKNOWN_STRING_VALUE, [undecided[0].split(": ", 2)[-1].removesuffix(" is not known yet")])


def policies(oracle_factory: Callable[[], Oracle]) -> list:
    """One policy per id: resource policies for per-object rules, stack policies for the rest.

    The oracle (registry + norms) is built once, on first use.
    """
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

    cache: dict[str, Oracle] = {}

    def oracle() -> Oracle:
        if "oracle" not in cache:
            cache["oracle"] = oracle_factory()
        return cache["oracle"]

    def resource(pid: str) -> Callable:
        def validate(args, report_violation) -> None:
            obj = resource_manifest(args.resource_type, args.props)
            if obj is None:
                return
            protected = bool(args.opts.protect) if args.opts is not None else None
            _report(check_resource(obj, oracle(), protected), pid, report_violation, {_urn_key(obj): args.urn})
        return validate

    def stack(pid: str) -> Callable:
        def validate(args, report_violation) -> None:
            objs, urns = [], {}
            for r in args.resources:
                obj = resource_manifest(r.resource_type, r.props)
                if obj is not None:
                    objs.append(obj)
                    urns[_urn_key(obj)] = r.urn
            _report(check_stack(objs, oracle()), pid, report_violation, urns)
        return validate

    mandatory = EnforcementLevel.MANDATORY
    return [ResourceValidationPolicy(name=pid, description=POLICIES[pid], validate=resource(pid), enforcement_level=mandatory)
            for pid in RESOURCE_POLICIES] + \
           [StackValidationPolicy(name=pid, description=POLICIES[pid], validate=stack(pid), enforcement_level=mandatory)
            for pid in STACK_POLICIES]


def norm_oracle(root=None) -> Oracle:
    from ctfleet.stacks.policies import NormOracle
    from ctfleet.stacks.program import load_inputs

    inputs = load_inputs(root)
    return NormOracle(inputs.registry, inputs.norms, inputs.hosting)
