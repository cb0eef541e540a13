"""What a stack declares, computed from the registry, the norms and the stack config (pure).

``plan_stack`` is the one place that decides which tenants a cloud hosts, how much each
gets, which network flows it allows and which workloads run; the Pulumi components, the
operators' read-out (``ctfleet stacks plan``) and the tests all start from its result.

A tenant (see :class:`TenantPlan`) is a namespace with Pod Security Admission at the
norm's level (HST-5), a ResourceQuota and LimitRange from the norm's capacity
(HST-1..HST-4), a default-deny NetworkPolicy (HST-6) plus ``allow-*`` policies
holding the flows the tier needs, and a RoleBinding of its operator groups.

Which tenants each tier hosts:

- national: one per shared national platform (``infra/hosting.yaml``) + national monitoring
- sdr: one per CT of the region hosted by its SDR + the region's monitoring and package cache
- eci: one for the grouping, sized by the sum of its hosted members' norms
- sdl: one for the commune with arrondissements, sized by its norm

Each CT's tenant lives in exactly one stack, the one :func:`~ctfleet.stacks.names.tenant_home`
names (SDL, else its grouping's ECI/GCT, else its region's SDR).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from pydantic import BaseModel
from ruamel.yaml import YAML

from ctfleet.core.collector_config import CollectorConfig
from ctfleet.core.conventions import COLLECTOR_JOB, COLLECTOR_PORT, QUOTA_CONTROLS
from ctfleet.core.models import CT
from ctfleet.core.norms import NormSet, Resolved
from ctfleet.core.registry import Registry
from ctfleet.core.yamlio import Doc, validate
from ctfleet.stacks.config import StackConfig
from ctfleet.stacks.exposure import EXPOSABLE, ExposurePlan, notes as exposure_notes, plan_exposure
from ctfleet.stacks.schema import K8S_VERSION
from ctfleet.stacks.hosting import AppSpec, HostingCatalogue, Quota, QuotaSpec
from ctfleet.stacks.names import (
    DESTRUCTIVE_ALLOWED,
    MONITORING_NAMESPACE,
    PKGCACHE_NAMESPACE,
    StackRef,
    ascii_slug,
    ct_namespace,
    grouping_namespace,
    label,
    platform_namespace,
    tenant_home,
)

Kind = Literal["ct", "grouping", "platform", "system"]

PSA = "pod-security.kubernetes.io"
NAME = "app.kubernetes.io/name"
RUN_AS = 65532  # the unprivileged uid/gid system workloads run as ("nonroot" in distroless images)
COLLECTOR_SECRET = "collector-snmp"  # optional Secret with the collector's SNMP credentials
PROMETHEUS_PORT = 9090
APT_CACHER_PORT = 3142
HST_QUOTA = tuple(QUOTA_CONTROLS.values())


# ------------------------------------------------------------------ plan types
@dataclass(frozen=True)
class Peer:
    """One side of a flow: a namespace (by name or labels), pods in it, or an address block."""

    namespace: str | None = None
    namespace_labels: tuple[tuple[str, str], ...] = ()
    pods: tuple[tuple[str, str], ...] = ()  # pods with these labels (in `namespace`, or the tenant's own)
    cidr: str | None = None

    def show(self) -> str:
        if self.cidr:
            return self.cidr
        if self.namespace:
            where = self.namespace
        elif self.namespace_labels:
            where = "namespaces " + ",".join(f"{k}={v}" for k, v in self.namespace_labels)
        else:
            where = "this namespace"
        pods = ",".join(f"{k}={v}" for k, v in self.pods)
        return f"{where} pods {pods}" if pods else where


@dataclass(frozen=True)
class Flow:
    """An allowed flow: one rule of the NetworkPolicy :attr:`policy`. No ports = all ports."""

    name: str
    direction: Literal["ingress", "egress"]
    peers: tuple[Peer, ...]
    why: str
    ports: tuple[tuple[str, int], ...] = ()
    pods: tuple[tuple[str, str], ...] = ()  # the tenant's pods it applies to; () = all

    @property
    def policy(self) -> str:
        """The NetworkPolicy holding this flow: one per set of pods (manifests.network_policies)."""
        app = dict(self.pods).get(NAME)
        return f"allow-{app}" if app else ("allow-tenant-flows" if not self.pods else
                                           "allow-" + "-".join(v for _, v in self.pods))

    def show(self) -> str:
        arrow = "<-" if self.direction == "ingress" else "->"
        ports = ",".join(f"{p}/{proto.lower()}" for proto, p in self.ports) or "all ports"
        who = ",".join(f"{k}={v}" for k, v in self.pods) or "all pods"
        return f"{who} {arrow} {'; '.join(p.show() for p in self.peers)} ({ports})"


@dataclass(frozen=True)
class TenantPlan:
    namespace: str
    kind: Kind
    title: str
    labels: dict[str, str]
    annotations: dict[str, str]
    quota: Quota
    quota_source: str  # where the numbers come from, file:line
    psa_level: str  # HST-5
    default_deny: bool  # HST-6
    flows: tuple[Flow, ...]
    operator_groups: tuple[str, ...]
    members: tuple[str, ...] = ()  # CT codes the tenant serves
    objects: dict[str, str] = field(default_factory=dict)  # object quotas (infra/hosting.yaml tenantObjects), spec.hard entries
    ephemeral_gib_per_pod: float = 0.0  # the LimitRange default, so pods fit the ephemeral-storage quota


@dataclass(frozen=True)
class FileSet:
    """A ConfigMap of files mounted read-only at ``mount``; its content hash is annotated on the
    ConfigMap and on the pod template (``ctfleet.ma/<name>-sha256``), so a change rolls the pods."""

    name: str  # ConfigMap <app>-<name>
    mount: str
    data: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        import hashlib

        return hashlib.sha256("".join(f"{k}\0{v}\0" for k, v in sorted(self.data.items())).encode()).hexdigest()


@dataclass(frozen=True)
class SecretMount:
    """A Secret created by the operators (never through Pulumi state), mounted read-only."""

    secret: str
    mount: str
    why: str
    optional: bool = False


@dataclass(frozen=True)
class AppPlan:
    """A system workload: Deployment + ServiceAccount + ConfigMap + Service (+ PVC)."""

    name: str
    namespace: str
    image: str
    port: int
    spec: AppSpec
    config: dict[str, str]  # ConfigMap data, mounted at config_mount
    config_mount: str
    args: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    config_sub_path: str | None = None  # mount one key as a file instead of the directory
    data_mount: str | None = None  # where the PVC goes (when spec.dataGiB)
    scratch: tuple[str, ...] = ("/tmp",)  # emptyDir mounts (the root filesystem is read-only)
    probe: dict[str, Any] = field(default_factory=dict)
    storage_class: str | None = None
    sysctls: tuple[tuple[str, str], ...] = ()  # namespaced "safe" sysctls only (allowed under PSA restricted)
    env_from_secret: str | None = None  # an optional Secret whose keys become environment variables
    allow_destructive: bool = False  # the stack's config lets this update replace the volume
    # the data path's workloads (ctfleet.stacks.dataplane)
    kind: Literal["Deployment", "StatefulSet"] = "Deployment"
    port_name: str = "http"
    files: tuple[FileSet, ...] = ()  # further ConfigMaps, hashed into the pod template (a change rolls the pods)
    secrets: tuple[SecretMount, ...] = ()  # Secrets the operators create out of band, mounted as files
    secret_env: tuple[tuple[str, str, str], ...] = ()  # (ENV, Secret, key): one value of a Secret as a variable
    env: tuple[tuple[str, str], ...] = ()
    expose: ExposurePlan | None = None  # published outside the cluster (ctfleet.stacks.exposure)


@dataclass
class StackPlan:
    ref: StackRef
    config: StackConfig
    tenants: list[TenantPlan]
    apps: list[AppPlan]
    notes: list[str]
    extra: list[dict[str, Any]] = field(default_factory=list)  # further objects (Ingresses of the data path)
    datapath: Any = None  # ctfleet.stacks.dataplane.DataPathSummary, what `ctfleet stacks plan` shows of it

    @property
    def cluster_role(self) -> str:
        return f"ctfleet-tenant-operator-{self.ref.name}"

    def tenant(self, namespace: str) -> TenantPlan:
        return next(t for t in self.tenants if t.namespace == namespace)

    def quota_total(self) -> Quota:
        """The capacity the stack hands out: the sum of its tenants' quotas."""
        return sum((t.quota for t in self.tenants), Quota(0, 0, 0, 0))


