"""Compact runs: ``runs.payload`` (the full JSON of each run) becomes ``runs.detail``, the run's steps
as compressed compact JSON (:mod:`monitor.store.runcodec`); what the row's columns hold is no longer
repeated in it.

Existing rows are converted in batches of :data:`BATCH` by primary key, so memory stays flat whatever
the history kept. SQLite does not give the freed pages back to the file system by itself: run
``VACUUM`` once afterwards to shrink an existing file (new files stay small without it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from monitor.store.runcodec import pack_steps

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: Rows converted per round trip.
BATCH = 2000

_runs = sa.table(
    "runs",
    sa.column("id", sa.BigInteger),
    sa.column("payload", sa.Text),
    sa.column("detail", sa.LargeBinary),
)


def upgrade() -> None:
    """Add ``detail``, fill it from ``payload`` batch by batch, drop ``payload``."""
    op.add_column("runs", sa.Column("detail", sa.LargeBinary, nullable=True))
    conn = op.get_bind()
    last = -1
    update = sa.update(_runs).where(_runs.c.id == sa.bindparam("pk")).values(detail=sa.bindparam("blob"))
    while True:
        rows = conn.execute(
            sa.select(_runs.c.id, _runs.c.payload).where(_runs.c.id > last).order_by(_runs.c.id).limit(BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            update,
            [{"pk": pk, "blob": pack_steps(json.loads(payload).get("steps", []))} for pk, payload in rows],
        )
        last = rows[-1][0]
    op.drop_column("runs", "payload")
    if conn.dialect.name != "sqlite":  # SQLite cannot add NOT NULL to an existing column in place
        op.alter_column("runs", "detail", nullable=False)


def downgrade() -> None:
    """Back to the full JSON per run, rebuilt from the columns and ``detail`` (checks included)."""
    from datetime import UTC, datetime

    from monitor.store.runcodec import unpack_steps

    op.add_column("runs", sa.Column("payload", sa.Text, nullable=True))
    full = sa.table(
        "runs",
        *(sa.column(c) for c in ("id", "run_id", "probe", "kind", "environment", "started_at")),
        *(sa.column(c) for c in ("duration_s", "status")),
        sa.column("detail", sa.LargeBinary),
        sa.column("payload", sa.Text),
    )
    conn = op.get_bind()
    last = -1
    update = sa.update(full).where(full.c.id == sa.bindparam("pk")).values(payload=sa.bindparam("text"))
    while True:
        rows = (
            conn.execute(sa.select(full).where(full.c.id > last).order_by(full.c.id).limit(BATCH))
            .mappings()
            .all()
        )
        if not rows:
            break
        out = []
        for r in rows:
            doc = {
                "schema": 1,
                "probe": r["probe"],
                "kind": r["kind"],
                "run_id": r["run_id"],
                "environment": r["environment"],
                "started_at": datetime.fromtimestamp(r["started_at"], UTC).isoformat(),
                "duration_s": r["duration_s"],
                "status": r["status"],
                "steps": unpack_steps(r["detail"]),
            }
            out.append({"pk": r["id"], "text": json.dumps(doc, separators=(",", ":"))})
        conn.execute(update, out)
        last = rows[-1]["id"]
    op.drop_column("runs", "detail")
    if conn.dialect.name != "sqlite":
        op.alter_column("runs", "payload", nullable=False)
