"""The outbox: retries through a Slack outage in order, survives a crash, and sends once with two
dispatchers on PostgreSQL; incident transitions of one probe are serialized across replicas."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from monitor.alerting.base import EventKind
from monitor.alerting.config import AlertingConfig, IncidentRule, SlackConfig
from monitor.alerting.incidents import transition
from monitor.alerting.metrics import AlertingMetrics
from monitor.alerting.outbox import Dispatcher
from monitor.alerting.sink import IncidentSink
from monitor.alerting.slack import SlackNotifier
from monitor.store.metrics import StoreMetrics
from probes.base import Status
from tests.history.history_helpers import FullStore

from .fakeslack import TOKEN, FakeSlack, fake_slack

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from history.history_helpers import PG_SKIP_REASON, PG_URL, T0, FakeClock, pg_schema_url, result

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """A fake Slack API for one test."""
    with fake_slack() as s:
        yield s


def slack_config(slack: FakeSlack) -> AlertingConfig:
    return AlertingConfig(
        slack=SlackConfig(bot_token=SecretStr(TOKEN), channel="#alerts", api_url=slack.api_url)
    )


class Metrics:
    """Both metric sets on one registry (each series may be registered once)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.alerting = AlertingMetrics(self.registry)
        self.store = StoreMetrics(self.registry)


def make_dispatcher(
    store: FullStore, slack: FakeSlack, clock: FakeClock, metrics: Metrics, owner: str
) -> Dispatcher:
    """A dispatcher sending to the fake Slack with the bot token (no slack-sdk retries)."""
    cfg = slack_config(slack)
    notifier = SlackNotifier(cfg.slack, retries=0)
    return Dispatcher(
        store, {"slack": notifier}, clock, metrics.alerting, metrics.store, cfg.outbox, owner=owner
    )


async def test_slack_down_ten_minutes_then_every_event_once_in_order(
    tmp_path: Path, slack: FakeSlack
) -> None:
    """Events queued while Slack is down for 10 fake minutes are all delivered once, in queue order."""
    store = FullStore.open(f"sqlite:///{tmp_path}/s.db")
    m = Metrics()
    registry = m.registry
    clock = FakeClock(T0)
    cfg = slack_config(slack)
    sink = IncidentSink(store, cfg, {"artifact_roundtrip": ["auth"]}, clock, m.alerting, m.store)
    dispatcher = make_dispatcher(store, slack, clock, m, "d1")
    slack.down = True
    plan = (
        [("auth", Status.FAIL)] * 2 + [("artifact_roundtrip", Status.FAIL)] * 2 + [("auth", Status.PASS)] * 2
    )
    for probe, status in plan:
        await sink.handle(result(probe, status, clock.now()))
        assert await sink.flush(10)  # handle only queues; evaluate now
        await dispatcher.run()
        clock.advance(60)
    while clock.now() < T0 + timedelta(minutes=10):
        await dispatcher.run()
        clock.advance(5)
    assert slack.posted() != []  # it did try
    assert all(r["state"] == "pending" for r in store.outbox_rows())
    slack.down = False
    tried = len(slack.requests)
    for _ in range(200):
        await dispatcher.run()
        if not store.outbox_pending():
            break
        clock.advance(5)
    rows = store.outbox_rows()
    assert [r["state"] for r in rows] == ["sent"] * len(rows)
    delivered = slack.requests[tried:]
    kinds = [r.body["text"] for r in delivered if r.path.endswith("chat.postMessage")]
    assert len(kinds) == len(rows) == 3  # auth opened, artifact joined, auth recovered
    assert "auth PASS → FAIL" in kinds[0]
    assert "artifact_roundtrip PASS → FAIL" in kinds[1]
    assert "auth FAIL → PASS" in kinds[2]
    root_ts = next(r for r in delivered if r.body.get("thread_ts") is None).body
    assert [r.body.get("thread_ts") is not None for r in delivered if r.path.endswith("postMessage")] == [
        False,
        True,
        True,
    ]
    assert root_ts["channel"] == "#alerts"
    assert (
        registry.get_sample_value("synthmon_notifications_total", {"channel": "slack", "result": "sent"}) == 3
    )
    assert (
        registry.get_sample_value(
            "synthmon_notifications_total", {"channel": "slack", "result": "transient_error"}
        )
        > 0
    )
    assert registry.get_sample_value("synthmon_outbox_pending", {"channel": "slack"}) == 0
    store.close()


