"""The results store: files on disk where audits and collectors put control results and
the exporter reads them.

Layout: ``RESULTS_DIR/<source>/<batch>.jsonl``, one JSON result per line, each batch
written to a temporary file in the same directory and renamed into place (atomic on
POSIX), so a reader never sees half a batch. A writer replaces its own batch (e.g. the
SNMP collector writes ``snmp/sweep.jsonl`` every sweep; an audit writes
``audit/<ct>.jsonl``), and readers keep the newest result per (CT, device, control).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from ctfleet.core.compliance import ControlResult, Source, latest
from ctfleet.core.errors import InputError, Problem

_BATCH = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class ResultsStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def write_batch(self, source: Source, batch: str, results: Iterable[ControlResult]) -> Path:
        if not _BATCH.match(batch):
            raise ValueError(f"batch name {batch!r} must match {_BATCH.pattern}")
        path = self.root / Source(source).value / f"{batch}.jsonl"
        atomic_write_text(path, "".join(r.model_dump_json() + "\n" for r in results))
        return path

    def batch_files(self) -> list[tuple[Path, os.stat_result]]:
        """Every batch file, in the order :meth:`iter_results` reads them, with its
        ``stat`` (a reader that keeps parsed batches compares inode, size, mtime and ctime)."""
        if not self.root.is_dir():
            return []
        out = []
        for path in sorted(self.root.glob("*/*.jsonl")):
            try:
                out.append((path, path.stat()))
            except FileNotFoundError:  # replaced or removed meanwhile
                continue
        return out

    def read_batch(self, path: Path) -> Iterator[ControlResult]:
        """The results of one batch file; a bad line is an :class:`InputError` naming file and line."""
        with Path(path).open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield ControlResult.model_validate_json(line)
                except ValueError as exc:
                    raise InputError(Problem(str(path), f"bad result record: {str(exc).splitlines()[0]}", line=n)) from None

    def iter_results(self) -> Iterator[ControlResult]:
        for path, _ in self.batch_files():
            try:
                yield from self.read_batch(path)
            except FileNotFoundError:
                continue

    def latest(self) -> dict[tuple, ControlResult]:
        return latest(self.iter_results())


def open_store(spec: str | Path):
    """The results store a configuration names: a database URL (``postgresql://...``,
    ``sqlite:///...``) or a ``*.db`` file opens the results database (migrated to the
    current schema); any other path is the JSONL file store directory."""
    text = str(spec)
    if "://" in text or text.endswith((".db", ".sqlite")):
        from ctfleet.results.db import SqlStore

        store = SqlStore(text)
        store.migrate()
        return store
    return ResultsStore(Path(text))
