"""Apply the Alembic migrations, refuse a database whose schema is newer than the code, and open the
store in the background when it is not reachable at start-up (:class:`StoreGate`).

Exceptions::

    SchemaError
      ├── SchemaTooNewError     the database was migrated by a newer synthmon: refuse to use it
      ├── SchemaMissingError    no store / no schema yet (read-only commands never create one)
      └── SchemaOutdatedError   an older schema (read-only commands never migrate)
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # SQLAlchemy and asyncio are imported where used: the SQLite read commands check
    # the schema revision with neither.
    import asyncio

    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from sqlalchemy import Engine

    from monitor.store.engine import RunInThread

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
HOW_TO_MIGRATE = "run `synthmon migrate` (or start the daemon once) to create or upgrade it"

#: ``revision = "..."`` / ``down_revision = "..." | None`` at the top of a migration module.
_REVISION_LINE = re.compile(r'^(down_revision|revision)\s*=\s*(None|"([^"]*)")\s*$', re.MULTILINE)


class SchemaError(RuntimeError):
    """The store's schema cannot be brought to the version this code needs."""


class SchemaTooNewError(SchemaError):
    """The database carries a revision this code does not know (a newer synthmon migrated it)."""


class SchemaMissingError(SchemaError):
    """There is no store, or no synthmon schema in it, yet."""


class SchemaOutdatedError(SchemaError):
    """The store's schema is older than this code's (a migration is pending)."""


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def _script() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


@cache
def _linear_head() -> str | None:
    """The head revision read straight from the migration files when they form one plain chain
    (each names one parent), else None (Alembic then decides).

    Why: Alembic and Mako cost a daemon about 10 MB of memory and a command about 0.2 s of start-up;
    a store already at the head needs neither, and that is every start but the first after an
    upgrade."""
    parents: dict[str, str | None] = {}
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = {m[0]: m[2] if m[1] != "None" else None for m in _REVISION_LINE.findall(path.read_text())}
        if "revision" in found:
            if "down_revision" not in found:
                return None
            parents[str(found["revision"])] = found["down_revision"]
    heads = set(parents) - set(parents.values())
    return heads.pop() if len(heads) == 1 else None