async def test_permanent_error_stops_retrying_and_next_event_proceeds(
    tmp_path: Path, slack: FakeSlack
) -> None:
    """A channel_not_found fails that event at once (counted) and later events are still sent."""
    store = FullStore.open(f"sqlite:///{tmp_path}/p.db")
    m = Metrics()
    registry = m.registry
    clock = FakeClock(T0)
    sink = IncidentSink(store, slack_config(slack), {}, clock, m.alerting, m.store)
    dispatcher = make_dispatcher(store, slack, clock, m, "d1")
    for status in (Status.FAIL, Status.FAIL, Status.PASS, Status.PASS):
        await sink.handle(result("auth", status, clock.now()))
        assert await sink.flush(10)
        clock.advance(60)
    slack.fail("channel_not_found")
    await dispatcher.run()
    assert [r["state"] for r in store.outbox_rows()] == ["failed", "sent"]
    assert len(slack.requests) == 2
    assert (
        registry.get_sample_value(
            "synthmon_notifications_total", {"channel": "slack", "result": "permanent_error"}
        )
        == 1
    )
    store.close()


def test_sigkill_between_state_change_and_send_delivers_once_after_restart(
    tmp_path: Path, slack: FakeSlack
) -> None:
    """A process killed after queuing but before sending loses nothing: the next dispatcher sends once."""
    url = f"sqlite:///{tmp_path}/crash.db"
    child = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("alerting_crash_child.py")), url],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert "queued" in child.stdout
    assert slack.requests == []
    store = FullStore.open(url)
    clock = FakeClock(T0 + timedelta(minutes=5))
    for _ in range(2):  # the restarted daemon's dispatcher, run twice: still one message
        make_dispatcher(store, slack, clock, Metrics(), "after-restart").dispatch_once()
    assert len(slack.posted()) == 1
    assert [r["state"] for r in store.outbox_rows()] == ["sent"]
    store.close()


pg = pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON)


@pytest.mark.postgres
@pg
def test_two_dispatchers_on_postgres_send_each_event_once(slack: FakeSlack) -> None:
    """Two concurrent dispatchers (separate engines) on one PostgreSQL outbox send each event once."""
    slack.delay_s = 0.01
    with pg_schema_url(str(PG_URL)) as url:
        stores = [FullStore.open(url), FullStore.open(url)]
        clock = FakeClock(T0)
        for i in range(12):
            probe = f"p{i % 3}"
            kind = EventKind.OPENED if i < 3 else EventKind.UPDATED
            res = result(probe, Status.FAIL, T0, run_id=f"r{i}")

            def decide(view, res=res, kind=kind):  # type: ignore[no-untyped-def]
                from monitor.alerting.base import Event

                e = Event(
                    kind, res.probe, f"{res.probe}-inc", res.probe, "prod", T0, T0, res.run_id, "PASS", "FAIL"
                )
                return view.state, [e]

            stores[0].transition(probe, T0, decide, ("slack",))
        dispatchers = [make_dispatcher(s, slack, clock, Metrics(), f"d{i}") for i, s in enumerate(stores)]
        barrier = threading.Barrier(2)

        def drain(d: Dispatcher) -> None:
            barrier.wait()
            for _ in range(30):
                d.dispatch_once()

        threads = [threading.Thread(target=drain, args=(d,)) for d in dispatchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        posted = slack.posted()
        assert len(posted) == 12
        thread_of = {}
        for r in posted:
            thread_of.setdefault(r.body.get("thread_ts"), []).append(r)
        assert len(thread_of[None]) == 3  # one root per incident, the rest are replies
        assert [r["state"] for r in stores[0].outbox_rows()] == ["sent"] * 12
        for s in stores:
            s.close()


@pytest.mark.postgres
@pg
def test_concurrent_transitions_of_one_probe_are_serialized_on_postgres() -> None:
    """Two replicas feeding failures of one probe at once open exactly one incident (one event)."""
    with pg_schema_url(str(PG_URL)) as url:
        stores = [FullStore.open(url), FullStore.open(url)]
        # Threshold 20 with 2 x 10 results: the incident opens only if no update was lost to a race.
        rule = IncidentRule(failure_threshold=20)
        events: list[EventKind] = []
        lock = threading.Lock()
        barrier = threading.Barrier(2)

        def feed(store: FullStore, n: int) -> None:
            barrier.wait()
            for i in range(n):
                res = result("auth", Status.FAIL, T0 + timedelta(seconds=i))
                out = store.transition(
                    "auth",
                    res.started_at,
                    lambda v, res=res: transition(v.state, res, rule, res.started_at),
                    ("log",),
                )
                with lock:
                    events.extend(e.kind for e in out)

        threads = [threading.Thread(target=feed, args=(s, 10)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert events == [EventKind.OPENED]
        assert stores[0].incident_states()["auth"].failures == 20
        for s in stores:
            s.close()
