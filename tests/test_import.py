"""The spreadsheet import: real CSV and XLSX files in tmp_path, exact error texts."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import openpyxl
import pytest

from ctfleet.core.errors import InputError, InputErrors
from ctfleet.core.models import LinkType, Platform, Role
from ctfleet.core.fleet import generate
from ctfleet.importer import (
    DEVICE_COLUMNS,
    SITE_COLUMNS,
    import_files,
    load_fleet_dir,
    read_table,
    validate_fleet,
    write_fleet_dir,
)

GOOD = Path(__file__).parent / "fixtures" / "import" / "good"

SITE = dict(site_code="S-01-511-01-01", ct_code="01.511.01.01", name="Hôtel de la commune d'Assilah",
            uplink_type="adsl", uplink_mbps="8", backup_type="", backup_mbps="")
ROUTER = dict(hostname="r-01-511-01-01", site_code="S-01-511-01-01", role="router", platform="cisco_ios",
              os_version="ios-15.9", mgmt_address="10.4.0.1", credentials_ref="env:CTFLEET_SNMP_01", snmp_version="v3")


@pytest.fixture(scope="module")
def registry(registry_only):
    return registry_only.national


def write_csv(path: Path, header: list[str], rows: list[dict | list]) -> Path:
    lines = [",".join(header)]
    for r in rows:
        lines.append(",".join(r[c] for c in header) if isinstance(r, dict) else ",".join(r))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def sites_csv(tmp_path: Path, *rows: dict, name: str = "sites.csv") -> Path:
    return write_csv(tmp_path / name, SITE_COLUMNS, [SITE | r for r in rows])


def devices_csv(tmp_path: Path, *rows: dict, name: str = "devices.csv") -> Path:
    return write_csv(tmp_path / name, DEVICE_COLUMNS, [ROUTER | r for r in rows])


def problems_of(paths: list[Path], registry, out_dir: Path) -> list[str]:
    with pytest.raises(InputErrors) as exc:
        import_files(paths, registry, out_dir)
    assert not out_dir.exists(), "nothing may be written when the input has a problem"
    return [str(p) for p in exc.value.problems]


# ---------------------------------------------------------------- happy paths
def test_csv_import_writes_normalised_files(tmp_path, registry):
    out = tmp_path / "fleet"
    summary = import_files([GOOD / "sites.csv", GOOD / "devices.csv"], registry, out)
    assert summary["written"] is True
    assert summary["sites"] == {"imported": 3, "added": 3, "updated": 0, "total": 3}
    assert summary["devices"] == {"imported": 5, "added": 5, "updated": 0, "total": 5}
    assert (out / "sites.csv").read_text(encoding="utf-8").splitlines() == [
        "site_code,ct_code,name,uplink_type,uplink_mbps,backup_type,backup_mbps",
        "S-01-511,01.511,Siège du conseil préfectoral de Tanger-Assilah,fibre,50,adsl,8",
        "S-01-511-01-01,01.511.01.01,Hôtel de la commune d'Assilah,adsl,8,4g,20",
        'S-01-511-01-01-annexe,01.511.01.01,"Annexe administrative d\'Assilah, quartier Rmel",4g,10,,',
    ]
    devices = (out / "devices.csv").read_text(encoding="utf-8").splitlines()
    assert devices[1] == "r-01-511,S-01-511,router,frr,frr-9.1,10.4.1.1,vault:/srv/ctfleet/vault.yml#snmp_01,v3"  # case folded
    assert devices[3] == "srv1-01-511-01-01,S-01-511-01-01,server,debian,debian-12,10.4.0.10,env:CTFLEET_SSH_01,none"

    sites, devs = load_fleet_dir(out, registry)
    by_code = {s.code: s for s in sites}
    assert by_code["S-01-511-01-01"].backup.type == LinkType.MOBILE_4G
    assert by_code["S-01-511-01-01-annexe"].backup is None
    assert {d.hostname: d.role for d in devs}["ws001-01-511-01-01"] == Role.WORKSTATION
    assert not any(s.generated for s in sites)


def test_dry_run_validates_and_writes_nothing(tmp_path, registry):
    summary = import_files([GOOD / "sites.csv", GOOD / "devices.csv"], registry, tmp_path / "fleet", dry_run=True)
    assert summary["written"] is False and summary["devices"]["added"] == 5
    assert not (tmp_path / "fleet").exists()


def test_reimport_updates_and_merges(tmp_path, registry):
    out = tmp_path / "fleet"
    import_files([GOOD / "sites.csv", GOOD / "devices.csv"], registry, out)
    # a later file with only devices: names a site already in the fleet, changes one device, adds one
    later = devices_csv(tmp_path, {"os_version": "ios-17.9"}, {"hostname": "ws002-01-511-01-01", "role": "workstation",
                                                            "platform": "debian", "mgmt_address": "", "snmp_version": ""})
    summary = import_files([later], registry, out)
    assert summary["devices"] == {"imported": 2, "added": 1, "updated": 1, "total": 6}
    assert summary["sites"]["total"] == 3
    _, devs = load_fleet_dir(out, registry)
    assert {d.hostname: d.os_version for d in devs}["r-01-511-01-01"] == "ios-17.9"


def test_xlsx_workbook_with_both_sheets(tmp_path, registry):
    wb = openpyxl.Workbook()
    readme = wb.active
    readme.title = "Instructions"
    readme.append(["Fill the sites and devices sheets"])
    sites = wb.create_sheet("Sites")
    sites.append([c.upper() for c in SITE_COLUMNS])  # header case does not matter
    sites.append(["S-01", "01", "Siège du conseil de la région Tanger-Tétouan-Al Hoceima", "fibre", 100, "4g", 20.0])
    sites.append([None] * 7)  # blank rows are skipped
    sites.append(["S-01-511-01-01", "01.511.01.01", "Hôtel de la commune d'Assilah", "vsat", 2.5, None, None])
    devices = wb.create_sheet("devices")
    devices.append(DEVICE_COLUMNS)
    devices.append(["r-01", "S-01", "router", "mikrotik_routeros", "routeros-7.14", "10.1.0.1", "env:CTFLEET_SNMP_01", "v2c"])
    devices.append(["ws001-01", "S-01", "workstation", "windows", "windows-10", None, None, None])
    path = tmp_path / "fleet-01.xlsx"
    wb.save(path)

    summary = import_files([path], registry, tmp_path / "fleet")
    assert summary["sites"]["added"] == 2 and summary["devices"]["added"] == 2
    sites_out, devs = load_fleet_dir(tmp_path / "fleet", registry)
    by_code = {s.code: s for s in sites_out}
    assert by_code["S-01"].uplink.bandwidth_mbps == 100 and by_code["S-01"].backup.bandwidth_mbps == 20
    assert by_code["S-01-511-01-01"].uplink.bandwidth_mbps == 2.5
    router = {d.hostname: d for d in devs}["r-01"]
    assert router.platform == Platform.MIKROTIK and router.snmp_version == "v2c"
    assert "S-01-511-01-01,01.511.01.01,Hôtel de la commune d'Assilah,vsat,2.5,," in (tmp_path / "fleet" / "sites.csv").read_text(encoding="utf-8")


def test_xlsx_rows_are_numbered_as_in_the_sheet(tmp_path, registry):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "sites"
    ws.append(SITE_COLUMNS)
    ws.append(list(SITE.values()))
    ws.append([None] * 7)
    ws.append(list((SITE | {"site_code": "S-01-511-01-01-b", "uplink_mbps": "fast"}).values()))
    ws.append(list((SITE | {"site_code": "S-01-511-01-01-c"}).values()) + [None, "note"])
    path = tmp_path / "sites.xlsx"
    wb.save(path)
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}[sites]:5: row has values right of the last column (backup_mbps) (valid: values only under the header's columns)",
    ]
    ws.delete_rows(5)
    wb.save(path)
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}[sites]:4: column 'uplink_mbps': 'fast' is not a number (valid: a number of Mbit/s >= 0 with a dot for decimals, e.g. 20 or 2.5)",
    ]


def test_read_table_detects_kind_from_header(tmp_path):
    assert read_table(GOOD / "sites.csv")[0] == "sites"  # with a BOM
    kind, rows = read_table(GOOD / "devices.csv")
    assert kind == "devices" and rows[0].line == 2 and rows[0].get("hostname") == "r-01-511-01-01"


# ---------------------------------------------------------------- one bad value each
def test_unknown_ct_code(tmp_path, registry):
    path = sites_csv(tmp_path, {"site_code": "S-01-999-01-01", "ct_code": "01.999.01.01"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'ct_code': unknown CT code '01.999.01.01' "
        "(valid: an HCP code such as 01 (region), 01.511 (province), 01.511.01.0 (commune))",
    ]


def test_site_code_must_belong_to_its_ct(tmp_path, registry):
    path = sites_csv(tmp_path, {"site_code": "S-01-511-01-0"}, {"site_code": "site 1"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'site_code': site code 'S-01-511-01-0' does not belong to CT 01.511.01.01 "
        "(valid: S-01-511-01-01 or S-01-511-01-01-<suffix>)",
        f"{path}:3: column 'site_code': 'site 1' is not a site code "
        "(valid: S- and the CT code with dashes, e.g. S-01-511-01-01 or S-01-511-01-01-annexe)",
    ]


def test_duplicate_site_code(tmp_path, registry):
    path = sites_csv(tmp_path, {}, {"name": "Annexe"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:3: column 'site_code': duplicate site code 'S-01-511-01-01' (first at row 2)",
    ]


def test_unknown_platform(tmp_path, registry):
    path = devices_csv(tmp_path, {"platform": "junos"})
    assert problems_of([sites_csv(tmp_path, {}), path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'platform': unknown platform 'junos' "
        "(valid: one of debian, ubuntu, windows, cisco_ios, frr, mikrotik_routeros, huawei_vrp)",
    ]


def test_platform_not_allowed_for_role(tmp_path, registry):
    path = devices_csv(tmp_path, {"platform": "windows"})
    assert problems_of([sites_csv(tmp_path, {}), path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'platform': platform 'windows' is not allowed for a router "
        "(valid: one of cisco_ios, frr, huawei_vrp, mikrotik_routeros)",
    ]


def test_bad_ip_address(tmp_path, registry):
    path = devices_csv(tmp_path, {"mgmt_address": "10.4.0.300"})
    assert problems_of([sites_csv(tmp_path, {}), path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'mgmt_address': '10.4.0.300' is not an IP address (valid: an IPv4 or IPv6 address, e.g. 10.4.0.1)",
    ]


@pytest.mark.parametrize("secret", ["Hunter2!Secret", "env:s3cr3t-P@ss", "file:relative/s3cr3t"])
def test_bad_credentials_ref_is_never_echoed(tmp_path, registry, secret):
    path = devices_csv(tmp_path, {"credentials_ref": secret})
    problems = problems_of([sites_csv(tmp_path, {}), path], registry, tmp_path / "fleet")
    assert len(problems) == 1
    assert secret not in problems[0] and "s3cr3t" not in problems[0]
    assert problems[0].startswith(f"{path}:2: column 'credentials_ref': ")
    assert problems[0].endswith("(valid: env:NAME, file:/absolute/path (outside the repository), vault:FILE#key)")


def test_bad_credentials_ref_exact_text(tmp_path, registry):
    path = devices_csv(tmp_path, {"credentials_ref": "hunter2"})
    assert problems_of([sites_csv(tmp_path, {}), path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'credentials_ref': value is not a credentials reference (not shown, it may be a secret) "
        "(valid: env:NAME, file:/absolute/path (outside the repository), vault:FILE#key)",
    ]


def test_missing_column(tmp_path, registry):
    header = [c for c in SITE_COLUMNS if c != "uplink_mbps"]
    path = write_csv(tmp_path / "sites.csv", header, [SITE])
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:1: missing column(s) uplink_mbps of a sites table "
        "(valid: columns site_code, ct_code, name, uplink_type, uplink_mbps, backup_type, backup_mbps)",
    ]


def test_unknown_column(tmp_path, registry):
    path = write_csv(tmp_path / "sites.csv", SITE_COLUMNS + ["backup_mpbs"], [list(SITE.values()) + ["4"]])
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:1: unknown column(s) 'backup_mpbs' in a sites table "
        "(valid: columns site_code, ct_code, name, uplink_type, uplink_mbps, backup_type, backup_mbps)",
    ]


def test_bandwidth_not_a_number(tmp_path, registry):
    path = sites_csv(tmp_path, {"uplink_mbps": "8 Mb"}, {"site_code": "S-01-511-01-01-b", "uplink_mbps": "-1"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'uplink_mbps': '8 Mb' is not a number (valid: a number of Mbit/s >= 0 with a dot for decimals, e.g. 20 or 2.5)",
        f"{path}:3: column 'uplink_mbps': -1 is negative (valid: a number of Mbit/s >= 0)",
    ]


def test_half_a_backup_link(tmp_path, registry):
    path = sites_csv(tmp_path, {"backup_type": "4g"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'backup_mbps': backup_type is given but backup_mbps is empty "
        "(valid: a number of Mbit/s >= 0, e.g. 20 or 2.5)",
    ]


def test_unknown_uplink_type(tmp_path, registry):
    path = sites_csv(tmp_path, {"uplink_type": "dsl"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'uplink_type': unknown link type 'dsl' (valid: one of fibre, adsl, 4g, vsat, none)",
    ]


def test_unknown_site_for_a_device(tmp_path, registry):
    path = devices_csv(tmp_path, {"site_code": "S-01-511-01-02"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'site_code': unknown site 'S-01-511-01-02' "
        "(valid: a site_code of the sites table in this import or already in the fleet directory)",
    ]


def test_bad_hostname_role_and_snmp(tmp_path, registry):
    path = devices_csv(tmp_path, {"hostname": "r_01", "role": "switch", "snmp_version": "v4"})
    assert problems_of([sites_csv(tmp_path, {}), path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'hostname': 'r_01' is not a valid hostname "
        "(valid: letters, digits and '-', starting with a letter or digit, at most 63 characters)",
        f"{path}:2: column 'role': unknown role 'switch' (valid: one of router, server, workstation)",
        f"{path}:2: column 'snmp_version': unknown SNMP version 'v4' (valid: one of v3, v2c, v1, none)",
    ]


def test_duplicate_hostname_and_address(tmp_path, registry):
    path = devices_csv(tmp_path, {}, {"hostname": "R-01-511-01-01"}, {"hostname": "srv1-01-511-01-01", "role": "server", "platform": "debian"})
    assert problems_of([sites_csv(tmp_path, {}), path], registry, tmp_path / "fleet") == [
        f"{path}:3: column 'hostname': duplicate hostname 'r-01-511-01-01' (first at row 2)",
        f"{path}:4: column 'mgmt_address': address 10.4.0.1 is already used by r-01-511-01-01 (row 2)",
    ]


def test_malformed_csv_wrong_number_of_columns(tmp_path, registry):
    path = tmp_path / "sites.csv"
    good = ",".join(SITE.values())
    path.write_text(",".join(SITE_COLUMNS) + "\n" + good + "\n"
                    + "S-01-511-01-01-b,01.511.01.01,Annexe, quartier Rmel,adsl,8,,\n"  # unquoted comma in the name
                    + "S-01-511-01-01-c,01.511.01.01,Annexe,adsl\n", encoding="utf-8")
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:3: row has 8 values but the header has 7 columns (valid: one value per header column (quote values that contain commas))",
        f"{path}:4: row has 4 values but the header has 7 columns (valid: one value per header column (quote values that contain commas))",
    ]


def test_unclosed_quote(tmp_path, registry):
    path = tmp_path / "sites.csv"
    path.write_text(",".join(SITE_COLUMNS) + '\nS-01,01,"Siège,fibre,100,,\n', encoding="utf-8")
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: malformed CSV: unexpected end of data (valid: values separated by commas, quotes closed)",
    ]


def test_not_a_table_we_know(tmp_path, registry):
    path = write_csv(tmp_path / "people.csv", ["name", "phone"], [["Amina", "0600000000"]])
    other = tmp_path / "fleet.ods"
    other.write_bytes(b"")
    assert problems_of([path, other], registry, tmp_path / "fleet") == [
        f"{path}:1: cannot tell whether this is a sites or a devices table (valid: a sites header "
        "(site_code,ct_code,name,uplink_type,uplink_mbps,backup_type,backup_mbps) or a devices header "
        "(hostname,site_code,role,platform,os_version,mgmt_address,credentials_ref,snmp_version))",
        f"{other}: unsupported file type '.ods' (valid: .csv or .xlsx)",
    ]


# ---------------------------------------------------------------- all at once, nothing written
def test_all_problems_of_all_files_reported_at_once(tmp_path, registry):
    sites = sites_csv(tmp_path, {}, {"site_code": "S-01-999", "ct_code": "01.999"}, {"site_code": "S-01-511-01-01-b", "uplink_mbps": "x"})
    devices = devices_csv(tmp_path, {}, {"hostname": "srv1-01-511-01-01", "role": "server", "platform": "cisco_ios",
                                         "mgmt_address": "10.4.0.2", "credentials_ref": "p4ssw0rd"},
                          {"hostname": "ws001-x", "site_code": "S-nowhere", "role": "workstation", "platform": "windows",
                           "mgmt_address": "nope"})
    problems = problems_of([sites, devices], registry, tmp_path / "fleet")
    assert [p.split(": ", 2)[:2] for p in problems] == [
        [f"{sites}:3", "column 'ct_code'"],
        [f"{sites}:4", "column 'uplink_mbps'"],
        [f"{devices}:3", "column 'platform'"],
        [f"{devices}:3", "column 'credentials_ref'"],
        [f"{devices}:4", "column 'site_code'"],
        [f"{devices}:4", "column 'mgmt_address'"],
    ]
    assert not any("p4ssw0rd" in p for p in problems)


def test_one_bad_row_leaves_existing_fleet_untouched(tmp_path, registry):
    out = tmp_path / "fleet"
    import_files([GOOD / "sites.csv", GOOD / "devices.csv"], registry, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad = devices_csv(tmp_path, {"hostname": "ws009-01-511-01-01", "role": "workstation", "platform": "windows",
                                 "mgmt_address": ""},
                      {"hostname": "ws010-01-511-01-01", "role": "workstation", "platform": "windows", "mgmt_address": "",
                       "credentials_ref": "letmein"})
    with pytest.raises(InputErrors) as exc:
        import_files([bad], registry, out)
    assert len(exc.value.problems) == 1 and "nothing written" in str(exc.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temp files left either


def test_address_taken_by_a_device_already_in_the_fleet(tmp_path, registry):
    out = tmp_path / "fleet"
    import_files([GOOD / "sites.csv", GOOD / "devices.csv"], registry, out)
    path = devices_csv(tmp_path, {"hostname": "r-new", "mgmt_address": "10.4.1.1"})
    with pytest.raises(InputErrors) as exc:
        import_files([path], registry, out)
    assert [str(p) for p in exc.value.problems] == [
        f"{path}:2: column 'mgmt_address': address 10.4.1.1 is already used by r-01-511 (already in the fleet)",
    ]


# ---------------------------------------------------------------- the fleet directory
def test_load_fleet_dir_missing(tmp_path, registry):
    with pytest.raises(InputError) as exc:
        load_fleet_dir(tmp_path / "fleet-04", registry)
    assert str(exc.value) == f"{tmp_path / 'fleet-04'}: fleet directory not found; create it with `ctfleet import FILE --into {tmp_path / 'fleet-04'}`"
    (tmp_path / "fleet-04").mkdir()
    shutil.copy(GOOD / "sites.csv", tmp_path / "fleet-04" / "sites.csv")
    with pytest.raises(InputError) as exc:
        load_fleet_dir(tmp_path / "fleet-04", registry)
    assert str(exc.value) == f"{tmp_path / 'fleet-04' / 'devices.csv'}: file not found; create it with `ctfleet import FILE --into {tmp_path / 'fleet-04'}`"


def test_load_fleet_dir_validates(tmp_path, registry):
    d = tmp_path / "fleet"
    d.mkdir()
    sites_csv(d, {"ct_code": "99"})
    write_csv(d / "devices.csv", DEVICE_COLUMNS, [])
    with pytest.raises(InputErrors) as exc:
        load_fleet_dir(d, registry)
    assert [p.column for p in exc.value.problems] == ["ct_code"]


def test_validate_fleet_accepts_existing_sites(registry, tmp_path):
    sites, _ = validate_fleet(read_table(GOOD / "sites.csv")[1], [], registry)
    _, devices = validate_fleet([], read_table(GOOD / "devices.csv")[1], registry, existing_sites=sites)
    assert len(devices) == 5


def test_generated_fleet_round_trips_through_the_fleet_directory(tmp_path, registry_only):
    """The generator follows the import's rules: written out and read back, nothing changes."""
    sites, devices = generate(registry_only.national, registry_only.norms)
    write_fleet_dir(tmp_path, sites, devices)
    sites_back, devices_back = load_fleet_dir(tmp_path, registry_only.national)
    assert sites_back == sorted((s.model_copy(update={"generated": False}) for s in sites), key=lambda s: s.code)
    assert sorted(devices_back, key=lambda d: d.hostname) == sorted(devices, key=lambda d: d.hostname)