# ------------------------------------------------------------------ capacity from the norms
def norm_quota(norms: NormSet, ct: CT) -> tuple[Quota, str]:
    """The CT's tenant capacity (HST-1..HST-4) and where each number comes from."""
    r = norms.resolve(ct)
    q = Quota(cpu=float(r["HST-1"].value), memory_gib=float(r["HST-2"].value),
              storage_gib=float(r["HST-3"].value), pods=int(r["HST-4"].value))
    return q, _sources(r[c] for c in HST_QUOTA)


def _sources(resolved) -> str:
    """Where the numbers come from: ``standards/norms/segments/region.yaml:11-14``."""
    by_file: dict[str, list[int]] = {}
    for res in resolved:
        path, _, line = res.source.rpartition(":")
        by_file.setdefault(path, []).append(int(line) if line.isdigit() else 0)
    parts = []
    for path, lines in by_file.items():
        lines = sorted(set(lines))
        contiguous = lines == list(range(lines[0], lines[-1] + 1))
        span = f"{lines[0]}-{lines[-1]}" if contiguous and len(lines) > 1 else ",".join(map(str, lines))
        parts.append(f"{path}:{span}")
    return "; ".join(parts)


def _security(norms: NormSet, ct: CT | None) -> tuple[str, bool]:
    """HST-5 (Pod Security level) and HST-6 (default deny) for a CT, or the baseline."""
    if ct is None:
        vals = {cid: norms.baseline.layer.values[cid] for cid in ("HST-5", "HST-6")}
        return str(vals["HST-5"]), bool(vals["HST-6"])
    r: dict[str, Resolved] = norms.resolve(ct)
    return str(r["HST-5"].value), bool(r["HST-6"].value)


