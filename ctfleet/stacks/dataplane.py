"""The deployed data path, as the SDR stacks and the national stack declare it (issue 10).

A regional (SDR) stack declares, besides its tenants:

- **the collector with the region's real fleet**: the files ``ctfleet import`` wrote
  (``sites.csv``, ``devices.csv``), validated against the registry here, are put byte for
  byte in the ConfigMap ``collector-fleet`` with the region's profile; the ConfigMap and
  the pod template carry their sha256 (``ctfleet.ma/fleet-sha256``), so a new import rolls
  the collector at the next ``pulumi up``. The fleet comes from the stack's
  ``ctfleet:profile``; a profile on the generated (simulated) fleet is refused unless the
  stack says ``ctfleet:demo: true``. Why a ConfigMap and not git-sync: the fleet is small
  (a region's CSVs are tens of kB, the ConfigMap limit is 1 MiB and is checked), a change
  is then a reviewed ``pulumi up`` whose plan shows the hash, and the cluster needs no
  access to the repository;
- **the results service and its PostgreSQL** in the system tenant ``ctfleet-results``:
  the service (the ctfleet image, ``python -m ctfleet.results.service``) with its TLS
  Secret and the region's users (web-config Secret), the database password from a Secret;
  PostgreSQL as a one-pod StatefulSet on a declared PersistentVolumeClaim, which the
  program protects and retains like every data volume (:mod:`ctfleet.stacks.safety`).
  Why not an operator's cluster resource (CloudNativePG): it needs the operator and its
  CRDs installed in every SDR cluster before the stack, and the policy pack and schema
  checks could not see inside its pods; one database per region is small;
- **the results endpoint**: an Ingress with TLS for ``/v1/batches`` (``dataPath.resultsHost``);
- **Prometheus**: the collector, the reference servers' node_exporter through the
  collector's ``/sd/node`` (http_sd, job ``node``), Alertmanager, and ``remote_write`` of
  the KPI series only to the national receiver (:func:`ctfleet.core.datapath.remote_write`);
- **Alertmanager** with the region's route (from the registry) and the project's
  inhibitions (``monitors/alertmanager/alertmanager.yml``), and **Grafana** with the
  region and CT dashboards of ``monitors/dashboards/`` and the Prometheus datasource,
  provisioned from ConfigMaps.

The national stack's Prometheus is the remote-write receiver
(``--web.enable-remote-write-receiver``) behind an Ingress with TLS and basic auth (one
user per region), and loads the national rules (:func:`ctfleet.core.datapath.national_rules`).

Credentials never pass through Pulumi: the Secrets in :data:`SECRETS` are created by the
operators (``kubectl create secret``); the plan lists them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from ruamel.yaml import YAML

from ctfleet.core.collector_config import CollectorConfig
from ctfleet.core.conventions import (
    CLUSTER_KPI_RULES_FILES,
    COLLECTOR_PORT,
    KPI_RULES_FILE,
    KUBE_STATE_METRICS_JOB,
    KUBE_STATE_METRICS_PORT,
    KUBE_STATE_METRICS_SERIES,
    NODE_EXPORTER_PORT,
    NODE_TARGETS_PATH,
    REGION_EXTERNAL_LABEL,
    RESULTS_BATCHES_PATH,
    RESULTS_SERVICE_PORT,
)
from ctfleet.core.datapath import kpi_record_names, national_rules, node_scrape_config, programme_kpis, remote_write
from ctfleet.core.errors import Problem
from ctfleet.project import Profile
from ctfleet.results.service import ServiceConfig
from ctfleet.stacks.config import StackConfig, StackConfigErrors
from ctfleet.stacks.names import MONITORING_NAMESPACE, RESULTS_NAMESPACE, StackRef, label
from ctfleet.stacks.plan import (
    DNS,
    NAME,
    PROMETHEUS_PORT,
    AppPlan,
    FileSet,
    Flow,
    Peer,
    SecretMount,
    StackPlan,
    _from_ingress,
    _pods,
    _system_tenant,
    emitted,
    yaml_text,
)

# ------------------------------------------------------------------ names the pieces agree on
FLEET_MOUNT = "/etc/ctfleet-fleet"  # the collector's profile and fleet files (ConfigMap collector-fleet)
POSTGRES_PORT = 5432
ALERTMANAGER_PORT = 9093
GRAFANA_PORT = 3000
DB_APP, DB_NAME, DB_USER = "results-db", "results", "ctfleet"
DB_URL = f"postgresql://{DB_USER}@{DB_APP}.{RESULTS_NAMESPACE}.svc:{POSTGRES_PORT}/{DB_NAME}"
REMOTE_WRITE_PASSWORD = "/etc/prometheus-remote-write/password"
NATIONAL_WRITE_PATH = "/api/v1/write"
CONFIGMAP_MAX_BYTES = 1_000_000  # Kubernetes refuses a ConfigMap over 1 MiB (1,048,576 bytes, less its metadata)
REGION_DASHBOARDS = ("ctfleet-region.json", "ctfleet-ct.json")

#: The Secrets the data path reads, by (namespace, name): created by the operators, never
#: declared by the stack (their values would land in Pulumi state).
SECRETS: dict[str, list[tuple[str, str, str]]] = {
    "sdr": [
        (RESULTS_NAMESPACE, "results-tls", "kubernetes.io/tls: the results endpoint's certificate (tls.crt, tls.key)"),
        (RESULTS_NAMESPACE, "results-web-config", "web-config.yml: TLS files (/etc/ctfleet-tls/tls.crt, tls.key) and the region's "
                                                  "users (basic_auth_users, bcrypt)"),
        (RESULTS_NAMESPACE, "results-db", "password: the PostgreSQL password of user ctfleet"),
        (MONITORING_NAMESPACE, "results-db", "password: the same, for the collector"),
        (MONITORING_NAMESPACE, "remote-write-national", "password: this region's password at the national receiver"),
        (MONITORING_NAMESPACE, "grafana-admin", "password: Grafana's admin password"),
        (MONITORING_NAMESPACE, "collector-snmp", "optional: CTFLEET_SNMP_<region> and other env: credential references"),
    ],
    "national": [
        (MONITORING_NAMESPACE, "remote-write-tls", "kubernetes.io/tls: the receiver's certificate"),
        (MONITORING_NAMESPACE, "remote-write-users", "auth: htpasswd, one line per regional stack (user = stack name)"),
    ],
}


# ------------------------------------------------------------------ config checks (pure, called by validate_config)
def check_config(cfg: StackConfig, bad: Callable[..., None]) -> None:
    """The data-path keys: which tier may set them, and their forms."""
    d = cfg.dataPath
    if cfg.tier != "sdr":
        for key in ("profile", "demo"):
            if getattr(cfg, key) not in (None, False):
                bad((key,), f"only a regional (sdr) stack deploys a collector with a fleet, not tier {cfg.tier}")
        for key in ("resultsHost", "nationalWriteUrl", "alertWebhook", "grafanaHost", "kubeStateMetrics"):
            if getattr(d, key) is not None:
                bad(("dataPath", key), f"only a regional (sdr) stack has {key}, not tier {cfg.tier}")
    if cfg.tier != "national" and d.receiverHost is not None:
        bad(("dataPath", "receiverHost"), f"only the national stack has the remote-write receiver, not tier {cfg.tier}")
    for key in ("resultsHost", "grafanaHost", "receiverHost"):
        host = getattr(d, key)
        if host is not None and not _is_host(host):
            bad(("dataPath", key), f"{host!r} is not a host name", "a DNS name such as results.sdr-rsk.ma")
    for key in ("nationalWriteUrl", "alertWebhook"):
        url = getattr(d, key)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.hostname or not _is_host(parts.hostname):
                bad(("dataPath", key), f"{url!r} is not an https:// URL", "e.g. https://metrics.dgct.ma/api/v1/write")
    for cluster, target in (d.kubeStateMetrics or {}).items():
        host, sep, port = target.rpartition(":")
        if not _is_host(cluster):
            bad(("dataPath", "kubeStateMetrics", cluster), f"{cluster!r} is not a cluster name", "lower-case letters, digits, '-' and '.'")
        if not sep or not _is_host(host) or not port.isdigit() or not 0 < int(port) < 65536:
            bad(("dataPath", "kubeStateMetrics", cluster), f"{target!r} is not host:port",
                f"e.g. kube-state-metrics.kube-system.svc:{KUBE_STATE_METRICS_PORT}")
    if not _is_host(d.ingressClass.replace(".", "-")):
        bad(("dataPath", "ingressClass"), f"{d.ingressClass!r} is not an IngressClass name", "e.g. nginx")


def _is_host(host: str) -> bool:
    import re

    return len(host) <= 253 and bool(re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", host))


# ------------------------------------------------------------------ the region's fleet
@dataclass(frozen=True)
class FleetSource:
    """Where a regional collector's targets come from, as the stack deploys them."""

    region: str
    profile: str  # the stack's ctfleet:profile, or what stands in for it
    origin: str  # e.g. "files in fleet-04 (ctfleet import)" or "generated (seed 2014): SIMULATED devices"
    files: dict[str, str]  # sites.csv and devices.csv as ctfleet import wrote them; {} for the generated fleet
    seed: int | None = None  # the generated fleet's seed
    routers: int | None = None  # the region's devices the collector polls (None: generated at the collector's start)
    servers: int | None = None
    node_targets: int | None = None  # servers whose node_exporter Prometheus scrapes (through /sd/node)
    addresses: tuple[str, ...] = ()  # management addresses of the region's devices
    notes: tuple[str, ...] = ()

    @property
    def simulated(self) -> bool:
        return not self.files

    def profile_text(self, stack: str) -> str:
        """The profile the collector runs with (its fleet from the mounted files, its results in the region's database)."""
        fleet: dict[str, Any] = {"source": "files", "dir": FLEET_MOUNT} if self.files else {"source": "generated",
                                                                                           "seed": self.seed or 2014}
        return emitted(Profile, f"{stack}: ConfigMap collector-fleet (profile.yaml)",
                       {"name": stack, "region": self.region, "fleet": fleet, "results_dir": DB_URL})

    def fileset(self, stack: str) -> FileSet:
        annotations = {label("fleet-profile"): self.profile, label("fleet-source"): self.origin}
        if self.routers is not None:
            annotations[label("fleet-devices")] = f"{self.routers} routers, {self.servers} servers"
        if self.simulated:
            annotations[label("simulated")] = "true: generated demonstration fleet, not real equipment"
        return FileSet("fleet", FLEET_MOUNT, {"profile.yaml": self.profile_text(stack), **self.files}, annotations)

    @classmethod
    def demo(cls, region: str, seed: int = 2014, profile: str = "(none: ctfleet:demo)") -> "FleetSource":
        return cls(region, profile, f"generated (seed {seed}): SIMULATED devices, not real equipment", {}, seed=seed)


