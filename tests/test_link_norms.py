"""Link norms resolve for (segment, link type): each site is judged against its medium."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from conftest import edit
from ctfleet.core.errors import InputError, InputErrors
from ctfleet.core.models import LinkType, Role, Segment
from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot
from ctfleet.monitors.sweep import DevicePoll, Interface, Probe, Sweep, sweep_results
from ctfleet.project import load_project

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def test_layers_in_order_with_provenance(registry_only, root):
    norms = registry_only.norms
    mid = norms.resolve_for(Segment.COMMUNE_15K_50K, 2)  # no link known: the segment's value
    assert mid["LNK-2"].value == 150 and mid["LNK-2"].layer == "segment commune_15k_50k"
    vsat = norms.resolve_for(Segment.COMMUNE_15K_50K, 2, link=LinkType.VSAT)
    assert vsat["LNK-2"].value == 800 and vsat["LNK-2"].layer == "link vsat"
    assert vsat["LNK-1"].value == 2 and vsat["EQP-1"].value == mid["EQP-1"].value  # only link controls move
    fibre = norms.resolve_for(Segment.COMMUNE_UNDER_15K, 3, link=LinkType.FIBRE)
    assert fibre["LNK-2"].value == 50 and fibre["LNK-3"].value == 0.5
    council_adsl = norms.resolve_for(Segment.COUNCIL, 1, link=LinkType.ADSL)
    assert council_adsl["LNK-1"].value == 20 and council_adsl["LNK-1"].layer == "segment council, link adsl"
    assert norms.resolve_for(Segment.COUNCIL, 1, link=LinkType.FIBRE)["LNK-1"].value == 50
    assert [x.name for x in norms.layers_for(Segment.COUNCIL, 1, link=LinkType.ADSL)] == [
        "baseline", "lot-1", "segment council", "link adsl", "segment council, link adsl"]
    for r in (vsat["LNK-2"], council_adsl["LNK-1"], fibre["LNK-3"]):  # file:line points at the value
        path, line = r.source.rsplit(":", 1)
        assert r.control.id in (root / path).read_text(encoding="utf-8").splitlines()[int(line) - 1]


def _sweep(registry, routers: dict[str, float]) -> Sweep:
    polls, probes = {}, {}
    for hostname, rtt in routers.items():
        d = registry.devices[hostname]
        site = registry.sites[d.site_code]
        up = Interface(1, "Dialer0", True, True, int(site.uplink.bandwidth_mbps), 1, 2, alias="UPLINK")
        polls[hostname] = DevicePoll(hostname, ok=True, version="v3-authpriv", sys_name=hostname, sys_descr="sim",
                                     uptime_seconds=1.0, interfaces=(up,), uplink_index=1)
        probes[hostname] = Probe(hostname, sent=5, rtts=(rtt,) * 5)
    return Sweep(started=T0, ended=T0 + timedelta(seconds=2), polls=polls, probes=probes)


def _router_of(p, segment: Segment, link: LinkType):
    for ct in p.registry.cts.values():
        sites = p.registry.sites_of(ct.code)
        if ct.segment == segment and sites and sites[0].uplink.type == link:
            return ct, next(d for d in p.registry.devices_of(ct.code) if d.role == Role.ROUTER)
    raise AssertionError(f"the generated fleet has no {link.value} site in a {segment.value} commune")


def test_vsat_site_judged_against_the_satellite_value_and_fibre_against_the_tighter_one(project):
    """The sweep judges a VSAT site in a 15,000-50,000 commune against 800 ms (not the
    segment's 150), and a fibre site in a small commune against 50 ms (not 800)."""
    p = project
    vsat_ct, vsat_router = _router_of(p, Segment.COMMUNE_15K_50K, LinkType.VSAT)
    fibre_ct, fibre_router = _router_of(p, Segment.COMMUNE_UNDER_15K, LinkType.FIBRE)
    results = {(r.ct, r.control): r for r in sweep_results(_sweep(p.registry, {vsat_router.hostname: 0.62, fibre_router.hostname: 0.12}),
                                                           p.registry, p.norms)}
    vsat = results[(vsat_ct.code, "LNK-2")]
    assert (vsat.status.value, vsat.expected, vsat.observed) == ("pass", 800, 620.0)
    fibre = results[(fibre_ct.code, "LNK-2")]
    assert (fibre.status.value, fibre.expected) == ("fail", 50)
    # The exporter serves the same norm for each, with the link label.
    reg = CollectorRegistry()
    reg.register(CtfleetCollector(build_snapshot(p.registry.scoped(vsat_ct.region_code), p.norms, None, now=T0)))
    lv = dict(ct=vsat_ct.code, region=vsat_ct.region_code, province=vsat_ct.province_code or "", segment=vsat_ct.segment.value,
              lot=str(vsat_ct.lot), link="vsat")
    assert reg.get_sample_value("ctfleet_ct_norm_rtt_max_seconds", lv) == 0.8
    assert reg.get_sample_value("ctfleet_ct_norm_loss_max_ratio", lv) == 0.05


def test_norms_show_names_the_link_layer(project, monkeypatch, root):
    from ctfleet.cli.main import app

    ct, _ = _router_of(project, Segment.COMMUNE_15K_50K, LinkType.VSAT)
    monkeypatch.setenv("CTFLEET_ROOT", str(root))
    r = CliRunner().invoke(app, ["norms", "show", ct.code, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["LNK-2"]["value"] == 800 and data["LNK-2"]["layer"] == "link vsat"
    assert data["LNK-2"]["source"].startswith("standards/norms/links/vsat.yaml:")
    r = CliRunner().invoke(app, ["norms", "show", ct.code], env={"COLUMNS": "250"})
    assert r.exit_code == 0 and "link vsat" in r.output and "standards/norms/links/vsat.yaml:" in r.output
    r = CliRunner().invoke(app, ["norms", "show", "commune_under_15k", "--link", "vsat"], env={"COLUMNS": "250"})  # the README's
    assert r.exit_code == 0 and "standards/norms/links/vsat.yaml:" in r.output and "link vsat" in r.output
    r = CliRunner().invoke(app, ["norms", "show", "council", "--link", "adsl", "--json"])
    assert json.loads(r.output)["LNK-1"]["layer"] == "segment council, link adsl"
    r = CliRunner().invoke(app, ["norms", "show", "council", "--link", "satellite"])
    assert r.exit_code != 0 and "unknown link type 'satellite'" in r.output and "vsat" in r.output


@pytest.mark.parametrize("path, old, new, want", [
    ("standards/norms/links/vsat.yaml", "LNK-3: 5", "SYS-1: false", "SYS-1 is not a connectivity control"),
    ("standards/norms/links/vsat.yaml", "LNK-2: 800", "LNK-2: slow", "expected a number (ms), got 'slow'"),
    ("standards/norms/segments/council.yaml", "  adsl:", "  dsl:", "links.dsl"),
    ("standards/norms/segments/council.yaml", "LNK-1: 20", "EQP-1: 3", "EQP-1 is not a connectivity control"),
    ("standards/norms/lots/lot-3.yaml", "values:", "links: {vsat: {values: {LNK-2: 900}}}\nvalues:", "only read in a segment file"),
])
def test_bad_link_layers_name_file_and_line(data_copy, path, old, new, want):
    edit(data_copy / path, old, new)
    with pytest.raises((InputError, InputErrors)) as e:
        load_project(root=data_copy, with_fleet=False)
    text = str(e.value)
    assert want in text and path in text, text


def test_unknown_link_file(data_copy):
    (data_copy / "standards/norms/links/satellite.yaml").write_text("values:\n  LNK-2: 900\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_project(root=data_copy, with_fleet=False)
    assert "unknown link type 'satellite'" in str(e.value) and "vsat" in str(e.value)
