"""The site's uplink interface, declared in the regional spreadsheet (optional column
``uplink_interface``), through the importer to the registry and the collector's target."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctfleet.core.errors import InputErrors
from ctfleet.core.models import Link, LinkType
from ctfleet.importer import import_files, load_fleet_dir

HEADER = "site_code,ct_code,name,uplink_type,uplink_mbps,backup_type,backup_mbps,uplink_interface"


@pytest.fixture(scope="module")
def registry(registry_only):
    return registry_only.national


def _sites(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "sites.csv"
    path.write_text("\n".join((HEADER,) + rows) + "\n", encoding="utf-8")
    return path


def test_declared_uplink_interfaces_are_imported_and_read_back(tmp_path, registry):
    path = _sites(tmp_path,
                  "S-01-511-01-01,01.511.01.01,Hôtel de la commune,adsl,8,4g,20,name:Dialer0",
                  "S-01-511-01-01-annexe,01.511.01.01,Annexe,4g,10,,,index:3",
                  "S-01-511,01.511,Siège du conseil,fibre,50,,,description:^(WAN|UPLINK)\\b",
                  "S-01-511-01-01-b,01.511.01.01,Bibliothèque,fibre,20,,,")
    out = tmp_path / "fleet"
    import_files([path], registry, out)
    written = (out / "sites.csv").read_text(encoding="utf-8").splitlines()
    assert written[0] == HEADER  # the optional column is written because a site uses it
    sites, _ = load_fleet_dir(out, registry)
    got = {s.code: s.uplink.interface for s in sites}
    assert got == {"S-01-511-01-01": "name:Dialer0", "S-01-511-01-01-annexe": "index:3",
                   "S-01-511": "description:^(WAN|UPLINK)\\b", "S-01-511-01-01-b": None}


def test_bad_uplink_interface_names_file_row_and_the_valid_forms(tmp_path, registry):
    path = _sites(tmp_path,
                  "S-01-511-01-01,01.511.01.01,Hôtel,adsl,8,,,Gi0/0/0",
                  "S-01-511,01.511,Siège,fibre,50,,,description:(unclosed",
                  "S-01-511-01-01-annexe,01.511.01.01,Annexe,4g,10,,,index:zero")
    out = tmp_path / "fleet"
    with pytest.raises(InputErrors) as exc:
        import_files([path], registry, out)
    assert not out.exists()
    text = [str(p) for p in exc.value.problems]
    forms = "index:N (ifIndex), name:NAME (ifName or ifDescr) or description:REGEX (searched in ifAlias)"
    assert text == [
        f"{path}:2: column 'uplink_interface': 'Gi0/0/0' is not index:, name: or description: followed by a value (valid: {forms})",
        f"{path}:3: column 'uplink_interface': 'description:(unclosed': not a regular expression "
        f"(missing ), unterminated subpattern at position 0) (valid: {forms})",
        f"{path}:4: column 'uplink_interface': 'index:zero': ifIndex must be a whole number 1..2147483647 (valid: {forms})",
    ]


def test_the_model_refuses_a_bad_reference_too():
    assert Link(type=LinkType.FIBRE, bandwidth_mbps=10, interface="index:2").interface == "index:2"
    with pytest.raises(ValueError, match="valid: index:N"):
        Link(type=LinkType.FIBRE, bandwidth_mbps=10, interface="eth0")


def test_collector_targets_carry_the_routers_declared_uplink(project):
    from ctfleet.monitors.collector import Collector, CollectorConfig
    from ctfleet.monitors.poller import SnmpCreds

    reg = project.registry
    router = next(d for d in reg.devices.values() if d.role.value == "router" and d.snmp_version != "none")
    site = reg.sites[router.site_code]
    declared = site.model_copy(update={"uplink": site.uplink.model_copy(update={"interface": "name:Dialer0"})})
    sites = [declared if s.code == site.code else s for s in reg.sites.values()]
    saved = (list(reg.sites.values()), list(reg.devices.values()))
    reg.attach_fleet(sites, saved[1], reg.fleet_label)
    try:
        c = Collector(CollectorConfig(shard="all"), reg, project.norms,
                      credentials=lambda d: SnmpCreds("v2c", community="c"), address=lambda d: ("127.0.0.1", 1))
        targets, _failed = c._targets()
        by_host = {t.hostname: t for t in targets}
        assert by_host[router.hostname].uplink == "name:Dialer0"
        others = [d.hostname for d in reg.devices_of_site(site.code) if d.role.value != "router" and d.hostname in by_host]
        assert all(by_host[h].uplink is None for h in others)  # a server's interfaces are not the site's uplink
    finally:
        reg.attach_fleet(*saved, reg.fleet_label)