def head_revision() -> str:
    """The newest revision this code knows."""
    head = _linear_head() or _script().get_current_head()
    # The package always ships at least one revision.
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database, or None for an empty database."""
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None  # nothing was migrated yet
        rows = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    # More than one row only on a branched history, which this code never writes: let Alembic say.
    return str(rows[0]) if len(rows) == 1 else _alembic_current(engine)


def _alembic_current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        rev: str | None = MigrationContext.configure(conn).get_current_revision()
        return rev


def _refuse_unknown(script: ScriptDirectory, current: str) -> None:
    from alembic.util.exc import CommandError

    try:
        known = script.get_revision(current)
    except CommandError:
        known = None
    if known is None:
        raise SchemaTooNewError(
            f"the store's schema is at revision {current!r}, newer than this synthmon "
            f"(knows up to {script.get_current_head()!r}); upgrade synthmon or point it at another store"
        )


def check(engine: Engine) -> str:
    """Return the head revision when the database is exactly at it; otherwise raise the matching
    :class:`SchemaError` (missing, outdated, too new). Changes nothing."""
    return check_revision(current_revision(engine))


def check_revision(current: str | None) -> str:
    """:func:`check` of a database stamped ``current`` (None: no schema), however it was read."""
    head = head_revision()
    if current == head:
        return head
    script = _script()
    if current is None:
        raise SchemaMissingError(f"the store has no synthmon schema yet; {HOW_TO_MIGRATE}")
    _refuse_unknown(script, current)
    raise SchemaOutdatedError(
        f"the store's schema is at revision {current!r}, older than this synthmon's {head!r}; "
        f"{HOW_TO_MIGRATE}"
    )


def upgrade(engine: Engine) -> str:
    """Bring the database to the head revision and return it; raise :class:`SchemaTooNewError` first
    when the database is ahead of this code (running old code on it could corrupt it)."""
    current = current_revision(engine)
    if current is not None and current == _linear_head():
        return current  # nothing to do, and no need to load Alembic to learn that
    from alembic import command

    cfg = _config()
    script = _script()
    if current is not None:
        _refuse_unknown(script, current)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return head_revision()


class MigrationFailedError(RuntimeError):
    """The migration child could not bring the database to the head revision (its reason inside)."""


#: What the migration child prints on stdout: the revision reached, or the error's class and text.
_CHILD_OUTCOME = "outcome"


def upgrade_in_child(engine: Engine) -> str:
    """:func:`upgrade`, but what needs Alembic runs in a child interpreter that exits afterwards.

    Why: Alembic, Mako and the Pygments lexers Mako pulls in stay in a process once imported (about
    8 MB a long-running daemon would carry for a step it takes once per upgrade; deleting the modules
    returns nothing to the OS). A store already at the head is recognised here without Alembic, as
    :func:`upgrade` does; otherwise the child migrates and this raises what :func:`upgrade` would
    (:class:`SchemaTooNewError`), or :class:`MigrationFailedError` with the child's reason. An
    in-memory SQLite database exists only in this process, so it is migrated here.
    """
    current = current_revision(engine)
    if current is not None and current == _linear_head():
        return current
    if engine.url.get_backend_name() == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return upgrade(engine)
    import subprocess  # here, not at module level: the SQLite read commands import this module

    # The URL (with its password) goes through a pipe, never the command line (``ps`` shows that).
    request = json.dumps({"url": engine.url.render_as_string(hide_password=False)})
    done = subprocess.run(
        [sys.executable, "-m", "monitor.store.migrate"],
        input=request,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        outcome = json.loads(done.stdout.strip().splitlines()[-1])[_CHILD_OUTCOME]
    except (IndexError, KeyError, TypeError, ValueError):
        # It died before it could answer (its traceback went to a pipe that may hold the URL).
        failed = (
            f"the migration child exited {done.returncode} without an outcome; `synthmon migrate` shows why"
        )
        raise MigrationFailedError(failed) from None
    if "revision" in outcome:
        return str(outcome["revision"])
    if outcome["error"] == SchemaTooNewError.__name__:
        raise SchemaTooNewError(outcome["message"])
    raise MigrationFailedError(": ".join(part for part in (outcome["error"], outcome["message"]) if part))


def _child_main() -> int:
    """``python -m monitor.store.migrate``: read ``{"url": ...}`` on stdin, upgrade that database,
    print ``{"outcome": {"revision": ...}}`` or ``{"outcome": {"error": class, "message": ...}}``.

    Only a SQLite error's text is passed on: it names a file and SQLite's reason; a network
    driver's text may carry host names or a connection string, so only its class is.
    """
    from monitor.store.engine import create_store_engine

    url = json.loads(sys.stdin.read())["url"]
    engine = create_store_engine(url)
    try:
        outcome: dict[str, str] = {"revision": upgrade(engine)}
    except Exception as exc:
        orig = getattr(exc, "orig", None) or exc
        sqlite = engine.dialect.name == "sqlite" or isinstance(exc, SchemaError)
        message = " ".join(str(orig).split())[:500] if sqlite else ""
        outcome = {"error": type(exc).__name__, "message": message}
    finally:
        engine.dispose()
    print(json.dumps({_CHILD_OUTCOME: outcome}))
    return 0 if "revision" in outcome else 1


class StoreGate:
    """Whether the store may be used yet; it migrates the database on the first successful attempt.

    Why: a database that is down when the daemon starts must not stop probing. The daemon starts
    with the gate closed; writers ask :meth:`ensure` before touching the store, which (at most once
    at a time, and no sooner than the backoff allows) tries to connect and migrate. Attempts back
    off from ``backoff_base`` doubling to ``backoff_max`` seconds. A schema newer than this code is
    final: the gate stays closed (``fatal`` holds the error) and is logged, never retried.
    ``on_change(ready)`` is told every change (e.g. a gauge). ``migrate`` opens and upgrades the
    database: :func:`upgrade`, or :func:`upgrade_in_child` in the long-running daemon.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        monotonic: Callable[[], float],
        run: RunInThread | None = None,
        on_change: Callable[[bool], None] | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        logger: Any = None,
        label: str = "",
        migrate: Callable[[Engine], str] = upgrade,
    ) -> None:
        self._engine = engine
        self._migrate = migrate
        self._monotonic = monotonic
        import asyncio

        self._run: RunInThread = run or asyncio.to_thread
        self._on_change = on_change
        self._base = backoff_base
        self._max = backoff_max
        if logger is None:
            import structlog  # only the daemon's background opener logs: not the store commands

            logger = structlog.get_logger("synthmon.store")
        self._log = logger
        self._label = label
        self.ready = False
        self.fatal: SchemaError | None = None
        self.last_error: str | None = None
        self.failures = 0
        self._next_at = 0.0
        self._attempt: asyncio.Task[bool] | None = None
        if on_change is not None:
            on_change(False)

    def status(self) -> dict[str, Any]:
        """What ``/api/v1/store`` and readiness report: ready, failed attempts, last error class."""
        return {
            "ready": self.ready,
            "failed_attempts": self.failures,
            "error": self.last_error,
            "refused": str(self.fatal) if self.fatal is not None else None,
        }

    def _opened(self, revision: str) -> None:
        self.ready = True
        self.last_error = None
        self._log.info("store.ready", store=self._label, revision=revision, after_failures=self.failures)
        if self._on_change is not None:
            self._on_change(True)

    def _failed(self, exc: BaseException) -> None:
        if isinstance(exc, SchemaTooNewError):
            self.fatal = exc
            self.last_error = type(exc).__name__
            self._log.error("store.schema_refused", store=self._label, error=str(exc))
            return
        self.failures += 1
        self.last_error = type(exc).__name__
        delay = min(self._max, self._base * 2 ** min(self.failures - 1, 30))
        self._next_at = self._monotonic() + delay
        # The class only for network databases: a driver's message may carry host names or, worse,
        # connection strings. SQLite's own message ("unable to open database file", "disk I/O
        # error", "database or disk is full") names no secret and says what to fix.
        detail = {}
        if self._engine.dialect.name == "sqlite":
            orig = getattr(exc, "orig", None) or exc
            detail = {"detail": " ".join(str(orig).split())[:200]}
        self._log.warning(
            "store.unavailable", store=self._label, error=self.last_error, retry_in_s=delay, **detail
        )

    def invalidate(self, reason: str) -> None:
        """The store under the gate changed (its SQLite file deleted or replaced): close the gate so
        the next writer re-opens it at once, which creates the schema in the new file. Safe to call
        from a store thread."""
        self._log.warning("store.file_changed", store=self._label, reason=reason)
        self.ready = False
        self._next_at = 0.0
        if self._on_change is not None:
            self._on_change(False)

    def open_now(self) -> bool:
        """One blocking attempt (start-up, before the event loop). Raises :class:`SchemaTooNewError`
        so the daemon can refuse to start; any other failure leaves the gate closed (False)."""
        try:
            revision = self._migrate(self._engine)
        except SchemaTooNewError:
            raise
        except Exception as exc:
            self._failed(exc)
            return False
        self._opened(revision)
        return True

    async def ensure(self, *, force: bool = False) -> bool:
        """True when the store is usable; otherwise try to open it (unless backing off, or ``force``)
        and say whether that worked. Never raises."""
        import asyncio

        if self.ready:
            return True
        if self.fatal is not None:
            return False
        if self._attempt is None or self._attempt.done():
            if not force and self._monotonic() < self._next_at:
                return False
            self._attempt = asyncio.get_running_loop().create_task(self._try())
        # shield: a caller giving up (a bounded shutdown flush) must not cancel the attempt others await.
        return await asyncio.shield(self._attempt)

    async def _try(self) -> bool:
        try:
            revision = await self._run(lambda: self._migrate(self._engine))
        except Exception as exc:
            self._failed(exc)
            return False
        self._opened(str(revision))
        return True

    def job(self, interval_s: float = 5.0) -> tuple[str, float, Callable[[], Awaitable[Any]]]:
        """``(name, interval_s, coroutine function)``: retries opening while no result asks for it."""

        async def _open() -> None:
            await self.ensure()

        return ("store-open", interval_s, _open)


if __name__ == "__main__":
    sys.exit(_child_main())
