"""One Pulumi ComponentResource per hosting tier, built with pulumi-kubernetes.

The components only translate a :class:`~ctfleet.stacks.plan.StackPlan` into resources:
every object comes from :func:`ctfleet.stacks.manifests.render`'s building blocks, so what
``ctfleet stacks plan`` shows is what ``pulumi up`` declares. Children are created with
``parent=self`` (the provider given to the tier component is inherited), and each
component ends with ``register_outputs``.

Type tokens::

    ctfleet:tier:NationalCloud     national platforms + national monitoring
    ctfleet:tier:RegionalCloud     a region's SDR cloud: CT tenants, monitoring, package cache
    ctfleet:tier:GroupingHosting   an ECI/GCT grouping's tenant
    ctfleet:tier:SdlHosting        an SDL's tenant (commune with arrondissements)
    ctfleet:hosting:Tenant         one tenant (namespace, quota, limits, network policies, RBAC)
    ctfleet:system:Workload        one system workload (collector, Prometheus, apt-cacher-ng); was ctfleet:system:App

Data safety (see :mod:`ctfleet.stacks.safety`): Namespaces and PersistentVolumeClaims are
declared with ``protect`` (the engine refuses to delete or replace them) unless the stack's
config sets ``allowDestructiveChanges``, and always with ``retain_on_delete`` (an allowed
removal leaves the object in the cluster for an administrator). A component whose type
token or name changes keeps its former ones as aliases (:data:`FORMER_TYPES`), so a rename
never replaces the objects under it.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import pulumi
import pulumi_kubernetes as k8s

from ctfleet.stacks.manifests import Manifest, app_objects, cluster_role, exposure_objects, render, tenant_objects
from ctfleet.stacks.names import label
from ctfleet.stacks.plan import AppPlan, StackPlan, TenantPlan
from ctfleet.stacks.safety import DATA_KINDS, data_inventory
from ctfleet.stacks.tenant_policies import admission_objects

_RESOURCE_CLASSES = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ResourceQuota"): k8s.core.v1.ResourceQuota,
    ("v1", "LimitRange"): k8s.core.v1.LimitRange,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Service"): k8s.core.v1.Service,
    ("v1", "PersistentVolumeClaim"): k8s.core.v1.PersistentVolumeClaim,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("networking.k8s.io/v1", "Ingress"): k8s.networking.v1.Ingress,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): k8s.rbac.v1.RoleBinding,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"): k8s.admissionregistration.v1.ValidatingAdmissionPolicy,
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding"):
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding,
}


# Type tokens components had before: their URNs stay the same resources (pulumi aliases).
FORMER_TYPES: dict[str, tuple[str, ...]] = {
    "ctfleet:system:Workload": ("ctfleet:system:App",),
}


def _aliases(type_token: str) -> list[pulumi.Alias]:
    return [pulumi.Alias(type_=old) for old in FORMER_TYPES.get(type_token, ())]


def data_options(obj: Manifest, opts: pulumi.ResourceOptions, allow_destructive: bool) -> pulumi.ResourceOptions:
    """``opts``, plus protect and retain_on_delete for the objects that hold data."""
    if obj["kind"] not in DATA_KINDS:
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(protect=not allow_destructive, retain_on_delete=True))


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def declare(obj: Manifest, resource_name: str, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Declare one Kubernetes object from its manifest dict.

    Top-level fields become the resource's keyword arguments (``roleRef`` -> ``role_ref``);
    nested dicts are passed as they are, in Kubernetes camelCase, which pulumi-kubernetes
    accepts unchanged. ``metadata.name`` is always set: nothing is auto-named, so names
    stay stable across runs and readable in ``kubectl``.
    """
    kwargs = {_snake(k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    cls = _RESOURCE_CLASSES.get((obj["apiVersion"], obj["kind"]))
    if cls is None and "." in obj["apiVersion"].split("/")[0]:
        # a custom resource (cert-manager's Certificate): fields other than metadata go as they are
        return k8s.apiextensions.CustomResource(resource_name, api_version=obj["apiVersion"], kind=obj["kind"],
                                                metadata=obj["metadata"], opts=opts,
                                                **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")})
    if cls is None:
        raise KeyError(f"no resource class for {obj['kind']} {obj['apiVersion']}")
    return cls(resource_name, opts=opts, **kwargs)


class Tenant(pulumi.ComponentResource):
    """A tenant: Namespace first, then its quota, limits, network policies and RoleBinding."""

    namespace: pulumi.Output[str]

    def __init__(self, plan: TenantPlan, role: str, opts: Optional[pulumi.ResourceOptions] = None,
                 allow_destructive: bool = False):
        super().__init__("ctfleet:hosting:Tenant", plan.namespace, None, opts)
        objs = tenant_objects(plan, role)
        ns = declare(objs[0], plan.namespace, data_options(objs[0], pulumi.ResourceOptions(parent=self), allow_destructive))
        inside = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        for obj in objs[1:]:
            declare(obj, f"{plan.namespace}-{obj['kind'].lower()}-{obj['metadata']['name']}",
                    data_options(obj, inside, allow_destructive))
        # the name as the provider reports it (a dependency on the namespace), else the planned one
        self.namespace = ns.metadata.apply(
            lambda md: (md.get("name") if isinstance(md, dict) else getattr(md, "name", None)) or plan.namespace)
        self.register_outputs({"namespace": self.namespace})


class SystemApp(pulumi.ComponentResource):
    """A system workload: ServiceAccount, ConfigMap, Service, optional PVC, Deployment."""

    TYPE = "ctfleet:system:Workload"

    def __init__(self, plan: AppPlan, stack_labels: dict[str, str], depends_on: list[pulumi.Resource],
                 opts: Optional[pulumi.ResourceOptions] = None, allow_destructive: bool = False):
        name = f"{plan.namespace}-{plan.name}"
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=_aliases(self.TYPE)))
        super().__init__(self.TYPE, name, None, opts)
        inside = pulumi.ResourceOptions(parent=self, depends_on=depends_on)
        for obj in app_objects(plan, stack_labels):
            # resource names of the first objects unchanged; the further ConfigMaps (FileSet) by their name
            suffix = f"-{obj['metadata']['name']}" if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] != plan.name else ""
            declare(obj, f"{name}-{obj['kind'].lower()}{suffix}", data_options(obj, inside, allow_destructive))
        for obj in exposure_objects(plan, stack_labels):  # named apart: the app has its own Service already
            declare(obj, f"{name}-{obj['kind'].lower()}-{obj['metadata']['name']}", inside)
        self.register_outputs({"image": plan.image})


