"""The store's own series, registered on a registry passed in (never the default one).

The feature packages keep their own series (history's and the incident queue's buffers); these are
about the database itself: is it open, which operations failed, what retention removed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Every value of the ``operation`` label of ``synthmon_store_errors_total`` (a test checks the
#: code uses no other): pre-created at 0 so the first failure shows in ``increase()``.
OPERATIONS = ("append_runs", "prune", "incident_transition", "outbox", "location_heartbeat")
#: Every value of the ``reason`` label of ``synthmon_store_file_changes_total``.
FILE_CHANGES = ("deleted", "replaced")


class StoreMetrics:
    """``synthmon_store_ready``, ``synthmon_store_errors_total{operation}``,
    ``synthmon_store_file_changes_total{reason}`` and ``synthmon_store_pruned_rows_total{table}``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ready = Gauge(
            "synthmon_store_ready",
            "1 when the store is reachable and migrated; 0 while synthmon keeps retrying to open it.",
            registry=registry,
        )
        self.errors = Counter(
            "synthmon_store_errors_total",
            "Store operations that failed (the database was unreachable, locked, ...).",
            ["operation"],
            registry=registry,
        )
        for operation in OPERATIONS:
            self.errors.labels(operation=operation)
        self.file_changes = Counter(
            "synthmon_store_file_changes_total",
            "Times the SQLite store file was found deleted (or moved away) or replaced under the "
            "daemon; the store was reopened on the path and its schema created again.",
            ["reason"],
            registry=registry,
        )
        for reason in FILE_CHANGES:
            self.file_changes.labels(reason=reason)
        self.pruned = Counter(
            "synthmon_store_pruned_rows_total",
            "Rows removed by the retention job.",
            ["table"],
            registry=registry,
        )