# ---------------------------------------------------------------- the fleet directory as one unit
def _fleet_text(d: Path) -> dict[str, str]:
    return {name: (d / name).read_text(encoding="utf-8") for name in ("sites.csv", "devices.csv")}


def test_into_an_existing_file_is_one_clear_error(tmp_path, registry, root):
    import os
    import subprocess
    import sys

    target = tmp_path / "fleet-04"
    target.write_text("not a directory\n")
    s, d = sites_csv(tmp_path, {}), devices_csv(tmp_path, {})
    with pytest.raises(InputErrors) as exc:
        import_files([s, d], registry, target)
    assert str(exc.value) == ("1 problem found, nothing written:\n"
                              f"  {target}: is a file, not a fleet directory "
                              "(valid: a directory (new or written by ctfleet import) holding sites.csv and devices.csv)")
    run = subprocess.run([sys.executable, "-m", "ctfleet.cli.main", "import", str(s), str(d), "--into", str(target)],
                         capture_output=True, text=True, cwd=root, env=dict(os.environ, COLUMNS="300"))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"error: {exc.value}"
    assert target.read_text() == "not a directory\n"


def test_import_switches_the_whole_directory_and_keeps_the_previous(tmp_path, registry):
    fleet = tmp_path / "fleet-04"
    import_files([sites_csv(tmp_path, {}), devices_csv(tmp_path, {})], registry, fleet)
    (fleet / "README.txt").write_text("kept by the team\n")
    first = _fleet_text(fleet)
    import_files([devices_csv(tmp_path, {"hostname": "r2-01-511-01-01", "mgmt_address": "10.4.0.2"})], registry, fleet)
    assert _fleet_text(tmp_path / ".fleet-04.previous") == first, "the previous version is kept beside it (a manual undo)"
    assert (fleet / "README.txt").read_text() == "kept by the team\n"
    assert "r2-01-511-01-01" in (fleet / "devices.csv").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".fleet-04")) == [".fleet-04.previous"]


