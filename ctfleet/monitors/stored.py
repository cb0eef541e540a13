"""The results store's batch files as parts of an :class:`~ctfleet.monitors.exporter.Exposition`,
each parsed once and again only when the file changed.

A collector's exposition counts every result audits left in the store (the demo's
simulated audits are ~155,000 results). Parsing them at every sweep cost more than the
sweep, so each batch file is kept parsed with its identity — inode, size, mtime and ctime
(writers replace a batch by renaming a new file over it, so a rewrite gets a new inode
and a new ctime) — and is read again only when that identity changes. A file modified
less than :data:`RACY_SECONDS` before it was read may still change within the same
timestamp tick without changing its identity (git calls such an entry "racily clean"):
it is read again at the next sweep, until it is older. The collector's own batch, just
written, is handed over with :meth:`StoredBatches.remember` instead of being read back.

A results database is followed the same way by :class:`StoredRows`: one part per CT, and
at each sweep only the rows written by batches that arrived since the last look are read
(the database's change feed), not the whole current table.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable

from ctfleet.core.compliance import ControlResult
from ctfleet.results import ResultsStore

RACY_SECONDS = 2.0


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StoredBatches:
    """``parts()``: one part per batch file, for :meth:`Exposition.update`.

    >>> # feed = StoredBatches(store); exposition.update(sweep, feed.parts())
    """

    def __init__(self, store: ResultsStore):
        self.store = store
        self._cache: dict[Path, tuple[tuple, object, tuple[ControlResult, ...]]] = {}  # path -> (identity, version, results)
        self.reads = 0  # files parsed since the start (for tests and the benchmark)

    def remember(self, path: Path, results: Iterable[ControlResult]) -> None:
        """``results`` were just written to ``path`` by this process (not read back)."""
        ident = _identity(Path(path).stat())
        self._cache[Path(path)] = (ident, ident, tuple(results))

    def parts(self) -> list:
        out = []
        now_ns = time.time_ns()
        present = set()
        for path, st in self.store.batch_files():
            present.add(path)
            ident = _identity(st)
            cached = self._cache.get(path)
            if cached is None or cached[0] != ident or cached[1] is not cached[0]:  # new, changed or racy
                try:
                    results = tuple(self.store.read_batch(path))
                except FileNotFoundError:  # replaced or removed since it was listed
                    continue
                self.reads += 1
                racy = now_ns - st.st_mtime_ns < RACY_SECONDS * 1e9
                cached = self._cache[path] = (ident, object() if racy else ident, results)
            results = cached[2]
            # keyed by the path's parts: parts merge in iter_results' (sorted paths') order
            out.append(((1, path.parts), cached[1], lambda r=results: r))
        for gone in [p for p in self._cache if p not in present]:
            del self._cache[gone]
        return out


class StoredRows:
    """``parts()`` for a results database (:class:`ctfleet.results.db.SqlStore`): one part
    per CT of ``cts``, whose version changes only when a batch stored since the last call
    wrote one of its rows.

    The first call reads every current row. Later calls ask the database which batches
    arrived since (:meth:`~ctfleet.results.db.SqlStore.batches_since`) and read only the
    current rows those batches wrote (:meth:`~ctfleet.results.db.SqlStore.results_of_batches`):
    a region's 66,000 rows are read once, then a sweep reads what changed.

    Why a window and a resync: a batch's ``received_at`` is taken when its transaction
    starts, so a long ingest can commit after a shorter one that started later. Batches
    are therefore asked for from :data:`WINDOW` before the newest one seen, and those
    already seen are skipped by id. Every :data:`RESYNC_EVERY` calls everything is read
    again, bounding the harm of a writer whose clock is further behind than the window
    (the resync period of a Kubernetes informer plays the same part).
    """

    WINDOW = timedelta(minutes=10)
    RESYNC_EVERY = 60

    def __init__(self, store, cts: Iterable[str]):
        self.store = store
        self.cts = frozenset(cts)
        self._rows: dict[str, dict[tuple, ControlResult]] = {}  # CT -> (device, control) -> current row
        self._versions: dict[str, object] = {}
        self._seen: dict[str, datetime] = {}  # batch id -> received_at, within the window
        self._newest: datetime | None = None
        self._calls = 0
        self.reads = 0  # rows read since the start (for tests and the benchmark)

    def _take(self, rows: Iterable[ControlResult], full: bool) -> set[str]:
        fresh: dict[str, dict[tuple, ControlResult]] = {}
        for r in rows:
            if r.ct in self.cts:
                fresh.setdefault(r.ct, {})[(r.device, r.control)] = r
        if full:
            self._rows = fresh
            return set(fresh) | set(self._versions)
        for ct, rows_of_ct in fresh.items():
            self._rows.setdefault(ct, {}).update(rows_of_ct)
        return set(fresh)

    def parts(self) -> list:
        full = self._newest is None or self._calls % self.RESYNC_EVERY == 0
        self._calls += 1
        # batches first, rows second: a batch committed in between is read at the next call.
        # A full read needs only the window's batches too (a collector stores one batch per
        # sweep: every batch ever would grow without bound)
        since = self._newest if not full else self.store.newest_received()
        arrived = self.store.batches_since(None if since is None else since - self.WINDOW)
        if full:
            rows = list(self.store.iter_results(set(self.cts)))
        else:
            new = [b for b in arrived if b not in self._seen]
            rows = self.store.results_of_batches(new) if new else []
        changed = self._take(rows, full)
        self.reads += len(rows)
        if arrived:
            self._seen.update(arrived)
            self._newest = max(arrived.values()) if self._newest is None else max(self._newest, *arrived.values())
            floor = self._newest - self.WINDOW
            self._seen = {b: t for b, t in self._seen.items() if t >= floor}
        for ct in changed:
            self._versions[ct] = object()
        return [((1, "database", ct), self._versions[ct], lambda rows=rows_of_ct: list(rows.values()))
                for ct, rows_of_ct in sorted(self._rows.items())]
