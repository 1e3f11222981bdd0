"""Store contract suite: the same scenarios on SQLite and PostgreSQL (migrations, runs, rollups,
retention, incident transitions with the outbox, outbox claiming, silences)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.alerting.base import Event, EventKind
from monitor.alerting.incidents import IncidentState, Phase
from monitor.alerting.store import IncidentView
from monitor.history import settled, sqlstore
from monitor.history.reads import HistoryReads
from monitor.store import migrate
from monitor.store.engine import create_store_engine
from probes.base import Status
from tests.history.history_helpers import FullStore

from .history_helpers import T0, open_store, result


def _event(probe: str = "p", kind: EventKind = EventKind.OPENED, incident: str = "p-1") -> Event:
    return Event(
        kind=kind,
        probe=probe,
        incident_id=incident,
        incident_probe=probe,
        environment="prod",
        at=T0,
        since=T0,
        run_id="r",
        old_status="PASS",
        new_status="FAIL",
    )


def _queue(store: FullStore, events: list[Event], channels: tuple[str, ...] = ("slack",)) -> None:
    for e in events:
        store.transition(e.probe, T0, lambda v, e=e: (v.state, [e]), channels)


def test_migrations_reach_head_and_are_idempotent(store: FullStore) -> None:
    """A fresh store is at the head revision and re-applying migrations changes nothing."""
    assert migrate.current_revision(store.engine) == migrate.head_revision()
    assert migrate.upgrade(store.engine) == migrate.head_revision()
    assert migrate.current_revision(store.engine) == migrate.head_revision()


def test_newer_schema_is_refused_clearly(store: FullStore) -> None:
    """A database stamped by a newer synthmon makes start-up fail with a message naming the revision."""
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(migrate.SchemaTooNewError, match="9999_future"):
        migrate.upgrade(store.engine)


def test_migration_child_refuses_a_newer_schema_clearly(store: FullStore) -> None:
    """The daemon's migration child refuses a newer schema with the same error as an in-process
    upgrade, and leaves a store at the head as it is without starting a child."""
    assert migrate.upgrade_in_child(store.engine) == migrate.head_revision()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    with pytest.raises(migrate.SchemaTooNewError, match="9999_future"):
        migrate.upgrade_in_child(store.engine)


def test_migration_child_creates_the_schema_of_a_fresh_sqlite_store(tmp_path: Path) -> None:
    """A fresh SQLite store is created at the head revision by the migration child."""
    engine = create_store_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        assert migrate.current_revision(engine) is None
        assert migrate.upgrade_in_child(engine) == migrate.head_revision()
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_runs_round_trip_filter_and_order(store: FullStore) -> None:
    """Stored runs come back equal, newest first, filtered by probe and since, limited; duplicates skip."""
    a1 = result("auth", Status.PASS, T0)
    a2 = result("auth", Status.FAIL, T0 + timedelta(minutes=1))
    b1 = result("mlflow_api", Status.PASS, T0 + timedelta(minutes=2))
    assert store.append_runs([a1, a2, b1]) == 3
    assert store.append_runs([a2]) == 0
    assert store.runs(probe=None, since=T0, limit=10) == [b1, a2, a1]
    assert store.runs(probe="auth", since=T0 + timedelta(seconds=30), limit=10) == [a2]
    assert store.runs(probe=None, since=T0, limit=1) == [b1]
    assert store.latest_runs() == {"auth": a2, "mlflow_api": b1}


def test_uptime_counts_and_error_is_not_downtime(store: FullStore) -> None:
    """Uptime counts FAIL as down, leaves ERROR out, and reports per probe and per step."""
    runs = [
        result("auth", s, T0 + timedelta(minutes=i))
        for i, s in enumerate([Status.PASS, Status.PASS, Status.FAIL, Status.ERROR, Status.DEGRADED])
    ]
    store.append_runs(runs)
    rows = {(r.probe, r.step): r for r in store.uptime(since=T0, until=T0 + timedelta(hours=1), now=T0)}
    whole = rows[("auth", None)]
    assert (whole.runs, whole.failures, whole.errors, whole.degraded) == (5, 1, 1, 1)
    assert whole.uptime == pytest.approx(3 / 4)
    assert rows[("auth", "setup")].uptime == 1.0
    assert rows[("auth", "upload")].failures == 1


def test_rollups_fold_hours_and_serve_old_windows_after_pruning(tmp_path: Path, backend: str) -> None:
    """Hourly rollups sum runs and failures and keep the max duration; after raw runs are pruned an
    old window is still answered from rollups, and rollups older than their retention are pruned."""
    with open_store(backend, tmp_path, retention_days=1, rollup_retention_days=3) as store:
        store.append_runs(
            [
                result("auth", Status.PASS, T0 + timedelta(minutes=5), duration=1.0),
                result("auth", Status.FAIL, T0 + timedelta(minutes=50), duration=3.0),
            ]
        )
        # Added in a later batch to the same hour: folded, not overwritten.
        store.append_runs([result("auth", Status.PASS, T0 + timedelta(minutes=55), duration=2.0)])
        store.append_runs([result("auth", Status.PASS, T0 + timedelta(hours=1, minutes=1), duration=1.0)])
        now = T0 + timedelta(days=2)
        report = store.prune(now)
        assert report["runs"] == 4
        assert store.runs(probe=None, since=T0 - timedelta(days=1), limit=10) == []
        rows = {r.step: r for r in store.uptime(since=T0, until=T0 + timedelta(hours=1), now=now)}
        assert (rows[None].runs, rows[None].failures) == (3, 1)
        assert rows[None].duration_sum == pytest.approx(6.0)
        assert rows[None].duration_max == pytest.approx(3.0)
        two_hours = {r.step: r for r in store.uptime(since=T0, until=T0 + timedelta(hours=2), now=now)}
        assert two_hours[None].runs == 4
        assert store.prune(T0 + timedelta(days=4))["rollups"] == 6  # 2 hours x (run, setup, upload)
        assert store.uptime(since=T0, until=T0 + timedelta(hours=2), now=T0 + timedelta(days=4)) == []


def test_recent_runs_are_the_newest_per_probe(store: FullStore) -> None:
    """recent_runs gives each probe its own newest runs, newest first, with their steps in order,
    however many other probes ran; a run stored late (older start) takes its place by start time;
    runs_by_id decodes the ones asked for; latest_runs agrees."""
    auth = [result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in range(6)]
    busy = [result("mlflow_api", Status.FAIL, T0 + timedelta(seconds=10 * i)) for i in range(50)]
    late = result("auth", Status.FAIL, T0 + timedelta(minutes=2, seconds=30), http_status=503)
    store.append_runs([*auth, *busy])
    store.append_runs([late])
    recent = store.recent_runs(per_probe=4)
    assert sorted(recent) == ["auth", "mlflow_api"]
    assert [m.run_id for m in recent["auth"]] == [r.run_id for r in (auth[5], auth[4], auth[3], late)]
    assert [m.run_id for m in recent["mlflow_api"]] == [r.run_id for r in busy[::-1][:4]]
    mark = recent["auth"][3]
    assert (mark.probe, mark.started_at, mark.status, mark.failing_step) == (
        "auth",
        late.started_at,
        Status.FAIL,
        "upload",
    )
    assert mark.duration_s == pytest.approx(late.duration_s)
    assert [(s.name, s.status, s.http_status) for s in mark.steps] == [
        ("setup", Status.PASS, 200),
        ("upload", Status.FAIL, 503),
    ]
    assert store.runs_by_id([late.run_id, auth[5].run_id, "unknown"]) == {
        late.run_id: late,
        auth[5].run_id: auth[5],
    }
    assert store.runs_by_id([]) == {}
    assert store.latest_runs() == {"auth": auth[5], "mlflow_api": busy[-1]}
    assert store.recent_runs(per_probe=0) == {}


def test_recent_runs_of_many_probes_come_in_chunks(store: FullStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """With more probes than one query takes, every probe still gets its own newest runs and steps."""
    monkeypatch.setattr(sqlstore, "PROBES_PER_QUERY", 2)
    names = [f"p{i}" for i in range(5)]
    store.append_runs([result(p, Status.PASS, T0 + timedelta(minutes=m)) for p in names for m in range(4)])
    recent = store.recent_runs(per_probe=3)
    assert sorted(recent) == names
    assert all(len(marks) == 3 and len(marks[0].steps) == 2 for marks in recent.values())
    assert {marks[0].started_at for marks in recent.values()} == {T0 + timedelta(minutes=3)}


def test_recent_runs_of_an_empty_store(store: FullStore) -> None:
    """No run stored: no probe, no latest run."""
    assert store.recent_runs(per_probe=30) == {}
    assert store.latest_runs() == {}


@pytest.mark.parametrize(
    ("start_min", "end_min"),
    [(0, 30), (7, 173), (60, 120), (59, 61), (0, 240)],
    ids=["within-an-hour", "partial-hours-at-both-ends", "whole-hours", "across-one-boundary", "all"],
)
def test_probe_uptime_is_exact_within_raw_retention(store: FullStore, start_min: int, end_min: int) -> None:
    """Per-probe uptime (whole hours from rollups, edges from raw runs) counts exactly what the raw
    runs in the window count, wherever the window starts and ends."""
    statuses = [
        Status.PASS,
        Status.FAIL,
        Status.ERROR,
        Status.DEGRADED,
        Status.PASS,
        Status.FAIL,
        Status.PASS,
    ]
    runs = [
        result(probe, statuses[(i + k) % len(statuses)], T0 + timedelta(minutes=i), duration=0.2 + i / 1000)
        for i in range(240)
        for k, probe in enumerate(("auth", "registration"))
    ]
    store.append_runs(runs)
    since, until = T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min)
    now = T0 + timedelta(hours=5)
    windows = {"w": since, "all": T0}
    both = store.probe_uptime(probes=["auth", "registration"], windows=windows, until=until, now=now)
    got = both["w"]
    assert both["all"]["auth"].runs == end_min
    exact = {r.probe: r for r in store.uptime(since=since, until=until, now=now) if r.step is None}
    assert sorted(got) == ["auth", "registration"]
    for probe, row in got.items():
        want = exact[probe]
        assert (row.runs, row.failures, row.errors, row.degraded) == (
            want.runs,
            want.failures,
            want.errors,
            want.degraded,
        )
        assert row.duration_sum == pytest.approx(want.duration_sum)
        assert row.duration_max == pytest.approx(want.duration_max)
    assert got["auth"].runs == end_min - start_min


def test_probe_uptime_older_than_raw_retention_comes_from_rollups(tmp_path: Path, backend: str) -> None:
    """After raw runs are pruned, a window reaching back before raw retention still counts them from
    the hourly rollups (its first hour whole); only the probes asked for are counted."""
    with open_store(backend, tmp_path, retention_days=1, rollup_retention_days=30) as store:
        store.append_runs(
            [
                result("auth", Status.FAIL if i % 4 == 0 else Status.PASS, T0 + timedelta(minutes=i))
                for i in range(120)
            ]
            + [result("registration", Status.PASS, T0 + timedelta(minutes=i)) for i in range(120)]
        )
        now = T0 + timedelta(days=3)
        store.prune(now)
        assert store.runs(probe=None, since=T0, limit=10) == []
        windows = {"old": T0 + timedelta(minutes=30)}
        got = store.probe_uptime(probes=["auth"], windows=windows, until=now, now=now)["old"]
        assert sorted(got) == ["auth"]
        assert (got["auth"].runs, got["auth"].failures) == (120, 30)
        assert store.probe_uptime(probes=[], windows=windows, until=now, now=now) == {}


def test_transition_stores_state_and_outbox_atomically(store: FullStore) -> None:
    """State and outbox rows are written together; if deciding fails, neither is written."""
    opened = IncidentState("p", phase=Phase.OPEN, incident_id="p-1", incident_probe="p", opened_at=T0)

    def boom(view: IncidentView) -> tuple[IncidentState, list[Event]]:
        raise RuntimeError("decide failed")

    with pytest.raises(RuntimeError):
        store.transition("p", T0, boom, ("slack",))
    assert store.incident_states() == {}
    events = store.transition("p", T0, lambda v: (opened, [_event()]), ("slack", "log"))
    assert len(events) == 1
    assert store.incident_states()["p"] == opened
    assert store.outbox_pending() == {"slack": 1, "log": 1}
    [record] = store.incidents(open_only=True, limit=10)
    assert (record.incident_id, record.probe, record.resolved_at) == ("p-1", "p", None)
    store.transition("p", T0 + timedelta(minutes=5), lambda v: (IncidentState("p"), []), ("slack",))
    assert store.incidents(open_only=True, limit=10) == []
    assert store.incidents(open_only=False, limit=10)[0].resolved_at == T0 + timedelta(minutes=5)


def test_transition_sees_other_probes_states(store: FullStore) -> None:
    """The decide function reads every other probe's state inside the transaction."""
    up = IncidentState("mlflow_api", phase=Phase.OPEN, incident_id="m-1", incident_probe="mlflow_api")
    store.transition("mlflow_api", T0, lambda v: (up, []), ())
    seen: list[IncidentView] = []
    store.transition("artifact_roundtrip", T0, lambda v: (seen.append(v), (v.state, []))[1], ())
    assert seen[0].others == {"mlflow_api": up}


