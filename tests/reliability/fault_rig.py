"""The fault matrix's rig: one `synthmon run` daemon against the sandbox platform and a fake Slack, and
the switches and gauges around it.

- :class:`SlackFront` serves the fake Slack API (``tests.alerting.fakeslack``) and records every answer,
  so a test counts the messages Slack *accepted*; it can also hang (accept, read, never answer) or
  refuse connections (nothing listening) on the same port.
- :class:`Gate` is a loopback target whose request a test can hold open: a run known to be in flight.
- :class:`TcpProxy` sits between the daemon and PostgreSQL; stopping it makes the database unreachable.
- :class:`Rig` starts, kills and restarts daemon generations on one config and reads what they did:
  JSON log records since a :class:`Mark`, /metrics, and the store's outbox, incidents and runs.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from sandbox.core import Sandbox
from tests.alerting.alerting_e2e_daemon import DaemonProcess, free_port, start_daemon, wait_for
from tests.alerting.fakeslack import TOKEN, FakeSlack, _handler

#: Every probe of the rig's config, and the statuses that count as good (no page on DEGRADED).
PROBES = ("alb_health", "auth", "mlflow_api", "artifact_roundtrip", "gate")
GOOD = ("PASS", "DEGRADED")

#: Short intervals and thresholds of 2 so a fault pages, and clears, within seconds. Every run's
#: timeout is generous: a loaded machine must not turn a fault under test into a timeout.
CONFIG = """\
environment: fault-matrix
listen: 127.0.0.1:{port}
store:
  url: ${{SYNTHMON_STORE_URL}}
alerting:
  rules: {{failure_threshold: 2, success_threshold: 2, reminder_interval: 0}}
  slack:
    bot_token: ${{SLACK_BOT_TOKEN}}
    channel: "#fault-matrix"
    api_url: ${{SLACK_API_URL}}
    timeout_s: 2
  outbox: {{dispatch_interval: 0.5, backoff_base: 1, backoff_max: 2, lease: 30}}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - name: alb_health
    kind: alb_health
    interval: 1s
    timeout: 10s
    allow_timeout_over_interval: true
    options:
      auth_url: ${{AUTH_URL}}
      registry_url: ${{REGISTRY_URL}}
      checks:
        - {{name: auth_health, target: auth, path: /health}}
        - {{name: registry_health, target: registry, path: /health}}
  - name: auth
    kind: auth
    interval: 1s
    timeout: 10s
    allow_timeout_over_interval: true
    depends_on: [alb_health]
    options:
      auth_url: ${{AUTH_URL}}
      service_id: platform
      required_scopes: [read, write]
  - name: mlflow_api
    kind: mlflow_api
    interval: 1s
    timeout: 15s
    allow_timeout_over_interval: true
    depends_on: [auth, alb_health]
    options:
      registry_url: ${{REGISTRY_URL}}
      client_search: false
      step_latency_budget_s: 1s
  - name: artifact_roundtrip
    kind: artifact_roundtrip
    interval: 1s
    timeout: 20s
    allow_timeout_over_interval: true
    depends_on: [auth, mlflow_api]
    options:
      registry_url: ${{REGISTRY_URL}}
      prefix: synthmon-fault-matrix
      payload_bytes: 1024
      step_latency_budget_s: 1s
  - name: gate
    kind: http
    interval: 1s
    timeout: 30s
    allow_timeout_over_interval: true
    options:
      url: {gate}/ok
