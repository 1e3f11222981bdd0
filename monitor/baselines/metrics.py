"""The baselines' series: each probe's and step's baseline, and whether it is regressed now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Gauge

from monitor.baselines.judge import Baseline, Key


class BaselineMetrics:
    """``synthmon_latency_baseline_seconds{probe,step}`` and ``synthmon_latency_regression{probe,step}``
    (``step=""`` is the probe's run as a whole, as in the history's rollups)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.baseline = Gauge(
            "synthmon_latency_baseline_seconds",
            "Usual latency (the configured percentile over the baseline window) of a probe or step.",
            ["probe", "step"],
            registry=registry,
        )
        self.regression = Gauge(
            "synthmon_latency_regression",
            "1 while a probe or step is slower than its baseline by the configured factor for the "
            "configured number of runs in a row, else 0.",
            ["probe", "step"],
            registry=registry,
        )
        self._shown: set[Key] = set()

    def baselines(self, baselines: Mapping[Key, Baseline]) -> None:
        """Show exactly ``baselines`` (series of probes and steps that lost theirs go away)."""
        for key in self._shown - baselines.keys():
            self.baseline.remove(*key)
            self.regression.remove(*key)
        for key, base in baselines.items():
            self.baseline.labels(*key).set(base.seconds)
            if key not in self._shown:
                self.regression.labels(*key).set(0)
        self._shown = set(baselines)

    def regressed(self, states: Iterable[tuple[Key, bool]]) -> None:
        """Set the regression flag of each judged probe or step (those with a baseline shown)."""
        for key, regressed in states:
            if key in self._shown:
                self.regression.labels(*key).set(1 if regressed else 0)
