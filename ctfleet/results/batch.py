"""The batch exchange format: JSONL, one :class:`~ctfleet.core.compliance.ControlResult` a line,
and the audit's observed inventories (:class:`~ctfleet.core.inventory.InventoryRecord`, a
line with ``"record":"inventory"``) after them.

The same text is a file in the file store (``RESULTS_DIR/<source>/<batch>.jsonl``), a
file in a host's store-and-forward spool, and the body of ``PUT /v1/batches/<batch id>``
to a region's results service::

    {"ct":"04.161.01.03","device":"th01","control":"SYS-3","status":"fail","source":"audit",...}
    {"ct":"04.161.01.03","device":"th01","control":"SYS-4","status":"pass","source":"audit",...}
    {"record":"inventory","ct":"04.161.01.03","device":"th01","cpu_count":4,"memory_mib":15921,...}

:func:`parse_batch` validates the whole text before anything is stored: every bad line is
named (line number, field, what is valid), and a batch with any bad line is refused whole.
:func:`check_scope` refuses results of CTs outside a region. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pydantic import ValidationError

from ctfleet.core.compliance import ControlResult
from ctfleet.core.errors import InputErrors, Problem
from ctfleet.core.inventory import InventoryRecord

#: A batch id (and a file store batch name): what a sender chooses, e.g. ``th01-20261127T080000Z-after``.
BATCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
#: Bounds of one batch: a host's audit is tens of results; a collector's sweep of a region
#: a few tens of thousands. Bigger inputs are refused before parsing.
MAX_BATCH_BYTES = 32 * 2**20
MAX_BATCH_RESULTS = 200_000
#: At most this many problems are listed (the rest are counted).
MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Batch:
    """A validated batch: its id, its results and the SHA-256 of its text (same id, other
    text = a conflict, never a silent overwrite)."""

    batch_id: str
    results: tuple[ControlResult, ...]
    sha256: str
    inventories: tuple[InventoryRecord, ...] = ()

    @property
    def cts(self) -> set[str]:
        return {r.ct for r in self.results} | {i.ct for i in self.inventories}


def check_batch_id(batch_id: str, where: str = "batch id") -> None:
    if not BATCH_ID.match(batch_id or ""):
        raise InputErrors([Problem(where, f"{batch_id!r} is not a batch id",
                                   valid=f"1-121 letters, digits, '.', '_' or '-', starting with a letter or digit ({BATCH_ID.pattern})")])


def parse_batch(batch_id: str, text: str | bytes, where: str | None = None) -> Batch:
    """Validate a batch's text against the shared result model; raise :class:`InputErrors`
    naming every bad line (``<where>:<line>: <field>: <message>``).

    >>> b = parse_batch("b1", '{"ct":"04.161.01.03","control":"LNK-1","status":"pass","source":"snmp","observed_at":"2026-11-27T08:00:00Z"}\\n')
    >>> len(b.results), b.results[0].control
    (1, 'LNK-1')
    >>> try:
    ...     parse_batch("b1", '{"ct":"04.161.01.03","control":"LNK-1","status":"ok","source":"snmp"}')
    ... except InputErrors as e:
    ...     print(e.problems[0])
    b1:1: status: Input should be 'pass', 'fail', 'unknown' or 'waived'
    """
    where = where or batch_id
    check_batch_id(batch_id, where)
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_BATCH_BYTES:
        raise InputErrors([Problem(where, f"batch of {len(raw):,} bytes is too big", valid=f"at most {MAX_BATCH_BYTES:,} bytes: split it")])
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputErrors([Problem(where, f"not UTF-8 text (byte {exc.start})", valid="UTF-8 JSON lines")]) from None
    problems: list[Problem] = []
    results: list[ControlResult] = []
    inventories: list[InventoryRecord] = []
    bad = 0
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        if len(results) >= MAX_BATCH_RESULTS:
            raise InputErrors([Problem(where, f"more than {MAX_BATCH_RESULTS:,} results", line=n, valid="split the batch")])
        try:
            if '"record"' in line and _INVENTORY.search(line):
                inventories.append(InventoryRecord.model_validate_json(line))
            else:
                results.append(ControlResult.model_validate_json(line))
        except ValidationError as exc:
            bad += 1
            if len(problems) < MAX_PROBLEMS:
                for e in exc.errors()[:3]:
                    loc = ".".join(str(x) for x in e.get("loc", ()))
                    msg = e.get("msg", "invalid")
                    if e.get("type", "").startswith("json"):
                        loc, msg = None, "not a JSON object: " + msg
                    problems.append(Problem(where, msg, line=n, key=loc or None))
    if bad > len(problems) and problems:
        problems.append(Problem(where, f"... and more: {bad} bad line(s) in all"))
    if problems:
        raise InputErrors(problems)
    if not results and not inventories:
        raise InputErrors([Problem(where, "empty batch", valid="one JSON result per line")])
    return Batch(batch_id=batch_id, results=tuple(results), sha256=hashlib.sha256(raw).hexdigest(),
                 inventories=tuple(inventories))


_INVENTORY = re.compile(r'"record"\s*:\s*"inventory"')


def render_batch(results, inventories=()) -> str:
    """The JSONL text of results and inventory records (what :func:`parse_batch` reads back)."""
    return "".join(r.model_dump_json() + "\n" for r in results) + "".join(i.model_dump_json() + "\n" for i in inventories)


def check_scope(batch: Batch, region: str | None, known_cts: set[str] | None, where: str | None = None) -> None:
    """Refuse a batch with any result for a CT outside ``region`` (or unknown to the registry).

    A CT's region is the first two digits of its HCP code (``04.161.01.03`` is in region 04).
    """
    where = where or batch.batch_id
    problems: list[Problem] = []
    seen: set[str] = set()
    for n, r in enumerate((*batch.results, *batch.inventories), 1):
        if r.ct in seen:
            continue
        seen.add(r.ct)
        if region and r.ct.split(".")[0] != region:
            problems.append(Problem(where, f"CT {r.ct} is in region {r.ct.split('.')[0]}; this service takes region {region} only",
                                    line=n, key="ct", valid=f"a CT of region {region}: send it to its own region's service"))
        elif known_cts is not None and r.ct not in known_cts:
            problems.append(Problem(where, f"CT {r.ct!r} is not in this service's registry", line=n, key="ct",
                                    valid=f"a CT of region {region}" if region else "an HCP code of the registry"))
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise InputErrors(problems)
