"""What synthmon itself reads from a store URL: the backend, and the file of a SQLite store.

SQLAlchemy parses the URL to connect; this module reads the two things the config check and the
read commands need before (or instead of) importing SQLAlchemy, which is most of what a read
command on SQLite costs. It follows SQLAlchemy's own URL pattern (``sqlalchemy.engine.url``), and a
test compares the two on a table of URLs so they cannot drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

# SQLAlchemy's pattern, trimmed to the parts read here: the driver name, then user, password, host
# and port (skipped), then the database up to the query string.
_URL = re.compile(
    r"""
    (?P<name>[\w+]+)://
    (?:[^:/]*(?::[^@]*)?@)?
    (?:(?:\[[^/?]+\]|[^/:?]+)?(?::[^/?]*)?)?
    (?:/(?P<database>[^?]*))?
    """,
    re.X,
)


class NotAUrlError(ValueError):
    """The text is not a database URL at all (no ``name://`` at its start)."""


class StoreUrl(NamedTuple):
    """The backend (``sqlite``, ``postgresql``; the driver after ``+`` left out) and the database
    part of a URL (percent-decoded; None when absent)."""

    backend: str
    database: str | None

    def sqlite_file(self) -> Path | None:
        """The absolute store file of a SQLite URL (resolved against the working directory, as the
        daemon resolves it), or None for other backends and in-memory databases."""
        if self.backend != "sqlite" or not self.database or self.database == ":memory:":
            return None
        return Path(self.database).resolve()


def parse_store_url(url: str) -> StoreUrl:
    """The :class:`StoreUrl` of ``url``. Raises :class:`NotAUrlError`; the message never repeats the
    URL (it may carry a password)."""
    m = _URL.match(url)
    if m is None:
        raise NotAUrlError("not a database URL")
    database = m["database"]
    return StoreUrl(m["name"].split("+")[0], unquote(database) if database is not None else None)
