"""The status API and page over a real store, through the wiring helper the daemon uses."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from monitor.alerting.config import AlertingConfig
from monitor.app import build_store_features
from monitor.store.config import StoreConfig
from probes.base import Status

from .history_helpers import T0, FakeClock, result


async def test_wiring_sinks_feed_api(tmp_path: Path) -> None:
    """Results through the built sinks show up in /api/v1/runs, /status, /incidents and the page."""
    clock = FakeClock(T0)
    registry = CollectorRegistry()
    bundle = build_store_features(
        StoreConfig(url=f"sqlite:///{tmp_path}/w.db"),
        AlertingConfig(),
        {},
        registry,
        clock,
        environment="test",
    )
    assert [j[0] for j in bundle.jobs] == [
        "store-open",
        "history-flush",
        "incident-flush",
        "outbox-dispatch",
        "history-retention",
    ]
    for _ in range(2):
        r = result("auth", Status.FAIL, clock.now())
        for sink in bundle.sinks:
            await sink.handle(r)
        clock.advance(60)
    # The sinks only queue; their background writers store the results.
    assert bundle.history is not None
    assert await bundle.history.flush(10)
    assert bundle.incidents is not None
    assert await bundle.incidents.flush(10)
    # The incident sink woke the dispatcher already; this round waits for that one (same lock).
    assert await bundle.dispatcher.run() is not None
    sent = registry.get_sample_value("synthmon_notifications_total", {"channel": "log", "result": "sent"})
    assert sent == 1  # the log channel (Slack is not configured), once
    client = TestClient(Starlette(routes=bundle.routes))
    runs = client.get("/api/v1/runs", params={"since": "1h"}).json()["runs"]
    assert [r["status"] for r in runs] == ["FAIL", "FAIL"]
    [status] = client.get("/api/v1/status").json()["probes"]
    assert (status["probe"], status["status"], status["failing_step"]) == ("auth", "FAIL", "upload")
    assert status["incident"] is not None
    assert status["uptime_24h"] == 0.0
    [incident] = client.get("/api/v1/incidents", params={"open": "1"}).json()["incidents"]
    assert incident["probe"] == "auth"
    page = client.get("/")
    assert page.status_code == 200
    assert "auth" in page.text
    assert "upload (404)" in page.text
    assert client.get("/api/v1/runs", params={"since": "soon"}).status_code == 400
    store = client.get("/api/v1/store").json()
    assert (store["ready"], store["history_buffered"], store["incidents_buffered"]) == (True, 0, 0)
    await bundle.close()
