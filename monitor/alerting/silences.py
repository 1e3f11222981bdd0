"""Silences: weekly maintenance windows (config) and stored ad-hoc silences, evaluated purely.

A silence holds notifications for a probe; it never stops probing or state keeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from monitor.alerting.config import WEEKDAYS, MaintenanceWindow

#: The probe name a silence uses to cover every probe.
ALL_PROBES = "*"


@dataclass(frozen=True, slots=True)
class Silence:
    """A stored silence (``synthmon silence --probe X --for 30m --reason ...``)."""

    id: int
    probe: str
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    cleared_at: datetime | None = None

    def active(self, probe: str, now: datetime) -> bool:
        """True when this silence covers ``probe`` at ``now``."""
        return self.probe in (probe, ALL_PROBES) and self.active_at(now)

    def active_at(self, now: datetime) -> bool:
        """True when this silence (of whichever probe) is in force at ``now``."""
        if self.cleared_at is not None and self.cleared_at <= now:
            return False
        return self.starts_at <= now < self.ends_at


def window_active(window: MaintenanceWindow, probe: str, now: datetime) -> bool:
    """True when ``window`` covers ``probe`` at ``now`` (aware), in the window's own time zone.

    A window may cross midnight (e.g. Sunday 23:00 for 3h): yesterday's start is checked too, and so on
    up to the window's length. Local times are resolved with ``zoneinfo`` so a DST change moves the
    window with the wall clock, as people who schedule maintenance expect.
    """
    if window.probes and probe not in window.probes:
        return False
    zone = ZoneInfo(window.timezone)
    local_now = now.astimezone(zone)
    days_back = int(window.duration // 86400) + 1
    for back in range(days_back + 1):
        day = (local_now - timedelta(days=back)).date()
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        start = datetime.combine(day, window.start, tzinfo=zone)
        if start <= local_now < start + timedelta(seconds=window.duration):
            return True
    return False


def silenced_by(
    probe: str, now: datetime, windows: Iterable[MaintenanceWindow], silences: Sequence[Silence]
) -> str | None:
    """Why notifications for ``probe`` are held at ``now`` (a window name or a silence reason), or None."""
    for window in windows:
        if window_active(window, probe, now):
            return f"maintenance window {window.name}"
    for silence in silences:
        if silence.active(probe, now):
            return f"silence #{silence.id}: {silence.reason}"
    return None
