"""The results database: PostgreSQL when deployed, SQLite as the embedded default.

::

    store = SqlStore("postgresql://ctfleet@db:5432/results")   # or "sqlite:///var/results.db"
    store.migrate()                                   # Alembic: create or upgrade the schema
    store.ingest(parse_batch("th01-20261127-after", text), sender="tech-04")
    #  -> Ingested(batch_id='th01-20261127-after', stored=31, duplicate=False)
    store.ingest(same batch again)                    # -> duplicate=True, nothing written
    store.history("04.161.01.03", "th01", "SYS-3")    # when it changed status
    for r in store.iter_results(): ...                # newest result per (CT, device, control)

How writes stay correct with many writers (the collector every sweep, ingest requests,
a rollout): each batch is one transaction, and write transactions are serialised —
a transaction-scoped advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite — so
the batch-id check, the "did the status change" comparison and the upsert of the current
row see one consistent state. A batch is stored whole or not at all; the caller is told
"stored" only after the commit. Readers are never blocked: PostgreSQL's MVCC, and SQLite
in WAL mode (readers see the last committed state while a writer writes).

A result older than the stored one for the same key (a late delivery) goes into neither
table: the current row keeps the newest observation, and history records changes in
observation order.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import create_engine, event, select, text, tuple_, update
from sqlalchemy.engine import Connection, Engine, make_url

from ctfleet.core.compliance import ControlResult, Source, Status
from ctfleet.core.errors import CtfleetError
from ctfleet.results.batch import Batch, check_batch_id
from ctfleet.core.inventory import InventoryRecord
from ctfleet.results.schema import INVENTORY_FACTS, NO_DEVICE, batches, current, history, inventory, metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = zlib.crc32(b"ctfleet-results-writer")  # pg_advisory_xact_lock key of the writers
_CHUNK = 400  # keys per IN (...) lookup: under SQLite's and PostgreSQL's parameter limits


class BatchConflict(CtfleetError):
    """A batch id already stored with another content."""


@dataclass(frozen=True)
class Ingested:
    batch_id: str
    stored: int
    duplicate: bool = False
    changed: int = 0  # results whose status changed (rows added to the history)


@dataclass(frozen=True)
class Change:
    """One row of a control's history on a device."""

    observed_at: datetime
    status: Status
    previous_status: Status | None
    source: Source
    batch_id: str


def database_url(spec: str | Path) -> str:
    """A SQLAlchemy URL from what a profile or a config holds.

    >>> database_url("postgresql://ctfleet@db:5432/results")
    'postgresql+psycopg://ctfleet@db:5432/results'
    >>> database_url("/var/lib/ctfleet/results.db")
    'sqlite:////var/lib/ctfleet/results.db'
    """
    s = str(spec)
    if s.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + s.split("://", 1)[1]
    if "://" in s:
        return s
    return f"sqlite:///{Path(s).resolve() if not Path(s).is_absolute() else s}"


def parse_url(url: str):
    """SQLAlchemy's URL object; an unparsable URL is one error that does not quote it (SQLAlchemy's
    own message shows the whole string, a password in it included)."""
    try:
        return make_url(url)
    except Exception:  # noqa: BLE001
        raise CtfleetError("results database: the URL does not parse (not shown, it may hold a password); "
                           "valid: postgresql://USER@HOST:PORT/DATABASE, sqlite:///PATH or a *.db file path") from None


class DatabaseUnavailable(CtfleetError):
    """The results database cannot be reached or refused the login; the message names the
    URL (without its password) and what to check."""


