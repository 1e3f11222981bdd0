"""The demo profile: the shipped config's probes, timed so that a live fault shows within a minute.

Applied in code to whatever config the demo loads rather than kept as a second config file: the
probes, their options and the dependency chain stay those of ``config.yaml`` (one list to
maintain, and ``synthmon demo --config`` works with any config), and only the timing changes.
Production runs most probes every minute and registration every 15 minutes, with up to a minute of
jitter, so a fault switched on during a demo would take about five minutes to page.
"""

from __future__ import annotations

from monitor.alerting.config import AlertingConfig, LogChannelConfig, RuleOverride
from monitor.config import Config, ProbeConfig

#: The demo profile: how often each probe runs, at most. Registration is a whole MLflow workflow
#: (train, log, register, load, clean up) in a subprocess and takes tens of seconds by itself.
DEMO_INTERVAL_S = 15.0
DEMO_SLOW_INTERVAL_S = 60.0
SLOW_KINDS = frozenset({"registration"})
#: At most this much random delay per run (production spreads probes over up to a minute).
DEMO_JITTER_S = 1.0
#: The failing runs that open an incident (and the good runs that resolve it) span at most this
#: long: 2 runs of a 15 s probe, 1 of registration.
DEMO_REACT_S = 30.0
#: The outbox is woken by each new event; this only bounds a retry's wait.
DEMO_DISPATCH_S = 2.0


def _profile_probe(probe: ProbeConfig) -> ProbeConfig:
    cap = DEMO_SLOW_INTERVAL_S if probe.kind in SLOW_KINDS else DEMO_INTERVAL_S
    interval = min(probe.interval, cap)
    timeout = min(probe.timeout, interval)
    budget = probe.latency_budget
    # model_copy does not re-run the config's checks: the profile keeps them by construction
    # (timeout <= interval, jitter < interval, latency_budget < timeout).
    return probe.model_copy(
        update={
            "interval": interval,
            "timeout": timeout,
            "jitter": min(probe.jitter, DEMO_JITTER_S, interval / 2),
            "latency_budget": budget if budget is None or budget < timeout else None,
        }
    )


def _threshold(value: int, interval: float) -> int:
    """``value`` runs in a row, lowered so that they span at most :data:`DEMO_REACT_S`."""
    return max(1, min(value, int(DEMO_REACT_S // interval)))


def _profile_alerting(alerting: AlertingConfig, probes: list[ProbeConfig]) -> AlertingConfig:
    overrides = dict(alerting.probes)
    for probe in probes:
        rule = alerting.rule_for(probe.name)
        failure = _threshold(rule.failure_threshold, probe.interval)
        success = _threshold(rule.success_threshold, probe.interval)
        if (failure, success) != (rule.failure_threshold, rule.success_threshold):
            base = overrides.get(probe.name, RuleOverride())
            overrides[probe.name] = base.model_copy(
                update={"failure_threshold": failure, "success_threshold": success}
            )
    outbox = alerting.outbox.model_copy(
        update={"dispatch_interval": min(alerting.outbox.dispatch_interval, DEMO_DISPATCH_S)}
    )
    return alerting.model_copy(
        update={
            "probes": overrides,
            "outbox": outbox,
            # The log channel is what prints incidents in the terminal (monitor.demo.IncidentPrinter).
            "log": LogChannelConfig(enabled=True),
        }
    )


def demo_profile(config: Config) -> Config:
    """``config`` with the demo's timing: a fault shows within a minute (see the module docstring).

    Only shortens: an interval, timeout, jitter or threshold already below the profile's is kept.
    """
    probes = [_profile_probe(p) for p in config.probes]
    return config.model_copy(
        update={"probes": probes, "alerting": _profile_alerting(config.alerting, probes)}
    )


def open_within_s(config: Config, probe: str) -> float:
    """The longest a fault seen by ``probe`` can take to open an incident under ``config``.

    A fault that begins just after a run started is seen by the next run, one interval (plus
    jitter) later; ``failure_threshold`` such runs in a row open the incident, the last one
    finishing at most ``timeout`` after it started.
    """
    p = next(p for p in config.probes if p.name == probe)
    threshold = config.alerting.rule_for(probe).failure_threshold
    return threshold * (p.interval + p.jitter) + p.timeout
