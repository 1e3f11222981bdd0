"""The ``log`` notifier: each incident event as one structured log line (setups without Slack)."""

from __future__ import annotations

from typing import Any

import structlog

from monitor.alerting.base import Event


class LogNotifier:
    """Writes events to the log; it cannot fail, so it never raises ``TransportError``."""

    name = "log"

    def __init__(self, logger: Any = None) -> None:
        self._log = logger if logger is not None else structlog.get_logger("synthmon.notify")

    def send(self, event: Event, thread: str | None) -> str | None:
        """Log ``event``; the "thread" is the incident id, so follow-ups can be grepped together."""
        level = "info" if event.kind.value in ("resolved", "recovered") else "warning"
        summary = event.summary
        incident: dict[str, Any] = {}
        if summary is not None:
            incident = {
                "root_cause": summary.title,
                "root_cause_at": f"{summary.root_probe}/{summary.root_step}"
                if summary.root_step
                else summary.root_probe,
                "affected": [m.where for m in summary.members],
                "still_failing": [m.where for m in summary.active],
                "action": summary.action,
                "incident_since": summary.since.isoformat(),
            }
        if event.locations:
            incident["locations"] = list(event.locations)
        getattr(self._log, level)(
            "incident_" + event.kind.value,
            probe=event.probe,
            incident=event.incident_id,
            thread_probe=event.incident_probe,
            environment=event.environment,
            change=f"{event.old_status} -> {event.new_status}",
            step=event.step,
            http_status=event.http_status,
            error_class=event.error_class,
            cause=event.cause,
            hint=event.hint,
            since=event.since.isoformat(),
            run_id=event.run_id,
            **incident,
        )
        return thread or event.incident_id