class _InterruptAfter:
    """An audit hook that sends the process a real SIGINT at the ``n``-th file operation under ``under``:
    the signal's KeyboardInterrupt is raised before that operation, i.e. right after the previous one."""

    EVENTS = ("open", "os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir", "os.mkdir", "shutil.rmtree",
              "shutil.copyfile", "shutil.copystat", "tempfile.mkdtemp", "os.chmod", "ctfleet.dirswap.exchange")
    installed = None

    def __init__(self, under: Path):
        self.under, self.n, self.seen, self.ops = str(under), None, 0, []
        if _InterruptAfter.installed is None:  # audit hooks cannot be removed: install one, point it at the current test
            import sys

            sys.addaudithook(lambda event, args: _InterruptAfter.installed and _InterruptAfter.installed(event, args))
        _InterruptAfter.installed = self

    def __call__(self, event, args):
        if event not in self.EVENTS or not any(isinstance(a, (str, Path)) and str(a).startswith(self.under) for a in args):
            return
        if event == "open" and len(args) > 1 and args[1] in ("r", "rb", None) and not (len(args) > 2 and isinstance(args[2], int) and args[2] & 0o3):
            return  # reads change nothing
        self.seen += 1
        self.ops.append((event, str(args[0])))
        if self.n is not None and self.seen == self.n:
            signal.raise_signal(signal.SIGINT)

    def close(self):
        _InterruptAfter.installed = None


