"""Unit tests of the sandbox's pure parts: fault names and state, key masking, settings, the key cache."""

from __future__ import annotations

import httpx
import pytest
from starlette.responses import Response

from sandbox.faults import FAULTS, FaultState, UnknownFaultError, validate_fault_names
from sandbox.registry_app import Identity, KeyValidator
from sandbox.settings import Delays, PlatformSettings, SandboxKeys, generate_key, mask_key

KEY = "hk_test_" + "x" * 32


def test_fault_names_are_deduplicated_in_documentation_order() -> None:
    """validate_fault_names keeps the table's order and drops duplicates."""
    assert validate_fault_names(["mlflow-down", "artifacts-404", "mlflow-down"]) == (
        "artifacts-404",
        "mlflow-down",
    )


def test_unknown_fault_names_are_rejected_with_the_known_list() -> None:
    """An unknown name raises, naming it and listing every known fault."""
    with pytest.raises(UnknownFaultError, match="nope") as caught:
        validate_fault_names(["artifacts-404", "nope"])
    assert all(name in str(caught.value) for name in FAULTS)


def test_fault_state_notifies_listeners_and_ignores_invalid_sets() -> None:
    """Every change calls the listeners; an invalid set changes nothing and calls nobody."""
    state = FaultState()
    calls: list[tuple[str, ...]] = []
    state.on_change(lambda: calls.append(state.active))
    state.add("auth-down")
    state.add("rate-limited")
    with pytest.raises(UnknownFaultError):
        state.set(["bogus"])
    assert "auth-down" in state
    state.clear()
    assert calls == [("auth-down",), ("auth-down", "rate-limited"), ()]


def test_runtime_delays_override_the_start_up_ones_until_cleared() -> None:
    """set_delays validates every entry first; delay() falls back to the start-up value; clear forgets."""
    state = FaultState()
    assert state.delay("artifacts_slow_s", 2.0) == 2.0
    assert state.set_delays({"artifacts_slow_s": 0.5}) == {"artifacts_slow_s": 0.5}
    assert state.delay("artifacts_slow_s", 2.0) == 0.5
    for bad, match in (
        ({"s3_slow_s": 1}, "unknown delay"),
        ({"auth_slow_s": -1}, "from 0 to"),
        ({"auth_slow_s": "1"}, "number"),
    ):
        with pytest.raises(ValueError, match=match):
            state.set_delays({"mlflow_slow_s": 1.0, **bad})
    assert state.delays == {"artifacts_slow_s": 0.5}
    state.clear()
    assert state.delays == {}


@pytest.mark.parametrize(
    "delay",
    ["artifacts_slow_s", "artifacts_slow_s=soon", "s3_slow_s=1"],
    ids=["no-value", "not-a-number", "unknown"],
)
def test_sandbox_fault_refuses_a_bad_delay_with_exit_2(
    delay: str, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    """`sandbox fault NAME --delay BAD` is a usage error (exit 2) before any sandbox is looked for."""
    from sandbox.__main__ import main

    assert main(["fault", "artifacts-slow", "--delay", delay, "--workdir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_keys_are_masked_to_prefix_and_last_four() -> None:
    """mask_key shows the test prefix, two characters and the last four, never the whole key."""
    key = generate_key()
    assert mask_key(key) == key[:10] + "..." + key[-4:]
    assert mask_key("hk_test_ab") == "hk_test_..."


def test_settings_survive_the_json_round_trip() -> None:
    """PlatformSettings -> JSON dict -> PlatformSettings is the identity (the child's stdin format)."""
    settings = PlatformSettings(
        workdir="/tmp/w",
        mlflow_url="http://127.0.0.1:1",
        keys=SandboxKeys.generate(),
        admin_token="t",
        delays=Delays(auth_slow_s=0.5),
        faults=("auth-slow",),
        mlflow_pgid=42,
    )
    assert PlatformSettings.from_json_dict(settings.to_json_dict()) == settings


class _FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _validator(handler: httpx.MockTransport, clock: _FakeClock) -> tuple[KeyValidator, httpx.AsyncClient]:
    client = httpx.AsyncClient(transport=handler)
    return KeyValidator(
        client, "http://auth", service_id="platform", timeout_s=1, ttl_s=30, clock=clock
    ), client


async def test_key_validator_caches_successes_until_ttl_or_flush() -> None:
    """A valid key is asked once per TTL; flush() forces the next call to ask again."""
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"is_valid": True, "user_id": "u", "key_id": "k", "is_admin": True})

    clock = _FakeClock()
    validator, client = _validator(httpx.MockTransport(handler), clock)
    async with client:
        assert await validator.validate(KEY) == Identity("u", "k", True)
        assert await validator.validate(KEY) == Identity("u", "k", True)
        assert len(calls) == 1
        assert b'"service_id":"platform"' in calls[0].content
        assert calls[0].headers["authorization"] == f"Bearer {KEY}"
        clock.now += 31
        await validator.validate(KEY)
        validator.flush()
        await validator.validate(KEY)
    assert len(calls) == 3


@pytest.mark.parametrize(
    ("auth_answer", "status", "detail", "retry_after"),
    [
        (
            httpx.Response(401, json={"detail": "API key not found or invalid"}),
            401,
            "Invalid or expired API key",
            None,
        ),
        (
            httpx.Response(429, json={"detail": "Rate limit exceeded"}),
            429,
            "Authentication rate limit exceeded",
            "60",
        ),
        (httpx.Response(503, text="<html>503</html>"), 503, "Authentication service unavailable", "1"),
        (httpx.Response(200, json={"is_valid": False}), 401, "Invalid or expired API key", None),
        (httpx.ReadTimeout("slow"), 503, "Authentication service timeout", "1"),
        (httpx.ConnectError("refused"), 503, "Authentication service unavailable", "1"),
    ],
    ids=["invalid-401", "rate-limited-429", "alb-503", "is-valid-false", "timeout", "connect-error"],
)
async def test_key_validator_maps_auth_answers_to_registry_errors(
    auth_answer: httpx.Response | Exception, status: int, detail: str, retry_after: str | None
) -> None:
    """Auth service answers and transport errors become the contract's registry answers, uncached."""

    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(auth_answer, Exception):
            raise auth_answer
        return auth_answer

    validator, client = _validator(httpx.MockTransport(handler), _FakeClock())
    async with client:
        outcome = await validator.validate(KEY)
    assert isinstance(outcome, Response)
    assert outcome.status_code == status
    assert detail.encode() in outcome.body
    assert outcome.headers.get("retry-after") == retry_after
