"""Helpers for the alerting end-to-end tests: `synthmon run` as a real subprocess, polled over HTTP.

A :class:`DaemonProcess` is one daemon started from a written config, with its stdout and stderr in
files (scanned for secrets afterwards), stopped with SIGTERM (graceful) at the end of the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    """A loopback port that was free a moment ago (the daemon's config needs a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(probe: Callable[[], T | None], what: str, timeout_s: float = 60.0, interval_s: float = 0.1) -> T:
    """Poll ``probe`` until it returns something truthy, or fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g}s waiting for {what}"
        time.sleep(interval_s)


def write_config(
    path: Path, *, port: int, artifact_interval_s: float = 2.0, alerting_extra: str = ""
) -> Path:
    """A daemon config: auth + artifact_roundtrip on short intervals, thresholds 2/2, Slack by bot token.

    Every target, secret and the store URL come from the environment, as in the shipped config.yaml.
    ``alerting_extra`` is YAML added to the ``alerting:`` section (indented by two spaces).
    """
    path.write_text(
        f"""\
environment: e2e-alerting
listen: 127.0.0.1:{port}
store:
  url: ${{SYNTHMON_STORE_URL}}
alerting:
  rules: {{failure_threshold: 2, success_threshold: 2, reminder_interval: 0}}
  slack:
    bot_token: ${{SLACK_BOT_TOKEN}}
    channel: ${{SLACK_CHANNEL}}
    api_url: ${{SLACK_API_URL}}
  outbox: {{dispatch_interval: 0.5, backoff_base: 1, backoff_max: 5, lease: 60}}
{alerting_extra}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - name: auth
    kind: auth
    interval: 3s
    timeout: 3s
    options:
      auth_url: ${{AUTH_URL}}
      service_id: platform
      required_scopes: [read, write]
  - name: artifact_roundtrip
    kind: artifact_roundtrip
    interval: {artifact_interval_s}s
    # A loaded 2-core machine can be slow; a timeout would be a different failure, so be generous.
    timeout: 20s
    allow_timeout_over_interval: true
    depends_on: [auth]
    options:
      registry_url: ${{REGISTRY_URL}}
      prefix: synthmon-e2e
      payload_bytes: 4096
"""
    )
    return path


@dataclass
class DaemonProcess:
    """A running `synthmon run` subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    stdout_path: Path
    stderr_path: Path

    @property
    def url(self) -> str:
        """The daemon's HTTP base URL."""
        return f"http://127.0.0.1:{self.port}"

    def get_json(self, path: str) -> Any:
        """GET ``path`` as JSON, or None while the daemon is not answering."""
        try:
            resp = httpx.get(self.url + path, timeout=5)
        except httpx.HTTPError:
            return None
        return resp.json() if resp.status_code == 200 else None

    def runs(self, probe: str) -> list[dict[str, Any]]:
        """The probe's stored runs, newest first (empty while the daemon is not answering)."""
        body = self.get_json(f"/api/v1/runs?probe={probe}&since=1h&limit=1000")
        return list(body["runs"]) if body else []

    def stop(self, timeout_s: float = 40.0) -> int:
        """SIGTERM and wait: the daemon drains and exits (0 when graceful)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise

    def logs(self) -> str:
        """Everything the daemon wrote to stdout and stderr so far."""
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")


def start_daemon(config: Path, env: Mapping[str, str], workdir: Path, name: str) -> DaemonProcess:
    """Start `synthmon run --config CONFIG` with ``env`` and wait until its /healthz answers 200."""
    port = int(config.read_text().split("listen: 127.0.0.1:", 1)[1].split()[0])
    stdout_path = workdir / f"{name}.stdout"
    stderr_path = workdir / f"{name}.stderr"
    with stdout_path.open("ab") as out, stderr_path.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config), "--log-format", "json"],
            cwd=workdir,
            env={**os.environ, **env, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=err,
        )
    daemon = DaemonProcess(proc, port, stdout_path, stderr_path)

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon {name} exited {proc.returncode}:\n{daemon.logs()[-3000:]}")
        try:
            return httpx.get(daemon.url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, f"daemon {name} /healthz", timeout_s=60)
    return daemon


def statuses(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The status of each run, in the order given."""
    return [str(r["status"]) for r in runs]


def dump_tables(url: str) -> str:
    """Every row of every table in the store at ``url``, as one JSON text (for secret scans)."""
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(bind=engine)
        rows: dict[str, list[list[str]]] = {}
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                rows[table.name] = [[str(v) for v in row] for row in conn.execute(sa.select(table))]
        return json.dumps(rows)
    finally:
        engine.dispose()


def assert_no_secret(text: str, secrets: Iterable[str], where: str) -> None:
    """Fail naming ``where`` (never the secret itself) when any of ``secrets`` occurs in ``text``."""
    for i, secret in enumerate(secrets):
        assert secret, "an empty secret would match anything"
        assert secret not in text, f"secret #{i} found in {where}"


def outbox_rows(url: str) -> list[tuple[str, str, str, int]]:
    """``(kind, channel, state, attempts)`` of every outbox row of the store at ``url``, in id order."""
    engine = sa.create_engine(url)
    try:
        table = sa.Table("outbox", sa.MetaData(), autoload_with=engine)
        query = sa.select(table.c.kind, table.c.channel, table.c.state, table.c.attempts).order_by(table.c.id)
        with engine.connect() as conn:
            return [(str(k), str(c), str(s), int(a)) for k, c, s, a in conn.execute(query)]
    finally:
        engine.dispose()


def logged_events(daemon: DaemonProcess, event: str) -> list[dict[str, Any]]:
    """The daemon's JSON log records whose ``event`` is ``event``."""
    records = []
    for line in daemon.stderr_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == event:
                records.append(record)
    return records
