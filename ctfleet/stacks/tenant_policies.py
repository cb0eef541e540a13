"""Tenants' own NetworkPolicies, bounded in the cluster by a ValidatingAdmissionPolicy (pure).

A CT tenant's operators may create, change and delete NetworkPolicies in their namespace
(the operators' ClusterRole allows it), but only within the **bounds** of what the stack's
own flows already allow that tenant (:func:`bounds`, derived from the plan's
:class:`~ctfleet.stacks.plan.Flow` list, never retyped). NetworkPolicies add up (a pod
may receive or send what *any* policy selecting it allows), so a tenant's policy cannot
take away what the stack opened; the bounds make sure it adds nothing beyond it. What a
tenant gains is self-service: an application (a Helm chart) shipping its own policies
installs, instead of failing on RBAC, as long as they stay inside the bounds.

Each stack hosting CT tenants declares one ``ValidatingAdmissionPolicy``
(``admissionregistration.k8s.io/v1``, GA since Kubernetes 1.30) and its binding, both
named ``ctfleet-tenant-netpol-<stack>``. The API server evaluates its CEL on every
NetworkPolicy request made in the stack's CT tenant namespaces by the stack's operator
groups (``ctfleet:operatorGroups``), and refuses (``Deny``):

- changing or deleting a stack-owned policy (label ``ctfleet.ma/stack``), or a tenant's
  policy carrying that label;
- a rule with no peers (``from``/``to`` absent: every source or destination);
- a peer in another namespace unless it is one the stack's flows name, with at least their
  pod labels and within their ports (``namespaceSelector.matchLabels`` with
  ``kubernetes.io/metadata.name``, which the API server sets and nobody can forge);
  another tenant's namespace never;
- an ``ipBlock`` not inside a CIDR the stack's flows name (``ctfleet:platformCidrs``),
  within their ports (the Kubernetes CEL CIDR library: ``cidr(..).containsCIDR(..)``).

Peers in the tenant's own namespace (a ``podSelector`` alone) are always within bounds
when the stack allows same-namespace traffic. Flows restricted to some of the tenant's
pods, or naming namespaces by labels, give no bound (the bounds only get stricter).

:func:`out_of_bounds` applies the same bounds in Python, for the policy pack
(``tenant-network-bounds``) on the NetworkPolicies a stack declares itself; the tests check
both give the same verdicts.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ctfleet.stacks.names import label

OWNER = label("stack")  # on every object a stack declares: marks the stack's own NetworkPolicies
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # set by the API server on every Namespace, immutable
BOUNDED_KINDS = ("ct", "grouping")  # tenants whose operators write their own policies
PEERS_KEY = {"ingress": "from", "egress": "to"}
#: On the ValidatingAdmissionPolicy: its bounds as JSON, what the policy pack reads (one definition, two readers).
BOUNDS_ANNOTATION = label("tenant-network-bounds")


@dataclass(frozen=True)
class Bound:
    """One peer the stack's flows allow a tenant, in one direction. No ports = all ports.

    ``namespace`` None and ``cidr`` None: the tenant's own namespace.
    """

    direction: str
    flow: str
    namespace: str | None = None
    pods: tuple[tuple[str, str], ...] = ()
    cidr: str | None = None
    ports: tuple[tuple[str, int], ...] = ()

    @property
    def own(self) -> bool:
        return self.namespace is None and self.cidr is None

    def show(self) -> str:
        where = self.cidr or self.namespace or "own namespace"
        pods = " pods " + ",".join(f"{k}={v}" for k, v in self.pods) if self.pods else ""
        ports = " on " + ",".join(f"{proto}/{port}" for proto, port in self.ports) if self.ports else ""
        return f"{where}{pods}{ports}"

    def cel(self) -> str:
        """The bound as a CEL map of string lists (one element type, so the literal type-checks)."""
        def strings(values: Iterable[str]) -> str:
            return "[" + ", ".join(_q(v) for v in values) + "]"
        return ("{" + f"'namespace': {strings([self.namespace] if self.namespace else [])}, "
                f"'pods': {strings(f'{k}={v}' for k, v in self.pods)}, "
                f"'cidr': {strings([self.cidr] if self.cidr else [])}, "
                f"'ports': {strings(f'{proto}/{port}' for proto, port in self.ports)}" + "}")


def bounds_json(bs: tuple[Bound, ...]) -> str:
    return json.dumps([asdict(b) for b in bs], separators=(",", ":"))


def bounds_from_json(text: str) -> tuple[Bound, ...]:
    """:func:`bounds_json` read back (raises ValueError on anything else)."""
    try:
        return tuple(Bound(d["direction"], d["flow"], d["namespace"], tuple(map(tuple, d["pods"])), d["cidr"],
                           tuple((proto, int(port)) for proto, port in d["ports"])) for d in json.loads(text))
    except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a list of bounds: {exc}") from exc


def bounds(flows) -> tuple[Bound, ...]:
    """The peers a tenant's own policies may name: those of its flows that apply to all its pods."""
    out: list[Bound] = []
    for f in flows:
        if f.pods:
            continue  # a flow for some pods only: no bound (a tenant policy selects any pods)
        for p in f.peers:
            if p.namespace_labels:
                continue  # namespaces chosen by labels cannot be named by name: no bound
            b = Bound(f.direction, f.name, p.namespace, tuple(p.pods), p.cidr, tuple(f.ports))
            if b.own:
                b = Bound(f.direction, f.name, ports=tuple(f.ports))  # own namespace: any pods
            if b not in out:
                out.append(b)
    return tuple(out)


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ------------------------------------------------------------------ the CEL the API server runs
def _ports_ok(b: str, r: str) -> str:
    return (f"(size({b}.ports) == 0 || (has({r}.ports) && size({r}.ports) > 0 && {r}.ports.all(q, has(q.port) && "
            f"!has(q.endPort) && ((has(q.protocol) ? q.protocol : 'TCP') + '/' + string(q.port)) in {b}.ports)))")


