"""JUnit XML of `synthmon once --format junit`: valid against Jenkins' schema, one case per step."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest
import xmlschema

from monitor.cli import EXIT_FAILED, EXIT_OK
from monitor.junit import render_junit
from monitor.once_output import EXIT_MONITOR, once_exit_code
from monitor.results import ProbeResult
from probes.base import Diagnosis, Status, StepResult

#: The Jenkins xUnit plugin's JUnit schema (source named in the file).
SCHEMA = xmlschema.XMLSchema(Path(__file__).parent / "schemas" / "jenkins-junit-10.xsd")

DIAG = Diagnosis(
    cause="artifact_route_not_deployed",
    hint="artifact route not deployed or not routed through the proxy",
    action="Deploy the registry proxy's /mlflow-artifacts route.",
)


def _result(probe: str, *steps: StepResult, status: Status | None = None) -> ProbeResult:
    return ProbeResult(
        probe=probe,
        kind=probe,
        run_id=f"{probe}-run",
        started_at=datetime(2026, 7, 14, 9, 30, 5, tzinfo=UTC),
        duration_s=1.25,
        status=status or ProbeResult.status_of(steps),
        steps=steps,
        environment="prod",
    )


PASS = StepResult(name="health", status=Status.PASS, duration_s=0.012, http_status=200)
SLOW = StepResult(
    name="validate", status=Status.DEGRADED, duration_s=2.5, error_class="slow", message="2.5 s"
)
FAIL = StepResult(
    name="upload",
    status=Status.FAIL,
    duration_s=0.3,
    http_status=404,
    error_class="http_status",
    message="PUT /api/mlflow/api/2.0/mlflow-artifacts/artifacts/x answered 404, expected 200",
    diagnosis=DIAG,
)
ERROR = StepResult(name="run", status=Status.ERROR, error_class="RuntimeError", message="RuntimeError: boom")
SKIP = StepResult(name="download", status=Status.SKIPPED, message="skipped: upload failed")

SCENARIOS = {
    "all-pass": [_result("auth", PASS, SLOW)],
    "fail-skip": [_result("auth", PASS), _result("artifact_roundtrip", PASS, FAIL, SKIP)],
    "error-only": [_result("registration", ERROR)],
    "no-steps": [_result("alb_health", status=Status.ERROR)],
    "nothing": [],
    "control-chars": [_result("auth", FAIL.with_(message="body \x00\x1b[31m \ud800 \ufffe end"))],
}


def _parse(text: str) -> ET.Element:
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(text.encode("utf-8"))  # noqa: S314 - the document this test just rendered


@pytest.mark.parametrize("results", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_report_validates_against_the_jenkins_junit_schema(results: list[ProbeResult]) -> None:
    """Every shape of run (passes, failures, errors, skips, no steps, odd bytes) is schema-valid."""
    text = render_junit("prod", results)
    SCHEMA.validate(text)
    _parse(text)


def test_the_schema_is_strict_enough_to_catch_a_wrong_report() -> None:
    """The schema check has teeth: an unknown attribute or a missing required one is refused."""
    good = render_junit("prod", SCENARIOS["fail-skip"])
    assert SCHEMA.is_valid(good)
    assert not SCHEMA.is_valid(good.replace('<testsuite name="auth"', '<testsuite name="auth" bogus="1"', 1))
    assert not SCHEMA.is_valid(good.replace('tests="1"', "", 1))


def test_one_suite_per_probe_one_case_per_step() -> None:
    """Suites are probes; cases are steps with classname = probe, name = step, time in seconds."""
    root = _parse(render_junit("prod", SCENARIOS["fail-skip"]))
    assert root.tag == "testsuites"
    assert root.get("name") == "synthmon prod"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["auth", "artifact_roundtrip"]
    cases = suites[1].findall("testcase")
    assert [(c.get("classname"), c.get("name"), c.get("time")) for c in cases] == [
        ("artifact_roundtrip", "health", "0.012"),
        ("artifact_roundtrip", "upload", "0.300"),
        ("artifact_roundtrip", "download", "0.000"),
    ]
    assert suites[1].get("timestamp") == "2026-07-14T09:30:05"
    assert suites[1].get("time") == "1.250"


def test_counts_on_suites_and_root() -> None:
    """tests/failures/errors/skipped count the steps; the root adds up the suites."""
    results = [*SCENARIOS["fail-skip"], *SCENARIOS["error-only"]]
    root = _parse(render_junit("prod", results))
    counts = [
        tuple(s.get(k) for k in ("tests", "failures", "errors", "skipped")) for s in root.findall("testsuite")
    ]
    assert counts == [("1", "0", "0", "0"), ("3", "1", "0", "1"), ("1", "0", "1", "0")]
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "1", "1")


def test_failure_carries_the_error_and_the_diagnosis() -> None:
    """A FAIL step is a <failure>: message = the error, type = error class, text = cause, hint, action."""
    root = _parse(render_junit("prod", SCENARIOS["fail-skip"]))
    (failure,) = root.iter("failure")
    assert failure.get("message") == FAIL.message
    assert failure.get("type") == "http_status"
    text = failure.text or ""
    assert text.splitlines() == [
        f"FAIL artifact_roundtrip/upload: {FAIL.message}",
        "http_status: 404",
        "error_class: http_status",
        f"cause: {DIAG.cause}",
        f"hint: {DIAG.hint}",
        f"action: {DIAG.action}",
    ]
    (skipped,) = root.iter("skipped")
    assert skipped.get("message") == "skipped: upload failed"


def test_error_is_not_a_failure() -> None:
    """An ERROR step (the monitor could not check) is an <error>, never a <failure>."""
    root = _parse(render_junit("prod", SCENARIOS["error-only"]))
    assert list(root.iter("failure")) == []
    (error,) = root.iter("error")
    assert (error.get("type"), error.get("message")) == ("RuntimeError", "RuntimeError: boom")


def test_a_run_without_steps_still_shows_an_error() -> None:
    """A probe run with no steps becomes one erroring case, not an empty suite that reads as a pass."""
    root = _parse(render_junit("prod", SCENARIOS["no-steps"]))
    (suite,) = root.findall("testsuite")
    assert (suite.get("tests"), suite.get("errors")) == ("1", "1")
    assert suite.find("testcase/error") is not None


def test_degraded_passes_with_a_note() -> None:
    """A DEGRADED step is a passing case; its message goes to <system-out>."""
    root = _parse(render_junit("prod", SCENARIOS["all-pass"]))
    assert list(root.iter("failure")) == list(root.iter("error")) == []
    (out,) = root.iter("system-out")
    assert out.text == "DEGRADED: 2.5 s"


def test_properties_name_environment_run_id_kind_and_status() -> None:
    """Each suite's properties tie the report to the run (environment, run id) and its outcome."""
    root = _parse(render_junit("staging", SCENARIOS["fail-skip"]))
    suite = root.findall("testsuite")[1]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {
        "environment": "staging",
        "run_id": "artifact_roundtrip-run",
        "kind": "artifact_roundtrip",
        "status": "FAIL",
    }