# ------------------------------------------------------------------ flows
def _pods(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


# A tenant's own pods talk to each other (an application and its database), nothing more.
SAME_NAMESPACE = (Flow("same-namespace-in", "ingress", (Peer(),), "the tenant's pods reach each other"),
                  Flow("same-namespace-out", "egress", (Peer(),), "the tenant's pods reach each other"))

DNS = Flow("dns", "egress", (Peer(namespace="kube-system", pods=_pods(**{"k8s-app": "kube-dns"})),),
           "name resolution through the cluster DNS", ports=(("UDP", 53), ("TCP", 53)))


def _from_ingress(cfg: StackConfig, port: int | None = None, pods=()) -> Flow:
    return Flow("from-ingress", "ingress", (Peer(namespace=cfg.ingressNamespace),),
                "published services are reached through the ingress controller",
                ports=(("TCP", port),) if port else (), pods=pods)


FROM_MONITORING = Flow("from-monitoring", "ingress",
                       (Peer(namespace=MONITORING_NAMESPACE, pods=_pods(**{NAME: "prometheus"})),),
                       "the cloud's Prometheus scrapes the tenant's metrics")
TO_PKGCACHE = Flow("to-pkgcache", "egress",
                   (Peer(namespace=PKGCACHE_NAMESPACE, pods=_pods(**{NAME: "apt-cacher-ng"})),),
                   "Debian/Ubuntu packages through the region's cache (low-bandwidth communes)",
                   ports=(("TCP", APT_CACHER_PORT),))


def _cidr_peers(cidrs: list[str]) -> tuple[Peer, ...]:
    return tuple(Peer(cidr=c) for c in cidrs)


def tenant_flows(cfg: StackConfig, *extra: Flow) -> tuple[Flow, ...]:
    """A hosted tenant's flows: its own pods, DNS, the ingress, then the tier's services
    (``extra``) and the national platforms over HTTPS when the config says where they are."""
    flows = [*SAME_NAMESPACE, DNS, _from_ingress(cfg), *extra]
    if cfg.platformCidrs:
        flows.append(Flow("to-national-platforms", "egress", _cidr_peers(cfg.platformCidrs),
                          "the shared national platforms (Rokhas, Watiqa, ...) through the national cloud's ingress",
                          ports=(("TCP", 443),)))
    return tuple(flows)


# ------------------------------------------------------------------ tenants
def _groups(cfg: StackConfig, namespace: str, stack: str) -> tuple[str, ...]:
    return tuple(g.replace("{namespace}", namespace).replace("{stack}", stack) for g in cfg.operatorGroups)


def _base_labels(ref: StackRef, kind: Kind, psa: str) -> dict[str, str]:
    # Pod Security pinned to the Kubernetes version the objects are validated against, so a
    # cluster upgrade does not tighten (or loosen) the rules under running tenants unseen.
    version = f"v{K8S_VERSION}"
    return {
        label("stack"): ref.name,
        label("tier"): ref.tier,
        label("kind"): kind,
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/part-of": "ctfleet",
        "app.kubernetes.io/component": "tenant" if kind != "system" else "system",
        f"{PSA}/enforce": psa,
        f"{PSA}/enforce-version": version,
        f"{PSA}/audit": psa,
        f"{PSA}/audit-version": version,
        f"{PSA}/warn": psa,
        f"{PSA}/warn-version": version,
    }


def ct_tenant(ref: StackRef, cfg: StackConfig, ct: CT, norms: NormSet, flows: tuple[Flow, ...],
              extra_annotations: dict[str, str] | None = None) -> TenantPlan:
    ns = ct_namespace(ct.code)
    quota, source = norm_quota(norms, ct)
    psa, deny = _security(norms, ct)
    labels = _base_labels(ref, "ct", psa) | {
        label("ct-code"): ct.code,
        label("region"): ct.region_code,
        label("segment"): ct.segment.value,
        label("lot"): str(ct.lot),
    }
    annotations = {label("name"): ct.name_fr, label("quota-source"): source} | (extra_annotations or {})
    return TenantPlan(ns, "ct", f"{ct.name_fr} ({ct.code})", labels, annotations, quota, source, psa, deny,
                      flows, _groups(cfg, ns, ref.name), (ct.code,))


def _system_tenant(ref: StackRef, cfg: StackConfig, namespace: str, system: str, title: str, spec: QuotaSpec,
                   norms: NormSet, flows: tuple[Flow, ...], region: str | None) -> TenantPlan:
    psa, _ = _security(norms, None)
    labels = _base_labels(ref, "system", psa) | {label("system"): system}
    if region:
        labels[label("region")] = region
    source = f"infra/hosting.yaml (system.{system})"
    return TenantPlan(namespace, "system", title, labels, {label("quota-source"): source}, spec.quota(), source,
                      psa, True, flows, _groups(cfg, namespace, ref.name))


def plan_stack(ref: StackRef, cfg: StackConfig, registry: Registry, norms: NormSet, hosting: HostingCatalogue,
               rules: dict[str, str] | None = None, fleet: Any = None, monitor_files: Any = None) -> StackPlan:
    """Everything ``ref``'s stack declares. ``rules``: Prometheus rule files by name (regional only).

    ``fleet`` (sdr): the region's :class:`~ctfleet.stacks.dataplane.FleetSource` (default: the
    generated demonstration fleet); ``monitor_files``: the Alertmanager template and Grafana
    dashboards (:class:`~ctfleet.stacks.dataplane.MonitorFiles`, default: the project's).
    """
    planner = {"national": _plan_national, "sdr": _plan_regional, "eci": _plan_grouping, "sdl": _plan_sdl}[ref.tier]
    plan = planner(ref, cfg, registry, norms, hosting, rules or {})
    if ref.tier in ("sdr", "national"):
        from ctfleet.stacks import dataplane

        dataplane.extend(plan, registry, norms, hosting, rules or {}, fleet, monitor_files)
    objects = hosting.tenantObjects
    plan.tenants = [replace(t, objects=objects.hard(t.quota.pods), ephemeral_gib_per_pod=objects.ephemeralGiBPerPod)
                    for t in plan.tenants]
    _publish(plan, cfg)
    if cfg.allowDestructiveChanges:
        # said on the objects themselves, so the policy pack sees why they are not protected
        plan.tenants = [replace(t, annotations=t.annotations | {DESTRUCTIVE_ALLOWED: "true"}) for t in plan.tenants]
        plan.apps = [replace(a, allow_destructive=True) for a in plan.apps]
        plan.notes.append("ctfleet:allowDestructiveChanges is true: namespaces and volumes are not protected for this update; "
                          "set it back to false afterwards")
    return plan


def _publish(plan: StackPlan, cfg: StackConfig) -> None:
    """Attach ``ctfleet:expose`` to its workloads; a LoadBalancer also gets its namespace's
    quota for one (``services.loadbalancers``) and the flow from its source ranges."""
    chosen = {EXPOSABLE[key][0]: (key, e) for key, e in cfg.expose.entries().items()}
    if not chosen:
        return
    defaults = {"aptCacherNg": cfg.siteCidrs, "prometheus": cfg.federationCidrs}
    balancers: Counter[str] = Counter()
    flows: dict[str, list[Flow]] = {}
    for i, a in enumerate(plan.apps):
        if a.name not in chosen:
            continue
        key, entry = chosen[a.name]
        x = plan_exposure(a.name, entry, defaults[key])
        plan.apps[i] = replace(a, expose=x)
        plan.notes.extend(exposure_notes(a.name, x))
        if x.kind == "loadBalancer":
            balancers[a.namespace] += 1
            flows.setdefault(a.namespace, []).append(
                Flow(f"{a.name}-from-load-balancer", "ingress", _cidr_peers(list(x.source_ranges)),
                     f"clients reach the published {a.name} through its LoadBalancer Service",
                     ports=(("TCP", a.port),), pods=_pods(**{NAME: a.name})))
    plan.tenants = [replace(t, objects=t.objects | {"services.loadbalancers": str(balancers[t.namespace])},
                            flows=t.flows + tuple(flows[t.namespace])) if t.namespace in balancers else t
                    for t in plan.tenants]


def _plan_national(ref, cfg: StackConfig, registry: Registry, norms: NormSet, hosting: HostingCatalogue, rules) -> StackPlan:
    tenants = []
    psa, deny = _security(norms, None)
    for p in hosting.platforms:
        ns = platform_namespace(p.slug)
        labels = _base_labels(ref, "platform", psa) | {label("platform"): p.slug}
        source = f"infra/hosting.yaml (platforms: {p.slug})"
        tenants.append(TenantPlan(ns, "platform", p.name, labels,
                                  {label("name"): p.name, label("purpose"): p.purpose, label("quota-source"): source},
                                  p.quota.quota(), source, psa, deny, (*SAME_NAMESPACE, DNS, _from_ingress(cfg), FROM_MONITORING),
                                  _groups(cfg, ns, ref.name)))
    prom = _pods(**{NAME: "prometheus"})
    mon_flows = [DNS, _from_ingress(cfg, PROMETHEUS_PORT, prom),
                 Flow("prometheus-to-platforms", "egress", (Peer(namespace_labels=((label("kind"), "platform"),)),),
                      "scrape the national platforms", pods=prom)]
    tenants.append(_system_tenant(ref, cfg, MONITORING_NAMESPACE, "nationalMonitoring", "National monitoring",
                                  hosting.system.nationalMonitoring, norms, tuple(mon_flows), None))
    notes: list[str] = []
    prom_config = {
        "global": {"scrape_interval": "60s", "evaluation_interval": "60s", "external_labels": {"cloud": "national"}},
        # The regions' KPIs arrive by remote_write (ctfleet.stacks.dataplane adds the receiver and
        # the national rules); nothing is scraped across the WAN.
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]},
        ],
    }
    apps = [_prometheus_app("prometheus", cfg, hosting.apps.nationalPrometheus, prom_config, {})]
    return StackPlan(ref, cfg, tenants, apps, notes)


