"""The watchdog: a daemon whose scheduler has stopped firing exits instead of running blind.

Why a thread: the scheduler, the probes and the HTTP server share one event loop, so a loop stuck in
a blocking call (a C library that never returns, a deadlock) stops every one of them, and no asyncio
task could notice. As an ECS sidecar with ``essential: false`` the container health check is only
reported, never acted on; an exit is what the container restart policy (or any supervisor) acts on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Exit status of a daemon the watchdog stopped (EX_SOFTWARE: an internal error, not the config).
EXIT_STUCK = 70


class Watchdog:
    """Calls ``on_stuck(age)`` once when ``age()`` (seconds since the scheduler last fired, None while
    unknown) exceeds ``limit_s``; checked every ``interval_s`` on its own daemon thread."""

    def __init__(
        self,
        age: Callable[[], float | None],
        limit_s: float,
        on_stuck: Callable[[float], None],
        *,
        interval_s: float = 5.0,
    ) -> None:
        self._age = age
        self.limit_s = limit_s
        self._on_stuck = on_stuck
        self._interval_s = interval_s
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.fired = False

    def check(self) -> bool:
        """One check: True (and ``on_stuck`` called, once) when the heartbeat is too old."""
        age = self._age()
        if self.fired or age is None or age <= self.limit_s:
            return False
        self.fired = True
        self._on_stuck(age)
        return True

    def start(self) -> None:
        """Start checking in the background (no-op when ``limit_s`` is 0: the watchdog is off)."""
        if self.limit_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="synthmon-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop checking (a graceful shutdown must not be mistaken for a stuck scheduler)."""
        self._stopped.set()

    def _loop(self) -> None:
        while not self._stopped.wait(self._interval_s):
            if self.check():
                return