def _refuse(source: str, line_of, key: str, message: str, valid: str) -> StackConfigErrors:
    line = line_of((key,)) if line_of else None
    return StackConfigErrors([Problem(source, message, line=line, key=f"ctfleet:{key}", valid=valid)])


PROFILE_VALID = ("ctfleet:profile: a regional profile (region: NN, fleet: {source: files, dir: DIR}) whose fleet "
                 "`ctfleet import` wrote, or ctfleet:demo: true for a demonstration cluster")


def load_fleet_source(root: Path, registry, cfg: StackConfig, ref: StackRef, source: str,
                      line_of: Callable[[tuple], int | None] | None = None, norms=None) -> FleetSource:
    """The fleet ``ref``'s collector is deployed with, validated; refused (naming ``ctfleet:profile``)
    when it is the generated fleet on a stack that is not a demo, another region's, or unreachable.

    ``registry``: the whole registry (the fleet files are validated against it, as ``ctfleet import`` does).
    """
    from ctfleet.edges.dirswap import read_files
    from ctfleet.importer import FILE_NAMES, KINDS, load_fleet_dir
    from ctfleet.project import load_profile

    region = ref.unit or ""
    if cfg.profile is None:
        if not cfg.demo:
            raise _refuse(source, line_of, "profile", "is not set: the collector would poll the generated (simulated) fleet, "
                                                      "not the region's equipment", PROFILE_VALID)
        return _with_counts(FleetSource.demo(region), registry, norms)
    path = Path(cfg.profile) if Path(cfg.profile).is_absolute() else root / cfg.profile
    if not path.is_file():
        raise _refuse(source, line_of, "profile", f"{cfg.profile}: profile file not found", PROFILE_VALID)
    profile = load_profile(root, path)  # an InputError naming the profile's file, line and key
    if profile.region != region:
        raise _refuse(source, line_of, "profile", f"{cfg.profile} is the profile of "
                      f"{'region ' + profile.region if profile.region else 'the whole nation (no region)'}, "
                      f"but this stack deploys region {region}", f"a profile with region: \"{region}\"")
    if profile.fleet.source == "generated":
        if not cfg.demo:
            raise _refuse(source, line_of, "profile", f"{cfg.profile} points at the generated (simulated) fleet "
                          "(fleet.source: generated), not the region's equipment", PROFILE_VALID)
        return _with_counts(FleetSource.demo(region, profile.fleet.seed, cfg.profile), registry, norms)
    fleet_dir = Path(profile.fleet.dir or "")
    directory = fleet_dir if fleet_dir.is_absolute() else root / fleet_dir
    names = [FILE_NAMES[k] for k in KINDS]
    before = read_files(directory, names) if directory.is_dir() else {}
    sites, devices = load_fleet_dir(directory, registry)  # InputError(s) naming file, row and column
    after = read_files(directory, names)
    if before != after:
        raise _refuse(source, line_of, "profile", f"{profile.fleet.dir}: the fleet changed while it was read (an import "
                      "was switching it in)", "run the command again")
    files = {name: (after[name] or b"").decode("utf-8") for name in names}
    size = sum(len(t.encode()) for t in files.values())
    if size > CONFIGMAP_MAX_BYTES - 10_000:
        raise _refuse(source, line_of, "profile", f"{profile.fleet.dir}: the fleet files are {size:,} bytes, more than a "
                      "ConfigMap holds (1 MiB)", "a region's fleet only (sites.csv + devices.csv), or git-sync (infra/README.md)")
    region_sites = {s.code for s in sites if s.ct_code in registry.cts and registry.cts[s.ct_code].region_code == region}
    mine = [d for d in devices if d.site_code in region_sites]
    loopback = [d for d in mine if d.mgmt_address is not None and d.mgmt_address.is_loopback]
    if loopback and not cfg.demo:
        shown = ", ".join(f"{d.hostname} ({d.mgmt_address})" for d in loopback[:5]) + (" ..." if len(loopback) > 5 else "")
        raise _refuse(source, line_of, "profile", f"{profile.fleet.dir}/devices.csv: {len(loopback)} of the region's devices "
                      f"have a loopback management address (127.0.0.0/8), which the cluster cannot reach: {shown}",
                      "the devices' real management addresses (re-import the spreadsheet)")
    notes = []
    outside = len(sites) - len(region_sites)
    if outside:
        notes.append(f"{outside} site(s) of {profile.fleet.dir} are outside region {region}: the collector does not poll them")
    if not mine:
        notes.append(f"{profile.fleet.dir} has no device of region {region}: the collector has nothing to poll")
    return FleetSource(region, cfg.profile, f"files in {profile.fleet.dir} (ctfleet import)", files,
                       routers=sum(d.role.value == "router" for d in mine),
                       servers=sum(d.role.value == "server" for d in mine),
                       node_targets=sum(d.role.value == "server" and d.mgmt_address is not None for d in mine),
                       addresses=tuple(str(d.mgmt_address) for d in mine if d.mgmt_address is not None), notes=tuple(notes))


