"""The results database on both engines: SQLite (embedded default) and a real PostgreSQL.

Each test runs twice (``store`` is parametrised); PostgreSQL is the Debian package,
started once per session on loopback (tests/conftest.py ``postgresql``).
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect

from ctfleet.core.compliance import ControlResult
from ctfleet.core.errors import InputErrors
from ctfleet.results.batch import check_scope, parse_batch, render_batch
from ctfleet.results.db import BatchConflict, SqlStore
from ctfleet.results.schema import metadata

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
_db = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqlStore(tmp_path / "results.db")
    else:
        pg = request.getfixturevalue("postgresql")
        s = SqlStore(pg.url(f"store_{next(_db)}"))
    s.migrate()
    yield s
    s.dispose()


def audit(host: str, ct: str = "04.161.01.03", status: dict[str, str] | None = None, at: datetime = T0, n: int = 20):
    status = status or {}
    return [ControlResult(ct=ct, device=host, control=f"SYS-{i}", status=status.get(f"SYS-{i}", "pass"), source="audit",
                          evidence=f"check {i}", observed=i, expected=True, observed_at=at) for i in range(1, n + 1)]


def batch(batch_id: str, rows) -> "object":
    return parse_batch(batch_id, render_batch(rows))


def test_migrations_create_the_schema_the_code_uses(store):
    insp = inspect(store.engine)
    for table in metadata.tables.values():
        assert table.name in insp.get_table_names()
        got = {c["name"] for c in insp.get_columns(table.name)}
        assert got == {c.name for c in table.columns}, table.name
    for table in metadata.tables.values():  # the indexes the code declares are the ones the migrations made
        # (PostgreSQL lists a unique constraint's index too: it is the constraint's, not declared as an index)
        assert {tuple(i["column_names"]) for i in insp.get_indexes(table.name) if not i.get("duplicates_constraint")} == {
            tuple(c.name for c in ix.columns) for ix in table.indexes}, table.name
    assert {tuple(i["column_names"]) for i in insp.get_indexes("results_history")} == {("ct", "device", "control", "observed_at")}
    store.migrate()  # twice is a no-op


def test_batch_stored_whole_once_and_read_back(store):
    rows = audit("th01", status={"SYS-3": "fail"})
    first = store.ingest(batch("th01-a", rows), sender="tech-04")
    assert (first.stored, first.duplicate, first.changed) == (20, False, 20)
    again = store.ingest(batch("th01-a", rows))
    assert again.duplicate and again.stored == 20
    assert store.counts() == {"result_batches": 1, "results_current": 20, "results_history": 20}
    got = {r.key: r for r in store.iter_results()}
    assert got[("04.161.01.03", "th01", "SYS-3")].status.value == "fail"
    assert got[("04.161.01.03", "th01", "SYS-3")].observed_at == T0
    assert got[("04.161.01.03", "th01", "SYS-5")].observed == 5
    assert store.batch("th01-a")["sender"] == "tech-04"


def test_same_id_other_content_is_a_conflict_and_writes_nothing(store):
    store.ingest(batch("th01-a", audit("th01")))
    with pytest.raises(BatchConflict, match="already stored with other content"):
        store.ingest(batch("th01-a", audit("th01", status={"SYS-1": "fail"})))
    assert all(r.status.value == "pass" for r in store.iter_results())


def test_history_records_when_a_control_changed(store):
    store.ingest(batch("a", audit("th01", at=T0)))
    store.ingest(batch("b", audit("th01", at=T0 + timedelta(hours=1))))  # nothing changed
    store.ingest(batch("c", audit("th01", status={"SYS-3": "fail"}, at=T0 + timedelta(hours=2))))
    store.ingest(batch("d", audit("th01", at=T0 + timedelta(hours=3))))  # fixed
    store.ingest(batch("late", audit("th01", status={"SYS-3": "unknown"}, at=T0 + timedelta(minutes=30))))  # late, older
    h = store.history("04.161.01.03", "th01", "SYS-3")
    assert [(c.observed_at - T0, c.status.value, c.previous_status and c.previous_status.value) for c in h] == [
        (timedelta(0), "pass", None), (timedelta(hours=2), "fail", "pass"), (timedelta(hours=3), "pass", "fail")]
    assert [c.batch_id for c in h] == ["a", "c", "d"]
    cur = {r.key: r for r in store.iter_results()}[("04.161.01.03", "th01", "SYS-3")]
    assert (cur.status.value, cur.observed_at) == ("pass", T0 + timedelta(hours=3))  # the late one did not win
    assert store.history("04.161.01.03", "th01", "SYS-4")[-1].observed_at == T0


def test_ct_level_results_have_no_device(store):
    r = ControlResult(ct="04.161.01.03", control="LNK-1", status="pass", source="registry", observed_at=T0)
    store.ingest(batch("ct-level", [r]))
    (got,) = store.iter_results()
    assert got.device is None and got.key == r.key
    assert len(store.history("04.161.01.03", None, "LNK-1")) == 1


def test_concurrent_writers_lose_nothing_and_readers_are_not_blocked(store):
    """8 writers x 25 batches of 20 results, while a reader reads all the time: every
    batch is stored, every result is there, and reads keep answering during the writes."""
    errors: list[BaseException] = []
    reads: list[float] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        try:
            for b in range(25):
                store.ingest(batch(f"w{w}-b{b}", audit(f"h{w}-{b}", at=T0 + timedelta(seconds=b))))
                store.ingest(batch(f"w{w}-b{b}", audit(f"h{w}-{b}", at=T0 + timedelta(seconds=b))))  # resent: stored once
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def reader() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            sum(1 for _ in store.iter_results())
            reads.append(time.perf_counter() - t)

    rt = threading.Thread(target=reader)
    rt.start()
    ws = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in ws:
        t.start()
    for t in ws:
        t.join(120)
    stop.set()
    rt.join(30)
    assert not errors, errors[:3]
    assert store.counts() == {"result_batches": 200, "results_current": 4000, "results_history": 4000}
    assert len(reads) >= 5, "the reader was blocked by the writers"
    assert max(reads) < 5.0


def test_bad_batches_name_the_line_and_what_is_valid():
    good = render_batch(audit("th01", n=2))
    with pytest.raises(InputErrors) as e:
        parse_batch("b", good + '{"ct":"04.161.01.03","control":"SYS-9","status":"ok","source":"audit"}\nnot json\n')
    text = str(e.value)
    assert "b:3: status: Input should be 'pass', 'fail', 'unknown' or 'waived'" in text
    assert "b:4: not a JSON object" in text
    with pytest.raises(InputErrors, match="is not a batch id"):
        parse_batch("../etc/passwd", good)
    with pytest.raises(InputErrors, match="empty batch"):
        parse_batch("b", "\n")
    with pytest.raises(InputErrors, match="a waived result needs a waiver_reason"):
        parse_batch("b", '{"ct":"04.161.01.03","control":"SYS-9","status":"waived","source":"audit"}\n')


def test_scope_refuses_other_regions_cts():
    b = batch("mixed", audit("th01") + audit("r05", ct="05.191.01.01"))
    check_scope(batch("ok", audit("th01")), "04", None)
    with pytest.raises(InputErrors) as e:
        check_scope(b, "04", None)
    assert "CT 05.191.01.01 is in region 05; this service takes region 04 only" in str(e.value)
    with pytest.raises(InputErrors, match="not in this service's registry"):
        check_scope(b, None, {"04.161.01.03"})


def test_open_store_picks_the_database_or_the_files(tmp_path):
    from ctfleet.results import ResultsStore, open_store

    assert isinstance(open_store(tmp_path / "results"), ResultsStore)
    db = open_store(str(tmp_path / "results.db"))
    assert isinstance(db, SqlStore) and db.counts()["result_batches"] == 0  # migrated
    db.write_batch("snmp", "region-04", audit("r1"))
    db.write_batch("snmp", "region-04", audit("r1", status={"SYS-2": "fail"}, at=T0 + timedelta(minutes=1)))
    assert db.counts()["result_batches"] == 2  # a writer can call it every sweep
    assert {r.key: r.status.value for r in db.iter_results()}[("04.161.01.03", "r1", "SYS-2")] == "fail"
    db.dispose()
