"""A stack plan as Kubernetes objects: plain dicts in Kubernetes' own camelCase (pure).

These dicts are exactly what the Pulumi components pass to pulumi-kubernetes (so a mock
sees them unchanged), what ``ctfleet stacks plan --manifests`` prints, and what the
policies and the schema validation check. Example (a CT tenant's quota)::

    {"apiVersion": "v1", "kind": "ResourceQuota",
     "metadata": {"name": "tenant-quota", "namespace": "ct-01-511-01-0", "labels": {...}},
     "spec": {"hard": {"requests.cpu": "32", "limits.cpu": "32", "requests.memory": "128Gi",
                       "limits.memory": "128Gi", "requests.storage": "4000Gi", "pods": "400"}}}
"""

from __future__ import annotations

import hashlib
from typing import Any

from ctfleet.stacks import exposure
from ctfleet.stacks.hosting import cpu_quantity, gib_quantity
from ctfleet.stacks.names import DESTRUCTIVE_ALLOWED, label
from ctfleet.stacks.plan import NAME, RUN_AS, AppPlan, Flow, Peer, StackPlan, TenantPlan
from ctfleet.stacks.tenant_policies import admission_objects

Manifest = dict[str, Any]

QUOTA = "tenant-quota"
LIMITS = "tenant-limits"
DEFAULT_DENY = "default-deny"
OPERATORS = "tenant-operators"

_CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]
_READ = ["get", "list", "watch"]
# Tenant operators run their applications but cannot loosen what the stack set up: quotas
# and limits are read-only to them; they may write NetworkPolicies, which the stack's
# ValidatingAdmissionPolicy keeps within the stack's flows (ctfleet.stacks.tenant_policies).
OPERATOR_RULES = [
    {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/exec", "services", "configmaps", "secrets",
                                      "persistentvolumeclaims", "serviceaccounts"], "verbs": _CRUD},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": _CRUD},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _CRUD},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _CRUD},
    {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": _CRUD},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": _CRUD},
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": _CRUD},
    {"apiGroups": [""], "resources": ["resourcequotas", "limitranges", "events"], "verbs": _READ},
]

_KIND_ORDER = ["ClusterRole", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "RoleBinding",
               "ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Deployment", "StatefulSet", "Service", "Certificate",
               "Ingress"]


def render(plan: StackPlan) -> list[Manifest]:
    """Every object of the stack, in a stable order (namespace, kind, name)."""
    stack_labels = {label("stack"): plan.ref.name}
    objs: list[Manifest] = [cluster_role(plan.cluster_role, stack_labels), *admission_objects(plan)]
    for t in plan.tenants:
        objs += tenant_objects(t, plan.cluster_role)
    for a in plan.apps:
        objs += app_objects(a, stack_labels) + exposure_objects(a, stack_labels)
    objs += [dict(o) for o in plan.extra]
    return sorted(objs, key=sort_key)


def sort_key(obj: Manifest) -> tuple:
    md = obj["metadata"]
    kind = obj["kind"]
    return (md.get("namespace", md["name"] if kind == "Namespace" else ""),
            _KIND_ORDER.index(kind) if kind in _KIND_ORDER else 99, kind, md["name"])


def cluster_role(name: str, labels: dict[str, str]) -> Manifest:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": dict(labels)}, "rules": OPERATOR_RULES}


