"""Error budget arithmetic, as pure functions over good/bad run counts.

Which runs count is defined here, once: **good** = PASS or DEGRADED (the platform did its job, if
slowly), **bad** = FAIL (it answered wrongly). ERROR (the monitor could not check) and SKIPPED (a
step not reached, or a run that checked nothing) are neither: they spend no budget and earn none.
For a step SLO it is the step's own status. The generated Prometheus rules count the same way.

With ``objective`` as a ratio (0.999) the error budget is ``1 - objective``:

- attainment        = good / (good + bad)
- budget consumed   = bad / (total · (1 - objective))      (1.0 = the whole budget is gone)
- budget remaining  = 1 - budget consumed                   (negative once overspent)
- burn rate         = (bad / total) / (1 - objective)       (1.0 spends exactly the budget in the window)

No runs means no data (None), never 100 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from probes.base import Status


@dataclass(frozen=True, slots=True)
class Counts:
    """Checked runs of one probe or step over one time range."""

    good: int = 0
    bad: int = 0

    @property
    def total(self) -> int:
        """Runs that count (good + bad)."""
        return self.good + self.bad

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.good + other.good, self.bad + other.bad)


def classify(status: Status) -> bool | None:
    """True for a good run, False for a bad one, None for one that does not count."""
    if status in (Status.PASS, Status.DEGRADED):
        return True
    if status is Status.FAIL:
        return False
    return None


def attainment(c: Counts) -> float | None:
    """good / (good + bad); None without runs."""
    return c.good / c.total if c.total else None


def error_ratio(c: Counts) -> float | None:
    """bad / (good + bad); None without runs."""
    return c.bad / c.total if c.total else None


def budget_consumed(c: Counts, objective: float) -> float | None:
    """Share of the window's error budget spent: bad / (total · (1 - objective)); None without runs."""
    ratio = error_ratio(c)
    return None if ratio is None else ratio / (1.0 - objective)


def budget_remaining(c: Counts, objective: float) -> float | None:
    """1 - consumed: 1.0 untouched, 0 spent, negative overspent; None without runs."""
    consumed = budget_consumed(c, objective)
    return None if consumed is None else 1.0 - consumed


def burn_rate(c: Counts, objective: float) -> float | None:
    """How many times faster than sustainable the budget burns: (bad/total) / (1 - objective)."""
    return budget_consumed(c, objective)


@dataclass(frozen=True, slots=True)
class PairVerdict:
    """One multiwindow alert evaluated: each window's burn rate and whether the pair fires."""

    long_rate: float | None
    short_rate: float | None
    factor: float

    @property
    def firing(self) -> bool:
        """Both windows burn at ``factor`` or more (a window without runs never fires)."""
        return (
            self.long_rate is not None
            and self.short_rate is not None
            and self.long_rate >= self.factor
            and self.short_rate >= self.factor
        )


def pair(long: Counts, short: Counts, factor: float, objective: float) -> PairVerdict:
    """The multiwindow verdict of one alert pair from the counts of its two windows."""
    return PairVerdict(burn_rate(long, objective), burn_rate(short, objective), factor)


def burn_rates(counts: Mapping[float, Counts], objective: float) -> dict[float, float | None]:
    """Burn rate per window length (seconds → rate)."""
    return {window: burn_rate(c, objective) for window, c in counts.items()}
