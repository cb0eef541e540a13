"""Issue 10's stack parts: a region's SDR stack deploys the data path on the region's real fleet.

A regional team's steps, run as a person types them (the real ``ctfleet`` command): import
the region's spreadsheet, write the regional profile, ``ctfleet --profile P stacks generate``
and ``ctfleet --profile P stacks plan sdr-<region>``. The plan must declare the collector
with targets from that fleet (file path, content hash, counts; no 127.x address), the
PostgreSQL results store, the results endpoint, remote_write to the national receiver,
Alertmanager and Grafana; every object passes the Kubernetes 1.33 schema and the policies.
The generated configs are checked by the real tools (promtool, amtool); Grafana cannot run
here, its provisioning is checked as data. The Pulumi program runs under mocks; no
``pulumi preview`` or ``up`` has run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from ctfleet.core.conventions import NODE_EXPORTER_JOB, NODE_TARGETS_PATH, REGION_EXTERNAL_LABEL, site_code
from ctfleet.core.datapath import kpi_record_names, national_rules, programme_kpis
from ctfleet.core.models import code_slug
from ctfleet.lab.datapath import ctfleet_cli, fleet_workbook
from ctfleet.stacks.generate import read_stack_file
from ctfleet.stacks.names import MONITORING_NAMESPACE, RESULTS_NAMESPACE
from ctfleet.stacks.program import STACKS_DIR, load_inputs, plan_for

ROOT = Path(__file__).resolve().parent.parent
STACK = "sdr-rabat-sale-kenitra"
REGION = "04"
N_CTS = 6


def _yaml(text: str):
    return YAML(typ="safe", pure=True).load(text)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} not found: install the Debian package {package!r} (scripts/setup)", pytrace=False)
    return path


def _cli(*args: str, profile: Path | None = None) -> subprocess.CompletedProcess:
    return ctfleet_cli(ROOT, *args, profile=profile)


@pytest.fixture(scope="module")
def inputs():
    return load_inputs()


def _rows(inputs, n: int = N_CTS, loopback: bool = False):
    cts = sorted(c for c, ct in inputs.registry.cts.items() if ct.region_code == REGION and ct.level.value == "commune")[:n]
    sites, devices = [], []
    for i, ct in enumerate(cts, 1):
        s = site_code(ct)
        sites.append([s, ct, f"Siège de la commune {ct}", "fibre", 20, "", ""])
        net = "127.4" if loopback else "10.4"
        devices.append([f"r-{code_slug(ct)}", s, "router", "cisco_ios", "ios-15.9", f"{net}.{i}.1", f"env:CTFLEET_SNMP_{REGION}", "v3"])
        devices.append([f"srv1-{code_slug(ct)}", s, "server", "debian", "debian-12", f"{net}.{i}.10", f"env:CTFLEET_SSH_{REGION}", ""])
    return sites, devices


@pytest.fixture(scope="module")
def region(inputs, tmp_path_factory):
    """The region's steps: import the spreadsheet, write the profile, generate the stack files (all with the real CLI)."""
    work = tmp_path_factory.mktemp("region-04")
    sites, devices = _rows(inputs)
    book = fleet_workbook(work / "parc-04.xlsx", sites, devices)
    profile = work / "sdr-04.yaml"
    profile.write_text(f"name: sdr-04\nregion: '04'\nfleet: {{source: files, dir: {work / 'fleet-04'}}}\n", encoding="utf-8")
    r = _cli("import", str(book), "--into", str(work / "fleet-04"), profile=profile)
    assert r.returncode == 0, r.stdout + r.stderr
    stacks = work / "stacks"
    r = _cli("stacks", "generate", "--dir", str(stacks), profile=profile)
    assert r.returncode == 0, r.stdout + r.stderr
    return {"work": work, "profile": profile, "fleet": work / "fleet-04", "stacks": stacks,
            "config": stacks / f"Pulumi.{STACK}.yaml", "sites": sites, "devices": devices}


