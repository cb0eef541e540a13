"""Policies as code: the invariants every tenant and workload must satisfy (pure).

Written once, over plain Kubernetes objects, so the same functions check the pure
rendering, the objects captured from a mocked ``pulumi up``, and (through the CrossGuard
pack in ``infra/policy/``) a real preview or update. Each policy has an id and a scope:

- **resource** policies judge one object alone, so the engine runs them on each object
  before it is created or changed (``ResourceValidationPolicy``)::

    tenant-labels          a tenant namespace carries the required labels, valid, and Pod Security at the norm (HST-5)
    no-allow-all           no NetworkPolicy rule opens all peers on all ports
    no-privileged-pods     no pod is privileged, on the host's network/PID/IPC, root, or able to escalate
    data-protected         Namespaces and PersistentVolumeClaims are declared with ``protect`` (the engine then
                           refuses to delete or replace them) unless the stack's config allows destructive changes

- **stack** policies need several objects (a namespace and what is in it)::

    tenant-quota           every tenant namespace has a ResourceQuota capping cpu, memory, storage, pods, ...
                           and LimitRange defaults that let it reach its pod quota
    tenant-default-deny    every tenant namespace whose norm says so (HST-6) has a default-deny policy
    quota-within-norm      a tenant's quota is within its norm (HST-1..4 of its segment; infra/hosting.yaml
                           for national platforms and system tenants; the members' sum for a grouping)
    tenant-network-bounds  every CT tenant namespace is covered by the stack's ValidatingAdmissionPolicy bounding
                           tenants' own NetworkPolicies, and every NetworkPolicy the stack declares there is within
                           the same bounds (read from that policy: ctfleet.stacks.tenant_policies)

``check(objects, oracle)`` returns every :class:`Violation`; an empty list means compliant.
The oracle says what a namespace's norm is, from its labels and the registry — not from
the plan that produced the objects, so a planning bug cannot hide from its own check.

During a preview some inputs are not known yet. The engine hands them as :data:`UNKNOWN`
(see :func:`ctfleet.stacks.crossguard.plain`); every check decides on the known values
(a privileged container is refused whatever its image) and lists in
:attr:`Findings.undecided` only what an unknown value kept it from deciding.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Protocol

from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry
from ctfleet.stacks.hosting import HostingCatalogue, Quota, parse_quantity
from ctfleet.stacks.names import DESTRUCTIVE_ALLOWED, is_label_key, is_label_value, label, tenant_home

POLICIES = {
    "tenant-labels": "tenant namespaces carry the required labels with valid values, and Pod Security Admission at the norm's level (HST-5)",
    "no-allow-all": "no NetworkPolicy rule allows all peers on all ports",
    "no-privileged-pods": "no pod is privileged, uses the host's network, PID or IPC namespaces or paths, runs as root or can escalate",
    "data-protected": "namespaces and volume claims are protected (never deleted or replaced with their data) unless the stack "
                      "config allows destructive changes",
    "tenant-quota": "every tenant namespace has a ResourceQuota capping cpu, memory, storage, pods, Service types, volume claims "
                    "and ephemeral storage, with LimitRange defaults that let it reach its pod quota",
    "tenant-default-deny": "every tenant namespace has a default-deny NetworkPolicy for ingress and egress (HST-6)",
    "quota-within-norm": "each tenant's quota is within its norm (HST-1..HST-4)",
    "tenant-network-bounds": "every CT tenant namespace is covered by the stack's admission policy bounding tenants' own "
                             "NetworkPolicies, and the stack's own NetworkPolicies there stay within the same bounds",
}
#: Which policies judge one object (resource policies) and which need the whole stack.
RESOURCE_POLICIES = ("tenant-labels", "no-allow-all", "no-privileged-pods", "data-protected")
STACK_POLICIES = ("tenant-quota", "tenant-default-deny", "quota-within-norm", "tenant-network-bounds")

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
REQUIRED_LABELS = {
    "*": [label("stack"), label("tier"), label("kind"), PSA_ENFORCE],
    "ct": [label("ct-code"), label("region"), label("segment"), label("lot")],
    "grouping": [label("grouping"), label("region")],
    "platform": [label("platform")],
    "system": [label("system")],
}
QUOTA_KEYS = (("requests.cpu", "limits.cpu", "cpu"), ("requests.memory", "limits.memory", "memory"),
              ("requests.storage",), ("pods",), ("services.loadbalancers",), ("services.nodeports",),
              ("persistentvolumeclaims",), ("requests.ephemeral-storage", "limits.ephemeral-storage"))
POD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}


class _Unknown:
    """A value the engine does not know yet (an output of another resource, during a preview)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown during preview>"


