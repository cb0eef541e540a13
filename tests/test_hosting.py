"""Hosted and mutualised: the stacks' declared tenants, checked against kube-state-metrics
series in a real Prometheus evaluating the project's rules (monitors/rules/hosting.rules.yml)."""

from __future__ import annotations

import time

from collections import Counter

import pytest
from prometheus_client import CollectorRegistry

from conftest import ROOT
from ctfleet.core.hosting import declared_tenants, hosting_units
from ctfleet.lab.kube_state import Namespace, ksm_scrape_configs, serve_kube_state, simulated_clusters
from ctfleet.lab.procs.prometheus import Prometheus, prometheus_config
from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot
from ctfleet.monitors.http import serve

REGION = "07"  # Marrakech-Safi: SDR tenants, a grouping (ECI-AL-HAOUZ-OURIKA) and an SDL (Marrakech)


def test_declared_tenants_are_what_the_stacks_plan():
    """The core's declaration (read by the exporter) equals the stacks' plans, for every stack."""
    from ctfleet.stacks.generate import default_config
    from ctfleet.stacks.config import validate_config
    from ctfleet.stacks.plan import plan_stack
    from ctfleet.stacks.program import load_inputs

    inputs = load_inputs()
    planned, units = set(), set()
    for name, ref in inputs.stacks.items():
        cfg = validate_config(default_config(ref), name, inputs.registry, name)
        for t in plan_stack(ref, cfg, inputs.registry, inputs.norms, inputs.hosting, {}).tenants:
            if t.kind in ("ct", "grouping"):
                planned |= {(m, ref.tier, t.namespace) for m in t.members}
            if ref.tier in ("eci", "sdl"):
                units.add((ref.tier, t.namespace, t.members))
    declared = {(t.ct, t.tier, t.namespace) for t in declared_tenants(inputs.registry)}
    assert declared == planned and len(declared) == len(inputs.registry.cts)  # one home per CT
    assert {(u.tier, u.namespace, u.members) for u in hosting_units(inputs.registry)} == units


@pytest.fixture(scope="module")
def fed(tmp_path_factory):
    """Region 07's exporter and two simulated kube-state-metrics (SDR and SDL clusters) on
    loopback, scraped by a real Prometheus with the project's rules."""
    from ctfleet.project import load_project

    p = load_project(root=ROOT, with_fleet=False)
    registry = p.national.scoped(REGION)
    clusters = simulated_clusters(registry, seed=3, absent=0.1, terminating=0.05)
    # Make sure each case is there: the grouping present, the SDL absent, one tenant
    # present without ctfleet's tier label (someone else's namespace of the same name).
    unit = {u.tier: u for u in hosting_units(registry)}
    assert set(unit) == {"eci", "sdl"}
    sdr = [n for n in clusters["sdr"] if n.name != unit["eci"].namespace] + [Namespace(unit["eci"].namespace, "eci")]
    victim = next(n for n in sdr if n.tier == "sdr" and n.phase == "Active" and n.name.startswith("ct-"))
    sdr = [n if n is not victim else Namespace(victim.name, None) for n in sdr]
    clusters = {"sdr": sdr, "sdl": [n for n in clusters["sdl"] if n.tier != "sdl"]}
    exporter = CtfleetCollector(build_snapshot(registry, p.norms, None))
    reg = CollectorRegistry()
    reg.register(exporter)
    servers = []
    httpd, _ = serve(reg, "127.0.0.1", 0, version=exporter.version)  # rendered once, as the collector serves it
    servers.append(httpd)
    addrs = {}
    for name, namespaces in clusters.items():
        srv, addrs[name] = serve_kube_state(namespaces)
        servers.append(srv)
    cfg = prometheus_config(f"127.0.0.1:{httpd.server_address[1]}", sorted(str(f) for f in (ROOT / "monitors/rules").glob("*.yml")),
                            scrape_interval="2s")
    cfg["scrape_configs"] += ksm_scrape_configs(addrs, "2s")
    prom = Prometheus(tmp_path_factory.mktemp("prom-hosting"), cfg).start()
    try:
        prom.wait_for('ctfleet:mutualisations:total and on() count(up{job="kube-state-metrics"} == 1) == 2', 60)
        prom.wait_for("ctfleet:cts_hosted:count and on() ctfleet:cts:count", 30)
        yield registry, clusters, prom
    finally:
        prom.stop()
        for srv in servers:
            srv.shutdown()
            srv.server_close()


