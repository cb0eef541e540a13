"""A collector on a results database reads only what changed (the change feed,
:class:`ctfleet.monitors.stored.StoredRows`): the first sweep reads every current row,
later sweeps read the rows that batches stored since wrote, and the exposition equals one
built from all the rows, byte for byte. On SQLite and on a real PostgreSQL."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from sqlalchemy import text
from test_exposition_incremental import _audits, _sweep, region12  # noqa: F401  (region12: the fixture)
from test_results_store import store  # noqa: F401  (the fixture: SQLite and a real PostgreSQL, migrated)

from ctfleet.core.compliance import Source, Status
from ctfleet.monitors.exporter import Exposition, sweep_part
from ctfleet.monitors.stored import StoredRows
from ctfleet.monitors.sweep import sweep_results
from ctfleet.results.batch import parse_batch, render_batch

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)


def _everything(db, registry, norms, sweep, now) -> bytes:
    return Exposition(registry, norms).update(sweep, [sweep_part(sweep, registry, norms),
                                                      ((1, "all"), 1, lambda: list(db.iter_results()))], now=now).text()


def test_a_sweep_reads_only_the_rows_new_batches_wrote(store, region12):  # noqa: F811
    registry, norms = region12
    rnd = random.Random(4)
    audits = _audits(registry, norms, T0, rnd, 0.6)
    store.ingest(parse_batch("audit-a", render_batch(audits)), received_at=T0)
    feed, exp = StoredRows(store, registry.cts), Exposition(registry, norms)
    sweep = _sweep(registry, T0, rnd)
    exp.update(sweep, [sweep_part(sweep, registry, norms), *feed.parts()], now=T0)
    assert feed.reads == len(audits)  # the first look reads everything

    # nothing new: nothing read, no CT loaded again
    sweep = _sweep(registry, T0 + timedelta(seconds=60), rnd)
    snap = exp.update(sweep, [sweep_part(sweep, registry, norms), *feed.parts()], now=T0 + timedelta(seconds=60))
    assert feed.reads == len(audits) and exp.stats["parts_loaded"] == 1  # the sweep's own part only
    assert snap.text() == _everything(store, registry, norms, sweep, T0 + timedelta(seconds=60))

    # a technician's batch changes two results of one CT: those two rows are read, that CT loaded
    ct = audits[0].ct
    mine = [r for r in audits if r.ct == ct][:2]
    changed = [r.model_copy(update={"status": Status.FAIL if r.status == Status.PASS else Status.PASS,
                                    "observed_at": T0 + timedelta(seconds=90)}) for r in mine]
    store.ingest(parse_batch("audit-b", render_batch(changed)), received_at=T0 + timedelta(seconds=90))
    sweep = _sweep(registry, T0 + timedelta(seconds=120), rnd)
    snap = exp.update(sweep, [sweep_part(sweep, registry, norms), *feed.parts()], now=T0 + timedelta(seconds=120))
    assert feed.reads == len(audits) + 2
    assert exp.stats["parts_loaded"] == 2  # the sweep's and that CT's
    assert snap.text() == _everything(store, registry, norms, sweep, T0 + timedelta(seconds=120))

    # a batch whose transaction started earlier but committed later (received_at before the
    # newest seen, within the window) is still seen, once
    late = [r.model_copy(update={"observed_at": T0 + timedelta(seconds=150), "status": Status.FAIL})
            for r in audits if r.ct != ct][:3]
    store.ingest(parse_batch("audit-late", render_batch(late)), received_at=T0 + timedelta(seconds=30))
    sweep = _sweep(registry, T0 + timedelta(seconds=180), rnd)
    snap = exp.update(sweep, [sweep_part(sweep, registry, norms), *feed.parts()], now=T0 + timedelta(seconds=180))
    assert feed.reads == len(audits) + 2 + 3
    assert snap.text() == _everything(store, registry, norms, sweep, T0 + timedelta(seconds=180))
    feed.parts()
    assert feed.reads == len(audits) + 5  # seen: not read again


def test_the_collector_own_batch_and_a_resync(store, region12):  # noqa: F811
    """The collector writes its sweep's results as a batch every sweep: only those rows come
    back; every RESYNC_EVERY looks everything is read again, and nothing differs."""
    registry, norms = region12
    rnd = random.Random(8)
    audits = _audits(registry, norms, T0, rnd, 0.5)
    store.ingest(parse_batch("audit-a", render_batch(audits)), received_at=T0)
    old = [r.model_copy(update={"observed_at": T0 - timedelta(days=1)}) for r in audits[:3]]
    store.ingest(parse_batch("audit-yesterday", render_batch(old)), received_at=T0 - timedelta(days=1))
    feed = StoredRows(store, registry.cts)
    feed.RESYNC_EVERY = 3
    asked, batches_since = [], store.batches_since
    store.batches_since = lambda since: asked.append(batches_since(since)) or asked[-1]  # the real query, recorded
    exp = Exposition(registry, norms)
    reads, want = [], []
    for i in range(4):
        now = T0 + timedelta(seconds=60 * (i + 1))
        sweep = _sweep(registry, now, rnd)
        results = list(sweep_results(sweep, registry, norms))
        store.ingest(parse_batch(f"snmp-{i}", render_batch(results)), received_at=now)
        before = feed.reads
        snap = exp.update(None, feed.parts(), now=now)
        reads.append(feed.reads - before)
        with store.engine.connect() as conn:  # counted apart: the rows this batch wrote, or all rows
            want.append(conn.execute(text("SELECT count(*) FROM results_current" + ("" if i in (0, 3) else
                                                                                   f" WHERE batch_id = 'snmp-{i}'"))).scalar_one())
        assert snap.text() == Exposition(registry, norms).update(None, [((1, "all"), 1, lambda: list(store.iter_results()))],
                                                                  now=now).text()
    assert reads == want, (reads, want)  # first look, two deltas, the resync
    # a full read asks only for the window's batches (a collector stores one per sweep, for ever)
    assert len(asked) == 4 and all("audit-yesterday" not in a for a in asked), [sorted(a) for a in asked]
    assert "audit-a" in asked[0] and "snmp-0" in asked[0]
    assert want[1] < want[0] / 10  # a delta is the sweep's own rows, a small part of the whole
    assert Source.SNMP in {r.source for r in store.iter_results()}
