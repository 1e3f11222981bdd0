"""Diagnosis: every failure signature of the platform contract maps to its cause."""

from __future__ import annotations

import pytest

from monitor.diagnosis import BUILTIN_SIGNATURES, Signature, diagnose
from probes.base import Diagnosis, Status, StepResult


def _step(**kw: object) -> StepResult:
    base: dict[str, object] = {"name": "s", "status": Status.FAIL}
    base.update(kw)
    return StepResult(**base)  # type: ignore[arg-type]


# --- diagnosis: every row of the contract's section 6 --------------------------------------------

SECTION_6 = {
    "artifact_404": (
        _step(
            http_status=404, path="/api/mlflow/api/2.0/mlflow-artifacts/artifacts/x", body_excerpt="Not Found"
        ),
        "artifact_route_not_deployed",
    ),
    "artifacts_disabled_body": (
        _step(
            http_status=503, body_excerpt='{"detail":"Artifact serving is disabled. Run mlflow server with"}'
        ),
        "artifacts_disabled",
    ),
    "artifacts_disabled_code": (
        _step(http_status=503, body_excerpt='{"error":"ARTIFACTS_DISABLED"}'),
        "artifacts_disabled",
    ),
    "max_results_400": (
        _step(
            http_status=400,
            path="/api/2.0/mlflow/experiments/search",
            body_excerpt="INVALID_PARAMETER_VALUE Invalid value 0 for parameter 'max_results'",
        ),
        "missing_max_results",
    ),
    "alb_html_503": (
        _step(
            http_status=503,
            content_type="text/html",
            body_excerpt="<html>503 Service Temporarily Unavailable",
        ),
        "alb_no_healthy_target",
    ),
    "key_invalid_401": (
        _step(http_status=401, body_excerpt='{"detail":"Invalid or expired API key"}'),
        "api_key_rejected",
    ),
    "auth_error_2025": (
        _step(http_status=401, body_excerpt='{"detail":"Authentication service error"}'),
        "auth_upstream_unavailable",
    ),
    "auth_timeout_2025": (
        _step(http_status=401, body_excerpt='{"detail":"Authentication service timeout"}'),
        "auth_upstream_unavailable",
    ),
    "auth_down_2026": (
        _step(http_status=503, body_excerpt='{"detail":"Authentication service unavailable"}'),
        "auth_upstream_unavailable",
    ),
    "admin_required_403": (
        _step(
            http_status=403,
            body_excerpt='{"detail":"Admin access required","error":"REGISTRY_ADMIN_REQUIRED"}',
        ),
        "registry_admin_required",
    ),
    "invalid_host_403": (_step(http_status=403, body_excerpt="Invalid Host header"), "mlflow_invalid_host"),
    "strip_authorization": (
        _step(http_status=401, body_excerpt='{"detail":"API key required"}'),
        "proxy_strips_authorization",
    ),
    "mlflow_502": (_step(http_status=502), "mlflow_unreachable"),
    "mlflow_504": (_step(http_status=504), "mlflow_timeout"),
    "artifact_put_500": (
        _step(http_status=500, path="/api/mlflow/api/2.0/mlflow-artifacts/artifacts/a.bin"),
        "artifact_store_error",
    ),
}


@pytest.mark.parametrize("case", list(SECTION_6), ids=list(SECTION_6))
def test_contract_section_6_rows_are_diagnosed(case: str) -> None:
    """Each symptom of the contract's failure table maps to its likely cause."""
    step, cause = SECTION_6[case]
    diagnosis = diagnose(step)
    assert diagnosis is not None
    assert diagnosis.cause == cause
    assert diagnosis.hint


def test_config_signatures_win_over_builtins() -> None:
    """A config-supplied row matched first overrides the built-in diagnosis of the same symptom."""
    mine = Signature(cause="waf_block", hint="the WAF blocks us", http_status=403, body_regex="blocked")
    step = _step(http_status=403, body_excerpt="Request blocked by WAF")
    assert diagnose(step, [mine, *BUILTIN_SIGNATURES]).cause == "waf_block"  # type: ignore[union-attr]
    assert diagnose(step, BUILTIN_SIGNATURES).cause == "forbidden"  # type: ignore[union-attr]


def test_signature_conditions_all_must_hold() -> None:
    """A row with several conditions matches only when every one holds (status, probe, step)."""
    sig = Signature(cause="c", hint="h", http_status=500, probe="p", step="upload")
    assert sig.matches(_step(name="upload", http_status=500), probe="p")
    assert not sig.matches(_step(name="upload", http_status=500), probe="other")
    assert not sig.matches(_step(name="list", http_status=500), probe="p")
    assert not sig.matches(_step(name="upload", http_status=502), probe="p")


def test_invalid_signature_regex_is_a_config_error() -> None:
    """A broken regular expression in a signature is rejected when the config is validated."""
    with pytest.raises(ValueError, match="invalid regular expression"):
        Signature(cause="c", hint="h", body_regex="(unclosed")


def test_no_diagnosis_for_unknown_symptom() -> None:
    """A failure no row describes gets no diagnosis rather than a wrong one."""
    assert diagnose(_step(error_class="something_new")) is None


def test_config_row_title_reaches_the_diagnosis() -> None:
    """A config row may name its cause in words; the diagnosis carries that title, built-ins none."""
    mine = Signature(
        cause="vpn_down", hint="h", title="VPN to the data centre down", error_class="connect_error"
    )
    step = _step(error_class="connect_error")
    assert diagnose(step, [mine]) == Diagnosis(
        cause="vpn_down", hint="h", title="VPN to the data centre down"
    )
    builtin = diagnose(step)
    assert builtin is not None
    assert builtin.title == ""


def test_stored_diagnosis_without_title_still_loads() -> None:
    """Steps stored before titles existed load with an empty title; new ones round-trip theirs."""
    old = {"name": "upload", "status": "FAIL", "diagnosis": {"cause": "c", "hint": "h", "action": "a"}}
    assert StepResult.from_dict(old).diagnosis == Diagnosis(cause="c", hint="h", action="a", title="")
    new = _step(diagnosis=Diagnosis(cause="c", hint="h", title="Words"))
    assert StepResult.from_dict(new.to_dict()) == new


def test_a_title_is_not_a_condition_in_config() -> None:
    """A config row with a title but no condition is still refused: it would match every failure."""
    from monitor.config import ConfigError, parse_config

    text = "environment: t\ndiagnosis:\n  - {cause: c, hint: h, title: Everything}\n"
    with pytest.raises(ConfigError, match="needs at least one condition"):
        parse_config(text, source="config.yaml", env={})
    ok = parse_config(text.replace("}", ", step: upload}"), source="config.yaml", env={})
    assert ok.diagnosis[0].title == "Everything"