def test_outbox_is_claimed_in_order_per_channel_with_leases(store: FullStore) -> None:
    """Only a channel's oldest pending row is claimable; a lease hides it; retry/sent/failed release it."""
    _queue(store, [_event(incident="a"), _event(incident="b")], ("slack", "log"))
    first = store.claim_next(T0, "d1", 60)
    assert first is not None
    assert (first.channel, first.event.incident_id, first.attempts) == ("slack", "a", 1)
    second = store.claim_next(T0, "d2", 60)
    assert second is not None
    assert (second.channel, second.event.incident_id) == ("log", "a")
    assert store.claim_next(T0, "d2", 60) is None  # slack "b" waits behind leased slack "a"
    store.mark_retry(first, T0 + timedelta(seconds=30), "HTTP 500")
    assert store.claim_next(T0 + timedelta(seconds=10), "d2", 60) is None  # not due yet; "b" still blocked
    again = store.claim_next(T0 + timedelta(seconds=30), "d2", 60)
    assert again is not None
    assert (again.event.incident_id, again.attempts) == ("a", 2)
    store.mark_sent(again, T0, "C1:111.1")
    assert store.thread_ref("a", "slack") == "C1:111.1"
    nxt = store.claim_next(T0 + timedelta(seconds=30), "d2", 60)
    assert nxt is not None
    assert nxt.event.incident_id == "b"
    store.mark_failed(nxt, T0, "channel_not_found")
    assert store.outbox_pending() == {"log": 2}
    states = [(r["channel"], r["state"]) for r in store.outbox_rows()]
    assert states == [("slack", "sent"), ("log", "pending"), ("slack", "failed"), ("log", "pending")]


