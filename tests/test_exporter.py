"""The exporter's metrics: names pass promtool, values follow the sweep and the norms."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import bcrypt
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ctfleet.core.compliance import compliance
from ctfleet.core.evaluate import ct_compliance, expected_pairs, registry_results
from ctfleet.core.models import Role
from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot
from ctfleet.monitors.http import WebConfig, serve
from ctfleet.monitors.sweep import DevicePoll, Interface, Probe, Sweep

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def region12():
    """Region 12 (Dakhla-Oued Ed-Dahab) of the generated fleet: small and complete."""
    from conftest import ROOT
    from ctfleet.project import load_project

    p = load_project(root=ROOT)
    return p.national.scoped("12"), p.norms


def a_sweep(registry, vsat_rtt=0.65):
    polls, probes = {}, {}
    routers = [d for d in registry.devices.values() if d.role == Role.ROUTER]
    for i, d in enumerate(sorted(routers, key=lambda d: d.hostname)):
        if i == 0:
            polls[d.hostname] = DevicePoll(d.hostname, ok=False, error="timeout", detail="no answer in 2 s")
            probes[d.hostname] = Probe(d.hostname, sent=5, rtts=())
            continue
        site = registry.sites[d.site_code]
        up = Interface(1, "Dialer0", True, i % 7 != 3, int(site.uplink.bandwidth_mbps), 10_000 * i, 20_000 * i, alias="UPLINK")
        polls[d.hostname] = DevicePoll(d.hostname, ok=True, version="v3-authpriv" if d.snmp_version == "v3" else "v2c",
                                       sys_name=d.hostname, sys_descr="sim", uptime_seconds=1000.0, interfaces=(up,), uplink_index=1)
        rtt = vsat_rtt if site.uplink.type.value == "vsat" else 0.02
        probes[d.hostname] = Probe(d.hostname, sent=5, rtts=(rtt,) * 5)
    return Sweep(started=T0, ended=T0 + timedelta(seconds=3), interval_seconds=60, polls=polls, probes=probes, shard="region-12")


def sample(reg, name, **labels):
    return reg.get_sample_value(name, labels)


def test_fast_compliance_equals_reference(region12):
    registry, norms = region12
    results = list(registry_results(registry, norms, T0))
    for ct in registry.cts.values():
        mine = [r for r in results if r.ct == ct.code]
        assert ct_compliance(ct, registry, norms, mine) == compliance(expected_pairs(ct, registry, norms), mine)


def test_metrics_follow_sweep_and_norms(region12):
    registry, norms = region12
    sweep = a_sweep(registry)
    reg = CollectorRegistry()
    reg.register(CtfleetCollector(build_snapshot(registry, norms, sweep, sweeps_total=3, now=T0 + timedelta(seconds=5))))
    dead = sorted(h for h, p in sweep.polls.items() if not p.ok)[0]
    dev = registry.devices[dead]
    ct = registry.cts[registry.sites[dev.site_code].ct_code]
    lv = dict(ct=ct.code, region=ct.region_code, province=ct.province_code or "", segment=ct.segment.value, lot=str(ct.lot),
              link=registry.sites[dev.site_code].uplink.type.value)
    assert sample(reg, "ctfleet_ct_connected", **lv) == 0
    assert sample(reg, "ctfleet_device_up", **lv, device=dead, role="router", platform=dev.platform.value) == 0
    assert sample(reg, "ctfleet_device_poll_error_info", **lv, device=dead, role="router", platform=dev.platform.value, reason="timeout") == 1
    assert sample(reg, "ctfleet_ct_norm_rtt_max_seconds", **lv) == norms.value(ct, "LNK-2") / 1000
    assert sample(reg, "ctfleet_sweeps_total", shard="region-12") == 3
    assert sample(reg, "ctfleet_sweep_devices", shard="region-12", result="failed") == 1
    # Totals per status add up to the applicable pairs of each CT.
    covs = []
    for ct in registry.cts.values():
        lv = dict(ct=ct.code, region=ct.region_code, province=ct.province_code or "", segment=ct.segment.value, lot=str(ct.lot),
                  link=registry.sites_of(ct.code)[0].uplink.type.value)
        total = sum(sample(reg, "ctfleet_ct_controls", **lv, status=s) for s in ("pass", "fail", "unknown", "waived"))
        assert total == len(expected_pairs(ct, registry, norms))
        cov = sample(reg, "ctfleet_ct_coverage_ratio", **lv)
        assert 0 <= cov < 1  # collectors see some controls, never all: coverage must show it
        covs.append(cov)
    assert max(covs) > 0


def test_vsat_latency_judged_against_segment_norm(region12):
    registry, norms = region12
    vsat = [d for d in registry.devices.values() if d.role == Role.ROUTER and registry.sites[d.site_code].uplink.type.value == "vsat"]
    assert vsat, "the generated region 12 should have satellite sites"
    from ctfleet.monitors.sweep import sweep_results

    for rtt, want in ((0.65, "pass"), (0.95, "fail")):
        results = [r for r in sweep_results(a_sweep(registry, vsat_rtt=rtt), registry, norms) if r.control == "LNK-2"]
        vsat_cts = {registry.sites[d.site_code].ct_code for d in vsat}
        got = {r.status.value for r in results if r.ct in vsat_cts and norms.value(registry.cts[r.ct], "LNK-2") >= 800}
        assert got == {want}


def test_promtool_accepts_the_metrics(region12):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: run scripts/setup (Debian package prometheus)"
    registry, norms = region12
    reg = CollectorRegistry()
    reg.register(CtfleetCollector(build_snapshot(registry, norms, a_sweep(registry))))
    run = subprocess.run([promtool, "check", "metrics"], input=generate_latest(reg), capture_output=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == b"" and run.stderr.strip() == b"", "promtool reported lint problems"


def test_basic_auth_from_web_config(region12):
    registry, norms = region12
    reg = CollectorRegistry()
    reg.register(CtfleetCollector(build_snapshot(registry, norms, None)))
    cfg = WebConfig(basic_auth_users={"prometheus": bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=4)).decode()})
    httpd, _ = serve(reg, "127.0.0.1", 0, cfg)
    url = f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(url, timeout=10)
        assert exc.value.code == 401
        req = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"prometheus:scrape-pw").decode()})
        body = urllib.request.urlopen(req, timeout=10).read().decode()
        assert "ctfleet_ct_info{" in body
        bad = urllib.request.Request(url, headers={"Authorization": "Basic " + base64.b64encode(b"prometheus:wrong").decode()})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(bad, timeout=10)
    finally:
        httpd.shutdown()
        httpd.server_close()