@pytest.fixture(scope="module")
def planned(region):
    r = _cli("stacks", "plan", STACK, "--config", str(region["config"]), "--json", profile=region["profile"])
    assert r.returncode == 0, r.stdout + r.stderr
    m = _cli("stacks", "plan", STACK, "--config", str(region["config"]), "--manifests", profile=region["profile"])
    assert m.returncode == 0, m.stderr
    objects = [o for o in YAML(typ="safe", pure=True).load_all(m.stdout) if o]
    return json.loads(r.stdout), objects, m.stdout


def _obj(objects, kind: str, name: str, namespace: str | None = None):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name
                and (namespace is None or o["metadata"].get("namespace") == namespace))


# ------------------------------------------------------------------ 7. the done-when
def test_generate_points_the_regions_stack_at_its_profile(region):
    raw, _ = read_stack_file(region["config"])
    assert raw["ctfleet:profile"] == str(region["profile"]) and raw["ctfleet:demo"] is False
    # only the profile's region's stacks are written (item 6)
    written = sorted(p.name for p in region["stacks"].glob("Pulumi.*.yaml"))
    assert f"Pulumi.{STACK}.yaml" in written and "Pulumi.national.yaml" not in written
    assert "Pulumi.sdr-oriental.yaml" not in written and "Pulumi.sdl-sale.yaml" in written


