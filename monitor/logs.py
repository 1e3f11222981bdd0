"""Structured logs: structlog, JSON when not a TTY, console on a TTY, secrets masked.

No global configuration: :func:`make_logger` returns a logger that writes to the stream it is
given, and the daemon passes it down through constructors. The masker
(:class:`probes.support.masking.SecretMasker`) is both a structlog processor and a plain
``mask(text)`` helper; the runner uses the same instance for step messages, so a secret that slips
into an exception text is masked everywhere. Its values can be replaced on config reload.

Standard-library loggers (uvicorn, APScheduler) are forwarded into the same pipeline by
:func:`route_stdlib_logging`, so their lines are masked and formatted like ours.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from probes.support.masking import SecretMasker

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        cache_logger_on_first_use=False,
    )


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _ForwardHandler(logging.Handler):
    """Sends standard-library log records into a structlog logger (masked, same format)."""

    def __init__(self, logger: Any) -> None:
        super().__init__()
        self._logger = logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            method = record.levelname.lower()
            log = getattr(self._logger, method if method in LEVELS else "info")
            log(text, logger=record.name)
        except Exception:  # logging must never take the daemon down
            self.handleError(record)


def route_stdlib_logging(logger: Any, level: str = "warning") -> logging.Handler:
    """Forward the root stdlib logger to ``logger`` at ``level``; returns the handler (to remove)."""
    handler = _ForwardHandler(logger)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.WARNING))
    return handler