def _plan_regional(ref, cfg: StackConfig, registry: Registry, norms: NormSet, hosting: HostingCatalogue, rules) -> StackPlan:
    """The region's CT tenants (those its SDR hosts), its monitoring (collector shard and
    Prometheus) and its package cache, each built by one of the functions below."""
    region = ref.unit
    cts = sorted((ct for ct in registry.cts.values() if ct.region_code == region and tenant_home(ct) == "sdr"), key=lambda c: c.code)
    flows = tenant_flows(cfg, FROM_MONITORING, TO_PKGCACHE)
    tenants = [ct_tenant(ref, cfg, ct, norms, flows) for ct in cts]
    tenants.append(_system_tenant(ref, cfg, MONITORING_NAMESPACE, "monitoring", "Regional monitoring (collector shard, Prometheus)",
                                  hosting.system.monitoring, norms, _regional_monitoring_flows(cfg), region))
    tenants.append(_system_tenant(ref, cfg, PKGCACHE_NAMESPACE, "pkgcache", "Package cache (apt-cacher-ng)",
                                  hosting.system.pkgcache, norms, _pkgcache_flows(cfg), region))
    prom_config, rule_files = _regional_prometheus_config(ref, rules)
    apps = [
        _collector_app(ref, cfg, hosting),
        _prometheus_app("prometheus", cfg, hosting.apps.prometheus, prom_config, rule_files),
        _pkgcache_app(cfg, hosting),
    ]
    notes = []
    if not cfg.siteCidrs:
        notes.append("ctfleet:siteCidrs is empty: the collector cannot reach the communes and the package cache serves only tenants")
    if not rule_files:
        notes.append("no rule files in monitors/rules/: the regional Prometheus runs without alert rules")
    return StackPlan(ref, cfg, tenants, apps, notes)


