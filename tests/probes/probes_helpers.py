"""Shared helpers for the platform-probe tests: a ProbeContext around any httpx transport."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import structlog

from probes.base import ProbeContext, Secrets, SystemClock

#: An obviously fake key of the platform's shape (never a real one in tests).
FAKE_KEY = "hk_test_" + "x" * 32


def generated_key() -> str:
    """A fresh well-formed fake key, for tests that must not see a constant in any output."""
    return "hk_test_" + secrets.token_hex(16)


class FixedClock:
    """Real monotonic time, but a fixed ``now`` (certificate and TTL decisions are testable)."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 7, 1, tzinfo=UTC)
        self._system = SystemClock()

    def monotonic(self) -> float:
        return self._system.monotonic()

    def now(self) -> datetime:
        return self._now


def make_ctx(
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    key: str = FAKE_KEY,
    timeout_s: float = 30.0,
    clock: FixedClock | SystemClock | None = None,
    run_id: str = "testrun",
) -> ProbeContext:
    """A ProbeContext whose client uses ``transport`` (a real network client when None)."""
    clk = clock or SystemClock()
    client = httpx.AsyncClient(transport=transport, timeout=timeout_s)
    return ProbeContext(
        http=client,
        clock=clk,
        secrets=Secrets({"api_key": key}),
        logger=structlog.get_logger("test"),
        run_id=run_id,
        deadline=clk.monotonic() + timeout_s,
    )


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.MockTransport:
    """A MockTransport around ``handler`` (for parsing and edge cases only)."""
    return httpx.MockTransport(handler)


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]
#: The default config the project ships; the sandbox tests run exactly this file.
DEFAULT_CONFIG = REPO / "config.yaml"


def sandbox_env(sandbox_env_vars: dict[str, str], tmp_dir: str) -> dict[str, str]:
    """The environment that points config.yaml at a test sandbox, with a throwaway store."""
    return {
        **sandbox_env_vars,
        "SYNTHMON_STORE_URL": f"sqlite:///{tmp_dir}/synthmon.db",
        "SYNTHMON_ENV": "test",
    }


async def run_config(config: object, names: list[str] | None = None) -> dict[str, object]:
    """Run probes of ``config`` once through the real daemon (runner, isolation, diagnosis)."""
    from prometheus_client import CollectorRegistry

    from monitor.app import build_daemon
    from monitor.config import Config
    from monitor.logs import make_logger
    from probes.support.masking import SecretMasker

    assert isinstance(config, Config)
    masker = SecretMasker(config.secret_values())
    logger = make_logger(masker, json=True, level="error")
    daemon = build_daemon(
        config, registry=CollectorRegistry(), clock=SystemClock(), logger=logger, masker=masker
    )
    results = await daemon.run_once(names or [])
    return {r.probe: r for r in results}
