"""Policies as code: the invariants every tenant and workload must satisfy (pure).

Written once, over plain Kubernetes objects, so the same functions check the pure
rendering, the objects captured from a mocked ``pulumi up``, and (through the CrossGuard
pack in ``infra/policy/``) a real preview. Each policy has an id::

    tenant-quota        every tenant namespace has a ResourceQuota capping cpu, memory, storage and pods
    tenant-default-deny every tenant namespace whose norm says so (HST-6) has a default-deny policy
    no-allow-all        no NetworkPolicy rule opens all peers on all ports
    no-privileged-pods  no pod is privileged, on the host's network/PID/IPC, root, or able to escalate
    tenant-labels       tenant namespaces carry the required labels, valid, and Pod Security at the norm (HST-5)
    quota-within-norm   a tenant's quota is within its norm (HST-1..4 of its segment; infra/hosting.yaml
                        for national platforms and system tenants; the members' sum for a grouping)

``check(objects, oracle)`` returns every :class:`Violation`; an empty list means compliant.
The oracle says what a namespace's norm is, from its labels and the registry — not from
the plan that produced the objects, so a planning bug cannot hide from its own check.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

from ctfleet.core.models import Tier
from ctfleet.core.norms import NormSet
from ctfleet.core.registry import Registry
from ctfleet.stacks.hosting import HostingCatalogue, Quota
from ctfleet.stacks.names import is_label_key, is_label_value, label

POLICIES = {
    "tenant-quota": "every tenant namespace has a ResourceQuota capping cpu, memory, storage and pods",
    "tenant-default-deny": "every tenant namespace has a default-deny NetworkPolicy for ingress and egress (HST-6)",
    "no-allow-all": "no NetworkPolicy rule allows all peers on all ports",
    "no-privileged-pods": "no pod is privileged, uses the host's network, PID or IPC namespaces or paths, runs as root or can escalate",
    "tenant-labels": "tenant namespaces carry the required labels with valid values, and Pod Security Admission at the norm's level (HST-5)",
    "quota-within-norm": "each tenant's quota is within its norm (HST-1..HST-4)",
}

PSA_ENFORCE = "pod-security.kubernetes.io/enforce"
REQUIRED_LABELS = {
    "*": [label("stack"), label("tier"), label("kind"), PSA_ENFORCE],
    "ct": [label("ct-code"), label("region"), label("segment"), label("lot")],
    "grouping": [label("grouping"), label("region")],
    "platform": [label("platform")],
    "system": [label("system")],
}
QUOTA_KEYS = (("requests.cpu", "limits.cpu", "cpu"), ("requests.memory", "limits.memory", "memory"),
              ("requests.storage",), ("pods",))
POD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}


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
            parts = [self._ct(m) for m in g.members if m in self.registry.cts and Tier.ECI in self.registry.cts[m].tiers]
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
            return self._baseline(spec.quota(), f"infra/hosting.yaml (system.{name})")
        return f"unknown tenant kind {kind!r}"


def _subject(obj: dict[str, Any]) -> str:
    md = obj.get("metadata", {})
    ns = md.get("namespace")
    return f"{obj.get('kind')}/{ns + '/' if ns else ''}{md.get('name')}"


def check(objects: Iterable[dict[str, Any]], oracle: Oracle) -> list[Violation]:
    """Every violation of every policy in ``objects`` (one stack's Kubernetes objects)."""
    objs = list(objects)
    namespaces = [o for o in objs if o.get("kind") == "Namespace" and label("stack") in (o["metadata"].get("labels") or {})]
    by_ns: dict[str, list[dict]] = defaultdict(list)
    for o in objs:
        ns = o.get("metadata", {}).get("namespace")
        if ns:
            by_ns[ns].append(o)
    out: list[Violation] = []
    for ns_obj in namespaces:
        out += check_tenant(ns_obj, by_ns.get(ns_obj["metadata"]["name"], []), oracle)
    for o in objs:
        if o.get("kind") == "NetworkPolicy":
            out += check_network_policy(o)
        elif o.get("kind") in POD_KINDS:
            out += check_pods(o)
    return out


def check_tenant(ns_obj: dict[str, Any], inside: list[dict[str, Any]], oracle: Oracle) -> list[Violation]:
    name = ns_obj["metadata"]["name"]
    subject = f"Namespace/{name}"
    labels = dict(ns_obj["metadata"].get("labels") or {})
    out: list[Violation] = []

    # labels
    kind = labels.get(label("kind"), "")
    for key in REQUIRED_LABELS["*"] + REQUIRED_LABELS.get(kind, []):
        if key not in labels:
            out.append(Violation("tenant-labels", subject, f"label {key} is missing"))
    for key, value in labels.items():
        if not is_label_key(key) or not is_label_value(str(value)):
            out.append(Violation("tenant-labels", subject, f"label {key}={value!r} is not a valid Kubernetes label"))
    expected = oracle.expect(labels)
    if isinstance(expected, str):
        out.append(Violation("tenant-labels", subject, f"cannot tell the tenant's norm: {expected}"))
    elif PSA_ENFORCE in labels and labels[PSA_ENFORCE] != expected.psa_level:
        out.append(Violation("tenant-labels", subject,
                             f"Pod Security enforce level is {labels[PSA_ENFORCE]!r}, the norm (HST-5) requires {expected.psa_level!r}"))

    # quota
    quotas = [o for o in inside if o.get("kind") == "ResourceQuota"]
    if not quotas:
        out.append(Violation("tenant-quota", subject, "no ResourceQuota"))
    for q in quotas:
        hard = (q.get("spec") or {}).get("hard") or {}
        missing = [keys[0] for keys in QUOTA_KEYS if not any(k in hard for k in keys)]
        if missing:
            out.append(Violation("tenant-quota", _subject(q), f"does not cap {', '.join(missing)}"))
        if isinstance(expected, Expectation):
            try:
                actual = Quota.from_hard(hard)
            except ValueError as exc:
                out.append(Violation("tenant-quota", _subject(q), str(exc)))
                continue
            for f in actual.exceeding(expected.quota):
                what, unit = _FIELD_WORDS[f]
                out.append(Violation("quota-within-norm", _subject(q),
                                     f"{what} {_show(getattr(actual, f))}{unit} exceeds the norm's {_show(getattr(expected.quota, f))}{unit} "
                                     f"({Quota.CONTROLS[f]}, {expected.source})"))

    # default deny
    if not isinstance(expected, Expectation) or expected.default_deny:
        if not any(_is_default_deny(o) for o in inside if o.get("kind") == "NetworkPolicy"):
            out.append(Violation("tenant-default-deny", subject, "no NetworkPolicy denies all ingress and egress by default"))
    return out


_FIELD_WORDS = {"cpu": ("cpu", " cores"), "memory_gib": ("memory", " GiB"), "storage_gib": ("storage", " GiB"), "pods": ("pods", "")}


def _show(v: float) -> str:
    return "unlimited" if v == float("inf") else (str(int(v)) if float(v).is_integer() else f"{v:g}")


def _is_default_deny(np: dict[str, Any]) -> bool:
    spec = np.get("spec") or {}
    return (spec.get("podSelector") in ({}, None) or spec.get("podSelector") == {"matchLabels": {}}) \
        and {"Ingress", "Egress"} <= set(spec.get("policyTypes") or []) \
        and not spec.get("ingress") and not spec.get("egress")


def check_network_policy(np: dict[str, Any]) -> list[Violation]:
    spec = np.get("spec") or {}
    out = []
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            peers = rule.get(peers_key) or []
            ports = rule.get("ports") or []
            where = f"{direction}[{i}]"
            if not peers:
                out.append(Violation("no-allow-all", _subject(np), f"{where} has no '{peers_key}': it allows every peer"
                                     + ("" if ports else " on every port")))
                continue
            for peer in peers:
                wide = peer.get("namespaceSelector") == {} and not (peer.get("podSelector") or {}).get("matchLabels") \
                    or (peer.get("ipBlock") or {}).get("cidr") in ("0.0.0.0/0", "::/0")
                if wide and not ports:
                    out.append(Violation("no-allow-all", _subject(np), f"{where} allows {peer} on every port"))
    return out


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def check_pods(obj: dict[str, Any]) -> list[Violation]:
    pod = _pod_spec(obj)
    subject = _subject(obj)
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(Violation("no-privileged-pods", subject, f"{key} is true"))
    for v in pod.get("volumes") or []:
        if "hostPath" in v:
            out.append(Violation("no-privileged-pods", subject, f"volume {v.get('name')} mounts a host path"))
    pod_sc = pod.get("securityContext") or {}
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        sc = c.get("securityContext") or {}
        who = f"container {c.get('name')}"
        if sc.get("privileged"):
            out.append(Violation("no-privileged-pods", subject, f"{who} is privileged"))
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(Violation("no-privileged-pods", subject, f"{who} does not set allowPrivilegeEscalation: false"))
        if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
            out.append(Violation("no-privileged-pods", subject, f"{who} may run as root (runAsNonRoot is not true)"))
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(Violation("no-privileged-pods", subject, f"{who} runs as uid 0"))
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            out.append(Violation("no-privileged-pods", subject, f"{who} does not drop ALL capabilities"))
        if (sc.get("capabilities") or {}).get("add"):
            out.append(Violation("no-privileged-pods", subject, f"{who} adds capabilities {sc['capabilities']['add']}"))
    return out
