"""Initial schema: runs, steps, rollups, incident state, incidents, outbox, threads, silences.

Revision ID: 0001
Revises:
Create Date: 2025-07-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table of schema version 0001."""
    op.create_table(
        "runs",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False, unique=True),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(100), nullable=False),
        sa.Column("environment", sa.String(100), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("failing_step", sa.String(100)),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_runs_probe_started", "runs", ["probe", "started_at"])
    op.create_index("ix_runs_started", "runs", ["started_at"])
    op.create_table(
        "steps",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("run_pk", _ID, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("error_class", sa.String(100)),
        sa.Column("started_at", sa.Float, nullable=False),
    )
    op.create_index("ix_steps_run", "steps", ["run_pk"])
    op.create_index("ix_steps_started", "steps", ["started_at", "probe"])
    op.create_table(
        "rollups",
        sa.Column("probe", sa.String(100), primary_key=True),
        sa.Column("step", sa.String(100), primary_key=True),
        sa.Column("hour", sa.BigInteger, primary_key=True),
        sa.Column("runs", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("degraded", sa.Integer, nullable=False),
        sa.Column("duration_sum", sa.Float, nullable=False),
        sa.Column("duration_max", sa.Float, nullable=False),
    )
    op.create_table(
        "incident_state",
        sa.Column("probe", sa.String(100), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.String(200), primary_key=True),
        sa.Column("probe", sa.String(100), primary_key=True),
        sa.Column("incident_probe", sa.String(100), nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float),
        sa.Column("summary", sa.Text, nullable=False),
    )
    op.create_index("ix_incidents_opened", "incidents", ["opened_at"])
    op.create_table(
        "outbox",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(200), nullable=False),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("channel", sa.String(50), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_until", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("ix_outbox_channel_state", "outbox", ["channel", "state", "id"])
    op.create_table(
        "threads",
        sa.Column("incident_id", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(50), primary_key=True),
        sa.Column("ref", sa.String(200), nullable=False),
    )
    op.create_table(
        "silences",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("probe", sa.String(100), nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("cleared_at", sa.Float),
    )


def downgrade() -> None:
    """Drop everything (only for tests of the migration machinery)."""
    for table in ("silences", "threads", "outbox", "incidents", "incident_state", "rollups", "steps", "runs"):
        op.drop_table(table)
