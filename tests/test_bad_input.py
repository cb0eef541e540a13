"""Each kind of bad input gives one clear error naming the file, line or key and what is valid."""

from __future__ import annotations

import pytest

from conftest import edit
from ctfleet.core.errors import CtfleetError
from ctfleet.project import load_project

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
        "standards/norms/baseline.yaml:36: values.RTR-2: SNMP is v3 with authentication and privacy (authPriv): "
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
        "standards/norms/lots/lot-3.yaml:2: valeurs: unknown key (valid: one of description, links, max_age, not_applicable, values)",
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
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_names_file_line_and_valid(case, data_copy):
    rel, old, new, expected = CASES[case]
    edit(data_copy / rel, old, new)
    with pytest.raises(CtfleetError) as exc:
        load_project(root=data_copy, with_fleet=False)
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
