"""The three outcomes of a CT (meets / failing / not assessed), freshness, waivers and
maintenance windows: the pure core (ctfleet.core.evaluate.assess_ct and its data) and what
the exporter serves from it."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from prometheus_client import CollectorRegistry

from conftest import edit
from ctfleet.core.compliance import ControlResult, Outcome, Source, Status
from ctfleet.core.errors import CtfleetError
from ctfleet.core.evaluate import assess_ct, expected_pairs
from ctfleet.core.maintenance import Maintenance, Window
from ctfleet.core.norms import RESULT_SOURCES
from ctfleet.core.waivers import Waiver, Waivers
from ctfleet.monitors.exporter import CtfleetCollector, build_snapshot
from ctfleet.project import load_project

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
FEZNA = "08.201.03.09"  # commune < 15k, lot 3, region 08


@pytest.fixture(scope="module")
def region08(project):
    return project.national.scoped("08"), project.norms


def all_pass(ct, registry, norms, at=NOW, source_ct=Source.SNMP, source_dev=Source.AUDIT):
    return [ControlResult(ct=ct.code, device=dev, control=cid, status=Status.PASS,
                          source=source_dev if dev else source_ct, observed_at=at)
            for dev, cid in expected_pairs(ct, registry, norms)]


def with_norms_waivers(norms, waivers):
    """The same norms with other waivers (a shallow copy: the project's stay untouched)."""
    import copy

    n = copy.copy(norms)
    n.waivers = Waivers(waivers)
    return n


def test_source_names_agree():
    assert set(RESULT_SOURCES) == {s.value for s in Source}


def test_nothing_observed_is_not_assessed(region08):
    registry, norms = region08
    for ct in registry.cts.values():
        a = assess_ct(ct, registry, norms, [], NOW, connected=None)
        assert a.outcome == Outcome.NOT_ASSESSED and a.compliance.coverage == 0
        assert a.compliance.unknown == a.compliance.applicable > 0


def test_everything_fresh_and_passing_meets_only_when_connected(region08):
    registry, norms = region08
    ct = registry.ct(FEZNA)
    results = all_pass(ct, registry, norms)
    assert assess_ct(ct, registry, norms, results, NOW, connected=True).outcome == Outcome.MEETS
    for conn in (False, None):  # a CT not connected (or before any sweep) cannot pass LNK-*
        a = assess_ct(ct, registry, norms, results, NOW, connected=conn)
        assert a.outcome == Outcome.NOT_ASSESSED
        n_connectivity = sum(1 for dev, cid in expected_pairs(ct, registry, norms) if norms.controls[cid].topic == "connectivity")
        assert a.compliance.unknown == n_connectivity > 0
    # a known failure makes it failing, connected or not
    bad = [r.model_copy(update={"status": Status.FAIL}) if r.control == "SYS-3" else r for r in results]
    a = assess_ct(ct, registry, norms, bad, NOW, connected=False)
    assert a.outcome == Outcome.FAILING and set(a.failing) == {"SYS-3"}


def test_a_result_older_than_its_maximum_age_counts_as_unknown(region08):
    registry, norms = region08
    ct = registry.ct(FEZNA)
    assert norms.max_ages(ct).seconds("SYS-3", "audit") == 35 * 86400
    assert norms.max_ages(ct).origin("SYS-3", "audit").startswith("standards/norms/baseline.yaml:")
    results = all_pass(ct, registry, norms)
    target = next(r for r in results if r.control == "SYS-3")
    for age, want, stale in ((timedelta(days=34), Outcome.MEETS, 0), (timedelta(days=36), Outcome.NOT_ASSESSED, 1)):
        aged = [r.model_copy(update={"observed_at": NOW - age}) if r is target else r for r in results]
        a = assess_ct(ct, registry, norms, aged, NOW, connected=True)
        assert (a.outcome, a.compliance.stale, a.stale.get("audit", 0)) == (want, stale, stale)
        assert a.oldest_age["audit"] == pytest.approx(age.total_seconds())
    # a stale failure is not a failure either: it says nothing about today
    old_fail = [r.model_copy(update={"observed_at": NOW - timedelta(days=40), "status": Status.FAIL}) if r is target else r
                for r in results]
    assert assess_ct(ct, registry, norms, old_fail, NOW, connected=True).outcome == Outcome.NOT_ASSESSED
    # SNMP results go stale in minutes
    snmp_old = [r.model_copy(update={"observed_at": NOW - timedelta(minutes=16)}) if r.source == Source.SNMP else r for r in results]
    assert assess_ct(ct, registry, norms, snmp_old, NOW, connected=True).outcome == Outcome.NOT_ASSESSED


def test_a_control_age_wins_over_its_source_and_layers_win(data_copy):
    edit(data_copy / "standards/norms/segments/commune_under_15k.yaml", "values:", "max_age:\n  audit: 60d\n  SYS-3: 2d\nvalues:")
    p = load_project(root=data_copy, with_fleet=False)
    ct = p.registry.ct(FEZNA)
    ages = p.norms.max_ages(ct)
    assert ages.seconds("SYS-4", "audit") == 60 * 86400 and ages.seconds("SYS-3", "audit") == 2 * 86400
    assert ages.origin("SYS-3", "audit").startswith("standards/norms/segments/commune_under_15k.yaml:")
    assert ages.seconds("RTR-7", "router_audit") == 3 * 86400  # baseline's per-control age
    other = p.registry.ct("08.201")  # a council: baseline ages
    assert p.norms.max_ages(other).seconds("SYS-3", "audit") == 35 * 86400


@pytest.mark.parametrize("text, message", [
    ("max_age:\n  audit: soon\n", r"baseline.yaml:\d+: max_age.audit: 'soon' is not a maximum age \(valid: a number and m, h, d or w"),
    ("max_age:\n  audits: 3d\n", r"baseline.yaml:\d+: max_age.audits: unknown result source or control id 'audits'"),
])
def test_bad_max_age_names_file_and_line(data_copy, text, message):
    path = data_copy / "standards/norms/baseline.yaml"
    body = path.read_text(encoding="utf-8")
    body = body[:body.index("max_age:")] + text
    path.write_text(body, encoding="utf-8")
    with pytest.raises(CtfleetError, match=message):
        load_project(root=data_copy, with_fleet=False)


def test_baseline_needs_an_age_for_every_source(data_copy):
    edit(data_copy / "standards/norms/baseline.yaml", "  stack: 7d\n", "")
    with pytest.raises(CtfleetError, match=r"baseline.yaml: max_age: no maximum result age for source\(s\) stack"):
        load_project(root=data_copy, with_fleet=False)


# ------------------------------------------------------------------ waivers
def waiver(ct=FEZNA, control="SYS-3", device=None, expires=date(2026, 12, 31)):
    return Waiver(ct, device, control, "legacy application needs it", "DGCT/DSI", date(2026, 11, 1), "DGCT/DSI/2026-1", expires, "w:1")


def test_a_waiver_applies_and_expires_by_itself(region08):
    registry, norms = region08
    ct = registry.ct(FEZNA)
    results = all_pass(ct, registry, norms)
    failing = [r.model_copy(update={"status": Status.FAIL}) if r.control == "SYS-3" else r for r in results]
    n_sys3 = sum(1 for r in failing if r.control == "SYS-3")
    waived = with_norms_waivers(norms, [waiver()])
    a = assess_ct(ct, registry, waived, failing, NOW, connected=True)
    assert a.outcome == Outcome.MEETS and a.compliance.waived == n_sys3 and a.compliance.failed == 0
    assert [w.reference for w in a.waivers] == ["DGCT/DSI/2026-1"]
    # through its expiry date, then no more: the failure counts again
    last_day = datetime(2026, 12, 31, 23, 59, tzinfo=timezone.utc)
    fresh = [r.model_copy(update={"observed_at": last_day}) for r in failing]
    assert assess_ct(ct, registry, waived, fresh, last_day, connected=True).outcome == Outcome.MEETS
    next_day = last_day + timedelta(minutes=2)
    a = assess_ct(ct, registry, waived, fresh, next_day, connected=True)
    assert a.outcome == Outcome.FAILING and a.compliance.waived == 0 and not a.waivers


def test_a_waiver_covers_missing_results_and_only_its_devices(region08):
    registry, norms = region08
    ct = registry.ct(FEZNA)
    servers = [d.hostname for d in registry.devices_of(ct.code) if d.role.value == "server"]
    assert servers
    results = [r for r in all_pass(ct, registry, norms) if r.control != "SRV-5"]  # never audited
    a = assess_ct(ct, registry, with_norms_waivers(norms, [waiver(control="SRV-5")]), results, NOW, connected=True)
    assert a.outcome == Outcome.MEETS and a.compliance.waived == len(servers)
    only_other = with_norms_waivers(norms, [waiver(control="SRV-5", device="no-such-host-*")])
    assert assess_ct(ct, registry, only_other, results, NOW, connected=True).outcome == Outcome.NOT_ASSESSED


def test_a_result_calling_itself_waived_is_not_a_waiver(region08):
    registry, norms = region08
    ct = registry.ct(FEZNA)
    results = [r.model_copy(update={"status": Status.WAIVED, "waiver_reason": "said so"}) if r.control == "SYS-3" else r
               for r in all_pass(ct, registry, norms)]
    a = assess_ct(ct, registry, with_norms_waivers(norms, []), results, NOW, connected=True)
    assert a.outcome == Outcome.NOT_ASSESSED and a.compliance.waived == 0


def good_waiver(**over) -> str:
    fields = {"ct": '"08.201.03.09"', "control": "WS-4", "reason": "Workstations without TPM until the 2027 renewal",
              "approved_by": '"DGCT/DSI"', "approved_on": "2026-11-02", "reference": '"DGCT/DSI/2026-117"', "expires": "2027-06-30"}
    fields.update(over)
    lines = [f"    {k}: {v}" for k, v in fields.items() if v is not None]
    return "waivers:\n  -\n" + "\n".join(lines) + "\n"


def test_a_good_waiver_file_loads(data_copy):
    (data_copy / "standards/waivers/national.yaml").write_text(good_waiver(), encoding="utf-8")
    (data_copy / "standards/waivers/regions").mkdir()
    (data_copy / "standards/waivers/regions/08.yaml").write_text(good_waiver(ct='"08.201.*"', control="SYS-3"), encoding="utf-8")
    (data_copy / "standards/waivers/ct").mkdir()
    (data_copy / "standards/waivers/ct/08.201.yaml").write_text(good_waiver(ct=None, control="RTR-6"), encoding="utf-8")
    p = load_project(root=data_copy, with_fleet=False)
    ws = p.norms.waivers
    assert len(ws) == 3
    assert {(w.ct, w.control) for w in ws.all} == {("08.201.03.09", "WS-4"), ("08.201.*", "SYS-3"), ("08.201", "RTR-6")}
    assert ws.applies("08.201.03.09", "ws1", "SYS-3", NOW) and not ws.applies("08.211.01.01", "ws1", "SYS-3", NOW)
    assert [w.control for w in ws.expiring(date(2027, 6, 1))] == ["RTR-6", "SYS-3", "WS-4"]  # by expiry, then CT
    assert ws.expiring(NOW) == [] and len(ws.in_force(NOW)) == 3 and ws.in_force(date(2027, 7, 1)) == []


@pytest.mark.parametrize("over, message", [
    ({"control": "WS-44"}, r"national.yaml:4: waivers\[0\].control: unknown control id 'WS-44'"),
    ({"ct": '"99.999.99.99"'}, r"national.yaml:3: waivers\[0\].ct: unknown CT '99.999.99.99': no CT of the registry matches"),
    ({"expires": "2026-10-01"}, r"national.yaml:9: waivers\[0\].expires: expiry 2026-10-01 is not after the approval on 2026-11-02"),
    ({"approved_by": None}, r"national.yaml:3: waivers\[0\].approved_by: required key is missing"),
    ({"reference": None}, r"national.yaml:3: waivers\[0\].reference: required key is missing"),
    ({"until": "2027-01-01"}, r"national.yaml:10: waivers\[0\].until: unknown key \(valid: one of"),
    ({"expires": "next year"}, r"national.yaml:9: waivers\[0\].expires: .*valid date"),
])
def test_each_bad_waiver_gives_its_exact_error(data_copy, over, message):
    (data_copy / "standards/waivers/national.yaml").write_text(good_waiver(**over), encoding="utf-8")
    with pytest.raises(CtfleetError, match=message) as exc:
        load_project(root=data_copy, with_fleet=False)
    assert "Traceback" not in str(exc.value)


def test_scoped_waiver_files_stay_in_their_scope(data_copy):
    (data_copy / "standards/waivers/regions").mkdir()
    (data_copy / "standards/waivers/regions/08.yaml").write_text(good_waiver(ct='"05.091.07.11"'), encoding="utf-8")
    with pytest.raises(CtfleetError, match=r"regions/08.yaml:3: waivers\[0\].ct: '05.091.07.11' matches CTs outside region 08"):
        load_project(root=data_copy, with_fleet=False)
    (data_copy / "standards/waivers/regions/08.yaml").unlink()
    (data_copy / "standards/waivers/ct").mkdir()
    (data_copy / "standards/waivers/ct/08.201.yaml").write_text(good_waiver(), encoding="utf-8")
    with pytest.raises(CtfleetError, match=r"ct/08.201.yaml:3: waivers\[0\].ct: '08.201.03.09' in the waiver file of CT 08.201"):
        load_project(root=data_copy, with_fleet=False)


# ------------------------------------------------------------------ maintenance windows
def window_file(**over) -> str:
    fields = {"ct": '"05.091.07.11"', "start": "2026-12-02T08:00:00+01:00", "end": "2026-12-02T12:00:00+01:00",
              "reason": "Replacement of the VSAT modem"}
    fields.update(over)
    return "windows:\n  -\n" + "\n".join(f"    {k}: {v}" for k, v in fields.items() if v is not None) + "\n"


def test_windows_load_and_open_by_time(data_copy):
    (data_copy / "standards/maintenance.yaml").write_text(
        window_file() + window_file(ct=None, region='"08"', start="2026-12-05T22:00:00+01:00",
                                    end="2026-12-06T02:00:00+01:00").replace("windows:\n", ""), encoding="utf-8")
    p = load_project(root=data_copy, with_fleet=False)
    m = p.norms.maintenance
    assert len(m) == 2
    naour = p.registry.ct("05.091.07.11")
    at = lambda s: datetime.fromisoformat(s)  # noqa: E731
    assert not m.in_outage(naour.code, naour.region_code, at("2026-12-02T06:59:59+00:00"))
    assert m.in_outage(naour.code, naour.region_code, at("2026-12-02T07:00:00+00:00"))  # 08:00 +01:00
    assert not m.in_outage(naour.code, naour.region_code, at("2026-12-02T11:00:00+00:00"))  # end is exclusive
    region_08 = m.planned_outages(p.registry.cts.values(), at("2026-12-05T23:00:00+01:00"))
    assert region_08 == {c.code for c in p.registry.cts.values() if c.region_code == "08"} and FEZNA in region_08


@pytest.mark.parametrize("over, message", [
    ({"ct": '"05.091.07.99"'}, r"maintenance.yaml:3: windows\[0\].ct: unknown CT '05.091.07.99'"),
    ({"ct": None, "region": '"13"'}, r"maintenance.yaml:\d: windows\[0\].region: unknown region '13'"),
    ({"region": '"05"'}, r"maintenance.yaml:3: windows\[0\].ct: give exactly one of ct and region"),
    ({"end": "2026-12-02T07:00:00+01:00"}, r"maintenance.yaml:5: windows\[0\].end: end 2026-12-02T07:00:00\+01:00 is not after start"),
    ({"start": "2026-12-02T08:00:00"}, r"maintenance.yaml:4: windows\[0\].start: .*timezone"),
    ({"reason": None}, r"maintenance.yaml:3: windows\[0\].reason: required key is missing"),
])
def test_each_bad_window_gives_its_exact_error(data_copy, over, message):
    (data_copy / "standards/maintenance.yaml").write_text(window_file(**over), encoding="utf-8")
    with pytest.raises(CtfleetError, match=message):
        load_project(root=data_copy, with_fleet=False)


def test_exporter_serves_outcomes_ages_and_planned_outages(region08):
    import copy

    registry, norms = region08
    ct = registry.ct(FEZNA)
    n = copy.copy(norms)
    start = NOW - timedelta(hours=1)
    n.maintenance = Maintenance([Window(FEZNA, None, start, start + timedelta(hours=2), "modem", None, "m:2"),
                                 Window(None, "08", NOW + timedelta(days=1), NOW + timedelta(days=2), "cloud", None, "m:8")])
    n.waivers = Waivers()
    old_audit = [r.model_copy(update={"observed_at": NOW - timedelta(days=40)}) for r in all_pass(ct, registry, norms)
                 if r.device is not None]

    def served(at):
        reg = CollectorRegistry()
        reg.register(CtfleetCollector(build_snapshot(registry, n, None, stored=old_audit, now=at)))
        lv = dict(ct=ct.code, region="08", province=ct.province_code, segment=ct.segment.value, lot=str(ct.lot),
                  link=registry.sites_of(ct.code)[0].uplink.type.value)
        return reg, lv

    reg, lv = served(NOW)
    assert reg.get_sample_value("ctfleet_ct_planned_outage", lv) == 1
    # 40-day-old audits are stale: the CT cannot meet its norms (one outcome, never two)
    assert reg.get_sample_value("ctfleet_ct_outcome", dict(lv, outcome="meets")) == 0
    assert sum(reg.get_sample_value("ctfleet_ct_outcome", dict(lv, outcome=o)) for o in ("meets", "failing", "not_assessed")) == 1
    assert reg.get_sample_value("ctfleet_ct_results_stale", lv) == len(old_audit) > 0
    assert reg.get_sample_value("ctfleet_ct_result_age_seconds", dict(lv, source="audit")) == pytest.approx(40 * 86400)
    other = next(c for c in registry.cts.values() if c.code != FEZNA)
    olv = dict(ct=other.code, region="08", province=other.province_code or "", segment=other.segment.value, lot=str(other.lot),
               link=registry.sites_of(other.code)[0].uplink.type.value)
    assert reg.get_sample_value("ctfleet_ct_planned_outage", olv) == 0
    # the window closes; the region's opens the next day for every CT of region 08
    reg, lv = served(NOW + timedelta(hours=1, seconds=1))
    assert reg.get_sample_value("ctfleet_ct_planned_outage", lv) == 0
    reg, lv = served(NOW + timedelta(days=1, hours=1))
    assert reg.get_sample_value("ctfleet_ct_planned_outage", lv) == 1 and reg.get_sample_value("ctfleet_ct_planned_outage", olv) == 1
