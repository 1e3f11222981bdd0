"""Standard-library loggers (uvicorn, APScheduler, httpx) forwarded into a structlog logger of
:mod:`monitor.logs`, so their lines are masked and formatted like ours."""

from __future__ import annotations

import logging
from typing import Any

from monitor.logs import LEVELS


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
    root.setLevel(LEVELS.get(level, LEVELS["warning"]))
    return handler
