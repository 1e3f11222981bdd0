"""Registration against the sandbox: repeated runs clean up after themselves, leftovers of a killed
run are swept, objects without the synthetic tag are never touched, and the daemon's RSS stays flat.

State is checked through MLflow's REST API (via the proxy, with the admin key), never the client.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from probes_helpers import DEFAULT_CONFIG, FixedClock, make_ctx, run_config, sandbox_env

from monitor.config import Config, parse_config
from monitor.results import ProbeResult
from probes.base import Status, worst
from probes.registration import RegistrationOptions, RegistrationProbe
from probes.support.isolation import IsolationCrash, run_isolated
from probes.support.registration_child import Candidate, select_expired

#: Issue #4's acceptance: "after 20 registration runs no synthetic run or version is left".
#: Each run takes about 7-9 s against the sandbox here (~3 min in all); longer soaks: benchmarks/.
RUNS = 20
TAG = "synthmon.synthetic"
MODEL = "synthmon-synthetic"
EXPERIMENT = "synthmon-synthetic"
HERE = Path(__file__).resolve().parent


class MlflowRest:
    """Just enough of MLflow's REST API, through the proxy, to set up and inspect state."""

    def __init__(self, tracking_uri: str, key: str) -> None:
        self._client = httpx.Client(
            base_url=tracking_uri.rstrip("/") + "/api/2.0/mlflow",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        self.artifact_uris: dict[str, str] = {}

    def call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        response = self._client.request(method, path, **kw)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def experiment_id(self, name: str) -> str:
        response = self._client.get("/experiments/get-by-name", params={"experiment_name": name})
        if response.status_code == 404:
            return str(self.call("POST", "/experiments/create", json={"name": name})["experiment_id"])
        response.raise_for_status()
        return str(response.json()["experiment"]["experiment_id"])

    def create_run(self, experiment_id: str) -> str:
        body = {"experiment_id": experiment_id, "start_time": int(time.time() * 1000) - 7_200_000}
        info = self.call("POST", "/runs/create", json=body)["run"]["info"]
        self.artifact_uris[str(info["run_id"])] = str(info["artifact_uri"])
        return str(info["run_id"])

    def ensure_model(self, name: str) -> None:
        response = self._client.get("/registered-models/get", params={"name": name})
        if response.status_code == 404:
            self.call("POST", "/registered-models/create", json={"name": name})

    def create_version(self, name: str, run_id: str) -> str:
        # MLflow checks that a version's source lies under its run's artifact location.
        body = {"name": name, "source": self.artifact_uris[run_id] + "/model", "run_id": run_id}
        return str(self.call("POST", "/model-versions/create", json=body)["model_version"]["version"])

    def active_runs(self, experiment_id: str) -> list[dict[str, Any]]:
        body = {"experiment_ids": [experiment_id], "max_results": 1000, "run_view_type": "ACTIVE_ONLY"}
        runs: list[dict[str, Any]] = self.call("POST", "/runs/search", json=body).get("runs", [])
        return runs

    def versions(self, name: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.call(
            "GET", "/model-versions/search", params={"filter": f"name='{name}'", "max_results": 1000}
        ).get("model_versions", [])
        return found

    def run_exists(self, run_id: str) -> bool:
        response = self._client.get("/runs/get", params={"run_id": run_id})
        return response.status_code == 200 and response.json()["run"]["info"]["lifecycle_stage"] == "active"


def _tagged(obj: dict[str, Any], where: str) -> bool:
    tags = obj.get(where, {}).get("tags", []) if where else obj.get("tags", [])
    return any(t.get("key") == TAG and t.get("value") == "true" for t in tags)


@pytest.fixture(scope="module")
def short_ttl_config(sandbox: Any, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """config.yaml with a 1 ms leftover TTL, so every earlier synthetic object counts as a leftover."""
    text = DEFAULT_CONFIG.read_text().replace("ttl: 1h", "ttl: 1ms")
    assert "ttl: 1ms" in text
    env = sandbox_env(sandbox.env(), str(tmp_path_factory.mktemp("store")))
    return parse_config(text, source="config.yaml", env=env)


@pytest.fixture
def rest(sandbox: Any) -> MlflowRest:
    """REST access to the sandbox's MLflow through the proxy."""
    return MlflowRest(sandbox.mlflow_tracking_uri, sandbox.keys.admin)


async def _register(config: Config) -> ProbeResult:
    result = (await run_config(config, ["registration"]))["registration"]
    assert isinstance(result, ProbeResult)
    return result


@pytest.mark.sandbox
@pytest.mark.timeout(900)  # 20 full registrations; the suite's default per-test limit is 300 s
async def test_repeated_runs_leave_nothing_and_spare_user_objects(
    short_ttl_config: Config, rest: MlflowRest, faults: Any
) -> None:
    """After 20 runs no synthetic run or version is left; untagged user objects stay, RSS is flat."""
    # A user's own model elsewhere, and untagged objects inside synthmon's own experiment and model
    # name: the sweep (TTL 1 ms) sees them all, and must leave them because they lack the tag.
    user_run = rest.create_run(rest.experiment_id("user-experiment"))
    rest.ensure_model("user-model")
    user_version = rest.create_version("user-model", user_run)
    synthetic_experiment = rest.experiment_id(EXPERIMENT)
    stray_run = rest.create_run(synthetic_experiment)
    rest.ensure_model(MODEL)
    stray_version = rest.create_version(MODEL, stray_run)

    process = psutil.Process(os.getpid())
    rss: list[int] = []
    durations: list[float] = []
    for _ in range(RUNS):
        result = await _register(short_ttl_config)
        assert result.status is Status.PASS, [s.to_dict() for s in result.steps]
        durations.append(result.duration_s)
        rss.append(process.memory_info().rss)

    synthetic_runs = [r for r in rest.active_runs(synthetic_experiment) if _tagged(r, "data")]
    assert synthetic_runs == []
    assert [v for v in rest.versions(MODEL) if _tagged(v, "")] == []
    assert [v["version"] for v in rest.versions(MODEL)] == [stray_version]
    assert [v["version"] for v in rest.versions("user-model")] == [user_version]
    assert rest.run_exists(user_run)
    assert rest.run_exists(stray_run)
    # Isolation: the daemon process does not grow with registration runs (the MLflow client
    # lives and dies in the subprocess). First run warms up imports; compare later ones to it.
    growth_mb = (rss[-1] - rss[0]) / 2**20
    print(f"registration runs: {[round(d, 1) for d in durations]} s; daemon RSS growth {growth_mb:.1f} MiB")
    assert growth_mb < 20


@pytest.mark.sandbox
async def test_killed_run_leftovers_are_swept_by_the_next_run(
    sandbox: Any, short_ttl_config: Config, rest: MlflowRest, faults: Any
) -> None:
    """A run killed mid-way leaves a tagged run and version; the next run's sweep deletes them."""
    ctx = make_ctx(None, key=sandbox.keys.admin, timeout_s=180)
    await ctx.http.aclose()
    options = RegistrationOptions(registry_url=sandbox.registry_url, ttl=0.001)
    payload = RegistrationProbe("registration", options).payload(ctx)
    env = {"PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    with pytest.raises(IsolationCrash):
        await run_isolated("probes_kill_target:killed_registration", payload, 180, env=env)

    experiment = rest.experiment_id(EXPERIMENT)
    left_runs = [r["info"]["run_id"] for r in rest.active_runs(experiment) if _tagged(r, "data")]
    left_versions = [v["version"] for v in rest.versions(MODEL) if _tagged(v, "")]
    assert left_runs, "the killed run should have left its run behind"
    assert left_versions, "the killed run should have left its model version behind"

    result = await _register(short_ttl_config)
    assert result.status is Status.PASS, [s.to_dict() for s in result.steps]
    cleanup = next(s for s in result.steps if s.name == "cleanup")
    assert cleanup.measurements["swept_leftovers"] >= len(left_runs) + len(left_versions)
    assert not any(rest.run_exists(r) for r in left_runs)
    assert [v for v in rest.versions(MODEL) if v["version"] in left_versions] == []


@pytest.mark.sandbox
async def test_local_training_failure_is_error_not_fail(sandbox: Any, faults: Any) -> None:
    """A failure of the monitor's own training (a bad seed) is ERROR, never a FAIL that pages."""
    ctx = make_ctx(None, key=sandbox.keys.admin, timeout_s=120)
    await ctx.http.aclose()
    payload = {
        **RegistrationProbe("registration", RegistrationOptions(registry_url=sandbox.registry_url)).payload(
            ctx
        )
    }
    payload["seed"] = -1  # numpy refuses it: an exception from the monitor's side only
    answer = await run_isolated("probes.support.registration_child:main", payload, 120)
    steps = {s["name"]: s for s in answer.value}
    assert steps["set_experiment"]["status"] == "PASS"
    assert (steps["train"]["status"], steps["train"]["error_class"]) == ("ERROR", "ValueError")
    assert steps["log_model"]["status"] == "SKIPPED"
    assert steps["cleanup"]["status"] == "PASS"
    assert worst([Status(s["status"]) for s in answer.value]) is Status.ERROR


# --- units: no sandbox needed ---------------------------------------------------------------

NOW_MS = int(datetime(2026, 7, 1, tzinfo=UTC).timestamp() * 1000)


def test_sweep_never_selects_untagged_or_young_objects() -> None:
    """Only objects tagged synthetic=true, older than the TTL and not this run's own are swept."""
    hour = 3600 * 1000
    candidates = [
        Candidate("run", "old-tagged", NOW_MS - 2 * hour, {"synthmon.synthetic": "true"}),
        Candidate("run", "old-untagged", NOW_MS - 2 * hour, {}),
        Candidate("run", "old-tag-false", NOW_MS - 2 * hour, {"synthmon.synthetic": "false"}),
        Candidate("run", "young-tagged", NOW_MS - 60 * 1000, {"synthmon.synthetic": "true"}),
        Candidate("run", "own", NOW_MS - 2 * hour, {"synthmon.synthetic": "true"}),
    ]
    chosen = select_expired(candidates, tag="synthmon.synthetic", now_ms=NOW_MS, ttl_s=3600, keep=["own"])
    assert [c.ident for c in chosen] == ["old-tagged"]


def test_fixed_clock_drives_registration_payload_time() -> None:
    """The registration payload's 'now' (the sweep's reference) comes from the context's clock."""
    from probes.registration import RegistrationOptions, RegistrationProbe

    clock = FixedClock(datetime(2026, 7, 1, tzinfo=UTC))
    ctx = make_ctx(None, clock=clock)
    payload = RegistrationProbe("r", RegistrationOptions()).payload(ctx)
    assert payload["now_ms"] == NOW_MS
    assert payload["api_key"].startswith("hk_test_")


@pytest.mark.parametrize(
    ("step", "phase", "facts", "error_class"),
    [
        (
            "log_model",
            "upload",
            {"http_status": 404, "error_class": "MlflowException"},
            "artifact_upload_failed",
        ),
        ("log_model", "run", {"http_status": 404, "error_class": "MlflowException"}, "MlflowException"),
        ("log_model", "upload", {"error_class": "timeout"}, "timeout"),
        ("load", None, {"http_status": 404, "error_class": "MlflowException"}, "artifact_missing"),
        ("load", None, {"error_class": "UnpicklingError"}, "artifact_unreadable"),
        ("load", None, {"error_class": "connect_error"}, "connect_error"),
        ("load", None, {"http_status": 500, "error_class": "MlflowException"}, "MlflowException"),
    ],
    ids=[
        "upload_after_run_created",
        "run_creation",
        "upload_timeout_keeps_class",
        "model_files_404_after_logging",
        "files_do_not_parse",
        "refused_keeps_class",
        "server_error_keeps_class",
    ],
)
def test_failure_is_refined_by_what_earlier_calls_proved(
    step: str, phase: str | None, facts: dict[str, Any], error_class: str
) -> None:
    """A FAIL's class says what the earlier calls proved (the API worked, the files were uploaded)."""
    from probes.support.registration_child import _refine_failure

    result: dict[str, Any] = {"name": step, "status": "FAIL", **facts}
    _refine_failure(step, result, {"log_model_phase": phase} if phase else {})
    assert result["error_class"] == error_class
