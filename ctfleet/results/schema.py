"""The results database's tables (SQLAlchemy Core): one schema for PostgreSQL and SQLite.

* ``result_batches``: every batch stored, by id (the idempotence key) with its SHA-256;
* ``results_current``: the newest result per (CT, device, control) — what the exporter reads;
* ``results_history``: one row each time a (CT, device, control) changes status (and its
  first observation): "when did SYS-3 on th01 start failing";
* ``inventory_records``: every observed inventory of a device (hardware and software facts,
  :class:`ctfleet.core.inventory.InventoryRecord`), one row per (CT, device, observed at):
  the newest is what "equipped" reads, the older ones its history.

Alembic migrations (``ctfleet/results/migrations``) create and evolve these tables; a
test checks that the migrated database equals this metadata. Times are stored as naive
UTC (:class:`UTCDateTime`) so both engines compare and order them the same way.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import JSON, Column, DateTime, Float, Index, Integer, MetaData, String, Table, Text, TypeDecorator, UniqueConstraint

metadata = MetaData()

#: The device column of CT-level results (no device): '' keeps the primary key NOT NULL.
NO_DEVICE = ""


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, stored as naive UTC, aware UTC out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - SQLite returns datetimes through SQLAlchemy already
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=timezone.utc)


batches = Table(
    "result_batches", metadata,
    Column("batch_id", String(128), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("results", Integer, nullable=False),
    Column("sender", String(128), nullable=False, server_default=""),
    Column("received_at", UTCDateTime(), nullable=False),
    Index("ix_result_batches_received_at", "received_at"),  # the change feed (migration 0003)
)



def _key_columns(primary_key: bool) -> tuple[Column, ...]:
    """The (CT, device, control) columns both result tables have."""
    return (Column("ct", String(32), nullable=False, primary_key=primary_key),
            Column("device", String(128), nullable=False, primary_key=primary_key),
            Column("control", String(32), nullable=False, primary_key=primary_key))


current = Table(
    "results_current", metadata,
    *_key_columns(primary_key=True),
    Column("status", String(8), nullable=False),
    Column("source", String(16), nullable=False),
    Column("evidence", Text, nullable=False, server_default=""),
    Column("observed", JSON),
    Column("expected", JSON),
    Column("waiver_reason", Text),
    Column("observed_at", UTCDateTime(), nullable=False),
    Column("changed_at", UTCDateTime(), nullable=False),
    Column("batch_id", String(128), nullable=False),
    Index("ix_results_current_batch_id", "batch_id"),  # the change feed (migration 0003)
)

history = Table(
    "results_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    *_key_columns(primary_key=False),
    Column("status", String(8), nullable=False),
    Column("previous_status", String(8)),
    Column("source", String(16), nullable=False),
    Column("observed_at", UTCDateTime(), nullable=False),
    Column("batch_id", String(128), nullable=False),
    Index("ix_results_history_key", "ct", "device", "control", "observed_at"),
)

inventory = Table(
    "inventory_records", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ct", String(32), nullable=False),
    Column("device", String(128), nullable=False),
    Column("origin", String(16), nullable=False),
    Column("cpu_count", Integer),
    Column("cpu_model", String(200)),
    Column("memory_mib", Integer),
    Column("disk_gib", Float),
    Column("os", String(64)),
    Column("os_version", String(64)),
    Column("serial", String(128)),
    Column("packages", Integer),
    Column("last_boot", UTCDateTime()),
    Column("observed_at", UTCDateTime(), nullable=False),
    Column("batch_id", String(128), nullable=False),
    UniqueConstraint("ct", "device", "observed_at", name="uq_inventory_records_key"),
)

#: The inventory record's facts, as columns (what the store writes and reads back).
INVENTORY_FACTS = ("origin", "cpu_count", "cpu_model", "memory_mib", "disk_gib", "os", "os_version", "serial",
                   "packages", "last_boot")
