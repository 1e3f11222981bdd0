"""``/metrics``: the registry rendered in slices between probe runs, the location on every series.

Rendering is CPU work proportional to the series (about 60 per probe; 250 probes are some 16,000
lines, a quarter of a second of CPU). Done in one go in the request handler, as prometheus_client's
ASGI app does it, every scrape froze the event loop that long and the probes due meanwhile started
late. A worker thread is no better: while it holds the GIL, the loop waits up to the switch
interval (5 ms) after every socket call, and the probes starve. :func:`render` stays on the loop
and gives it back between slices of :data:`SLICE_SAMPLES` samples, each encoded by
prometheus_client's own encoder (text or OpenMetrics, as negotiated) and gzipped incrementally
at level 1 when the scraper accepts it (a fraction of level 9's CPU, nearly the same size).

Replicas in several locations export the same series; the ``location`` label tells them apart
in Prometheus whatever the scrape config does, so dashboards and rules can aggregate across
locations (``min by (probe)``) or count them. The label is added at exposition, not in
:class:`monitor.metrics.Metrics`: the daemon's own registry stays location-free, and a series
that has a ``location`` label of its own (``synthmon_location_failing``) keeps it.
"""

from __future__ import annotations

import asyncio
import copy
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric

#: zlib level for gzipped scrapes: 1 is several times cheaper than the default 9, and the
#: exposition's repetitive text compresses nearly as well.
GZIP_LEVEL = 1
#: Samples encoded between two turns of the event loop: a few milliseconds of CPU.
SLICE_SAMPLES = 200
_EOF = b"# EOF\n"


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
        """Every metric family of the registry, each sample with the constant labels added.

        Each family is a shallow copy with new samples (``Sample._replace``), so a collector that
        hands out the same family twice never sees the label; the names were validated when the
        registry's metrics were declared, so ``Metric.add_sample``'s checks are not run again.
        """
        source = self._registry if self._names is None else self._registry.restricted_registry(self._names)
        const = self._labels
        for family in source.collect():
            out = copy.copy(family)
            out.samples = [
                s._replace(labels={**s.labels, **{k: v for k, v in const.items() if k not in s.labels}})
                for s in family.samples
            ]
            yield out

    def restricted_registry(self, names: Iterable[str]) -> ConstLabels:
        """The same view over only the series ``names`` (``/metrics?name[]=…``)."""
        return ConstLabels(self._registry, self._labels, names=names)


async def render(
    registry: CollectorRegistry | ConstLabels,
    *,
    accept: str = "",
    accept_encoding: str = "",
    names: Sequence[str] = (),
) -> tuple[bytes, dict[str, str]]:
    """The exposition body and its headers, as a scrape with these headers asks for it.

    ``accept`` chooses the text or OpenMetrics format (prometheus_client's negotiation), ``names``
    restricts it to those series (``name[]``), ``accept_encoding`` allows gzip. A family of more
    than :data:`SLICE_SAMPLES` samples is encoded in slices, the event loop running between them,
    and put back together, so the body is what the encoder writes for the whole registry.
    """
    encoder, content_type = choose_encoder(accept)
    openmetrics = content_type.startswith("application/openmetrics-text")
    source = registry.restricted_registry(names) if names else registry
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if gzip_accepted(accept_encoding) else None
    parts: list[bytes] = []

    def emit(text: bytes) -> None:
        parts.append(packer.compress(text) if packer is not None else text)

    for family in source.collect():
        samples = family.samples
        if len(samples) <= SLICE_SAMPLES:
            emit(_encoded(encoder, family, openmetrics))
        else:
            # The text encoder writes a family's ``_created`` (``_gsum``, ``_gcount``) samples as
            # blocks of their own after its other samples: each slice's blocks are gathered
            # under their header and written in the encoder's order once the family is done.
            blocks: dict[bytes, list[bytes]] = {}
            for start in range(0, len(samples), SLICE_SAMPLES):
                part = copy.copy(family)
                part.samples = samples[start : start + SLICE_SAMPLES]
                for header, lines in _blocks(_encoded(encoder, part, openmetrics)):
                    blocks.setdefault(header, []).append(lines)
                await asyncio.sleep(0)  # the probes due meanwhile start now, not after the scrape
            main, *others = blocks
            emit(b"".join(header + b"".join(blocks[header]) for header in [main, *sorted(others)]))
        await asyncio.sleep(0)
    if openmetrics:
        emit(_EOF)
    headers = {"Content-Type": content_type}
    if packer is not None:
        parts.append(packer.flush())
        headers["Content-Encoding"] = "gzip"
    return b"".join(parts), headers


class _OneFamily:
    """One family as the collector the encoders take."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def _encoded(encoder: Callable[[_OneFamily], bytes], family: Metric, openmetrics: bool) -> bytes:
    text = encoder(_OneFamily(family))
    return text.removesuffix(_EOF) if openmetrics else text


def _blocks(text: bytes) -> list[tuple[bytes, bytes]]:
    """``text`` as (comment lines, the sample lines after them) blocks, in order.

    Lines end at ``\\n`` only: the encoders do not escape a carriage return in a label value.
    """
    blocks: list[tuple[bytes, bytes]] = []
    header: list[bytes] = []
    lines: list[bytes] = []
    for line in (part + b"\n" for part in text.split(b"\n")[:-1]):
        if line.startswith(b"#"):
            if lines:
                blocks.append((b"".join(header), b"".join(lines)))
                header, lines = [], []
            header.append(line)
        else:
            lines.append(line)
    if header or lines:
        blocks.append((b"".join(header), b"".join(lines)))
    return blocks