def test_expired_lease_is_reclaimed(store: FullStore) -> None:
    """A row leased by a dispatcher that died is claimed again once its lease has expired."""
    _queue(store, [_event()])
    assert store.claim_next(T0, "dead", 60) is not None
    assert store.claim_next(T0 + timedelta(seconds=59), "alive", 60) is None
    item = store.claim_next(T0 + timedelta(seconds=61), "alive", 60)
    assert item is not None
    assert item.lease_owner == "alive"


def test_silences_add_list_clear(store: FullStore) -> None:
    """Silences are active in their window, listed, and cleared by id or probe."""
    s1 = store.add_silence(
        probe="auth", starts_at=T0, ends_at=T0 + timedelta(minutes=30), reason="deploy", created_by="me"
    )
    store.add_silence(probe="*", starts_at=T0, ends_at=T0 + timedelta(hours=2), reason="all", created_by="me")
    assert {s.id for s in store.silences(active_at=T0 + timedelta(minutes=10))} == {s1.id, s1.id + 1}
    assert [s.reason for s in store.silences(active_at=T0 + timedelta(minutes=40))] == ["all"]
    assert store.clear_silences(now=T0 + timedelta(minutes=1), silence_id=s1.id, probe=None) == 1
    assert [s.reason for s in store.silences(active_at=T0 + timedelta(minutes=2))] == ["all"]
    assert store.clear_silences(now=T0 + timedelta(minutes=3), silence_id=None, probe="*") == 1
    assert store.silences(active_at=T0 + timedelta(minutes=4)) == []
    assert len(store.silences(active_at=None)) == 2


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    """The default SQLite store runs in WAL mode (readers never block the writer)."""
    engine = create_store_engine(f"sqlite:///{tmp_path}/x/y.db")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()