def database_error(exc: BaseException, url: str) -> DatabaseUnavailable | None:
    """One clear error for a failure to reach or use the database at ``url``, or None when
    ``exc`` is not a database error. Never a SQLAlchemy traceback, never the password:

    >>> from sqlalchemy.exc import OperationalError
    >>> e = OperationalError("", {}, Exception('connection failed: connection to server at "127.0.0.1", port 1 failed: Connection refused'))
    >>> print(database_error(e, "postgresql://ctfleet:pw@127.0.0.1:1/results"))
    results database postgresql+psycopg://ctfleet:***@127.0.0.1:1/results: cannot connect: connection refused (check that PostgreSQL runs and accepts TCP connections on 127.0.0.1:1, and the URL's host and port)
    """
    from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

    if not isinstance(exc, (SQLAlchemyError, OSError)) or isinstance(exc, ArgumentError):
        return None
    try:
        u = make_url(database_url(url))
        shown, password = u.render_as_string(hide_password=True), u.password
    except Exception:  # noqa: BLE001 - an unparsable URL: show nothing of it
        shown, password, u = "(URL not shown: it does not parse)", None, None
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text_ = " ".join(str(orig).split())
    low = text_.lower()
    where = f"{u.host or 'localhost'}:{u.port or 5432}" if u is not None else "the URL's host and port"
    user = (u.username if u is not None else None) or "(none)"
    if "password authentication failed" in low or "no password supplied" in low or "authentication failed" in low:
        what = (f"the server refused the login of user {user!r} (check the password: database_password's reference, "
                "PGPASSWORD or the URL's; and the user and pg_hba.conf on the server)")
    elif "connection refused" in low:
        what = (f"cannot connect: connection refused (check that PostgreSQL runs and accepts TCP connections on {where}, "
                "and the URL's host and port)")
    elif "timeout" in low or "timed out" in low:
        what = f"cannot connect: no answer from {where} in time (check the address, the firewall and the network policy)"
    elif "could not translate host name" in low or "name or service not known" in low or "failed to resolve" in low:
        what = f"cannot connect: the host name {u.host if u is not None else ''!s} does not resolve (check the URL's host)"
    elif "does not exist" in low and "database" in low:
        what = f"the database {u.database if u is not None else ''!s} does not exist on the server (create it, or fix the URL)"
    elif "unable to open database file" in low or "readonly database" in low:
        what = "cannot open the SQLite file (check the path and that the directory is writable)"
    else:
        first = text_[:300] or type(orig).__name__
        what = f"{type(orig).__name__}: {first}"
    if password:
        what = what.replace(password, "***")
    return DatabaseUnavailable(f"results database {shown}: {what}")


def _sqlite_setup(engine: Engine) -> None:
    # pysqlite's own transaction handling starts transactions lazily and never with
    # BEGIN IMMEDIATE; take it over (the SQLAlchemy documentation's recipe).
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at each WAL checkpoint; a crash loses no committed batch's integrity
        cur.execute("PRAGMA busy_timeout=60000")  # writers queue behind each other instead of failing
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ctfleet_write") else "BEGIN")