UNKNOWN = _Unknown()



@dataclass(frozen=True)
class Violation:
    policy: str
    subject: str  # Kind/namespace/name
    message: str

    def __str__(self) -> str:
        return f"[{self.policy}] {self.subject}: {self.message}"


@dataclass(frozen=True)
class Expectation:
    """What a tenant's norm requires."""

    quota: Quota
    psa_level: str
    default_deny: bool
    source: str
    load_balancers: int = 0  # Services of type LoadBalancer the tenant may hold
    node_ports: int = 0


class Oracle(Protocol):
    def expect(self, labels: dict[str, str]) -> Expectation | str: ...


class NormOracle:
    """Expectations from the registry, the norms and the hosting catalogue, keyed by namespace labels."""

    def __init__(self, registry: Registry, norms: NormSet, hosting: HostingCatalogue):
        self.registry, self.norms, self.hosting = registry, norms, hosting

    def _ct(self, code: str) -> Expectation | str:
        from ctfleet.stacks.plan import _security, norm_quota

        ct = self.registry.cts.get(code)
        if ct is None:
            return f"CT code {code!r} is not in the registry"
        quota, source = norm_quota(self.norms, ct)
        psa, deny = _security(self.norms, ct)
        return Expectation(quota, psa, deny, source)

    def _baseline(self, quota: Quota, source: str) -> Expectation:
        from ctfleet.stacks.plan import _security

        psa, deny = _security(self.norms, None)
        return Expectation(quota, psa, deny, source)

    def expect(self, labels: dict[str, str]) -> Expectation | str:
        kind = labels.get(label("kind"))
        if kind == "ct":
            return self._ct(labels.get(label("ct-code"), ""))
        if kind == "grouping":
            g = self.registry.groupings.get(labels.get(label("grouping"), ""))
            if g is None:
                return f"grouping {labels.get(label('grouping'))!r} is not in inventory/groupings.yaml"
            parts = [self._ct(m) for m in g.members if m in self.registry.cts and tenant_home(self.registry.cts[m]) == "eci"]
            exps = [p for p in parts if isinstance(p, Expectation)]
            total = Quota(0, 0, 0, 0)
            for e in exps:
                total = total + e.quota
            psa = min((e.psa_level for e in exps), key=["restricted", "baseline", "privileged"].index, default="restricted")
            return Expectation(total, psa, any(e.default_deny for e in exps), f"members of {g.code}")
        if kind == "platform":
            p = self.hosting.platform(labels.get(label("platform"), ""))
            if p is None:
                return f"platform {labels.get(label('platform'))!r} is not in infra/hosting.yaml"
            return self._baseline(p.quota.quota(), f"infra/hosting.yaml (platforms: {p.slug})")
        if kind == "system":
            name = labels.get(label("system"), "")
            spec = getattr(self.hosting.system, name, None)
            if spec is None:
                return f"system tenant {name!r} is not in infra/hosting.yaml"
            return replace(self._baseline(spec.quota(), f"infra/hosting.yaml (system.{name})"), load_balancers=spec.loadBalancers)
        return f"unknown tenant kind {kind!r}"


def _subject(obj: dict[str, Any]) -> str:
    md = _map(obj.get("metadata"))
    ns = md.get("namespace")
    return f"{obj.get('kind')}/{ns + '/' if isinstance(ns, str) and ns else ''}{md.get('name')}"


def _map(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else {} (absent, null or unknown)."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


@dataclass
class Findings:
    """What the policies found: violations, and what unknown values kept them from deciding."""

    violations: list[Violation] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)  # "policy: subject: path"

    def bad(self, policy: str, subject: str, message: str) -> None:
        self.violations.append(Violation(policy, subject, message))

    def unknown(self, policy: str, subject: str, path: str) -> None:
        self.undecided.append(f"{policy}: {subject}: {path} is not known yet")

    def __iadd__(self, other: "Findings") -> "Findings":
        self.violations += other.violations
        self.undecided += other.undecided
        return self


