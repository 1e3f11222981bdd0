"""What people see of a latency regression: the status page's mark and baselines, the probe's
``latency`` list in ``/api/v1/status``, and the Prometheus series; over a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from monitor.api import StatusApi
from monitor.baselines.config import BaselinesConfig
from monitor.baselines.metrics import BaselineMetrics
from monitor.baselines.service import LatencyBaselines
from tests.baselines.baselines_helpers import T0, history, run
from tests.history.history_helpers import FakeClock, FullStore, open_store

NOW = T0 + timedelta(days=3)
NORMAL = {"upload": 0.3, "download": 0.2}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FullStore]:
    """A SQLite store with two days of normal artifact_roundtrip runs."""
    with open_store("sqlite", tmp_path) as s:
        s.append_runs(history(NORMAL, runs=300, until=NOW, every=timedelta(minutes=10)))
        yield s


async def test_regression_is_marked_on_the_page_in_the_api_and_in_metrics(store: FullStore) -> None:
    """Three slow uploads in a row: the page marks upload with the message, the API says regressed,
    synthmon_latency_regression is 1 and the baseline series holds the p95; a normal run clears it."""
    registry = CollectorRegistry()
    clock = FakeClock(NOW)
    baselines = LatencyBaselines(store.history, BaselinesConfig(), clock, BaselineMetrics(registry))
    assert await baselines.refresh()
    for i in range(3):
        judged = await baselines.transform(
            run({"upload": 1.5, "download": 0.2}, at=NOW + timedelta(minutes=i))
        )
    message = judged.steps[0].message
    assert message.startswith("upload took 1.50 s, ")
    client = TestClient(
        Starlette(
            routes=StatusApi(
                store.history, store.alerting, clock, environment="t", latency=baselines.view
            ).routes()
        )
    )

    body = client.get("/api/v1/status").json()
    (probe,) = body["probes"]
    latency = {s["step"]: s for s in probe["latency"]}
    assert set(latency) == {"", "upload", "download"}
    assert latency["upload"]["regressed"] is True
    assert latency["upload"]["slow_runs_in_a_row"] == 3
    assert latency["upload"]["baseline"] == "7-day p95"
    assert latency["upload"]["message"] == message
    assert latency["download"]["regressed"] is False

    page = client.get("/").text
    assert "data-latency-step='upload'" in page
    assert "LATENCY REGRESSION" in page
    assert "latency baseline (7-day p95)" in page
    assert "data-latency-step='download'" not in page

    labels = {"probe": "artifact_roundtrip", "step": "upload"}
    assert registry.get_sample_value("synthmon_latency_regression", labels) == 1.0
    assert registry.get_sample_value("synthmon_latency_baseline_seconds", labels) == pytest.approx(
        latency["upload"]["baseline_seconds"]
    )
    await baselines.transform(run(NORMAL, at=NOW + timedelta(minutes=5)))
    assert registry.get_sample_value("synthmon_latency_regression", labels) == 0.0
    assert "LATENCY REGRESSION" not in client.get("/").text


async def test_without_enough_history_nothing_is_judged_or_shown(tmp_path: Path) -> None:
    """Off until enough history: below min_runs there is no baseline, no series, no page line."""
    with open_store("sqlite", tmp_path) as store:
        store.append_runs(history(NORMAL, runs=99, until=NOW, every=timedelta(minutes=30)))
        registry = CollectorRegistry()
        baselines = LatencyBaselines(
            store.history, BaselinesConfig(), FakeClock(NOW), BaselineMetrics(registry)
        )
        assert await baselines.refresh()
        slow = run({"upload": 30.0, "download": 0.2}, at=NOW)
        for _ in range(5):
            assert await baselines.transform(slow) == slow
        assert baselines.view() == {}
        assert (
            registry.get_sample_value(
                "synthmon_latency_baseline_seconds", {"probe": "artifact_roundtrip", "step": "upload"}
            )
            is None
        )


async def test_turned_off_by_reload_forgets_baselines_and_series(store: FullStore) -> None:
    """baselines.enabled false on reload: results pass unchanged and every series goes."""
    registry = CollectorRegistry()
    baselines = LatencyBaselines(store.history, BaselinesConfig(), FakeClock(NOW), BaselineMetrics(registry))
    assert await baselines.refresh()
    assert baselines.view()
    baselines.reconfigure(BaselinesConfig(enabled=False))
    slow = run({"upload": 9.0}, at=NOW)
    for _ in range(4):
        assert await baselines.transform(slow) == slow
    assert baselines.view() == {}
    assert (
        registry.get_sample_value(
            "synthmon_latency_baseline_seconds", {"probe": "artifact_roundtrip", "step": ""}
        )
        is None
    )