def _regional_monitoring_flows(cfg: StackConfig) -> tuple[Flow, ...]:
    """The regional monitoring tenant's flows: Prometheus scrapes the collector and the CT
    tenants, the collector polls the sites (remote_write to the nation: ctfleet.stacks.dataplane)."""
    prom, coll = (_pods(**{NAME: n}) for n in ("prometheus", "collector"))
    flows = [
        DNS,
        Flow("collector-from-prometheus", "ingress", (Peer(pods=prom),), "Prometheus scrapes the collector shard",
             ports=(("TCP", COLLECTOR_PORT),), pods=coll),
        Flow("prometheus-to-collector", "egress", (Peer(pods=coll),), "Prometheus scrapes the collector shard",
             ports=(("TCP", COLLECTOR_PORT),), pods=prom),
        Flow("prometheus-to-tenants", "egress", (Peer(namespace_labels=((label("kind"), "ct"),)),),
             "Prometheus scrapes the CT tenants", pods=prom),
        _from_ingress(cfg, PROMETHEUS_PORT, prom),
    ]
    if cfg.siteCidrs:
        # All ports: SNMP (161/udp) and SSH, and ICMP, which NetworkPolicy cannot name by port.
        flows.append(Flow("collector-to-sites", "egress", _cidr_peers(cfg.siteCidrs),
                          "the collector polls the region's routers and servers (SNMP, ICMP, SSH)", pods=coll))
    return tuple(flows)


