"""What each stack declares, computed in pure code from the registry and the norms.

These run without Pulumi: the planner and renderer are the same code the Pulumi program
runs (tests/test_stacks_mocks.py checks that the program declares exactly these objects).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from ctfleet.stacks.generate import default_config, generate, read_stack_file
from ctfleet.stacks.hosting import Quota, cpu_quantity, parse_quantity
from ctfleet.stacks.manifests import render
from ctfleet.stacks.names import MONITORING_NAMESPACE, PKGCACHE_NAMESPACE, RESULTS_NAMESPACE, ascii_slug, ct_namespace, is_dns_label, tenant_home
from ctfleet.stacks.plan import plan_stack
from ctfleet.stacks.policies import NormOracle, check
from ctfleet.stacks.program import STACKS_DIR, load_inputs

ROOT = Path(__file__).resolve().parent.parent

REGION_STACKS = [
    "sdr-tanger-tetouan-al-hoceima", "sdr-oriental", "sdr-fes-meknes", "sdr-rabat-sale-kenitra", "sdr-beni-mellal-khenifra",
    "sdr-casablanca-settat", "sdr-marrakech-safi", "sdr-draa-tafilalet", "sdr-souss-massa", "sdr-guelmim-oued-noun",
    "sdr-laayoune-sakia-el-hamra", "sdr-dakhla-oued-ed-dahab",
]
SDL_STACKS = ["sdl-tanger", "sdl-fes", "sdl-rabat", "sdl-sale", "sdl-casablanca", "sdl-marrakech"]
PLATFORMS = ["Rokhas", "Watiqa", "Chikaya", "Chafafiya", "Majaliss", "Alhalalmadania", "Bureau d'Ordre Digital", "Idarati",
             "ERP support", "ERP métier"]


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


@pytest.fixture(scope="module")
def plans(inputs):
    """Every stack planned from its generated default config."""
    return {name: plan_stack(ref, _cfg(inputs, name), inputs.registry, inputs.norms, inputs.hosting,
                             inputs.rules if ref.tier == "sdr" else {})
            for name, ref in inputs.stacks.items()}


def _cfg(inputs, name):
    from ctfleet.stacks.config import validate_config

    return validate_config(default_config(inputs.stacks[name]), name, inputs.registry, name)


@pytest.fixture(scope="module")
def rendered(plans):
    return {name: render(plan) for name, plan in plans.items()}


def expected_quota(inputs, ct) -> dict[str, str]:
    """spec.hard written out from the resolved norm values, independently of the planner."""
    r = inputs.norms.resolve(ct)
    cpu = cpu_quantity(r["HST-1"].value)
    mem, disk = f"{r['HST-2'].value}Gi", f"{r['HST-3'].value}Gi"
    return {"requests.cpu": cpu, "limits.cpu": cpu, "requests.memory": mem, "limits.memory": mem,
            "requests.storage": disk, "pods": str(r["HST-4"].value)}


# ------------------------------------------------------------------ the stacks
def test_one_stack_per_hosting_unit(inputs):
    stacks = inputs.stacks
    assert [n for n, r in stacks.items() if r.tier == "sdr"] == REGION_STACKS
    assert [n for n, r in stacks.items() if r.tier == "sdl"] == SDL_STACKS
    eci = [r for r in stacks.values() if r.tier == "eci"]
    assert sorted(r.unit for r in eci) == sorted(inputs.registry.groupings)
    assert all(r.name.startswith("eci-") and r.name.removeprefix("eci-") in r.unit.lower() for r in eci)
    assert not [r.name for r in eci if r.name.startswith("eci-eci-")]
    assert len(stacks) == 1 + 12 + len(inputs.registry.groupings) + 6
    assert ascii_slug("Laâyoune-Sakia El Hamra") == "laayoune-sakia-el-hamra"


def test_regional_tenants_are_the_regions_cts(inputs, plans):
    total = 0
    for name in REGION_STACKS:
        plan = plans[name]
        region = plan.ref.unit
        hosted = sorted(c for c, ct in inputs.registry.cts.items() if ct.region_code == region and tenant_home(ct) == "sdr")
        assert [t.namespace for t in plan.tenants] == [ct_namespace(c) for c in hosted] + [MONITORING_NAMESPACE, PKGCACHE_NAMESPACE, RESULTS_NAMESPACE]
        assert [t.members[0] for t in plan.tenants if t.kind == "ct"] == hosted
        total += len(hosted)
    # every CT uses its region's SDR cloud, but the 6 SDL communes and the 37 grouping members live in their SDL/ECI stack
    assert total == len(inputs.registry.cts) - 6 - 37 == 1547


def test_ct_tenant_names_and_labels(plans):
    tenant = plans["sdl-tanger"].tenant("ct-01-511-01-0")
    assert tenant.labels == {
        "ctfleet.ma/stack": "sdl-tanger", "ctfleet.ma/tier": "sdl", "ctfleet.ma/kind": "ct",
        "app.kubernetes.io/managed-by": "pulumi", "app.kubernetes.io/part-of": "ctfleet", "app.kubernetes.io/component": "tenant",
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.33",
        "pod-security.kubernetes.io/audit-version": "v1.33", "pod-security.kubernetes.io/warn-version": "v1.33",
        "ctfleet.ma/ct-code": "01.511.01.0", "ctfleet.ma/region": "01", "ctfleet.ma/segment": "commune_arrondissements",
        "ctfleet.ma/lot": "1",
    }
    assert tenant.annotations["ctfleet.ma/name"] == "Tanger"
    assert tenant.quota_source == "standards/norms/segments/commune_arrondissements.yaml:10-13"
    for plan in plans.values():
        names = [t.namespace for t in plan.tenants]
        assert len(names) == len(set(names))
        assert all(is_dns_label(n) for n in names)


def test_quotas_equal_the_norms_for_every_ct(inputs, rendered):
    seen = 0
    for name in REGION_STACKS + SDL_STACKS:
        quotas = {o["metadata"]["namespace"]: o["spec"]["hard"] for o in rendered[name] if o["kind"] == "ResourceQuota"}
        for ns_obj in (o for o in rendered[name] if o["kind"] == "Namespace"):
            code = ns_obj["metadata"]["labels"].get("ctfleet.ma/ct-code")
            if code:
                hard = quotas[ns_obj["metadata"]["name"]]
                assert {k: hard[k] for k in expected_quota(inputs, inputs.registry.cts[code])} == \
                    expected_quota(inputs, inputs.registry.cts[code]), code
                # Capsule-style object quotas: no LoadBalancer or NodePort Service, claims and ephemeral storage capped
                assert hard["services.loadbalancers"] == hard["services.nodeports"] == "0", code
                assert int(hard["persistentvolumeclaims"]) >= 1 and hard["requests.ephemeral-storage"] == f"{2 * int(hard['pods'])}Gi"
                seen += 1
    assert seen == 1547 + 6


def test_segment_capacity_examples(inputs, plans):
    """Spot values, written out: a commune < 15,000 gets 1 core, 4 GiB, 100 GiB, 20 pods (segment file)."""
    small = next(t for t in plans["sdr-dakhla-oued-ed-dahab"].tenants if t.labels.get("ctfleet.ma/segment") == "commune_under_15k")
    assert small.quota == Quota(1.0, 4.0, 100.0, 20)
    assert plans["sdl-casablanca"].tenants[0].quota == Quota(32.0, 128.0, 4000.0, 400)


def test_national_hosts_the_shared_platforms(plans):
    plan = plans["national"]
    assert [t.title for t in plan.tenants if t.kind == "platform"] == PLATFORMS
    assert [t.namespace for t in plan.tenants] == [
        "nat-rokhas", "nat-watiqa", "nat-chikaya", "nat-chafafiya", "nat-majaliss", "nat-alhalalmadania",
        "nat-bureau-ordre-digital", "nat-idarati", "nat-erp-support", "nat-erp-metier", MONITORING_NAMESPACE]
    assert [a.name for a in plan.apps] == ["prometheus"]
    prom = next(o for o in render(plan) if o["kind"] == "ConfigMap")
    config = YAML(typ="safe").load(prom["data"]["prometheus.yml"])
    # the regions' KPIs arrive by remote_write (the receiver and national rules: test_stacks_datapath.py);
    # nothing scrapes the regions across the WAN, and no flow lets the national Prometheus reach them
    assert [j["job_name"] for j in config["scrape_configs"]] == ["prometheus"]
    assert not any("federat" in f.name or "federat" in f.why for t in plan.tenants for f in t.flows)


def test_the_removed_federate_key_says_what_replaced_it(inputs):
    from ctfleet.core.errors import InputErrors
    from ctfleet.stacks.config import validate_config

    raw = default_config(inputs.stacks["national"]) | {"ctfleet:federate": {"oriental": "10.2.255.10:9090"}}
    with pytest.raises(InputErrors) as exc:
        validate_config(raw, "national", inputs.registry, "infra/stacks/Pulumi.national.yaml")
    assert str(exc.value) == (
        "1 problem in the stack config, no resource declared:\n"
        "  infra/stacks/Pulumi.national.yaml: ctfleet:federate: is no longer read: the national Prometheus does not scrape the "
        "regions (federation loses samples across a WAN outage); each region remote-writes its KPIs to the national receiver "
        "(valid: remove it; set ctfleet:dataPath.receiverHost on the national stack and ctfleet:dataPath.nationalWriteUrl on "
        "each regional one)")


def test_grouping_tenant_is_sized_by_its_members(inputs, plans):
    for name, plan in plans.items():
        if plan.ref.tier != "eci":
            continue
        g = inputs.registry.groupings[plan.ref.unit]
        [tenant] = plan.tenants
        assert tenant.namespace == g.code.lower()
        assert tenant.annotations["ctfleet.ma/members"] == ",".join(g.members)
        total = Quota(0, 0, 0, 0)
        for m in g.members:
            r = inputs.norms.resolve(inputs.registry.cts[m])
            total = total + Quota(r["HST-1"].value, r["HST-2"].value, r["HST-3"].value, r["HST-4"].value)
        assert tenant.quota == total
        assert "illustrative" in plan.notes[0]


def test_sdl_tenant_is_the_commune(inputs, plans):
    plan = plans["sdl-sale"]
    [tenant] = plan.tenants
    assert tenant.namespace == "ct-04-441-01-0"
    assert tenant.annotations["ctfleet.ma/arrondissements"] == ",".join(inputs.registry.cts["04.441.01.0"].arrondissements)
    assert tenant.labels["ctfleet.ma/tier"] == "sdl"


# ------------------------------------------------------------------ objects
def test_tenant_objects_and_counts(rendered, plans):
    objs = rendered["sdr-rabat-sale-kenitra"]
    kinds = Counter(o["kind"] for o in objs)
    n = len(plans["sdr-rabat-sale-kenitra"].tenants)
    cts = n - 3
    assert kinds == {"ClusterRole": 1, "ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1,
                     "Namespace": n, "ResourceQuota": n, "LimitRange": n, "RoleBinding": n,
                     # CT tenants: default-deny + allow-tenant-flows; monitoring: default-deny + allow-tenant-flows (dns),
                     # allow-collector, allow-prometheus, allow-alertmanager, allow-grafana; package cache: default-deny +
                     # allow-tenant-flows, allow-apt-cacher-ng; results: default-deny + allow-tenant-flows, allow-results,
                     # allow-results-db
                     "NetworkPolicy": cts * 2 + 6 + 3 + 4,
                     # collector, prometheus, apt-cacher-ng + the data path: alertmanager, grafana, results, results-db
                     # (a StatefulSet); ConfigMaps + collector-fleet, grafana-dashboard-provider, grafana-dashboards
                     "ServiceAccount": 7, "ConfigMap": 10, "Service": 7, "Deployment": 6, "StatefulSet": 1,
                     "PersistentVolumeClaim": 4, "Ingress": 1}
    ns = "ct-04-441-01-08"
    assert sorted(o["metadata"]["name"] for o in objs if o["metadata"].get("namespace") == ns) == [
        "allow-tenant-flows", "default-deny", "tenant-limits", "tenant-operators", "tenant-quota"]
    flows = next(o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"] == {**o["metadata"], "namespace": ns,
                                                                                       "name": "allow-tenant-flows"})
    assert flows["metadata"]["annotations"]["ctfleet.ma/flows"].split("; ") == [
        "ingress[0] same-namespace-in: the tenant's pods reach each other",
        "ingress[1] from-ingress: published services are reached through the ingress controller",
        "ingress[2] from-monitoring: the cloud's Prometheus scrapes the tenant's metrics",
        "egress[0] same-namespace-out: the tenant's pods reach each other",
        "egress[1] dns: name resolution through the cluster DNS",
        "egress[2] to-pkgcache: Debian/Ubuntu packages through the region's cache (low-bandwidth communes)",
    ]
    assert flows["spec"]["ingress"][0] == {"from": [{"podSelector": {}}]}  # its own namespace's pods only
    assert flows["spec"]["egress"][2] == {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ctfleet-pkgcache"}},
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "apt-cacher-ng"}}}],
        "ports": [{"protocol": "TCP", "port": 3142}]}
    assert sorted(o["metadata"]["name"] for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == MONITORING_NAMESPACE) \
        == ["allow-alertmanager", "allow-collector", "allow-grafana", "allow-prometheus", "allow-tenant-flows", "default-deny"]
    binding = next(o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == ns)
    assert binding["roleRef"]["name"] == "ctfleet-tenant-operator-sdr-rabat-sale-kenitra"
    assert [s["name"] for s in binding["subjects"]] == ["sdr-rabat-sale-kenitra:operators", f"{ns}:admins"]


def test_every_object_passes_the_kubernetes_schema(rendered):
    from ctfleet.stacks.schema import validator

    v = validator()
    results = {(name, o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): v.errors(o)
               for name, objs in rendered.items() for o in objs}
    assert {k: e for k, e in results.items() if e} == {}
    assert sum(len(objs) for objs in rendered.values()) > 9_000


def test_every_stack_satisfies_the_policies(inputs, rendered):
    oracle = NormOracle(inputs.registry, inputs.norms, inputs.hosting)
    assert {name: [str(v) for v in check(objs, oracle)] for name, objs in rendered.items()} == {name: [] for name in rendered}


def test_workloads_are_unprivileged_and_fit_their_tenant(plans, rendered):
    for name in ["national"] + REGION_STACKS:
        plan = plans[name]
        for ns in {a.namespace for a in plan.apps}:
            quota = plan.tenant(ns).quota
            apps = [a for a in plan.apps if a.namespace == ns]
            # limits of every pod plus one rolling-update surge of the largest stay within the quota
            surge = max(a.spec.limits.cpu for a in apps if a.spec.dataGiB is None) if any(a.spec.dataGiB is None for a in apps) else 0
            assert sum(a.spec.limits.cpu for a in apps) + surge <= quota.cpu, (name, ns)
            assert sum(a.spec.limits.memoryMiB for a in apps) / 1024 <= quota.memory_gib, (name, ns)
            assert sum(a.spec.dataGiB or 0 for a in apps) <= quota.storage_gib, (name, ns)
        for dep in (o for o in rendered[name] if o["kind"] == "Deployment"):
            pod = dep["spec"]["template"]["spec"]
            [c] = pod["containers"]
            assert c["securityContext"] == {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "privileged": False, "capabilities": {"drop": ["ALL"]},
                                            "seccompProfile": {"type": "RuntimeDefault"}}
            assert pod["automountServiceAccountToken"] is False
            assert c["image"].rsplit(":", 1)[1] not in ("", "latest")


def test_limit_range_defaults_fit_the_quota(rendered):
    for objs in rendered.values():
        for lr in (o for o in objs if o["kind"] == "LimitRange"):
            c = lr["spec"]["limits"][0]
            for res in ("cpu", "memory"):
                assert parse_quantity(c["defaultRequest"][res]) <= parse_quantity(c["default"][res]) <= parse_quantity(c["max"][res])


def test_collector_config_names_its_shard(rendered):
    cm = next(o for o in rendered["sdr-oriental"] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "collector")
    config = YAML(typ="safe").load(cm["data"]["collector.yaml"])
    assert config == {"shard": "region:02", "interval_seconds": 60, "listen": "0.0.0.0:9160", "probe": {"method": "icmp"},
                      "results_dir": "postgresql://ctfleet@results-db.ctfleet-results.svc:5432/results",
                      "profile": "/etc/ctfleet-fleet/profile.yaml"}
    dep = next(o for o in rendered["sdr-oriental"] if o["kind"] == "Deployment" and o["metadata"]["name"] == "collector")
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["--config", "/etc/ctfleet/collector.yaml"]
    assert container["envFrom"] == [{"secretRef": {"name": "collector-snmp", "optional": True}}]
    prom = next(o for o in rendered["sdr-oriental"] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "prometheus")
    job = YAML(typ="safe").load(prom["data"]["prometheus.yml"])["scrape_configs"][0]
    assert job["static_configs"][0]["targets"] == ["collector.ctfleet-monitoring.svc:9160"]


def test_collector_config_is_valid_for_the_collector(rendered):
    """The ConfigMap the regional stack writes is a valid ctfleet.monitors.collector config."""
    collector = pytest.importorskip("ctfleet.monitors.collector")
    for i, name in enumerate(REGION_STACKS, start=1):  # in region-code order
        cm = next(o for o in rendered[name] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "collector")
        config = collector.CollectorConfig.model_validate(YAML(typ="safe").load(cm["data"]["collector.yaml"]))
        assert config.shard == f"region:{i:02d}"


def test_emitted_configs_load_with_their_components_own_loaders(rendered, plans, tmp_path):
    """Round trip: every regional stack's collector.yaml, results-service.yml and profile.yaml
    load with the loader the component itself runs (``load_config``, ``load_profile``) and
    hold what the plan chose."""
    from ctfleet.core.conventions import RESULTS_SERVICE_PORT
    from ctfleet.monitors.collector import load_config as load_collector
    from ctfleet.project import load_profile
    from ctfleet.results.service import load_config as load_service

    def written(stack: str, cm: str, key: str) -> Path:
        [obj] = [o for o in rendered[stack] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == cm]
        path = tmp_path / stack / cm / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(obj["data"][key], encoding="utf-8")
        return path

    for i, name in enumerate(REGION_STACKS, start=1):
        region = f"{i:02d}"
        c = load_collector(written(name, "collector", "collector.yaml"))
        assert (c.shard, c.interval_seconds, c.listen, c.probe.method) == (f"region:{region}", 60.0, "0.0.0.0:9160", "icmp")
        assert c.profile == "/etc/ctfleet-fleet/profile.yaml" and c.results_dir.startswith("postgresql://")
        collector_profile = load_profile(tmp_path, written(name, "collector-fleet", "profile.yaml"))
        assert (collector_profile.name, collector_profile.region, collector_profile.results_dir) == (name, region, c.results_dir)
        s = load_service(written(name, "results", "results-service.yml"))
        assert s.database == c.results_dir and s.database_password == "env:CTFLEET_RESULTS_DB_PASSWORD"
        assert s.listen == f"0.0.0.0:{RESULTS_SERVICE_PORT}" and s.profile == "/etc/ctfleet/profile.yaml"
        service_profile = load_profile(tmp_path, written(name, "results", "profile.yaml"))
        assert (service_profile.name, service_profile.region) == (name, region)
        [app] = [a for a in plans[name].apps if a.name == "collector"]  # the ConfigMap carries the plan's text
        assert app.config["collector.yaml"] == written(name, "collector", "collector.yaml").read_text(encoding="utf-8")


def test_a_wrong_collector_field_is_refused_at_plan_time_naming_the_key(inputs):
    """The stacks write the collector's file through its own model: a bad value or an unknown
    key stops the plan with the file and the key named, not the pod at its start."""
    from dataclasses import replace

    from ctfleet.core.collector_config import CollectorConfig
    from ctfleet.core.errors import CtfleetError
    from ctfleet.stacks.plan import emitted

    ref = inputs.stacks["sdr-oriental"]
    bad = replace(ref, unit="2")  # not a two-digit region code: the shard "region:2" is not one the collector takes
    with pytest.raises(CtfleetError) as exc:
        plan_stack(bad, _cfg(inputs, "sdr-oriental"), inputs.registry, inputs.norms, inputs.hosting, inputs.rules)
    text = str(exc.value)
    assert "sdr-oriental: ConfigMap collector (collector.yaml)" in text and ": shard: bad shard 'region:2'" in text
    assert "region:NN" in text  # says what is valid
    with pytest.raises(CtfleetError) as exc:
        emitted(CollectorConfig, "collector.yaml", {"shard": "region:02", "intervall_seconds": 60})
    assert str(exc.value).startswith("collector.yaml: intervall_seconds: unknown key (valid: one of ")
    assert "interval_seconds" in str(exc.value)
    with pytest.raises(CtfleetError) as exc:
        emitted(CollectorConfig, "collector.yaml", {"probe": {"method": "tcp"}})
    assert str(exc.value).startswith("collector.yaml: probe.method: ")


def test_regional_prometheus_carries_the_rule_files(inputs):
    from ctfleet.stacks.config import validate_config

    ref = inputs.stacks["sdr-oriental"]
    cfg = validate_config(default_config(ref), ref.name, inputs.registry, "x")
    rules = {"connectivity.yml": "groups: []\n"}
    plan = plan_stack(ref, cfg, inputs.registry, inputs.norms, inputs.hosting, rules)
    cm = next(o for o in render(plan) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "prometheus")
    assert cm["data"]["rules-connectivity.yml"] == "groups: []\n"
    assert YAML(typ="safe").load(cm["data"]["prometheus.yml"])["rule_files"] == ["/etc/prometheus/rules-connectivity.yml"]


# ------------------------------------------------------------------ generated config files
def test_checked_in_stack_configs_are_up_to_date(inputs, tmp_path: Path):
    copy = tmp_path / "stacks"
    shutil.copytree(ROOT / STACKS_DIR, copy)
    result = generate(inputs.stacks, copy)
    assert result.written == [] and result.stale == []
    assert len(result.unchanged) == len(inputs.stacks)


def test_regenerating_keeps_operators_values(inputs, tmp_path: Path):
    result = generate(inputs.stacks, tmp_path)
    assert len(result.written) == len(inputs.stacks)
    path = tmp_path / "Pulumi.sdr-oriental.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("context: sdr-oriental", "context: oujda-prod").replace("ctfleet:siteCidrs: []", "ctfleet:siteCidrs: [10.2.0.0/16]")
    text = text.replace("ctfleet:unit: '02'", "ctfleet:unit: '04'")  # derived: recomputed
    path.write_text("encryptionsalt: v1:abc\n" + text, encoding="utf-8")
    (tmp_path / "Pulumi.sdr-gone.yaml").write_text("config: {}\n", encoding="utf-8")
    again = generate(inputs.stacks, tmp_path)
    assert again.written == [path]
    assert [p.name for p in again.stale] == ["Pulumi.sdr-gone.yaml"]
    raw, _ = read_stack_file(path)
    assert raw["ctfleet:unit"] == "02"
    assert raw["ctfleet:kubernetes"] == {"context": "oujda-prod"}
    assert raw["ctfleet:siteCidrs"] == ["10.2.0.0/16"]
    assert "encryptionsalt: v1:abc" in path.read_text(encoding="utf-8")


# ------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli():
    from ctfleet.cli.stacks import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_cli_plan(cli):
    r = cli("plan", "sdr-dakhla-oued-ed-dahab")
    assert r.exit_code == 0, r.output
    assert "ct-12-391-01-01" in r.output and "Dakhla" in r.output
    assert "allow-tenant-flows: to-pkgcache" in r.output and "quay.io/prometheus/prometheus:v3.5.0" in r.output
    assert r.output.count("pass") >= 6
    r = cli("plan", "national", "--json")
    assert r.exit_code == 0
    summary = json.loads(r.output)
    assert [t["title"] for t in summary["tenants"]][:10] == PLATFORMS
    assert summary["policies"] == {pid: [] for pid in summary["policies"]}


def test_cli_plan_manifests_are_yaml(cli):
    r = cli("plan", "sdl-sale", "--manifests")
    assert r.exit_code == 0
    docs = list(YAML(typ="safe").load_all(r.output))
    assert [d["kind"] for d in docs] == ["ClusterRole", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                                        "Namespace", "ResourceQuota", "LimitRange", "NetworkPolicy", "NetworkPolicy",
                                        "RoleBinding"]


def test_cli_errors(cli, tmp_path: Path):
    r = cli("plan", "sdr-atlantis")
    assert r.exit_code == 1
    assert "no hosting unit is called 'sdr-atlantis'" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("config:\n  ctfleet:tier: sdr\n  ctfleet:unit: '12'\n  ctfleet:kubernetes: {context: x}\n"
                   "  ctfleet:operatorGroups: [g]\n", encoding="utf-8")
    r = cli("plan", "sdr-dakhla-oued-ed-dahab", "--config", str(bad))
    assert r.exit_code == 1
    # the key is absent: the error points at the deepest line that exists (config:)
    assert f"{bad}:1: ctfleet:images.collector: required key is missing for tier sdr" in r.output.replace("\n", "")


def test_cli_list_and_generate(cli, tmp_path: Path):
    r = cli("list", "--json")
    assert r.exit_code == 0
    rows = json.loads(r.output)
    assert len(rows) == 27 and all(row["config"] == "ok" for row in rows)
    assert next(row for row in rows if row["stack"] == "sdr-marrakech-safi")["tenants"] == "258"
    r = cli("generate", "--dir", str(tmp_path))
    assert r.exit_code == 0
    assert "27 stacks: 27 written" in r.output
    assert len(list(tmp_path.glob("Pulumi.*.yaml"))) == 27


def test_cli_plan_accepts_a_secret_kubeconfig(cli, tmp_path: Path):
    """`pulumi config set --secret ctfleet:kubeconfig` writes {secure: ...}: the plan reads it without decrypting."""
    path = tmp_path / "Pulumi.sdl-sale.yaml"
    text = (ROOT / STACKS_DIR / "Pulumi.sdl-sale.yaml").read_text(encoding="utf-8")
    path.write_text(text + "  ctfleet:kubeconfig:\n    secure: v1:aWxsdXN0cmF0aXZl:Y2lwaGVydGV4dA==\n", encoding="utf-8")
    r = cli("plan", "sdl-sale", "--config", str(path))
    assert r.exit_code == 0, r.output
    assert "target: context sdl-sale of the secret ctfleet:kubeconfig\n" in r.output
    assert "Y2lwaGVydGV4dA" not in r.output
    r = cli("plan", "sdl-sale")  # the committed file has none yet: said, not refused
    assert r.exit_code == 0 and "(not set yet: pulumi up refuses to run without it)" in r.output


def test_one_home_per_tenant_over_all_27_stacks(inputs):
    """Every stack planned from its committed config: no namespace and no CT in two stacks, every hosted CT in one."""
    from ctfleet.stacks.names import tenant_home
    from ctfleet.stacks.program import plan_for

    where: dict[str, list[str]] = {}
    ct_home: dict[str, list[str]] = {}
    for name in inputs.stacks:
        raw, _ = read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{name}.yaml")
        for t in plan_for(inputs, name, raw).tenants:
            where.setdefault(t.namespace, []).append(name)
            for code in t.members:
                ct_home.setdefault(code, []).append(name)
    assert len(inputs.stacks) == 27
    twice = {ns: stacks for ns, stacks in where.items() if len(stacks) > 1}
    # the two system namespaces exist once per cloud (each stack has its own cluster), never a tenant's
    assert set(twice) == {MONITORING_NAMESPACE, PKGCACHE_NAMESPACE, RESULTS_NAMESPACE}
    assert {ns: len(s) for ns, s in twice.items()} == {MONITORING_NAMESPACE: 13, PKGCACHE_NAMESPACE: 12, RESULTS_NAMESPACE: 12}
    assert {code: s for code, s in ct_home.items() if len(s) > 1} == {}
    hosted = {c for c, ct in inputs.registry.cts.items() if tenant_home(ct)}
    assert set(ct_home) == hosted
    sdl = [c for c in hosted if tenant_home(inputs.registry.cts[c]) == "sdl"]
    eci = [c for c in hosted if tenant_home(inputs.registry.cts[c]) == "eci"]
    assert len(sdl) == 6 and len(eci) == 37
    for code in sdl + eci:  # the ones the SDR stacks used to declare too
        assert not ct_home[code][0].startswith("sdr-"), code


# ------------------------------------------------------------------ data safety
def test_destructive_changes_against_the_deployed_inventory(cli, inputs, tmp_path: Path):
    """A storage-class change and a tenant leaving the stack are shown as destructive and refused unless the config allows it."""
    from ctfleet.stacks.readout import load_plan
    from ctfleet.stacks.safety import data_inventory

    deployed = data_inventory(render(load_plan(inputs, "sdr-dakhla-oued-ed-dahab")))
    assert deployed["volumes"]["ctfleet-monitoring/prometheus-data"]["storageClassName"] is None
    deployed["namespaces"].append("ct-12-999-01-01")  # a tenant the registry no longer puts in this stack
    inventory = tmp_path / "deployed.json"
    inventory.write_text(json.dumps(deployed), encoding="utf-8")
    text = (ROOT / STACKS_DIR / "Pulumi.sdr-dakhla-oued-ed-dahab.yaml").read_text(encoding="utf-8")
    changed = tmp_path / "Pulumi.sdr-dakhla-oued-ed-dahab.yaml"
    changed.write_text(text + "  ctfleet:storageClass: fast-ssd\n", encoding="utf-8")

    r = cli("plan", "sdr-dakhla-oued-ed-dahab", "--deployed", str(inventory), "--json")
    assert r.exit_code == 1  # the committed config: only the removed tenant, refused
    assert json.loads(r.output)["destructive_changes"] == [
        "Namespace/ct-12-999-01-01: the tenant is no longer declared by this stack: deleting the namespace deletes everything "
        "in it (its CT moved to another tier, or left the registry)"]
    deployed["namespaces"].remove("ct-12-999-01-01")
    inventory.write_text(json.dumps(deployed), encoding="utf-8")
    r = cli("plan", "sdr-dakhla-oued-ed-dahab", "--deployed", str(inventory), "--json")
    assert r.exit_code == 0 and json.loads(r.output)["destructive_changes"] == []
    deployed["namespaces"].append("ct-12-999-01-01")
    inventory.write_text(json.dumps(deployed), encoding="utf-8")
    r = cli("plan", "sdr-dakhla-oued-ed-dahab", "--config", str(changed), "--deployed", str(inventory), "--json")
    assert r.exit_code == 1
    assert json.loads(r.output)["destructive_changes"] == [
        "Namespace/ct-12-999-01-01: the tenant is no longer declared by this stack: deleting the namespace deletes everything "
        "in it (its CT moved to another tier, or left the registry)",
        "PersistentVolumeClaim/ctfleet-monitoring/alertmanager-data: storageClassName (cluster default) -> fast-ssd replaces the "
        "volume and its data",
        "PersistentVolumeClaim/ctfleet-monitoring/prometheus-data: storageClassName (cluster default) -> fast-ssd replaces the "
        "volume and its data",
        "PersistentVolumeClaim/ctfleet-pkgcache/apt-cacher-ng-data: storageClassName (cluster default) -> fast-ssd replaces the "
        "volume and its data",
        "PersistentVolumeClaim/ctfleet-results/results-db-data: storageClassName (cluster default) -> fast-ssd replaces the "
        "volume and its data",
    ]
    r = cli("plan", "sdr-dakhla-oued-ed-dahab", "--config", str(changed), "--deployed", str(inventory))
    assert r.exit_code == 1 and "pulumi up refuses them (protected)" in r.output
    changed.write_text(text + "  ctfleet:storageClass: fast-ssd\n  ctfleet:allowDestructiveChanges: true\n", encoding="utf-8")
    r = cli("plan", "sdr-dakhla-oued-ed-dahab", "--config", str(changed), "--deployed", str(inventory))
    assert r.exit_code == 0, r.output
    assert "allowed by ctfleet:allowDestructiveChanges" in r.output
    inventory.write_text("not json", encoding="utf-8")
    r = cli("plan", "sdr-dakhla-oued-ed-dahab", "--deployed", str(inventory))
    assert r.exit_code == 1 and f"{inventory}: not JSON" in r.output.replace("\n", "")


# ------------------------------------------------------------------ tenancy
def _quota_admits(hard: dict, used: dict, add: dict) -> bool:
    """Kubernetes ResourceQuota admission: refused when any tracked resource would exceed its hard limit."""
    return all(parse_quantity(used.get(k, 0)) + parse_quantity(v) <= parse_quantity(hard[k]) + 1e-9
               for k, v in add.items() if k in hard)


def test_a_default_sized_tenant_runs_its_full_pod_quota(rendered):
    """Pods that state no resources take the LimitRange defaults; every tenant of every stack can start `pods` of them."""
    checked = 0
    for name, objs in rendered.items():
        limits = {o["metadata"]["namespace"]: o["spec"]["limits"][0] for o in objs if o["kind"] == "LimitRange"}
        for q in (o for o in objs if o["kind"] == "ResourceQuota"):
            hard, lr = q["spec"]["hard"], limits[q["metadata"]["namespace"]]
            pod = {"pods": 1} | {f"requests.{r}": v for r, v in lr["defaultRequest"].items()} \
                | {f"limits.{r}": v for r, v in lr["default"].items()}
            used: dict = {}
            for _ in range(int(hard["pods"])):
                assert _quota_admits(hard, used, pod), (name, q["metadata"]["namespace"], used)
                used = {k: parse_quantity(used.get(k, 0)) + parse_quantity(v) for k, v in pod.items()}
            assert not _quota_admits(hard, used, pod)  # and the next one is refused by the pod count, not before
            checked += 1
    assert checked == sum(1 for objs in rendered.values() for o in objs if o["kind"] == "Namespace") == 1596 + 12  # + each region's ctfleet-results


def test_a_load_balancer_service_is_refused_by_quota_in_a_ct_tenant(rendered):
    objs = rendered["sdr-oriental"]
    ct_quotas = [o["spec"]["hard"] for o in objs if o["kind"] == "ResourceQuota" and o["metadata"]["namespace"].startswith("ct-")]
    assert len(ct_quotas) > 100
    for hard in ct_quotas:
        assert not _quota_admits(hard, {}, {"services": 1, "services.loadbalancers": 1})
        assert not _quota_admits(hard, {}, {"services": 1, "services.nodeports": 1})
        assert _quota_admits(hard, {}, {"services": 1})  # a ClusterIP Service behind the ingress is fine
