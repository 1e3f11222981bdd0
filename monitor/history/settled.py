"""The settled hours of an uptime window, read from the rollups once and kept until they change.

:meth:`monitor.history.sqlstore.SqlHistoryStore.probe_uptime` splits a window into raw rows at its
edges and hourly rollups between them. Of the rollups, every hour but the newest whole one is
*settled*: runs are folded in the transaction that stores them, and a run is stored well within the
hour after the one it started in. Their sums depend only on the window's hour range, so they are
kept here keyed on ``(probes, first hour, end hour)``: a new hour boundary makes a new key and a
fresh read, and past ranges fall out.

A settled hour changes only on a late write (runs of a past hour, e.g. after a store outage) or on
retention pruning. Both are told here by the store that makes them (:meth:`SettledHours.written`,
:meth:`SettledHours.pruned`), so this replica's own late runs count at the next read. A read that
was under way across such a write is not kept (see :meth:`SettledHours.begin`).

Another writer sharing the database (a replica on the same PostgreSQL) is not seen writing. Its
late runs of a past hour count once the entry is older than :data:`MAX_AGE_S`; entries are read
again in the background after :data:`RENEW_AFTER_S` (:meth:`SettledHours.due`), so that bound
costs no request a read.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

#: Seconds a settled range is served from memory at most: how late another writer's runs of a past
#: hour may show.
MAX_AGE_S = 60.0
#: Age after which an entry is due to be read again in the background, before it expires.
RENEW_AFTER_S = 30.0

#: A settled hour range of some probes: (probes, first hour, end hour), hours ``[first, end)``.
Settled = tuple[tuple[str, ...], int, int]

V = TypeVar("V")


class SettledHours(Generic[V]):
    """Values read for settled hour ranges, kept until a write to one of their hours, a prune, or
    ``max_age_s`` of the caller's clock.

    Ages are measured on the ``now`` each caller passes (the store's methods take ``now``), so a
    test drives them with a fake clock; a clock that goes back reads again. Entries past their age
    are dropped whenever a value is put. Shared by the store's threads, under one lock.
    """

    def __init__(self, max_age_s: float = MAX_AGE_S, renew_after_s: float = RENEW_AFTER_S) -> None:
        self.max_age_s = max_age_s
        self.renew_after_s = renew_after_s
        self._entries: dict[Settled, tuple[float, V]] = {}
        self._lock = threading.Lock()
        # Bumped by every write to an hour below ``_horizon`` (the newest end any read asked for):
        # a read begun before such a write may have missed it and is not kept.
        self._version = 0
        self._horizon = 0
        #: Reads begun (a miss or a renewal), for tests and profiling.
        self.reads = 0

    def __len__(self) -> int:
        """Ranges kept (one past its age stays counted until the next put)."""
        return len(self._entries)

    def _fresh(self, read_at: float, now: float, age_s: float) -> bool:
        return 0.0 <= now - read_at <= age_s

    def get(self, key: Settled, now: float) -> V | None:
        """The value kept for ``key`` if it was read within ``max_age_s`` of ``now``, else None."""
        hit = self._entries.get(key)
        return hit[1] if hit is not None and self._fresh(hit[0], now, self.max_age_s) else None

    def due(self, now: float) -> list[Settled]:
        """The kept keys older than ``renew_after_s`` at ``now``: to read again before they expire."""
        with self._lock:
            return [k for k, (at, _) in self._entries.items() if not self._fresh(at, now, self.renew_after_s)]

    def begin(self, key: Settled) -> int:
        """Note a read of ``key`` about to start (before its transaction opens); the token to
        :meth:`put` its value with."""
        with self._lock:
            self._horizon = max(self._horizon, key[2])
            self.reads += 1
            return self._version

    def put(self, key: Settled, now: float, value: V, token: int) -> bool:
        """Keep ``value``, read at ``now`` for ``key`` by a read begun with ``token``, unless a late
        write came since (its value may predate the write); drop entries past their age. True when
        kept."""
        with self._lock:
            if token != self._version:
                return False
            kept = {k: e for k, e in self._entries.items() if self._fresh(e[0], now, self.max_age_s)}
            kept[key] = (now, value)
            self._entries = kept
            return True

    def written(self, hours: Iterable[int]) -> None:
        """Runs of these hours were committed: drop the ranges holding one. Called after the commit,
        so a read begun later sees the runs; writes to the current hours (above every range read so
        far) change nothing."""
        with self._lock:
            late = [h for h in hours if h < self._horizon]
            if not late:
                return
            self._version += 1
            self._entries = {
                k: e for k, e in self._entries.items() if not any(k[1] <= h < k[2] for h in late)
            }

    def pruned(self, before_hour: int) -> None:
        """Rollups of hours before ``before_hour`` were deleted: drop the ranges starting before it."""
        with self._lock:
            self._version += 1
            self._entries = {k: e for k, e in self._entries.items() if k[1] >= before_hour}
