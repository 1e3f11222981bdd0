"""The five probes against the sandbox (a real MLflow server behind the auth proxy), through the daemon.

One sandbox per session; faults are switched per test. These tests run the shipped ``config.yaml``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from probes_helpers import DEFAULT_CONFIG, run_config, sandbox_env

from monitor.config import Config, load_config, parse_config
from monitor.results import ProbeResult
from probes.base import RUN_STEP, Status

pytestmark = pytest.mark.sandbox

PROBES = ("auth", "alb_health", "mlflow_api", "artifact_roundtrip", "registration")
OK = {"PASS", "DEGRADED"}


@pytest.fixture(scope="module")
def env(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment that points config.yaml at the sandbox."""
    return sandbox_env(sandbox.env(), str(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def config(env: dict[str, str]) -> Config:
    """config.yaml, interpolated with the sandbox's environment."""
    return load_config(DEFAULT_CONFIG, env=env)


def _summary(results: dict[str, Any]) -> dict[str, tuple[str, str | None, str | None]]:
    out: dict[str, tuple[str, str | None, str | None]] = {}
    for name, result in results.items():
        assert isinstance(result, ProbeResult)
        failing = result.failing_step
        cause = failing.diagnosis.cause if failing and failing.diagnosis else None
        out[name] = (result.status.value, failing.name if failing else None, cause)
    return out


async def test_healthy_sandbox_all_five_pass(config: Config, faults: Any) -> None:
    """With no fault active, every one of the five probes passes, every step included."""
    results = await run_config(config)
    assert set(results) == set(PROBES)
    for name, result in results.items():
        assert isinstance(result, ProbeResult)
        assert result.status is Status.PASS, (name, [s.to_dict() for s in result.steps])
        # What the config checks an SLO's step against is what a run reports, in order.
        declared = config.probe(name).options.step_names()
        assert tuple(s.name for s in result.steps) == declared, name


# fault -> probe -> (acceptable statuses, failing step, diagnosis cause). None: not run for this
# fault.
Row = dict[str, tuple[set[str], str | None, str | None] | None]
_PASS: tuple[set[str], str | None, str | None] = ({"PASS"}, None, None)
_OKISH: tuple[set[str], str | None, str | None] = (OK, None, None)


def _fail(step: str, cause: str) -> tuple[set[str], str | None, str | None]:
    return ({"FAIL"}, step, cause)


FAULT_TABLE: dict[str, Row] = {
    "artifacts-404": {
        "auth": _PASS,
        "alb_health": _PASS,
        "mlflow_api": _PASS,
        "artifact_roundtrip": _fail("upload", "artifact_route_not_deployed"),
        "registration": _fail("log_model", "artifact_route_not_deployed"),
    },
    "artifacts-disabled": {
        "auth": _PASS,
        "alb_health": _PASS,
        "mlflow_api": _PASS,
        "artifact_roundtrip": _fail("upload", "artifacts_disabled"),
        "registration": _fail("log_model", "artifacts_disabled"),
    },
    "registry-health-503": {
        "auth": _PASS,
        "alb_health": _fail("registry_health", "registry_unhealthy"),
        "mlflow_api": _PASS,
        "artifact_roundtrip": _PASS,
        "registration": _PASS,
    },
    "alb-no-healthy-target": {
        "auth": _PASS,
        "alb_health": _fail("registry_health", "alb_no_healthy_target"),
        "mlflow_api": _fail("experiments_search", "alb_no_healthy_target"),
        "artifact_roundtrip": _fail("upload", "alb_no_healthy_target"),
        "registration": _fail("set_experiment", "alb_no_healthy_target"),
    },
    "auth-down": {
        "auth": _fail("health", "alb_no_healthy_target"),
        "alb_health": _fail("auth_health", "alb_no_healthy_target"),
        "mlflow_api": _fail("experiments_search", "auth_upstream_unavailable"),
        "artifact_roundtrip": _fail("upload", "auth_upstream_unavailable"),
        "registration": _fail("set_experiment", "auth_upstream_unavailable"),
    },
    # Slow validation: the registry caches keys, so which probe pays the 2 s first is a race.
    "auth-slow": {
        "auth": ({"DEGRADED"}, None, None),
        "alb_health": _OKISH,
        "mlflow_api": _OKISH,
        "artifact_roundtrip": _OKISH,
        "registration": _OKISH,
    },
    "auth-wrong-service": {
        "auth": _fail("validate", "api_key_rejected"),
        "alb_health": _fail("mlflow_api_proxy", "api_key_rejected"),
        "mlflow_api": _fail("experiments_search", "api_key_rejected"),
        "artifact_roundtrip": _fail("upload", "api_key_rejected"),
        "registration": _fail("set_experiment", "api_key_rejected"),
    },
    "strip-authorization": {
        "auth": _PASS,
        "alb_health": _fail("mlflow_api_proxy", "proxy_strips_authorization"),
        "mlflow_api": _fail("experiments_search", "proxy_strips_authorization"),
        "artifact_roundtrip": _fail("upload", "proxy_strips_authorization"),
        "registration": _fail("set_experiment", "proxy_strips_authorization"),
    },
    "admin-required": {
        "auth": _PASS,
        "alb_health": _fail("mlflow_api_proxy", "registry_admin_required"),
        "mlflow_api": _fail("experiments_search", "registry_admin_required"),
        "artifact_roundtrip": _fail("upload", "registry_admin_required"),
        "registration": _fail("set_experiment", "registry_admin_required"),
    },
    "mlflow-slow": {
        "auth": _PASS,
        "alb_health": ({"DEGRADED"}, None, None),
        "mlflow_api": ({"DEGRADED"}, None, None),
        "artifact_roundtrip": _OKISH,
        # With a short timeout (CONFIG_EDITS): the step running when the budget is spent fails
        # as a timeout, with the steps before it, instead of the runner's hard kill (ERROR).
        "registration": _fail("log_model", "mlflow_slow"),
    },
    # Every artifact call 2 s slower: over the artifact steps' budgets at worst, never failing.
    "artifacts-slow": {
        "auth": _PASS,
        "alb_health": _OKISH,
        "mlflow_api": _OKISH,
        "artifact_roundtrip": _OKISH,
        "registration": _OKISH,
    },
    "mlflow-down": {
        "auth": _PASS,
        "alb_health": _fail("mlflow_ui", "alb_no_healthy_target"),
        "mlflow_api": _fail("experiments_search", "mlflow_unreachable"),
        "artifact_roundtrip": _fail("upload", "mlflow_unreachable"),
        "registration": _fail("set_experiment", "mlflow_unreachable"),
    },
    "mlflow-timeout": {
        "auth": _PASS,
        "alb_health": _fail("mlflow_ui", "mlflow_timeout"),
        "mlflow_api": _fail("experiments_search", "mlflow_timeout"),
        "artifact_roundtrip": _fail("upload", "mlflow_timeout"),
        "registration": _fail("set_experiment", "mlflow_timeout"),
    },
    "artifact-store-500": {
        "auth": _PASS,
        "alb_health": _PASS,
        "mlflow_api": _PASS,
        "artifact_roundtrip": _fail("upload", "artifact_store_error"),
        "registration": _fail("log_model", "artifact_store_error"),
    },
    "rate-limited": {
        "auth": _fail("validate", "rate_limited"),
        "alb_health": _fail("auth_validate", "rate_limited"),
        "mlflow_api": _fail("experiments_search", "rate_limited"),
        "artifact_roundtrip": _fail("upload", "rate_limited"),
        "registration": _fail("set_experiment", "rate_limited"),
    },
    "corrupt-artifact": {
        "auth": _PASS,
        "alb_health": _PASS,
        "mlflow_api": _PASS,
        "artifact_roundtrip": _fail("verify", "artifact_corrupted"),
        "registration": _fail("load", "artifact_corrupted"),
    },
}


#: Config edits for one fault: every MLflow call takes 2 s under mlflow-slow, so a registration
#: would need minutes; a 25 s timeout shows how a run that is too slow ends.
CONFIG_EDITS: dict[str, tuple[str, str]] = {"mlflow-slow": ("timeout: 3m", "timeout: 25s")}


def test_fault_table_covers_every_sandbox_fault() -> None:
    """Every fault the sandbox knows has a row, and every row names all five probes."""
    from sandbox import FAULTS

    assert set(FAULT_TABLE) == set(FAULTS)
    for row in FAULT_TABLE.values():
        assert set(row) == set(PROBES)


@pytest.mark.parametrize("fault", list(FAULT_TABLE), ids=list(FAULT_TABLE))
async def test_fault_gives_expected_status_step_and_cause(
    config: Config, env: dict[str, str], faults: Any, fault: str
) -> None:
    """Each fault fails exactly the probes it should, at the right step, with the right cause."""
    if fault in CONFIG_EDITS:
        old, new = CONFIG_EDITS[fault]
        text = DEFAULT_CONFIG.read_text()
        assert text.count(old) == 1, old
        config = parse_config(text.replace(old, new), source="config.yaml", env=env)
    row = FAULT_TABLE[fault]
    names = [p for p in PROBES if row[p] is not None]
    faults.set_faults(fault)
    results = await run_config(config, names)
    got = _summary(results)
    for probe, result in results.items():
        # Steps the config does not know of would make a step SLO on them impossible to write.
        reported = {s.name for s in result.steps} - {RUN_STEP}
        assert reported <= set(config.probe(probe).options.step_names() or ()), (probe, reported)
    mismatches = {}
    for probe in names:
        expected = row[probe]
        assert expected is not None
        statuses, step, cause = expected
        status, failing_step, failing_cause = got[probe]
        if status not in statuses or (step is not None and (failing_step, failing_cause) != (step, cause)):
            mismatches[probe] = {"expected": (sorted(statuses), step, cause), "got": got[probe]}
    assert not mismatches, json.dumps(mismatches, indent=1)


def test_seed_replay_once_json(sandbox: Any, faults: Any, tmp_path: Path) -> None:
    """artifacts-404 + registry-health-503 reproduce the July 2025 report in `synthmon once --format json`."""
    faults.set_faults("artifacts-404", "registry-health-503")
    env = {**os.environ, **sandbox_env(sandbox.env(), str(tmp_path))}
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "once", "--format", "json", "--config", str(DEFAULT_CONFIG)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    probes = {p["probe"]: p for p in doc["probes"]}
    assert {n: p["status"] for n, p in probes.items()} == {
        "auth": "PASS",
        "alb_health": "FAIL",
        "mlflow_api": "PASS",
        "artifact_roundtrip": "FAIL",
        "registration": "FAIL",
    }
    alb = {s["step"]: s for s in probes["alb_health"]["steps"]}
    assert probes["alb_health"]["checks"]["summary"] == "9/10 passed; failing: registry_health"
    assert [n for n, s in alb.items() if s["status"] != "PASS"] == ["registry_health"]
    assert alb["registry_health"]["http_status"] == 503
    upload = probes["artifact_roundtrip"]["steps"][0]
    assert (upload["step"], upload["status"], upload["http_status"]) == ("upload", "FAIL", 404)
    assert upload["diagnosis"]["cause"] == "artifact_route_not_deployed"
    assert "artifact route not deployed" in upload["diagnosis"]["hint"]
    registration = next(s for s in probes["registration"]["steps"] if s["status"] == "FAIL")
    assert registration["step"] == "log_model"
    assert registration["diagnosis"]["cause"] == "artifact_route_not_deployed"
    # The key is never printed, in any output.
    assert sandbox.keys.admin not in proc.stdout + proc.stderr