def test_plan_declares_the_data_path_on_the_imported_fleet(region, planned):
    summary, objects, text = planned
    targets = summary["data_path"]["collector_targets"]
    assert targets["profile"] == str(region["profile"]) and targets["simulated"] is False
    assert targets["source"] == f"files in {region['fleet']} (ctfleet import)"
    assert targets["files"] == ["devices.csv", "sites.csv"]
    assert (targets["routers"], targets["servers"], targets["node_exporter_targets"]) == (N_CTS, N_CTS, N_CTS)
    fleet_cm = _obj(objects, "ConfigMap", "collector-fleet", MONITORING_NAMESPACE)
    for name in ("sites.csv", "devices.csv"):  # the validated files, byte for byte as `ctfleet import` wrote them
        assert fleet_cm["data"][name] == (region["fleet"] / name).read_text(encoding="utf-8")
    digest = fleet_cm["metadata"]["annotations"]["ctfleet.ma/fleet-sha256"]
    assert digest == targets["sha256"]
    dep = _obj(objects, "Deployment", "collector", MONITORING_NAMESPACE)
    assert dep["spec"]["template"]["metadata"]["annotations"]["ctfleet.ma/fleet-sha256"] == digest
    profile = _yaml(fleet_cm["data"]["profile.yaml"])
    assert profile["region"] == REGION and profile["fleet"] == {"source": "files", "dir": "/etc/ctfleet-fleet"}
    assert not re.search(r"\b127\.\d+\.\d+\.\d+", text)  # no loopback address anywhere in the manifests
    for _, _, _, _, _, address, _, _ in region["devices"]:
        assert address in fleet_cm["data"]["devices.csv"]
    shown = [p["how"] for p in summary["data_path"]["pieces"] if p["what"] == "collector targets"][0]
    assert str(region["fleet"]) in shown and digest[:16] in shown and f"{N_CTS} routers, {N_CTS} servers" in shown
    assert not any("SIMULATED" in n for n in summary["notes"])

    # the PostgreSQL store: a one-pod StatefulSet on a declared (protected) claim
    db = _obj(objects, "StatefulSet", "results-db", RESULTS_NAMESPACE)
    volumes = db["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "results-db-data"}} in volumes
    assert db["spec"]["replicas"] == 1
    _obj(objects, "PersistentVolumeClaim", "results-db-data", RESULTS_NAMESPACE)
    env = {e["name"]: e.get("valueFrom", e.get("value")) for e in db["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POSTGRES_PASSWORD"] == {"secretKeyRef": {"name": "results-db", "key": "password"}}
    # the results service, its TLS and users from Secrets, and its endpoint
    svc = _obj(objects, "Deployment", "results", RESULTS_NAMESPACE)
    pod = svc["spec"]["template"]["spec"]
    assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"results-tls", "results-web-config"}
    cfg = _yaml(_obj(objects, "ConfigMap", "results", RESULTS_NAMESPACE)["data"]["results-service.yml"])
    assert cfg["database"] == "postgresql://ctfleet@results-db.ctfleet-results.svc:5432/results"
    assert cfg["database_password"] == "env:CTFLEET_RESULTS_DB_PASSWORD" and "password" not in cfg["database"].split("@")[0]
    ing = _obj(objects, "Ingress", "results", RESULTS_NAMESPACE)
    assert ing["spec"]["tls"] == [{"hosts": [f"results.{STACK}.ctfleet.ma"], "secretName": "results-tls"}]
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/v1/batches"
    # remote_write, Alertmanager, Grafana
    prom = _yaml(_obj(objects, "ConfigMap", "prometheus", MONITORING_NAMESPACE)["data"]["prometheus.yml"])
    assert prom["remote_write"][0]["url"] == "https://metrics.national.ctfleet.ma/api/v1/write"
    for name in ("alertmanager", "grafana"):
        _obj(objects, "Deployment", name, MONITORING_NAMESPACE)
    # every object valid against the Kubernetes schema; the policies pass (exit 0 above)
    from ctfleet.stacks.schema import validator

    v = validator()
    assert {(o["kind"], o["metadata"]["name"]): v.errors(o) for o in objects if v.errors(o)} == {}
    assert all(not found for found in summary["policies"].values())
    assert len(objects) > 300


def test_a_new_import_rolls_the_collector(region, inputs, tmp_path):
    """Another fleet: another hash on the ConfigMap and the pod template; nothing else of the collector changes."""
    from ctfleet.stacks.readout import load_plan
    from ctfleet.stacks.manifests import render

    before = load_plan(inputs, STACK, region["config"])
    work = tmp_path
    sites, devices = _rows(inputs, n=N_CTS + 1)
    book = fleet_workbook(work / "parc-04b.xlsx", sites, devices)
    fleet = work / "fleet-04b"
    r = _cli("import", str(book), "--into", str(fleet), profile=region["profile"])
    assert r.returncode == 0, r.stdout + r.stderr
    profile = work / "sdr-04b.yaml"
    profile.write_text(f"region: '04'\nfleet: {{source: files, dir: {fleet}}}\n", encoding="utf-8")
    config = work / f"Pulumi.{STACK}.yaml"
    config.write_text(region["config"].read_text(encoding="utf-8").replace(str(region["profile"]), str(profile)), encoding="utf-8")
    after = load_plan(inputs, STACK, config)
    dep = {p: next(o for o in render(plan) if o["kind"] == "Deployment" and o["metadata"]["name"] == "collector")
           for p, plan in (("before", before), ("after", after))}
    a, b = (dep[k]["spec"]["template"]["metadata"]["annotations"] for k in ("before", "after"))
    assert a["ctfleet.ma/fleet-sha256"] != b["ctfleet.ma/fleet-sha256"]
    assert a["ctfleet.ma/config-hash"] == b["ctfleet.ma/config-hash"]  # collector.yaml is the same
    assert after.datapath.fleet.routers == N_CTS + 1


# ------------------------------------------------------------------ 1. refusals
def _plan_error(inputs, raw: dict) -> str:
    from ctfleet.core.errors import CtfleetError

    with pytest.raises(CtfleetError) as exc:
        plan_for(inputs, STACK, raw)
    return str(exc.value)


def test_the_generated_fleet_is_refused_unless_the_stack_is_a_demo(inputs, region, tmp_path):
    committed, _ = read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{STACK}.yaml")
    assert committed["ctfleet:demo"] is True  # the committed stacks are demonstrations (the repository's generated fleet)
    raw = {k: v for k, v in committed.items() if k != "ctfleet:demo"}
    assert _plan_error(inputs, raw) == (
        "1 problem in the stack config, no resource declared:\n"
        f"  infra/stacks/Pulumi.{STACK}.yaml: ctfleet:profile: is not set: the collector would poll the generated (simulated) "
        "fleet, not the region's equipment (valid: ctfleet:profile: a regional profile (region: NN, fleet: {source: files, "
        "dir: DIR}) whose fleet `ctfleet import` wrote, or ctfleet:demo: true for a demonstration cluster)")
    generated = tmp_path / "generated-04.yaml"
    generated.write_text("region: '04'\nfleet: {source: generated, seed: 7}\n", encoding="utf-8")
    assert f"ctfleet:profile: {generated} points at the generated (simulated) fleet (fleet.source: generated), not the " \
           "region's equipment" in _plan_error(inputs, raw | {"ctfleet:profile": str(generated)})
    demo = plan_for(inputs, STACK, raw | {"ctfleet:profile": str(generated), "ctfleet:demo": True})
    assert demo.datapath.fleet.simulated and demo.datapath.fleet.seed == 7
    assert any(n.startswith("SIMULATED fleet") for n in demo.notes)
    from ctfleet.stacks.manifests import render

    cm = next(o for o in render(demo) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "collector-fleet")
    assert cm["metadata"]["annotations"]["ctfleet.ma/simulated"].startswith("true")
    assert _yaml(cm["data"]["profile.yaml"])["fleet"] == {"source": "generated", "seed": 7}

    other = tmp_path / "sdr-05.yaml"
    other.write_text(f"region: '05'\nfleet: {{source: files, dir: {region['fleet']}}}\n", encoding="utf-8")
    assert f"ctfleet:profile: {other} is the profile of region 05, but this stack deploys region 04 (valid: a profile with " \
           "region: \"04\")" in _plan_error(inputs, raw | {"ctfleet:profile": str(other)})
    assert "ctfleet:profile: nowhere.yaml: profile file not found" in _plan_error(inputs, raw | {"ctfleet:profile": "nowhere.yaml"})


def test_an_imported_fleet_with_loopback_addresses_is_refused(inputs, region, tmp_path):
    sites, devices = _rows(inputs, n=2, loopback=True)
    book = fleet_workbook(tmp_path / "lab.xlsx", sites, devices)
    fleet = tmp_path / "fleet-lab"
    assert _cli("import", str(book), "--into", str(fleet), profile=region["profile"]).returncode == 0
    profile = tmp_path / "lab.yaml"
    profile.write_text(f"region: '04'\nfleet: {{source: files, dir: {fleet}}}\n", encoding="utf-8")
    config = tmp_path / f"Pulumi.{STACK}.yaml"
    config.write_text(region["config"].read_text(encoding="utf-8").replace(str(region["profile"]), str(profile)), encoding="utf-8")
    r = _cli("stacks", "plan", STACK, "--config", str(config), profile=region["profile"])
    out = r.stdout + r.stderr
    assert r.returncode == 1 and "Traceback" not in out
    one_line = " ".join(out.split())
    assert f"ctfleet:profile: {fleet}/devices.csv: 4 of the region's devices have a loopback management address " \
           "(127.0.0.0/8), which the cluster cannot reach" in one_line
    assert re.search(rf"{re.escape(str(config))}:\d+: ctfleet:profile", one_line)  # the line of the key in the file


# ------------------------------------------------------------------ 3, 4. Prometheus: node_exporter, remote_write (promtool)
def _programme_kpis() -> dict:
    rules = ROOT / "monitors/rules"
    return programme_kpis(_yaml((rules / "kpi.rules.yml").read_text(encoding="utf-8")),
                          _yaml((rules / "hosting.rules.yml").read_text(encoding="utf-8")))


def test_regional_prometheus_config_passes_promtool(planned, tmp_path):
    _, objects, _ = planned
    data = _obj(objects, "ConfigMap", "prometheus", MONITORING_NAMESPACE)["data"]
    cfg = _yaml(data["prometheus.yml"])
    [node] = [j for j in cfg["scrape_configs"] if j["job_name"] == NODE_EXPORTER_JOB]
    assert node["http_sd_configs"][0]["url"] == f"http://collector.{MONITORING_NAMESPACE}.svc:9160{NODE_TARGETS_PATH}"
    assert cfg["global"]["external_labels"][REGION_EXTERNAL_LABEL] == REGION
    names = kpi_record_names(_programme_kpis())
    assert {"ctfleet:cts_meeting_norms:count_by_region", "ctfleet:cts_hosted:count", "ctfleet:mutualisations:total",
            "ctfleet:cts_hosted:count_by_region_tier"} <= set(names)
    assert not {"ctfleet:ct_hosted", "ctfleet:ct_tenant_present", "ctfleet:kube_namespace_active:by_tier"} & set(names), \
        "per-CT and per-namespace records stay in the region"
    [rw] = cfg["remote_write"]
    assert rw["write_relabel_configs"][0] == {"source_labels": ["__name__"], "action": "keep",
                                              "regex": "|".join(re.escape(n) for n in names)}
    # the hosted KPI's cluster side: this cluster's kube-state-metrics, only the two namespace series kept
    [ksm] = [j for j in cfg["scrape_configs"] if j["job_name"] == "kube-state-metrics"]
    assert ksm["static_configs"] == [{"targets": ["kube-state-metrics.kube-system.svc:8080"], "labels": {"cluster": STACK}}]
    assert ksm["metric_relabel_configs"][0]["regex"] == "kube_namespace_labels|kube_namespace_status_phase"
    egress = [r for pol in objects if pol["kind"] == "NetworkPolicy" and pol["metadata"]["namespace"] == MONITORING_NAMESPACE
              for r in pol["spec"].get("egress", [])]
    assert any(to.get("namespaceSelector") == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
               and r["ports"] == [{"protocol": "TCP", "port": 8080}] for r in egress for to in r["to"]), egress
    assert rw["basic_auth"] == {"username": STACK, "password_file": "/etc/prometheus-remote-write/password"}
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [f"alertmanager.{MONITORING_NAMESPACE}.svc:9093"]
    # the real promtool, on the files as the pod sees them (paths moved under tmp_path)
    for name, text in data.items():
        (tmp_path / name).write_text(text.replace("/etc/prometheus/", f"{tmp_path}/").replace(
            "/etc/prometheus-remote-write/", f"{tmp_path}/"), encoding="utf-8")
    (tmp_path / "password").write_text("x", encoding="utf-8")
    r = subprocess.run([_tool("promtool", "prometheus"), "check", "config", str(tmp_path / "prometheus.yml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout + r.stderr


# ------------------------------------------------------------------ 5. Alertmanager (amtool), Grafana (as data)
def test_regional_alertmanager_routes_the_region_and_passes_amtool(planned, tmp_path):
    _, objects, _ = planned
    text = _obj(objects, "ConfigMap", "alertmanager", MONITORING_NAMESPACE)["data"]["alertmanager.yml"]
    path = tmp_path / "alertmanager.yml"
    path.write_text(text, encoding="utf-8")
    amtool = _tool("amtool", "prometheus-alertmanager")
    r = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr

    def route(*labels: str) -> str:
        res = subprocess.run([amtool, "config", "routes", "test", "--config.file", str(path), *labels],
                             capture_output=True, text=True, timeout=60)
        return res.stdout.strip()

    assert route("alertname=CTUnreachable", f"region={REGION}", "ct=04.421.01.0") == f"noc-region-{REGION}"
    assert route("alertname=PlannedOutage", f"region={REGION}") == "noc-silent"
    cfg = _yaml(text)
    template = _yaml((ROOT / "monitors/alertmanager/alertmanager.yml").read_text(encoding="utf-8"))
    assert cfg["inhibit_rules"] == template["inhibit_rules"]
    assert [r["name"] for r in cfg["receivers"]] == ["noc-silent", f"noc-region-{REGION}"]


def test_grafana_is_provisioned_from_monitors(planned):
    _, objects, _ = planned
    dashboards = _obj(objects, "ConfigMap", "grafana-dashboards", MONITORING_NAMESPACE)["data"]
    assert sorted(dashboards) == ["ctfleet-ct.json", "ctfleet-region.json"]
    for name, text in dashboards.items():
        assert text == (ROOT / "monitors/dashboards" / name).read_text(encoding="utf-8")
        assert json.loads(text)["uid"]
    provider = _yaml(_obj(objects, "ConfigMap", "grafana-dashboard-provider", MONITORING_NAMESPACE)["data"]["ctfleet.yaml"])
    ds = _yaml(_obj(objects, "ConfigMap", "grafana", MONITORING_NAMESPACE)["data"]["ctfleet.yaml"])
    assert ds["datasources"][0]["url"] == f"http://prometheus.{MONITORING_NAMESPACE}.svc:9090"
    assert ds["datasources"][0]["type"] == "prometheus" and ds["datasources"][0]["isDefault"] is True
    for text in dashboards.values():  # panels read the dashboard's datasource variable: any Prometheus source, ours by default
        board = json.loads(text)
        uids = {p["datasource"]["uid"] for p in board["panels"] if isinstance(p.get("datasource"), dict) and "uid" in p["datasource"]}
        assert uids <= {"${datasource}", ds["datasources"][0]["uid"]}
        assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= next(
            v for v in board["templating"]["list"] if v["name"] == "datasource").items()
    dep = _obj(objects, "Deployment", "grafana", MONITORING_NAMESPACE)
    mounts = {m["name"]: m["mountPath"] for m in dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["dashboards"] == provider["providers"][0]["options"]["path"]
    assert mounts["dashboard-provider"] == "/etc/grafana/provisioning/dashboards"
    assert mounts["config"] == "/etc/grafana/provisioning/datasources"


# ------------------------------------------------------------------ 4. the national receiver
def test_national_stack_receives_remote_write_with_tls_and_auth(inputs, tmp_path):
    raw, _ = read_stack_file(ROOT / STACKS_DIR / "Pulumi.national.yaml")
    plan = plan_for(inputs, "national", raw)
    from ctfleet.stacks.manifests import render

    objects = render(plan)
    dep = _obj(objects, "Deployment", "prometheus", MONITORING_NAMESPACE)
    assert "--web.enable-remote-write-receiver" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    data = _obj(objects, "ConfigMap", "prometheus", MONITORING_NAMESPACE)["data"]
    national = _yaml(data["rules-national-kpi.yml"])
    assert national == national_rules(_programme_kpis())
    exprs = {r["record"]: r["expr"] for r in national["groups"][0]["rules"]}
    assert exprs["ctfleet:cts_hosted:count_by_region_tier"] == "sum by (region, tier) (ctfleet_region:cts_hosted:count_by_region_tier)"
    assert exprs["ctfleet:mutualisations:total"] == "sum (ctfleet_region:mutualisations:total)"
    assert "/etc/prometheus/rules-national-kpi.yml" in _yaml(data["prometheus.yml"])["rule_files"]
    (tmp_path / "national.yml").write_text(data["rules-national-kpi.yml"], encoding="utf-8")
    r = subprocess.run([_tool("promtool", "prometheus"), "check", "rules", str(tmp_path / "national.yml")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    ing = _obj(objects, "Ingress", "remote-write", MONITORING_NAMESPACE)
    assert ing["spec"]["tls"] == [{"hosts": ["metrics.national.ctfleet.ma"], "secretName": "remote-write-tls"}]
    assert ing["spec"]["rules"][0]["http"]["paths"] == [
        {"path": "/api/v1/write", "pathType": "Exact", "backend": {"service": {"name": "prometheus", "port": {"name": "http"}}}}]
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/auth-type"] == "basic"
    assert ann["nginx.ingress.kubernetes.io/auth-secret"] == "remote-write-users"
    from ctfleet.stacks.schema import validator

    assert validator().errors(ing) == []


# ------------------------------------------------------------------ 6. scope
def test_a_regional_profile_sees_only_its_stacks(region, inputs):
    r = _cli("stacks", "list", "--json", profile=region["profile"])
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    from ctfleet.stacks.scope import stack_region

    expected = sorted(n for n, ref in inputs.stacks.items() if stack_region(ref, inputs.registry) == REGION)
    assert sorted(row["stack"] for row in rows) == expected
    assert STACK in expected and "sdl-rabat" in expected and "sdl-sale" in expected and "national" not in expected
    assert len(expected) < len(inputs.stacks) == 27
    r = _cli("stacks", "plan", "national", profile=region["profile"])
    assert r.returncode == 1
    assert "stack name: national is the national stack; the profile limits ctfleet to region 04" in " ".join((r.stdout + r.stderr).split())
    r = _cli("stacks", "plan", "sdr-oriental", profile=region["profile"])
    assert r.returncode == 1 and "sdr-oriental is region 02's stack" in " ".join((r.stdout + r.stderr).split())


# ------------------------------------------------------------------ the program itself, under Pulumi mocks
def test_the_program_declares_the_data_path_under_mocks(inputs, region):
    from ctfleet.lab.pulumi_mocks import run_stack, with_kubeconfig
    from ctfleet.stacks.manifests import render, sort_key
    from ctfleet.stacks.program import main

    raw, _ = read_stack_file(region["config"])
    cap = run_stack(STACK, with_kubeconfig(raw), lambda: main(inputs))
    assert sorted(cap.manifests, key=sort_key) == render(plan_for(inputs, STACK, raw))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in cap.manifests}
    assert {("StatefulSet", "results-db"), ("Ingress", "results"), ("ConfigMap", "collector-fleet"),
            ("Deployment", "alertmanager"), ("Deployment", "grafana"), ("Deployment", "results")} <= kinds
    types = {r.type for r in cap.registrations}
    assert {"kubernetes:apps/v1:StatefulSet", "kubernetes:networking.k8s.io/v1:Ingress"} <= types


# ------------------------------------------------------------------ the documented steps, as shown
def _readme_block(lang: str, after: str) -> str:
    """The first ``lang`` code block of infra/README.md after the line containing ``after``."""
    text = (ROOT / "infra/README.md").read_text(encoding="utf-8")
    rest = text[text.index(after):]
    start = rest.index(f"```{lang}\n") + len(lang) + 4
    return "\n".join(line.strip() for line in rest[start:rest.index("```", start)].splitlines())


def test_the_regions_documented_steps_run_as_shown(inputs, tmp_path):
    """infra/README.md's steps for a region, run line by line in a scratch copy of the project (CTFLEET_ROOT),
    so `stacks generate` writes the scratch project's infra/stacks, not the repository's."""
    import os

    heading = "### A region points the path at its own equipment"
    profile_text = _readme_block("yaml", heading)
    commands = [c for c in _readme_block("sh", heading).splitlines() if c]
    assert [c.split()[3:5][-1] if c.split()[3] == "stacks" else c.split()[3] for c in commands] == ["import", "generate", "plan"] and len(commands) == 3
    scratch = tmp_path / "project"
    for d in ("inventory", "standards", "monitors", "infra"):
        shutil.copytree(ROOT / d, scratch / d)
    shutil.copy(ROOT / "ctfleet.yaml", scratch / "ctfleet.yaml")
    (scratch / "sdr-04.yaml").write_text(profile_text + "\n", encoding="utf-8")
    sites, devices = _rows(inputs)
    fleet_workbook(scratch / "parc-04.xlsx", sites, devices)
    env = dict(os.environ, CTFLEET_ROOT=str(scratch), COLUMNS="250",
               PATH=f"{Path(shutil.which('python') or '').parent}:{ROOT / '.venv/bin'}:{os.environ.get('PATH', '')}")
    outputs = []
    for command in commands:
        r = subprocess.run(["bash", "-c", command], cwd=scratch, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{command}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        outputs.append(r.stdout)
    raw, _ = read_stack_file(scratch / STACKS_DIR / f"Pulumi.{STACK}.yaml")
    assert raw["ctfleet:profile"] == "sdr-04.yaml" and raw["ctfleet:demo"] is False
    assert not (scratch / STACKS_DIR / "Pulumi.national.yaml").read_text(encoding="utf-8").count("ctfleet:profile")
    plan = outputs[2]
    for piece in ("Data path", "collector targets", "fleet-04", "results store", "results endpoint", "remote_write",
                  "Alertmanager", "Grafana", "node_exporter"):
        assert piece in plan, piece
    assert "SIMULATED" not in plan and not re.search(r"\b127\.\d+\.\d+\.\d+", plan)
    r = subprocess.run(["bash", "-c", commands[2] + " --json"], cwd=scratch, env=env, capture_output=True, text=True, timeout=300)
    targets = json.loads(r.stdout)["data_path"]["collector_targets"]
    assert targets["source"] == "files in fleet-04 (ctfleet import)" and targets["profile"] == "sdr-04.yaml"
    assert (targets["routers"], targets["servers"], targets["node_exporter_targets"]) == (N_CTS, N_CTS, N_CTS)
    # the repository's own stack files were not touched
    committed, _ = read_stack_file(ROOT / STACKS_DIR / f"Pulumi.{STACK}.yaml")
    assert "ctfleet:profile" not in committed
