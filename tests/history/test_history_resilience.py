"""The whole daemon (``build_monitor``) through store trouble: probing and /metrics never stop.

Real components only: the daemon serving on loopback, an ``http`` probe against a loopback target,
SQLite held by another writer, and PostgreSQL behind a loopback TCP forwarder the test switches
between down (connections dropped), up and hung (connections accepted, nothing ever answered).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import structlog
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from monitor.app import build_monitor
from monitor.config import parse_config
from monitor.daemon import Daemon
from probes.base import Status, SystemClock
from tests.core.target import Target
from tests.history.history_helpers import FullStore

from .history_helpers import PG_SKIP_REASON, PG_URL, T0, pg_schema_url, result

CONFIG = """\
environment: test
listen: 127.0.0.1:0
store: {{url: "{url}"}}
probes:
  - name: web
    kind: http
    interval: 1s
    timeout: 1s
    options: {{url: "{target}/health"}}
"""


async def _until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        await asyncio.sleep(0.05)


@dataclass
class Running:
    """A daemon serving in a task."""

    daemon: Daemon
    task: asyncio.Task[int]
    registry: CollectorRegistry

    @property
    def url(self) -> str:
        assert self.daemon.server is not None
        return f"http://127.0.0.1:{self.daemon.server.port}"

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def runs(self, status: Status) -> float:
        return self.sample("synthmon_probe_runs_total", probe="web", status=status.value)


@pytest.fixture
def target() -> Iterator[Target]:
    """A loopback HTTP target for the ``web`` probe."""
    server = Target().start()
    yield server
    server.stop()


@pytest.fixture
async def daemons() -> AsyncIterator[list[Running]]:
    """Stops every daemon a test started, even when it fails."""
    started: list[Running] = []
    yield started
    for r in started:
        r.daemon.request_stop()
        await asyncio.wait_for(r.task, 30)


async def _start(store_url: str, target: Target, daemons: list[Running]) -> Running:
    config = parse_config(CONFIG.format(url=store_url, target=target.url), env={})
    registry = CollectorRegistry()
    daemon = build_monitor(
        config, registry=registry, clock=SystemClock(), logger=structlog.get_logger("test"), grace_s=2.0
    )
    task = asyncio.create_task(daemon.serve(install_signals=False))
    running = Running(daemon, task, registry)
    daemons.append(running)
    await _until(lambda: daemon.server is not None and daemon.server.started, "the HTTP server")
    return running


async def _probing_goes_on(r: Running, status: Status, runs: int = 3) -> None:
    """``runs`` more runs are counted, and /metrics answers promptly, while the store is in trouble."""
    before = r.runs(status)
    await _until(lambda: r.runs(status) >= before + runs, f"{runs} more {status.value} runs", timeout_s=8.0)
    async with httpx.AsyncClient(timeout=2.0) as client:
        metrics = await client.get(f"{r.url}/metrics")
    assert metrics.status_code == 200
    assert "synthmon_probe_runs_total" in metrics.text


async def test_locked_sqlite_store_does_not_stop_probing(
    tmp_path: Path, target: Target, daemons: list[Running]
) -> None:
    """With the SQLite store held by another writer, runs go on at their interval; the history catches up."""
    db = tmp_path / "d.db"
    r = await _start(f"sqlite:///{db}", target, daemons)
    await _until(lambda: r.runs(Status.PASS) >= 1, "a first run")
    locker = sqlite3.connect(db, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        await _probing_goes_on(r, Status.PASS)
        assert r.sample("synthmon_history_buffer_depth") >= 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    store = FullStore.open(f"sqlite:///{db}")
    try:
        await _until(
            lambda: len(store.runs(probe="web", since=T0, limit=1000)) >= r.runs(Status.PASS) - 1,
            "the buffered runs in the store",
        )
    finally:
        store.close()


class TcpForwarder:
    """A loopback TCP proxy to a real server; ``mode`` is "down" (connections closed at once),
    "up" (forwarded) or "hung" (accepted and read, never forwarded or answered)."""

    def __init__(self, host: str, port: int) -> None:
        self.mode = "down"
        self._target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _keep(self, *socks: socket.socket) -> None:
        with self._lock:
            self._sockets.extend(socks)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            if self.mode == "down":
                client.close()
                continue
            self._keep(client)
            if self.mode == "hung":
                threading.Thread(target=self._pump, args=(client, None), daemon=True).start()
                continue
            upstream = socket.create_connection(self._target)
            self._keep(upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                break
            if dst is None or self.mode == "hung":
                continue  # swallowed: the peer waits for an answer that never comes
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            if s is not None:
                s.close()

    def close(self) -> None:
        """Stop listening and drop every connection (unblocks whoever waits on one).

        Each socket is shut down before it is closed: a close alone, while a pump thread is
        blocked reading it, sends no FIN, and a PostgreSQL backend whose transaction the "hung"
        mode cut off would then sit idle in it for ever, holding its locks (the schema's DROP at
        the end of the test waited on them)."""
        self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@pytest.mark.postgres
@pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON)
async def test_postgres_down_at_start_then_back_then_hung(target: Target, daemons: list[Running]) -> None:
    """PostgreSQL unreachable at start-up: the daemon starts and probes anyway, buffering; once the
    database answers, the store is migrated, the buffered runs are written and the incident they
    make is opened (in order, from the first failure); a hung connection later stops nothing."""
    assert PG_URL is not None
    with pg_schema_url(PG_URL) as url:
        parsed = make_url(url)
        forwarder = TcpForwarder(parsed.host or "127.0.0.1", parsed.port or 5432)
        try:
            via = parsed.set(host="127.0.0.1", port=forwarder.port).render_as_string(hide_password=False)
            target.mode = "error"  # the platform is failing during the database outage
            started = time.monotonic()
            r = await _start(via, target, daemons)
            assert time.monotonic() - started < 5
            await _probing_goes_on(r, Status.FAIL)
            assert r.sample("synthmon_store_ready") == 0
            assert r.sample("synthmon_history_buffer_depth") >= 3
            assert r.sample("synthmon_incident_buffer_depth") >= 3
            async with httpx.AsyncClient(timeout=2.0) as client:
                store_status = await client.get(f"{r.url}/api/v1/store")
            assert store_status.status_code == 503
            assert store_status.json()["ready"] is False

            forwarder.mode = "up"
            await _until(lambda: r.sample("synthmon_store_ready") == 1, "the store to open", timeout_s=30)
            await _until(
                lambda: (
                    r.sample("synthmon_history_buffer_depth") == 0
                    and r.sample("synthmon_incident_buffer_depth") == 0
                ),
                "the buffers to drain",
            )
            engine = sa.create_engine(url)
            with engine.connect() as conn:
                first_run = conn.execute(sa.text("SELECT min(started_at) FROM runs")).scalar_one()
                opened = conn.execute(sa.text("SELECT probe, opened_at, resolved_at FROM incidents")).one()
                kinds = conn.execute(sa.text("SELECT kind FROM outbox")).scalars().all()
            engine.dispose()
            assert opened.probe == "web"
            assert opened.resolved_at is None
            assert opened.opened_at >= first_run
            assert kinds == ["opened"]  # one page for one outage, on the log channel

            forwarder.mode = "hung"
            await _probing_goes_on(r, Status.FAIL)
            stopping = time.monotonic()
            r.daemon.request_stop()
            assert await asyncio.wait_for(r.task, 30) == 0
            # grace 2 s + the bounded shutdown flush (3 s) + slack: a hung store cannot hold the exit.
            assert time.monotonic() - stopping < 10
            daemons.remove(r)
        finally:
            forwarder.close()


@pytest.mark.postgres
@pytest.mark.skipif(PG_URL is None, reason=PG_SKIP_REASON)
def test_postgres_lock_wait_fails_fast_instead_of_hanging() -> None:
    """With ``runs`` held under ACCESS EXCLUSIVE by another session, a write fails after the lock
    timeout instead of blocking its thread for ever."""
    assert PG_URL is not None
    with pg_schema_url(PG_URL) as url:
        store = FullStore.open(url)
        holder = sa.create_engine(url)
        try:
            with holder.connect() as conn, conn.begin():
                conn.execute(sa.text("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE"))
                started = time.monotonic()
                with pytest.raises(OperationalError):
                    store.append_runs([result("auth", Status.PASS, T0)])
                assert time.monotonic() - started < 9  # lock_timeout is 5 s
            assert store.append_runs([result("auth", Status.PASS, T0)]) == 1
        finally:
            holder.dispose()
            store.close()
