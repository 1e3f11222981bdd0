"""The quorum of locations: a failure pages only when enough locations see it.

The pure rules (table-driven), then three incident sinks in three locations sharing one store
(SQLite and PostgreSQL), driven by a fake clock: one location failing alone never pages, all
failing pages once naming them, and a single location behaves as without locations.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig, IncidentRule, QuorumConfig
from monitor.alerting.incidents import Phase, Verdict
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.quorum import LIVE_S, LocationView, failing_locations, gate, observe, required
from monitor.alerting.sink import IncidentSink
from monitor.app import probe_spacing
from monitor.config import load_config
from monitor.store.metrics import StoreMetrics
from probes.base import Status
from tests.history.conftest import BACKENDS
from tests.history.history_helpers import T0, FakeClock, FullStore, open_store, result

G, B, N = Verdict.GOOD, Verdict.BAD, Verdict.NEUTRAL


@pytest.mark.parametrize(
    ("judged", "failing", "need", "want"),
    [
        (B, ["c"], 2, N),  # one zone alone: not the platform's failure
        (B, ["a", "c"], 2, B),
        (G, ["b", "c"], 2, N),  # a recovering while two still fail resolves nothing
        (G, ["c"], 2, G),
        (B, ["a"], 1, B),  # one live location: exactly the behaviour without locations
        (G, ["a"], 1, G),
        (N, ["a", "b"], 2, N),
    ],
    ids=[
        "bad-alone",
        "bad-quorum",
        "good-under-quorum",
        "good-quorum-gone",
        "single-bad",
        "single-good",
        "neutral",
    ],
)
def test_gate(judged: Verdict, failing: list[str], need: int, want: Verdict) -> None:
    """How a run counts for the shared incident, given who else fails and the quorum."""
    assert gate(judged, failing, need) is want


@pytest.mark.parametrize(
    ("min_locations", "live", "want"), [(2, 3, 2), (2, 1, 1), (3, 2, 2), (1, 5, 1), (2, 0, 1)]
)
def test_required_is_the_quorum_capped_by_the_live_locations(
    min_locations: int, live: int, want: int
) -> None:
    """``min(min_locations, live)``, never below one."""
    assert required(min_locations, live) == want


def test_a_location_counts_as_failing_only_within_the_window() -> None:
    """A location whose last bad run is older than the window no longer counts (its daemon died)."""
    bad = observe(LocationView("p", "a"), result("p", Status.FAIL, T0), B, T0)
    other = observe(LocationView("p", "b"), result("p", Status.FAIL, T0), B, T0 + timedelta(seconds=50))
    good = observe(bad, result("p", Status.PASS, T0), G, T0)
    assert bad.failing
    assert bad.step == "upload"
    assert not good.failing
    now = T0 + timedelta(seconds=60)
    assert failing_locations([bad, other, replace(good, location="c")], now, 120) == ("a", "b")
    assert failing_locations([bad, other], now, 30) == ("b",)
    # A neutral run (the monitor could not check) changes nothing but the bookkeeping.
    neutral = observe(bad, result("p", Status.ERROR, T0), N, now)
    assert (neutral.failing, neutral.failures, neutral.last_bad_at) == (True, 1, T0)
    assert neutral.last_status == "ERROR"


# ---- three sinks, three locations, one store --------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FullStore]:
    """A migrated store on SQLite and on PostgreSQL."""
    with open_store(str(request.param), tmp_path) as s:
        yield s


CONFIG = AlertingConfig(
    rules=IncidentRule(failure_threshold=2, success_threshold=2, reminder_interval=0),
    quorum=QuorumConfig(min_locations=2, window=60),
)


class Locations:
    """One incident sink per location on one store; ``round`` feeds each a run, 10 s apart."""

    def __init__(
        self,
        store: FullStore,
        names: tuple[str, ...],
        config: AlertingConfig = CONFIG,
        spacing: dict[str, float] | None = None,
    ) -> None:
        self.store = store
        self.clock = FakeClock(T0)
        self.registry = CollectorRegistry()
        metrics = AlertingMetrics(self.registry)
        self.sinks = {
            name: IncidentSink(
                store.alerting,
                config,
                {},
                self.clock,
                metrics,
                StoreMetrics(CollectorRegistry()),
                location=name,
                spacing=spacing,
            )
            for name in names
        }

    async def round(self, statuses: dict[str, Status], probe: str = "artifact_roundtrip") -> None:
        for name, status in statuses.items():
            run = replace(result(probe, status, self.clock.now()), location=name)
            await self.sinks[name].handle(run)
            assert await self.sinks[name].flush(10)
            self.clock.advance(10)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(str(r["payload"])) for r in self.store.outbox_rows()]


PASS, FAIL = Status.PASS, Status.FAIL


async def test_one_location_failing_alone_never_pages(store: FullStore) -> None:
    """c fails ten times in a row while a and b pass: no event; c's view says failing."""
    locs = Locations(store, ("a", "b", "c"))
    for _ in range(10):
        await locs.round({"a": PASS, "b": PASS, "c": FAIL})
    assert locs.events() == []
    assert store.alerting.incident_states()["artifact_roundtrip"].phase is Phase.OK
    views = {v.location: v for v in store.alerting.location_views()}
    assert views["c"].failing
    assert views["c"].failures == 10
    assert not views["a"].failing
    assert not views["b"].failing
    assert sorted(store.alerting.location_heartbeats()) == ["a", "b", "c"]
    value = locs.registry.get_sample_value(
        "synthmon_location_failing", {"probe": "artifact_roundtrip", "location": "c"}
    )
    assert value == 1


