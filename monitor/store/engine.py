"""The database engine and the store's own threads, tuned per backend.

Everything the feature stores (history, alerting) share about talking to the database lives here:
connection settings that make an outage fail fast instead of hanging, SQLite's WAL and transaction
modes, and :class:`StoreExecutor`, the only threads that run store calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry

from monitor.store.url import parse_store_url

T = TypeVar("T")

#: Execution option that makes a SQLite transaction take the write lock up front (BEGIN IMMEDIATE).
WRITE_OPTION = "synthmon_write"

#: ``run(fn, *args) -> awaitable of fn(*args)`` on a store thread (``StoreExecutor.run``, or
#: ``asyncio.to_thread`` in tests): how every async caller crosses to the blocking store.
RunInThread = Callable[..., Awaitable[Any]]


#: PostgreSQL session settings: a statement or a lock wait never holds a store thread for long.
STATEMENT_TIMEOUT_MS = 10_000
LOCK_TIMEOUT_MS = 5_000
#: libpq TCP settings: a half-open connection (peer gone without a FIN) is noticed within ~30 s
#: instead of the kernel's default of hours. keepalives cover an idle connection, tcp_user_timeout
#: one with unacknowledged data in flight.
PG_TCP_ARGS: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def _pg_connect_args(parsed: URL, connect_timeout_s: float) -> dict[str, Any]:
    """libpq connection arguments; ``options`` given in the URL (e.g. a search_path) are kept."""
    own = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
    from_url = parsed.query.get("options")
    url_options = " ".join(from_url) if isinstance(from_url, tuple) else (from_url or "")
    return {
        "connect_timeout": int(max(1, connect_timeout_s)),
        # connect_args win over the URL's query, so the URL's options are merged in, not lost.
        "options": f"{url_options} {own}".strip(),
        **PG_TCP_ARGS,
    }


#: ``on_file_changed(reason)``: the SQLite file under the engine was ``"deleted"`` (or moved away) or
#: ``"replaced"`` by another file. Called from a store thread.
FileChanged = Callable[[str], None]


def _identity(path: Path) -> tuple[int, int] | None:
    """The file's identity (device, inode), or None when nothing is at ``path``."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _make_parent(path: Path) -> None:
    """Create the store file's directory when possible. A directory that cannot be made (read-only
    volume, a file in the way) is not an error here: opening the store then fails, and the store's
    gate reports that with the path and keeps retrying while probing goes on."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)


def create_store_engine(
    url: str,
    *,
    connect_timeout_s: float = 5.0,
    create_dirs: bool = True,
    on_file_changed: FileChanged | None = None,
) -> Engine:
    """An engine for ``url`` with the per-backend settings the store relies on. Does not connect.

    SQLite: the parent directory is created (unless ``create_dirs`` is false: read-only commands
    must not create a store), WAL is switched on, and transactions are begun by us (deferred for
    reads, immediate for writes) rather than by the sqlite3 module's own heuristics; the busy
    timeout bounds how long a write waits for another writer.
    PostgreSQL: a short connect timeout so an outage turns into buffering quickly, pre-ping to
    survive a database restart, server-side statement and lock timeouts and TCP keepalives so a
    hung database or a half-open connection fails a call instead of blocking it for ever.

    SQLite file integrity: an open connection keeps writing to the file it opened, so a store file
    deleted, moved or replaced under a running daemon would swallow every later write unseen. Each
    checkout compares the file at the path with the one the connection opened; on a mismatch the
    connection is discarded (the pool opens the path anew, creating its directory again if needed)
    and ``on_file_changed`` is told once per change, so the caller can count it and re-create the
    schema in the new file.

    Raises ``sqlalchemy.exc.ArgumentError`` for a URL that cannot be parsed (a config error).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_timeout=connect_timeout_s * 2,
            connect_args=_pg_connect_args(parsed, connect_timeout_s),
        )
    on_disk = bool(parsed.database) and parsed.database != ":memory:"
    path = Path(str(parsed.database)).resolve() if on_disk else None
    if create_dirs and path is not None:
        _make_parent(path)
    engine = create_engine(parsed, connect_args={"timeout": connect_timeout_s})
    # The identity of the file the newest connection opened: a change is reported once.
    latest: dict[str, tuple[int, int] | None] = {"identity": None}
    # Opening a file (which creates it) and recording its identity is one step under this lock, and
    # so is a checkout's comparison: another thread never sees a file that a reconnect has just
    # created as a foreign replacement (and never removes the new file's write-ahead log).
    identity_lock = threading.Lock()

    @event.listens_for(engine, "do_connect")
    def _do_connect(dialect: Any, record: ConnectionPoolEntry, cargs: Any, cparams: Any) -> Any:
        with identity_lock:
            dbapi_conn = dialect.loaded_dbapi.connect(*cargs, **cparams)
            if path is not None:
                record.info["identity"] = latest["identity"] = _identity(path)
        return dbapi_conn

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(connect_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "checkout")
    def _on_checkout(_dbapi_conn: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if path is None:
            return
        with identity_lock:
            opened = record.info.get("identity")
            now = _identity(path)
            if opened is None or now == opened:
                return
            if now != latest["identity"]:
                latest["identity"] = now
                if on_file_changed is not None:
                    on_file_changed("deleted" if now is None else "replaced")
                # The write-ahead log and shared-memory index at the path belong to the old file:
                # SQLite would replay that log into the new one (old rows in a restored file, or
                # corruption). Only on the first sight of the change: a later stale connection finds
                # the log of the new file there, in use by the connection that re-opened the path.
                for suffix in ("-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            if create_dirs:
                _make_parent(path)
        # The pool discards this connection and checks out (opens) another one on the path.
        raise DisconnectionError(f"store file {'deleted' if now is None else 'replaced'}")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = "IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def sqlite_path(url: str) -> Path | None:
    """The absolute file path of a SQLite ``url`` (resolved against the working directory, as the
    daemon resolves it), or None for other backends and in-memory databases."""
    return parse_store_url(url).sqlite_file()


class StoreExecutor(Executor):
    """The store's own worker threads (never the loop's default executor).

    Why not ``ThreadPoolExecutor``: its workers are joined at interpreter exit, so one thread stuck
    on a hung database connection would keep the process from exiting after SIGTERM (and ECS would
    SIGKILL it). These workers are daemon threads; callers bound their waits with timeouts, and a
    stuck thread is abandoned at exit. ``threads`` bounds how many store calls run at once.
    """

    def __init__(self, threads: int = 4, *, name: str = "synthmon-store") -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = queue.SimpleQueue()
        self._threads = threads
        self._name = name
        self._started: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)``; its future is completed by a worker thread."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("store executor is shut down")
            future: Future[Any] = Future()
            self._queue.put((future, functools.partial(fn, *args, **kwargs)))
            if len(self._started) < self._threads:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._started)}", daemon=True
                )
                self._started.append(thread)
                thread.start()
            return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the awaiting caller, which decides
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work; with ``cancel_futures`` drop what has not started. ``wait`` joins
        only workers that finish; a worker stuck in a database call is left behind (daemon thread)."""
        with self._lock:
            self._shutdown = True
            started = list(self._started)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        for _ in started:
            self._queue.put(None)
        if wait:
            for thread in started:
                thread.join()

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` on a store thread."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))