def test_sigint_after_each_file_operation_leaves_the_previous_fleet_intact(tmp_path, registry):
    """Ctrl-C at any point of an import: the fleet directory reads as the old fleet or the new one, never a mix,
    and the next import runs normally (the staging directory of the interrupted one is swept)."""
    base = tmp_path / "base"
    base.mkdir()
    fleet = tmp_path / "fleets" / "fleet-04"
    old_sites, old_devices = sites_csv(base, {}), devices_csv(base, {})
    import_files([old_sites, old_devices], registry, fleet)
    old = _fleet_text(fleet)
    saved = base / "saved-old-fleet"
    shutil.copytree(fleet, saved)
    new_inputs = [sites_csv(base, {"name": "Hôtel de ville (nouveau)"}, name="s2.csv"),
                  devices_csv(base, {"hostname": "r9-01-511-01-01", "mgmt_address": "10.4.0.9"}, name="d2.csv")]
    hook = _InterruptAfter(fleet.parent)
    # A CI runner may start the suite with SIGINT ignored (a background job of a non-interactive shell): Python then
    # leaves SIG_IGN in place and a raised SIGINT does nothing. Ctrl-C at a terminal has Python's handler; give it.
    previous_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        import_files(new_inputs, registry, fleet)  # counting run
        new = _fleet_text(fleet)
        assert new != old
        operations = hook.ops[:]
        print("file operations of one import:", *operations, sep="\n  ")
        assert len(operations) >= 6, operations  # mkdtemp, two writes, exchange, previous kept, ...
        for n in range(1, len(operations) + 1):
            shutil.rmtree(fleet)  # back to the old fleet (hook not armed)
            shutil.copytree(saved, fleet)
            assert _fleet_text(fleet) == old
            hook.n, hook.seen, hook.ops = n, 0, []
            try:
                import_files(new_inputs, registry, fleet)
                interrupted = False
            except KeyboardInterrupt:
                interrupted = True
            hook.n = None
            assert interrupted, f"no SIGINT at operation {n} {operations[n - 1]}"
            now = _fleet_text(fleet)
            assert now in (old, new), f"SIGINT before {operations[n - 1]} left a mixed fleet"
            sites, devices = load_fleet_dir(fleet, registry)  # still loads
            assert len(sites) == 1 and len(devices) in (1, 2)
        import_files(new_inputs, registry, fleet)
        assert _fleet_text(fleet) == new
        assert not list(fleet.parent.glob(".fleet-04.new-*")), "staging directories are removed"
    finally:
        hook.close()
        signal.signal(signal.SIGINT, previous_handler)