class SqlStore:
    """Results in a SQL database (see the module docstring). Thread-safe."""

    def __init__(self, url: str | Path, echo: bool = False):
        self.url = database_url(url)
        u = parse_url(self.url)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite" and u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(self.url, echo=echo, pool_pre_ping=self.dialect != "sqlite")
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)
        self._version = 0
        self._version_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqlStore({make_url(self.url).render_as_string(hide_password=True)!r})"

    @property
    def root(self) -> str:  # what messages show as "where results go"
        return make_url(self.url).render_as_string(hide_password=True)

    # ---------------------------------------------------------------- schema
    def migrate(self, revision: str = "head") -> None:
        """Create or upgrade the schema with the Alembic migrations."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self._write() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    def dispose(self) -> None:
        self.engine.dispose()

    def _write(self):
        conn = self.engine.connect().execution_options(ctfleet_write=True)
        return _WriteTx(conn, self.dialect)

    # ---------------------------------------------------------------- writes
    def ingest(self, batch: Batch, sender: str = "", received_at: datetime | None = None) -> Ingested:
        """Store a validated batch whole, once. Same id and same text again: ``duplicate``;
        same id with another text: :class:`BatchConflict` (nothing written)."""
        now = received_at or datetime.now(timezone.utc)
        with self._write() as conn:
            prev = conn.execute(select(batches.c.sha256, batches.c.results).where(batches.c.batch_id == batch.batch_id)).first()
            if prev is not None:
                if prev.sha256 != batch.sha256:
                    raise BatchConflict(f"batch {batch.batch_id}: already stored with other content "
                                        f"(sha256 {prev.sha256[:12]}..., this one {batch.sha256[:12]}...): "
                                        "a new batch needs a new id")
                return Ingested(batch.batch_id, stored=prev.results, duplicate=True)
            changed = self._upsert(conn, batch.batch_id, batch.results)
            self._insert_inventory(conn, batch.batch_id, batch.inventories)
            conn.execute(batches.insert().values(batch_id=batch.batch_id, sha256=batch.sha256, results=len(batch.results),
                                                 sender=sender[:128], received_at=now))
        self._bump()
        return Ingested(batch.batch_id, stored=len(batch.results), changed=changed)

    def write_batch(self, source: Source, batch: str, results: Iterable[ControlResult]) -> str:
        """The file store's call (a collector's sweep, a rollout's audit): stored as a new
        batch ``<source>-<batch>-<time>``, so a writer can call it every sweep."""
        import hashlib

        from ctfleet.results.batch import render_batch

        rows = tuple(results)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        batch_id = f"{Source(source).value}-{batch}"[:100] + f"-{stamp}"
        text_ = render_batch(rows)
        if rows:
            self.ingest(Batch(batch_id, rows, hashlib.sha256(text_.encode()).hexdigest()))
        return batch_id

    def write_inventory(self, batch: str, records: Iterable[InventoryRecord]) -> int:
        """Store observed inventories (an audit's); a record already stored (same CT, device
        and time) is not stored twice. Returns how many were new."""
        rows = tuple(records)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        with self._write() as conn:
            n = self._insert_inventory(conn, f"inventory-{batch}"[:100] + f"-{stamp}", rows)
        self._bump()
        return n

    def _insert_inventory(self, conn: Connection, batch_id: str, records: Iterable[InventoryRecord]) -> int:
        new = {}
        for r in records:
            obs = r.observed_at if r.observed_at.tzinfo else r.observed_at.replace(tzinfo=timezone.utc)
            new[(r.ct, r.device, obs.replace(tzinfo=None))] = (r, obs)
        if not new:
            return 0
        i = inventory.c
        have = set()
        keys = sorted({(k[0], k[1]) for k in new})
        for j in range(0, len(keys), _CHUNK):
            q = select(i.ct, i.device, i.observed_at).where(tuple_(i.ct, i.device).in_(keys[j:j + _CHUNK]))
            have |= {(row.ct, row.device, row.observed_at.replace(tzinfo=None)) for row in conn.execute(q)}
        rows = [{"ct": r.ct, "device": r.device, "observed_at": obs, "batch_id": batch_id,
                 **{f: getattr(r, f) for f in INVENTORY_FACTS}} for k, (r, obs) in new.items() if k not in have]
        if rows:
            conn.execute(inventory.insert(), rows)
        return len(rows)

    def _inventory_rows(self, where=None, order=None):
        i = inventory.c
        q = select(i.ct, i.device, i.observed_at, *[getattr(i, f) for f in INVENTORY_FACTS])
        if where is not None:
            q = q.where(*where)
        if order is not None:
            q = q.order_by(*order)
        with self.engine.connect() as conn:
            for row in conn.execute(q):
                yield InventoryRecord.model_construct(ct=row.ct, device=row.device, observed_at=row.observed_at, record="inventory",
                                                      **{f: getattr(row, f) for f in INVENTORY_FACTS})

    def iter_inventory(self, cts: set[str] | None = None) -> Iterator[InventoryRecord]:
        """The newest inventory record per (CT, device)."""
        from sqlalchemy import and_, func

        from ctfleet.core.inventory import newest

        i = inventory.c
        last = select(i.ct, i.device, func.max(i.observed_at).label("at")).group_by(i.ct, i.device)
        if cts is not None:
            last = last.where(i.ct.in_(sorted(cts)))
        last = last.subquery()
        # only each device's newest row is read (the history stays in the table)
        newest_rows = select(i.id).join(last, and_(i.ct == last.c.ct, i.device == last.c.device, i.observed_at == last.c.at))
        rows = self._inventory_rows(where=[i.id.in_(newest_rows)])
        yield from newest(rows).values()

    def inventory_history(self, ct: str, device: str) -> list[InventoryRecord]:
        """Every inventory observed of a device, oldest first."""
        i = inventory.c
        return list(self._inventory_rows(where=[i.ct == ct, i.device == device], order=[i.observed_at]))

    def _upsert(self, conn: Connection, batch_id: str, results: Iterable[ControlResult]) -> int:
        newest: dict[tuple[str, str, str], ControlResult] = {}
        for r in results:
            k = (r.ct, r.device or NO_DEVICE, r.control)
            p = newest.get(k)
            if p is None or r.observed_at >= p.observed_at:
                newest[k] = r
        pairs = sorted({(k[0], k[1]) for k in newest})
        stored: dict[tuple[str, str, str], tuple[str, datetime, datetime]] = {}
        c = current.c
        for i in range(0, len(pairs), _CHUNK):
            q = select(c.ct, c.device, c.control, c.status, c.observed_at, c.changed_at).where(
                tuple_(c.ct, c.device).in_(pairs[i:i + _CHUNK]))
            for row in conn.execute(q):
                stored[(row.ct, row.device, row.control)] = (row.status, row.observed_at, row.changed_at)
        inserts, updates, changes = [], [], []
        for k, r in newest.items():
            prev = stored.get(k)
            obs = r.observed_at if r.observed_at.tzinfo else r.observed_at.replace(tzinfo=timezone.utc)
            if prev is not None and obs < prev[1]:
                continue  # a late, older observation: the stored one stays newest
            status = r.status.value
            changed = prev is None or prev[0] != status
            row = {"ct": k[0], "device": k[1], "control": k[2], "status": status, "source": r.source.value,
                   "evidence": r.evidence, "observed": r.observed, "expected": r.expected, "waiver_reason": r.waiver_reason,
                   "observed_at": obs, "changed_at": obs if changed else prev[2], "batch_id": batch_id}
            (inserts if prev is None else updates).append(row)
            if changed:
                changes.append({"ct": k[0], "device": k[1], "control": k[2], "status": status,
                                "previous_status": prev[0] if prev else None, "source": r.source.value,
                                "observed_at": obs, "batch_id": batch_id})
        if inserts:
            conn.execute(current.insert(), inserts)
        if updates:
            from sqlalchemy import bindparam

            cols = ("status", "source", "evidence", "observed", "expected", "waiver_reason", "observed_at", "changed_at", "batch_id")
            stmt = (update(current)
                    .where(c.ct == bindparam("k_ct"), c.device == bindparam("k_device"), c.control == bindparam("k_control"))
                    .values({col: bindparam(col) for col in cols}))
            conn.execute(stmt, [{**{col: u[col] for col in cols}, "k_ct": u["ct"], "k_device": u["device"],
                                 "k_control": u["control"]} for u in updates])
        if changes:
            conn.execute(history.insert(), changes)
        return len(changes)

    def _bump(self) -> None:
        with self._version_lock:
            self._version += 1

    # ---------------------------------------------------------------- reads
    def iter_results(self, cts: set[str] | None = None) -> Iterator[ControlResult]:
        """The newest result per (CT, device, control), optionally of some CTs only."""
        for r in self._current_rows():
            if cts is None or r.ct in cts:
                yield r

    def _current_rows(self, *where) -> list[ControlResult]:
        c = current.c
        q = select(c.ct, c.device, c.control, c.status, c.source, c.evidence, c.observed, c.expected,
                   c.waiver_reason, c.observed_at).where(*where)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        statuses, sources = {s.value: s for s in Status}, {s.value: s for s in Source}
        # validated when the batch was ingested: constructed without validating again
        # (validation was most of the exporter's read time for a region's 46k results)
        return [ControlResult.model_construct(ct=row.ct, device=row.device or None, control=row.control,
                                              status=statuses[row.status], source=sources[row.source], evidence=row.evidence,
                                              observed=row.observed, expected=row.expected,
                                              waiver_reason=row.waiver_reason, observed_at=row.observed_at)
                for row in rows]

    # ------------------------------------------------------------- change feed
    def batches_since(self, since: datetime | None) -> dict[str, datetime]:
        """Batch id -> received_at of the batches received at or after ``since`` (every
        batch when None): what a reader that last looked at ``since`` may not have seen."""
        b = batches.c
        q = select(b.batch_id, b.received_at)
        if since is not None:
            q = q.where(b.received_at >= since)
        with self.engine.connect() as conn:
            return {row.batch_id: row.received_at for row in conn.execute(q)}

    def newest_received(self) -> datetime | None:
        """When the newest batch was received (None: no batch yet); indexed, one row read."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return conn.execute(select(func.max(batches.c.received_at))).scalar_one()

    def results_of_batches(self, batch_ids: Iterable[str]) -> list[ControlResult]:
        """The current rows that these batches wrote and no later batch replaced: with
        :meth:`batches_since`, every row that changed since a reader's last look (rows are
        never deleted, and each write of a row sets its batch id)."""
        ids = sorted(set(batch_ids))
        out: list[ControlResult] = []
        for i in range(0, len(ids), _CHUNK):
            out.extend(self._current_rows(current.c.batch_id.in_(ids[i:i + _CHUNK])))
        return out

    def latest(self) -> dict[tuple, ControlResult]:
        return {r.key: r for r in self.iter_results()}

    def history(self, ct: str, device: str | None, control: str) -> list[Change]:
        """Every status change of a control on a device (or on the CT), oldest first."""
        h = history.c
        q = (select(h.observed_at, h.status, h.previous_status, h.source, h.batch_id)
             .where(h.ct == ct, h.device == (device or NO_DEVICE), h.control == control)
             .order_by(h.observed_at, h.id))
        with self.engine.connect() as conn:
            return [Change(r.observed_at, Status(r.status), Status(r.previous_status) if r.previous_status else None,
                           Source(r.source), r.batch_id) for r in conn.execute(q)]

    def batch(self, batch_id: str) -> dict | None:
        check_batch_id(batch_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(batches).where(batches.c.batch_id == batch_id)).first()
        return None if row is None else {"batch_id": row.batch_id, "results": row.results, "sha256": row.sha256,
                                         "sender": row.sender, "received_at": row.received_at.isoformat()}

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (batches, current, history)}

    def version(self) -> int:
        """Grows with every batch this process stored (for caches of what it serves)."""
        return self._version


class _WriteTx:
    """One serialised write transaction (see the module docstring)."""

    def __init__(self, conn: Connection, dialect: str):
        self.conn, self.dialect = conn, dialect

    def __enter__(self) -> Connection:
        self.tx = self.conn.begin()
        if self.dialect == "postgresql":
            self.conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.tx.commit()
            else:
                self.tx.rollback()
        finally:
            self.conn.close()


__all__ = ["SqlStore", "Ingested", "Change", "BatchConflict", "database_url", "metadata"]
