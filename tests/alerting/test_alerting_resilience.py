"""Alerting through store outages, held upstream incidents through the real store, and reloads."""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.sink import IncidentSink
from monitor.app import build_monitor
from monitor.config import Config, parse_config
from monitor.logs import make_logger
from monitor.store.metrics import StoreMetrics
from probes.base import Status, SystemClock
from probes.support.masking import SecretMasker
from tests.history.history_helpers import T0, FakeClock, FullStore, locked_sqlite_store, result


@pytest.fixture
def locked_store(tmp_path: Path) -> Iterator[tuple[FullStore, sqlite3.Connection]]:
    """A SQLite store with a short busy timeout, and a second raw connection able to lock it."""
    with locked_sqlite_store(tmp_path / "a.db") as pair:
        yield pair


def _sink(
    store: FullStore, clock: FakeClock, registry: CollectorRegistry, deps: dict[str, list[str]] | None = None
) -> IncidentSink:
    return IncidentSink(
        store,
        AlertingConfig(),
        deps or {},
        clock,
        AlertingMetrics(registry),
        StoreMetrics(registry),
    )


def _events(store: FullStore) -> list[dict[str, object]]:
    return [json.loads(str(r["payload"])) for r in store.outbox_rows()]


async def test_outage_overlapping_platform_failure_still_pages_in_order(
    locked_store: tuple[FullStore, sqlite3.Connection],
) -> None:
    """Failures arriving while the database is locked wait in memory and open the incident once it is back."""
    store, locker = locked_store
    registry = CollectorRegistry()
    clock = FakeClock(T0)
    sink = _sink(store, clock, registry)
    locker.execute("BEGIN EXCLUSIVE")
    for _ in range(2):
        await sink.handle(result("auth", Status.FAIL, clock.now()))
        clock.advance(60)
    assert await sink.flush(10) is False
    assert sink.depth == 2
    assert registry.get_sample_value("synthmon_incident_buffer_depth") == 2
    assert (
        registry.get_sample_value("synthmon_store_errors_total", {"operation": "incident_transition"}) or 0
    ) >= 1
    locker.execute("ROLLBACK")
    assert await sink.flush(10) is True
    [opened] = _events(store)
    assert opened["kind"] == "opened"
    # Evaluated as of when each result arrived, not when the database came back.
    assert opened["at"] == (T0 + timedelta(seconds=60)).isoformat()
    assert opened["since"] == T0.isoformat()
    assert registry.get_sample_value("synthmon_incident_buffer_depth") == 0


async def test_full_incident_buffer_drops_oldest_and_counts(
    locked_store: tuple[FullStore, sqlite3.Connection],
) -> None:
    """An incident buffer at capacity drops the oldest results and counts them."""
    store, locker = locked_store
    registry = CollectorRegistry()
    clock = FakeClock(T0)
    sink = IncidentSink(
        store,
        AlertingConfig(),
        {},
        clock,
        AlertingMetrics(registry),
        StoreMetrics(registry),
        buffer_size=2,
    )
    locker.execute("BEGIN EXCLUSIVE")
    for status in (Status.PASS, Status.PASS, Status.FAIL, Status.FAIL):
        await sink.handle(result("auth", status, clock.now()))
        clock.advance(60)
    assert registry.get_sample_value("synthmon_incident_buffer_dropped_total") == 2
    locker.execute("ROLLBACK")
    assert await sink.flush(10) is True
    assert [e["kind"] for e in _events(store)] == ["opened"]


async def test_silenced_upstream_holds_dependent_until_announced(tmp_path: Path) -> None:
    """With the upstream held by a stored silence, the dependent neither pages nor posts a join; after the
    silence, the upstream opens its thread and the dependent joins that same incident."""
    store = FullStore.open(f"sqlite:///{tmp_path}/held.db")
    registry = CollectorRegistry()
    clock = FakeClock(T0)
    sink = _sink(store, clock, registry, {"artifact_roundtrip": ["auth"]})
    store.add_silence(
        probe="auth", starts_at=T0, ends_at=T0 + timedelta(hours=1), reason="deploy", created_by="t"
    )
    for _ in range(2):
        for probe in ("auth", "artifact_roundtrip"):
            await sink.handle(result(probe, Status.FAIL, clock.now()))
        clock.advance(60)
    assert await sink.flush(10) is True
    assert _events(store) == []
    states = store.incident_states()
    assert states["artifact_roundtrip"].incident_id == states["auth"].incident_id
    assert store.clear_silences(now=clock.now(), silence_id=None, probe="auth") == 1
    for probe in ("auth", "artifact_roundtrip"):
        await sink.handle(result(probe, Status.FAIL, clock.now()))
    assert await sink.flush(10) is True
    opened, joined = _events(store)
    assert (opened["kind"], opened["probe"]) == ("opened", "auth")
    assert (joined["kind"], joined["probe"]) == ("joined", "artifact_roundtrip")
    assert joined["incident_id"] == opened["incident_id"] == states["auth"].incident_id
    store.close()


CONFIG = """\
environment: test
listen: 127.0.0.1:0
store: {{url: "sqlite:///{db}"}}
alerting:
  slack: {{webhook_url: "{hook}"}}
probes:
  - name: web
    kind: http
    options: {{url: "http://127.0.0.1:9/health"}}
"""


async def test_channel_change_warns_once_per_change_not_on_every_reload(tmp_path: Path) -> None:
    """A Slack change is warned about on the reload that brings it, not again on later reloads of it."""
    stream = io.StringIO()
    logger = make_logger(SecretMasker([]), stream=stream, json=True, level="info")

    def config(hook: str) -> Config:
        return parse_config(CONFIG.format(db=tmp_path / "r.db", hook=hook), env={})

    start = config("http://127.0.0.1:9/a")
    daemon = build_monitor(start, registry=CollectorRegistry(), clock=SystemClock(), logger=logger)

    def warnings() -> int:
        return stream.getvalue().count("alerting.channels_unchanged")

    changed = config("http://127.0.0.1:9/b")
    assert await daemon.reload(changed)
    assert warnings() == 1
    assert await daemon.reload(config("http://127.0.0.1:9/b"))
    assert warnings() == 1
    assert await daemon.reload(config("http://127.0.0.1:9/a"))  # back to what runs: nothing to warn
    assert warnings() == 1
    assert await daemon.reload(config("http://127.0.0.1:9/c"))
    assert warnings() == 2