def test_store_url_password_is_masked() -> None:
    """The store URL shown in logs and errors hides the database password."""
    from monitor.store.config import StoreConfig

    shown = StoreConfig(url="postgresql+psycopg://u:s3cr3t-pw@db.internal/synthmon").safe_url()
    assert "s3cr3t-pw" not in shown
    assert "db.internal/synthmon" in shown


@pytest.mark.parametrize(
    ("start_min", "end_min"),
    [(7, 3 * 60 + 41), (0, 6 * 60), (59, 61), (13, 5 * 60 + 1), (125, 300)],
    ids=["ragged", "aligned", "short", "one-past", "inner"],
)
def test_uptime_from_rollups_and_edges_equals_raw_counts(
    store: FullStore, start_min: int, end_min: int
) -> None:
    """A window read as whole-hour rollups plus raw edges counts exactly what the raw rows hold."""
    rng = random.Random(start_min * 1000 + end_min)
    statuses = [Status.PASS, Status.PASS, Status.PASS, Status.FAIL, Status.ERROR, Status.DEGRADED]
    batch = [
        result(probe, rng.choice(statuses), T0 + timedelta(minutes=m, seconds=rng.randint(0, 59)))
        for m in range(0, 6 * 60, 3)
        for probe in ("auth", "registration")
    ]
    for i in range(0, len(batch), 37):  # several batches fold into the same hours
        store.append_runs(batch[i : i + 37])
    since, until = T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=end_min)
    now = T0 + timedelta(hours=7)
    got = {(u.probe, u.step): u for u in store.uptime(since=since, until=until, now=now)}
    raw = store.history.reads.counts(HistoryReads.raw(since.timestamp(), until.timestamp()))
    expected = {(u.probe, u.step): u for u in raw}
    assert set(got) == set(expected)
    for key, row in expected.items():
        mixed = got[key]
        assert (mixed.runs, mixed.failures, mixed.errors, mixed.degraded) == (
            row.runs,
            row.failures,
            row.errors,
            row.degraded,
        ), key
        assert mixed.duration_sum == pytest.approx(row.duration_sum)
        assert mixed.duration_max == pytest.approx(row.duration_max)


