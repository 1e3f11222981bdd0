"""Secret masking: the one implementation, used by logs, results, reports and isolated children.

It lives at the bottom of the dependency graph (``probes/`` imports nothing from ``monitor/``)
because an isolated child process must mask its own output before the daemon ever sees it, and the
daemon masks again with the same rules. Every masked secret reads :data:`MASK`, wherever it was.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, MutableMapping
from typing import IO, Any

#: What a masked secret looks like everywhere (same as pydantic's SecretStr).
MASK = "**********"

# Defence in depth: credentials that look like the platform's API keys or Slack tokens are masked
# even when they are not in the config (e.g. a key echoed back by a misbehaving service).
_PATTERNS = re.compile(r"\bhk_(?:live|test|dev)_[A-Za-z0-9]{8,}|\bxox[abposr]-[A-Za-z0-9-]{8,}")

#: Values that can hold no secret.
_UNMASKED = frozenset({int, float, bool})

#: Shorter values would mask ordinary words (and are not credentials anyway).
MIN_SECRET_LEN = 4


class SecretMasker:
    """Replaces every known secret value (and key-shaped strings) with :data:`MASK`.

    Thread-safe: the value set can be replaced (config reload) while other threads mask. An
    instance is also a structlog processor (``masker(logger, method, event_dict)``).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._regex: re.Pattern[str] | None = None
        self.update(values)

    def update(self, values: Iterable[str]) -> None:
        """Mask ``values`` from now on (replaces the previous set, e.g. after a reload)."""
        # Longest first so a secret that contains another is masked whole.
        distinct = sorted({v for v in values if v and len(v) >= MIN_SECRET_LEN}, key=len, reverse=True)
        regex = re.compile("|".join(re.escape(v) for v in distinct)) if distinct else None
        with self._lock:
            self._regex = regex

    def mask(self, text: str) -> str:
        """``text`` with every secret replaced."""
        regex = self._regex
        if regex is not None:
            text = regex.sub(MASK, text)
        return _PATTERNS.sub(MASK, text)

    def mask_value(self, value: Any) -> Any:
        """Strings masked, containers walked, exceptions rendered and masked, other values unchanged."""
        if isinstance(value, str):
            return self.mask(value)
        if value is None or type(value) in _UNMASKED:
            return value  # most of a log line: skipped before the slower container checks
        if isinstance(value, Mapping):
            return {k: self.mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.mask_value(v) for v in value)
        if isinstance(value, BaseException):
            return self.mask(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        """As a structlog processor: mask every value of the event (after exceptions are rendered)."""
        for key, value in list(event_dict.items()):
            event_dict[key] = self.mask_value(value)
        return event_dict


class MaskingStream:
    """A text stream wrapper that masks everything written through it (an isolated child's stderr)."""

    def __init__(self, inner: IO[str], masker: SecretMasker) -> None:
        self._inner = inner
        self._masker = masker

    def write(self, text: str) -> int:
        """Write ``text`` with secrets masked."""
        return self._inner.write(self._masker.mask(text))

    def flush(self) -> None:
        """Flush the wrapped stream."""
        self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
