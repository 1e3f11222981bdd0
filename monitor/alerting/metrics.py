"""Alerting series, registered on a registry passed in (never the default one)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

#: The values of the ``result`` label of ``synthmon_notifications_total``.
RESULTS = ("sent", "transient_error", "permanent_error", "expired")


class AlertingMetrics:
    """Notification outcomes, outbox depth, incident events, and the queue of results waiting for
    incident evaluation while the store is unavailable."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.notifications = Counter(
            "synthmon_notifications_total",
            "Notification attempts by channel and result (sent, transient_error, permanent_error, expired).",
            ["channel", "result"],
            registry=registry,
        )
        self.outbox_pending = Gauge(
            "synthmon_outbox_pending",
            "Events waiting in the outbox, per channel.",
            ["channel"],
            registry=registry,
        )
        self.events = Counter(
            "synthmon_incident_events_total",
            "Incident events produced by the state machine (before silences hold any).",
            ["probe", "kind"],
            registry=registry,
        )
        self.transitions_skipped = Counter(
            "synthmon_incident_transitions_skipped_total",
            "Results that needed no incident transaction (a good run of a probe known to be fine).",
            registry=registry,
        )
        self.incident_buffer_depth = Gauge(
            "synthmon_incident_buffer_depth",
            "Results waiting for incident evaluation because the store could not take them yet.",
            registry=registry,
        )
        self.incident_buffer_dropped = Counter(
            "synthmon_incident_buffer_dropped_total",
            "Results never evaluated for incidents: the in-memory buffer was full, or evaluation failed.",
            registry=registry,
        )

        self.location_failing = Gauge(
            "synthmon_location_failing",
            "1 while this daemon's location sees the probe failing (its own view; the quorum of "
            "locations decides whether that is an incident).",
            ["probe", "location"],
            registry=registry,
        )

    def declare(self, channels: Iterable[str]) -> None:
        """Create every channel x result counter at 0 so ``increase()`` sees the first failure."""
        for channel in channels:
            for result in RESULTS:
                self.notifications.labels(channel=channel, result=result)
            self.outbox_pending.labels(channel=channel)
