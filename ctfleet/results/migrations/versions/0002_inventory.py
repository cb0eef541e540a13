"""Observed inventories: one row per (CT, device, observed at).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from ctfleet.results.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inventory_records",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ct", sa.String(32), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("cpu_count", sa.Integer),
        sa.Column("cpu_model", sa.String(200)),
        sa.Column("memory_mib", sa.Integer),
        sa.Column("disk_gib", sa.Float),
        sa.Column("os", sa.String(64)),
        sa.Column("os_version", sa.String(64)),
        sa.Column("serial", sa.String(128)),
        sa.Column("packages", sa.Integer),
        sa.Column("last_boot", UTCDateTime()),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
        sa.UniqueConstraint("ct", "device", "observed_at", name="uq_inventory_records_key"),
    )


def downgrade() -> None:
    op.drop_table("inventory_records")
