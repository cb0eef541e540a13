"""The main job end to end on a small region: simulated agents, collector, real Prometheus
with the project's rules, KPIs read back over the HTTP API — and they match the sweep."""

from __future__ import annotations

import io

from rich.console import Console

from conftest import ROOT
from ctfleet.core.models import Role
from ctfleet.lab.monitoring_demo import DemoOptions, run
from ctfleet.monitors.sweep import connected
from ctfleet.project import load_project


def test_demo_region_kpis_match_the_sweep(tmp_path):
    p = load_project(root=ROOT)
    buf = io.StringIO()
    out = Console(file=buf, width=200)
    result = run(p, DemoOptions(workdir=tmp_path / "demo", region="12", sweeps=1, interval=10.0, port=1161), out)
    sweep, registry = result["last_sweep"], result["registry"]
    kpis = result["kpis"]
    assert kpis["national"]["cts"] == len(registry.cts) == 16
    expected_connected = sum(
        1 for ct in registry.cts.values()
        if any(connected(sweep.polls.get(d.hostname)) for d in registry.devices_of(ct.code) if d.role == Role.ROUTER))
    assert kpis["national"]["cts_connected"] == expected_connected
    assert 0 < expected_connected < 16  # the simulated region has dead or cut-off sites
    by_lot = {r["lot"]: r for r in kpis["lot"]}
    assert sum(r["cts"] for r in by_lot.values()) == 16
    assert sum(r["cts_connected"] for r in by_lot.values()) == expected_connected
    # Satellite sites show satellite round trips through the emulated link.
    vsat = [d.hostname for d in registry.devices.values()
            if d.role == Role.ROUTER and registry.sites[d.site_code].uplink.type.value == "vsat"]
    rtts = [sweep.probes[h].rtt_mean for h in vsat if h in sweep.probes and sweep.probes[h].rtt_mean]
    assert rtts and min(rtts) > 0.45
    text = buf.getvalue()
    assert "Programme KPIs by lot (read back from Prometheus)" in text
    assert "simulated audit results" in text and "labelled as such" in text
    # Three outcomes that add up, and never more CTs meeting their norms than connected.
    for by in ("lot", "region"):
        for r in kpis[by] + [kpis["national"]]:
            assert r["cts_meeting_norms"] + r["cts_failing"] + r["cts_not_assessed"] == r["cts"], (by, r)
            assert r["cts_meeting_norms"] <= r["cts_connected"], (by, r)
    nat = kpis["national"]
    assert nat["cts_meeting_norms"] > 0 and nat["cts_failing"] > 0 and nat["cts_not_assessed"] > 0, nat
    for col in ("meeting norms", "failing", "not assessed", "with waivers", "equipped", "hosted"):
        assert col in text
    # Equipped from the (simulated, labelled) inventories: some CTs are, some are not.
    assert 0 < nat["cts_equipped"] < nat["cts"], nat
    assert "simulated device inventories" in text
    # Hosted from the (simulated, labelled) clusters: some declared tenants are absent.
    assert 0 < nat["cts_hosted"] < nat["cts"], nat
    assert "mutualisations réalisées" in text and "clusters simulated" in text
