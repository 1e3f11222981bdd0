"""alb_health's certificate steps against a real TLS server on loopback (generated certificates)."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from probes_helpers import make_ctx

from probes.alb_health import AlbCheck, AlbHealthOptions, AlbHealthProbe
from probes.base import CERT_EXPIRY_MEASUREMENT, Status


def _write_cert(directory: Path, days_valid: float) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 valid for ``days_valid`` more days, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "synthmon-test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days_valid))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


async def _serve_tls(cert: Path, key: Path) -> asyncio.Server:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)


@pytest.fixture
async def tls_server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, Path]]:
    """A TLS listener on a free port whose certificate expires in ``request.param`` days."""
    cert, key = _write_cert(tmp_path, request.param)
    server = await _serve_tls(cert, key)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, cert
    finally:
        server.close()
        await server.wait_closed()


async def _cert_step(port: int, ca_file: Path | None) -> tuple[Status, str | None, float | None]:
    options = AlbHealthOptions(
        auth_url=f"https://127.0.0.1:{port}",
        registry_url="http://127.0.0.1:9",
        # One check on a closed loopback port (fails fast): only the certificate step matters here.
        checks=(AlbCheck(name="closed", url="http://127.0.0.1:9/"),),
        ca_file=str(ca_file) if ca_file else None,
    )
    ctx = make_ctx(None, timeout_s=10)
    async with ctx.http:
        steps = {s.name: s for s in await AlbHealthProbe("alb", options).run(ctx)}
    step = steps["cert_auth"]
    assert "cert_registry" not in steps  # plain http target: no certificate step
    return step.status, step.error_class, step.measurements.get("cert_days_left")


@pytest.mark.parametrize("tls_server", [60.0], indirect=True)
async def test_certificate_far_from_expiry_passes(tls_server: tuple[int, Path]) -> None:
    """A trusted certificate with 60 days left passes and reports about 60 days."""
    port, cert = tls_server
    status, _, days = await _cert_step(port, cert)
    assert status is Status.PASS
    assert days is not None
    assert 59 < days <= 60


@pytest.mark.parametrize("tls_server", [30.0], indirect=True)
async def test_certificate_step_reports_the_absolute_expiry_time(tls_server: tuple[int, Path]) -> None:
    """The cert step also reports notAfter as unix seconds, agreeing with its days left."""
    port, cert = tls_server
    options = AlbHealthOptions(
        auth_url=f"https://127.0.0.1:{port}",
        registry_url="http://127.0.0.1:9",
        checks=(AlbCheck(name="closed", url="http://127.0.0.1:9/"),),
        ca_file=str(cert),
    )
    ctx = make_ctx(None, timeout_s=10)
    async with ctx.http:
        steps = {s.name: s for s in await AlbHealthProbe("alb", options).run(ctx)}
    measured = steps["cert_auth"].measurements
    expiry = measured[CERT_EXPIRY_MEASUREMENT]
    left_s = expiry - ctx.clock.now().timestamp()
    assert 29 * 86400 < left_s <= 30 * 86400
    assert abs(left_s / 86400 - measured["cert_days_left"]) < 0.01


@pytest.mark.parametrize("tls_server", [5.0], indirect=True)
async def test_certificate_close_to_expiry_is_degraded(tls_server: tuple[int, Path]) -> None:
    """A certificate expiring within cert_warning_days (14) makes the step DEGRADED."""
    port, cert = tls_server
    status, error_class, days = await _cert_step(port, cert)
    assert (status, error_class) == (Status.DEGRADED, "cert_expiring")
    assert days is not None
    assert 4 < days <= 5


@pytest.mark.parametrize("tls_server", [60.0], indirect=True)
async def test_untrusted_certificate_fails_with_tls_error(tls_server: tuple[int, Path]) -> None:
    """A certificate the monitor does not trust is a FAIL tls_error, not an exception."""
    port, _ = tls_server
    status, error_class, _ = await _cert_step(port, None)
    assert (status, error_class) == (Status.FAIL, "tls_error")
