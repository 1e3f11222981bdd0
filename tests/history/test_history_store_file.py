"""The SQLite store file deleted, moved or replaced under a running daemon: noticed, counted, the
store reopened on its path with its schema, and no result lost (the queue holds them meanwhile)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.app import StoreFeatures, build_store_features
from monitor.history.sqlstore import SqlHistoryStore
from monitor.store.config import StoreConfig
from monitor.store.database import Database
from monitor.store.migrate import SchemaError
from probes.base import Status

from .history_helpers import T0, FakeClock, result


def _features(db: Path, registry: CollectorRegistry, clock: FakeClock) -> StoreFeatures:
    return build_store_features(StoreConfig(url=f"sqlite:///{db}"), AlertingConfig(), {}, registry, clock)


def _stored_run_ids(db: Path) -> set[str]:
    """Run ids in the file at ``db`` (empty while there is no file or no schema in it yet)."""
    if not db.exists():
        return set()
    try:
        database = Database.open_existing(f"sqlite:///{db}")
    except SchemaError:
        return set()
    try:
        return {r.run_id for r in SqlHistoryStore(database).runs(probe=None, since=T0, limit=1000)}
    finally:
        database.close()


async def _until_stored(features: StoreFeatures, db: Path, run_id: str, timeout_s: float = 20.0) -> None:
    """Do what the daemon's periodic jobs do (re-open the store, flush the queue) until ``run_id`` is
    in the file at ``db``."""
    assert features.history is not None
    assert features.gate is not None
    deadline = time.monotonic() + timeout_s
    while True:
        await features.gate.ensure(force=True)
        await features.history.flush(2)
        if run_id in await asyncio.to_thread(_stored_run_ids, db):
            return
        assert time.monotonic() < deadline, f"run {run_id} never reached {db}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["deleted", "moved", "replaced"])
async def test_store_file_changed_under_the_daemon_is_reopened_and_counted(tmp_path: Path, how: str) -> None:
    """After the file is deleted, moved away or replaced, new results land in the file at the path."""
    db = tmp_path / "var" / "synthmon.db"
    registry = CollectorRegistry()
    clock = FakeClock(T0)
    features = _features(db, registry, clock)
    assert features.history is not None
    try:
        first = result("auth", Status.PASS, T0)
        await features.history.handle(first)
        await _until_stored(features, db, first.run_id)

        if how == "deleted":
            shutil.rmtree(db.parent)
        elif how == "moved":
            os.rename(db, tmp_path / "elsewhere.db")
        else:
            other = tmp_path / "other.db"
            Database.open(f"sqlite:///{other}").close()
            os.replace(other, db)

        second = result("auth", Status.FAIL, T0)
        await features.history.handle(second)
        await _until_stored(features, db, second.run_id)

        reason = "deleted" if how in ("deleted", "moved") else "replaced"
        counted = registry.get_sample_value("synthmon_store_file_changes_total", {"reason": reason})
        assert counted == 1
        assert features.gate is not None
        assert await features.gate.ensure()  # the daemon's store-open job does this every 5 s
        assert registry.get_sample_value("synthmon_store_ready") == 1
        assert first.run_id not in _stored_run_ids(db)  # a new file: the old one's rows went with it
    finally:
        await features.close(2)


async def test_unchanged_store_file_is_never_reported(tmp_path: Path) -> None:
    """Many writes to a file nobody touches count no change."""
    db = tmp_path / "synthmon.db"
    registry = CollectorRegistry()
    features = _features(db, registry, FakeClock(T0))
    assert features.history is not None
    try:
        ids = []
        for i in range(20):
            r = result("auth", Status.PASS, T0)
            ids.append(r.run_id)
            await features.history.handle(r)
            if i % 5 == 0:
                assert await features.history.flush(5)
        assert await features.history.flush(5)
        assert set(ids) <= _stored_run_ids(db)
        for reason in ("deleted", "replaced"):
            assert registry.get_sample_value("synthmon_store_file_changes_total", {"reason": reason}) == 0
    finally:
        await features.close(2)
