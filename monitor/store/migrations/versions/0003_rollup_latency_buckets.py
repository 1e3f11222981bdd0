"""Rollups gain a fixed latency histogram: one integer column per bucket of monitor.store.latency.

Existing rows get empty histograms (zeros): latency baselines stay off until enough new history
has been folded, which is what they do on a fresh store too.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Written out rather than imported: a migration must keep meaning what it meant when it was written.
_COLUMNS = tuple(f"bucket_{i:02d}" for i in range(21))


def upgrade() -> None:
    """Add the bucket columns, zero for every existing row."""
    with op.batch_alter_table("rollups") as batch:
        for name in _COLUMNS:
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop the bucket columns."""
    with op.batch_alter_table("rollups") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