def _pods_ok(b: str, p: str) -> str:
    return (f"{b}.pods.all(kv, has({p}.podSelector) && has({p}.podSelector.matchLabels) && "
            f"{p}.podSelector.matchLabels.exists(k, k + '=' + {p}.podSelector.matchLabels[k] == kv))")


def _ns_name(p: str) -> str:
    return (f"(has({p}.namespaceSelector.matchLabels) && {_q(NAMESPACE_NAME)} in {p}.namespaceSelector.matchLabels "
            f"? {p}.namespaceSelector.matchLabels[{_q(NAMESPACE_NAME)}] : '')")


def _each_peer(direction: str, condition: str) -> str:
    """``condition`` (over peer ``p`` of rule ``r``) for every peer of every rule in ``direction``."""
    k = PEERS_KEY[direction]
    return (f"!variables.tenant || object == null || !has(object.spec.{direction}) || "
            f"object.spec.{direction}.all(r, !has(r.{k}) || r.{k}.all(p, {condition}))")


def validations(bs: tuple[Bound, ...]) -> list[dict[str, str]]:
    """The policy's validations, each with the message naming what would be valid."""
    owner = _q(OWNER)
    out = [
        {"expression": f"!variables.tenant || oldObject == null || !has(oldObject.metadata.labels) || "
                       f"!({owner} in oldObject.metadata.labels)",
         "messageExpression": f"'NetworkPolicy ' + oldObject.metadata.name + ' belongs to stack ' + "
                              f"oldObject.metadata.labels[{owner}] + ': tenants cannot ' + "
                              f"(request.operation == 'DELETE' ? 'delete' : 'change') + ' it; add a policy of your own'",
         "reason": "Forbidden"},
        {"expression": f"!variables.tenant || object == null || !has(object.metadata.labels) || "
                       f"!({owner} in object.metadata.labels)",
         "message": f"the label {OWNER} marks the stack's own NetworkPolicies: a tenant's policy cannot carry it",
         "reason": "Forbidden"},
    ]
    for d in ("ingress", "egress"):
        k = PEERS_KEY[d]
        mine = [b for b in bs if b.direction == d]
        own = any(b.own for b in mine)
        out.append({"expression": f"!variables.tenant || object == null || !has(object.spec.{d}) || "
                                  f"object.spec.{d}.all(r, has(r.{k}) && size(r.{k}) > 0)",
                    "message": f"every {d} rule must name its peers in '{k}': a rule without them allows every "
                               f"{'source' if d == 'ingress' else 'destination'}",
                    "reason": "Forbidden"})
        blocks = [b for b in mine if b.cidr]
        out.append({"expression": _each_peer(d, f"!has(p.ipBlock) || (isCIDR(p.ipBlock.cidr) && variables.{d}Bounds.exists(b, "
                                                f"size(b.cidr) > 0 && cidr(b.cidr[0]).containsCIDR(p.ipBlock.cidr) && "
                                                f"{_ports_ok('b', 'r')}))"),
                    "message": (f"{d} ipBlock peers must be inside " + "; ".join(b.show() for b in blocks) if blocks else
                                f"{d} rules cannot name address blocks (ipBlock): the stack allows none") +
                               " (0.0.0.0/0 and other tenants' addresses never)",
                    "reason": "Forbidden"})
        named = [b for b in mine if b.namespace]
        allowed = (["the tenant's own namespace"] if own else []) + [b.show() for b in named]
        out.append({"expression": _each_peer(d, f"!has(p.namespaceSelector) || "
                                                f"{'(' + _ns_name('p') + ' == variables.namespace) || ' if own else ''}"
                                                f"variables.{d}Bounds.exists(b, size(b.namespace) > 0 && "
                                                f"b.namespace[0] == {_ns_name('p')} && {_pods_ok('b', 'p')} && "
                                                f"{_ports_ok('b', 'r')})"),
                    "message": f"{d} namespaceSelector peers may only name (by {NAMESPACE_NAME}) "
                               + ("; ".join(allowed) or "nothing: the stack allows no other namespace")
                               + ": never another tenant's namespace",
                    "reason": "Forbidden"})
        if not own:
            out.append({"expression": _each_peer(d, "has(p.namespaceSelector) || has(p.ipBlock)"),
                        "message": f"{d} within the namespace is not allowed by the stack", "reason": "Forbidden"})
    return out


