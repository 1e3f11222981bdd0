"""Per-location state where people look: history rows and JSON, ``GET /api/v1/locations``, the
status page's Locations table, ``synthmon locations``, and the migration of existing runs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from monitor.alerting.config import AlertingConfig, IncidentRule, QuorumConfig
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.sink import IncidentSink
from monitor.api import StatusApi
from monitor.cli import build_parser
from monitor.results import ProbeResult
from monitor.store import migrate
from monitor.store.engine import create_store_engine
from monitor.store.metrics import StoreMetrics
from probes.base import Status, SystemClock
from tests.history.conftest import BACKENDS
from tests.history.history_helpers import FakeClock, FullStore, open_store, pg_schema_url, result

CONFIG = AlertingConfig(
    rules=IncidentRule(failure_threshold=2, success_threshold=2), quorum=QuorumConfig(min_locations=2)
)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullStore]:
    """A migrated store on SQLite and on PostgreSQL."""
    with open_store(str(request.param), tmp_path) as s:
        yield s


async def _c_fails_alone(store: FullStore, clock: FakeClock) -> None:
    """Runs from a, b (passing) and c (failing) stored in history and fed to each location's sink."""
    sinks = {
        loc: IncidentSink(
            store.alerting,
            CONFIG,
            {},
            clock,
            AlertingMetrics(CollectorRegistry()),
            StoreMetrics(CollectorRegistry()),
            location=loc,
        )
        for loc in ("a", "b", "c")
    }
    for _ in range(3):
        for loc, status in (("a", Status.PASS), ("b", Status.PASS), ("c", Status.FAIL)):
            run = replace(result("artifact_roundtrip", status, clock.now()), location=loc)
            store.append_runs([run])
            await sinks[loc].handle(run)
            assert await sinks[loc].flush(10)
            clock.advance(5)


async def test_api_and_page_show_each_probe_from_each_location(store: FullStore) -> None:
    """/api/v1/locations: the live locations, the newest run and the failing flag per location;
    the status page shows the same as a table; nothing pages."""
    clock = FakeClock(SystemClock().now())
    await _c_fails_alone(store, clock)
    client = TestClient(
        Starlette(routes=StatusApi(store.history, store.alerting, clock, location="a").routes())
    )
    body = client.get("/api/v1/locations").json()
    assert body["location"] == "a"
    assert [(p["location"], p["live"]) for p in body["locations"]] == [("a", True), ("b", True), ("c", True)]
    cells = {c["location"]: c for c in body["probes"] if c["probe"] == "artifact_roundtrip"}
    assert {loc: (c["status"], c["failing"]) for loc, c in cells.items()} == {
        "a": ("PASS", False),
        "b": ("PASS", False),
        "c": ("FAIL", True),
    }
    assert cells["c"]["failing_step"] == "upload"
    assert cells["c"]["since"] is not None
    assert store.outbox_rows() == []
    page = client.get("/").text
    assert "id='locations'" in page
    assert "data-location='c' data-failing='1'" in page
    assert "data-location='a' data-failing='0'" in page
    # Stored runs carry their location, in the API's JSON too.
    runs = client.get("/api/v1/runs?probe=artifact_roundtrip&since=1h").json()["runs"]
    assert sorted({r["location"] for r in runs}) == ["a", "b", "c"]


async def test_a_single_location_page_has_no_locations_table(store: FullStore) -> None:
    """One location needs no per-location table: the page is as before."""
    clock = FakeClock(SystemClock().now())
    store.append_runs([result("auth", Status.PASS, clock.now())])
    client = TestClient(Starlette(routes=StatusApi(store.history, store.alerting, clock).routes()))
    assert "id='locations'" not in client.get("/").text
    assert [p["location"] for p in client.get("/api/v1/locations").json()["locations"]] == ["default"]