def _uptime_24h(store: FullStore, at: datetime) -> tuple[int, int]:
    """Runs and failures of auth over the 24 h before ``at``."""
    row = store.probe_uptime(probes=["auth"], windows={"24h": at - timedelta(hours=24)}, until=at, now=at)
    return row["24h"]["auth"].runs, row["24h"]["auth"].failures


def test_probe_uptime_counts_its_own_late_run_of_a_settled_hour_at_once(store: FullStore) -> None:
    """A run this store writes to a settled hour counts at the next read (the kept range is dropped);
    runs of the newest whole hour and of the current partial hour count without reading it again."""
    store.append_runs([result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in range(0, 300, 10)])
    now = T0 + timedelta(hours=5, minutes=20)
    assert _uptime_24h(store, now) == (30, 0)
    reads = store.history.settled.reads
    store.append_runs([result("auth", Status.FAIL, T0 + timedelta(hours=4, minutes=1))])  # newest whole hour
    store.append_runs([result("auth", Status.FAIL, T0 + timedelta(hours=5, minutes=1))])  # partial hour
    assert _uptime_24h(store, now) == (32, 2)
    assert store.history.settled.reads == reads  # still kept
    store.append_runs([result("auth", Status.FAIL, T0 + timedelta(minutes=65))])  # a settled hour
    assert _uptime_24h(store, now) == (33, 3)
    assert store.history.settled.reads == reads + 1
    # The hour boundary moves: a new range, read at once.
    store.append_runs([result("auth", Status.FAIL, T0 + timedelta(minutes=66))])
    assert _uptime_24h(store, T0 + timedelta(hours=6, minutes=1)) == (34, 4)


