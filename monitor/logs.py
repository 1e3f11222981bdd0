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


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
