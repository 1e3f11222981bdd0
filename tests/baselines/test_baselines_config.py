"""The ``baselines:`` config section: defaults, the duration grammar, errors naming the field."""

from __future__ import annotations

import pytest

from monitor.config import parse_config
from monitor.configfile import ConfigError

BASE = "environment: test\nprobes: []\n"


def test_defaults_are_on_with_a_seven_day_p95_three_times_three_runs() -> None:
    """Without a section: on, 7 d window, p95, factor 3, 3 in a row, 100 runs over 24 h, 10 min refresh."""
    b = parse_config(BASE, source="t.yaml", env={}).baselines
    assert (b.enabled, b.window, b.percentile, b.factor, b.consecutive) == (True, 604800.0, 0.95, 3.0, 3)
    assert (b.min_runs, b.min_span, b.refresh, b.floor, b.min_slowdown) == (100, 86400.0, 600.0, 0.05, 0.25)


def test_durations_use_the_project_grammar() -> None:
    """window, min_span, refresh, floor and min_slowdown take 7d / 12h / 5m / 20ms."""
    text = BASE + "baselines: {window: 3d, min_span: 12h, refresh: 5m, floor: 20ms, min_slowdown: 1s}\n"
    b = parse_config(text, source="t.yaml", env={}).baselines
    assert (b.window, b.min_span, b.refresh, b.floor, b.min_slowdown) == (259200.0, 43200.0, 300.0, 0.02, 1.0)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ("{factor: 1}", "baselines.factor"),
        ("{consecutive: 0}", "baselines.consecutive"),
        ("{min_runs: 0}", "baselines.min_runs"),
        ("{window: 0s}", "baselines.window"),
        ("{window: soon}", "baselines.window"),
        ("{percentile: 1.5}", "baselines.percentile"),
        ("{refresh: 0s}", "baselines.refresh"),
        ("{min_span: 8d}", "baselines"),
        ("{facter: 3}", "baselines.facter"),
    ],
    ids=[
        "factor",
        "consecutive",
        "min_runs",
        "window-zero",
        "window-words",
        "percentile",
        "refresh",
        "span>window",
        "typo",
    ],
)
def test_bad_values_are_errors_naming_the_field(section: str, field: str) -> None:
    """A bad value stops start-up with an error naming the field path."""
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f"baselines: {section}\n", source="t.yaml", env={})
    assert field in str(caught.value)
