"""Results database: batches, current results, history of status changes.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from ctfleet.results.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "result_batches",
        sa.Column("batch_id", sa.String(128), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("results", sa.Integer, nullable=False),
        sa.Column("sender", sa.String(128), nullable=False, server_default=""),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "results_current",
        sa.Column("ct", sa.String(32), primary_key=True),
        sa.Column("device", sa.String(128), primary_key=True),
        sa.Column("control", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("evidence", sa.Text, nullable=False, server_default=""),
        sa.Column("observed", sa.JSON),
        sa.Column("expected", sa.JSON),
        sa.Column("waiver_reason", sa.Text),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("changed_at", UTCDateTime(), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
    )
    op.create_table(
        "results_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ct", sa.String(32), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("control", sa.String(32), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("previous_status", sa.String(8)),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("batch_id", sa.String(128), nullable=False),
    )
    op.create_index("ix_results_history_key", "results_history", ["ct", "device", "control", "observed_at"])


def downgrade() -> None:
    op.drop_index("ix_results_history_key", "results_history")
    op.drop_table("results_history")
    op.drop_table("results_current")
    op.drop_table("result_batches")
