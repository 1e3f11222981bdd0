"""Percentiles from fixed latency buckets: hand-computed tables, and the bucketing they rely on."""

from __future__ import annotations

import pytest

from monitor.baselines.percentile import percentile
from monitor.store.latency import BUCKET_COLUMNS, LATENCY_BOUNDS_S, LATENCY_BUCKETS, bucket_index

#: Small bounds for hand computation: buckets [0,1], (1,2], (2,4], (4,+inf).
BOUNDS = (1.0, 2.0, 4.0)


@pytest.mark.parametrize(
    ("counts", "q", "expected"),
    [
        # 10 runs all in (1, 2]: rank 9.5 of 10 sits 95 % through that bucket.
        ((0, 10, 0, 0), 0.95, 1.95),
        # 10 runs all in [0, 1]: the median is half way.
        ((10, 0, 0, 0), 0.5, 0.5),
        # 20 in [0,1], 80 in (2,4]: p95 = rank 95, 75th of 80 in (2,4] -> 2 + 2 * 75/80.
        ((20, 0, 80, 0), 0.95, 3.875),
        # p10 of the same = rank 10, 10th of 20 in [0,1] -> 0.5.
        ((20, 0, 80, 0), 0.1, 0.5),
        # Rank exactly at a bucket's top: its upper bound.
        ((50, 50, 0, 0), 0.5, 1.0),
        # Rank in the overflow bucket: the last bound (nothing is known above it).
        ((1, 0, 0, 99), 0.95, 4.0),
        # Empty buckets in between are skipped.
        ((0, 0, 0, 0, *()), 0.5, None),
    ],
    ids=[
        "one-bucket-p95",
        "first-bucket-median",
        "two-buckets-p95",
        "two-buckets-p10",
        "bucket-top",
        "overflow",
        "empty",
    ],
)
def test_percentile_interpolates_within_its_bucket(
    counts: tuple[int, ...], q: float, expected: float | None
) -> None:
    """The rank q*total is placed linearly inside the bucket holding it."""
    got = percentile(counts, q, BOUNDS)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_percentile_refuses_counts_that_do_not_fit_the_bounds() -> None:
    """Counts must have one bucket more than bounds; q must lie strictly between 0 and 1."""
    with pytest.raises(ValueError, match="want one more"):
        percentile((1, 2, 3), 0.5, BOUNDS)
    with pytest.raises(ValueError, match="outside"):
        percentile((1, 0, 0, 0), 1.0, BOUNDS)


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [(0.0, 0), (0.01, 0), (0.0101, 1), (0.6, 9), (0.61, 10), (120.0, 19), (121.0, 20)],
    ids=["zero", "first-bound", "just-over", "bound-0.6", "over-0.6", "last-bound", "overflow"],
)
def test_bounds_are_inclusive_upper_bounds(seconds: float, bucket: int) -> None:
    """A duration equal to a bound counts in that bound's bucket (Prometheus' le)."""
    assert bucket_index(seconds) == bucket


def test_the_shared_bounds_rise_and_name_one_column_each() -> None:
    """Bounds strictly rise from 10 ms to 2 min; one column per bucket plus the overflow."""
    assert list(LATENCY_BOUNDS_S) == sorted(set(LATENCY_BOUNDS_S))
    assert (LATENCY_BOUNDS_S[0], LATENCY_BOUNDS_S[-1]) == (0.01, 120.0)
    assert len(BUCKET_COLUMNS) == LATENCY_BUCKETS == len(LATENCY_BOUNDS_S) + 1
    # The percentile of one bucket's midpoint lands inside that bucket on the real bounds too.
    counts = [0] * LATENCY_BUCKETS
    counts[bucket_index(0.5)] = 100
    value = percentile(counts, 0.5)
    assert value is not None
    assert 0.4 < value <= 0.6
