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
"""

from __future__ import annotations

import os
import time
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
