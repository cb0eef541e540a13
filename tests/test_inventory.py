"""Observed inventories: records from Ansible facts, the batch format and both stores,
server configuration types as layered norms, and "equipped" judged from observation."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from conftest import ROOT, edit

from ctfleet.core.errors import InputError, InputErrors
from ctfleet.core.inventory import InventoryRecord, Verdict, from_ansible_facts, judge_equipment, judge_server, judge_workstation
from ctfleet.core.models import Role, Tier
from ctfleet.monitors.exporter import build_snapshot
from ctfleet.project import load_project
from ctfleet.results import ResultsStore
from ctfleet.results.batch import parse_batch, render_batch
from ctfleet.results.db import SqlStore

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)
FACTS = {"processor_vcpus": 2, "processor": ["0", "GenuineIntel", "Intel(R) Core(TM) i5-8500"], "memtotal_mb": 3900,
         "distribution": "Debian", "distribution_major_version": "12", "distribution_version": "12.8",
         "product_serial": "NA", "uptime_seconds": 7200, "mounts": [{"mount": "/", "size_total": 120 * 2**30},
                                                                   {"mount": "/boot", "size_total": 2**30}]}


def rec(device, ct="04.161.01.03", mem_gib=8, os="debian", ver="12", when=T0, **kw):
    return InventoryRecord(ct=ct, device=device, memory_mib=int(mem_gib * 1024 * 0.97), os=os, os_version=ver, observed_at=when, **kw)


def test_record_from_ansible_facts_never_invents_a_serial():
    r = from_ansible_facts(FACTS, "04.161.01.03", "th01", packages=388, observed_at=T0)
    assert (r.cpu_count, r.cpu_model, r.memory_gib, r.disk_gib, r.os_id, r.packages) == (2, "Intel(R) Core(TM) i5-8500", 4, 120.0, "debian-12", 388)
    assert r.serial is None and r.last_boot == T0 - timedelta(hours=2)
    real = from_ansible_facts({**FACTS, "ansible_product_serial": "PF2ABC12", "product_serial": None}, "c", "w", observed_at=T0)
    assert real.serial == "PF2ABC12"
    ubuntu = from_ansible_facts({**FACTS, "distribution": "Ubuntu", "distribution_version": "24.04",
                                 "distribution_major_version": "24"}, "c", "w", observed_at=T0)
    assert ubuntu.os_id == "ubuntu-24.04"
    assert from_ansible_facts({}, "c", "w", observed_at=T0).model_dump(exclude={"ct", "device", "observed_at", "record", "origin"}) == {
        k: None for k in ("cpu_count", "cpu_model", "memory_mib", "disk_gib", "os", "os_version", "serial", "packages", "last_boot")}


def test_workstation_and_server_judgement():
    assert judge_workstation("w", rec("w", mem_gib=8), 8, ["debian-12"]).verdict == Verdict.AT_SPEC
    low = judge_workstation("w", rec("w", mem_gib=4), 8, ["debian-12"])
    assert low.verdict == Verdict.UNDER_SPEC and [c.fact for c in low.checks if c.verdict == Verdict.UNDER_SPEC] == ["memory_gib"]
    old_os = judge_workstation("w", rec("w", mem_gib=16, ver="11"), 8, ["debian-12"])
    assert old_os.verdict == Verdict.UNDER_SPEC and old_os.checks[1].observed == "debian-11"
    no_mem = InventoryRecord(ct="c", device="w", os="debian", os_version="12")
    assert judge_workstation("w", no_mem, 8, ["debian-12"]).verdict == Verdict.NOT_ASSESSED
    assert judge_workstation("w", None, 8, ["debian-12"]).verdict == Verdict.NOT_ASSESSED
    from ctfleet.core.inventory import ServerSpec

    big = InventoryRecord(ct="c", device="s", cpu_count=8, memory_mib=32 * 1024, disk_gib=1000)
    assert judge_server("s", big, ServerSpec("large", 8, 32, 1000)).verdict == Verdict.AT_SPEC
    assert judge_server("s", big.model_copy(update={"disk_gib": 999.0}), ServerSpec("large", 8, 32, 1000)).verdict == Verdict.UNDER_SPEC


def test_server_types_are_layered_norms(data_copy):
    p = load_project(root=ROOT)
    ct = next(c for c in p.registry.cts.values() if p.norms.value(c, "EQP-4") == "standard")
    spec = p.norms.server_type(ct)
    assert (spec.name, spec.cpu_count, spec.memory_gib, spec.disk_gib) == ("standard", 4, 16, 500)
    assert "standards/norms/baseline.yaml:" in spec.origin
    assert p.norms.server_type(ct, "none") is None
    (data_copy / "standards/norms/ct").mkdir(exist_ok=True)
    (data_copy / f"standards/norms/ct/{ct.code}.yaml").write_text("server_types:\n  standard:\n    memory_gib: 24\n", encoding="utf-8")
    q = load_project(root=data_copy, with_fleet=False)
    s2 = q.norms.server_type(q.registry.cts[ct.code])
    assert (s2.cpu_count, s2.memory_gib) == (4, 24) and f"standards/norms/ct/{ct.code}.yaml:3" in s2.origin


@pytest.mark.parametrize("old,new,want", [
    ("sources: [{source: ctfleet-proposal, ref: \"file/print/DHCP", "sources: [{source: nobody, ref: \"file/print/DHCP",
     "unknown source 'nobody'"),
    ("  large:\n    cpu_count: 8\n", "  large:\n", "server configuration type 'large' is not fully defined"),
    ("  small:\n    cpu_count: 2\n", "  small:\n    cpu_count: 0\n", "server_types.small.cpu_count"),
])
def test_bad_server_types_name_file_and_key(data_copy, old, new, want):
    edit(data_copy / "standards/norms/baseline.yaml", old, new)
    with pytest.raises((InputError, InputErrors)) as e:
        load_project(root=data_copy, with_fleet=False)
    assert want in str(e.value) and "standards/norms/baseline.yaml" in str(e.value), str(e.value)


def test_batch_carries_inventories_and_names_bad_lines():
    text = render_batch([], [rec("th01"), rec("th02", mem_gib=4)])
    b = parse_batch("inv-1", text)
    assert [i.device for i in b.inventories] == ["th01", "th02"] and b.results == () and b.cts == {"04.161.01.03"}
    bad = text + '{"record":"inventory","ct":"04.161.01.03","device":"th03","memory_mib":-5}\n'
    with pytest.raises(InputErrors) as e:
        parse_batch("inv-2", bad)
    assert "inv-2:3: memory_mib" in str(e.value)


@pytest.mark.parametrize("kind", ["files", "sqlite", "postgresql"])
def test_stores_keep_the_newest_and_the_history(tmp_path, kind, request):
    if kind == "postgresql":
        store = SqlStore(request.getfixturevalue("postgresql").url("inventory_store"))
    else:
        store = ResultsStore(tmp_path / "r") if kind == "files" else SqlStore(tmp_path / "r.db")
    if kind != "files":
        store.migrate()
        store.ingest(parse_batch("b1", render_batch([], [rec("th01", mem_gib=4)])))
        assert store.ingest(parse_batch("b1", render_batch([], [rec("th01", mem_gib=4)]))).duplicate
    else:
        assert store.write_inventory("th01", [rec("th01", mem_gib=4)]) == 1
    assert store.write_inventory("th01", [rec("th01", mem_gib=16, when=T0 + timedelta(days=1))]) == 1
    assert store.write_inventory("th01", [rec("th01", mem_gib=16, when=T0 + timedelta(days=1))]) == 0  # same observation
    store.write_inventory("th02", [rec("th02", ct="04.161.01.05")])
    newest = {r.device: r for r in store.iter_inventory()}
    assert newest["th01"].memory_gib == 16 and set(newest) == {"th01", "th02"}
    assert [r.memory_gib for r in store.inventory_history("04.161.01.03", "th01")] == [4, 16]
    assert {r.device for r in store.iter_inventory({"04.161.01.05"})} == {"th02"}
    if kind == "files":
        assert list(store.iter_results()) == []  # inventories are not result batches


@pytest.fixture(scope="module")
def region12():
    p = load_project(root=ROOT)
    return p.national.scoped("12"), p.norms


def test_equipped_counts_only_workstations_observed_at_spec(project):
    registry, norms = project.national, project.norms
    ct = next(c for c in registry.cts.values() if Tier.OWN not in c.tiers
              and len([d for d in registry.devices_of(c.code) if d.role == Role.WORKSTATION]) == norms.value(c, "EQP-1"))
    need, mem = norms.value(ct, "EQP-1"), norms.value(ct, "EQP-2")
    ws = [d.hostname for d in registry.devices_of(ct.code) if d.role == Role.WORKSTATION]
    router = next(d.hostname for d in registry.devices_of(ct.code) if d.role == Role.ROUTER)
    seen = {router}
    at_spec = {h: rec(h, ct=ct.code, mem_gib=mem) for h in ws[:need]}
    assert judge_equipment(ct, registry, norms, seen, at_spec).equipped
    assert not judge_equipment(ct, registry, norms, set(), at_spec).equipped  # router not seen
    one_low = {**at_spec, ws[0]: rec(ws[0], ct=ct.code, mem_gib=mem - 1)}
    e = judge_equipment(ct, registry, norms, seen, one_low)
    assert not e.equipped and e.workstations_at_spec == need - 1 and e.not_assessed == 0
    assert [d.verdict for d in e.devices if d.device == ws[0]] == [Verdict.UNDER_SPEC]
    missing = judge_equipment(ct, registry, norms, seen, {h: r for h, r in at_spec.items() if h != ws[-1]})
    assert not missing.equipped and missing.not_assessed == 1  # no inventory: not assessed, not counted
    # seen by the collector, never inventoried: not counted (the old rule counted it)
    assert not judge_equipment(ct, registry, norms, seen | set(ws), {}).equipped


def test_exporter_serves_equipped_from_inventories(region12):
    from prometheus_client import CollectorRegistry

    from ctfleet.core.compliance import ControlResult
    from ctfleet.monitors.exporter import CtfleetCollector

    registry, norms = region12
    own = next(c for c in registry.cts.values() if Tier.OWN in c.tiers and norms.value(c, "EQP-4") != "none")
    devs = registry.devices_of(own.code)
    router = next(d.hostname for d in devs if d.role == Role.ROUTER)
    server = next(d.hostname for d in devs if d.role == Role.SERVER)
    ws = [d.hostname for d in devs if d.role == Role.WORKSTATION][:norms.value(own, "EQP-1")]
    spec = norms.server_type(own)
    inv = [rec(h, ct=own.code, mem_gib=norms.value(own, "EQP-2")) for h in ws]
    srv = InventoryRecord(ct=own.code, device=server, cpu_count=spec.cpu_count, memory_mib=spec.memory_gib * 1024,
                          disk_gib=spec.disk_gib, observed_at=T0)
    seen = [ControlResult(ct=own.code, device=router, control="RTR-2", status="pass", source="snmp", observed_at=T0)]
    labels = {"ct": own.code}

    def value(inventories):
        reg = CollectorRegistry()
        reg.register(CtfleetCollector(build_snapshot(registry, norms, None, stored=seen, now=T0, inventories=inventories)))
        got = [s for m in reg.collect() for s in m.samples if s.name == "ctfleet_ct_equipped" and s.labels.get("ct") == labels["ct"]]
        return got[0].value

    assert value(inv + [srv]) == 1
    assert value(inv + [srv.model_copy(update={"cpu_count": spec.cpu_count - 1})]) == 0  # server under its type
    assert value(inv) == 0  # server not inventoried


def _cli(*args, code=0):
    from typer.testing import CliRunner

    from ctfleet.cli.main import app

    result = CliRunner().invoke(app, list(args), env={"CTFLEET_ROOT": str(ROOT), "COLUMNS": "250"})
    text = result.output + (result.stderr if result.stderr_bytes else "")
    assert not (result.exception and not isinstance(result.exception, SystemExit)), repr(result.exception)
    assert "Traceback" not in text and result.exit_code == code, text
    return text


def test_equipment_show_lists_observed_vs_norm(project, tmp_path):
    import json

    from ctfleet.core.compliance import ControlResult

    registry, norms = project.national, project.norms
    ct = next(c for c in registry.cts.values() if Tier.OWN not in c.tiers and norms.value(c, "EQP-1") >= 2
              and len([d for d in registry.devices_of(c.code) if d.role == Role.WORKSTATION]) >= 2)
    ws = sorted(d.hostname for d in registry.devices_of(ct.code) if d.role == Role.WORKSTATION)
    router = next(d.hostname for d in registry.devices_of(ct.code) if d.role == Role.ROUTER)
    mem = norms.value(ct, "EQP-2")
    store = ResultsStore(tmp_path / "results")
    store.write_batch("snmp", "sweep", [ControlResult(ct=ct.code, device=router, control="RTR-2", status="pass", source="snmp", observed_at=T0)])
    store.write_inventory("t", [rec(ws[0], ct=ct.code, mem_gib=mem, serial="PF2ABC12"),
                                rec(ws[1], ct=ct.code, mem_gib=mem - 2, origin="simulated")])
    text = _cli("equipment", "show", ct.code, "--results", str(tmp_path / "results"))
    lines = {ln.split("│")[1].strip(): ln for ln in text.splitlines() if ln.count("│") > 5}
    assert "at spec" in lines[ws[0]] and "PF2ABC12" in lines[ws[0]]
    assert "under spec (memory)" in lines[ws[1]] and "SIMULATED" in lines[ws[1]] and "unknown" in lines[ws[1]]  # no serial
    assert f"NOT EQUIPPED: workstations at spec 1/{norms.value(ct, 'EQP-1')} (EQP-1); router seen" in text
    assert "SIMULATED: some inventories" in text
    data = json.loads(_cli("equipment", "show", ct.code, "--results", str(tmp_path / "results"), "--json"))
    by = {d["device"]: d for d in data["devices"]}
    assert data["equipped"] is False and data["workstations_at_spec"] == 1 and data["norm"]["EQP-2"] == mem
    assert by[ws[0]]["verdict"] == "at_spec" and by[ws[1]]["verdict"] == "under_spec" and by[ws[1]]["observed"]["serial"] is None
    assert all(by[h]["verdict"] == "not_assessed" and by[h]["observed"] is None for h in ws[2:])
    bad = _cli("equipment", "show", "99.999", "--results", str(tmp_path / "results"), code=1)
    assert "error: registry: unknown CT code '99.999'" in bad and "HCP code" in bad
