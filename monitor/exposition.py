"""``/metrics`` with the daemon's location on every series (a constant label, like a target label).

Replicas in several locations export the same series; the ``location`` label tells them apart
in Prometheus whatever the scrape config does, so dashboards and rules can aggregate across
locations (``min by (probe)``) or count them. The label is added at exposition, not in
:class:`monitor.metrics.Metrics`: the daemon's own registry stays location-free, and a series
that has a ``location`` label of its own (``synthmon_location_failing``) keeps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric


class ConstLabels:
    """A read-only view of ``registry`` whose samples all carry ``labels`` (what
    ``prometheus_client``'s exposition needs: ``collect()`` and ``restricted_registry()``)."""

    def __init__(
        self, registry: CollectorRegistry, labels: Mapping[str, str], *, names: Iterable[str] | None = None
    ) -> None:
        self._registry = registry
        self._labels = dict(labels)
        self._names = set(names) if names is not None else None

    def collect(self) -> Iterator[Metric]:
        """Every metric family of the registry, each sample with the constant labels added."""
        source = self._registry if self._names is None else self._registry.restricted_registry(self._names)
        for family in source.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                labels = {**s.labels, **{k: v for k, v in self._labels.items() if k not in s.labels}}
                out.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar, s.native_histogram)
            yield out

    def restricted_registry(self, names: Iterable[str]) -> ConstLabels:
        """The same view over only the series ``names`` (``/metrics?name[]=…``)."""
        return ConstLabels(self._registry, self._labels, names=names)