def test_full_disk_leaves_the_previous_fleet_intact(tmp_path, registry, project, root):
    """A small tmpfs: the first (small) import fits, the national one does not; the error names the directory
    and the previous fleet is still there and loads. The CLI shows the same error, no traceback."""
    import os
    import subprocess
    import sys

    big = tmp_path / "national"
    write_fleet_dir(big, list(project.registry.sites.values()), list(project.registry.devices.values()))
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True, text=True)
    assert mount.returncode == 0, f"mounting a small tmpfs needs root (CI runs as root): {mount.stderr}"
    try:
        fleet = mnt / "fleet-04"
        import_files([sites_csv(tmp_path, {}), devices_csv(tmp_path, {})], registry, fleet)
        old = _fleet_text(fleet)
        with pytest.raises(InputError) as exc:
            import_files([big / "sites.csv", big / "devices.csv"], registry, fleet)
        assert str(exc.value) == (f"{fleet}: cannot write the fleet (No space left on device); the previous fleet is unchanged "
                                  "(valid: free space or write access where the fleet directory lives)")
        assert _fleet_text(fleet) == old
        assert len(load_fleet_dir(fleet, registry)[0]) == 1
        assert sorted(p.name for p in mnt.iterdir()) == ["fleet-04"], "the staging directory is removed"
        run = subprocess.run([sys.executable, "-m", "ctfleet.cli.main", "import", str(big / "sites.csv"), str(big / "devices.csv"),
                              "--into", str(fleet)], capture_output=True, text=True, cwd=root, env=dict(os.environ, COLUMNS="300"))
        assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip() == f"error: {exc.value}"
        assert _fleet_text(fleet) == old
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_reader_never_sees_a_mix_while_imports_switch(tmp_path, registry):
    """Readers in a thread load the directory while imports alternate two fleets: each read is one or the other."""
    import threading

    fleet = tmp_path / "fleet-04"
    a = [sites_csv(tmp_path, {}, name="a-s.csv"), devices_csv(tmp_path, {}, name="a-d.csv")]
    b = [sites_csv(tmp_path, {"site_code": "S-01-511-01-01", "name": "B"}, name="b-s.csv"),
         devices_csv(tmp_path, {"hostname": "r-01-511-01-01", "os_version": "ios-b"}, name="b-d.csv")]
    import_files(a, registry, fleet)
    stop, seen, bad = threading.Event(), set(), []

    def read():
        while not stop.is_set():
            sites, devices = load_fleet_dir(fleet, registry)
            pair = (sites[0].name == "B", devices[0].os_version == "ios-b")
            seen.add(pair)
            if pair[0] != pair[1]:
                bad.append(pair)

    t = threading.Thread(target=read)
    t.start()
    try:
        for i in range(30):
            import_files(b if i % 2 == 0 else a, registry, fleet)
    finally:
        stop.set()
        t.join()
    assert not bad, f"{len(bad)} mixed reads"
    assert seen >= {(False, False)}