def _with_counts(fleet: FleetSource, registry, norms) -> FleetSource:
    """The generated fleet's figures for the region (the collector generates the same fleet from the same seed)."""
    if norms is None:
        return fleet
    devices = _generated(registry, norms, fleet.seed or 2014)
    mine = [d for d in devices if d[0] == fleet.region]
    return replace(fleet, routers=sum(r == "router" for _, r, _ in mine), servers=sum(r == "server" for _, r, _ in mine),
                   node_targets=sum(r == "server" and bool(a) for _, r, a in mine), addresses=tuple(a for _, _, a in mine if a))


_GENERATED: dict[tuple[int, int], list[tuple[str, str, str]]] = {}


def _generated(registry, norms, seed: int) -> list[tuple[str, str, str]]:
    key = (id(registry), seed)
    if key not in _GENERATED:
        from ctfleet.core.fleet import generate

        sites, devices = generate(registry, norms, seed=seed)
        region_of = {s.code: registry.cts[s.ct_code].region_code for s in sites if s.ct_code in registry.cts}
        _GENERATED[key] = [(region_of.get(d.site_code, ""), d.role.value, str(d.mgmt_address) if d.mgmt_address else "")
                           for d in devices]
    return _GENERATED[key]


# ------------------------------------------------------------------ the project's monitoring files
@dataclass(frozen=True)
class MonitorFiles:
    """What the data path provisions from ``monitors/``: Alertmanager's template, Grafana's
    dashboards and provisioning, and the KPI rules (for the national stack)."""

    alertmanager: str
    dashboards: dict[str, str]
    datasources: str
    dashboard_provider: str
    rules: dict[str, str]


