"""Maintenance windows (weekly, in a time zone) and stored silences, evaluated purely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.alerting.config import MaintenanceWindow
from monitor.alerting.silences import Silence, silenced_by, window_active

SUNDAY_NIGHT = MaintenanceWindow(
    name="patching",
    probes=("registration",),
    days=("sun",),
    start="23:00",
    duration="3h",
    timezone="Europe/Berlin",
)

CASES = [
    # 2025-07-20 is a Sunday; Berlin is UTC+2 in July.
    ("inside-before-midnight", datetime(2025, 7, 20, 21, 30, tzinfo=UTC), "registration", True),
    ("inside-after-midnight-monday", datetime(2025, 7, 20, 23, 30, tzinfo=UTC), "registration", True),
    ("after-window", datetime(2025, 7, 21, 0, 1, tzinfo=UTC), "registration", False),
    ("before-window", datetime(2025, 7, 20, 20, 59, tzinfo=UTC), "registration", False),
    ("other-probe", datetime(2025, 7, 20, 21, 30, tzinfo=UTC), "auth", False),
    ("wrong-weekday", datetime(2025, 7, 19, 21, 30, tzinfo=UTC), "registration", False),
    # In January Berlin is UTC+1: the window follows the wall clock.
    ("winter-time", datetime(2025, 1, 19, 22, 30, tzinfo=UTC), "registration", True),
    ("winter-time-utc-hour-outside", datetime(2025, 1, 19, 21, 30, tzinfo=UTC), "registration", False),
]


@pytest.mark.parametrize(("now", "probe", "active"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_weekly_window(now: datetime, probe: str, active: bool) -> None:
    """A weekly window is active exactly in its local hours, across midnight and DST, for its probes."""
    assert window_active(SUNDAY_NIGHT, probe, now) is active


def test_stored_silence_and_reason() -> None:
    """A stored silence for one probe or for all holds notifications until it ends or is cleared."""
    t = datetime(2025, 7, 22, 10, 0, tzinfo=UTC)
    one = Silence(1, "auth", t, t + timedelta(minutes=30), "deploy", "me", t)
    cleared = Silence(2, "*", t, t + timedelta(hours=1), "all", "me", t, cleared_at=t + timedelta(minutes=5))
    assert silenced_by("auth", t + timedelta(minutes=1), [], [one]) == "silence #1: deploy"
    assert silenced_by("auth", t + timedelta(minutes=31), [], [one]) is None
    assert silenced_by("mlflow_api", t + timedelta(minutes=1), [], [cleared]) == "silence #2: all"
    assert silenced_by("mlflow_api", t + timedelta(minutes=6), [], [cleared]) is None


def test_window_config_rejects_unknown_zone() -> None:
    """An unknown time zone is a config error, not a silently-UTC window."""
    with pytest.raises(ValueError, match="unknown time zone"):
        MaintenanceWindow(name="x", start="01:00", duration="1h", timezone="Mars/Olympus")
