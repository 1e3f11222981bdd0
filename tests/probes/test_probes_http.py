"""The generic ``http`` probe kind against a real HTTP server on loopback, through the runner."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import httpx

from monitor.runner import Runner
from probes.base import Status, SystemClock
from probes.support.httpstep import http_step
from tests.core.conftest import FAKE_KEY, Captured, config_from
from tests.core.target import Target


def _runner(text: str, captured: Captured) -> Runner:
    return Runner(config_from(text), clock=SystemClock(), logger=captured.logger, masker=captured.masker)


def _one(options: str, extra: str = "", timeout: str = "2s") -> str:
    return (
        "environment: test\nsecrets:\n  api_key: ${KEY}\nprobes:\n"
        f"  - name: p\n    kind: http\n    interval: 10s\n    timeout: {timeout}\n"
        f"{extra}    options: {options}\n"
    )


async def test_http_probe_passes_with_bearer_and_timing(target: Target, captured: Captured) -> None:
    """The http kind sends the bearer secret, checks JSON, and records timing phases."""
    options = f"{{url: '{target.url}/health', bearer_secret: api_key, json_equals: {{status: healthy}}}}"
    result = await _runner(_one(options), captured).run("p")
    step = result.steps[0]
    assert (result.status, step.http_status, step.path) == (Status.PASS, 200, "/health")
    assert step.timing is not None
    assert {"connect", "ttfb", "total"} <= set(step.timing.phases())
    assert target.requests[-1][1]["Authorization"] == f"Bearer {FAKE_KEY}"
    assert FAKE_KEY not in captured.text


class _LateStartClock:
    """Monotonic time that reads 10 s early for its first two readings (taken before the request
    goes out), as if the event loop had stalled the step before its first byte was sent."""

    def __init__(self) -> None:
        self.readings = 0

    def monotonic(self) -> float:
        self.readings += 1
        return time.monotonic() - (10.0 if self.readings <= 2 else 0.0)


async def test_http_step_reports_the_transports_own_time(target: Target) -> None:
    """A step's duration runs from the first transport event to the last body byte (time before
    the request went out is not billed to the platform), and its phases share that origin."""
    async with httpx.AsyncClient() as client:
        ctx = SimpleNamespace(clock=_LateStartClock(), http=client, remaining=lambda: 5.0)
        step = (await http_step(ctx, "health", "GET", f"{target.url}/health")).step
    assert step.status is Status.PASS
    assert step.timing is not None
    assert step.timing.connect_s is not None
    assert step.timing.ttfb_s is not None
    assert 0 < step.timing.connect_s <= step.timing.ttfb_s <= step.duration_s < 5.0
    assert step.timing.total_s == step.duration_s


async def test_http_probe_fails_on_500_with_config_diagnosis(target: Target, captured: Captured) -> None:
    """A 500 is a FAIL with error_class http_status, diagnosed by a config-supplied signature."""
    target.mode = "error"
    text = _one(f"{{url: '{target.url}/health'}}") + (
        "diagnosis:\n  - {cause: test target is broken, hint: fix it, http_status: 500, probe: p}\n"
    )
    result = await _runner(text, captured).run("p")
    step = result.steps[0]
    assert (result.status, step.error_class, step.http_status) == (Status.FAIL, "http_status", 500)
    assert step.diagnosis is not None
    assert step.diagnosis.cause == "test target is broken"
    finished = [json.loads(line) for line in captured.text.splitlines() if '"probe.finished"' in line]
    assert finished[-1]["status"] == "FAIL"
    assert finished[-1]["failing_step"] == "request"


async def test_http_probe_body_mismatch_and_slow_step(target: Target, captured: Captured) -> None:
    """A JSON value that differs is body_mismatch; a slow answer within timeout is DEGRADED by budget."""
    mismatch = _one(f"{{url: '{target.url}/', json_equals: {{status: ok}}}}")
    result = await _runner(mismatch, captured).run("p")
    assert (result.status, result.steps[0].error_class) == (Status.FAIL, "body_mismatch")
    target.mode, target.delay_s = "slow", 0.15
    slow = _one(f"{{url: '{target.url}/', latency_budget: 50ms}}", timeout="3s")
    result = await _runner(slow, captured).run("p")
    assert (result.status, result.steps[0].error_class) == (Status.DEGRADED, "slow")


async def test_http_probe_timeout_is_a_fail_not_an_error(target: Target, captured: Captured) -> None:
    """A target that never answers is reported by the probe (FAIL, read_timeout) before the hard cut."""
    target.mode = "hang"
    result = await _runner(_one(f"{{url: '{target.url}/'}}", timeout="1s"), captured).run("p")
    assert result.status is Status.FAIL
    assert result.steps[0].error_class == "read_timeout"


async def test_http_probe_secret_header_and_post_body(target: Target, captured: Captured) -> None:
    """secret_headers sends a secret under any header; json_body and method are honoured."""
    options = (
        f"{{url: '{target.url}/v', method: POST, secret_headers: {{X-API-Key: api_key}}, "
        "json_body: {service_id: platform}, expected_status: [200, 201]}"
    )
    result = await _runner(_one(options), captured).run("p")
    assert result.status is Status.PASS
    path, headers = target.requests[-1]
    assert path == "/v"
    assert headers["X-API-Key"] == FAKE_KEY
    assert "Authorization" not in headers


async def test_http_probe_body_regex(target: Target, captured: Captured) -> None:
    """body_regex passes when it matches and fails with body_mismatch when it does not."""
    ok = await _runner(_one(f"{{url: '{target.url}/', body_regex: 'heal+thy'}}"), captured).run("p")
    assert ok.status is Status.PASS
    bad = await _runner(_one(f"{{url: '{target.url}/', body_regex: '^degraded'}}"), captured).run("p")
    assert (bad.status, bad.steps[0].error_class) == (Status.FAIL, "body_mismatch")
