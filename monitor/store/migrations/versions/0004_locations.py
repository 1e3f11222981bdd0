"""Locations: the location of each run, each location's view of each probe, and live locations.

Existing runs get the default location (a single-location deployment, as before).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``runs.location`` and the ``location_views`` and ``location_heartbeats`` tables."""
    # A plain ADD COLUMN (NOT NULL with a constant default) on both backends: no table rebuild,
    # which on SQLite would drop and re-create ``runs`` under the steps that reference it.
    op.add_column("runs", sa.Column("location", sa.String(100), nullable=False, server_default="default"))
    op.create_table(
        "location_views",
        sa.Column("probe", sa.String(100), primary_key=True),
        sa.Column("location", sa.String(100), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "location_heartbeats",
        sa.Column("location", sa.String(100), primary_key=True),
        sa.Column("last_seen", sa.Float, nullable=False),
    )


def downgrade() -> None:
    """Drop what :func:`upgrade` added."""
    op.drop_table("location_heartbeats")
    op.drop_table("location_views")
    op.drop_column("runs", "location")
