"""A percentile from fixed latency buckets (:mod:`monitor.store.latency`), interpolated within its
bucket as Prometheus' ``histogram_quantile`` does. Pure: counts in, seconds out."""

from __future__ import annotations

from collections.abc import Sequence

from monitor.store.latency import LATENCY_BOUNDS_S


def percentile(counts: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS_S) -> float | None:
    """The ``q`` quantile (0 < q < 1) of the durations counted in ``counts``, or None when empty.

    ``counts[i]`` holds durations in ``(bounds[i-1], bounds[i]]`` (from 0 for ``i == 0``); the one
    extra bucket at the end holds longer ones. The rank ``q * total`` is placed linearly inside the
    bucket that holds it, assuming its durations spread evenly between the bucket's bounds. A rank
    in the overflow bucket answers the last bound (nothing is known above it).
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(counts)} counts for {len(bounds)} bounds (want one more)")
    if not 0 < q < 1:
        raise ValueError(f"quantile {q} outside (0, 1)")
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    below = 0
    for i, n in enumerate(counts):
        if n > 0 and below + n >= rank:
            if i == len(bounds):
                return float(bounds[-1])
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - below) / n
        below += n
    return float(bounds[-1])  # not reached: the ranks add up to total
