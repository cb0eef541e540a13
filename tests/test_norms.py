"""Norms layered baseline -> lot -> segment -> link type -> CT override, with provenance (link layers: test_link_norms)."""

from __future__ import annotations

from conftest import edit
from ctfleet.core.models import Segment
from ctfleet.project import load_project


def test_layering_and_provenance(registry_only):
    p = registry_only
    small = p.norms.resolve_for(Segment.COMMUNE_UNDER_15K, 3)
    assert small["LNK-1"].value == 2 and small["LNK-1"].layer == "segment commune_under_15k"
    assert small["SYS-2"].value == 45 and small["SYS-2"].layer == "lot-3"
    assert small["RTR-2"].value == "v3-authpriv" and small["RTR-2"].source.startswith("standards/norms/baseline.yaml:")
    seat = p.norms.resolve_for(Segment.COMMUNE_UNDER_15K, 1)  # a chef-lieu under 15,000 is lot 1
    assert seat["SYS-2"].value == 14 and seat["WS-4"].value is True


def test_every_source_line_points_at_the_value(registry_only, root):
    resolved = registry_only.norms.resolve_for(Segment.COMMUNE_15K_50K, 2)
    for cid, r in resolved.items():
        path, line = r.source.rsplit(":", 1)
        text = (root / path).read_text(encoding="utf-8").splitlines()[int(line) - 1]
        assert cid in text, (cid, r.source, text)


def test_not_applicable_for_sdl_communes(registry_only):
    casa = registry_only.registry.ct("06.141.01.0")
    resolved = registry_only.norms.resolve(casa)
    assert not resolved["SRV-1"].applicable
    assert resolved["LNK-1"].value == 200


def test_ct_override_wins(data_copy):
    (data_copy / "standards/norms/ct/12.066.03.05.yaml").write_text(
        "description: Aousserd works from Dakhla over satellite\nvalues:\n  LNK-2: 1200\n", encoding="utf-8")
    p = load_project(root=data_copy, with_fleet=False)
    ct = p.registry.ct("12.066.03.05")
    r = p.norms.resolve(ct)["LNK-2"]
    assert r.value == 1200 and r.layer == "ct 12.066.03.05" and r.source.endswith("12.066.03.05.yaml:3")
    other = p.registry.ct("12.066.05.03")
    assert p.norms.resolve(other)["LNK-2"].value == 150  # no fleet: no link layer, the baseline


def test_one_change_in_one_place(data_copy):
    edit(data_copy / "standards/norms/baseline.yaml", "SYS-7: 12", "SYS-7: 14")
    p = load_project(root=data_copy, with_fleet=False)
    assert {p.norms.value(ct, "SYS-7") for ct in p.registry.cts.values()} == {14}


def test_every_control_cites_a_source_and_security_ones_a_directive_or_benchmark(registry_only):
    kinds = {s.id: s.kind for s in registry_only.norms.catalogue.sources}
    for c in registry_only.norms.controls.values():
        assert c.sources
        if c.topic in {"ssh", "accounts", "firewall", "router_mgmt", "patch", "audit"}:
            assert any(kinds[s.source] in ("directive", "benchmark") for s in c.sources), c.id