def _pkgcache_flows(cfg: StackConfig) -> tuple[Flow, ...]:
    """The package cache tenant's flows: tenants and commune machines in, the mirrors out."""
    acng = _pods(**{NAME: "apt-cacher-ng"})
    flows = [
        DNS,
        Flow("from-tenants", "ingress", (Peer(namespace_labels=((label("kind"), "ct"),)),), "CT tenants fetch packages",
             ports=(("TCP", APT_CACHER_PORT),), pods=acng),
        _from_ingress(cfg, APT_CACHER_PORT, acng),
        Flow("to-mirrors", "egress", (Peer(cidr="0.0.0.0/0"),), "the cache fetches from the Debian/Ubuntu mirrors (HTTP/HTTPS)",
             ports=(("TCP", 80), ("TCP", 443)), pods=acng),
    ]
    if cfg.siteCidrs:
        flows.insert(2, Flow("from-sites", "ingress", _cidr_peers(cfg.siteCidrs), "commune machines fetch packages",
                             ports=(("TCP", APT_CACHER_PORT),), pods=acng))
    return tuple(flows)


def _collector_app(ref: StackRef, cfg: StackConfig, hosting: HostingCatalogue) -> AppPlan:
    """The region's collector shard. Its config (ctfleet.monitors.collector's own model): this
    region's shard; the collector selects its targets (the region's routers and SNMP servers)
    from the registry it ships with."""
    collector_yaml = emitted(CollectorConfig, f"{ref.name}: ConfigMap collector (collector.yaml)", {
        "shard": f"region:{ref.unit}",
        "interval_seconds": 60,
        "listen": f"0.0.0.0:{COLLECTOR_PORT}",
        "probe": {"method": "icmp"},
        "results_dir": "/var/lib/ctfleet/results",
    })
    return AppPlan("collector", MONITORING_NAMESPACE, cfg.image("collector"), COLLECTOR_PORT, hosting.apps.collector,
                   {"collector.yaml": collector_yaml}, "/etc/ctfleet",
                   args=("--config", "/etc/ctfleet/collector.yaml"),
                   # SNMP credentials (env:CTFLEET_SNMP_<region> references), from a Secret the SDR
                   # team creates out of band, so no credential passes through Pulumi state
                   env_from_secret=COLLECTOR_SECRET,
                   scratch=("/tmp", "/var/lib/ctfleet"), probe={"tcpSocket": {"port": "http"}},
                   # unprivileged ICMP echo (no CAP_NET_RAW) for the pod's group; a "safe" sysctl
                   sysctls=(("net.ipv4.ping_group_range", f"{RUN_AS} {RUN_AS}"),))


