"""The ``alb_health`` kind: ALB vs application 503, the checks summary, the shipped check list."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from probes_helpers import DEFAULT_CONFIG

from monitor.config import load_config
from monitor.results import ProbeResult
from probes.alb_health import DEFAULT_CHECKS, AlbHealthOptions
from probes.base import Status, StepResult
from probes.registry import PROBE_KINDS
from probes.support.platform import classify_503
from tests.core.target import Target


def _step(**kw: object) -> StepResult:
    base: dict[str, object] = {"name": "s", "status": Status.FAIL}
    base.update(kw)
    return StepResult(**base)  # type: ignore[arg-type]


# --- alb_health -------------------------------------------------------------------------------


def test_alb_html_503_is_told_from_application_503() -> None:
    """An HTML 503 is the ALB's (alb_503); a JSON 503 is the application's and keeps http_status."""
    base = StepResult(name="x", status=Status.FAIL, http_status=503, error_class="http_status", message="m")
    alb = classify_503(
        base.with_(content_type="text/html", body_excerpt="503 Service Temporarily Unavailable")
    )
    app = classify_503(base.with_(content_type="application/json", body_excerpt='{"status":"unhealthy"}'))
    assert alb.error_class == "alb_503"
    assert "no healthy target" in alb.message
    assert app.error_class == "http_status"
    assert "application 503" in app.message


def test_checks_summary_is_the_runs_own_not_a_step() -> None:
    """Nine passing checks and a failing one: "9/10 passed" on the run, each failure counted once."""
    checks = [StepResult(name=f"c{i}", status=Status.PASS) for i in range(9)]
    checks.append(StepResult(name="registry_health", status=Status.FAIL))
    result = ProbeResult(
        probe="alb_health",
        kind="alb_health",
        run_id="r",
        started_at=datetime(2025, 7, 22, tzinfo=UTC),
        duration_s=0.5,
        status=ProbeResult.status_of(checks),
        steps=tuple(checks),
    )
    assert result.status is Status.FAIL
    assert (result.checks.passed, result.checks.total, result.checks.failing) == (9, 10, ("registry_health",))
    assert result.checks.summary == "9/10 passed; failing: registry_health"
    assert [s.name for s in result.steps if not s.status.ok] == ["registry_health"]
    assert result.to_dict()["checks"] == {
        "passed": 9,
        "failed": 1,
        "skipped": 0,
        "total": 10,
        "failing": ["registry_health"],
        "summary": "9/10 passed; failing: registry_health",
    }
    # Stored runs load as before: the summary is derived, never read back.
    assert ProbeResult.from_dict(result.to_dict()) == result


async def test_probe_returns_only_its_checks(target: Target) -> None:
    """A run against a real server has one step per check and no summary step: one failing check
    fails the run once."""
    from probes_helpers import make_ctx

    from probes.alb_health import AlbHealthProbe

    checks = ({"name": "up"}, {"name": "isolated", "expected": [404]})
    options = AlbHealthOptions(auth_url=target.url, registry_url=target.url, checks=checks)  # type: ignore[arg-type]
    ctx = make_ctx()
    async with ctx.http:
        steps = await AlbHealthProbe("alb", options).run(ctx)
    assert [(s.name, s.status, s.http_status) for s in steps] == [
        ("up", Status.PASS, 200),
        ("isolated", Status.FAIL, 200),
    ]


def test_default_checks_are_the_contracts_ten_and_config_yaml_lists_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The built-in list has the incident's 10 checks, and config.yaml spells out the same list."""
    assert len(DEFAULT_CHECKS) == 10
    config = load_config(DEFAULT_CONFIG, env={"SYNTHMON_API_KEY": "hk_test_" + "x" * 32})
    options = config.probe("alb_health").options
    assert isinstance(options, AlbHealthOptions)
    assert options.checks == DEFAULT_CHECKS
    proxy = next(c for c in DEFAULT_CHECKS if c.name == "mlflow_api_proxy")
    assert proxy.params == {"max_results": "1"}


def test_config_yaml_declares_the_platform_dependency_chain() -> None:
    """The shipped probes depend on what they go through (ALB, auth, proxy/MLflow, artifacts)."""
    config = load_config(DEFAULT_CONFIG, env={"SYNTHMON_API_KEY": "hk_test_" + "x" * 32})
    deps = {p.name: p.depends_on for p in config.probes}
    assert deps == {
        "auth": ["alb_health"],
        "alb_health": [],
        "mlflow_api": ["auth", "alb_health"],
        "artifact_roundtrip": ["auth", "mlflow_api"],
        "registration": ["auth", "mlflow_api", "artifact_roundtrip"],
    }
    assert {p.kind for p in config.probes} <= set(PROBE_KINDS)
    assert PROBE_KINDS["registration"].isolated is True
