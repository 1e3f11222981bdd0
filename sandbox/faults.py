"""The sandbox's named faults: what each one breaks, and the live set of active faults.

Every fault mirrors a way the production platform has broken or can break (see
``platform-contract.md`` section 6). Faults are combinable and switched at runtime; the apps read the
:class:`FaultState` on every request, so a change takes effect on the next request, without restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

#: Every fault the sandbox knows, with the one-line promise its tests hold it to. The order is the
#: order of the documentation table.
FAULTS: dict[str, str] = {
    "artifacts-404": (
        "registry proxy does not route /api/mlflow/api/2.0/mlflow-artifacts/*: 404 (the seed incident)"
    ),
    "artifacts-disabled": (
        "artifact routes answer 503 'Artifact serving is disabled' (MLflow without --serve-artifacts)"
    ),
    "registry-health-503": "registry GET /health and /ready answer 503; the proxy itself keeps working",
    "alb-no-healthy-target": "registry listener answers every path with the ALB's HTML 503",
    "auth-down": (
        "auth listener answers every path with the ALB's HTML 503; registry answers 503 + Retry-After: 1"
    ),
    "auth-slow": "auth service delays every validation by auth_slow_s (default 2 s)",
    "auth-wrong-service": (
        "auth service no longer accepts service_id 'platform': 401 'Key not authorized for this service'"
    ),
    "strip-authorization": (
        "proxy strips Authorization/X-API-Key before MLflow, whose gateway answers 401 'API key required'"
    ),
    "admin-required": "registry answers 403 REGISTRY_ADMIN_REQUIRED for every key, the admin key too",
    "mlflow-slow": "proxy delays every MLflow call by mlflow_slow_s (default 2 s), below its timeout",
    "artifacts-slow": (
        "proxy delays every artifact request (upload, list, download, delete) by artifacts_slow_s "
        "(default 2 s)"
    ),
    "mlflow-down": (
        "MLflow unreachable: proxy 502, registry /mlflow/* ALB HTML 503, MLflow health endpoints 503"
    ),
    "mlflow-timeout": "MLflow accepts but never answers: proxy 504 after upstream_timeout_s (default 3 s)",
    "artifact-store-500": "artifact routes answer 500 INTERNAL_ERROR (S3 access denied)",
    "rate-limited": "auth validation and registry API answer 429 + Retry-After: 60 + X-RateLimit-*",
    "corrupt-artifact": "artifact downloads return other bytes than were uploaded (same length)",
}


#: The delays of the slow faults, settable at runtime (``sandbox fault --delay NAME=SECONDS``, the
#: admin endpoint's ``PUT /delays``) over the values the sandbox started with; clearing the faults
#: restores those. A test can so make a step exactly as much slower as it needs.
DELAY_NAMES: tuple[str, ...] = ("auth_slow_s", "mlflow_slow_s", "artifacts_slow_s")

#: A delay longer than this would outlive every timeout of the platform and the monitor.
MAX_DELAY_S = 60.0


class UnknownFaultError(ValueError):
    """A fault name that the sandbox does not know; the message lists the known ones."""

    def __init__(self, unknown: Iterable[str]) -> None:
        names = ", ".join(sorted(unknown))
        super().__init__(f"unknown fault(s): {names}; known: {', '.join(FAULTS)}")


def validate_delays(delays: Mapping[str, object]) -> dict[str, float]:
    """``delays`` as seconds by known name, or :class:`ValueError` naming the bad entry."""
    out: dict[str, float] = {}
    for name, value in delays.items():
        if name not in DELAY_NAMES:
            raise ValueError(f"unknown delay {name!r}; known: {', '.join(DELAY_NAMES)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_DELAY_S:
            raise ValueError(f"delay {name} must be a number of seconds from 0 to {MAX_DELAY_S:g}")
        out[name] = float(value)
    return out


def validate_fault_names(names: Iterable[str]) -> tuple[str, ...]:
    """Return ``names`` de-duplicated in documentation order, or raise :class:`UnknownFaultError`."""
    wanted = set(names)
    unknown = wanted - FAULTS.keys()
    if unknown:
        raise UnknownFaultError(unknown)
    return tuple(name for name in FAULTS if name in wanted)


class FaultState:
    """The set of active faults inside the platform process, shared by the auth and registry apps.

    All apps run on one asyncio loop, so plain reads and writes need no lock. Listeners run after
    every change (the registry uses one to drop its key cache, so a fault is visible at once).
    """

    def __init__(self, initial: Iterable[str] = ()) -> None:
        self._active: tuple[str, ...] = validate_fault_names(initial)
        self._delays: dict[str, float] = {}
        self._listeners: list[Callable[[], None]] = []

    def __contains__(self, name: object) -> bool:
        return name in self._active

    @property
    def active(self) -> tuple[str, ...]:
        """The active faults, in documentation order."""
        return self._active

    @property
    def delays(self) -> dict[str, float]:
        """The delays set at runtime (the others are the start-up settings)."""
        return dict(self._delays)

    def delay(self, name: str, default: float) -> float:
        """The delay ``name`` in force: set at runtime, else ``default`` (the start-up setting)."""
        return self._delays.get(name, default)

    def set_delays(self, delays: Mapping[str, object]) -> dict[str, float]:
        """Set some delays (validated first: a bad entry changes nothing); returns all set ones."""
        self._delays.update(validate_delays(delays))
        return self.delays

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every change of the active set."""
        self._listeners.append(listener)

    def set(self, names: Iterable[str]) -> tuple[str, ...]:
        """Replace the active set (validated first: an unknown name changes nothing)."""
        self._active = validate_fault_names(names)
        for listener in self._listeners:
            listener()
        return self._active

    def add(self, name: str) -> tuple[str, ...]:
        """Activate one more fault."""
        return self.set((*self._active, name))

    def clear(self) -> tuple[str, ...]:
        """Deactivate every fault and forget runtime delays: the platform is healthy again."""
        self._delays.clear()
        return self.set(())