def _regional_prometheus_config(ref: StackRef, rules: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The regional Prometheus's prometheus.yml (scrapes its collector shard) and its rule files by name."""
    region = ref.unit
    prom_config: dict[str, Any] = {
        "global": {"scrape_interval": "60s", "evaluation_interval": "60s",
                   "external_labels": {"region": region, "shard": ref.name}},
        "scrape_configs": [
            {"job_name": COLLECTOR_JOB,
             "static_configs": [{"targets": [f"collector.{MONITORING_NAMESPACE}.svc:{COLLECTOR_PORT}"], "labels": {"region": region}}]},
            {"job_name": "prometheus", "static_configs": [{"targets": [f"localhost:{PROMETHEUS_PORT}"]}]},
        ],
    }
    rule_files = {f"rules-{ascii_slug(name.rsplit('.', 1)[0])}.yml": text for name, text in sorted(rules.items())}
    if rule_files:
        prom_config["rule_files"] = [f"/etc/prometheus/{name}" for name in rule_files]
    return prom_config, rule_files


def _pkgcache_app(cfg: StackConfig, hosting: HostingCatalogue) -> AppPlan:
    """apt-cacher-ng for the region's tenants and commune machines."""
    return AppPlan("apt-cacher-ng", PKGCACHE_NAMESPACE, cfg.image("aptCacherNg"), APT_CACHER_PORT, hosting.apps.aptCacherNg,
                   {"acng.conf": ACNG_CONF}, "/etc/apt-cacher-ng/acng.conf", config_sub_path="acng.conf",
                   command=("apt-cacher-ng",), args=("-c", "/etc/apt-cacher-ng", "ForeGround=1"),
                   data_mount="/var/cache/apt-cacher-ng", scratch=("/tmp", "/run/apt-cacher-ng", "/var/log/apt-cacher-ng"),
                   probe={"tcpSocket": {"port": "http"}}, storage_class=cfg.storageClass)


def _plan_grouping(ref, cfg: StackConfig, registry: Registry, norms: NormSet, hosting, rules) -> StackPlan:
    g = registry.groupings[ref.unit]
    members = [registry.cts[m] for m in g.members if m in registry.cts and tenant_home(registry.cts[m]) == "eci"]
    quota = sum((norm_quota(norms, ct)[0] for ct in members), Quota(0, 0, 0, 0))
    sources = sorted({norm_quota(norms, ct)[1] for ct in members})
    psa_deny = {_security(norms, ct) for ct in members}
    # the strictest member wins: one namespace cannot be less strict than any CT it serves
    psa = min((p for p, _ in psa_deny), key=["restricted", "baseline", "privileged"].index)
    deny = any(d for _, d in psa_deny)
    ns = grouping_namespace(g.code)
    labels = _base_labels(ref, "grouping", psa) | {label("grouping"): g.code, label("region"): g.region_code}
    source = "sum of members' norms: " + " | ".join(sources)
    annotations = {label("name"): g.name, label("members"): ",".join(ct.code for ct in members),
                   label("quota-source"): source}
    tenant = TenantPlan(ns, "grouping", g.name, labels, annotations, quota, source, psa, deny,
                        tenant_flows(cfg), _groups(cfg, ns, ref.name), tuple(ct.code for ct in members))
    notes = [f"grouping {g.code} is illustrative (inventory/groupings.yaml): not a real membership"] if g.illustrative else []
    return StackPlan(ref, cfg, [tenant], [], notes)


def _plan_sdl(ref, cfg: StackConfig, registry: Registry, norms: NormSet, hosting, rules) -> StackPlan:
    ct = registry.cts[ref.unit]
    arr = ",".join(ct.arrondissements)
    tenant = ct_tenant(ref, cfg, ct, norms, tenant_flows(cfg), {label("arrondissements"): arr})
    return StackPlan(ref, cfg, [tenant], [], [])


# ------------------------------------------------------------------ workloads
ACNG_CONF = """\
# apt-cacher-ng for the communes of the region (written by the ctfleet regional stack)
CacheDir: /var/cache/apt-cacher-ng
LogDir: /var/log/apt-cacher-ng
SupportDir: /usr/lib/apt-cacher-ng
Port: 3142
ReportPage: acng-report.html
ExThreshold: 14
# HTTPS repositories are tunnelled, not cached
PassThroughPattern: .*:443$
"""


def _prometheus_app(name: str, cfg: StackConfig, spec: AppSpec, prom_config: dict, rule_files: dict[str, str]) -> AppPlan:
    return AppPlan(name, MONITORING_NAMESPACE, cfg.image("prometheus"), PROMETHEUS_PORT, spec,
                   {"prometheus.yml": yaml_text(prom_config)} | rule_files, "/etc/prometheus",
                   args=("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus",
                         f"--storage.tsdb.retention.time={cfg.prometheusRetention}"),
                   data_mount="/prometheus", probe={"httpGet": {"path": "/-/ready", "port": "http"}},
                   storage_class=cfg.storageClass)


def yaml_text(data: Any) -> str:
    import io

    y = YAML(typ="safe", pure=True)
    y.default_flow_style = False
    y.width = 4096
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


def emitted(model: type[BaseModel], source: str, fields: dict[str, Any]) -> str:
    """A config file for a component of ours, written from that component's own typed model
    (the one it loads the file with): ``fields`` are validated first, so a wrong field is
    refused when the plan is computed, naming ``source`` and the key, never at the pod's start.
    Only the fields given are written (``exclude_unset``): the file says what the stack chose
    and leaves the rest to the component's defaults."""
    config = validate(Doc(source, fields), model)
    return yaml_text(_whole(config.model_dump(mode="json", exclude_unset=True)))


def _whole(data: Any) -> Any:
    """Whole-number floats written as integers (``60``, not ``60.0``): what a person would type,
    and the ConfigMaps (and their config-hash, hence the pods) stay as they were before the
    files came from the models."""
    if isinstance(data, dict):
        return {k: _whole(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_whole(v) for v in data]
    return int(data) if isinstance(data, float) and data.is_integer() else data