def _tenant_condition(groups: tuple[str, ...], stack: str) -> str:
    """CEL: the request comes from one of the stack's operator groups (``{namespace}`` per tenant)."""
    terms = []
    for g in groups:
        parts = g.replace("{stack}", stack).split("{namespace}")
        terms.append("g == " + " + variables.namespace + ".join(_q(p) for p in parts))
    return f"has(request.userInfo.groups) && request.userInfo.groups.exists(g, {' || '.join(terms)})"


def policy_name(stack: str) -> str:
    return f"ctfleet-tenant-netpol-{stack}"


def admission_objects(plan) -> list[dict[str, Any]]:
    """The stack's ValidatingAdmissionPolicy and binding; [] when it hosts no CT tenant.

    All bounded tenants of a stack share one set of flows (:func:`ctfleet.stacks.plan.tenant_flows`);
    a stack whose tenants differ gets one policy per set, each bound to its namespaces by name.
    """
    stack = plan.ref.name
    by_bounds: dict[tuple[Bound, ...], list[str]] = {}
    for t in plan.tenants:
        if t.kind in BOUNDED_KINDS:
            by_bounds.setdefault(bounds(t.flows), []).append(t.namespace)
    objs: list[dict[str, Any]] = []
    for i, (bs, namespaces) in enumerate(by_bounds.items()):
        name = policy_name(stack) + (f"-{i}" if i else "")
        selector: dict[str, Any] = {"matchLabels": {OWNER: stack},
                                    "matchExpressions": [{"key": label("kind"), "operator": "In", "values": list(BOUNDED_KINDS)}]}
        if len(by_bounds) > 1:
            selector["matchExpressions"].append({"key": NAMESPACE_NAME, "operator": "In", "values": sorted(namespaces)})
        md = {"name": name, "labels": {OWNER: stack}, "annotations": {BOUNDS_ANNOTATION: bounds_json(bs)}}
        objs.append({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": md,
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                                                        "operations": ["CREATE", "UPDATE", "DELETE"],
                                                        "resources": ["networkpolicies"]}]},
                "variables": [
                    {"name": "namespace", "expression": "namespaceObject.metadata.name"},
                    {"name": "tenant", "expression": _tenant_condition(plan.config.operatorGroups, stack)},
                    {"name": "ingressBounds", "expression": "[" + ", ".join(b.cel() for b in bs if b.direction == "ingress") + "]"},
                    {"name": "egressBounds", "expression": "[" + ", ".join(b.cel() for b in bs if b.direction == "egress") + "]"},
                ],
                "validations": validations(bs),
            },
        })
        objs.append({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name, "labels": {OWNER: stack}},
            "spec": {"policyName": name, "validationActions": ["Deny"],
                     "matchResources": {"namespaceSelector": selector}},
        })
    return objs


