"""``/metrics`` rendering: the same body prometheus_client's encoders write for the whole registry,
in slices with the event loop running between them, gzipped when asked, with the location label."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from monitor.exposition import SLICE_SAMPLES, ConstLabels, render

PROBES = 60  # a histogram family of PROBES * 15 samples spans several slices


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    runs = Counter("synthmon_probe_runs", "Runs.", ["probe", "status"], registry=registry)
    success = Gauge("synthmon_probe_success", "1 when the last run passed.", ["probe"], registry=registry)
    duration = Histogram(
        "synthmon_probe_duration_seconds", 'Run "duration"\nin seconds.', ["probe"], registry=registry
    )
    Gauge("synthmon_outbox_pending", "Pending alerts.", registry=registry).set(3)
    Gauge("synthmon_empty", "A family with no series yet.", ["probe"], registry=registry)
    for i in range(PROBES):
        probe = f'p{i:03d}"\\x\r# not a comment'  # label values that need escaping, and one that is not
        runs.labels(probe, "PASS").inc(i)
        success.labels(probe).set(i % 2)
        duration.labels(probe).observe(i / 100)
    return registry


def _run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_the_body_is_the_encoders_for_the_whole_registry() -> None:
    """Text format: byte for byte what generate_latest writes in one go, though rendered in slices."""
    registry = _registry()
    assert PROBES * 15 > 2 * SLICE_SAMPLES
    body, headers = _run(render(registry))
    assert body == generate_latest(registry)
    assert headers == {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"}


def test_openmetrics_is_negotiated_and_ends_once() -> None:
    """A scraper asking for OpenMetrics (Prometheus does) gets it, with one # EOF at the end."""
    registry = _registry()
    body, headers = _run(render(registry, accept="application/openmetrics-text; version=1.0.0"))
    assert body == generate_openmetrics(registry)
    assert body.count(b"# EOF") == 1
    assert headers["Content-Type"].startswith(OPENMETRICS.split(";")[0])


def test_gzip_when_accepted() -> None:
    registry = _registry()
    body, headers = _run(render(registry, accept_encoding="gzip, deflate"))
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body) == generate_latest(registry)


def test_names_restrict_the_series() -> None:
    body, _ = _run(render(_registry(), names=["synthmon_outbox_pending"]))
    assert [f.name for f in text_string_to_metric_families(body.decode())] == ["synthmon_outbox_pending"]


def test_every_series_carries_the_location_unless_it_has_its_own() -> None:
    registry = _registry()
    Gauge("synthmon_location_failing", "Failing elsewhere.", ["location"], registry=registry).labels(
        "eu"
    ).set(1)
    body, _ = _run(render(ConstLabels(registry, {"location": "us-east-1"})))
    samples = [s for f in text_string_to_metric_families(body.decode()) for s in f.samples]
    assert len(samples) > PROBES * 15
    for s in samples:
        expected = "eu" if s.name == "synthmon_location_failing" else "us-east-1"
        assert s.labels["location"] == expected, s
    assert registry.get_sample_value("synthmon_outbox_pending") == 3  # the registry itself is untouched
    assert generate_latest(registry).count(b"us-east-1") == 0


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text; version=1.0.0"])
def test_the_event_loop_runs_between_slices(accept: str) -> None:
    """Another task gets the loop at least once per slice: a scrape never holds it for the whole body."""
    registry = _registry()
    samples = sum(max(len(f.samples), 1) for f in registry.collect())

    async def scrape_beside_a_ticker() -> int:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        start = ticks
        await render(registry, accept=accept)
        done = True
        await task
        return ticks - start

    assert _run(scrape_beside_a_ticker()) >= samples // SLICE_SAMPLES
