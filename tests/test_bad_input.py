"""Each kind of bad input gives one clear error naming the file, line or key and what is valid."""

from __future__ import annotations

import pytest

from conftest import ROOT, edit
from ctfleet.core.errors import CtfleetError
from ctfleet.project import load_project


def _line_of(rel: str, text: str) -> int:
    """The 1-based line of the first line holding ``text`` in a project data file (files grow)."""
    lines = (ROOT / rel).read_text(encoding="utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


CASES = {
    "malformed CSV": (
        "inventory/hcp/communes.csv",
        "01.511.01.01,015110101,assilah,Assilah,",
        "01.511.01.01,015110101,assilah,Assilah,extra,",
        "inventory/hcp/communes.csv:3: row has 14 columns where the header has 13 "
        "(valid: one value per header column (quote values holding commas))",
    ),
    "malformed YAML": (
        "inventory/seats.yaml",
        '  - province: "01.573"',
        '  - province: "01.573\n',
        "inventory/seats.yaml:54: malformed YAML: expected <block end>, but found '<scalar>'",
    ),
    "duplicate YAML key": (
        "standards/norms/baseline.yaml",
        "  LNK-2: 150",
        "  LNK-2: 150\n  LNK-1: 5",
        'standards/norms/baseline.yaml:7: malformed YAML: duplicate key "LNK-1" with value "5" (original value: "4")',
    ),
    "duplicate code": (
        "inventory/hcp/communes.csv",
        "01.511.01.01,015110101",
        "01.511.01.0,015110101",
        "inventory/hcp/communes.csv:3: column 'code': duplicate code '01.511.01.0'",
    ),
    "commune whose province does not exist": (
        "inventory/hcp/communes.csv",
        "01.511.01.01,015110101,assilah,Assilah,أصيلة,urban,01,01.511,",
        "01.511.01.01,015110101,assilah,Assilah,أصيلة,urban,01,01.999,",
        "inventory/hcp/communes.csv:3: column 'province_code': commune 01.511.01.01 names province '01.999', "
        "which does not exist (valid: a province code from provinces.csv)",
    ),
    "norm value of the wrong type": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "LNK-1: 8",
        "LNK-1: fast",
        "standards/norms/segments/commune_15k_50k.yaml:3: values.LNK-1: Uplink bandwidth is at least the "
        "segment's minimum: expected a number (Mbit/s), got 'fast'",
    ),
    "norm value outside an enum": (
        "standards/norms/baseline.yaml",
        "RTR-2: v3-authpriv",
        "RTR-2: v3",
        f"standards/norms/baseline.yaml:{_line_of('standards/norms/baseline.yaml', 'RTR-2:')}: values.RTR-2: SNMP is v3 with authentication and privacy (authPriv): "
        "expected one of v3-authpriv, v3-authnopriv, v2c, got 'v3'",
    ),
    "unknown control id": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "LNK-1: 8",
        "LNK-99: 8",
        "standards/norms/segments/commune_15k_50k.yaml:3: values.LNK-99: unknown control id 'LNK-99' "
        "(valid: a control id from standards/controls.yaml)",
    ),
    "unknown key in a norm layer": (
        "standards/norms/lots/lot-3.yaml",
        "values:",
        "valeurs:",
        f"standards/norms/lots/lot-3.yaml:{_line_of('standards/norms/lots/lot-3.yaml', 'values:')}: valeurs: unknown key (valid: one of description, links, max_age, not_applicable, server_types, values)",
    ),
    "unknown key in the segment table": (
        "standards/segments.yaml",
        "    min_population: 15000",
        "    min_population: 15000\n    max_population: 50000",
        "standards/segments.yaml:51: segments.commune_15k_50k.max_population: unknown key "
        "(valid: one of label_ar, label_fr, level, lot, min_population, with_arrondissements)",
    ),
    "seat outside its province": (
        "inventory/seats.yaml",
        'commune: "01.573.01.05"',
        'commune: "01.571.01.11"',
        "inventory/seats.yaml:54: seats[1].commune: commune 01.571.01.11 is in province 01.571, not 01.573",
    ),
    "lot override for an unknown CT": (
        "inventory/overrides.yaml",
        '"06.385.01.03":  # Nouaceur',
        '"06.385.99.03":  # Nouaceur',
        "inventory/overrides.yaml:13: lots.06.385.99.03: unknown CT code '06.385.99.03' "
        "(valid: an HCP code of a region, province or commune)",
    ),
    # issue 14: numbers bounded by what the field means, and by what a YAML file can mean at all
    "negative bandwidth": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "LNK-1: 8",
        "LNK-1: -5",
        "standards/norms/segments/commune_15k_50k.yaml:3: values.LNK-1: Uplink bandwidth is at least the segment's "
        "minimum: -5 Mbit/s is out of range (0 to 100,000 Mbit/s)",
    ),
    "huge workstation count": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "EQP-1: 12",
        "EQP-1: 100000000",
        "standards/norms/segments/commune_15k_50k.yaml:7: values.EQP-1: The CT has at least the required number of "
        "workstations: 100,000,000 workstations is out of range (0 to 10,000 workstations)",
    ),
    "share above 100 %": (
        "standards/norms/baseline.yaml",
        "  LNK-6: 80",
        "  LNK-6: 180",
        None,  # message checked by its start below
    ),
    "not a number": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "LNK-1: 8",
        "LNK-1: .nan",
        "standards/norms/segments/commune_15k_50k.yaml:3: nan is not a finite number",
    ),
    "infinite": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "LNK-1: 8",
        "LNK-1: 1e999",
        "standards/norms/segments/commune_15k_50k.yaml:3: inf is not a finite number",
    ),
    "absurdly large": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "LNK-1: 8",
        "LNK-1: 1e62",
        "standards/norms/segments/commune_15k_50k.yaml:3: number 1e+62 is out of range (valid: at most 1e+15)",
    ),
    "alias bomb": (
        "standards/norms/segments/commune_15k_50k.yaml",
        "description: Communes",
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\ndescription: Communes",
        "standards/norms/segments/commune_15k_50k.yaml:2: YAML aliases (*name) are not allowed in ctfleet files",
    ),
    "deep nesting": (
        "inventory/overrides.yaml",
        "\nlots:\n",
        "\ndeep: " + "[" * 200 + "]" * 200 + "\nlots:\n",
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_line_and_valid(case, data_copy):
    rel, old, new, expected = CASES[case]
    edit(data_copy / rel, old, new)
    with pytest.raises(CtfleetError) as exc:
        load_project(root=data_copy, with_fleet=False)
    if expected is None:
        assert str(exc.value).startswith(rel), str(exc.value)
        if case == "share above 100 %":
            assert str(exc.value).endswith("180 % is out of range (0 to 100 %)"), str(exc.value)
        if case == "deep nesting":
            assert str(exc.value).endswith("nested deeper than 32 levels"), str(exc.value)
    else:
        assert str(exc.value) == expected


def test_profile_region_typed_as_a_number_gets_a_hint(data_copy):
    profile = data_copy / "regional.yaml"
    profile.write_text("name: oriental\nregion: 04\n", encoding="utf-8")
    with pytest.raises(CtfleetError) as exc:
        load_project(profile, root=data_copy, with_fleet=False)
    assert str(exc.value) == (f"{profile}:2: region: the region code must be text: YAML reads 04 as the number 4 "
                              "(valid: quote it, region: \"04\")")


def test_profile_alias_bomb_is_refused_quickly(data_copy):
    import time

    profile = data_copy / "bomb.yaml"
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    profile.write_text("\n".join(lines) + "\nname: x\n", encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(CtfleetError) as exc:
        load_project(profile, root=data_copy, with_fleet=False)
    assert time.monotonic() - started < 2
    assert str(exc.value) == f"{profile}:2: YAML aliases (*name) are not allowed in ctfleet files"


@pytest.mark.parametrize("args, expected", [
    (dict(region="13"), "--region: unknown region '13' (valid: one of 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12)"),
    (dict(region="4"), "--region: unknown region '4' (valid: did you mean '04'? Region codes have two digits)"),
    (dict(province="04.161"), "--province: unknown province '04.161' (valid: a province code such as 04.421; "
                              "`ctfleet registry list --level council` lists them)"),
    (dict(region="04", province="01.511"), "--province: province 01.511 is not in region 04"),
])
def test_registry_filters_are_checked(registry_only, args, expected):
    with pytest.raises(CtfleetError) as exc:
        registry_only.national.select(**args)
    assert str(exc.value) == expected


def test_unknown_segment_file(data_copy):
    (data_copy / "standards/norms/segments/commune_huge.yaml").write_text("values: {}\n", encoding="utf-8")
    with pytest.raises(CtfleetError) as exc:
        load_project(root=data_copy, with_fleet=False)
    assert str(exc.value) == (
        "standards/norms/segments/commune_huge.yaml: unknown segment 'commune_huge' (valid: one of region, council, "
        "commune_arrondissements, commune_250k_plus, commune_100k_250k, commune_50k_100k, commune_15k_50k, commune_under_15k)"
    )


def test_several_norm_problems_reported_at_once(data_copy):
    edit(data_copy / "standards/norms/segments/region.yaml", "LNK-1: 100", "LNK-1: lots")
    edit(data_copy / "standards/norms/segments/region.yaml", "EQP-4: large", "EQP-4: huge")
    with pytest.raises(CtfleetError) as exc:
        load_project(root=data_copy, with_fleet=False)
    text = str(exc.value)
    assert text.startswith("2 problems found, nothing written:")
    assert "region.yaml:3: values.LNK-1" in text and "region.yaml:9: values.EQP-4" in text


def test_missing_baseline_value(data_copy):
    edit(data_copy / "standards/norms/baseline.yaml", "  LNK-6: 80         # % utilisation before \"saturated\"\n", "")
    with pytest.raises(CtfleetError) as exc:
        load_project(root=data_copy, with_fleet=False)
    assert str(exc.value) == ("standards/norms/baseline.yaml: values: no baseline value for control(s) LNK-6 "
                              "(valid: every control in standards/controls.yaml needs a baseline value)")


def test_cli_validate_reports_error_and_exits_nonzero(data_copy, root):
    import os
    import subprocess
    import sys

    edit(data_copy / "standards/norms/segments/commune_15k_50k.yaml", "LNK-1: 8", "LNK-1: fast")
    env = dict(os.environ, CTFLEET_ROOT=str(data_copy))
    run = subprocess.run([sys.executable, "-m", "ctfleet.cli.main", "validate"], capture_output=True, text=True, env=env, cwd=root)
    assert run.returncode == 1
    assert "standards/norms/segments/commune_15k_50k.yaml:3: values.LNK-1" in run.stderr
    assert "Traceback" not in run.stderr


# ---------------------------------------------------------------- names derived from codes (issue 14)
def _fleet_with_case_twins(data_copy):
    """A fleet directory written by hand (the importer refuses this) with two site codes differing only by case."""
    fleet = data_copy / "fleet-01"
    fleet.mkdir()
    (fleet / "sites.csv").write_text(
        "site_code,ct_code,name,uplink_type,uplink_mbps,backup_type,backup_mbps\n"
        "S-01-511-01-01-annexe,01.511.01.01,Annexe,adsl,8,,\n"
        "S-01-511-01-01-ANNEXE,01.511.01.01,Annexe bis,adsl,8,,\n", encoding="utf-8")
    (fleet / "devices.csv").write_text(
        "hostname,site_code,role,platform,os_version,mgmt_address,credentials_ref,snmp_version\n"
        "r-01-511-01-01,S-01-511-01-01-annexe,router,cisco_ios,ios-15.9,10.4.0.1,,\n", encoding="utf-8")
    profile = data_copy / "regional.yaml"
    profile.write_text(f"region: '01'\nfleet: {{source: files, dir: {fleet}}}\n", encoding="utf-8")
    return profile


def test_validate_runs_every_name_derivation(data_copy, root):
    import os
    import subprocess
    import sys

    profile = _fleet_with_case_twins(data_copy)
    env = dict(os.environ, CTFLEET_ROOT=str(data_copy), COLUMNS="300")
    run = subprocess.run([sys.executable, "-m", "ctfleet.cli.main", "--profile", str(profile), "validate"],
                         capture_output=True, text=True, env=env, cwd=root)
    assert run.returncode == 1, run.stdout
    assert "Traceback" not in run.stderr
    # the fleet loader refuses the twins before the inventory would find its group names colliding
    assert run.stderr.strip() == (
        "error: 1 problem found, nothing written:\n"
        f"  {profile.parent / 'fleet-01/sites.csv'}:3: column 'site_code': duplicate site code 'S-01-511-01-01-ANNEXE' "
        "(first at row 2 as 'S-01-511-01-01-annexe'; codes differing only by case name one site)")


def test_validate_fails_on_a_stack_name_collision(data_copy, root):
    import os
    import subprocess
    import sys

    edit(data_copy / "inventory/hcp/regions.csv", "02,02,Oriental,", "02,02,Tanger-Tétouan-Al Hoceima,")
    env = dict(os.environ, CTFLEET_ROOT=str(data_copy), COLUMNS="300")
    run = subprocess.run([sys.executable, "-m", "ctfleet.cli.main", "validate"], capture_output=True, text=True, env=env, cwd=root)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.strip() == (
        "error: stacks: two hosting units share the stack name 'sdr-tanger-tetouan-al-hoceima': SDR cloud of "
        "Tanger-Tétouan-Al Hoceima (region 01) and SDR cloud of Tanger-Tétouan-Al Hoceima (region 02) "
        "(valid: names that differ after lower-casing and keeping only letters and digits)")


def test_an_unparsed_inventory_fails_ansible(data_copy, root):
    """ansible.cfg makes an inventory that does not parse a failure (ansible-inventory used to exit 0, empty)."""
    import os
    import shutil
    import subprocess

    profile = _fleet_with_case_twins(data_copy)
    venv_bin = str(root / ".venv" / "bin")
    env = dict(os.environ, CTFLEET_ROOT=str(data_copy), CTFLEET_PROFILE=str(profile), PATH=f"{venv_bin}:{os.environ['PATH']}",
               ANSIBLE_CONFIG=str(root / "ansible.cfg"))
    tool = shutil.which("ansible-inventory", path=env["PATH"])
    assert tool, "ansible-inventory (ansible-core) is a dependency"
    run = subprocess.run([tool, "-i", str(root / "inventory/ctfleet_inventory.py"), "--graph"],
                         capture_output=True, text=True, env=env, cwd=root, timeout=120)
    assert run.returncode != 0, run.stdout
    assert "duplicate site code 'S-01-511-01-01-ANNEXE'" in run.stderr
    good = data_copy / "good.yaml"  # the same, with a fleet that loads: the inventory parses and lists its hosts
    good.write_text(f"region: '01'\nfleet: {{source: files, dir: {root / 'tests/fixtures/import/good'}}}\n", encoding="utf-8")
    ok = subprocess.run([tool, "-i", str(root / "inventory/ctfleet_inventory.py"), "--graph"],
                        capture_output=True, text=True, env=dict(env, CTFLEET_PROFILE=str(good)), cwd=root, timeout=120)
    assert ok.returncode == 0 and "r-01-511-01-01" in ok.stdout, ok.stderr


def test_a_control_character_in_yaml_is_one_error():
    """Found by tests/test_properties.py: ruamel's ReaderError (no mark) used to escape as a traceback."""
    from ctfleet.core.yamlio import parse_yaml

    with pytest.raises(CtfleetError) as exc:
        parse_yaml("name: x\nregion: \x1f\n", "profile.yaml")
    assert str(exc.value) == "profile.yaml:2: malformed YAML: unacceptable character #x001f (control characters are not allowed)"