async def test_a_failure_seen_everywhere_pages_once_naming_the_locations(store: FullStore) -> None:
    """All three fail: one opening (quorum reached), no second page; one resolution naming all three."""
    locs = Locations(store, ("a", "b", "c"))
    await locs.round({"a": PASS, "b": PASS, "c": PASS})
    for _ in range(4):
        await locs.round({"a": FAIL, "b": FAIL, "c": FAIL})
    kinds = [e["kind"] for e in locs.events()]
    assert kinds == ["opened"]
    opened = locs.events()[0]
    assert len(opened["locations"]) >= 2  # type: ignore[arg-type]
    assert store.alerting.incident_states()["artifact_roundtrip"].locations == ("a", "b", "c")
    # a recovers first: b and c still make a quorum, so a's good runs resolve nothing.
    for _ in range(3):
        await locs.round({"a": PASS, "b": FAIL, "c": FAIL})
    assert [e["kind"] for e in locs.events()] == ["opened"]
    for _ in range(2):
        await locs.round({"a": PASS, "b": PASS, "c": PASS})
    events = locs.events()
    assert [e["kind"] for e in events] == ["opened", "resolved"]
    assert events[1]["locations"] == ["a", "b", "c"]
    assert events[1]["summary"]["locations"] == ["a", "b", "c"]  # type: ignore[index]


async def test_a_single_location_pages_as_without_locations(store: FullStore) -> None:
    """One location: the quorum is 1 of 1, the threshold alone decides, events name no location."""
    locs = Locations(store, ("default",))
    await locs.round({"default": FAIL})
    assert locs.events() == []
    await locs.round({"default": FAIL})
    events = locs.events()
    assert [e["kind"] for e in events] == ["opened"]
    assert events[0]["locations"] == []