# ------------------------------------------------------------------ entry points
def check(objects: Iterable[dict[str, Any]], oracle: Oracle) -> list[Violation]:
    """Every violation of every policy in ``objects`` (one stack's Kubernetes objects)."""
    return check_all(objects, oracle).violations


def check_all(objects: Iterable[dict[str, Any]], oracle: Oracle) -> Findings:
    objs = list(objects)
    found = check_stack(objs, oracle)
    for o in objs:
        found += check_resource(o, oracle)
    return found


def check_resource(obj: dict[str, Any], oracle: Oracle, protected: bool | None = None) -> Findings:
    """The resource policies on one object (what the engine asks before creating or changing it).

    ``protected``: the resource's ``protect`` option, when known (the engine sends it; plain
    manifests do not carry it, so ``data-protected`` is only judged through the pack).
    """
    found = Findings()
    kind = obj.get("kind")
    if kind == "Namespace" and label("stack") in _map(_map(obj.get("metadata")).get("labels")):
        check_tenant_labels(obj, oracle, found)
    elif kind == "NetworkPolicy":
        check_network_policy(obj, found)
    elif kind in POD_KINDS:
        check_pods(obj, found)
    if protected is not None:
        check_data_protected(obj, protected, found)
    return found


def check_stack(objects: Iterable[dict[str, Any]], oracle: Oracle) -> Findings:
    """The stack policies: each tenant namespace with the objects inside it."""
    objs = list(objects)
    found = Findings()
    by_ns: dict[str, list[dict]] = defaultdict(list)
    for o in objs:
        ns = _map(o.get("metadata")).get("namespace")
        if isinstance(ns, str):
            by_ns[ns].append(o)
    for ns_obj in objs:
        md = _map(ns_obj.get("metadata"))
        if ns_obj.get("kind") == "Namespace" and label("stack") in _map(md.get("labels")) and isinstance(md.get("name"), str):
            check_tenant(ns_obj, by_ns.get(md["name"], []), oracle, found)
    check_network_bounds(objs, by_ns, found)
    return found


def _has_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


def check_network_bounds(objs: list[dict[str, Any]], by_ns: dict[str, list[dict]], found: Findings) -> None:
    """tenant-network-bounds: the admission policy covers each CT tenant, and the stack's own policies keep its bounds."""
    from ctfleet.stacks import tenant_policies as tp

    pid = "tenant-network-bounds"
    policies: dict[str, Any] = {}
    for o in objs:
        if o.get("kind") == "ValidatingAdmissionPolicy":
            md = _map(o.get("metadata"))
            text = _map(md.get("annotations")).get(tp.BOUNDS_ANNOTATION)
            if text is UNKNOWN:
                found.unknown(pid, _subject(o), f"metadata.annotations[{tp.BOUNDS_ANNOTATION}]")
            elif isinstance(text, str):
                try:
                    policies[md.get("name")] = tp.bounds_from_json(text)
                except ValueError as exc:
                    found.bad(pid, _subject(o), f"annotation {tp.BOUNDS_ANNOTATION}: {exc}")
    bindings = [(_map(_map(_map(b.get("spec")).get("matchResources")).get("namespaceSelector")), _map(b.get("spec")).get("policyName"))
                for b in objs if b.get("kind") == "ValidatingAdmissionPolicyBinding"]
    for ns_obj in objs:
        md = _map(ns_obj.get("metadata"))
        labels = _map(md.get("labels"))
        if ns_obj.get("kind") != "Namespace" or labels.get(label("kind")) not in tp.BOUNDED_KINDS or label("stack") not in labels:
            continue
        if _has_unknown(labels) or any(_has_unknown(sel) for sel, _ in bindings):
            found.unknown(pid, _subject(ns_obj), "the namespace's labels or a binding's selector")
            continue
        chosen = [policies[name] for sel, name in bindings if name in policies and tp.selects(sel, labels)]
        if not chosen:
            found.bad(pid, _subject(ns_obj), "no ValidatingAdmissionPolicy of the stack bounds the NetworkPolicies its tenant may "
                                             "write (ctfleet.stacks.tenant_policies.admission_objects)")
            continue
        for np in by_ns.get(md.get("name"), []):
            if np.get("kind") != "NetworkPolicy":
                continue
            if _has_unknown(np.get("spec")):
                found.unknown(pid, _subject(np), "spec")
                continue
            for problem in tp.out_of_bounds(np, chosen[0], md["name"]):
                found.bad(pid, _subject(np), f"{problem} (tenants' policies are held to the same bounds in the cluster)")


