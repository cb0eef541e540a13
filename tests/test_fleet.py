"""The deterministic demo fleet: counts, shares of deliberate failures, addresses, determinism."""

from __future__ import annotations

import ipaddress
import time
from collections import Counter

import pytest

from ctfleet.core.fleet import generate
from ctfleet.core.models import TERRESTRIAL, Level, LinkType, Platform, Role, Segment, Tier

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@pytest.fixture(scope="module")
def base(registry_only):
    """The national registry and norms, without a fleet (conftest loads it once)."""
    return registry_only


@pytest.fixture(scope="module")
def fleet(base):
    return generate(base.national, base.norms, seed=2014)


def test_same_seed_same_fleet_other_seed_other_fleet(base, fleet):
    again = generate(base.national, base.norms, seed=2014)
    assert again == fleet
    other = generate(base.national, base.norms, seed=7)
    assert other != fleet
    assert [s.code for s in other[0]] == [s.code for s in fleet[0]]  # same sites, other draws


def test_one_generated_site_per_ct(base, fleet):
    sites, _ = fleet
    assert sorted(s.ct_code for s in sites) == sorted(base.national.cts)
    assert len({s.code for s in sites}) == len(sites) == 1590
    assert all(s.generated for s in sites)
    by_ct = {s.ct_code: s for s in sites}
    assert by_ct["01.511.01.01"].code == "S-01-511-01-01"
    assert by_ct["01.511.01.01"].name == "Hôtel de la commune d'Assilah"
    assert by_ct["01.511"].name == "Siège du conseil préfectoral de Tanger-Assilah"
    assert by_ct["01"].name == "Siège du conseil de la région Tanger-Tétouan-Al Hoceima"


def test_fifteen_percent_of_communes_without_terrestrial_link(base, fleet):
    sites, _ = fleet
    cts = base.national.cts
    communes = [s for s in sites if cts[s.ct_code].level == Level.COMMUNE]
    isolated = [s for s in communes if s.uplink.type not in TERRESTRIAL]
    assert len(communes) == 1503
    assert len(isolated) == round(0.15 * 1503) == 225
    kinds = Counter(s.uplink.type for s in isolated)
    assert kinds == {LinkType.VSAT: 203, LinkType.NONE: 22}
    # small communes that are not a chef-lieu first (VSAT is what their norm accepts)
    small_rural = [s for s in isolated if cts[s.ct_code].segment == Segment.COMMUNE_UNDER_15K and not cts[s.ct_code].is_seat]
    assert len(small_rural) >= 0.95 * len(isolated)
    assert all(s.uplink.bandwidth_mbps == 0 and s.backup is None for s in isolated if s.uplink.type == LinkType.NONE)
    assert all(cts[s.ct_code].level == Level.COMMUNE for s in sites if s.uplink.type not in TERRESTRIAL)


def test_links_mostly_meet_the_norms(base, fleet):
    sites, _ = fleet
    norms, cts = base.norms, base.national.cts
    linked = [s for s in sites if s.uplink.type != LinkType.NONE]
    below = [s for s in linked if s.uplink.bandwidth_mbps < norms.value(cts[s.ct_code], "LNK-1")]
    assert len(below) == round(0.08 * len(linked))
    terrestrial = [s for s in sites if s.uplink.type in TERRESTRIAL]
    assert all(s.uplink.type.value in norms.value(cts[s.ct_code], "LNK-5") for s in terrestrial)
    big = [s for s in sites if cts[s.ct_code].segment in (Segment.REGION, Segment.COMMUNE_250K_PLUS, Segment.COMMUNE_ARRONDISSEMENTS)]
    assert {s.uplink.type for s in big} == {LinkType.FIBRE}
    needs_backup = [s for s in sites if norms.value(cts[s.ct_code], "LNK-4")]
    missing = [s for s in needs_backup if s.backup is None]
    assert 0 < len(missing) <= 0.15 * len(needs_backup)


def test_devices_per_site(base, fleet):
    sites, devices = fleet
    cts = base.national.cts
    by_site: dict[str, Counter] = {s.code: Counter() for s in sites}
    for d in devices:
        by_site[d.site_code][d.role] += 1
    ct_of = {s.code: cts[s.ct_code] for s in sites}
    assert all(c[Role.ROUTER] == 1 for c in by_site.values())
    for code, counts in by_site.items():
        ct = ct_of[code]
        if Tier.OWN in ct.tiers:
            assert counts[Role.SERVER] >= 1, code
        else:
            assert counts[Role.SERVER] == 0, code
        if ct.level in (Level.REGION, Level.COUNCIL):
            assert counts[Role.SERVER] == 2, code