# ---------------------------------------------------------------- no silent wrong import (issue 14)
def _workbook(path: Path, sheets: dict[str, list[list]], hidden: tuple[str, ...] = ()) -> Path:
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in sheets.items():
        ws = wb.create_sheet(title)
        for r in rows:
            ws.append(r)
        if title in hidden:
            ws.sheet_state = "hidden"
    wb.save(path)
    return path


def test_two_sheets_for_one_table_are_refused(tmp_path, registry):
    """A hidden `sites ` sheet used to win over the visible `Sites` one (2 rows imported instead of 20)."""
    path = _workbook(tmp_path / "fleet.xlsx", {"Sites": [SITE_COLUMNS, list(SITE.values())],
                                               "sites ": [SITE_COLUMNS, list(SITE.values())]}, hidden=("sites ",))
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}: sheets 'Sites' and 'sites ' (hidden) both name the sites table "
        "(valid: one sheet named sites and one named devices; rename or delete the other)",
    ]


def test_a_hidden_sheet_is_not_imported_silently(tmp_path, registry):
    path = _workbook(tmp_path / "fleet.xlsx", {"Sites": [SITE_COLUMNS, list(SITE.values())],
                                               "devices": [DEVICE_COLUMNS, list(ROUTER.values())]}, hidden=("devices",))
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}: sheet 'devices' is hidden (valid: unhide the sheet to import it, or delete it)",
    ]