# ------------------------------------------------------------------ tenants
def check_tenant_labels(ns_obj: dict[str, Any], oracle: Oracle, found: Findings) -> None:
    subject = _subject(ns_obj)
    raw = _map(ns_obj["metadata"]).get("labels")
    labels = {k: v for k, v in _map(raw).items()}
    unknown = sorted(k for k, v in labels.items() if v is UNKNOWN)
    for key in unknown:
        found.unknown("tenant-labels", subject, f"metadata.labels[{key}]")
    kind = labels.get(label("kind"), "")
    for key in REQUIRED_LABELS["*"] + REQUIRED_LABELS.get(kind if isinstance(kind, str) else "", []):
        if key not in labels:
            found.bad("tenant-labels", subject, f"label {key} is missing")
    for key, value in labels.items():
        if value is not UNKNOWN and (not is_label_key(key) or not is_label_value(str(value))):
            found.bad("tenant-labels", subject, f"label {key}={value!r} is not a valid Kubernetes label")
    if unknown:
        return
    expected = oracle.expect(labels)
    if isinstance(expected, str):
        found.bad("tenant-labels", subject, f"cannot tell the tenant's norm: {expected}")
    elif PSA_ENFORCE in labels and labels[PSA_ENFORCE] != expected.psa_level:
        found.bad("tenant-labels", subject,
                  f"Pod Security enforce level is {labels[PSA_ENFORCE]!r}, the norm (HST-5) requires {expected.psa_level!r}")


def check_tenant(ns_obj: dict[str, Any], inside: list[dict[str, Any]], oracle: Oracle, found: Findings) -> None:
    """tenant-quota, quota-within-norm and tenant-default-deny for one tenant namespace."""
    subject = _subject(ns_obj)
    labels = _map(_map(ns_obj["metadata"]).get("labels"))
    if any(v is UNKNOWN for v in labels.values()):
        found.unknown("quota-within-norm", subject, "metadata.labels")
        expected: Expectation | str | None = None
    else:
        expected = oracle.expect(dict(labels))

    quotas = [o for o in inside if o.get("kind") == "ResourceQuota"]
    if not quotas:
        found.bad("tenant-quota", subject, "no ResourceQuota")
    for q in quotas:
        hard = _map(q.get("spec")).get("hard")
        if q.get("spec") is UNKNOWN or hard is UNKNOWN:
            found.unknown("tenant-quota", _subject(q), "spec.hard")
            continue
        hard = _map(hard)
        missing = [keys[0] for keys in QUOTA_KEYS if not any(k in hard for k in keys)]
        if missing:
            found.bad("tenant-quota", _subject(q), f"does not cap {', '.join(missing)}")
        if any(v is UNKNOWN for v in hard.values()):
            found.unknown("quota-within-norm", _subject(q), "spec.hard")
            continue
        if isinstance(expected, Expectation):
            try:
                actual = Quota.from_hard(hard)
            except ValueError as exc:
                found.bad("tenant-quota", _subject(q), str(exc))
                continue
            for f in actual.exceeding(expected.quota):
                what, unit = _FIELD_WORDS[f]
                found.bad("quota-within-norm", _subject(q),
                          f"{what} {_show(getattr(actual, f))}{unit} exceeds the norm's {_show(getattr(expected.quota, f))}{unit} "
                          f"({Quota.CONTROLS[f]}, {expected.source})")
            for key, ceiling in (("services.loadbalancers", expected.load_balancers), ("services.nodeports", expected.node_ports)):
                if key in hard and _number(hard[key]) > ceiling:
                    found.bad("quota-within-norm", _subject(q), f"{key} {hard[key]} exceeds {ceiling} ({expected.source})")
            _check_limits_fit(hard, [o for o in inside if o.get("kind") == "LimitRange"], found)

    if expected is None:
        return
    if not isinstance(expected, Expectation) or expected.default_deny:
        policies = [o for o in inside if o.get("kind") == "NetworkPolicy"]
        if not any(_is_default_deny(o) for o in policies):
            if any(o.get("spec") is UNKNOWN for o in policies):
                found.unknown("tenant-default-deny", subject, "a NetworkPolicy's spec")
            else:
                found.bad("tenant-default-deny", subject, "no NetworkPolicy denies all ingress and egress by default")


