"""Store health series, registered on a registry passed in (never the default one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Every value of the ``operation`` label of ``synthmon_store_errors_total`` (a test checks the
#: code uses no other): pre-created at 0 so the first failure shows in ``increase()``.
OPERATIONS = ("append_runs", "prune", "incident_transition", "outbox")


class StoreMetrics:
    """``synthmon_store_errors_total{operation}``, buffer depth and drops of the history sink."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.errors = Counter(
            "synthmon_store_errors_total",
            "Store operations that failed (the database was unreachable, locked, ...).",
            ["operation"],
            registry=registry,
        )
        for operation in OPERATIONS:
            self.errors.labels(operation=operation)
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
        self.pruned = Counter(
            "synthmon_store_pruned_rows_total",
            "Rows removed by the retention job.",
            ["table"],
            registry=registry,
        )
