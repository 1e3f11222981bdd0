"""The ``artifact_roundtrip`` kind: a full round trip, cleanup after a failed verify, payload checks."""

from __future__ import annotations

import hashlib

import httpx
from probes_helpers import make_ctx, mock

from probes.artifact_roundtrip import (
    ArtifactRoundtripOptions,
    ArtifactRoundtripProbe,
    listed_size,
    verify_payload,
)
from probes.base import Status, StepResult


def _step(**kw: object) -> StepResult:
    base: dict[str, object] = {"name": "s", "status": Status.FAIL}
    base.update(kw)
    return StepResult(**base)  # type: ignore[arg-type]


# --- artifact_roundtrip -------------------------------------------------------------------------


class FakeArtifactStore:
    """An in-memory artifact route for MockTransport; ``corrupt`` flips the downloaded bytes."""

    def __init__(self, corrupt: bool = False, lose: bool = False) -> None:
        self.objects: dict[str, bytes] = {}
        self.corrupt = corrupt
        #: Accept uploads and keep nothing (a store that loses what it was given).
        self.lose = lose
        self.deleted: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        prefix = "/api/mlflow/api/2.0/mlflow-artifacts/artifacts"
        rel = request.url.path.removeprefix(prefix).lstrip("/")
        if request.method == "PUT":
            if not self.lose:
                self.objects[rel] = request.content
            return httpx.Response(200, json={})
        if request.method == "DELETE":
            self.deleted.append(rel)
            self.objects = {k: v for k, v in self.objects.items() if not k.startswith(rel)}
            return httpx.Response(200, json={})
        if not rel:
            folder = request.url.params["path"]
            files = [
                {"path": k.rsplit("/", 1)[-1], "is_dir": False, "file_size": str(len(v))}
                for k, v in self.objects.items()
                if k.startswith(folder + "/")
            ]
            return httpx.Response(200, json={"files": files})
        if rel not in self.objects:
            return httpx.Response(404, json={"error_code": "RESOURCE_DOES_NOT_EXIST"})
        body = self.objects[rel]
        return httpx.Response(200, content=bytes(b ^ 0xFF for b in body) if self.corrupt else body)


async def test_artifact_roundtrip_passes_and_measures_throughput() -> None:
    """A faithful store passes all five steps, with upload/download throughput measured."""
    store = FakeArtifactStore()
    ctx = make_ctx(mock(store), run_id="run-1")
    async with ctx.http:
        steps = await ArtifactRoundtripProbe("a", ArtifactRoundtripOptions(payload_bytes=4096)).run(ctx)
    assert [(s.name, s.status) for s in steps] == [
        (n, Status.PASS) for n in ("upload", "list", "download", "verify", "delete")
    ]
    assert steps[0].measurements["upload_bytes_per_second"] > 0
    assert steps[2].measurements["download_bytes_per_second"] > 0
    assert store.deleted == ["synthmon/run-1"]
    assert store.objects == {}


async def test_artifact_is_deleted_even_when_verify_fails() -> None:
    """Corrupted downloads fail verify with checksum_mismatch, and the object is still deleted."""
    store = FakeArtifactStore(corrupt=True)
    ctx = make_ctx(mock(store))
    async with ctx.http:
        steps = {s.name: s for s in await ArtifactRoundtripProbe("a", ArtifactRoundtripOptions()).run(ctx)}
    assert (steps["verify"].status, steps["verify"].error_class) == (Status.FAIL, "checksum_mismatch")
    assert steps["delete"].status is Status.PASS
    assert store.objects == {}


def test_verify_payload_and_listed_size() -> None:
    """verify compares size and SHA-256; list sizes arrive as strings (int64 in proto JSON)."""
    data = b"abc" * 100
    assert verify_payload("verify", data, data).status is Status.PASS
    assert verify_payload("verify", data, data[:-1]).error_class == "checksum_mismatch"
    assert hashlib.sha256(data).hexdigest()[:12] in verify_payload("verify", data, data).message
    assert listed_size({"files": [{"path": "payload.bin", "file_size": "300"}]}, "payload.bin") == 300
    assert listed_size({"files": []}, "payload.bin") is None
    assert listed_size("garbage", "payload.bin") is None


async def test_a_lost_object_is_told_from_a_missing_route() -> None:
    """After a successful upload, a listing without the object and a download 404 blame the store:
    the route just worked, so the causes are a lost object, not artifact_route_not_deployed."""
    from monitor.diagnosis import diagnose

    ctx = make_ctx(mock(FakeArtifactStore(lose=True)))
    async with ctx.http:
        steps = {s.name: s for s in await ArtifactRoundtripProbe("a", ArtifactRoundtripOptions()).run(ctx)}
    assert steps["upload"].status is Status.PASS
    assert (steps["list"].error_class, steps["download"].error_class) == (
        "artifact_not_listed",
        "artifact_missing",
    )
    assert steps["download"].http_status == 404
    causes = [diagnose(steps[n]).cause for n in ("list", "download")]  # type: ignore[union-attr]
    assert causes == ["artifact_listing_incomplete", "artifact_missing_after_upload"]
    assert steps["delete"].status is Status.PASS
