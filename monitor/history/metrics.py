"""History's series: the in-memory buffer in front of the store."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class HistoryMetrics:
    """``synthmon_history_buffer_depth`` and ``synthmon_history_buffer_dropped_total``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.buffer_depth = Gauge(
            "synthmon_history_buffer_depth",
            "Results held in memory because the store could not take them yet.",
            registry=registry,
        )
        self.buffer_dropped = Counter(
            "synthmon_history_buffer_dropped_total",
            "Results dropped because the in-memory buffer was full (or a result could not be stored).",
            registry=registry,
        )