def test_a_date_in_a_text_column_is_refused(tmp_path, registry):
    import datetime

    row = list((SITE | {"name": datetime.datetime(2024, 12, 1)}).values())
    path = _workbook(tmp_path / "sites.xlsx", {"sites": [SITE_COLUMNS, row]})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}[sites]:2: column 'name': the cell holds a date (2024-12-01), not text "
        "(valid: format the column as Text before typing; a spreadsheet turns some text into dates)",
    ]


def test_a_formula_without_a_saved_value_is_named(tmp_path, registry):
    row = list((SITE | {"uplink_mbps": "=4*2"}).values())
    path = _workbook(tmp_path / "sites.xlsx", {"sites": [SITE_COLUMNS, row]})  # openpyxl saves no computed value
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}[sites]:2: column 'uplink_mbps': the cell is a formula (=4*2) with no saved value "
        "(valid: open and save the file in Excel or LibreOffice, or type the value)",
    ]


def test_a_code_typed_as_a_number_says_the_leading_zero_was_lost(tmp_path, registry):
    row = list((SITE | {"ct_code": 1.511}).values())
    path = _workbook(tmp_path / "sites.xlsx", {"sites": [SITE_COLUMNS, row]})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}[sites]:2: column 'ct_code': 1.511 is stored as a number, so a leading zero is lost "
        "(valid: format the column as Text and type the code, e.g. 01.511.01.01)",
    ]
    csv_path = sites_csv(tmp_path, {"ct_code": "1.511.01.01", "site_code": "S-1-511-01-01"})
    assert problems_of([csv_path], registry, tmp_path / "fleet")[0] == (
        f"{csv_path}:2: column 'ct_code': unknown CT code '1.511.01.01' (valid: did you mean '01.511.01.01'? "
        "A spreadsheet drops the leading zero of a code stored as a number)")