"""


@dataclass(frozen=True)
class Exchange:
    """One request to the fake Slack and what it answered."""

    path: str
    body: dict[str, Any]
    status: int
    answer: Any

    @property
    def accepted(self) -> bool:
        """Slack took the call (HTTP 200 and ``ok: true``)."""
        return self.status == 200 and isinstance(self.answer, dict) and self.answer.get("ok") is True

    @property
    def is_post(self) -> bool:
        """A ``chat.postMessage``: every delivered event ends in exactly one accepted post."""
        return self.path.endswith("chat.postMessage")


class SlackFront:
    """The fake Slack on its own server: answers recorded, and able to hang or refuse (see module doc)."""

    def __init__(self) -> None:
        self.state = FakeSlack()
        self.exchanges: list[Exchange] = []
        self.hanging = False
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._handler = self._make_handler()
        self.port = 0
        self.listen()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        front = self
        base: Any = _handler(self.state)

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_POST(self) -> None:
                if front.hanging:
                    # The request never reaches "Slack": read it, hold the connection, never answer.
                    self.rfile.read(int(self.headers.get("Content-Length") or 0))
                    front._release.wait(60)
                    self.close_connection = True
                    return
                super().do_POST()

            def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
                # The daemon sends one request at a time, so the newest recorded request is this one.
                with front.state.lock:
                    request = front.state.requests[-1]
                    front.exchanges.append(Exchange(request.path, request.body, status, body))
                super()._reply(status, body, headers)

        return Handler

    def listen(self) -> None:
        """(Re)start serving, on the same port after :meth:`refuse`."""
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server

    def refuse(self) -> None:
        """Stop listening: every connection is refused until :meth:`restore`."""
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def hang(self) -> None:
        """Accept and read every request, answer none, until :meth:`restore`."""
        self._release.clear()
        self.hanging = True

    def restore(self) -> None:
        """Back to answering as Slack does."""
        self.hanging = False
        self._release.set()
        if self._server is None:
            self.listen()

    def close(self) -> None:
        self.restore()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def since(self, index: int) -> list[Exchange]:
        """Exchanges recorded after the first ``index``."""
        with self.state.lock:
            return list(self.exchanges[index:])


class Gate:
    """A loopback target answering 200 at once -- or, while held, only when released."""

    def __init__(self) -> None:
        self.held = False
        self.arrived = threading.Event()
        self._release = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if gate.held:
                    gate.arrived.set()
                    gate._release.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def hold(self) -> None:
        """Hold the next requests open until :meth:`release`."""
        self._release.clear()
        self.arrived.clear()
        self.held = True

    def release(self) -> None:
        self.held = False
        self._release.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


class TcpProxy:
    """A loopback TCP proxy to ``host:port``. :meth:`stop` closes the listener and every connection
    (the database is unreachable: connections refused); :meth:`start` listens on the same port again."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.start()

    def start(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            if self._listener is not listener:
                # Stopped while this thread sat in accept(): closing a listening socket does not
                # always wake a blocked accept() on Linux, which then takes one more connection.
                client.close()
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue  # the database itself is gone: refuse this one
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            s.close()

    def stop(self) -> None:
        """Refuse new connections and drop every open one."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):  # already closed by its pump
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()


@dataclass(frozen=True)
class Mark:
    """A point in the rig's life: wall time, bytes logged per daemon generation, Slack exchanges."""

    at: float
    logged: tuple[int, ...]
    exchanges: int


@dataclass(frozen=True)
class OutboxRow:
    kind: str
    state: str
    attempts: int
    last_error: str | None


class Rig:
    """One daemon generation at a time on one config (see module doc)."""

    def __init__(self, sandbox: Sandbox, workdir: Path) -> None:
        self.sandbox = sandbox
        self.faults = sandbox.faults
        self.workdir = workdir
        self.slack = SlackFront()
        self.gate = Gate()
        self.stack = ExitStack()
        self.config = workdir / "synthmon.yaml"
        self.config.write_text(CONFIG.format(port=free_port(), gate=self.gate.url))
        self.store_url = f"sqlite:///{workdir}/synthmon.db"
        #: Where the test itself reads the store, when not through ``store_url`` (e.g. behind a proxy).
        self.read_url: str | None = None
        self.generations: list[DaemonProcess] = []

    # --- the daemon ---------------------------------------------------------------------------

    @property
    def daemon(self) -> DaemonProcess:
        return self.generations[-1]

    def env(self) -> dict[str, str]:
        env = self.sandbox.env()
        return {
            "AUTH_URL": env["AUTH_URL"],
            "REGISTRY_URL": env["REGISTRY_URL"],
            "SYNTHMON_API_KEY": env["SYNTHMON_API_KEY"],
            "SYNTHMON_STORE_URL": self.store_url,
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_API_URL": self.slack.api_url,
        }

    def start(self) -> DaemonProcess:
        """Start the next generation on the same config and store; wait for /healthz."""
        daemon = start_daemon(self.config, self.env(), self.workdir, f"gen{len(self.generations)}")
        self.generations.append(daemon)
        return daemon

    def close(self) -> None:
        try:
            if self.generations and self.daemon.proc.poll() is None:
                self.daemon.stop()
        finally:
            self.faults.clear_faults()
            self.slack.close()
            self.gate.close()
            self.stack.close()

    # --- reading ------------------------------------------------------------------------------

    def mark(self) -> Mark:
        logged = tuple(g.stderr_path.stat().st_size for g in self.generations)
        with self.slack.state.lock:
            exchanges = len(self.slack.exchanges)
        return Mark(time.time(), logged, exchanges)

    def _logged(self, since: Mark) -> Iterator[bytes]:
        for i, gen in enumerate(self.generations):
            start = since.logged[i] if i < len(since.logged) else 0
            data = gen.stderr_path.read_bytes()[start:]
            yield data[: data.rfind(b"\n") + 1]  # whole lines only: the daemon may be mid-write

    def text(self, since: Mark) -> str:
        """Everything the daemons wrote since ``since`` (stderr, and stdout whole)."""
        out = [g.stdout_path.read_text(errors="replace") for g in self.generations]
        return "".join(chunk.decode(errors="replace") for chunk in self._logged(since)) + "".join(out)

    def records(self, since: Mark, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log records since ``since``, in generation order (only ``event`` if given)."""
        found = []
        for chunk in self._logged(since):
            for line in chunk.splitlines():
                if line.startswith(b"{"):
                    record = json.loads(line)
                    if event is None or record.get("event") == event:
                        found.append(record)
        return found

    def finished(self, since: Mark, probe: str | None = None) -> list[dict[str, Any]]:
        """``probe.finished`` records since ``since`` (one probe's if given)."""
        return [r for r in self.records(since, "probe.finished") if probe in (None, r["probe"])]

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the running daemon's /metrics, or None when absent or not answering."""
        try:
            text = httpx.get(self.daemon.url + "/metrics", timeout=5).text
        except httpx.HTTPError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def _query(self, query: Any) -> list[Any]:
        url = self.read_url or self.store_url
        if url.startswith("sqlite:///"):
            # Read-write, never create: a query must not put a file back where a test deleted one.
            url = f"sqlite:///file:{url.removeprefix('sqlite:///')}?mode=rw&uri=true"
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(query))
        finally:
            engine.dispose()

    def outbox(self, since: Mark | None = None) -> list[OutboxRow]:
        """Outbox rows queued since ``since`` (all without), in queue order."""
        t = sa.table(
            "outbox",
            *(sa.column(c) for c in ("id", "kind", "state", "attempts", "last_error", "created_at")),
        )
        query = (
            sa.select(t.c.kind, t.c.state, t.c.attempts, t.c.last_error)
            .where(t.c.created_at >= (since.at if since else 0))
            .order_by(t.c.id)
        )
        return [OutboxRow(str(k), str(s), int(a), e) for k, s, a, e in self._query(query)]

    def open_incidents(self) -> int:
        t = sa.table("incidents", sa.column("resolved_at"))
        return len(self._query(sa.select(t.c.resolved_at).where(t.c.resolved_at.is_(None))))

    def stored_run_ids(self) -> set[str]:
        t = sa.table("runs", sa.column("run_id"))
        return {str(r[0]) for r in self._query(sa.select(t.c.run_id))}

    # --- waiting ------------------------------------------------------------------------------

    def wait_verdicts(self, since: Mark, verdicts: Mapping[str, tuple[str, str | None]]) -> None:
        """Wait until each probe in ``verdicts`` reported its ``(status, cause)`` since ``since``."""

        def seen() -> bool:
            got = {(r["probe"], r["status"], r.get("cause")) for r in self.finished(since)}
            return all((p, s, c) in got for p, (s, c) in verdicts.items())

        try:
            wait_for(seen, f"verdicts {dict(verdicts)}", timeout_s=60, interval_s=0.25)
        except AssertionError:
            got = sorted({(r["probe"], r["status"], r.get("cause")) for r in self.finished(since)})
            raise AssertionError(f"expected {dict(verdicts)}, the daemon reported {got}") from None

    def wait_runs(self, count: int, probes: tuple[str, ...] = PROBES) -> None:
        """Probing goes on: ``count`` more finished runs of every probe, from now."""
        now = self.mark()
        wait_for(
            lambda: all(len(self.finished(now, p)) >= count for p in probes),
            f"{count} more runs of every probe",
            timeout_s=60,
            interval_s=0.25,
        )

    def wait_outbox(
        self, since: Mark, kind: str, until: Callable[[OutboxRow], bool] = lambda r: r.state != "pending"
    ) -> OutboxRow:
        """Wait until a ``kind`` event queued since ``since`` satisfies ``until`` (default: no longer
        pending, i.e. sent or failed for good); return its row."""

        def row() -> OutboxRow | None:
            try:
                rows = self.outbox(since)
            except sa.exc.OperationalError:
                return None  # the store is held by the fault under test
            return next((r for r in rows if r.kind == kind and until(r)), None)

        found: OutboxRow = wait_for(row, f"the {kind} event", timeout_s=60, interval_s=0.25)
        return found

    def wait_quiet(self, since: Mark) -> None:
        """Healthy and settled: the last two runs of every probe since ``since`` good, no open incident,
        nothing pending in the outbox."""

        def quiet() -> bool:
            for probe in PROBES:
                runs = self.finished(since, probe)
                if len(runs) < 2 or any(r["status"] not in GOOD for r in runs[-2:]):
                    return False
            try:
                # Incidents first: a resolution queues its event in the same transaction, so an
                # outbox read after it sees that event (read the other way round, an incident
                # resolving between the two reads left its event pending after "quiet").
                if self.open_incidents() != 0:
                    return False
                return not [r for r in self.outbox() if r.state == "pending"]
            except sa.exc.OperationalError:
                return False

        wait_for(quiet, "every probe good, no open incident, outbox drained", timeout_s=90, interval_s=0.25)
