"""The status API and page over a real store, through the wiring helper the daemon uses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.testclient import TestClient

from monitor.alerting.config import AlertingConfig
from monitor.alerting.incidents import IncidentState, Phase
from monitor.alerting.store import IncidentRecord
from monitor.api import WARM_EVERY_S, StatusApi, open_incidents
from monitor.app import build_store_features
from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.history import settled
from monitor.statuspage import BAR_RUNS, UPTIME_WINDOWS, Snapshot, human_duration, probe_card, render
from monitor.store.config import StoreConfig
from monitor.store.migrate import StoreGate
from probes.base import Diagnosis, Status, SystemClock

from .history_helpers import T0, FakeClock, FullStore, open_store, result
from .statuspage_states import FAILING, INCIDENT_ID, RUNS, STEPS, UPLOAD_MESSAGE, fill_healthy, fill_seed


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
        "location-heartbeat",
        "slo-evaluation",
        "status-warm",
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


# ---- the status snapshot over a real store: seed and healthy states --------------------------------

NOW = T0 + timedelta(hours=2)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[FullStore]:
    """A SQLite store holding the seed outage (see statuspage_states)."""
    with open_store("sqlite", tmp_path) as store:
        fill_seed(store, NOW)
        yield store


def _client(store: FullStore, *, environment: str = "staging", gate: StoreGate | None = None) -> TestClient:
    return TestClient(
        Starlette(
            routes=StatusApi(
                store.history, store.alerting, FakeClock(NOW), environment=environment, gate=gate
            ).routes()
        )
    )


def test_status_json_keeps_its_fields_and_adds_steps_bars_and_the_incident(seeded: FullStore) -> None:
    """/api/v1/status keeps every field it had (same meaning) and adds uptime windows, steps, the
    recent runs, the full failure and the open incident with its root cause and members."""
    body = _client(seeded).get("/api/v1/status").json()
    probes = {p["probe"]: p for p in body["probes"]}
    assert sorted(probes) == sorted(STEPS)
    art = probes["artifact_roundtrip"]
    legacy = {k: art[k] for k in ("status", "failing_step", "http_status", "incident")}
    assert legacy == {"status": "FAIL", "failing_step": "upload", "http_status": 404, "incident": INCIDENT_ID}
    assert art["last_run_at"] == (NOW - timedelta(minutes=1)).isoformat()
    assert art["uptime_24h"] == pytest.approx((RUNS - FAILING) / RUNS)
    assert art["uptime_7d"] == art["uptime_30d"] == art["uptime_24h"]
    assert art["failure"]["cause"] == "artifact_route_not_deployed"
    assert art["failure"]["message"] == UPLOAD_MESSAGE
    assert len(art["recent"]) == BAR_RUNS
    assert [c["status"] for c in art["recent"]][-FAILING - 1 :] == ["PASS"] + ["FAIL"] * FAILING
    steps = {s["name"]: s for s in art["steps"]}
    assert list(steps) == list(STEPS["artifact_roundtrip"])
    assert (steps["upload"]["status"], steps["list"]["status"]) == ("FAIL", "SKIPPED")
    assert (probes["auth"]["incident"], probes["auth"]["failure"]) == (None, None)
    assert probes["alb_health"]["failing_step"] == "registry_health"
    [incident] = body["incidents"]
    assert incident["incident_id"] == INCIDENT_ID
    assert incident["title"] == "Artifact storage not deployed"
    assert incident["root_cause"]["probe"] == "artifact_roundtrip"
    assert incident["root_cause"]["action"].startswith("Check the proxy's route")
    assert incident["members"] == [
        {"probe": "artifact_roundtrip", "step": "upload"},
        {"probe": "alb_health", "step": "registry_health"},
        {"probe": "registration", "step": "log_model"},
    ]
    assert incident["since"] == (NOW - timedelta(minutes=FAILING - 1)).isoformat()


def test_healthy_status_has_no_incident(tmp_path: Path) -> None:
    """Five passing probes: no failure, no incident, full uptime."""
    with open_store("sqlite", tmp_path) as store:
        fill_healthy(store, NOW)
        body = _client(store).get("/api/v1/status").json()
    assert body["incidents"] == []
    assert {p["status"] for p in body["probes"]} == {"PASS"}
    assert {p["uptime_30d"] for p in body["probes"]} == {1.0}


def test_page_escapes_what_runs_and_config_carry(seeded: FullStore) -> None:
    """Markup in a run message or the environment name shows as text, never as markup."""
    page = _client(seeded, environment="<i>prod</i>").get("/")
    assert page.status_code == 200
    assert "&lt;b&gt;not found&lt;/b&gt;" in page.text
    assert "<b>not found</b>" not in page.text
    assert "&lt;i&gt;prod&lt;/i&gt;" in page.text
    assert "<i>prod</i>" not in page.text
    assert "<script" not in page.text


def test_store_down_answers_503_page_and_json(seeded: FullStore, tmp_path: Path) -> None:
    """A store not opened yet, or one that fails, gives a 503 page that says so and a 503 JSON error."""
    gate = StoreGate(sa.create_engine(f"sqlite:///{tmp_path}/never.db"), monotonic=lambda: 0.0)
    client = _client(seeded, gate=gate)
    page = client.get("/")
    assert (page.status_code, page.headers["content-type"].split(";")[0]) == (503, "text/html")
    assert "the store is not open yet" in page.text
    assert client.get("/api/v1/status").status_code == 503
    with seeded.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE steps"))
        conn.execute(sa.text("DROP TABLE runs"))
    client = _client(seeded)
    page = client.get("/")
    assert page.status_code == 503
    assert "the store did not answer (OperationalError)" in page.text
    status = client.get("/api/v1/status")
    assert (status.status_code, status.json()) == (503, {"error": "store unavailable (OperationalError)"})


def test_status_reads_are_few_and_indexed(tmp_path: Path) -> None:
    """/api/v1/status and the page each cost a handful of statements; none of theirs or of
    /api/v1/locations scans a whole table of runs, steps or rollups or an index of one (SQLite's
    query plans), so they stay fast on a year of history."""
    with open_store("sqlite", tmp_path) as store:
        fill_seed(store, NOW)
        statements: list[tuple[str, Any]] = []

        def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
            statements.append((sql, params))

        sa.event.listen(store.engine, "before_cursor_execute", record)
        client = _client(store)
        reads: dict[str, list[tuple[str, Any]]] = {}
        for path in ("/api/v1/status", "/", "/api/v1/locations"):
            statements.clear()
            assert client.get(path).status_code == 200
            reads[path] = [s for s in statements if s[0].lstrip().upper().startswith(("SELECT", "WITH"))]
        sa.event.remove(store.engine, "before_cursor_execute", record)
        assert 1 <= len(reads["/"]) == len(reads["/api/v1/status"]) <= 8, reads
        with store.engine.connect() as conn:
            for sql, params in [*reads["/"], *reads["/api/v1/locations"]]:
                plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
                scans = [
                    p
                    for p in plan
                    if p.startswith("SCAN") and any(t in p for t in ("runs", "steps", "rollups"))
                ]
                assert scans == [], (sql, plan)


# ---- the incident adapter (pure) -------------------------------------------------------------------


def _record(
    probe: str, incident: str, owner: str, opened_min: int, *, resolved: bool = False
) -> IncidentRecord:
    at = T0 + timedelta(minutes=opened_min)
    return IncidentRecord(incident, probe, owner, at, at + timedelta(minutes=1) if resolved else None, "")


ART = Diagnosis("artifact_route_not_deployed", "hint", "action")


@pytest.mark.parametrize(
    ("records", "states", "failing", "want"),
    [
        (
            [
                _record("artifact_roundtrip", "a-1", "artifact_roundtrip", 0),
                _record("registration", "a-1", "artifact_roundtrip", 3),
            ],
            {},
            {"artifact_roundtrip": ART, "registration": ART},
            [("a-1", 0, ["artifact_roundtrip", "registration"], "artifact_roundtrip")],
        ),
        (
            [
                _record("registration", "a-1", "artifact_roundtrip", 2),
                _record("artifact_roundtrip", "a-1", "artifact_roundtrip", 1),
            ],
            {},
            {"artifact_roundtrip": None, "registration": ART},
            [("a-1", 1, ["artifact_roundtrip", "registration"], "registration")],
        ),
        (
            [_record("auth", "x-1", "auth", 0, resolved=True)],
            {
                "auth": IncidentState(
                    "auth",
                    phase=Phase.OPEN,
                    incident_id="x-2",
                    incident_probe="auth",
                    opened_at=T0 + timedelta(minutes=7),
                )
            },
            {"auth": None},
            [("x-2", 7, ["auth"], "auth")],
        ),
        (
            [_record("auth", "x-1", "auth", 0), _record("mlflow_api", "m-1", "mlflow_api", 4)],
            {},
            {"auth": None, "mlflow_api": None},
            [("m-1", 4, ["mlflow_api"], "mlflow_api"), ("x-1", 0, ["auth"], "auth")],
        ),
        ([_record("auth", "x-1", "auth", 0, resolved=True)], {"auth": IncidentState("auth")}, {}, []),
    ],
    ids=[
        "joined-member",
        "owner-undiagnosed-member-diagnosed",
        "state-only-open",
        "independent-newest-first",
        "resolved",
    ],
)
def test_open_incidents_adapter(
    records: list[IncidentRecord],
    states: dict[str, IncidentState],
    failing: dict[str, Diagnosis | None],
    want: list[tuple[str, int, list[str], str]],
) -> None:
    """Open incidents group rows and open states by id, list members owner first with their failing
    step, take since from the earliest opening and the root cause from the first diagnosed failure."""
    latest = {
        probe: result(probe, Status.FAIL, T0 + timedelta(minutes=9), step="upload", diagnosis=diag)
        for probe, diag in failing.items()
    }
    got = open_incidents(records, states, latest)
    assert [
        (
            i.incident_id,
            int((i.since - T0).total_seconds() // 60),
            [m.probe for m in i.members],
            i.root.probe if i.root else None,
        )
        for i in got
    ] == want
    assert all(m.step == "upload" for i in got for m in i.members)
    titles = {i.incident_id: i.title for i in got}
    if "a-1" in titles:
        assert titles["a-1"] == "Artifact storage not deployed"
    if "x-2" in titles:
        assert titles["x-2"] == "auth: upload failed (404)"


# ---- the view model and its formatting (pure) -------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.123, "0.12 s"),
        (42, "42 s"),
        (40 * 60, "40 min"),
        (95 * 60, "1 h 35 min"),
        (3 * 3600, "3 h"),
        (50 * 3600, "2 d 2 h"),
    ],
    ids=["sub-second", "seconds", "minutes", "hours-and-minutes", "whole-hours", "days"],
)
def test_durations_read_in_the_unit_that_fits(seconds: float, text: str) -> None:
    """Durations on the page use s, min, h or d as fits (a 40-second run never reads "0 min")."""
    assert human_duration(seconds) == text


def test_card_keeps_an_older_failure_one_click_away(tmp_path: Path) -> None:
    """A probe that failed and has passed since shows PASS, no failing block, and the older failure
    (step, message, cause) folded under a details element; its bar has the failure in place."""
    with open_store("sqlite", tmp_path) as store:
        failed = result("auth", Status.FAIL, T0, diagnosis=ART)
        store.append_runs([failed, *(result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in (1, 2))])
        marks = store.recent_runs(per_probe=BAR_RUNS)["auth"]
        full = store.runs_by_id([marks[0].run_id, failed.run_id])
    card = probe_card("auth", marks, full, {"24h": 2 / 3}, now=T0 + timedelta(minutes=3))
    assert (card.status, card.failing) == ("PASS", None)
    assert card.last_failure is not None
    assert (card.last_failure.step, card.last_failure.cause) == ("upload", "artifact_route_not_deployed")
    assert [c.status for c in card.bar][-3:] == ["FAIL", "PASS", "PASS"]
    assert [c.status for c in card.bar][:-3] == [None] * (BAR_RUNS - 3)
    page = render(Snapshot("prod", T0 + timedelta(minutes=3), (card,)))
    assert "<details><summary class='muted'>Last failure among the recent runs</summary>" in page
    assert "404 Not Found for url .../mlflow-artifacts/artifacts/x" in page
    assert "<h2>The probe is passing</h2>" in page


@pytest.mark.parametrize(
    ("minutes_since_last", "stale"),
    [(1, False), (4, False), (5.5, True), (60, True)],
    ids=["just-ran", "within-three-gaps-and-slack", "past-three-gaps-and-slack", "an-hour"],
)
def test_a_probe_that_stopped_running_is_marked_stale(
    tmp_path: Path, minutes_since_last: float, stale: bool
) -> None:
    """A probe whose newest run is older than three usual gaps plus a minute is marked stale on its
    card, in the JSON, and by a banner saying the page may be out of date (a green page from a
    monitor that stopped would mislead)."""
    with open_store("sqlite", tmp_path) as store:
        fill_healthy(store, NOW)
        now = NOW - timedelta(minutes=1) + timedelta(minutes=minutes_since_last)
        client = TestClient(
            Starlette(routes=StatusApi(store.history, store.alerting, FakeClock(now)).routes())
        )
        body = client.get("/api/v1/status").json()
        page = client.get("/").text
    assert {p["stale"] for p in body["probes"]} == {stale}
    assert {p["interval_s"] for p in body["probes"]} == {60.0}
    assert ("No recent run: what is shown may be out of date" in page) is stale
    assert (page.count("<b class='stale'>STALE</b>") == len(STEPS)) is stale


# ---- a fresh daemon: the status read warmed before the first request ------------------------------

WARM_CONFIG = """\
environment: test
listen: 127.0.0.1:0
store: {{url: "{url}"}}
probes:
  - {{name: auth, kind: http, enabled: false, options: {{url: "http://127.0.0.1:9/"}}}}
