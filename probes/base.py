"""The contract a probe fulfils.

``monitor/`` builds on these types; this package never imports ``monitor/``. A probe is one
scheduled unit (auth, alb_health, ...): an object with a ``name`` and one async ``run(ctx)`` that
returns its ordered steps. The runner, not the probe, owns time, deadlines, exceptions and diagnosis.

Status semantics (see DESIGN.md):

- ``PASS``      the step worked within its budget;
- ``DEGRADED``  it worked, but slower than its budget (or close to a limit, e.g. a certificate);
- ``FAIL``      the platform answered wrongly: this is what pages;
- ``SKIPPED``   it could not run because an earlier step failed: never blamed;
- ``ERROR``     the monitor itself could not run the check: never blamed on the platform.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Protocol, runtime_checkable

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

if TYPE_CHECKING:  # imported where used: the store commands read durations, never the network
    import httpx

    from probes.support.zygote import Zygote


class Status(StrEnum):
    """The outcome of a step or a whole probe run."""

    PASS = "PASS"
    DEGRADED = "DEGRADED"
    FAIL = "FAIL"
    SKIPPED = "SKIPPED"
    ERROR = "ERROR"

    @property
    def ok(self) -> bool:
        """True when the platform did its job (PASS or DEGRADED)."""
        return self in (Status.PASS, Status.DEGRADED)


# Worst first. A FAIL outranks an ERROR: when the platform answered wrongly, that is the signal
# on-call needs, even if a later check could not run. SKIPPED never decides a probe's status.
_SEVERITY: dict[Status, int] = {
    Status.FAIL: 4,
    Status.ERROR: 3,
    Status.DEGRADED: 2,
    Status.PASS: 1,
    Status.SKIPPED: 0,
}


def worst(statuses: list[Status]) -> Status:
    """The status of a run made of steps with ``statuses``; an empty run is an ERROR."""
    counted = [s for s in statuses if s is not Status.SKIPPED]
    if not counted:
        return Status.SKIPPED if statuses else Status.ERROR
    return max(counted, key=_SEVERITY.__getitem__)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A likely cause of a failing step, in words on-call can act on.

    ``cause`` is a stable code (metrics, history, correlation); ``title`` is the cause in words
    when the signature that matched wrote its own (a config row's), else empty and readers use
    the built-in title of the code.
    """

    cause: str
    hint: str
    action: str = ""
    title: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Diagnosis:
        """A diagnosis from its stored dict; rows written before ``title`` existed load with ""."""
        return cls(
            cause=str(d["cause"]),
            hint=str(d.get("hint") or ""),
            action=str(d.get("action") or ""),
            title=str(d.get("title") or ""),
        )


@dataclass(frozen=True, slots=True)
class HttpTiming:
    """Phases of one HTTP exchange, in seconds (None when the phase did not happen, e.g. TLS on http)."""

    connect_s: float | None = None
    tls_s: float | None = None
    ttfb_s: float | None = None
    total_s: float | None = None

    def phases(self) -> dict[str, float]:
        """The phases that happened, keyed by a bounded phase name (for metric labels)."""
        out = {"connect": self.connect_s, "tls": self.tls_s, "ttfb": self.ttfb_s, "total": self.total_s}
        return {k: v for k, v in out.items() if v is not None}


#: A step measurement with a meaning of its own to the daemon: a TLS certificate's ``notAfter`` as
#: unix seconds, exported as an absolute expiry gauge (not as a plain step measurement).
CERT_EXPIRY_MEASUREMENT = "cert_expiry_timestamp_seconds"

