"""The ``slos:`` section of the config: service level objectives per probe (or per step).

```yaml
slos:
  - probe: auth                  # name defaults to the probe ("auth"), or "probe/step"
    objective: 99.9              # percent of checked runs that must be good, 0 < x < 100
    window: 30d                  # the budget's period (the config's duration grammar; default 30d)
  - probe: registration
    step: register               # optional: the step's own status instead of the run's
    objective: 99.5
    alerts:                      # burn-rate pairs; default: the SRE workbook's four below
      - {long: 1h, short: 5m, factor: 14.4, severity: page}
      - {long: 6h, short: 30m, factor: 6, severity: page}
```

Which runs count is one definition, :mod:`monitor.slo.budget`'s: good = PASS or DEGRADED, bad = FAIL;
ERROR and SKIPPED are left out of both sides. The cross-checks against the rest of the config (the
probe exists, the window fits in the store's raw retention) are :func:`check_slos`, called by
``Config`` and by the ``synthmon slo`` commands, which read only these sections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from monitor.configfile import path_error
from probes.base import PositiveDuration, format_duration

#: What an alert pair asks of people: ``page`` wakes someone, ``ticket`` is work for the day.
Severity = Literal["page", "ticket"]

#: The pseudo-probe name of an SLO's burn-rate incidents (``slo:auth``): not a valid probe name
#: (probe names are ``[a-z0-9_]``), so it can never collide with a real probe.
PSEUDO_PREFIX = "slo:"
#: The longest SLO name: its pseudo-probe must fit the store's 100-character probe columns.
NAME_MAX = 90


def window_text(seconds: float) -> str:
    """A window length as people and PromQL write it: ``30d`` rather than ``4w2d``, else ``1h``, ``5m``."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    return format_duration(seconds)


class BurnAlert(BaseModel):
    """One multiwindow burn-rate alert: both windows burn at ``factor`` × the sustainable rate or more.

    The long window says the budget is really going; the short one says it still is (so the alert
    resolves minutes after the outage ends, not an hour later).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    long: PositiveDuration
    short: PositiveDuration
    factor: Annotated[float, Field(gt=0)]
    severity: Severity = "page"

    @model_validator(mode="after")
    def _short_is_shorter(self) -> BurnAlert:
        if self.short >= self.long:
            raise path_error(
                ("short",),
                f"short window {format_duration(self.short)} must be shorter than long window "
                f"{format_duration(self.long)}",
            )
        return self

    @property
    def label(self) -> str:
        """``1h/5m`` (long/short), how messages, metrics and rules name the pair."""
        return f"{window_text(self.long)}/{window_text(self.short)}"


#: The SRE workbook's multiwindow, multi-burn-rate alerts for a 30-day budget: 2 % of it gone in an
#: hour or 5 % in six hours pages; 10 % in a day or 10 % in three days is a ticket.
DEFAULT_ALERTS: tuple[BurnAlert, ...] = (
    BurnAlert(long=3600, short=300, factor=14.4, severity="page"),
    BurnAlert(long=6 * 3600, short=1800, factor=6, severity="page"),
    BurnAlert(long=86400, short=2 * 3600, factor=3, severity="ticket"),
    BurnAlert(long=3 * 86400, short=6 * 3600, factor=1, severity="ticket"),
)


class SloConfig(BaseModel):
    """One objective: the share of a probe's (or step's) checked runs that must be good over ``window``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(default=None, pattern=r"^[a-z0-9_/.-]+$", max_length=NAME_MAX)
    probe: str
    #: A step name as probes write them (it goes into PromQL selectors and metric labels).
    step: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$", max_length=100)
    objective: Annotated[float, Field(gt=0, lt=100)]
    window: PositiveDuration = 30 * 86400.0
    #: None: the defaults (:data:`DEFAULT_ALERTS`) whose long window fits in ``window``.
    alerts: tuple[BurnAlert, ...] | None = None

    @model_validator(mode="after")
    def _alerts_fit_the_window(self) -> SloConfig:
        if self.name is None and len(self.slo_name) > NAME_MAX:
            # The pseudo-probe names the SLO's incidents in 100-character columns.
            raise path_error(
                ("step",),
                f"the SLO's name {self.slo_name[:40]!r}… would be longer than {NAME_MAX} characters; "
                "give it a shorter one with name:",
            )
        for i, alert in enumerate(self.alerts or ()):
            if alert.long > self.window:
                raise path_error(
                    ("alerts", i, "long"),
                    f"long window {format_duration(alert.long)} is longer than the SLO window "
                    f"{format_duration(self.window)}",
                )
        return self

    @property
    def slo_name(self) -> str:
        """The name shown everywhere: as configured, else ``probe`` or ``probe/step``."""
        if self.name:
            return self.name
        return f"{self.probe}/{self.step}" if self.step else self.probe

    @property
    def pseudo_probe(self) -> str:
        """The name its burn-rate incidents go by (``slo:auth``)."""
        return PSEUDO_PREFIX + self.slo_name

    @property
    def burn_alerts(self) -> tuple[BurnAlert, ...]:
        """The alert pairs in force: as configured, else the defaults that fit in the window."""
        if self.alerts is not None:
            return self.alerts
        return tuple(a for a in DEFAULT_ALERTS if a.long <= self.window)

    @property
    def budget(self) -> float:
        """The error budget as a ratio: 1 - objective (0.001 for 99.9 %)."""
        return 1.0 - self.objective / 100.0


def check_slos(
    slos: Sequence[SloConfig],
    probes: Sequence[str],
    *,
    retention_days: int,
    steps: Mapping[str, Sequence[str] | None] | None = None,
) -> PydanticCustomError | None:
    """The first problem of ``slos`` against the rest of the config, as an error naming its field
    path (``slos[1].probe``), or None.

    The window must fit in the store's raw retention: skipped steps and the short windows are
    counted from raw runs, so a longer window would silently count fewer days than it says. A
    ``step`` must be one the probe reports, where ``steps`` (probe -> its step names, None when
    only a run can tell) knows them: any other would be an objective with no runs at all.
    """
    known = ", ".join(probes) or "(none)"
    names: dict[str, int] = {}
    for i, slo in enumerate(slos):
        if slo.probe not in probes:
            return path_error(("slos", i, "probe"), f"unknown probe {slo.probe!r}; configured: {known}")
        if slo.slo_name in names:
            return path_error(
                ("slos", i, "name"), f"duplicate SLO name {slo.slo_name!r} (also slos[{names[slo.slo_name]}])"
            )
        names[slo.slo_name] = i
        reported = (steps or {}).get(slo.probe)
        if slo.step is not None and reported is not None and slo.step not in reported:
            return path_error(
                ("slos", i, "step"),
                f"probe {slo.probe!r} has no step {slo.step!r}; its steps: {', '.join(reported)}",
            )
        if slo.window > retention_days * 86400.0:
            return path_error(
                ("slos", i, "window"),
                f"window {slo.window / 86400:g}d is longer than the store keeps raw runs "
                f"(store.retention_days: {retention_days}); raise retention_days or shorten the window",
            )
    return None