class _Cloud(pulumi.ComponentResource):
    """What every tier shares: the operators' ClusterRole, the tenants, the system apps."""

    TYPE = "ctfleet:tier:Cloud"
    TIER = ""

    tenant_namespaces: pulumi.Output[list[str]]
    tenant_count: pulumi.Output[int]
    quota_total: pulumi.Output[dict[str, Any]]

    def __init__(self, plan: StackPlan, opts: Optional[pulumi.ResourceOptions] = None):
        if plan.ref.tier != self.TIER:
            raise ValueError(f"{type(self).__name__} provisions tier {self.TIER}, not {plan.ref.tier} ({plan.ref.name})")
        super().__init__(self.TYPE, plan.ref.name, None, opts)
        stack_labels = {label("stack"): plan.ref.name}
        role = declare(cluster_role(plan.cluster_role, stack_labels), plan.cluster_role, pulumi.ResourceOptions(parent=self))
        tenant_opts = pulumi.ResourceOptions(parent=self, depends_on=[role])
        allow = plan.config.allowDestructiveChanges
        self.tenants = {t.namespace: Tenant(t, plan.cluster_role, tenant_opts, allow) for t in plan.tenants}
        for obj in admission_objects(plan):  # bounds on the tenants' own NetworkPolicies (cluster-scoped)
            declare(obj, f"{obj['kind'].lower()}-{obj['metadata']['name']}", pulumi.ResourceOptions(parent=self))
        for app in plan.apps:
            SystemApp(app, stack_labels, [self.tenants[app.namespace]], pulumi.ResourceOptions(parent=self), allow)
        for obj in plan.extra:  # the data path's Ingresses (ctfleet.stacks.dataplane)
            md = obj["metadata"]
            declare(obj, f"{md['namespace']}-{obj['kind'].lower()}-{md['name']}",
                    pulumi.ResourceOptions(parent=self, depends_on=[self.tenants[md["namespace"]]]))
        q = plan.quota_total()
        total = {"cpu": q.cpu, "memoryGiB": q.memory_gib, "storageGiB": q.storage_gib, "pods": q.pods}
        self.tenant_namespaces = pulumi.Output.all(*[t.namespace for t in self.tenants.values()])
        self.tenant_count = pulumi.Output.from_input(len(plan.tenants))
        self.quota_total = pulumi.Output.from_input(total)
        self.data_inventory = pulumi.Output.from_input(data_inventory(render(plan)))
        self.register_outputs({"tenantNamespaces": self.tenant_namespaces, "tenantCount": self.tenant_count,
                               "quotaTotal": self.quota_total, "dataInventory": self.data_inventory})


class NationalCloud(_Cloud):
    """The DGCT national cloud: a tenant per shared national platform, and national monitoring."""

    TYPE = "ctfleet:tier:NationalCloud"
    TIER = "national"


class RegionalCloud(_Cloud):
    """A region's SDR cloud: a tenant per hosted CT, the collector shard, Prometheus, apt-cacher-ng."""

    TYPE = "ctfleet:tier:RegionalCloud"
    TIER = "sdr"


class GroupingHosting(_Cloud):
    """An ECI/GCT grouping's hosting: one tenant for the grouping and its member CTs."""

    TYPE = "ctfleet:tier:GroupingHosting"
    TIER = "eci"


class SdlHosting(_Cloud):
    """An SDL's hosting: the tenant of its commune with arrondissements."""

    TYPE = "ctfleet:tier:SdlHosting"
    TIER = "sdl"


COMPONENTS: dict[str, type[_Cloud]] = {c.TIER: c for c in (NationalCloud, RegionalCloud, GroupingHosting, SdlHosting)}
