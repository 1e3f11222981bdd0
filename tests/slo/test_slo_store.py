"""The history store's good/bad counts: rollups for whole hours, raw rows at the edges, SKIPPED
and ERROR left out, on every backend."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from probes.base import Status
from tests.history.history_helpers import FullStore
from tests.slo.slo_helpers import T0, run

P, D, F, E, S = Status.PASS, Status.DEGRADED, Status.FAIL, Status.ERROR, Status.SKIPPED


def test_good_bad_counts_whole_hours_and_edges_as_slos_count(slo_store: FullStore) -> None:
    """A 3-hour window starting at :30 counts what it should: PASS/DEGRADED good, FAIL bad,
    ERROR and SKIPPED nowhere, runs outside the window nowhere; per run and per step."""
    runs = [
        run("auth", T0 + timedelta(minutes=15), P, F, S),  # before the window
        run("auth", T0 + timedelta(minutes=45), P, F, S),  # leading edge (raw)
        run("auth", T0 + timedelta(minutes=70), P, P, P),  # whole hours (rollups) from here
        run("auth", T0 + timedelta(minutes=80), P, D, P),
        run("auth", T0 + timedelta(minutes=125), P, E, S),
        run("auth", T0 + timedelta(minutes=150), P, F, S),
        run("auth", T0 + timedelta(minutes=160), S, S, S),  # checked nothing
        run("auth", T0 + timedelta(minutes=190), P, P, P),  # trailing edge (raw)
        run("auth", T0 + timedelta(minutes=220), P, F, S),  # after the window
        run("registry", T0 + timedelta(minutes=100), P, P, P),
    ]
    slo_store.append_runs(runs)
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(minutes=210)
    counts = slo_store.history.good_bad(since=since, until=until, now=until)
    assert counts[("auth", None)] == (3, 2)
    assert counts[("auth", "get")] == (3, 2)
    assert counts[("auth", "setup")] == (6, 0)
    assert counts[("auth", "cleanup")] == (3, 0)
    assert counts[("registry", None)] == (1, 0)


def test_a_short_window_inside_one_hour_reads_raw_rows(slo_store: FullStore) -> None:
    """A 5-minute window (no whole hour in it) counts only the runs inside it."""
    slo_store.append_runs(
        [
            run("auth", T0 + timedelta(minutes=m), P, F if m >= 57 else P, S if m >= 57 else P)
            for m in range(50, 60)
        ]
    )
    now = T0 + timedelta(minutes=60)
    counts = slo_store.history.good_bad(since=now - timedelta(minutes=5), until=now, now=now)
    assert counts[("auth", None)] == (2, 3)
    assert counts[("auth", "cleanup")] == (2, 0)


def test_an_empty_window_has_no_counts(slo_store: FullStore) -> None:
    """No run in the window: nothing is returned (the SLO shows no data)."""
    slo_store.append_runs([run("auth", T0, P, P, P)])
    later = T0 + timedelta(days=2)
    assert slo_store.history.good_bad(since=later - timedelta(hours=1), until=later, now=later) == {}


def test_good_bad_at_counts_one_location_s_runs_and_steps(slo_store: FullStore) -> None:
    """The location-filtered counts (the SLO pairs' short windows) see only that location's runs."""
    at = T0 + timedelta(minutes=58)
    slo_store.append_runs(
        [
            replace(run("auth", at, P, F, S), location="eu-west-1a"),
            replace(run("auth", at, P, F, S), location="eu-west-1a"),
            replace(run("auth", at, P, P, P), location="eu-west-1b"),
            replace(run("auth", at, P, E, S), location="eu-west-1b"),
        ]
    )
    now = T0 + timedelta(minutes=60)
    since = now - timedelta(minutes=5)
    a = slo_store.history.good_bad_at(since=since, until=now, location="eu-west-1a")
    b = slo_store.history.good_bad_at(since=since, until=now, location="eu-west-1b")
    assert a[("auth", None)] == (0, 2)
    assert a[("auth", "get")] == (0, 2)
    assert b[("auth", None)] == (1, 0)
    assert b[("auth", "get")] == (1, 0)
    assert b[("auth", "setup")] == (2, 0)
    assert slo_store.history.good_bad_at(since=since, until=now, location="elsewhere") == {}
