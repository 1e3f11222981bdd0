"""The store's tables (SQLAlchemy Core). The DDL itself is created by the Alembic migrations.

Times are float epoch seconds (UTC) everywhere: portable across SQLite and PostgreSQL and cheap to
bucket into hours. ``steps.started_at`` repeats its run's time so that uptime and retention need no
join.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from monitor.store.latency import BUCKET_COLUMNS

metadata = MetaData()

# SQLite only makes INTEGER PRIMARY KEY an alias of its rowid (autoincrement); BIGINT elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")

runs = Table(
    "runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, unique=True),
    Column("probe", String(100), nullable=False),
    Column("kind", String(100), nullable=False),
    Column("environment", String(100), nullable=False, default=""),
    Column("started_at", Float, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("failing_step", String(100)),
    # The steps in full (messages, timings, diagnoses), packed by monitor.store.runcodec.
    Column("detail", LargeBinary, nullable=False),
    # Where the run was made from (monitor.location); rows older than locations are "default".
    Column("location", String(100), nullable=False, server_default="default"),
    Index("ix_runs_probe_started", "probe", "started_at"),
    Index("ix_runs_started", "started_at"),
)

steps = Table(
    "steps",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("run_pk", Id, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("probe", String(100), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("name", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("http_status", Integer),
    Column("error_class", String(100)),
    Column("started_at", Float, nullable=False),
    Index("ix_steps_run", "run_pk"),
    Index("ix_steps_started", "started_at", "probe"),
)

# Hourly aggregates per probe and step; step "" is the probe run as a whole. The ``bucket_NN``
# columns are a fixed latency histogram of the runs that worked (see monitor/store/latency.py).
rollups = Table(
    "rollups",
    metadata,
    Column("probe", String(100), primary_key=True),
    Column("step", String(100), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("runs", Integer, nullable=False),
    Column("failures", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("degraded", Integer, nullable=False),
    Column("duration_sum", Float, nullable=False),
    Column("duration_max", Float, nullable=False),
    *(Column(name, Integer, nullable=False, server_default="0") for name in BUCKET_COLUMNS),
    # Reads over a time range of every probe and step (uptime windows, latency histograms).
    Index("ix_rollups_hour", "hour"),
)

# The state machine's memory, one row per probe; the row is also the per-probe lock on PostgreSQL.
incident_state = Table(
    "incident_state",
    metadata,
    Column("probe", String(100), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Incidents as history (healthchecks' flips, one row per probe per incident).
incidents = Table(
    "incidents",
    metadata,
    Column("incident_id", String(200), primary_key=True),
    Column("probe", String(100), primary_key=True),
    Column("incident_probe", String(100), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("resolved_at", Float),
    Column("summary", Text, nullable=False, default=""),
    Index("ix_incidents_opened", "opened_at"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("incident_id", String(200), nullable=False),
    Column("probe", String(100), nullable=False),
    Column("channel", String(50), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("state", String(10), nullable=False),  # pending | sent | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(100)),
    Column("lease_until", Float),
    Column("last_error", Text),
    Column("finished_at", Float),
    Index("ix_outbox_channel_state", "channel", "state", "id"),
)

# Per incident and channel, what the channel returned for the first message (Slack: channel:ts).
threads = Table(
    "threads",
    metadata,
    Column("incident_id", String(200), primary_key=True),
    Column("channel", String(50), primary_key=True),
    Column("ref", String(200), nullable=False),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("probe", String(100), nullable=False),
    Column("starts_at", Float, nullable=False),
    Column("ends_at", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("cleared_at", Float),
)

# Each location's own view of each probe (monitor.alerting.quorum): what the quorum is counted from.
location_views = Table(
    "location_views",
    metadata,
    Column("probe", String(100), primary_key=True),
    Column("location", String(100), primary_key=True),
    Column("data", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# One row per location, refreshed by each daemon there: which locations are live (quorum size).
location_heartbeats = Table(
    "location_heartbeats",
    metadata,
    Column("location", String(100), primary_key=True),
    Column("last_seen", Float, nullable=False),
)