def selects(selector: dict[str, Any], labels: dict[str, Any]) -> bool:
    """Whether a namespaceSelector (matchLabels, matchExpressions ``In``) as emitted here selects ``labels``."""
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()) and all(
        e.get("operator") == "In" and labels.get(e.get("key")) in (e.get("values") or []) for e in selector.get("matchExpressions") or [])


# ------------------------------------------------------------------ the same bounds in Python (the policy pack)
def out_of_bounds(np: dict[str, Any], bs: tuple[Bound, ...], namespace: str) -> list[str]:
    """Why ``np`` (a NetworkPolicy in ``namespace``) is not within ``bs``; [] when it is.

    The Python reading of :func:`validations` (ownership labels aside), for the pack and for
    the stack's own policies; the tests hold both to the same verdicts.
    """
    problems = []
    spec = np.get("spec") if isinstance(np.get("spec"), dict) else {}
    for d, k in PEERS_KEY.items():
        mine = [b for b in bs if b.direction == d]
        for i, rule in enumerate(spec.get(d) or []):
            peers = rule.get(k) or []
            if not peers:
                problems.append(f"{d}[{i}] names no peers: it allows every {'source' if d == 'ingress' else 'destination'}")
                continue
            for peer in peers:
                if not any(_covers(b, peer, rule, namespace) for b in mine):
                    problems.append(f"{d}[{i}] peer {peer} is outside the tenant's bounds")
    return problems


def _ports_within(b: Bound, rule: dict[str, Any]) -> bool:
    if not b.ports:
        return True
    ports = rule.get("ports") or []
    allowed = {f"{proto}/{port}" for proto, port in b.ports}
    return bool(ports) and all("port" in q and "endPort" not in q and f"{q.get('protocol', 'TCP')}/{_port(q['port'])}" in allowed
                               for q in ports)


def _port(value: Any) -> Any:
    """A port as the API server holds it: the engine hands numbers as floats (protobuf Struct)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _covers(b: Bound, peer: dict[str, Any], rule: dict[str, Any], namespace: str) -> bool:
    if not _ports_within(b, rule):
        return False
    if "ipBlock" in peer:
        if not b.cidr:
            return False
        try:
            return ipaddress.ip_network(peer["ipBlock"]["cidr"], strict=False).subnet_of(ipaddress.ip_network(b.cidr))
        except (ValueError, TypeError, KeyError):
            return False
    if "namespaceSelector" in peer:
        name = ((peer["namespaceSelector"] or {}).get("matchLabels") or {}).get(NAMESPACE_NAME, "")
        if b.own:
            return name == namespace
        labels = ((peer.get("podSelector") or {}).get("matchLabels") or {})
        return name == b.namespace and all(labels.get(k) == v for k, v in b.pods)
    return b.own
