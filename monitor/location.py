"""Where this daemon probes from: its *location* (a zone, a region, a site).

Replicas in several locations share one store; every run, metric and incident says which location
saw it, and an incident needs a quorum of locations (see :mod:`monitor.alerting.quorum`), so one
zone's network blip never pages. The location is found once, at start-up, in this order:

1. ``location:`` in the config;
2. the environment variable ``SYNTHMON_LOCATION``;
3. on ECS, the task metadata endpoint (``$ECS_CONTAINER_METADATA_URI_V4/task``): its
   ``AvailabilityZone``, else the region in its ``TaskARN``, else ``AWS_REGION``;
4. :data:`DEFAULT_LOCATION`.

The metadata request has a short timeout: a missing or slow endpoint costs at most that, is
logged, and falls through to the next source; it never stops the daemon from starting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

#: The location of a daemon nobody told where it runs (a single-location deployment).
DEFAULT_LOCATION = "default"
#: Same grammar as ``environment``: it becomes a metric label value and a column.
LOCATION_PATTERN = r"^[A-Za-z0-9_.-]+$"
#: The stored column's width (``runs.location``, the quorum's rows): a longer one could not be stored.
LOCATION_MAX = 100
#: The ECS agent answers from the task's own host; anything slower is not the agent.
METADATA_TIMEOUT_S = 2.0

_VALID = re.compile(LOCATION_PATTERN)
# arn:aws:ecs:<region>:<account>:task/<cluster>/<id>
_ARN_REGION = re.compile(r"^arn:[^:]+:ecs:([a-z0-9-]+):")


def resolve_location(
    configured: str | None,
    env: Mapping[str, str],
    *,
    logger: Any = None,
    timeout_s: float = METADATA_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """This daemon's location: ``configured`` > ``SYNTHMON_LOCATION`` > ECS metadata > default.

    An invalid ``SYNTHMON_LOCATION`` or metadata value is logged and skipped (the config's own
    value is validated with the config, where a bad one stops start-up).
    """
    if configured:
        return configured
    from_env = env.get("SYNTHMON_LOCATION", "").strip()
    if from_env:
        if _valid(from_env):
            return from_env
        _warn(logger, "location.invalid", source="SYNTHMON_LOCATION", reason=_REASON)
    uri = env.get("ECS_CONTAINER_METADATA_URI_V4", "").strip()
    if uri:
        found = ecs_location(uri, env, logger=logger, timeout_s=timeout_s, transport=transport)
        if found:
            return found
    return DEFAULT_LOCATION


def ecs_location(
    uri: str,
    env: Mapping[str, str],
    *,
    logger: Any = None,
    timeout_s: float = METADATA_TIMEOUT_S,
    transport: httpx.BaseTransport | None = None,
) -> str | None:
    """The availability zone (else region) of the ECS task whose metadata endpoint is ``uri``.

    Fargate and EC2 tasks (platform 1.4+ / agent 1.39+) report ``AvailabilityZone``; older ones
    do not, and then the region of ``TaskARN`` (or ``AWS_REGION``) is the best location there is.
    None when nothing usable was found; why is logged.
    """
    task: dict[str, Any] = {}
    try:
        with httpx.Client(timeout=timeout_s, transport=transport) as client:
            response = client.get(uri.rstrip("/") + "/task")
        response.raise_for_status()
        body = response.json()
        if isinstance(body, dict):
            task = body
    except (httpx.HTTPError, ValueError) as exc:
        # The URI is the agent's link-local address; it carries no secret, but the error class is
        # all an operator needs to tell "not reachable" from "answered nonsense".
        _warn(logger, "location.ecs_metadata_failed", error=type(exc).__name__)
    candidates = [
        ("AvailabilityZone", str(task.get("AvailabilityZone") or "")),
        ("TaskARN", _arn_region(str(task.get("TaskARN") or ""))),
        ("AWS_REGION", env.get("AWS_REGION", "").strip()),
    ]
    for source, value in candidates:
        if value and _valid(value):
            return value
        if value:
            _warn(logger, "location.invalid", source=source, reason=_REASON)
    return None


_REASON = f"not [A-Za-z0-9_.-]{{1,{LOCATION_MAX}}}"


def _valid(value: str) -> bool:
    return len(value) <= LOCATION_MAX and _VALID.match(value) is not None


def _arn_region(arn: str) -> str:
    match = _ARN_REGION.match(arn)
    return match.group(1) if match else ""


def _warn(logger: Any, event: str, **fields: Any) -> None:
    if logger is not None:
        logger.warning(event, **fields)
