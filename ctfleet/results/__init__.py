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
from ctfleet.core.inventory import InventoryRecord, newest

#: How many observed inventories the file store keeps per device (newest last).
INVENTORY_KEEP = 100

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

    # Observed inventories: ``inventory/<CT>/<device>.json``, a JSON list of records, oldest
    # first (the device's history, the last :data:`INVENTORY_KEEP`). Not ``*.jsonl``: the
    # result batches' readers never see them.
    def _inventory_path(self, ct: str, device: str) -> Path:
        if not _BATCH.match(ct) or not _BATCH.match(device):
            raise ValueError(f"CT {ct!r} or device {device!r} cannot name an inventory file ({_BATCH.pattern})")
        return self.root / "inventory" / ct / f"{device}.json"

    def write_inventory(self, batch: str, records: Iterable[InventoryRecord]) -> int:
        """Add records to their devices' histories (one already there is not added twice)."""
        import json

        n = 0
        by_path: dict[Path, list[InventoryRecord]] = {}
        for r in records:
            by_path.setdefault(self._inventory_path(r.ct, r.device), []).append(r)
        for path, new in by_path.items():
            old = self._read_inventory(path)
            seen = {r.observed_at for r in old}
            add = [r for r in new if r.observed_at not in seen]
            if not add:
                continue
            n += len(add)
            rows = sorted(old + add, key=lambda r: r.observed_at)[-INVENTORY_KEEP:]
            atomic_write_text(path, json.dumps([json.loads(r.model_dump_json()) for r in rows], indent=1) + "\n")
        return n

    def _read_inventory(self, path: Path) -> list[InventoryRecord]:
        import json

        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise InputError(Problem(str(path), f"not a JSON list of inventory records: {exc}")) from None
        out = []
        for n, item in enumerate(data if isinstance(data, list) else [], 1):
            try:
                out.append(InventoryRecord.model_validate(item))
            except ValueError as exc:
                raise InputError(Problem(str(path), f"bad inventory record {n}: {str(exc).splitlines()[0]}")) from None
        return out

    def iter_inventory(self, cts: set[str] | None = None) -> Iterator[InventoryRecord]:
        """The newest inventory record per (CT, device)."""
        base = self.root / "inventory"
        if not base.is_dir():
            return
        rows = []
        cache = self.__dict__.setdefault("_inventory_cache", {})
        for d in sorted(p for p in base.iterdir() if p.is_dir() and (cts is None or p.name in cts)):
            for f in sorted(d.glob("*.json")):
                # Each file is replaced whole (a temporary file renamed): a new inode. Read
                # again only then (a collector asks every sweep; a stat is cheap, parsing not).
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
                hit = cache.get(f)
                if hit is None or hit[0] != stamp:
                    hit = cache[f] = (stamp, self._read_inventory(f)[-1:])
                rows += hit[1]
        yield from newest(rows).values()

    def inventory_history(self, ct: str, device: str) -> list[InventoryRecord]:
        return self._read_inventory(self._inventory_path(ct, device))


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
