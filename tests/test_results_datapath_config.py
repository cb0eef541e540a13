"""The data path's generated Prometheus pieces: national rules, remote_write filter, node targets."""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess

import pytest
from ruamel.yaml import YAML

import ctfleet.core.datapath as datapath
from ctfleet.core import conventions
from ctfleet.core.datapath import kpi_record_names, national_rules, node_targets, remote_write


@pytest.fixture(scope="module")
def kpi_doc(root):
    return YAML(typ="safe").load((root / conventions.RULES_DIR / "kpi.rules.yml").read_text(encoding="utf-8"))


def test_doctests():
    assert doctest.testmod(datapath).failed == 0


def test_national_rules_cover_every_regional_kpi_and_pass_promtool(kpi_doc, tmp_path):
    names = kpi_record_names(kpi_doc)
    assert len(names) >= 20 and all(n.startswith("ctfleet:") for n in names)
    doc = national_rules(kpi_doc)
    assert [r["record"] for r in doc["groups"][0]["rules"]] == names  # the report reads the same names at the nation
    path = tmp_path / "national.rules.yml"
    with path.open("w") as fh:
        YAML(typ="safe").dump(doc, fh)
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    with pytest.raises(ValueError, match="no national form"):
        national_rules({"groups": [{"rules": [{"record": "ctfleet:cts:p95_by_lot"}]}]})


def test_remote_write_keeps_only_the_kpi_series(kpi_doc):
    names = kpi_record_names(kpi_doc)
    rw = remote_write("https://nation.example/api/v1/write", "04", names)
    keep = re.compile(rw["write_relabel_configs"][0]["regex"])  # Prometheus anchors relabel regexes
    assert all(keep.fullmatch(n) for n in names)
    for raw in ("ctfleet_ct_info", "ctfleet_ct_meets_norms", "up", "ctfleet:cts:count_by_lotx", "node_load1"):
        assert not keep.fullmatch(raw)
    rename = rw["write_relabel_configs"][1]
    assert re.fullmatch(rename["regex"], "ctfleet:cts:count").expand(rename["replacement"].replace("$1", r"\1")) == "ctfleet_region:cts:count"


def test_node_targets_carry_the_ct_labels(project):
    reg = project.national.scoped("04")
    groups = node_targets(reg)
    servers = [d for d in reg.devices.values() if d.role.value == "server" and d.mgmt_address is not None]
    assert len(groups) == len(servers) > 0
    for g in groups:
        assert set(conventions.CT_LABELS) <= set(g["labels"]) and g["labels"]["region"] == "04"
        assert g["targets"][0].endswith(f":{conventions.NODE_EXPORTER_PORT}")