#: The step name the runner gives a run that produced no steps of its own (exception, deadline).
RUN_STEP = "run"


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of a probe run.

    ``error_class`` is a short, bounded code (``http_status``, ``timeout``, ``connect_error``,
    ``body_mismatch``, an exception class name, ...). ``message`` is the human detail. ``path``,
    ``body_excerpt`` and ``content_type`` are what diagnosis matches on; ``path`` is the URL path
    only (no host, no query: queries can carry keys). ``measurements`` are numeric facts a probe
    wants exported (``upload_bytes_per_second``, ``cert_days_left``, ...).
    """

    name: str
    status: Status
    duration_s: float = 0.0
    http_status: int | None = None
    error_class: str | None = None
    message: str = ""
    path: str | None = None
    body_excerpt: str | None = None
    content_type: str | None = None
    timing: HttpTiming | None = None
    diagnosis: Diagnosis | None = None
    measurements: Mapping[str, float] = field(default_factory=dict)

    def with_(self, **changes: Any) -> StepResult:
        """A copy with ``changes`` applied (steps are immutable)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the subprocess runner and the history store use this shape).

        What ``dataclasses.asdict`` gives, without its deep copy of every value (the history store
        calls this for every step of every run): every value here is immutable but the measurements,
        which are copied.
        """
        d = {name: getattr(self, name) for name in _STEP_FIELDS}
        d["status"] = self.status.value
        if self.timing is not None:
            d["timing"] = _fields_dict(self.timing)
        if self.diagnosis is not None:
            d["diagnosis"] = _fields_dict(self.diagnosis)
        d["measurements"] = dict(self.measurements)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepResult:
        """The inverse of :meth:`to_dict`; unknown keys are ignored for forward compatibility."""
        timing = d.get("timing")
        diag = d.get("diagnosis")
        return cls(
            name=str(d["name"]),
            status=Status(d["status"]),
            duration_s=float(d.get("duration_s") or 0.0),
            http_status=d.get("http_status"),
            error_class=d.get("error_class"),
            message=str(d.get("message") or ""),
            path=d.get("path"),
            body_excerpt=d.get("body_excerpt"),
            content_type=d.get("content_type"),
            timing=HttpTiming(**timing) if timing else None,
            diagnosis=Diagnosis.from_dict(diag) if diag else None,
            measurements={str(k): float(v) for k, v in (d.get("measurements") or {}).items()},
        )


_STEP_FIELDS = tuple(f.name for f in fields(StepResult))


def _fields_dict(value: HttpTiming | Diagnosis) -> dict[str, Any]:
    """A flat dataclass of immutable values as a dict, in field order (as ``asdict`` makes it)."""
    return {f.name: getattr(value, f.name) for f in fields(value)}


def skipped(name: str, because: str) -> StepResult:
    """A step that could not run because ``because`` (an earlier step's name) failed."""
    return StepResult(name=name, status=Status.SKIPPED, message=f"skipped: {because} failed")


class Clock(Protocol):
    """Time as a probe sees it; tests pass a fake."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


class SystemClock:
    """The real clock: monotonic for durations, aware UTC for timestamps."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


class MissingSecretError(KeyError):
    """A probe asked for a secret the config does not define."""


@dataclass(frozen=True)
class Secrets:
    """Named secret values (API keys, ...). ``repr`` never shows a value."""

    _values: Mapping[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        """The value of secret ``name``; raises :class:`MissingSecretError` when it is not configured."""
        value = self._values.get(name)
        if not value:
            raise MissingSecretError(f"secret {name!r} is not configured")
        return value

    def names(self) -> list[str]:
        return sorted(self._values)

    def values(self) -> list[str]:
        """Every secret value, for maskers. Never log the result."""
        return [v for v in self._values.values() if v]

    def __repr__(self) -> str:
        return f"Secrets(names={self.names()})"


@dataclass
class ProbeContext:
    """Everything a probe may use, passed in by the runner (no globals).

    ``deadline`` is the monotonic time by which the run must finish; probes size their own
    per-request timeouts from :meth:`remaining` so that a slow platform becomes a FAIL step rather
    than the runner's hard cut (an ERROR).

    ``zygote`` is where isolated helpers (``run_isolated``) are forked from; None spawns a fresh
    interpreter for each.
    """

    http: httpx.AsyncClient
    clock: Clock
    secrets: Secrets
    logger: Any
    run_id: str
    deadline: float
    zygote: Zygote | None = None

    def remaining(self) -> float:
        """Seconds left before the run's deadline (never negative)."""
        return max(0.0, self.deadline - self.clock.monotonic())


def check_http_url(value: str) -> str:
    """``value`` when it is an absolute http(s) URL with a host; ValueError otherwise.

    A typo such as ``auth.example.com`` (no scheme) must stop ``check-config``, not pass it and
    then report the platform down at every run.
    """
    import httpx

    try:
        parsed = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


#: The type of every URL option of every probe kind: a string, validated by :func:`check_http_url`.
HttpUrlStr = Annotated[str, AfterValidator(check_http_url)]


# ---- durations ---------------------------------------------------------------------------------
# One grammar for every duration in config and on the command line, here at the bottom of the
# dependency graph because probe options use it and ``probes/`` cannot import ``monitor/``.

#: Seconds per unit, largest first: the order compound durations must be written in.
DURATION_UNITS: dict[str, float] = {
    "w": 604800.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_PLAIN_NUMBER = re.compile(r"\d+(?:\.\d+)?")
DURATION_HELP = "a number of seconds or e.g. 250ms, 30s, 5m, 1h30m, 7d, 2w"


class DurationError(ValueError):
    """A value that is not a duration in the one grammar (see :func:`parse_duration`)."""


def parse_duration(value: str | float | int) -> float:
    """Seconds in ``value``: a number (seconds), or a string of number+unit parts.

    Units are ``ms``, ``s``, ``m``, ``h``, ``d``, ``w``; parts combine largest unit first, each unit
    at most once (``1h30m``, ``1m30s``, ``1.5h``; not ``30m1h``), as Prometheus writes durations. A
    plain number in a string (``"90"``) is seconds. Raises :class:`DurationError`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        # bool is an int subclass: `timeout: yes` is a mistake, not one second.
        raise DurationError(f"expected a duration ({DURATION_HELP}), got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip().replace(" ", "")
        if _PLAIN_NUMBER.fullmatch(text):
            seconds = float(text)
        elif _DURATION_WHOLE.fullmatch(text):
            units = [unit for _, unit in _DURATION_PART.findall(text)]
            order = list(DURATION_UNITS)
            if len(set(units)) != len(units) or units != sorted(units, key=order.index):
                raise DurationError(
                    f"invalid duration {value!r}: write each unit once, largest first (e.g. 1h30m)"
                )
            seconds = sum(float(n) * DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
        else:
            raise DurationError(f"invalid duration {value!r}: use {DURATION_HELP}")
    if not math.isfinite(seconds):
        raise DurationError(f"duration must be a finite number of seconds, got {value!r}")
    # A negative number is left to the field's bounds (``ge=0``/``gt=0``), which name them.
    return seconds


def format_duration(seconds: float) -> str:
    """A short form of ``seconds`` in the same grammar (``"1h30m"``, ``"45s"``, ``"250ms"``, ``"2d"``)."""
    if seconds <= 0:
        return "0s"
    millis = round(seconds * 1000)
    if millis < 1000:
        return f"{seconds * 1000:g}ms"
    if millis % 1000:
        return f"{seconds:g}s"
    rest = millis // 1000
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = int(DURATION_UNITS[unit])
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


#: A duration field (seconds as float, >= 0), written in config as e.g. ``30s`` or ``1h30m``. Add the
#: field's own bounds with ``Field(gt=..., le=...)`` beside it.
Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
#: A duration that must be more than zero (timeouts, intervals, budgets).
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]


class ProbeOptions(BaseModel):
    """Base of every probe kind's options: strict (unknown keys are errors) and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def step_names(self) -> tuple[str, ...] | None:
        """The steps a run of these options reports, in order; None when only a run can tell.

        The config checks names that refer to a step (an SLO's ``step``) against these, so a
        misspelt one is an error at start-up instead of an objective that never counts a run.
        """
        return None


@runtime_checkable
class Probe(Protocol):
    """What the runner calls. One async method returning typed steps."""

    name: str

    async def run(self, ctx: ProbeContext) -> list[StepResult]: ...


class ProbeKind(Protocol):
    """A probe class as registered in ``PROBE_KINDS``.

    ``Options`` validates the ``options:`` block of a probe in config. ``isolated`` asks the runner
    to run the whole probe in a subprocess with a hard deadline (heavy clients such as MLflow).
    """

    # Plain (not ClassVar) protocol members: mypy can never match a ClassVar protocol member
    # against a class object, so the registry dict would not type-check. Probe classes still
    # declare them as ClassVar.
    Options: type[ProbeOptions]
    isolated: bool

    def __call__(self, name: str, options: Any) -> Probe: ...
