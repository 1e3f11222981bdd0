"""Protected endpoints: basic auth with bcrypt hashes, TLS, open /healthz, security headers.

Real uvicorn servers on 127.0.0.1:<free port> with a certificate generated per test; the last test
starts the daemon itself (``synthmon run``) with a ``web:`` section and talks HTTPS to it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from monitor.config import parse_config
from monitor.configfile import ConfigError
from monitor.server import BasicAuthChecker, HttpServer, build_app
from monitor.webconfig import TlsServerConfig, WebConfig
from tests.reliability.tls import self_signed

REPO = Path(__file__).resolve().parents[2]
USER = "oncall"
PASSWORD = "correct-" + "horse-" + "battery"
#: Cost 4, bcrypt's minimum: the tests check behaviour, not hashing speed.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


GOOD = _basic(USER, PASSWORD)


async def _page(_request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>status</title><p>ok</p>")


async def _runs(_request: Request) -> JSONResponse:
    return JSONResponse({"runs": []})


def _app(web: WebConfig | None) -> Any:
    """The daemon's app with a status page and an API route like the real ones."""
    return build_app(
        registry=CollectorRegistry(),
        health=lambda: (True, {}),
        ready=lambda: (True, {}),
        extra_routes=[Route("/", _page), Route("/api/v1/runs", _runs)],
        web=web,
    )


async def _serving(server: HttpServer) -> None:
    server.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        await asyncio.sleep(0.01)


@pytest.fixture
async def protected() -> AsyncIterator[str]:
    """A plain-HTTP server requiring the test user everywhere but /healthz and /metrics."""
    server = HttpServer(_app(WebConfig(basic_auth_users={USER: HASH})), "127.0.0.1", 0)
    await _serving(server)
    yield f"http://127.0.0.1:{server.port}"
    await server.stop()


@pytest.mark.parametrize("path", ["/", "/api/v1/runs", "/readyz"])
async def test_protected_paths_answer_401_without_credentials_and_200_with(protected: str, path: str) -> None:
    """The status page, the API and /readyz need the configured user; the right password gets 200."""
    async with httpx.AsyncClient(base_url=protected) as client:
        refused = await client.get(path)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="synthmon", charset="UTF-8"'
        assert (await client.get(path, headers=GOOD)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        _basic(USER, "wrong-password"),
        _basic("intruder", PASSWORD),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer " + PASSWORD},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        _basic(USER, PASSWORD + " "),
        _basic(USER, "x" * 500),
        {"Authorization": "Basic " + base64.b64encode(f"{USER}:".encode() + b"\xff\xfe").decode()},
    ],
    ids=[
        "wrong_password",
        "unknown_user",
        "not_base64",
        "bearer",
        "no_colon",
        "trailing_space",
        "too_long",
        "not_utf8",
    ],
)
async def test_wrong_or_malformed_credentials_are_refused(protected: str, headers: dict[str, str]) -> None:
    """Anything but the exact user and password is a 401 (never a 500)."""
    async with httpx.AsyncClient(base_url=protected) as client:
        assert (await client.get("/", headers=headers)).status_code == 401


async def test_healthz_and_metrics_stay_open(protected: str) -> None:
    """ECS's health check and (by default) the Prometheus scrape need no credentials."""
    async with httpx.AsyncClient(base_url=protected) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


async def test_protect_metrics_puts_metrics_behind_the_same_users() -> None:
    """With protect_metrics, /metrics is 401 without credentials and 200 with; /healthz stays open."""
    server = HttpServer(_app(WebConfig(basic_auth_users={USER: HASH}, protect_metrics=True)), "127.0.0.1", 0)
    await _serving(server)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/metrics")).status_code == 401
            assert (await client.get("/metrics", headers=GOOD)).status_code == 200
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await server.stop()


