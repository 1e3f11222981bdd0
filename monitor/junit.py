"""JUnit XML for ``synthmon once --format junit``: the test report CI systems render natively.

Jenkins, GitLab CI and the GitHub Actions report actions all read the Ant/Surefire JUnit format, so
a post-deployment check that writes it shows up in the pipeline like any test run: one
``<testsuite>`` per probe, one ``<testcase>`` per step (``classname`` = probe, ``name`` = step,
``time`` = the step's duration). A FAIL step carries ``<failure>`` (the platform answered wrongly),
an ERROR step ``<error>`` (the monitor could not run the check), a SKIPPED step ``<skipped>``; the
element's ``message`` is the step's error and its text adds the HTTP status, error class and the
diagnosis (cause, hint, action), which is what on-call reads first. DEGRADED steps pass, with their
message in ``<system-out>``. Each suite's ``<properties>`` name the environment, the run id, the
kind and the probe's status, so a report can be matched with the history and logs of the run.

Pure: results in, text out. Step messages were masked by the runner, as for the table and JSON
formats, so secrets never reach the file. Characters that XML 1.0 cannot carry (NUL and other
control characters from a body or an exception text) are replaced, so the document always parses.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC

from monitor.results import ProbeResult
from probes.base import RUN_STEP, Status, StepResult

#: Control characters, lone surrogates and U+FFFE/U+FFFF: not allowed anywhere in an XML 1.0 document.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

#: The child element of a testcase for each status that is not a pass.
_OUTCOME = {Status.FAIL: "failure", Status.ERROR: "error", Status.SKIPPED: "skipped"}


def render_junit(environment: str, results: Sequence[ProbeResult]) -> str:
    """The JUnit XML document (UTF-8, with declaration) for one ``once`` run of ``results``."""
    root = ET.Element("testsuites", name=_text(f"synthmon {environment}"))
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for result in results:
        suite = _suite(environment, result)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    # Probes run concurrently: the run took as long as the slowest, not the sum.
    root.set("time", _seconds(max((r.duration_s for r in results), default=0.0)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _suite(environment: str, result: ProbeResult) -> ET.Element:
    """One probe run as a testsuite, its steps as testcases."""
    # A run without steps is the monitor's failure (the runner reports it as ERROR): show one case
    # so the pipeline does not read "0 tests, 0 failures" as a pass.
    steps = result.steps or (
        StepResult(name=RUN_STEP, status=Status.ERROR, error_class="no_steps", message="no steps returned"),
    )
    suite = ET.Element(
        "testsuite",
        name=_text(result.probe),
        tests=str(len(steps)),
        failures=str(sum(s.status is Status.FAIL for s in steps)),
        errors=str(sum(s.status is Status.ERROR for s in steps)),
        skipped=str(sum(s.status is Status.SKIPPED for s in steps)),
        time=_seconds(result.duration_s),
        # The Ant convention: UTC without an offset.
        timestamp=result.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("environment", environment),
        ("run_id", result.run_id),
        ("kind", result.kind),
        ("status", result.status.value),
    ):
        ET.SubElement(properties, "property", name=name, value=_text(value))
    for step in steps:
        suite.append(_case(result.probe, step))
    return suite


def _case(probe: str, step: StepResult) -> ET.Element:
    """One step as a testcase, with its failure, error or skip."""
    case = ET.Element(
        "testcase", classname=_text(probe), name=_text(step.name), time=_seconds(step.duration_s)
    )
    tag = _OUTCOME.get(step.status)
    if tag == "skipped":
        ET.SubElement(case, tag, message=_text(step.message))
    elif tag is not None:
        outcome = ET.SubElement(
            case, tag, message=_text(step.message), type=_text(step.error_class or step.status.value)
        )
        outcome.text = _text(_details(probe, step))
    elif step.status is Status.DEGRADED and step.message:
        ET.SubElement(case, "system-out").text = _text(f"DEGRADED: {step.message}")
    return case


def _details(probe: str, step: StepResult) -> str:
    """The text of a failure or error: what happened, then the diagnosis on-call acts on."""
    lines = [f"{step.status.value} {probe}/{step.name}: {step.message}"]
    if step.http_status is not None:
        lines.append(f"http_status: {step.http_status}")
    if step.error_class:
        lines.append(f"error_class: {step.error_class}")
    if step.diagnosis is not None:
        lines.append(f"cause: {step.diagnosis.cause}")
        lines.append(f"hint: {step.diagnosis.hint}")
        if step.diagnosis.action:
            lines.append(f"action: {step.diagnosis.action}")
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    """A duration in the Surefire time format (plain decimal seconds, no exponent)."""
    return f"{max(value, 0.0):.3f}"


def _text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot carry replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)
