"""The rollups' latency buckets on every store backend: folded with the runs, summed per probe and
step over a window, and empty for rows folded before migration 0003 (which are left out)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from monitor.history.sqlstore import SqlHistoryStore
from monitor.store import migrate
from monitor.store.database import Database
from monitor.store.latency import BUCKET_COLUMNS, LATENCY_BUCKETS, bucket_index
from monitor.store.schema import rollups
from tests.baselines.baselines_helpers import T0, run
from tests.history.conftest import BACKENDS
from tests.history.history_helpers import PG_URL, FullStore, open_store, pg_schema_url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullStore]:
    """A fresh, migrated store on each backend."""
    with open_store(str(request.param), tmp_path) as s:
        yield s


def _counts(*seconds: float) -> tuple[int, ...]:
    counts = [0] * LATENCY_BUCKETS
    for s in seconds:
        counts[bucket_index(s)] += 1
    return tuple(counts)


def test_buckets_fold_per_probe_and_step_across_batches(store: FullStore) -> None:
    """Runs in two batches of one hour add up in the same buckets; the run (step "") and each step
    get their own histogram; FAIL runs and steps count in the run totals but not in the buckets."""
    store.append_runs([run({"upload": 0.2, "download": 0.05}, at=T0), run({"upload": 0.3}, at=T0)])
    store.append_runs(
        [
            run({"upload": 0.2, "download": 0.05}, at=T0 + timedelta(minutes=5)),
            run({"upload": 9.0, "download": 0.05}, at=T0 + timedelta(minutes=6), failing="download"),
        ]
    )
    got = {(h.probe, h.step): h for h in store.history.latency_histograms(since=T0)}
    assert got[("artifact_roundtrip", "upload")].counts == _counts(0.2, 0.3, 0.2, 9.0)
    assert got[("artifact_roundtrip", "download")].counts == _counts(0.05, 0.05)
    assert got[("artifact_roundtrip", "")].counts == _counts(0.25, 0.3, 0.25)
    assert got[("artifact_roundtrip", "")].first_hour == T0
    uptime = {(u.probe, u.step): u for u in store.uptime(since=T0, until=T0 + timedelta(hours=1), now=T0)}
    assert uptime[("artifact_roundtrip", None)].runs == 4  # the counts stay what they were


def test_histograms_sum_the_window_and_name_its_oldest_hour(store: FullStore) -> None:
    """Hours before the window's first hour are left out; first_hour is the oldest hour read."""
    store.append_runs([run({"upload": 1.0}, at=T0 - timedelta(days=9))])
    store.append_runs([run({"upload": 0.5}, at=T0 - timedelta(days=2, minutes=30 - i)) for i in range(3)])
    store.append_runs([run({"upload": 0.5}, at=T0)])
    (upload,) = [
        h for h in store.history.latency_histograms(since=T0 - timedelta(days=7)) if h.step == "upload"
    ]
    assert upload.runs == 4
    assert upload.first_hour == T0 - timedelta(days=2, hours=1)


@pytest.fixture(params=BACKENDS)
def old_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL on each backend (migrated by the test itself)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    assert PG_URL is not None
    with pg_schema_url(PG_URL) as url:
        yield url


def test_rollups_folded_before_the_buckets_migrate_empty_and_are_left_out(old_url: str) -> None:
    """A store at 0001 with rollups: upgraded, its rows have zero buckets, add up with new runs, and
    do not count as latency history (baselines stay off until enough new history exists)."""
    engine = sa.create_engine(old_url)
    cfg = migrate._config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    old_row = {
        "probe": "artifact_roundtrip",
        "step": "upload",
        "hour": int(T0.timestamp()) - 86400,
        "runs": 50,
        "failures": 0,
        "errors": 0,
        "degraded": 0,
        "duration_sum": 10.0,
        "duration_max": 0.4,
    }
    with engine.begin() as conn:
        conn.execute(sa.table("rollups", *(sa.column(k) for k in old_row)).insert().values(**old_row))
    assert migrate.upgrade(engine) == migrate.head_revision()
    db = Database(engine)
    try:
        history = SqlHistoryStore(db)
        assert history.latency_histograms(since=T0 - timedelta(days=7)) == []
        with engine.connect() as conn:
            buckets = conn.execute(sa.select(*(rollups.c[c] for c in BUCKET_COLUMNS))).one()
        assert set(buckets) == {0}
        history.append_runs([run({"upload": 0.2}, at=T0 - timedelta(days=1))])  # same hour as the old row
        (upload,) = [
            h for h in history.latency_histograms(since=T0 - timedelta(days=7)) if h.step == "upload"
        ]
        assert upload.counts == _counts(0.2)
        uptime = history.uptime(since=T0 - timedelta(days=2), until=T0, now=T0)
        assert {(u.probe, u.step): u.runs for u in uptime}[("artifact_roundtrip", "upload")] == 51
    finally:
        db.close()