@lru_cache(maxsize=4)
def load_monitor_files(root: Path | None = None) -> MonitorFiles:
    from ctfleet.project import project_root

    m = (root or project_root()) / "monitors"
    read = lambda p: (m / p).read_text(encoding="utf-8")  # noqa: E731
    rules = {p.name: p.read_text(encoding="utf-8") for p in sorted((m / "rules").glob("*.yml"))}
    return MonitorFiles(read("alertmanager/alertmanager.yml"),
                        {p.name: p.read_text(encoding="utf-8") for p in sorted((m / "dashboards").glob("*.json"))},
                        read("dashboards/provisioning/datasources.yaml"), read("dashboards/provisioning/dashboards.yaml"), rules)


def _load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def region_alertmanager(template: str, region: str, webhook: str | None) -> dict[str, Any]:
    """The regional Alertmanager: the project's grouping, inhibitions and silent planned
    outages, and the route and receiver of the region (its registry code)."""
    tpl = _load(template)
    receiver = f"noc-region-{region}"
    silent = [r for r in tpl["route"].get("routes", []) if r.get("receiver") == "noc-silent"]
    route = {k: v for k, v in tpl["route"].items() if k != "routes"} | {
        "receiver": receiver, "routes": silent + [{"receiver": receiver, "matchers": [f'region="{region}"']}]}
    rx: dict[str, Any] = {"name": receiver}
    if webhook:
        rx["webhook_configs"] = [{"url": webhook, "send_resolved": True}]
    return {"global": tpl.get("global", {}), "route": route, "inhibit_rules": tpl.get("inhibit_rules", []),
            "receivers": [{"name": "noc-silent"}, rx]}


# ------------------------------------------------------------------ Ingress (TLS)
def ingress(name: str, namespace: str, host: str, service: str, port_name: str, path: str, path_type: str,
            tls_secret: str, ingress_class: str, labels: dict[str, str], annotations: dict[str, str]) -> dict[str, Any]:
    """An Ingress for one host and path, TLS from an operators' Secret (no plain-HTTP host)."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                     "annotations": {"nginx.ingress.kubernetes.io/ssl-redirect": "true"} | annotations},
        "spec": {
            "ingressClassName": ingress_class,
            "tls": [{"hosts": [host], "secretName": tls_secret}],
            "rules": [{"host": host, "http": {"paths": [
                {"path": path, "pathType": path_type, "backend": {"service": {"name": service, "port": {"name": port_name}}}}]}}],
        },
    }


# ------------------------------------------------------------------ what the plan shows
@dataclass
class DataPathSummary:
    fleet: FleetSource | None
    fleet_sha256: str = ""  # of the ConfigMap collector-fleet as deployed (profile + files)
    pieces: list[tuple[str, str]] = field(default_factory=list)  # (what, where / how)
    secrets: list[tuple[str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pieces": [{"what": w, "how": h} for w, h in self.pieces],
                               "secrets": [{"namespace": n, "name": s, "holds": why} for n, s, why in self.secrets]}
        if self.fleet is not None:
            f = self.fleet
            out["collector_targets"] = {
                "profile": f.profile, "source": f.origin, "simulated": f.simulated,
                "files": sorted(f.files), "sha256": self.fleet_sha256, "routers": f.routers, "servers": f.servers,
                "node_exporter_targets": f.node_targets,
            }
        return out


# ------------------------------------------------------------------ the stacks' hook
def extend(plan: StackPlan, registry, norms, hosting, rules: dict[str, str], fleet: FleetSource | None,
           files: MonitorFiles | None) -> None:
    """Add the data path to a regional or the national plan (called by :func:`ctfleet.stacks.plan.plan_stack`)."""
    files = files or load_monitor_files()
    if plan.ref.tier == "sdr":
        _regional(plan, registry, norms, hosting, fleet or FleetSource.demo(plan.ref.unit or ""), files)
    elif plan.ref.tier == "national":
        _national(plan, files)


def _programme_kpis(files: MonitorFiles) -> dict:
    """What a region remote-writes and the nation sums: the KPI rules' records and the hosting rules' KPI-form ones."""
    return programme_kpis(_load(files.rules.get(KPI_RULES_FILE, "")) or {"groups": []},
                          *(_load(files.rules.get(name, "")) or {"groups": []} for name in CLUSTER_KPI_RULES_FILES))


def _kube_state_metrics(plan: StackPlan) -> dict[str, str]:
    """cluster -> host:port of the kube-state-metrics the regional Prometheus scrapes: the config's, or this
    cluster's in-cluster Service by default (the CT tenants of an ECI or SDL cluster need theirs listed too)."""
    ksm = plan.config.dataPath.kubeStateMetrics
    if ksm is None:
        return {plan.ref.name: f"kube-state-metrics.kube-system.svc:{KUBE_STATE_METRICS_PORT}"}
    return dict(ksm)