def test_probe_uptime_counts_another_writers_late_run_once_renewed(store: FullStore) -> None:
    """A late run of a settled hour written by another replica on the same database counts once the
    kept range is read again: by the background renewal after its renew age, at the latest when it
    expires (its max age)."""
    url = store.engine.url.render_as_string(hide_password=False)
    store.append_runs([result("auth", Status.PASS, T0 + timedelta(minutes=i)) for i in range(0, 300, 10)])
    now = T0 + timedelta(hours=5, minutes=20)
    assert _uptime_24h(store, now) == (30, 0)
    replica = FullStore.open_existing(url)
    try:
        replica.append_runs([result("auth", Status.FAIL, T0 + timedelta(minutes=65))])
    finally:
        replica.close()
    soon = now + timedelta(seconds=settled.RENEW_AFTER_S)
    assert store.history.renew_settled(soon) == 0  # not due yet
    assert _uptime_24h(store, soon) == (30, 0)
    later = now + timedelta(seconds=settled.RENEW_AFTER_S + 1)
    assert store.history.renew_settled(later) == 1
    reads = store.history.settled.reads
    assert _uptime_24h(store, later) == (31, 1)
    assert store.history.settled.reads == reads  # served from the renewed range
    # Without renewal, the range expires after its max age and the next read fetches it.
    replica = FullStore.open_existing(url)
    try:
        replica.append_runs([result("auth", Status.FAIL, T0 + timedelta(minutes=75))])
    finally:
        replica.close()
    expiry = later + timedelta(seconds=settled.MAX_AGE_S)
    assert _uptime_24h(store, expiry) == (31, 1)
    assert _uptime_24h(store, expiry + timedelta(seconds=1)) == (32, 2)


def test_probe_uptime_reads_again_after_pruning(tmp_path: Path, backend: str) -> None:
    """Pruning rollups drops the kept ranges that start before the cutoff: the next read counts
    what is left."""
    with open_store(backend, tmp_path, retention_days=2, rollup_retention_days=3) as store:
        store.append_runs([result("auth", Status.PASS, T0 + timedelta(hours=h)) for h in range(0, 72, 2)])
        now = T0 + timedelta(days=3, hours=1)
        window = {"7d": now - timedelta(days=7)}

        def runs(at: datetime) -> int:
            return store.probe_uptime(probes=["auth"], windows=window, until=at, now=at)["7d"]["auth"].runs

        assert runs(now) == 36
        store.prune(now + timedelta(hours=12))  # rollups before T0 + 13 h go: runs at 0 .. 12 h
        assert runs(now) == 29