def test_a_stray_far_cell_and_styled_empty_rows_cost_nothing(tmp_path, registry):
    """A value at XFD1 plus 5,000 styled empty rows used to take 28 s and 726 MB for 20 data rows."""
    import time
    import tracemalloc

    from openpyxl.styles import PatternFill

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "sites"
    ws.append(SITE_COLUMNS)
    for i in range(20):
        ws.append(list((SITE | {"site_code": f"S-01-511-01-01-a{i}"}).values()))
    fill = PatternFill("solid", fgColor="FFFF00")
    for r in range(30, 5030):
        ws.cell(row=r, column=1).fill = fill
    ws["XFD1"] = "stray"
    path = tmp_path / "sites.xlsx"
    wb.save(path)
    tracemalloc.start()
    started = time.monotonic()
    problems = problems_of([path], registry, tmp_path / "fleet")
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert problems == [f"{path}[sites]:1: a value right of the header's last column, in column XFD ('stray') "
                        "(valid: nothing right of the header's columns)"]
    assert seconds < 5 and peak < 64 * 2**20, (seconds, peak)


def test_a_number_beyond_what_the_field_can_mean_is_refused(tmp_path, registry):
    """1e308 Mbit/s used to be written as a 309-digit integer."""
    path = sites_csv(tmp_path, {"uplink_mbps": "1e308"}, {"site_code": "S-01-511-01-01-b", "uplink_mbps": "-0"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:2: column 'uplink_mbps': 1e308 Mbit/s is out of range (valid: 0 to 100,000 Mbit/s)",
    ]


def test_an_ipv4_mapped_address_is_the_same_address(tmp_path, registry):
    s = sites_csv(tmp_path, {})
    d = devices_csv(tmp_path, {}, {"hostname": "r2-01-511-01-01", "mgmt_address": "::ffff:10.4.0.1"})
    assert problems_of([s, d], registry, tmp_path / "fleet") == [
        f"{d}:3: column 'mgmt_address': address 10.4.0.1 is already used by r-01-511-01-01 (row 2)",
    ]
    d = devices_csv(tmp_path, {"mgmt_address": "::ffff:10.4.0.1"})
    import_files([s, d], registry, tmp_path / "fleet")
    assert ",10.4.0.1," in (tmp_path / "fleet" / "devices.csv").read_text()


def test_a_semicolon_separated_csv_is_read(tmp_path, registry):
    """French Excel saves 'CSV' with semicolons (and decimal commas)."""
    path = tmp_path / "sites.csv"
    path.write_text(";".join(SITE_COLUMNS) + "\n" + ";".join((SITE | {"uplink_mbps": "2,5"}).values()) + "\n", encoding="utf-8")
    summary = import_files([path], registry, tmp_path / "fleet")
    assert summary["sites"]["added"] == 1
    assert load_fleet_dir(tmp_path / "fleet", registry)[0][0].uplink.bandwidth_mbps == 2.5


def test_site_codes_differing_only_by_case_are_duplicates(tmp_path, registry):
    path = sites_csv(tmp_path, {"site_code": "S-01-511-01-01-annexe"}, {"site_code": "S-01-511-01-01-ANNEXE"})
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}:3: column 'site_code': duplicate site code 'S-01-511-01-01-ANNEXE' (first at row 2 as "
        "'S-01-511-01-01-annexe'; codes differing only by case name one site)",
    ]
    import_files([sites_csv(tmp_path, {"site_code": "S-01-511-01-01-annexe"})], registry, tmp_path / "fleet")
    path = sites_csv(tmp_path, {"site_code": "S-01-511-01-01-Annexe"})
    with pytest.raises(InputErrors) as exc:
        import_files([path], registry, tmp_path / "fleet")
    assert [str(p) for p in exc.value.problems] == [
        f"{path}:2: column 'site_code': site code 'S-01-511-01-01-Annexe' differs only by case from "
        "'S-01-511-01-01-annexe', already in the fleet (valid: the same spelling to update it, or another code)",
    ]


def test_a_table_with_no_data_rows_is_refused(tmp_path, registry):
    path = write_csv(tmp_path / "sites.csv", SITE_COLUMNS, [])
    assert problems_of([path], registry, tmp_path / "fleet") == [
        f"{path}: no data rows under the header (valid: one row per site or device)",
    ]