def _app(plan: StackPlan, name: str) -> AppPlan:
    return next(a for a in plan.apps if a.name == name)


def _swap(plan: StackPlan, old: AppPlan, new: AppPlan) -> None:
    plan.apps[plan.apps.index(old)] = new


def _url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _stack_labels(plan: StackPlan, app: str) -> dict[str, str]:
    return {NAME: app, "app.kubernetes.io/part-of": "ctfleet", label("stack"): plan.ref.name}


def _regional(plan: StackPlan, registry, norms, hosting, fleet: FleetSource, files: MonitorFiles) -> None:
    """The regional data path, one piece per function below (in this order: the notes and the
    read-out's pieces keep it): the collector on the region's fleet, Prometheus, Alertmanager
    and Grafana, the monitoring tenant's further flows, the results service and its database."""
    region = plan.ref.unit or ""
    summary = DataPathSummary(fleet, secrets=list(SECRETS["sdr"]))
    _regional_collector(plan, fleet, summary)
    _regional_prometheus(plan, files, summary)
    if region not in registry.regions:
        raise ValueError(f"region {region!r} is not in the registry")
    _regional_alertmanager(plan, hosting, files, summary)
    _regional_grafana(plan, hosting, files, summary)
    _monitoring_flows(plan)
    _results_store(plan, norms, hosting, summary)
    d, mon = plan.config.dataPath, MONITORING_NAMESPACE
    if d.grafanaHost:
        plan.extra.append(ingress("grafana", mon, d.grafanaHost, "grafana", "http", "/", "Prefix", "grafana-tls",
                                  d.ingressClass, _stack_labels(plan, "grafana"), {}))
        summary.secrets.append((mon, "grafana-tls", "kubernetes.io/tls: Grafana's certificate"))
    plan.notes.extend(fleet.notes)
    if fleet.simulated:
        plan.notes.append(f"SIMULATED fleet: the collector polls the generated demonstration fleet ({fleet.origin}); "
                          "set ctfleet:profile to the region's profile on its imported fleet")
    plan.datapath = summary


def _regional_collector(plan: StackPlan, fleet: FleetSource, summary: DataPathSummary) -> None:
    """The collector: the region's fleet and profile, results in the region's database."""
    ref = plan.ref
    coll = _app(plan, "collector")
    collector_yaml = emitted(CollectorConfig, f"{ref.name}: ConfigMap collector (collector.yaml)",
                             _load(coll.config["collector.yaml"]) | {"profile": f"{FLEET_MOUNT}/profile.yaml", "results_dir": DB_URL})
    fileset = fleet.fileset(ref.name)
    summary.fleet_sha256 = fileset.sha256
    _swap(plan, coll, replace(coll, config={"collector.yaml": collector_yaml}, files=(fileset,),
                              secret_env=(("PGPASSWORD", DB_APP, "password"),)))
    where = f"{fleet.origin}; profile {fleet.profile}; ConfigMap collector-fleet sha256 {fileset.sha256[:16]}"
    counts = ("generated at the collector's start" if fleet.routers is None
              else f"{fleet.routers} routers, {fleet.servers} servers, {fleet.node_targets} node_exporter targets")
    summary.pieces.append(("collector targets", f"{where}; {counts}"))


