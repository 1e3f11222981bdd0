"""Rollups gain an index on the hour.

Whole-store reads over a time range (``synthmon uptime``'s windows, the latency histograms behind
the baselines) filter on the hour alone. The primary key leads with the probe and step, so without
this index such a read scans every rollup ever kept (a year of history: hundreds of thousands of
rows for a 1-hour window); with it, it reads the window's rows only.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``ix_rollups_hour``."""
    op.create_index("ix_rollups_hour", "rollups", ["hour"])


def downgrade() -> None:
    """Drop ``ix_rollups_hour``."""
    op.drop_index("ix_rollups_hour", table_name="rollups")
