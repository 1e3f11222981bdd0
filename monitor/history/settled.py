"""The settled hours of an uptime window, read from the rollups at most once a minute.

:meth:`monitor.history.sqlstore.SqlHistoryStore.probe_uptime` splits a window into raw rows at its
edges and hourly rollups between them. Of the rollups, every hour but the newest whole one is
*settled*: no run of this replica can still be folded into it (runs are folded in the transaction
that stores them, and a run is stored well within the hour after the one it started in). Their
sums depend only on the window's hour range, so they are kept here keyed on ``(probes, first hour,
end hour)``: a new hour boundary makes a new key and a fresh read, and past ranges fall out.

The only way a settled hour changes is a late write: another replica (or this one after a store
outage) storing runs of a past hour. Entries are read again once older than :data:`MAX_AGE_S`, so
such runs show within a minute. What can change every second stays uncached: the raw rows of the
partial hours and the newest whole hour's rollups, small index-range reads done on every call.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

#: Seconds a settled range is served from memory before it is read again (bounds how late another
#: replica's runs of a past hour show).
MAX_AGE_S = 60.0

V = TypeVar("V")


class SettledHours(Generic[V]):
    """Values read for a key (a settled hour range), kept for ``max_age_s`` of the caller's clock.

    Ages are measured on the ``now`` each caller passes (the store's methods take ``now``), so a
    test drives them with a fake clock; a clock that goes back reads again. Entries past their age
    are dropped whenever a value is put, so only the current ranges are held. Safe to share between store
    threads: two threads missing together both read, and the last one's value stays.
    """

    def __init__(self, max_age_s: float = MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._entries: dict[Hashable, tuple[float, V]] = {}

    def _fresh(self, read_at: float, now: float) -> bool:
        return 0.0 <= now - read_at <= self.max_age_s

    def get(self, key: Hashable, now: float) -> V | None:
        """The value kept for ``key`` if it was read within ``max_age_s`` of ``now``, else None."""
        hit = self._entries.get(key)
        return hit[1] if hit is not None and self._fresh(hit[0], now) else None

    def put(self, key: Hashable, now: float, value: V) -> None:
        """Keep ``value``, read at ``now``, for ``key``; drop the entries past their age."""
        kept: Mapping[Hashable, tuple[float, V]] = self._entries
        self._entries = {k: e for k, e in kept.items() if self._fresh(e[0], now)} | {key: (now, value)}