def _regional_prometheus(plan: StackPlan, files: MonitorFiles, summary: DataPathSummary) -> None:
    """Prometheus: node_exporter through /sd/node, Alertmanager, remote_write of the KPI series."""
    ref, d, mon, region = plan.ref, plan.config.dataPath, MONITORING_NAMESPACE, plan.ref.unit or ""
    prom = _app(plan, "prometheus")
    pc = _load(prom.config["prometheus.yml"])
    pc["global"].setdefault("external_labels", {})[REGION_EXTERNAL_LABEL] = region
    sd_url = f"http://collector.{mon}.svc:{COLLECTOR_PORT}{NODE_TARGETS_PATH}"
    pc["scrape_configs"].insert(1, node_scrape_config(sd_url))
    pc["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [f"alertmanager.{mon}.svc:{ALERTMANAGER_PORT}"]}]}]}
    names = kpi_record_names(_programme_kpis(files))
    ksm = _kube_state_metrics(plan)
    if ksm:
        pc["scrape_configs"].append({
            "job_name": KUBE_STATE_METRICS_JOB,
            "static_configs": [{"targets": [target], "labels": {"cluster": cluster}} for cluster, target in sorted(ksm.items())],
            # the hosting rules read two namespace series; the rest of kube-state-metrics stays out of the TSDB
            "metric_relabel_configs": [{"source_labels": ["__name__"], "regex": "|".join(KUBE_STATE_METRICS_SERIES),
                                        "action": "keep"}]})
        summary.pieces.append(("kube-state-metrics", f"{', '.join(f'{c} {t}' for c, t in sorted(ksm.items()))}: namespaces "
                                                     "present and Active, for the hosted KPI"))
    else:
        plan.notes.append("ctfleet:dataPath.kubeStateMetrics is empty: no cluster state is scraped, so no CT of the region "
                          "counts as hosted")
    secrets = prom.secrets
    if d.nationalWriteUrl and names:
        pc["remote_write"] = [remote_write(d.nationalWriteUrl, region, names,
                                           basic_auth={"username": ref.name, "password_file": REMOTE_WRITE_PASSWORD})]
        secrets = (SecretMount("remote-write-national", REMOTE_WRITE_PASSWORD.rsplit("/", 1)[0],
                               "this region's password at the national receiver", optional=True),)
        summary.pieces.append(("remote_write", f"{d.nationalWriteUrl}: {len(names)} KPI series (ctfleet:* renamed "
                                               f"ctfleet_region:*), external label {REGION_EXTERNAL_LABEL}={region}"))
    else:
        plan.notes.append("ctfleet:dataPath.nationalWriteUrl is not set: the region's KPIs do not reach the national Prometheus")
    _swap(plan, prom, replace(prom, config=prom.config | {"prometheus.yml": yaml_text(pc)}, secrets=secrets))
    summary.pieces.append(("node_exporter", f"job node: http_sd {sd_url}, port {NODE_EXPORTER_PORT}"))


def _regional_alertmanager(plan: StackPlan, hosting, files: MonitorFiles, summary: DataPathSummary) -> None:
    """Alertmanager: the project's routing, and the region's route to its NOC's webhook."""
    cfg, d, mon, region = plan.config, plan.config.dataPath, MONITORING_NAMESPACE, plan.ref.unit or ""
    am_cfg = region_alertmanager(files.alertmanager, region, d.alertWebhook)
    plan.apps.append(AppPlan("alertmanager", mon, cfg.image("alertmanager"), ALERTMANAGER_PORT, hosting.apps.alertmanager,
                             {"alertmanager.yml": yaml_text(am_cfg)}, "/etc/alertmanager",
                             args=("--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager",
                                   "--cluster.listen-address="),
                             data_mount="/alertmanager", probe={"httpGet": {"path": "/-/ready", "port": "http"}},
                             storage_class=cfg.storageClass))
    summary.pieces.append(("Alertmanager", f"route region=\"{region}\" -> noc-region-{region} "
                                           f"({d.alertWebhook or 'no webhook set: alerts are kept, not sent'})"))
    if not d.alertWebhook:
        plan.notes.append("ctfleet:dataPath.alertWebhook is not set: the regional Alertmanager sends no notification")


def _regional_grafana(plan: StackPlan, hosting, files: MonitorFiles, summary: DataPathSummary) -> None:
    """Grafana: the region's dashboards, on the regional Prometheus."""
    cfg, mon = plan.config, MONITORING_NAMESPACE
    ds = _load(files.datasources)
    for source in ds.get("datasources", []):
        source["url"] = f"http://prometheus.{mon}.svc:{PROMETHEUS_PORT}"
    provider = _load(files.dashboard_provider)
    dash_dir = "/var/lib/grafana-dashboards/ctfleet"
    for p in provider.get("providers", []):
        p.setdefault("options", {})["path"] = dash_dir
    dashboards = {n: t for n, t in files.dashboards.items() if n in REGION_DASHBOARDS}
    plan.apps.append(AppPlan("grafana", mon, cfg.image("grafana"), GRAFANA_PORT, hosting.apps.grafana,
                             {"ctfleet.yaml": yaml_text(ds)}, "/etc/grafana/provisioning/datasources",
                             files=(FileSet("dashboard-provider", "/etc/grafana/provisioning/dashboards",
                                            {"ctfleet.yaml": yaml_text(provider)}),
                                    FileSet("dashboards", dash_dir, dashboards)),
                             scratch=("/tmp", "/var/lib/grafana", "/var/log/grafana"),
                             env=(("GF_AUTH_ANONYMOUS_ENABLED", "false"), ("GF_ANALYTICS_REPORTING_ENABLED", "false"),
                                  ("GF_ANALYTICS_CHECK_FOR_UPDATES", "false"), ("GF_PLUGINS_PREINSTALL_DISABLED", "true")),
                             secret_env=(("GF_SECURITY_ADMIN_PASSWORD", "grafana-admin", "password"),),
                             probe={"httpGet": {"path": "/api/health", "port": "http"}}))
    summary.pieces.append(("Grafana", f"dashboards {', '.join(sorted(dashboards))} from monitors/dashboards/, datasource "
                                      f"prometheus.{mon}.svc:{PROMETHEUS_PORT}"))


def _monitoring_flows(plan: StackPlan) -> None:
    """The monitoring tenant's further flows: to the results database, between Prometheus,
    Alertmanager and Grafana, to the node_exporters, the national receiver and the NOC."""
    cfg, d, mon = plan.config, plan.config.dataPath, MONITORING_NAMESPACE
    prom_p, coll_p, am_p, graf_p = (_pods(**{NAME: n}) for n in ("prometheus", "collector", "alertmanager", "grafana"))
    db_p = _pods(**{NAME: DB_APP})
    flows = [
        Flow("collector-to-results-db", "egress", (Peer(namespace=RESULTS_NAMESPACE, pods=db_p),),
             "the collector writes its sweeps to and reads audits from the region's results database",
             ports=(("TCP", POSTGRES_PORT),), pods=coll_p),
        Flow("prometheus-to-alertmanager", "egress", (Peer(pods=am_p),), "Prometheus sends alerts",
             ports=(("TCP", ALERTMANAGER_PORT),), pods=prom_p),
        Flow("alertmanager-from-prometheus", "ingress", (Peer(pods=prom_p),), "Prometheus sends alerts",
             ports=(("TCP", ALERTMANAGER_PORT),), pods=am_p),
        Flow("grafana-to-prometheus", "egress", (Peer(pods=prom_p),), "Grafana queries Prometheus",
             ports=(("TCP", PROMETHEUS_PORT),), pods=graf_p),
        Flow("prometheus-from-grafana", "ingress", (Peer(pods=graf_p),), "Grafana queries Prometheus",
             ports=(("TCP", PROMETHEUS_PORT),), pods=prom_p),
        _from_ingress(cfg, GRAFANA_PORT, graf_p),
        Flow("grafana-dns", "egress", DNS.peers, DNS.why, ports=DNS.ports, pods=graf_p),
    ]
    in_cluster: dict[str, set[int]] = {}
    for cluster, target in sorted(_kube_state_metrics(plan).items()):
        host, _, port = target.rpartition(":")
        parts = host.split(".")
        if len(parts) >= 3 and parts[2] == "svc":  # <service>.<namespace>.svc[.cluster.local]: this cluster
            in_cluster.setdefault(parts[1], set()).add(int(port))
        else:
            plan.notes.append(f"kube-state-metrics of {cluster} ({target}) is outside this cluster: the default-deny "
                              "policy blocks it until an egress rule allows it")
    for namespace, ports in sorted(in_cluster.items()):
        flows.append(Flow(f"prometheus-to-kube-state-metrics-{namespace}"[:63], "egress", (Peer(namespace=namespace),),
                          "Prometheus scrapes kube-state-metrics (namespaces present, for the hosted KPI)",
                          ports=tuple(("TCP", p) for p in sorted(ports)), pods=prom_p))
    if cfg.siteCidrs:
        flows.append(Flow("prometheus-to-node-exporters", "egress", tuple(Peer(cidr=c) for c in cfg.siteCidrs),
                          "Prometheus scrapes the reference servers' node_exporter", ports=(("TCP", NODE_EXPORTER_PORT),),
                          pods=prom_p))
    if d.nationalWriteUrl:
        if cfg.federationCidrs:
            flows.append(Flow("prometheus-to-nation", "egress", tuple(Peer(cidr=c) for c in cfg.federationCidrs),
                              "remote_write of the KPI series to the national receiver",
                              ports=(("TCP", _url_port(d.nationalWriteUrl)),), pods=prom_p))
        else:
            plan.notes.append("ctfleet:federationCidrs is empty: the default-deny policy blocks remote_write until it "
                              "names the national cloud's network")
    if d.alertWebhook:
        flows.append(Flow("alertmanager-to-noc", "egress", (Peer(cidr="0.0.0.0/0"),), "notifications to the regional NOC's relay",
                          ports=(("TCP", _url_port(d.alertWebhook)),), pods=am_p))
    plan.tenants = [replace(t, flows=t.flows + tuple(flows)) if t.namespace == mon else t for t in plan.tenants]


def _results_store(plan: StackPlan, norms, hosting, summary: DataPathSummary) -> None:
    """The results service and its PostgreSQL database, in their own tenant, and the
    service's endpoint outside the cluster."""
    cfg, ref, d, mon, region = plan.config, plan.ref, plan.config.dataPath, MONITORING_NAMESPACE, plan.ref.unit or ""
    coll_p, res_p, db_p = (_pods(**{NAME: n}) for n in ("collector", "results", DB_APP))
    res_flows = (
        DNS,
        _from_ingress(cfg, RESULTS_SERVICE_PORT, res_p),
        Flow("results-to-db", "egress", (Peer(pods=db_p),), "the results service stores batches", ports=(("TCP", POSTGRES_PORT),),
             pods=res_p),
        Flow("db-from-results", "ingress", (Peer(pods=res_p),), "the results service stores batches",
             ports=(("TCP", POSTGRES_PORT),), pods=db_p),
        Flow("db-from-collector", "ingress", (Peer(namespace=mon, pods=coll_p),),
             "the collector writes its sweeps and reads audits", ports=(("TCP", POSTGRES_PORT),), pods=db_p),
    )
    plan.tenants.append(_system_tenant(ref, cfg, RESULTS_NAMESPACE, "results", "Results service and database (PostgreSQL)",
                                       hosting.system.results, norms, res_flows, region))
    service_yaml = emitted(ServiceConfig, f"{ref.name}: ConfigMap results (results-service.yml)",
                           {"database": DB_URL, "database_password": "env:CTFLEET_RESULTS_DB_PASSWORD",
                            "listen": f"0.0.0.0:{RESULTS_SERVICE_PORT}", "web_config": "/etc/ctfleet-web/web-config.yml",
                            "profile": "/etc/ctfleet/profile.yaml"})
    service_profile = emitted(Profile, f"{ref.name}: ConfigMap results (profile.yaml)", {"name": ref.name, "region": region})
    plan.apps.append(AppPlan("results", RESULTS_NAMESPACE, cfg.image("collector"), RESULTS_SERVICE_PORT,
                             hosting.apps.resultsService,
                             {"results-service.yml": service_yaml, "profile.yaml": service_profile}, "/etc/ctfleet",
                             command=("python", "-m", "ctfleet.results.service"),
                             args=("--config", "/etc/ctfleet/results-service.yml"), port_name="https",
                             secrets=(SecretMount("results-tls", "/etc/ctfleet-tls", "the endpoint's certificate"),
                                      SecretMount("results-web-config", "/etc/ctfleet-web", "TLS files and the region's users")),
                             secret_env=(("CTFLEET_RESULTS_DB_PASSWORD", DB_APP, "password"),),
                             probe={"httpGet": {"path": "/-/healthy", "port": "https", "scheme": "HTTPS"}}))
    plan.apps.append(AppPlan(DB_APP, RESULTS_NAMESPACE, cfg.image("postgres"), POSTGRES_PORT, hosting.apps.postgres,
                             {"postgresql.conf.sample": "# settings: the image's defaults; PGDATA on the volume\n"},
                             "/etc/ctfleet-postgres", kind="StatefulSet", port_name="postgres",
                             env=(("POSTGRES_USER", DB_USER), ("POSTGRES_DB", DB_NAME),
                                  ("PGDATA", "/var/lib/postgresql/data/pgdata")),
                             secret_env=(("POSTGRES_PASSWORD", DB_APP, "password"),),
                             data_mount="/var/lib/postgresql/data", scratch=("/tmp", "/var/run/postgresql"),
                             probe={"tcpSocket": {"port": "postgres"}}, storage_class=cfg.storageClass))
    summary.pieces.append(("results store", f"PostgreSQL StatefulSet {RESULTS_NAMESPACE}/{DB_APP} on PVC {DB_APP}-data "
                                            f"({hosting.apps.postgres.dataGiB:g}Gi, protected and retained), {DB_URL}"))
    if d.resultsHost:
        plan.extra.append(ingress("results", RESULTS_NAMESPACE, d.resultsHost, "results", "https", RESULTS_BATCHES_PATH, "Prefix",
                                  "results-tls", d.ingressClass, _stack_labels(plan, "results"),
                                  {"nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
                                   "nginx.ingress.kubernetes.io/proxy-body-size": "32m"}))
        summary.pieces.append(("results endpoint", f"https://{d.resultsHost}{RESULTS_BATCHES_PATH}/<id> (Ingress, TLS Secret "
                                                   "results-tls; the service checks the region's users)"))
    else:
        plan.notes.append("ctfleet:dataPath.resultsHost is not set: the results service has no endpoint outside the cluster")


def _national(plan: StackPlan, files: MonitorFiles) -> None:
    cfg = plan.config
    prom = _app(plan, "prometheus")
    rules = national_rules(_programme_kpis(files))
    pc = _load(prom.config["prometheus.yml"])
    pc.setdefault("rule_files", []).append("/etc/prometheus/rules-national-kpi.yml")
    _swap(plan, prom, replace(prom, config=prom.config | {"prometheus.yml": yaml_text(pc),
                                                          "rules-national-kpi.yml": yaml_text(rules)},
                              args=prom.args + ("--web.enable-remote-write-receiver",)))
    summary = DataPathSummary(None, secrets=list(SECRETS["national"]))
    summary.pieces.append(("national rules", f"{len(rules['groups'][0]['rules'])} KPI rules summing the regions' ctfleet_region:* "
                                             "series (rules-national-kpi.yml)"))
    host = cfg.dataPath.receiverHost
    if host:
        plan.extra.append(ingress("remote-write", MONITORING_NAMESPACE, host, "prometheus", "http", NATIONAL_WRITE_PATH, "Exact",
                                  "remote-write-tls", cfg.dataPath.ingressClass, _stack_labels(plan, "prometheus"),
                                  {"nginx.ingress.kubernetes.io/auth-type": "basic",
                                   "nginx.ingress.kubernetes.io/auth-secret": "remote-write-users",
                                   "nginx.ingress.kubernetes.io/auth-realm": "ctfleet national receiver"}))
        summary.pieces.append(("remote-write receiver", f"https://{host}{NATIONAL_WRITE_PATH} (Ingress, TLS Secret remote-write-tls, "
                                                        "basic auth Secret remote-write-users; only this path)"))
    else:
        plan.notes.append("ctfleet:dataPath.receiverHost is not set: the regions cannot remote-write to the national Prometheus")
    plan.datapath = summary


__all__ = ["FleetSource", "MonitorFiles", "DataPathSummary", "SECRETS", "check_config", "load_fleet_source",
           "load_monitor_files", "region_alertmanager", "ingress", "extend"]
