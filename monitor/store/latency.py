"""The fixed latency buckets of the hourly rollups: one shared constant, read by whoever writes or
reads them.

Each rollup row (probe, step, hour) counts its runs' durations into :data:`LATENCY_BOUNDS_S`: bucket
``i`` holds durations in ``(LATENCY_BOUNDS_S[i-1], LATENCY_BOUNDS_S[i]]`` (bucket 0 from 0 s), and
the last bucket everything over the last bound. Fixed bounds make histograms of any hours, probes
and replicas addable by plain column sums, which is what keeps the rollup upsert atomic
(``bucket_07 = bucket_07 + excluded.bucket_07``) and a 7-day percentile one indexed range read.

The bounds are a 1, 1.5, 2.5, 4, 6 series (each about 1.6 times the one before) from 10 ms to 2 min: inside
a bucket a percentile is interpolated, so its error stays well under the factor of 3 a latency
regression is judged by. Changing them is a schema change (a migration that clears the buckets).
"""

from __future__ import annotations

from bisect import bisect_left

#: Upper bounds (seconds) of every bucket but the last, which holds longer durations.
LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.01,
    0.015,
    0.025,
    0.04,
    0.06,
    0.1,
    0.15,
    0.25,
    0.4,
    0.6,
    1.0,
    1.5,
    2.5,
    4.0,
    6.0,
    10.0,
    15.0,
    25.0,
    60.0,
    120.0,
)

#: How many buckets (columns) a rollup row has: one per bound plus the overflow bucket.
LATENCY_BUCKETS = len(LATENCY_BOUNDS_S) + 1

#: The rollup column of each bucket, in bound order.
BUCKET_COLUMNS: tuple[str, ...] = tuple(f"bucket_{i:02d}" for i in range(LATENCY_BUCKETS))


def bucket_index(duration_s: float) -> int:
    """The bucket counting ``duration_s`` (bounds are inclusive upper bounds, like Prometheus' ``le``)."""
    return bisect_left(LATENCY_BOUNDS_S, duration_s)
