"""Runs one probe once and always returns a :class:`ProbeResult`.

The runner owns what a probe must not: time, the hard deadline, exceptions, isolation, latency
budgets, diagnosis and masking. A probe that raises or outlives its timeout becomes an ERROR
result (the monitor could not run the check), never a FAIL blamed on the platform.

Each run gets a fresh ``httpx.AsyncClient`` (no connection reuse) so connect and TLS phases are
measured every time, like blackbox_exporter. Kinds with ``isolated = True`` run whole in a fresh
subprocess (:mod:`probes.support.child`) that is killed with its process group at the deadline: a hang in
heavy client code (MLflow) cannot block the event loop or leak into the daemon. With a
:class:`~probes.support.zygote.Zygote` those subprocesses (and the ones probes start through
``ctx.zygote``) are forked from it rather than started as fresh interpreters.

Note the limit of the in-process mode: ``asyncio.timeout`` can only cut a probe at an ``await``.
A probe that blocks the event loop in synchronous code must be an isolated kind.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx
from httpx._utils import get_environment_proxies

from monitor.config import Config, ProbeConfig
from monitor.diagnosis import BUILTIN_SIGNATURES, Signature, diagnose
from monitor.location import DEFAULT_LOCATION
from monitor.results import ProbeResult
from probes.base import RUN_STEP, Clock, Probe, ProbeContext, Secrets, Status, StepResult
from probes.registry import PROBE_KINDS
from probes.support.isolation import IsolationError, IsolationTimeout, run_isolated
from probes.support.masking import SecretMasker
from probes.support.netbackend import AsyncioTransport

if TYPE_CHECKING:
    from probes.support.zygote import Zygote

#: The child's own deadline is this much shorter than the kill, so a slow platform is reported
#: by the probe (a FAIL step) rather than by the kill (an ERROR).
ISOLATION_MARGIN_S = 1.0

ClientFactory = Callable[[float], httpx.AsyncClient]


class _SharedTransport(httpx.AsyncBaseTransport):
    """One connection pool per scheme for every run's client; closing a run's client leaves them open.

    The pools keep no idle connection (``max_keepalive_connections=0``): a connection is closed
    as soon as its response is, so no request ever reuses one and every run still measures its
    own connect and TLS handshake.

    Plain-HTTP requests go to a pool built at once. The ``https`` pool is built (``make`` with
    ``tls_context()``) at the first ``https`` request: the TLS context's CA store holds 1 to 2 MB
    for the life of the process, which a daemon probing only plain-HTTP targets (behind a
    TLS-terminating proxy, or on loopback) never needs. That first request pays the build (tens of
    milliseconds, once per process). The plain pool is given a context with no CA loaded: it never
    starts TLS (a proxy's own TLS uses the proxy's context), and were it asked to, every
    certificate would fail verification rather than pass unchecked.
    """

    def __init__(
        self,
        make: Callable[[ssl.SSLContext], httpx.AsyncBaseTransport],
        tls_context: Callable[[], ssl.SSLContext],
    ) -> None:
        self._make = make
        self._tls_context = tls_context
        self._plain = make(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        self._tls: httpx.AsyncBaseTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "https":
            return await self._plain.handle_async_request(request)
        if self._tls is None:
            self._tls = self._make(self._tls_context())
        return await self._tls.handle_async_request(request)

    async def aclose(self) -> None:
        """Nothing to release at the end of a run (no idle connection is kept)."""


def default_client_factory() -> ClientFactory:
    """Makes a fresh client per run: explicit timeouts, no redirects (a 301 is a finding, not a hop).

    What is costly to build is built once and shared: the TLS context (CA bundle parsing, tens of
    ms of CPU and 1 to 2 MB kept, so only once an ``https`` target is asked for), the connection pools,
    and the proxy routes read from the environment (``HTTP_PROXY``, ``NO_PROXY``, ...; scanning
    the environment cost each run about a millisecond). Connections are not shared (see
    :class:`_SharedTransport`), nor are cookies: each run's client has its own. The pools run on
    :class:`~probes.support.netbackend.AsyncioBackend` (asyncio's own transports, latency stamped
    when bytes arrive) rather than httpcore's anyio backend.
    """
    tls_context = functools.cache(ssl.create_default_context)
    # No limit on connections (runs of many probes overlap), none kept idle: one per request.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)

    def route(proxy: httpx.Proxy | None) -> _SharedTransport:
        def make(context: ssl.SSLContext) -> httpx.AsyncBaseTransport:
            return AsyncioTransport(ssl_context=context, limits=limits, proxy=proxy)

        return _SharedTransport(make, tls_context)

    transport = route(None)
    # The routes httpx would build from the environment, with one shared pool per proxy.
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {
        pattern: None if proxy is None else route(httpx.Proxy(proxy))
        for pattern, proxy in get_environment_proxies().items()
    }

    def make(timeout_s: float) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            follow_redirects=False,
            headers={"User-Agent": "synthmon"},
            transport=transport,
            mounts=mounts,
        )

    return make


def error_step(name: str, error_class: str, message: str) -> StepResult:
    """A step saying the monitor could not run the check."""
    return StepResult(name=name, status=Status.ERROR, error_class=error_class, message=message)


class Runner:
    """Runs the probes of one config. Built again on reload (it holds the probe objects)."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        logger: Any,
        masker: SecretMasker,
        client_factory: ClientFactory | None = None,
        isolation_env: Mapping[str, str] | None = None,
        location: str = DEFAULT_LOCATION,
        zygote: Zygote | None = None,
    ) -> None:
        self.config = config
        self.location = location
        self._clock = clock
        self._log = logger
        self._masker = masker
        self._client_factory = client_factory or default_client_factory()
        self._isolation_env = dict(isolation_env) if isolation_env is not None else None
        self._zygote = zygote
        self._secrets = Secrets(config.secret_map())
        self._signatures: tuple[Signature, ...] = (*config.diagnosis, *BUILTIN_SIGNATURES)
        # By name: ``Config.probe`` walks the list, at every run of every probe.
        self._configs = {p.name: p for p in config.probes}
        # Isolated kinds are built in the child; building them here would import their heavy code.
        self._probes: dict[str, Probe] = {
            p.name: PROBE_KINDS[p.kind](p.name, p.options)
            for p in config.probes
            if not PROBE_KINDS[p.kind].isolated
        }

    async def run(self, name: str) -> ProbeResult:
        """Run probe ``name`` once; never raises for the probe's own failures."""
        cfg = self._configs.get(name) or self.config.probe(name)  # the latter raises KeyError
        run_id = uuid.uuid4().hex
        log = self._log.bind(probe=name, run_id=run_id)
        forced: Status | None = None
        # Built before the clock starts: client set-up is the monitor's cost, not the platform's.
        client = None if PROBE_KINDS[cfg.kind].isolated else self._client_factory(cfg.timeout)
        started_at = self._clock.now()
        start = self._clock.monotonic()
        try:
            if client is None:
                steps = await self._run_isolated(cfg, run_id, log)
            else:
                steps = await self._run_in_process(cfg, client, run_id, log, start)
        except TimeoutError:
            forced = Status.ERROR
            deadline = f"probe exceeded its {cfg.timeout:g}s deadline"
            steps = [error_step(RUN_STEP, "deadline_exceeded", deadline)]
        except IsolationTimeout:
            forced = Status.ERROR
            steps = [
                error_step(
                    RUN_STEP,
                    "deadline_exceeded",
                    f"probe exceeded its {cfg.timeout:g}s deadline; subprocess killed",
                )
            ]
        except IsolationError as exc:
            forced = Status.ERROR
            self._log_stderr(log, exc.stderr_tail)
            steps = [error_step(RUN_STEP, type(exc).__name__, self._masker.mask(str(exc)))]
        except Exception as exc:
            # Any exception out of probe code is the monitor's problem, not the platform's.
            forced = Status.ERROR
            log.warning("probe.exception", exc_info=True)
            said = self._masker.mask(f"{type(exc).__name__}: {exc}")
            steps = [error_step(RUN_STEP, type(exc).__name__, said)]
        duration = self._clock.monotonic() - start
        if not steps:
            forced = Status.ERROR
            steps = [error_step(RUN_STEP, "no_steps", "probe returned no steps")]
        steps = [self._finish_step(step, name) for step in steps]
        status = forced or ProbeResult.status_of(steps)
        if status is Status.PASS and cfg.latency_budget is not None and duration > cfg.latency_budget:
            status = Status.DEGRADED
        result = ProbeResult(
            probe=name,
            kind=cfg.kind,
            run_id=run_id,
            started_at=started_at,
            duration_s=duration,
            status=status,
            steps=tuple(steps),
            environment=self.config.environment,
            location=self.location,
        )
        failing = result.failing_step
        # The diagnosis goes into the line too: on-call reads logs before dashboards.
        log.info(
            "probe.finished",
            status=status.value,
            duration_s=round(duration, 4),
            failing_step=failing.name if failing else None,
            error_class=failing.error_class if failing else None,
            http_status=failing.http_status if failing else None,
            cause=failing.diagnosis.cause if failing and failing.diagnosis else None,
        )
        return result

    async def _run_in_process(
        self, cfg: ProbeConfig, client: httpx.AsyncClient, run_id: str, log: Any, start: float
    ) -> list[StepResult]:
        async with client:
            ctx = ProbeContext(
                http=client,
                clock=self._clock,
                secrets=self._secrets,
                logger=log,
                run_id=run_id,
                deadline=start + cfg.timeout,
                zygote=self._zygote,
            )
            async with asyncio.timeout(cfg.timeout):
                return list(await self._probes[cfg.name].run(ctx))

    async def _run_isolated(self, cfg: ProbeConfig, run_id: str, log: Any) -> list[StepResult]:
        kind = PROBE_KINDS[cfg.kind]
        payload = {
            "kind": cfg.kind,
            # The exact class the parent validated against (lets tests and plugins use their own kinds).
            "kind_ref": f"{kind.__module__}:{getattr(kind, '__qualname__', '')}",
            "name": cfg.name,
            "options": cfg.options.model_dump(mode="json"),
            # Sent on stdin only (never argv or env): the child needs them to authenticate.
            "secrets": self.config.secret_map(),
            "run_id": run_id,
            "timeout": max(0.5, cfg.timeout - ISOLATION_MARGIN_S),
        }
        answer = await run_isolated(
            "probes.support.child:run_probe",
            payload,
            cfg.timeout,
            env=self._isolation_env,
            zygote=self._zygote,
        )
        self._log_stderr(log, answer.stderr_tail)
        return [StepResult.from_dict(d) for d in answer.value]

    def _log_stderr(self, log: Any, tail: str) -> None:
        text = tail.strip()
        if text:
            log.info("probe.stderr", text=self._masker.mask(text[-4000:]))

    def _finish_step(self, step: StepResult, probe: str) -> StepResult:
        """Mask secrets out of what a step shows, and attach a diagnosis to a failing step."""
        changes: dict[str, Any] = {}
        masked = self._masker.mask(step.message)
        if masked != step.message:
            changes["message"] = masked
        if step.body_excerpt:
            body = self._masker.mask(step.body_excerpt)
            if body != step.body_excerpt:
                changes["body_excerpt"] = body
        if step.status in (Status.FAIL, Status.ERROR) and step.diagnosis is None:
            try:
                diagnosis = diagnose(step, self._signatures, probe=probe)
            except Exception:
                # A broken signature must not lose the result; the step stays undiagnosed.
                self._log.warning("diagnosis.failed", probe=probe, step=step.name, exc_info=True)
                diagnosis = None
            if diagnosis is not None:
                changes["diagnosis"] = diagnosis
        return step.with_(**changes) if changes else step


def select_probes(config: Config, names: Sequence[str]) -> list[ProbeConfig]:
    """The probes called ``names`` (any order, disabled included), or every enabled probe when empty.

    Raises KeyError naming the first unknown probe.
    """
    if not names:
        return [p for p in config.probes if p.enabled]
    known = {p.name: p for p in config.probes}
    for name in names:
        if name not in known:
            raise KeyError(name)
    return [p for p in config.probes if p.name in set(names)]
