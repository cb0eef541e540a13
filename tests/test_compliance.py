"""The shared compliance model: unknown and waived never count as pass; coverage beside compliance."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from ctfleet.core.compliance import Compliance, ControlResult, Outcome, Source, Status, compliance, judge, latest
from ctfleet.results import ResultsStore

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def res(control, status, device=None, at=T0, **kw):
    return ControlResult(ct="01.511.01.0", device=device, control=control, status=status, source=Source.AUDIT,
                         observed_at=at, **kw)


def test_unknown_and_waived_are_not_pass():
    expected = [(None, "LNK-1"), (None, "LNK-2"), ("srv1", "SYS-3"), ("srv1", "SYS-4")]
    c = compliance(expected, [res("LNK-1", "pass"), res("SYS-3", "waived", "srv1", waiver_reason="legacy app until 2027"),
                              res("SYS-4", "unknown", "srv1")])
    assert (c.applicable, c.passed, c.failed, c.unknown, c.waived) == (4, 1, 0, 2, 1)
    assert c.ratio == 0.25 and c.coverage == 0.25
    assert c.outcome == Outcome.NOT_ASSESSED and not c.meets_norms  # no failure, but unknowns: not "meeting"
    c2 = compliance(expected, [])
    assert c2.outcome == Outcome.NOT_ASSESSED and c2.coverage == 0
    c3 = compliance(expected[:2], [res("LNK-1", "pass"), res("LNK-2", "pass")])
    assert c3.outcome == Outcome.MEETS and c3.meets_norms
    c4 = compliance(expected, [res("LNK-1", "fail")])
    assert c4.outcome == Outcome.FAILING  # one known failure is enough, whatever is unknown


def test_newest_result_wins_and_unexpected_ignored():
    old = res("LNK-1", "fail", at=T0)
    new = res("LNK-1", "pass", at=T0 + timedelta(minutes=5))
    stray = res("XYZ-1", "fail")
    c = compliance([(None, "LNK-1")], [new, old, stray])
    assert (c.passed, c.failed) == (1, 0)
    assert latest([old, new])[old.key] == new


def test_waiver_needs_reason():
    with pytest.raises(ValueError, match="waiver_reason"):
        res("LNK-1", "waived")


def test_judge(registry_only):
    ctl = registry_only.norms.controls
    assert judge(ctl["LNK-1"], 8, 10) == Status.PASS and judge(ctl["LNK-1"], 8, 4) == Status.FAIL
    assert judge(ctl["WS-1"], [22], [22, 3389]) == Status.FAIL
    assert judge(ctl["SRV-1"], ["file_share", "backup_agent"], ["backup_agent", "file_share", "dhcp"]) == Status.PASS
    assert judge(ctl["LNK-5"], ["fibre", "adsl"], "vsat") == Status.FAIL
    assert judge(ctl["LNK-1"], 8, None) == Status.UNKNOWN
    assert judge(ctl["LNK-1"], 8, "n/a") == Status.UNKNOWN


@given(st.lists(st.sampled_from(list(Status)), max_size=30))
def test_compliance_counts_add_up(statuses):
    results = [res(f"C-{i}", s, waiver_reason="r" if s == Status.WAIVED else None) for i, s in enumerate(statuses)]
    c: Compliance = compliance([(None, f"C-{i}") for i in range(len(statuses) + 3)], results)
    assert c.passed + c.failed + c.unknown + c.waived == c.applicable
    assert c.unknown >= 3
    assert 0 <= c.ratio <= c.coverage <= 1


def test_store_round_trip_and_atomic(tmp_path):
    store = ResultsStore(tmp_path / "results")
    path = store.write_batch(Source.AUDIT, "01.511.01.0", [res("SYS-3", "pass", "srv1"), res("SYS-4", "fail", "srv1")])
    assert [r.status for r in store.iter_results()] == [Status.PASS, Status.FAIL]
    store.write_batch(Source.AUDIT, "01.511.01.0", [res("SYS-3", "fail", "srv1")])  # replaces the batch
    assert [r.status for r in store.iter_results()] == [Status.FAIL]
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_store_failed_write_leaves_previous_batch(tmp_path):
    store = ResultsStore(tmp_path)
    store.write_batch(Source.SNMP, "sweep", [res("RTR-2", "pass", "r1")])

    class Boom:
        def model_dump_json(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.write_batch(Source.SNMP, "sweep", [res("RTR-2", "fail", "r1"), Boom()])
    assert [r.status for r in store.iter_results()] == [Status.PASS]
    assert sorted(p.name for p in (tmp_path / "snmp").iterdir()) == ["sweep.jsonl"]


def test_store_names_bad_record(tmp_path):
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "x.jsonl").write_text('{"ct": "01"}\n')
    from ctfleet.core.errors import CtfleetError

    with pytest.raises(CtfleetError, match=r"audit/x.jsonl:1: bad result record"):
        list(ResultsStore(tmp_path).iter_results())
