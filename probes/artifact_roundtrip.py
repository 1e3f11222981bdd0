"""The artifact round-trip probe: write, list, read back, verify and delete one object via the proxy.

This is the seed incident's failing stage: ``…/api/mlflow/api/2.0/mlflow-artifacts/artifacts/<path>``
answered 404 for every upload. Steps, all under a synthetic prefix ``<prefix>/<run-id>/``:

- ``upload``   PUT a random payload (default 256 KiB); measurement ``upload_bytes_per_second``;
- ``list``     GET ``…/artifacts?path=<prefix>/<run-id>``: the object is listed with its size;
- ``download`` GET it back; measurement ``download_bytes_per_second``;
- ``verify``   size and SHA-256 equal what was written (``checksum_mismatch`` otherwise);
- ``delete``   DELETE the run's prefix. It runs whenever the upload succeeded, even when ``list``,
  ``download`` or ``verify`` failed, so failed runs do not leave objects behind.

When ``upload`` fails nothing was written, so every later step is SKIPPED. Once it succeeded, the
route is known to work: a listing without the object is ``artifact_not_listed`` and a download
404 is ``artifact_missing`` (the store lost the object), never a missing route.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from typing import Any, ClassVar

from pydantic import Field

from probes.base import HttpUrlStr, PositiveDuration, ProbeContext, ProbeOptions, Status, StepResult, skipped
from probes.support.httpstep import Exchange
from probes.support.platform import bearer, join_url, platform_step

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class ArtifactRoundtripOptions(ProbeOptions):
    """Options of the ``artifact_roundtrip`` kind."""

    registry_url: HttpUrlStr = "http://127.0.0.1:8102"
    mlflow_path: str = "/api/mlflow"
    artifacts_api: str = "/api/2.0/mlflow-artifacts/artifacts"
    api_key_secret: str = "api_key"
    prefix: str = Field(default="synthmon", pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
    file_name: str = Field(default="payload.bin", pattern=r"^[A-Za-z0-9_.-]+$")
    payload_bytes: int = Field(default=256 * 1024, ge=1, le=64 * 1024 * 1024)
    request_timeout_s: PositiveDuration = 30.0
    step_latency_budget_s: PositiveDuration = 5.0

    def secret_names(self) -> set[str]:
        """The secrets this probe reads (the config checks they are defined)."""
        return {self.api_key_secret}

    def step_names(self) -> tuple[str, ...]:
        """Always the same five, in order."""
        return ("upload", "list", "download", "verify", "delete")


def listed_size(doc: Any, file_name: str) -> int | None:
    """The size the list answer gives for ``file_name`` (MLflow sends int64 as a string), or None."""
    if not isinstance(doc, dict) or not isinstance(doc.get("files", []), list):
        return None
    for entry in doc.get("files", []):
        if isinstance(entry, dict) and str(entry.get("path", "")).rsplit("/", 1)[-1] == file_name:
            try:
                return int(entry.get("file_size", -1))
            except (TypeError, ValueError):
                return None
    return None


def verify_payload(name: str, sent: bytes, got: bytes) -> StepResult:
    """PASS when ``got`` equals ``sent`` by size and SHA-256, else FAIL ``checksum_mismatch``."""
    want, have = hashlib.sha256(sent).hexdigest(), hashlib.sha256(got).hexdigest()
    if len(got) != len(sent):
        return StepResult(
            name=name,
            status=Status.FAIL,
            error_class="checksum_mismatch",
            message=f"read back {len(got)} bytes, wrote {len(sent)}",
        )
    if want != have:
        return StepResult(
            name=name,
            status=Status.FAIL,
            error_class="checksum_mismatch",
            message=f"SHA-256 differs: wrote {want[:12]}…, read {have[:12]}… ({len(sent)} bytes each)",
        )
    return StepResult(name=name, status=Status.PASS, message=f"{len(sent)} bytes, SHA-256 {want[:12]}… match")


def _throughput(step: StepResult, size: int, metric: str) -> StepResult:
    if not step.status.ok or step.duration_s <= 0:
        return step
    return step.with_(measurements={**step.measurements, metric: size / step.duration_s})


class ArtifactRoundtripProbe:
    """Round-trips one object through the artifact routes; see the module docstring."""

    Options: ClassVar[type[ProbeOptions]] = ArtifactRoundtripOptions
    isolated: ClassVar[bool] = False

    def __init__(self, name: str, options: ArtifactRoundtripOptions) -> None:
        self.name = name
        self.options = options

    def _url(self, relative: str = "") -> str:
        o = self.options
        base = join_url(join_url(o.registry_url, o.mlflow_path), o.artifacts_api)
        return join_url(base, relative) if relative else base

    async def _http(
        self, ctx: ProbeContext, step: str, method: str, url: str, key: str, **kw: Any
    ) -> Exchange:
        o = self.options
        return await platform_step(
            ctx,
            step,
            method,
            url,
            request_timeout_s=o.request_timeout_s,
            budget_s=o.step_latency_budget_s,
            headers=bearer(key),
            **kw,
        )

    async def run(self, ctx: ProbeContext) -> list[StepResult]:
        """Upload, list, download, verify, delete; see the module docstring."""
        o = self.options
        key = ctx.secrets.get(o.api_key_secret)
        folder = f"{o.prefix}/{_UNSAFE.sub('_', ctx.run_id)}"
        object_path = f"{folder}/{o.file_name}"
        # Random per run, so a cache or a stale object can never make verify pass. Generating
        # and hashing up to 64 MiB is CPU work: it runs in a worker thread, off the event loop.
        payload = await asyncio.to_thread(random.randbytes, o.payload_bytes)

        upload = await self._http(
            ctx,
            "upload",
            "PUT",
            self._url(object_path),
            key,
            content=payload,
        )
        steps = [_throughput(upload.step, len(payload), "upload_bytes_per_second")]
        if not upload.step.status.ok:
            return steps + [skipped(n, "upload") for n in o.step_names()[1:]]

        listing = await self._http(ctx, "list", "GET", self._url(), key, params={"path": folder})
        list_step = listing.step
        if list_step.status.ok:
            doc = listing.json()
            size = listed_size(doc, o.file_name)
            if not isinstance(doc, dict) or not isinstance(doc.get("files", []), list):
                list_step = list_step.with_(
                    status=Status.FAIL,
                    error_class="body_mismatch",
                    message=f"list of {folder}: the answer is not a file listing",
                )
            elif size is None:
                # The upload just succeeded, so the route works: the listing misses the object.
                list_step = list_step.with_(
                    status=Status.FAIL,
                    error_class="artifact_not_listed",
                    message=f"list of {folder} does not show {o.file_name}, uploaded moments ago",
                )
            elif size != len(payload):
                list_step = list_step.with_(
                    status=Status.FAIL,
                    error_class="checksum_mismatch",
                    message=f"list shows {size} bytes, wrote {len(payload)}",
                )
        steps.append(listing.judged(list_step))

        # The cap leaves room to notice a longer body instead of silently truncating to equal size.
        download = await self._http(
            ctx, "download", "GET", self._url(object_path), key, max_body=len(payload) + 1024
        )
        download_step = download.step
        if not download_step.status.ok and download_step.http_status == 404:
            # The same route accepted the upload moments ago: the route is deployed, the object is gone.
            download_step = download_step.with_(
                error_class="artifact_missing",
                message=f"{download_step.message}: the object uploaded moments ago is not found",
            )
        steps.append(_throughput(download_step, len(download.body), "download_bytes_per_second"))
        if download.step.status.ok:
            steps.append(await asyncio.to_thread(verify_payload, "verify", payload, download.body))
        else:
            steps.append(skipped("verify", "download"))

        # Always clean up what we wrote, whatever happened in between.
        delete = await self._http(ctx, "delete", "DELETE", self._url(folder), key)
        steps.append(delete.step)
        return steps