def _by(prom, query, *labels):
    return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1]) for r in prom.query(query)}


def _eventually(check, timeout: float = 45.0) -> None:
    """Run ``check`` until it passes: a recording rule may have been evaluated between the two
    kube-state-metrics scrapes (the fixture waits for both targets, not for the next evaluation)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def test_hosted_counts_only_declared_tenants_present_and_active(fed):
    _eventually(lambda: _check_hosted(fed))


def _check_hosted(fed):
    registry, clusters, prom = fed
    present = {(n.name, n.tier) for ns in clusters.values() for n in ns if n.phase == "Active" and n.tier}
    declared = declared_tenants(registry)
    want = Counter((REGION, t.tier) for t in declared if (t.namespace, t.tier) in present)
    want_declared = Counter((REGION, t.tier) for t in declared)
    got = _by(prom, "ctfleet:cts_hosted:count_by_region_tier", "region", "tier")
    assert got == {k: float(want.get(k, 0)) for k in want_declared}
    assert _by(prom, "ctfleet:cts_hosting_declared:count_by_region_tier", "region", "tier") == {k: float(v) for k, v in want_declared.items()}
    # the cases are really there: some SDR tenants missing, the SDL absent, the grouping present
    assert 0 < got[(REGION, "sdr")] < want_declared[(REGION, "sdr")]
    assert got[(REGION, "sdl")] == 0 and got[(REGION, "eci")] == want_declared[(REGION, "eci")]
    # a CT is hosted only when its declared tenant is present
    hosted = sum((t.namespace, t.tier) in present for t in declared)
    assert _by(prom, "ctfleet:cts_hosted:count_by_region", "region") == {(REGION,): float(hosted)}
    assert _by(prom, "ctfleet:cts_hosted:count", "region") == {("",): float(hosted)}
    assert 0 < hosted < len(registry.cts)


def test_mutualisations_count_groupings_and_sdls_actually_present(fed):
    _eventually(lambda: _check_mutualisations(fed))


def _check_mutualisations(fed):
    registry, _, prom = fed
    assert _by(prom, "ctfleet:mutualisations_declared:count_by_region_tier", "tier") == {("eci",): 1.0, ("sdl",): 1.0}
    assert _by(prom, "ctfleet:mutualisations:count_by_region_tier", "tier") == {("eci",): 1.0, ("sdl",): 0.0}
    assert _by(prom, "ctfleet:mutualisations:total") == {(): 1.0}


def test_simulated_series_say_so(fed):
    _, _, prom = fed
    meta = prom.api("metadata", metric="kube_namespace_labels")
    assert "simulated" in meta["kube_namespace_labels"][0]["help"]
    assert {r["metric"]["simulated"] for r in prom.query('up{job="kube-state-metrics"}')} == {"true"}


def test_monthly_snapshot_records_hosting_from_a_real_prometheus(fed, tmp_path, monkeypatch):
    """`ctfleet report snapshot` reads the KPIs (hosted and mutualisations included) from the
    real Prometheus and writes this month's file once."""
    import json

    from typer.testing import CliRunner

    from ctfleet.cli.main import app

    registry, clusters, prom = fed
    monkeypatch.setenv("CTFLEET_ROOT", str(ROOT))
    args = ["report", "snapshot", "--prometheus", prom.url, "--history", str(tmp_path / "kpi")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    (path,) = (tmp_path / "kpi").glob("*.json")
    snap = json.loads(path.read_text(encoding="utf-8"))
    nat = snap["national"]
    present = {(n.name, n.tier) for ns in clusters.values() for n in ns if n.phase == "Active" and n.tier}
    assert nat["cts"] == len(registry.cts) and nat["cts_not_assessed"] == len(registry.cts)  # no sweep, no audit
    assert nat["cts_hosted"] == sum((t.namespace, t.tier) in present for t in declared_tenants(registry))
    assert (nat["mutualisations"], nat["mutualisations_declared"]) == (1, 2)
    assert [row["region"] for row in snap["region"]] == [REGION]
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "already recorded" in again.output