def test_workstations_follow_eqp1(base, fleet):
    sites, devices = fleet
    norms, cts = base.norms, base.national.cts
    required = {s.code: norms.value(cts[s.ct_code], "EQP-1") for s in sites}
    have = Counter(d.site_code for d in devices if d.role == Role.WORKSTATION)
    short = [code for code in required if have[code] < required[code]]
    assert len(short) == round(0.06 * 1590)
    assert all(required[c] - 3 <= have[c] <= required[c] for c in required)
    total, expected = sum(have.values()), sum(required.values())
    assert 0.97 * expected <= total <= expected
    versions = Counter(d.os_version for d in devices if d.role == Role.WORKSTATION)
    assert versions.most_common(1)[0][0] == "windows-11"
    assert 0 < versions["windows-10"] < 0.05 * total
    assert set(versions) <= {"windows-10", "windows-11", "debian-12", "ubuntu-24.04", "ubuntu-22.04"}


def test_router_platforms_and_snmp(fleet):
    _, devices = fleet
    routers = [d for d in devices if d.role == Role.ROUTER]
    platforms = Counter(d.platform for d in routers)
    assert platforms.most_common(1)[0][0] == Platform.CISCO_IOS
    assert set(platforms) == {Platform.CISCO_IOS, Platform.FRR, Platform.MIKROTIK}
    snmp = Counter(d.snmp_version for d in routers)
    assert snmp["v2c"] == round(0.07 * len(routers)) and snmp["v3"] == len(routers) - snmp["v2c"]


def test_hostnames_unique_and_stable(fleet):
    _, devices = fleet
    names = [d.hostname for d in devices]
    assert len(set(names)) == len(names)
    by_name = {d.hostname: d for d in devices}
    assert by_name["r-01-511-01-01"].site_code == "S-01-511-01-01"
    assert "srv1-01" in by_name and "srv2-01" in by_name and "ws001-01" in by_name and "ws060-01" in by_name


def test_addresses_loopback_only_unique_and_dense(fleet):
    _, devices = fleet
    addresses = [d.mgmt_address for d in devices]
    assert all(a is not None and a in LOOPBACK for a in addresses)
    assert len(set(addresses)) == len(addresses)
    assert not any(int(a) & 0xFF in (0, 255) for a in addresses)
    routers = [d.mgmt_address for d in devices if d.role == Role.ROUTER]
    assert routers[0] == ipaddress.ip_address("127.20.0.1")
    assert all(a in ipaddress.ip_network("127.20.0.0/16") for a in routers)
    assert int(max(routers)) - int(min(routers)) < len(routers) * 256 / 254 + 1  # dense block
    assert all(d.mgmt_address in ipaddress.ip_network("127.21.0.0/16") for d in devices if d.role == Role.SERVER)
    assert all(d.mgmt_address in ipaddress.ip_network("127.24.0.0/14") for d in devices if d.role == Role.WORKSTATION)


def test_credentials_are_references_per_region(base, fleet):
    sites, devices = fleet
    region = {s.code: base.national.cts[s.ct_code].region_code for s in sites}
    for d in devices:
        kind = "SNMP" if d.role == Role.ROUTER else "SSH"
        assert d.credentials == f"env:CTFLEET_{kind}_{region[d.site_code]}"
        assert d.credentials.scheme == "env"


def test_whole_nation_is_fast(base):
    # CPU time of this thread, not wall time: the bound holds on a machine loaded by others.
    start = time.thread_time()
    sites, devices = generate(base.national, base.norms, seed=1)
    elapsed = time.thread_time() - start
    assert len(devices) > 20_000
    assert elapsed < 2.0, f"generate took {elapsed:.2f}s of CPU"  # ~0.25s measured


def test_profile_default_attaches_the_generated_fleet(project):
    p = project  # conftest: the real project with its default profile
    assert len(p.registry.sites) == 1590
    assert p.registry.fleet_label.startswith("generated (seed 2014)")
    assert [d.role for d in p.registry.devices_of("01.511.01.01")][0] == Role.ROUTER