async def test_every_refusal_costs_one_bcrypt_check_and_only_successes_are_remembered(
    protected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wrong password and unknown user both run bcrypt (no timing tell); a good login is cached."""
    calls: list[bytes] = []
    real: Callable[[bytes, bytes], bool] = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    async with httpx.AsyncClient(base_url=protected) as client:
        for headers in (_basic(USER, "wrong"), _basic(USER, "wrong"), _basic("intruder", "x")):
            assert (await client.get("/", headers=headers)).status_code == 401
        assert len(calls) == 3
        assert set(calls) == {HASH.encode()}  # the unknown user was checked against a real hash
        for _ in range(3):
            assert (await client.get("/", headers=GOOD)).status_code == 200
        assert len(calls) == 4


@pytest.mark.parametrize("web", [None, WebConfig(basic_auth_users={USER: HASH})], ids=["open", "protected"])
async def test_html_answers_carry_security_headers(web: WebConfig | None) -> None:
    """The status page forbids scripts and framing, sniffing and referrers; JSON gets nosniff."""
    server = HttpServer(_app(web), "127.0.0.1", 0)
    await _serving(server)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", headers=GOOD) as client:
            page = await client.get("/")
            api = await client.get("/api/v1/runs")
    finally:
        await server.stop()
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "script-src" not in csp  # default-src 'none' covers scripts: none allowed
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in api.headers


async def test_tls_handshake_with_a_self_signed_certificate(tmp_path: Path) -> None:
    """With tls_server_config the listener speaks TLS: a client trusting the cert gets 200, others fail."""
    cert, key = self_signed(tmp_path)
    tls = TlsServerConfig(cert_file=str(cert), key_file=str(key))
    server = HttpServer(
        _app(WebConfig(tls_server_config=tls, basic_auth_users={USER: HASH})), "127.0.0.1", 0, tls=tls
    )
    await _serving(server)
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{server.port}", verify=trusting) as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            tls_version = health.extensions["network_stream"].get_extra_info("ssl_object").version()
            assert tls_version in ("TLSv1.2", "TLSv1.3")
            assert (await client.get("/")).status_code == 401
            assert (await client.get("/", headers=GOOD)).status_code == 200
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{server.port}") as untrusting:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusting.get("/healthz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get("/healthz")
    finally:
        await server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_daemon_serves_its_web_section(tmp_path: Path) -> None:
    """`synthmon run` with web: TLS and a user: /healthz open over HTTPS, the status page needs the user."""
    cert, key = self_signed(tmp_path)
    port = _free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        "environment: test\n"
        f"listen: 127.0.0.1:{port}\n"
        "store: {url: 'sqlite:///var/synthmon.db'}\n"
        "web:\n"
        f"  tls_server_config: {{cert_file: '{cert}', key_file: '{key}'}}\n"
        f"  basic_auth_users: {{{USER}: '{HASH}'}}\n"
        "probes: []\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run", "--log-format", "json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=trusting, timeout=5) as client:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "daemon did not serve /healthz over TLS"
                time.sleep(0.1)
            assert client.get("/").status_code == 401
            assert client.get("/api/v1/runs").status_code == 401
            page = client.get("/", headers=GOOD)
            assert page.status_code == 200
            assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
            assert client.get("/metrics").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert HASH not in stderr


async def test_a_password_longer_than_bcrypt_reads_is_compared_on_its_first_72_bytes() -> None:
    """htpasswd hashes the first 72 bytes of a long password; the same long password then logs in."""
    long_password = "long-" * 20
    hashed = bcrypt.hashpw(long_password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    checker = BasicAuthChecker({USER: hashed})
    assert await checker.check(USER, long_password)
    assert not await checker.check(USER, long_password[:71])


def test_an_exporter_toolkit_web_config_file_is_read_with_paths_relative_to_it(tmp_path: Path) -> None:
    """web.config_file takes node_exporter's web config: certificate paths resolve next to that file."""
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = self_signed(certs)
    web_file = tmp_path / "web.yml"
    web_file.write_text(
        f"tls_server_config:\n  cert_file: certs/{cert.name}\n  key_file: certs/{key.name}\n"
        f"basic_auth_users:\n  {USER}: '{HASH}'\n"
    )
    config = parse_config(f"environment: t\nweb:\n  config_file: {web_file}\n", env={})
    assert config.web.tls_server_config == TlsServerConfig(cert_file=str(cert), key_file=str(key))
    assert config.web.basic_auth_users[USER].get_secret_value() == HASH
    assert HASH not in str(config.effective())


@pytest.mark.parametrize(
    ("web_file", "inline", "expected"),
    [
        ("http_server_config:\n  http2: false\n", "", r"http_server_config not supported"),
        ("- a\n", "", r"the top level must be a mapping"),
        ("basic_auth_users: {u: x}\nbasic_auth_users: {}\n", "", r"duplicate key 'basic_auth_users'"),
        ("basic_auth_users: {u: plain-password}\n", "", r"web\.basic_auth_users\.u: must be a bcrypt hash"),
        (
            "basic_auth_users: {}\n",
            "  basic_auth_users: {}\n",
            r"give config_file or basic_auth_users, not both",
        ),
        (None, "", r"web\.config_file: .*cannot read config file"),
    ],
    ids=["unsupported_key", "not_a_mapping", "duplicate_key", "plain_password", "both", "missing"],
)
def test_a_bad_web_config_file_is_one_config_error(
    web_file: str | None, inline: str, expected: str, tmp_path: Path
) -> None:
    """Mistakes in the web config file are reported like the main file's, naming web.config_file."""
    path = tmp_path / "web.yml"
    if web_file is not None:
        path.write_text(web_file)
    with pytest.raises(ConfigError, match=expected) as caught:
        parse_config(f"environment: t\nweb:\n  config_file: {path}\n{inline}", source="c.yaml", env={})
    assert "plain-password" not in str(caught.value)


async def test_accepted_connections_send_without_delay() -> None:
    """Connections the server accepts have TCP_NODELAY: a keep-alive client is not left waiting a
    delayed ACK (40 ms on Linux) for every mid-sized answer."""
    server = HttpServer(_app(None), "127.0.0.1", 0)
    await _serving(server)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/api/v1/runs")).status_code == 200
            # The connection is still open (keep-alive): read the option off the server's side.
            connections = list(server._server.server_state.connections)
            assert connections
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        await server.stop()
