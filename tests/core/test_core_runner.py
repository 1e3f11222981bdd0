"""The runner: deadlines, exceptions, subprocess isolation, budgets, diagnosis and masking."""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from monitor.runner import Runner, default_client_factory
from probes.base import Status, SystemClock
from tests.core.conftest import FAKE_KEY, Captured, config_from
from tests.core.target import Target
from tests.reliability.test_reliability_transport import misbehaving_server
from tests.reliability.tls import self_signed


def _runner(text: str, captured: Captured) -> Runner:
    config = config_from(text)
    return Runner(config, clock=SystemClock(), logger=captured.logger, masker=captured.masker)


def _one(kind: str, options: str = "{}", extra: str = "") -> str:
    return (
        "environment: test\nsecrets:\n  api_key: ${KEY}\nprobes:\n"
        f"  - name: p\n    kind: {kind}\n    interval: 10s\n    timeout: 0.5s\n"
        f"{extra}    options: {options}\n"
    )


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie awaiting its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(predicate: object, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


async def test_hanging_probe_is_cut_at_its_deadline(test_kinds: None, captured: Captured) -> None:
    """A probe that never returns becomes an ERROR at its timeout, not a hang of the runner."""
    runner = _runner(_one("t_hang"), captured)
    start = time.monotonic()
    result = await runner.run("p")
    elapsed = time.monotonic() - start
    assert result.status is Status.ERROR
    assert result.steps[0].error_class == "deadline_exceeded"
    assert "exceeded its 0.5s deadline" in result.steps[0].message
    assert 0.45 <= elapsed < 2.0


async def test_exception_becomes_error_with_class_and_masked_message(
    test_kinds: None, captured: Captured
) -> None:
    """An exception is the monitor's fault: ERROR, its class as error_class, secrets masked out."""
    runner = _runner(_one("t_boom", f"{{message: 'cannot use {FAKE_KEY}'}}"), captured)
    result = await runner.run("p")
    step = result.steps[0]
    assert (result.status, step.status, step.error_class) == (Status.ERROR, Status.ERROR, "RuntimeError")
    assert "cannot use **********" in step.message
    assert FAKE_KEY not in json.dumps(result.to_dict())
    assert "about.to.fail" in captured.text
    assert FAKE_KEY not in captured.text


async def test_isolated_probe_killed_at_deadline_leaves_no_process(
    test_kinds: None, captured: Captured, tmp_path: Path
) -> None:
    """A stuck subprocess probe is killed with its whole process group at the deadline."""
    pid_file = tmp_path / "pids"
    text = _one("t_iso_hang", f"{{pid_file: '{pid_file}'}}").replace("timeout: 0.5s", "timeout: 3s")
    runner = _runner(text, captured)
    result = await runner.run("p")
    assert result.status is Status.ERROR
    assert result.steps[0].error_class == "deadline_exceeded"
    assert "subprocess killed" in result.steps[0].message
    child, grandchild = (int(p) for p in pid_file.read_text().split())
    assert _wait_for(lambda: _gone(child) and _gone(grandchild)), "a probe process survived its deadline"


async def test_isolated_probe_returns_steps_and_masks_its_output(
    test_kinds: None, captured: Captured
) -> None:
    """A subprocess probe gets the secret on stdin, its steps come back, and secrets are masked."""
    text = _one("t_iso_echo").replace("timeout: 0.5s", "timeout: 8s")
    runner = _runner(text, captured)
    result = await runner.run("p")
    step = result.steps[0]
    assert (step.name, step.status, step.http_status) == ("echo", Status.FAIL, 500)
    assert step.measurements == {"answer": 42.0}
    assert step.message.startswith("saw key ********** in pid")
    assert "child stderr mentions **********" in captured.text
    assert FAKE_KEY not in captured.text + json.dumps(result.to_dict())


async def test_latency_budget_turns_pass_into_degraded(test_kinds: None, captured: Captured) -> None:
    """A passing run slower than latency_budget is DEGRADED, its steps stay PASS."""
    text = _one("t_sleep", "{sleep_s: 0.2}", "    latency_budget: 50ms\n")
    result = await _runner(text, captured).run("p")
    assert result.status is Status.DEGRADED
    assert [s.status for s in result.steps] == [Status.PASS]


@pytest.mark.parametrize("kind", ["http", "t_hang"])
async def test_result_carries_identity_and_timing(
    kind: str, test_kinds: None, target: Target, captured: Captured
) -> None:
    """Every result has the probe, kind, environment, a hex run id and an aware start time."""
    result = await _runner(_one(kind, f"{{url: '{target.url}/'}}" if kind == "http" else "{}"), captured).run(
        "p"
    )
    assert (result.probe, result.kind, result.environment) == ("p", kind, "test")
    assert len(result.run_id) == 32
    assert int(result.run_id, 16) >= 0
    assert result.started_at.tzinfo is not None
    assert result.duration_s > 0


async def test_finished_log_line_carries_the_diagnosis(target: Target, captured: Captured) -> None:
    """The probe.finished line names the failing step, its HTTP status and the diagnosed cause."""
    target.mode = "error"
    extra = "diagnosis:\n  - {cause: test target is broken, hint: fix it, http_status: 500}\n"
    result = await _runner(_one("http", f"{{url: '{target.url}/'}}") + extra, captured).run("p")
    assert result.status is Status.FAIL
    lines = [json.loads(line) for line in captured.text.splitlines()]
    finished = next(line for line in lines if line["event"] == "probe.finished")
    assert finished["failing_step"] == "request"
    assert finished["http_status"] == 500
    assert finished["cause"] == "test target is broken"


async def test_http_probe_through_the_daemons_client_reports_wire_phases(
    target: Target, captured: Captured
) -> None:
    """A real http probe through the default client factory: PASS with connect and first-byte phases."""
    result = await _runner(_one("http", f"{{url: '{target.url}/'}}"), captured).run("p")
    assert result.status is Status.PASS
    step = result.steps[0]
    assert step.timing is not None
    assert step.timing.connect_s is not None
    assert step.timing.ttfb_s is not None
    assert step.timing.ttfb_s <= step.duration_s


def _proxy_answering(target_line: bytes) -> Callable[[socket.socket], None]:
    """A proxy that answers 200 only to the absolute-form request line a client sends a proxy."""

    def behave(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        status = b"200 OK" if data.startswith(target_line) else b"400 Bad Request"
        conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    return behave


async def test_default_client_goes_through_the_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP_PROXY set: the daemon's client sends the request to the proxy, in absolute form."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    with misbehaving_server(_proxy_answering(b"GET http://registry.invalid/health ")) as port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
        async with default_client_factory()(5.0) as client:
            response = await client.get("http://registry.invalid/health")
    assert response.status_code == 200


def _tls_answering(tmp_path: Path, name: str) -> tuple[Path, Callable[[socket.socket], None]]:
    """A self-signed certificate and a server behaviour answering 200 over TLS with it."""
    cert, key = self_signed(tmp_path, name)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    def behave(conn: socket.socket) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):
            tls = server_ctx.wrap_socket(conn, server_side=True)
            tls.recv(65536)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    return cert, behave


@dataclass
class TlsBuilds:
    """How many default TLS contexts were built; each trusts ``cafile`` (a test's own CA)."""

    cafile: str = ""
    count: int = 0


@pytest.fixture
def tls_builds(monkeypatch: pytest.MonkeyPatch) -> TlsBuilds:
    """Counts the default TLS contexts built from now on (the daemon's client builds its own)."""
    builds = TlsBuilds()
    real = ssl.create_default_context

    def counting() -> ssl.SSLContext:
        builds.count += 1
        return real(cafile=builds.cafile)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return builds


async def test_default_client_builds_no_tls_context_for_plain_http(tls_builds: TlsBuilds) -> None:
    """Plain-HTTP requests never build the TLS context (its CA store would stay in memory for good)."""
    with misbehaving_server(_proxy_answering(b"GET /health ")) as port:
        async with default_client_factory()(5.0) as client:
            response = await client.get(f"http://127.0.0.1:{port}/health")
    assert response.status_code == 200
    assert tls_builds.count == 0


async def test_default_client_builds_one_verifying_tls_context_at_the_first_https_request(
    tmp_path: Path, tls_builds: TlsBuilds
) -> None:
    """The first https request builds the TLS context, later ones share it, and it verifies certificates."""
    trusted, behave_trusted = _tls_answering(tmp_path, "trusted")
    _, behave_other = _tls_answering(tmp_path, "other")
    tls_builds.cafile = str(trusted)
    factory = default_client_factory()
    with misbehaving_server(behave_trusted) as port:
        async with factory(5.0) as client:
            response = await client.get(f"https://127.0.0.1:{port}/")
    assert response.status_code == 200
    with misbehaving_server(behave_other) as port:
        async with factory(5.0) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://127.0.0.1:{port}/")
    assert tls_builds.count == 1