def test_characters_xml_cannot_carry_are_replaced() -> None:
    """NUL, escape codes and lone surrogates in a message become U+FFFD; markup is escaped."""
    results = [_result("auth", FAIL.with_(message='<b>"x" & \x00\x1b \ud800'))]
    (failure,) = _parse(render_junit("prod", results)).iter("failure")
    assert failure.get("message") == '<b>"x" & \ufffd\ufffd \ufffd'


EXIT_CASES = {
    "pass": ([Status.PASS], EXIT_OK),
    "pass-degraded": ([Status.PASS, Status.DEGRADED], EXIT_OK),
    "fail": ([Status.PASS, Status.FAIL], EXIT_FAILED),
    "fail-and-error": ([Status.ERROR, Status.FAIL], EXIT_FAILED),
    "error-only": ([Status.PASS, Status.ERROR], EXIT_MONITOR),
    "all-skipped": ([Status.SKIPPED], EXIT_MONITOR),
}


@pytest.mark.parametrize(("statuses", "code"), EXIT_CASES.values(), ids=EXIT_CASES.keys())
def test_exit_code_tells_platform_from_monitor(statuses: list[Status], code: int) -> None:
    """0 all ok, 1 any FAIL (even with ERRORs), 3 an ERROR or nothing checked without any FAIL."""
    results = [_result(f"p{i}", status=s) for i, s in enumerate(statuses)]
    assert once_exit_code(results) == code