async def test_cli_locations_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``synthmon locations``: one row per probe, one column per location; c marked failing."""
    db = tmp_path / "s.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"environment: test\nstore:\n  url: sqlite:///{db}\nprobes: []\n")
    store = FullStore.open(f"sqlite:///{db}")
    try:
        await _c_fails_alone(store, FakeClock(SystemClock().now()))
    finally:
        store.close()
    capsys.readouterr()  # the sinks' log lines
    parser = build_parser(["monitor.locations_cli"])
    args = parser.parse_args(["locations", "--config", str(config)])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("store: sqlite:///")
    assert lines[1].split() == ["PROBE", "A", "B", "C"]
    assert lines[2].split()[:4] == ["artifact_roundtrip", "PASS", "PASS", "FAIL"]
    assert "(failing at upload)" in lines[2]
    args = parser.parse_args(["locations", "--config", str(config), "--format", "json"])
    assert args.func(args) == 0
    body = json.loads(capsys.readouterr().out)
    assert [c["failing"] for c in body["probes"]] == [False, False, True]


def test_history_table_names_the_location(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``synthmon history`` shows where each run was made from."""
    db = tmp_path / "s.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"environment: test\nstore:\n  url: sqlite:///{db}\nprobes: []\n")
    store = FullStore.open(f"sqlite:///{db}")
    try:
        store.append_runs([replace(result("auth", Status.PASS, SystemClock().now()), location="eu-west-1a")])
    finally:
        store.close()
    args = build_parser(["monitor.history.commands"]).parse_args(["history", "--config", str(config)])
    assert args.func(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:4] == ["STARTED_AT", "PROBE", "LOCATION", "STATUS"]
    assert "eu-west-1a" in lines[2]


def test_results_without_a_location_load_as_the_default() -> None:
    """Runs stored (or printed) before locations existed read back as the default location."""
    run = result("auth", Status.PASS)
    d = run.to_dict()
    assert d["location"] == "default"
    del d["location"]
    assert ProbeResult.from_dict(d).location == "default"
    assert ProbeResult.from_dict({**d, "location": "b"}).location == "b"


@pytest.mark.parametrize("backend", [p.values[0] for p in BACKENDS])
def test_migration_gives_existing_runs_the_default_location(backend: str, tmp_path: Path) -> None:
    """A store at the first schema, with runs in it, upgrades to locations: its runs are "default"."""
    if backend == "postgres":
        from tests.history.history_helpers import PG_URL

        if PG_URL is None:
            pytest.skip("SYNTHMON_TEST_PG_URL is not set")
        ctx = pg_schema_url(PG_URL)
    else:
        from contextlib import nullcontext

        ctx = nullcontext(f"sqlite:///{tmp_path}/old.db")
    with ctx as url:
        engine = create_store_engine(url)
        try:
            cfg = migrate._config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0001")
            now = SystemClock().now().timestamp()
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO runs (run_id, probe, kind, environment, started_at, duration_s, "
                        "status, failing_step, payload) VALUES ('old-1', 'auth', 'auth', 'prod', :t, 0.1, "
                        "'PASS', NULL, :p)"
                    ),
                    {"t": now - 60, "p": json.dumps(result("auth", Status.PASS, run_id="old-1").to_dict())},
                )
            migrate.upgrade(engine)
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT location FROM runs")).scalar_one() == "default"
            store = FullStore(engine)
            since = SystemClock().now() - timedelta(hours=1)
            assert [(r.probe, r.location) for r in store.history.latest_by_location(since=since)] == [
                ("auth", "default")
            ]
        finally:
            engine.dispose()


def test_metrics_exposition_adds_the_location_to_every_series() -> None:
    """/metrics carries the daemon's location on every series; a series' own location label wins,
    and ``name[]`` filtering still works."""
    from prometheus_client import Gauge
    from starlette.routing import Route

    from monitor.server import build_app

    registry = CollectorRegistry()
    Gauge("synthmon_probe_success", "d", ["probe"], registry=registry).labels(probe="auth").set(1)
    Gauge("synthmon_location_failing", "d", ["probe", "location"], registry=registry).labels(
        probe="auth", location="elsewhere"
    ).set(1)

    def ok() -> tuple[bool, dict[str, object]]:
        return True, {}

    extra: list[Route] = []
    client = TestClient(
        build_app(registry=registry, health=ok, ready=ok, extra_routes=extra, metric_labels={"location": "b"})
    )
    text = client.get("/metrics").text
    assert 'synthmon_probe_success{location="b",probe="auth"} 1.0' in text
    assert 'synthmon_location_failing{location="elsewhere",probe="auth"} 1.0' in text
    only = client.get("/metrics", params={"name[]": "synthmon_probe_success"}).text
    assert 'synthmon_probe_success{location="b",probe="auth"} 1.0' in only
    assert "synthmon_location_failing" not in only
