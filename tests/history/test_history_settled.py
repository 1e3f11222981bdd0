"""The settled-hours cache on its own: which writes drop a range, which reads may keep their value."""

from __future__ import annotations

import pytest

from monitor.history.settled import Settled, SettledHours

H = 3600
KEY: Settled = (("auth",), 10 * H, 20 * H)


def _kept(value: str = "sums", at: float = 0.0) -> SettledHours[str]:
    cache: SettledHours[str] = SettledHours(max_age_s=60, renew_after_s=30)
    assert cache.put(KEY, at, value, cache.begin(KEY))
    return cache


@pytest.mark.parametrize(
    ("hours", "dropped"),
    [
        ([9 * H], False),
        ([10 * H], True),
        ([19 * H], True),
        ([20 * H, 21 * H], False),  # the newest whole hour and the current one: never settled
        ([25 * H, 12 * H], True),
    ],
    ids=["before-range", "first-hour", "last-hour", "current-hours", "one-late-among-many"],
)
def test_a_write_drops_only_the_ranges_holding_its_hours(hours: list[int], dropped: bool) -> None:
    """A range is dropped when a written hour falls in ``[first, end)``, kept otherwise."""
    cache = _kept()
    cache.written(hours)
    assert (cache.get(KEY, 1.0) is None) is dropped


def test_a_read_begun_before_a_late_write_is_not_kept() -> None:
    """A value whose read began before a late write was committed may miss it: it is not kept."""
    cache = _kept()
    cache.written([12 * H])
    token = cache.begin(KEY)
    cache.written([11 * H])  # committed while the read was under way
    assert not cache.put(KEY, 1.0, "stale", token)
    assert cache.get(KEY, 1.0) is None
    assert cache.put(KEY, 2.0, "fresh", cache.begin(KEY))
    assert cache.get(KEY, 2.0) == "fresh"


def test_writes_to_current_hours_do_not_spoil_reads_under_way() -> None:
    """Writes above every range read so far (the usual case: this hour's runs) let a read keep its value."""
    cache: SettledHours[str] = SettledHours()
    token = cache.begin(KEY)
    cache.written([20 * H, 21 * H])
    assert cache.put(KEY, 0.0, "sums", token)


def test_ages_follow_the_callers_clock() -> None:
    """Kept for max_age on the caller's clock, due for renewal after renew_after; a clock gone back misses."""
    cache = _kept(at=100.0)
    assert cache.due(130.0) == []
    assert cache.due(131.0) == [KEY]
    assert cache.get(KEY, 160.0) == "sums"
    assert cache.get(KEY, 161.0) is None
    assert cache.get(KEY, 99.0) is None


def test_pruning_drops_ranges_starting_before_the_cutoff() -> None:
    """Rollups deleted before an hour drop the ranges that start before it, and spoil reads under way."""
    cache = _kept()
    cache.pruned(10 * H)
    assert cache.get(KEY, 1.0) == "sums"
    token = cache.begin(KEY)
    cache.pruned(11 * H)
    assert cache.get(KEY, 1.0) is None
    assert not cache.put(KEY, 1.0, "sums", token)