async def test_a_probe_run_less_often_than_the_window_still_reaches_its_quorum(store: FullStore) -> None:
    """registration runs every 15 min (jitter 1 min, timeout 3 min) from a and b, 7 min apart:
    with a 60 s window the two locations' failures would never overlap and a platform outage
    would never page. The window stretches to the probe's spacing, so it pages."""
    locs = Locations(store, ("a", "b"), spacing={"registration": (15 + 1 + 3) * 60.0})
    await locs.round({"a": PASS, "b": PASS}, probe="registration")

    def beat() -> None:  # both daemons stay live in between (their heartbeat job)
        for name in ("a", "b"):
            store.alerting.heartbeat(name, locs.clock.now())

    for _ in range(3):
        await locs.round({"a": FAIL}, probe="registration")
        locs.clock.advance(7 * 60)
        beat()
        await locs.round({"b": FAIL}, probe="registration")
        locs.clock.advance(8 * 60)
        beat()
    assert [(e["probe"], e["kind"]) for e in locs.events()] == [("registration", "opened")]


async def test_a_location_no_longer_live_leaves_the_quorum(store: FullStore) -> None:
    """b stops heartbeating: after LIVE_S only a is live, so a alone seeing a failure pages."""
    locs = Locations(store, ("a", "b"))
    await locs.round({"a": PASS, "b": PASS})
    for _ in range(3):
        await locs.round({"a": FAIL})
    assert locs.events() == []  # b is still live (its heartbeat is recent): a alone is no quorum
    locs.clock.advance(LIVE_S)
    for _ in range(2):
        await locs.round({"a": FAIL})
    assert [e["kind"] for e in locs.events()] == ["opened"]


async def test_a_probe_run_from_one_location_only_needs_that_location(store: FullStore) -> None:
    """Both locations are live, but only a runs registration: a's failures alone are its quorum."""
    locs = Locations(store, ("a", "b"))
    await locs.round({"a": PASS, "b": PASS}, probe="auth")
    for _ in range(2):
        await locs.round({"a": FAIL}, probe="registration")
    assert [(e["probe"], e["kind"]) for e in locs.events()] == [("registration", "opened")]


async def test_a_location_gone_for_the_retention_leaves_the_views(store: FullStore) -> None:
    """Retention forgets a decommissioned location's views and heartbeat; a recent one stays."""
    locs = Locations(store, ("a", "b"))
    await locs.round({"a": FAIL, "b": PASS})
    locs.clock.advance(20 * 86400)
    await locs.round({"b": PASS})
    report = store.alerting.prune(locs.clock.now() + timedelta(days=15))
    assert report["location_views"] == 1
    assert [v.location for v in store.alerting.location_views()] == ["b"]
    assert sorted(store.alerting.location_heartbeats()) == ["b"]


async def test_the_heartbeat_job_marks_the_location_live_once_the_store_is_open(store: FullStore) -> None:
    """Every HEARTBEAT_S the daemon refreshes its location's heartbeat; not while the store is closed."""

    class Gate:
        ready = False

    clock = FakeClock(T0)
    sink = IncidentSink(
        store.alerting,
        CONFIG,
        {},
        clock,
        AlertingMetrics(CollectorRegistry()),
        StoreMetrics(CollectorRegistry()),
        gate=Gate(),  # type: ignore[arg-type]  # the sink reads .ready only
        location="eu-west-1a",
    )
    name, interval, beat = sink.heartbeat_job()
    assert (name, interval) == ("location-heartbeat", 30.0)
    await beat()
    assert store.alerting.location_heartbeats() == {}
    Gate.ready = True
    await beat()
    assert store.alerting.location_heartbeats() == {"eu-west-1a": T0.timestamp()}


def test_the_daemon_stretches_the_window_to_each_probes_spacing() -> None:
    """The shipped config: registration (every 15 min, jitter 1 min, timeout 3 min) gets 19 min,
    an SLO's pseudo-probe two evaluations; both are what the daemon hands its incident sink."""
    config = load_config(Path(__file__).parents[2] / "config.yaml", env={"SYNTHMON_API_KEY": "k"})
    spacing = probe_spacing(config)
    assert spacing["registration"] == 19 * 60
    assert spacing["slo:auth"] == 120
    assert config.alerting.quorum.window < spacing["registration"]
