"""Child side of whole-probe isolation: run one probe in this (sub)process, return its steps.

Called by :mod:`probes.support.isolation` as ``probes.support.child:run_probe`` with the payload the
runner built:
``kind``, ``kind_ref`` (``module:Class``, preferred), ``name``, ``options`` (JSON), ``secrets``,
``run_id``, ``timeout``. Logs go to stderr (the parent masks and forwards them); the answer is the
list of ``StepResult.to_dict()``. An exception escapes: the child exits without an answer and the
parent records an ERROR with the tail of stderr.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

import httpx
import structlog

from probes.base import ProbeContext, ProbeKind, Secrets, SystemClock
from probes.registry import PROBE_KINDS
from probes.support.budget import budget_left


def _resolve_kind(payload: dict[str, Any]) -> ProbeKind:
    ref = str(payload.get("kind_ref") or "")
    module_name, _, attr = ref.partition(":")
    if module_name and attr:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        kind: ProbeKind = obj
        return kind
    return PROBE_KINDS[str(payload["kind"])]


async def run_probe(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Build the probe from ``payload``, run it against its own client, return its steps as dicts."""
    kind = _resolve_kind(payload)
    name = str(payload["name"])
    options = kind.Options.model_validate(payload.get("options") or {})
    probe = kind(name, options)
    # The payload's timeout counts from the parent's start; getting this child may have used some.
    timeout = budget_left(payload, float(payload["timeout"]))
    clock = SystemClock()
    logger = structlog.wrap_logger(
        structlog.PrintLogger(sys.stderr),
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
    ).bind(probe=name, run_id=payload.get("run_id"), isolated=True)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), follow_redirects=False) as client:
        ctx = ProbeContext(
            http=client,
            clock=clock,
            secrets=Secrets(dict(payload.get("secrets") or {})),
            logger=logger,
            run_id=str(payload.get("run_id") or ""),
            deadline=clock.monotonic() + timeout,
        )
        # The child cuts itself a little before the parent's kill, so a probe that is merely slow
        # can still be reported as a timeout by the parent rather than leave a half-written answer.
        steps = await asyncio.wait_for(probe.run(ctx), timeout=timeout)
    return [step.to_dict() for step in steps]