def _number(value: Any) -> float:
    try:
        return parse_quantity(value)
    except ValueError:
        return float("inf")


def _check_limits_fit(hard: dict[str, Any], limit_ranges: list[dict[str, Any]], found: Findings) -> None:
    """A tenant whose pods take the LimitRange defaults must reach its pod quota, not its cpu or memory quota first."""
    pods = _number(hard.get("pods", "inf"))
    if pods == float("inf"):
        return  # no pod quota to reach (tenant-quota reports the missing cap)
    for lr in limit_ranges:
        for item in _list(_map(lr.get("spec")).get("limits")):
            item = _map(item)
            if item.get("type") != "Container":
                continue
            for kind in ("default", "defaultRequest"):
                values = _map(item.get(kind))
                prefix = "limits" if kind == "default" else "requests"
                for resource in ("cpu", "memory", "ephemeral-storage"):
                    cap = hard.get(f"{prefix}.{resource}")
                    if cap is None or values.get(resource) in (None, UNKNOWN) or cap is UNKNOWN:
                        continue
                    if _number(values[resource]) * pods > _number(cap) * (1 + 1e-9):
                        found.bad("tenant-quota", _subject(lr),
                                  f"{kind} {resource} {values[resource]} x {int(pods)} pods exceeds the quota's "
                                  f"{prefix}.{resource} {cap}: a tenant using the defaults never reaches its pod quota")


_FIELD_WORDS = {"cpu": ("cpu", " cores"), "memory_gib": ("memory", " GiB"), "storage_gib": ("storage", " GiB"), "pods": ("pods", "")}


def _show(v: float) -> str:
    return "unlimited" if v == float("inf") else (str(int(v)) if float(v).is_integer() else f"{v:g}")


def _is_default_deny(np: dict[str, Any]) -> bool:
    spec = _map(np.get("spec"))
    types = spec.get("policyTypes")
    return (spec.get("podSelector") in ({}, None) or spec.get("podSelector") == {"matchLabels": {}}) \
        and isinstance(types, list) and {"Ingress", "Egress"} <= set(types) \
        and not spec.get("ingress") and not spec.get("egress")


# ------------------------------------------------------------------ network policies
def check_network_policy(np: dict[str, Any], found: Findings) -> None:
    subject = _subject(np)
    spec = np.get("spec")
    if spec is UNKNOWN:
        found.unknown("no-allow-all", subject, "spec")
        return
    spec = _map(spec)
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        rules = spec.get(direction)
        if rules is UNKNOWN:
            found.unknown("no-allow-all", subject, f"spec.{direction}")
            continue
        for i, rule in enumerate(_list(rules)):
            where = f"{direction}[{i}]"
            if rule is UNKNOWN:
                found.unknown("no-allow-all", subject, f"spec.{where}")
                continue
            rule = _map(rule)
            peers, ports = rule.get(peers_key), rule.get("ports")
            if peers is UNKNOWN or ports is UNKNOWN:
                found.unknown("no-allow-all", subject, f"spec.{where}")
                continue
            if not peers:
                found.bad("no-allow-all", subject, f"{where} has no '{peers_key}': it allows every peer" + ("" if ports else " on every port"))
                continue
            for peer in _list(peers):
                peer = _map(peer)
                wide = peer.get("namespaceSelector") == {} and not _map(peer.get("podSelector")).get("matchLabels") \
                    or _map(peer.get("ipBlock")).get("cidr") in ("0.0.0.0/0", "::/0")
                if wide and not ports:
                    found.bad("no-allow-all", subject, f"{where} allows {peer} on every port")


# ------------------------------------------------------------------ pods
def _pod_spec(obj: dict[str, Any]) -> Any:
    spec = obj.get("spec")
    kind = obj.get("kind")
    if kind == "Pod":
        return spec
    path = ("jobTemplate", "spec", "template", "spec") if kind == "CronJob" else ("template", "spec")
    for key in path:
        if spec is UNKNOWN:
            return UNKNOWN
        spec = _map(spec).get(key)
    return spec


