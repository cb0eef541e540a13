"""Indexes for the change feed: batches by arrival, current rows by the batch that wrote them.

A collector reading a results database asks, every sweep, which batches arrived since its
last look and which current rows they wrote (:meth:`ctfleet.results.db.SqlStore.batches_since`,
:meth:`~ctfleet.results.db.SqlStore.results_of_batches`); without these both were full scans.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_result_batches_received_at", "result_batches", ["received_at"])
    op.create_index("ix_results_current_batch_id", "results_current", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_results_current_batch_id", table_name="results_current")
    op.drop_index("ix_result_batches_received_at", table_name="result_batches")