"""


async def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        await asyncio.sleep(0.02)


async def test_a_fresh_daemon_serves_its_first_status_from_a_warm_cache(tmp_path: Path) -> None:
    """The daemon reads the status once as it starts: with no request made, the settled hours of
    every uptime window are kept, and the first /api/v1/status and page read none themselves."""
    clock = SystemClock()
    now = clock.now()
    with open_store("sqlite", tmp_path) as store:  # three days of runs, every half hour
        runs = [result("auth", Status.PASS, now - timedelta(minutes=m)) for m in range(30, 4350, 30)]
        store.append_runs(runs)
    config = parse_config(WARM_CONFIG.format(url=f"sqlite:///{tmp_path}/synthmon.db"), env={})
    registry = CollectorRegistry()
    features = build_store_features(config.store, config.alerting, {}, registry, clock)
    daemon = Daemon(
        config,
        registry=registry,
        clock=clock,
        logger=structlog.get_logger("test"),
        extra_routes=features.routes,
        jobs=features.jobs,
        start_hooks=features.start_hooks,
        shutdown_hooks=[features.close],
        grace_s=2.0,
    )
    task = asyncio.create_task(daemon.serve(install_signals=False))
    settled = features.history_store.settled
    try:
        # Within less than WARM_EVERY_S: the start-up read's doing, not the periodic one's.
        warmed = "the settled hours of every window"
        await _until(lambda: len(settled) == len(UPTIME_WINDOWS), warmed, timeout_s=WARM_EVERY_S / 2)
        await _until(lambda: daemon.server is not None and daemon.server.started, "the HTTP server")
        assert daemon.server is not None
        reads = settled.reads
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.server.port}") as client:
            [status] = (await client.get("/api/v1/status")).json()["probes"]
            page = await client.get("/")
        assert (status["probe"], status["uptime_24h"], status["uptime_30d"]) == ("auth", 1.0, 1.0)
        assert page.status_code == 200
        assert settled.reads == reads == len(UPTIME_WINDOWS)
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, 10) == 0


async def test_keep_warm_renews_settled_hours_so_another_writers_late_run_shows(tmp_path: Path) -> None:
    """Another replica's late run of a settled hour shows once the periodic warm-up has read the
    kept hours again (after their renew age); after it, and after it reads a new hour's ranges, the
    status request reads none itself."""
    now = T0 + timedelta(hours=5, minutes=20)
    clock = FakeClock(now)
    with open_store("sqlite", tmp_path) as store:
        store.append_runs([result("auth", Status.PASS, T0 + timedelta(minutes=m)) for m in range(0, 300, 10)])
        api = StatusApi(store.history, store.alerting, clock, renew=store.history.renew_settled)
        client = TestClient(Starlette(routes=api.routes()))
        await api.warm()
        replica = FullStore.open_existing(f"sqlite:///{tmp_path}/synthmon.db")
        try:
            replica.append_runs([result("auth", Status.FAIL, T0 + timedelta(minutes=65))])
        finally:
            replica.close()
        clock.advance(settled.RENEW_AFTER_S + 1)
        assert client.get("/api/v1/status").json()["probes"][0]["uptime_24h"] == 1.0  # kept: not seen yet
        reads = store.history.settled.reads
        await api.keep_warm()
        assert store.history.settled.reads == reads + len(UPTIME_WINDOWS)
        assert client.get("/api/v1/status").json()["probes"][0]["uptime_24h"] == pytest.approx(30 / 31)
        assert store.history.settled.reads == reads + len(UPTIME_WINDOWS)
        # The hour turns: the warm-up reads the new ranges, the request after it none.
        clock.advance(3600)
        await api.keep_warm()
        reads = store.history.settled.reads
        assert client.get("/api/v1/status").status_code == 200
        assert store.history.settled.reads == reads