def check_pods(obj: dict[str, Any], found: Findings) -> None:
    subject = _subject(obj)
    pid = "no-privileged-pods"
    pod = _pod_spec(obj)
    if pod is UNKNOWN:
        found.unknown(pid, subject, "the pod template")
        return
    pod = _map(pod)

    def flag(value: Any, path: str, message: str, bad_when: Any = True) -> None:
        if value is UNKNOWN:
            found.unknown(pid, subject, path)
        elif (value is True) if bad_when is True else (value is not False):
            found.bad(pid, subject, message)

    for key in ("hostNetwork", "hostPID", "hostIPC"):
        flag(pod.get(key), key, f"{key} is true")
    volumes = pod.get("volumes")
    if volumes is UNKNOWN:
        found.unknown(pid, subject, "volumes")
    for i, v in enumerate(_list(volumes)):
        if v is UNKNOWN:
            found.unknown(pid, subject, f"volumes[{i}]")
        elif "hostPath" in _map(v):
            found.bad(pid, subject, f"volume {_map(v).get('name')} mounts a host path")
    pod_sc = pod.get("securityContext")
    if pod_sc is UNKNOWN:
        found.unknown(pid, subject, "securityContext")
    pod_sc = _map(pod_sc)
    for group in ("initContainers", "containers"):
        containers = pod.get(group)
        if containers is UNKNOWN:
            found.unknown(pid, subject, group)
            continue
        for i, c in enumerate(_list(containers)):
            if c is UNKNOWN:
                found.unknown(pid, subject, f"{group}[{i}]")
                continue
            c = _map(c)
            who = f"container {c.get('name')}"
            sc = c.get("securityContext")
            if sc is UNKNOWN:
                found.unknown(pid, subject, f"{group}[{i}].securityContext")
                continue
            sc = _map(sc)
            where = f"{group}[{i}].securityContext"
            flag(sc.get("privileged"), f"{where}.privileged", f"{who} is privileged")
            flag(sc.get("allowPrivilegeEscalation"), f"{where}.allowPrivilegeEscalation",
                 f"{who} does not set allowPrivilegeEscalation: false", bad_when="not False")
            non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
            if non_root is UNKNOWN:
                found.unknown(pid, subject, f"{where}.runAsNonRoot")
            elif non_root is not True:
                found.bad(pid, subject, f"{who} may run as root (runAsNonRoot is not true)")
            uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
            if uid is UNKNOWN:
                found.unknown(pid, subject, f"{where}.runAsUser")
            elif uid == 0:
                found.bad(pid, subject, f"{who} runs as uid 0")
            caps = sc.get("capabilities")
            if caps is UNKNOWN:
                found.unknown(pid, subject, f"{where}.capabilities")
                continue
            drop, add = _map(caps).get("drop"), _map(caps).get("add")
            if drop is UNKNOWN:
                found.unknown(pid, subject, f"{where}.capabilities.drop")
            elif "ALL" not in _list(drop):
                found.bad(pid, subject, f"{who} does not drop ALL capabilities")
            if add is UNKNOWN:
                found.unknown(pid, subject, f"{where}.capabilities.add")
            elif add:
                found.bad(pid, subject, f"{who} adds capabilities {list(add)}")


# ------------------------------------------------------------------ data safety
def check_data_protected(obj: dict[str, Any], protected: bool, found: Findings) -> None:
    """Data-bearing objects must be protected, unless the object says the stack's config allowed it."""
    if obj.get("kind") not in ("Namespace", "PersistentVolumeClaim") or protected:
        return
    annotations = _map(_map(obj.get("metadata")).get("annotations"))
    allowed = annotations.get(DESTRUCTIVE_ALLOWED)
    if allowed is UNKNOWN:
        found.unknown("data-protected", _subject(obj), f"metadata.annotations[{DESTRUCTIVE_ALLOWED}]")
    elif allowed != "true":
        found.bad("data-protected", _subject(obj),
                  "is not protected: an update could delete or replace it with its data; declare it with protect, or set "
                  "ctfleet:allowDestructiveChanges: true in the stack config for this update, after a backup")