# ------------------------------------------------------------------ tenants
def tenant_objects(t: TenantPlan, role: str) -> list[Manifest]:
    """Namespace, ResourceQuota, LimitRange, NetworkPolicies and RoleBinding of one tenant."""
    ns = t.namespace
    owned = {label("stack"): t.labels[label("stack")]}
    objs: list[Manifest] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": dict(t.labels), "annotations": dict(t.annotations)}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _md(QUOTA, ns, owned),
         "spec": {"hard": t.quota.hard() | t.objects}},
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": _md(LIMITS, ns, owned), "spec": {"limits": _limits(t)}},
    ]
    if t.default_deny:
        objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _md(DEFAULT_DENY, ns, owned),
                     "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})
    objs += network_policies(t.flows, ns, owned)
    objs.append({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _md(OPERATORS, ns, owned),
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                 "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in t.operator_groups]})
    return objs


def _md(name: str, namespace: str, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict:
    md: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if annotations:
        md["annotations"] = annotations
    return md


def _limits(t: TenantPlan) -> list[dict]:
    """Container defaults that let the tenant reach its pod quota, and maxima at the quota.

    A pod that states no resources gets an equal share of the quota (cpu / pods, memory /
    pods), as request and limit both (the quota caps both at the norm): a tenant filling
    its pod quota with such pods fits its cpu and memory exactly, instead of stopping at a
    handful of pods (a 500m default against a 1-core norm allowed 2 of 20).
    """
    q = t.quota
    share = {"cpu": f"{max(1, int(q.cpu * 1000 // q.pods))}m", "memory": f"{max(1, int(q.memory_gib * 1024 // q.pods))}Mi"}
    if t.ephemeral_gib_per_pod:
        share["ephemeral-storage"] = gib_quantity(t.ephemeral_gib_per_pod)
    container = {
        "type": "Container",
        "default": dict(share),
        "defaultRequest": dict(share),
        "max": {"cpu": cpu_quantity(q.cpu), "memory": gib_quantity(q.memory_gib)},
    }
    out = [container]
    if q.storage_gib > 0:
        out.append({"type": "PersistentVolumeClaim", "max": {"storage": gib_quantity(q.storage_gib)}})
    return out


def network_policies(flows: tuple[Flow, ...], namespace: str, labels: dict[str, str]) -> list[Manifest]:
    """The allowed flows, one NetworkPolicy per set of pods they apply to (see :attr:`Flow.policy`).

    A CT tenant gets one ``allow-tenant-flows`` with a rule per flow; the system tenants get
    one per workload (``allow-prometheus``, ``allow-collector``, ...). Each rule's flow and
    reason are listed in the ``ctfleet.ma/flows`` annotation, in rule order. Grouping keeps
    the object count per tenant small (a regional stack declares ~1,600 tenants' worth).
    """
    groups: dict[str, list[Flow]] = {}
    for f in flows:
        groups.setdefault(f.policy, []).append(f)
    out = []
    for name, group in groups.items():
        spec: dict[str, Any] = {"podSelector": _selector(group[0].pods), "policyTypes": []}
        notes = []
        for direction in ("ingress", "egress"):
            rules = []
            for f in (f for f in group if f.direction == direction):
                rule: dict[str, Any] = {("from" if direction == "ingress" else "to"): [_peer(p) for p in f.peers]}
                if f.ports:
                    rule["ports"] = [{"protocol": proto, "port": port} for proto, port in f.ports]
                rules.append(rule)
                notes.append(f"{direction}[{len(rules) - 1}] {f.name}: {f.why}")
            if rules:
                spec["policyTypes"].append(direction.capitalize())
                spec[direction] = rules
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": _md(name, namespace, labels, {label("flows"): "; ".join(notes)}), "spec": spec})
    return out


def _selector(pairs) -> dict:
    return {"matchLabels": dict(pairs)} if pairs else {}


def _peer(p: Peer) -> dict:
    if p.cidr:
        return {"ipBlock": {"cidr": p.cidr}}
    out: dict[str, Any] = {}
    if p.namespace:
        out["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": p.namespace}}
    elif p.namespace_labels:
        out["namespaceSelector"] = {"matchLabels": dict(p.namespace_labels)}
    if p.pods or not out:
        out["podSelector"] = _selector(p.pods)
    return out


# ------------------------------------------------------------------ system workloads
def app_labels(a: AppPlan, stack_labels: dict[str, str]) -> dict[str, str]:
    return {NAME: a.name, "app.kubernetes.io/part-of": "ctfleet"} | stack_labels


def exposure_objects(a: AppPlan, stack_labels: dict[str, str]) -> list[Manifest]:
    """The Ingress (+ cert-manager Certificate) or LoadBalancer Service publishing ``a``, if exposed."""
    if a.expose is None:
        return []
    return exposure.objects(a.name, a.namespace, a.port_name, a.port, a.expose, app_labels(a, stack_labels))


def app_objects(a: AppPlan, stack_labels: dict[str, str]) -> list[Manifest]:
    labels = app_labels(a, stack_labels)
    ns = a.namespace
    config_hash = hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(a.config.items())).encode()).hexdigest()[:16]
    mounts = [{"name": "config", "mountPath": a.config_mount, "readOnly": True}]
    if a.config_sub_path:
        mounts[0]["subPath"] = a.config_sub_path
    volumes: list[dict] = [{"name": "config", "configMap": {"name": a.name}}]
    for i, path in enumerate(a.scratch):
        mounts.append({"name": f"scratch-{i}", "mountPath": path})
        volumes.append({"name": f"scratch-{i}", "emptyDir": {}})
    template_annotations = {label("config-hash"): config_hash}
    extra_maps: list[Manifest] = []
    for fs in a.files:
        cm = f"{a.name}-{fs.name}"
        digest = {label(f"{fs.name}-sha256"): fs.sha256}
        extra_maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _md(cm, ns, labels, fs.annotations | digest),
                           "data": dict(fs.data)})
        template_annotations |= digest  # a change of the files rolls the pods
        mounts.append({"name": fs.name, "mountPath": fs.mount, "readOnly": True})
        volumes.append({"name": fs.name, "configMap": {"name": cm}})
    for sm in a.secrets:
        mounts.append({"name": sm.secret, "mountPath": sm.mount, "readOnly": True})
        volumes.append({"name": sm.secret, "secret": {"secretName": sm.secret, "optional": sm.optional}})
    objs: list[Manifest] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _md(a.name, ns, labels), "automountServiceAccountToken": False},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _md(a.name, ns, labels), "data": dict(a.config)},
        {"apiVersion": "v1", "kind": "Service", "metadata": _md(a.name, ns, labels),
         "spec": {"type": "ClusterIP", "selector": {NAME: a.name},
                  "ports": [{"name": a.port_name, "port": a.port, "targetPort": a.port_name, "protocol": "TCP"}]}},
        *extra_maps,
    ]
    if a.spec.dataGiB and a.data_mount:
        pvc: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": gib_quantity(a.spec.dataGiB)}}}
        if a.storage_class:
            pvc["storageClassName"] = a.storage_class
        annotations = {DESTRUCTIVE_ALLOWED: "true"} if a.allow_destructive else None
        objs.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _md(f"{a.name}-data", ns, labels, annotations),
                     "spec": pvc})
        mounts.append({"name": "data", "mountPath": a.data_mount})
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": f"{a.name}-data"}})
    container: dict[str, Any] = {
        "name": a.name,
        "image": a.image,
        "ports": [{"name": a.port_name, "containerPort": a.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": cpu_quantity(a.spec.requests.cpu), "memory": f"{a.spec.requests.memoryMiB}Mi"},
            "limits": {"cpu": cpu_quantity(a.spec.limits.cpu), "memory": f"{a.spec.limits.memoryMiB}Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }
    if a.env_from_secret:
        container["envFrom"] = [{"secretRef": {"name": a.env_from_secret, "optional": True}}]
    env = [{"name": k, "value": v} for k, v in a.env]
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}} for k, secret, key in a.secret_env]
    if env:
        container["env"] = env
    if a.command:
        container["command"] = list(a.command)
    if a.args:
        container["args"] = list(a.args)
    if a.probe:
        container["readinessProbe"] = dict(a.probe) | {"periodSeconds": 10}
    pod_security: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                                    "seccompProfile": {"type": "RuntimeDefault"}}
    if a.sysctls:
        pod_security["sysctls"] = [{"name": k, "value": v} for k, v in a.sysctls]
    if a.kind == "StatefulSet":
        # one pod, never two on the same data: the old pod is gone before the new one starts
        controller: dict[str, Any] = {"serviceName": a.name, "podManagementPolicy": "OrderedReady",
                                      "updateStrategy": {"type": "RollingUpdate"}}
    else:
        # a ReadWriteOnce volume cannot be mounted by the old and the new pod at once
        controller = {"strategy": {"type": "Recreate" if a.spec.dataGiB else "RollingUpdate"}}
    objs.append({
        "apiVersion": "apps/v1", "kind": a.kind, "metadata": _md(a.name, ns, labels),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 3,
            **controller,
            "selector": {"matchLabels": {NAME: a.name}},
            "template": {
                "metadata": {"labels": labels, "annotations": template_annotations},
                "spec": {
                    "serviceAccountName": a.name,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    })
    return objs
