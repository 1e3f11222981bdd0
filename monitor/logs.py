"""Structured logs: structlog, JSON when not a TTY, console on a TTY, secrets masked.

No global configuration: :func:`make_logger` returns a logger that writes to the stream it is
given, and the daemon passes it down through constructors. The masker
(:class:`probes.support.masking.SecretMasker`) is both a structlog processor and a plain
``mask(text)`` helper; the runner uses the same instance for step messages, so a secret that slips
into an exception text is masked everywhere. Its values can be replaced on config reload.

Standard-library loggers (uvicorn, APScheduler) are forwarded into the same pipeline by
:func:`monitor.stdlib_logs.route_stdlib_logging`, so their lines are masked and formatted like
ours. That lives apart because it needs :mod:`logging`, and this module does not: every command's
parser imports it for the level names, and ``synthmon --help`` should not load the logging package.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Hashable
from typing import Any, TextIO

from probes.support.masking import SecretMasker

#: Level names and their numbers (the standard library's, written out: see the module docstring).
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


def make_logger(
    masker: SecretMasker,
    *,
    stream: TextIO | None = None,
    json: bool | None = None,
    level: str = "info",
) -> Any:
    """A bound structlog logger writing one line per event to ``stream`` (stderr by default).

    ``json=None`` picks JSON unless the stream is a TTY. The masker runs last before rendering,
    after exception formatting, so tracebacks are masked too.
    """
    import structlog  # here, not at the top: ``synthmon --help`` needs only LEVELS

    out = stream if stream is not None else sys.stderr
    as_json = json if json is not None else not _isatty(out)
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        masker,
        renderer,
    ]
    return structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, LEVELS["info"])),
        cache_logger_on_first_use=False,
    )


class Throttle:
    """At most one log line per key every ``every_s`` seconds; the ones in between are counted.

    Why: some warnings come once per event, and the events come fastest exactly when the daemon is
    in trouble (every missed run of an overloaded scheduler, every result dropped from a full write
    buffer). Writing a line for each then costs the CPU the daemon lacks, and buries the lines that
    say something new. The first event of a key is logged at once; later ones only when ``every_s``
    has passed since the last line, carrying how many were left out in between (``suppressed``).
    The metrics of those events still count every one. A key quiet for ``every_s`` with nothing
    left out is forgotten (callers' keys are bounded anyway: probe and queue names).
    """

    def __init__(self, every_s: float = 60.0, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._monotonic = monotonic
        self._last: dict[Hashable, tuple[float, int]] = {}  # key -> (last line at, left out since)

    def allow(self, key: Hashable, count: int = 1) -> int | None:
        """None when this event's line is to be left out; otherwise how many of this key's were
        left out since its previous line (0 for the first), to log with it. ``count``: how many
        events this one stands for (a batch dropped at once)."""
        now = self._monotonic()
        seen = self._last.get(key)
        if seen is not None and now - seen[0] < self.every_s:
            self._last[key] = (seen[0], seen[1] + count)
            return None
        if len(self._last) >= 1024:
            self._last = {k: v for k, v in self._last.items() if v[1] or now - v[0] < self.every_s}
        self._last[key] = (now, 0)
        return seen[1] if seen is not None else 0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
