"""Generate synthmon's Grafana dashboards (the JSON files beside this script).

Why a generator: three dashboards share variables, selectors and panel shapes; writing that JSON by
hand drifts (a panel forgets the ``$environment`` filter, ids collide). This script is the source;
the JSON files are its committed output, which Grafana provisioning and the import UI read. A test
fails when they differ, so after editing run::

    .venv/bin/python dashboards/build.py

The same run fills in the ``runbook_url`` annotation of every alert in ``rules/synthmon.rules.yml``
from :data:`RUNBOOK_URL_PATTERN`; ``--runbook-url-pattern`` writes a copy pointing elsewhere.

Conventions every panel follows (the tests check them):

- every query filters on ``job``, ``environment`` and ``instance`` through template variables whose
  "All" value is ``.*`` (which also matches a series *without* that label: single-environment setups
  need no ``environment`` label at all);
- no data source uid is hard-coded: panels and variables use ``${datasource}``;
- several synthmon replicas may probe the same platform, so per-probe panels aggregate across
  instances: ``min`` for success (one failing replica shows), ``max`` for failures and ages.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
#: Grafana 10.x/11.x dashboards; older Grafanas migrate forward, never back.
SCHEMA_VERSION = 39
DS: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
#: The selector every query carries (see the module docstring).
SEL = 'job=~"$job", environment=~"$environment", instance=~"$instance"'
#: A probe chosen by the ``probe`` variable (a regex match, so "All" works too).
PSEL = SEL + ', probe=~"$probe"'
#: The notification result that means "delivered" (monitor/alerting/metrics.py); transient_error,
#: permanent_error and expired are failures, as in the alert rules.
NOTIFY_OK = "sent"

STATUS_COLORS = {"PASS": "green", "DEGRADED": "yellow", "FAIL": "red", "ERROR": "orange", "SKIPPED": "blue"}


@dataclass
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False

    def to_json(self, ref: str) -> dict[str, Any]:
        """Grafana's target object for refId ``ref``."""
        return {
            "refId": ref,
            "datasource": DS,
            "expr": self.expr,
            "legendFormat": self.legend or "__auto",
            "instant": self.instant,
            "range": not self.instant,
        }


@dataclass
class Panel:
    """A panel before layout: type, title, queries, size, field config and options."""

    kind: str
    title: str
    targets: list[Target]
    width: int = 6
    height: int = 6
    unit: str = "short"
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Row:
    """A row of panels; ``repeat`` names a variable to repeat the row for (one row per value)."""

    title: str
    panels: list[Panel]
    repeat: str | None = None


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    """Absolute thresholds from ``(value, color)`` pairs; the first value is None (the base)."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in steps]}


def status_overrides() -> list[dict[str, Any]]:
    """Colour a series named after a status (legend ``{{status}}``) with that status's colour."""
    return [
        {
            "matcher": {"id": "byName", "options": status},
            "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
        }
        for status, color in STATUS_COLORS.items()
    ]


OK_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "FAILING", "color": "red", "index": 0},
            "1": {"text": "OK", "color": "green", "index": 1},
        },
    }
]


def stat(title: str, *targets: Target, **kw: Any) -> Panel:
    """A single-value panel (instant queries: it shows *now*)."""
    for t in targets:
        t.instant = True
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "none",
        "textMode": kw.pop("text_mode", "auto"),
        "justifyMode": "auto",
        "orientation": "auto",
    }
    return Panel("stat", title, list(targets), options=options, **kw)


def series(title: str, *targets: Target, stack: bool = False, bars: bool = False, **kw: Any) -> Panel:
    """A time series panel."""
    custom: dict[str, Any] = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if (stack or bars) else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    defaults = {"custom": custom, **kw.pop("defaults", {})}
    options = {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["lastNotNull", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return Panel("timeseries", title, list(targets), options=options, defaults=defaults, **kw)


def timeline(title: str, *targets: Target, **kw: Any) -> Panel:
    """A state timeline of 0/1 success series (red FAILING / green OK)."""
    options = {"showValue": "never", "mergeValues": True, "rowHeight": 0.8, "legend": {"showLegend": False}}
    defaults = {"mappings": OK_MAPPING, "min": 0, "max": 1, "color": {"mode": "thresholds"}}
    defaults["thresholds"] = thresholds((None, "red"), (1, "green"))
    return Panel("state-timeline", title, list(targets), options=options, defaults=defaults, **kw)


def bargauge(title: str, *targets: Target, **kw: Any) -> Panel:
    """A horizontal bar gauge (one bar per series), instant."""
    for t in targets:
        t.instant = True
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "basic",
        "showUnfilled": True,
    }
    return Panel("bargauge", title, list(targets), options=options, **kw)


def quantile(q: float, metric: str, selector: str, by: str = "") -> str:
    """``histogram_quantile`` of a synthmon histogram over ``$__rate_interval``, summed over instances."""
    keep = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({keep}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))"


def variables(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The data source variable, the job/environment/instance filters, then ``extra``."""
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "refresh": 1,
            "regex": "",
        },
        query_var("job", "label_values(synthmon_build_info, job)", "Job"),
        query_var(
            "environment", 'label_values(synthmon_build_info{job=~"$job"}, environment)', "Environment"
        ),
        query_var(
            "instance", f"label_values(synthmon_build_info{{{SEL.rsplit(',', 1)[0]}}}, instance)", "Instance"
        ),
        *extra,
    ]


def query_var(name: str, query: str, label: str, *, multi: bool = True, all_: bool = True) -> dict[str, Any]:
    """A Prometheus ``label_values`` template variable; "All" is ``.*`` so unlabeled series match."""
    var: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"synthmon-{name}"},
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": all_,
        "current": {},
        "hide": 0,
        "regex": "",
        "options": [],
    }
    if all_:
        var["allValue"] = ".*"
    return var


def layout(rows: list[Row]) -> list[dict[str, Any]]:
    """Panels with unique ids and grid positions: rows stacked, panels packed left to right in 24 columns."""
    out: list[dict[str, Any]] = []
    next_id = 1
    y = 0
    for row in rows:
        row_json: dict[str, Any] = {
            "id": next_id,
            "type": "row",
            "title": row.title,
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        }
        if row.repeat:
            row_json["repeat"] = row.repeat
        out.append(row_json)
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for p in row.panels:
            if x + p.width > 24:
                x, y, line_height = 0, y + line_height, 0
            defaults: dict[str, Any] = {"unit": p.unit, **p.defaults}
            panel: dict[str, Any] = {
                "id": next_id,
                "type": p.kind,
                "title": p.title,
                "description": p.description,
                "datasource": DS,
                "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
                "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(p.targets)],
                "fieldConfig": {"defaults": defaults, "overrides": p.overrides},
                "options": p.options,
            }
            out.append(panel)
            next_id += 1
            x += p.width
            line_height = max(line_height, p.height)
        y += line_height
    return out


def dashboard(
    uid: str, title: str, description: str, rows: list[Row], extra_vars: list[dict[str, Any]]
) -> dict[str, Any]:
    """A complete dashboard document."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["synthmon", "synthetic-monitoring"],
        "timezone": "utc",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {"list": []},
        "links": [
            {
                "title": "synthmon",
                "type": "dashboards",
                "tags": ["synthmon"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
            }
        ],
        "templating": {"list": variables(*extra_vars)},
        "panels": layout(rows),
    }


def probe_var(*, multi: bool) -> dict[str, Any]:
    """The ``probe`` variable (probes seen in the selected environments)."""
    query = f"label_values(synthmon_probe_success{{{SEL}}}, probe)"
    return query_var("probe", query, "Probe", multi=multi, all_=multi)


def overview() -> dict[str, Any]:
    """One row per probe (repeated over ``$probe``): status, availability, p50/p95, last run age."""
    now = Row(
        "Platform now",
        [
            stat(
                "Probes failing",
                Target(
                    f'count(max by (probe) (synthmon_probe_status{{{SEL}, status="FAIL"}}) == 1) or vector(0)'
                ),
                description="Probes whose last run was FAIL on any synthmon instance.",
                defaults={
                    "thresholds": thresholds((None, "green"), (1, "red")),
                    "color": {"mode": "thresholds"},
                },
                width=4,
                height=5,
            ),
            stat(
                "Probes OK",
                Target(f"count(min by (probe) (synthmon_probe_success{{{SEL}}}) == 1) or vector(0)"),
                description="Probes whose last run was PASS or DEGRADED on every synthmon instance.",
                defaults={"color": {"mode": "fixed", "fixedColor": "green"}},
                width=4,
                height=5,
            ),
            timeline(
                "Probe status history",
                Target(f"min by (probe) (synthmon_probe_success{{{SEL}}})", "{{probe}}"),
                description="OK = PASS or DEGRADED; FAILING = FAIL or ERROR (see the drill-down for which).",
                width=16,
                height=5,
            ),
        ],
    )
    per_probe = Row(
        "Probe $probe",
        [
            stat(
                "Status",
                Target(f"max by (status) (synthmon_probe_status{{{PSEL}}}) == 1", "{{status}}"),
                text_mode="name",
                overrides=status_overrides(),
                description="Status of the last run (PASS, DEGRADED, FAIL, ERROR, SKIPPED).",
                width=3,
            ),
            stat(
                "Availability",
                Target(
                    f'sum(increase(synthmon_probe_runs_total{{{PSEL}, status=~"PASS|DEGRADED"}}[$__range]))'
                    " / sum(increase(synthmon_probe_runs_total"
                    f'{{{PSEL}, status=~"PASS|DEGRADED|FAIL"}}[$__range]))'
                ),
                unit="percentunit",
                description="Share of runs in the selected range that worked. ERROR runs (the monitor's own "
                "failures) are left out: they say nothing about the platform.",
                defaults={
                    "decimals": 2,
                    "min": 0,
                    "max": 1,
                    "thresholds": thresholds((None, "red"), (0.95, "orange"), (0.99, "green")),
                    "color": {"mode": "thresholds"},
                },
                width=3,
            ),
            series(
                "Duration p50 / p95",
                Target(quantile(0.5, "synthmon_probe_duration_seconds", PSEL), "p50"),
                Target(quantile(0.95, "synthmon_probe_duration_seconds", PSEL), "p95"),
                unit="s",
                width=12,
            ),
            stat(
                "Last run age",
                Target(f"time() - max(synthmon_probe_last_run_timestamp_seconds{{{PSEL}}})"),
                unit="s",
                description="Seconds since the last run started; stale (alert) above 2 x interval + 300 s.",
                defaults={
                    "thresholds": thresholds((None, "green"), (600, "orange"), (1200, "red")),
                    "color": {"mode": "thresholds"},
                },
                width=3,
            ),
            stat(
                "Consecutive failures",
                Target(f"max(synthmon_probe_consecutive_failures{{{PSEL}}})"),
                defaults={
                    "thresholds": thresholds((None, "green"), (1, "orange"), (3, "red")),
                    "color": {"mode": "thresholds"},
                },
                width=3,
            ),
        ],
        repeat="probe",
    )
    measurements = Row(
        "Artifacts and certificates",
        [
            series(
                "Artifact throughput",
                Target(
                    "max by (probe, step, measurement) "
                    f'(synthmon_step_measurement{{{SEL}, measurement=~".+_bytes_per_second"}})',
                    "{{probe}} {{step}} {{measurement}}",
                ),
                unit="Bps",
                description="Upload and download speed of the artifact round trip and of registration.",
                width=16,
                height=7,
            ),
            bargauge(
                "TLS certificate days left",
                # From the absolute expiry time: always current, however long ago the probe ran.
                Target(
                    "(min by (probe, step) "
                    f"(synthmon_tls_cert_expiry_timestamp_seconds{{{SEL}}}) - time()) / 86400",
                    "{{step}}",
                ),
                unit="d",
                defaults={
                    "min": 0,
                    "thresholds": thresholds((None, "red"), (14, "orange"), (30, "green")),
                    "color": {"mode": "thresholds"},
                },
                width=8,
                height=7,
            ),
        ],
    )
    # Replicas in several locations: which location sees what. One zone failing alone shows here
    # (and in the status page's Locations table) without paging; see README, "Locations".
    places = Row(
        "Locations",
        [
            timeline(
                "Probe status by location",
                Target(
                    f"min by (probe, location) (synthmon_probe_success{{{SEL}}})", "{{probe}} @ {{location}}"
                ),
                description="Each probe as each location sees it. A failure seen from one location only "
                "is that location's network, not the platform: it does not page.",
                width=16,
                height=6,
            ),
            bargauge(
                "Failing from each location",
                Target(
                    f"max by (probe, location) (synthmon_location_failing{{{SEL}}})",
                    "{{probe}} @ {{location}}",
                ),
                description="1 where a location sees the probe failing (its own view, synthmon_location_"
                "failing); an incident opens once enough locations agree (alerting.quorum).",
                width=8,
                height=6,
            ),
        ],
    )
    return dashboard(
        "synthmon-overview",
        "synthmon / overview",
        "Synthetic checks of the model registry platform: one row per probe.",
        [now, places, per_probe, measurements],
        [probe_var(multi=True)],
    )


def probe_detail() -> dict[str, Any]:
    """Step drill-down of one probe: step status, durations, HTTP status, HTTP phases, measurements."""
    ssel = PSEL + ', step=~"$step"'
    step_var = query_var("step", f"label_values(synthmon_step_success{{{PSEL}}}, step)", "Step")
    steps = Row(
        "Steps of $probe",
        [
            timeline(
                "Step status",
                Target(f"min by (step) (synthmon_step_success{{{ssel}}})", "{{step}}"),
                description="OK = PASS or DEGRADED. A step after a failed one is SKIPPED: FAILING here.",
                width=18,
                height=7,
            ),
            stat(
                "Checks of the last run",
                Target(f"max by (result) (synthmon_probe_checks{{{PSEL}}})", "{{result}}"),
                text_mode="value_and_name",
                description='The run\'s own "N/M passed": steps that passed, failed, or were skipped '
                "because an earlier one failed (alb_health: its checks, e.g. 9 passed, 1 failed).",
                overrides=[
                    {
                        "matcher": {"id": "byName", "options": name},
                        "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": color}}],
                    }
                    for name, color in (("passed", "green"), ("failed", "red"), ("skipped", "text"))
                ],
                width=6,
                height=7,
            ),
            series(
                "Step duration p95",
                Target(quantile(0.95, "synthmon_step_duration_seconds", ssel, "step"), "{{step}}"),
                unit="s",
                width=12,
                height=8,
            ),
            series(
                "Step duration p50",
                Target(quantile(0.5, "synthmon_step_duration_seconds", ssel, "step"), "{{step}}"),
                unit="s",
                width=12,
                height=8,
            ),
            series(
                "HTTP status by step",
                Target(f"max by (step) (synthmon_http_status_code{{{ssel}}})", "{{step}}"),
                description="HTTP status of each step's last exchange (0 or absent: no response).",
                defaults={"decimals": 0},
                width=12,
                height=8,
            ),
            series(
                "Runs by status",
                Target(
                    f"sum by (status) (increase(synthmon_probe_runs_total{{{PSEL}}}[$__rate_interval]))",
                    "{{status}}",
                ),
                bars=True,
                stack=True,
                overrides=status_overrides(),
                width=12,
                height=8,
            ),
        ],
    )
    phases = Row(
        "HTTP phases of $probe",
        [
            series(
                "HTTP phases (connect, TLS, time to first byte)",
                Target(
                    f'max by (step, phase) (synthmon_http_phase_duration_seconds{{{ssel}, phase!="total"}})',
                    "{{step}} {{phase}}",
                ),
                stack=True,
                unit="s",
                description="Slow connect/TLS: network, DNS or the ALB. Slow TTFB: the service.",
                width=12,
                height=8,
            ),
            series(
                "HTTP total time by step",
                Target(
                    f'max by (step) (synthmon_http_phase_duration_seconds{{{ssel}, phase="total"}})',
                    "{{step}}",
                ),
                unit="s",
                width=12,
                height=8,
            ),
        ],
    )
    # The history's own judgement (monitor/baselines): each step's usual latency over the baseline
    # window, and whether it is regressed now. step="" is the run as a whole.
    baseline = Row(
        "Latency of $probe against its baseline",
        [
            series(
                "Step duration p95 and its baseline",
                Target(quantile(0.95, "synthmon_step_duration_seconds", ssel, "step"), "{{step}} now"),
                Target(f"max by (step) (synthmon_latency_baseline_seconds{{{ssel}}})", "{{step}} baseline"),
                unit="s",
                description="The baseline is the step's usual latency (p95 over the last 7 days by "
                "default) from synthmon's history. It appears once a step has enough runs.",
                width=16,
                height=8,
            ),
            timeline(
                "Latency regression",
                Target(f"max by (step) (synthmon_latency_regression{{{ssel}}})", "{{step}}"),
                description="1 (FAILING here) while a step has been several times slower than its "
                "baseline for several runs in a row: its runs are DEGRADED with the cause "
                "latency_regression.",
                width=8,
                height=8,
            ),
        ],
    )
    measures = Row(
        "Measurements of $probe",
        [
            series(
                "Step measurements",
                Target(
                    f"max by (step, measurement) (synthmon_step_measurement{{{ssel}}})",
                    "{{step}} {{measurement}}",
                ),
                description="Numeric facts the probe reports (bytes/s, certificate days left, ...).",
                width=24,
                height=7,
            ),
        ],
    )
    return dashboard(
        "synthmon-probe",
        "synthmon / probe drill-down",
        "One probe, step by step: which step fails, how long each takes, and where the HTTP time goes.",
        [steps, phases, baseline, measures],
        [probe_var(multi=False), step_var],
    )


def monitor_health() -> dict[str, Any]:
    """The monitor itself: scrape health, build, scheduler (runs, missed runs, reloads), notifications."""
    process = Row(
        "synthmon process",
        [
            stat(
                "Scrape up",
                Target(f"min by (instance) (up{{{SEL}}})", "{{instance}}"),
                defaults={
                    "mappings": OK_MAPPING,
                    "thresholds": thresholds((None, "red"), (1, "green")),
                    "color": {"mode": "thresholds"},
                },
                width=6,
                height=5,
            ),
            stat(
                "Version",
                Target(f"max by (instance, version) (synthmon_build_info{{{SEL}}})", "{{version}}"),
                text_mode="name",
                defaults={"color": {"mode": "fixed", "fixedColor": "blue"}},
                width=6,
                height=5,
            ),
            series(
                "Scrape duration",
                Target(f"max by (instance) (scrape_duration_seconds{{{SEL}}})", "{{instance}}"),
                unit="s",
                width=12,
                height=5,
            ),
        ],
    )
    scheduler = Row(
        "Scheduler",
        [
            series(
                "Runs per minute by status",
                Target(
                    f"sum by (status) (rate(synthmon_probe_runs_total{{{SEL}}}[$__rate_interval])) * 60",
                    "{{status}}",
                ),
                stack=True,
                overrides=status_overrides(),
                width=12,
                height=8,
            ),
            series(
                "Missed runs",
                Target(
                    "sum by (probe) "
                    f"(increase(synthmon_scheduler_missed_runs_total{{{SEL}}}[$__rate_interval]))",
                    "{{probe}}",
                ),
                bars=True,
                description="Runs skipped because the previous run was still going or the loop was late.",
                width=12,
                height=8,
            ),
            bargauge(
                "Last run age by probe",
                Target(
                    f"time() - max by (probe) (synthmon_probe_last_run_timestamp_seconds{{{SEL}}})",
                    "{{probe}}",
                ),
                unit="s",
                defaults={
                    "min": 0,
                    "thresholds": thresholds((None, "green"), (600, "orange"), (1200, "red")),
                    "color": {"mode": "thresholds"},
                },
                width=12,
                height=7,
            ),
            stat(
                "Config reloads in range",
                Target(
                    f"sum by (result) (increase(synthmon_config_reloads_total{{{SEL}}}[$__range]))",
                    "{{result}}",
                ),
                text_mode="value_and_name",
                defaults={"decimals": 0, "color": {"mode": "fixed", "fixedColor": "blue"}},
                description="SIGHUP reloads by result; a rejected reload keeps the old config.",
                width=12,
                height=7,
            ),
        ],
    )
    notifications = Row(
        "Notifications",
        [
            series(
                "Notifications by channel and result",
                Target(
                    "sum by (channel, result) "
                    f"(increase(synthmon_notifications_total{{{SEL}}}[$__rate_interval]))",
                    "{{channel}} {{result}}",
                ),
                bars=True,
                stack=True,
                width=16,
                height=8,
            ),
            stat(
                "Failed sends in range",
                Target(
                    "sum by (channel) (increase(synthmon_notifications_total"
                    f'{{{SEL}, result!="{NOTIFY_OK}"}}[$__range]))'
                    f" / sum by (channel) (increase(synthmon_notifications_total{{{SEL}}}[$__range]))",
                    "{{channel}}",
                ),
                unit="percentunit",
                text_mode="value_and_name",
                defaults={
                    "decimals": 1,
                    "thresholds": thresholds((None, "green"), (0.1, "orange"), (0.5, "red")),
                    "color": {"mode": "thresholds"},
                },
                width=8,
                height=8,
            ),
        ],
    )
    store = Row(
        "Store, outbox and internal errors",
        [
            series(
                "Store errors by operation",
                Target(
                    f"sum by (operation) (increase(synthmon_store_errors_total{{{SEL}}}[$__rate_interval]))",
                    "{{operation}}",
                ),
                bars=True,
                description="Failed history, incident or outbox operations (SynthmonStoreFailing: 15 min).",
                width=8,
                height=7,
            ),
            series(
                "History buffer and outbox",
                Target(
                    f"max by (instance) (synthmon_history_buffer_depth{{{SEL}}})",
                    "buffered results {{instance}}",
                ),
                Target(f"sum by (channel) (synthmon_outbox_pending{{{SEL}}})", "outbox {{channel}}"),
                description="Results waiting for the store, and notifications waiting to be delivered.",
                width=8,
                height=7,
            ),
            series(
                "Sink and housekeeping errors",
                Target(
                    f"sum by (sink) (increase(synthmon_sink_errors_total{{{SEL}}}[$__rate_interval]))",
                    "sink {{sink}}",
                ),
                # Housekeeping jobs are labelled `task`: `job` belongs to Prometheus (scrape target).
                Target(
                    f"sum by (task) (increase(synthmon_job_errors_total{{{SEL}}}[$__rate_interval]))",
                    "job {{task}}",
                ),
                bars=True,
                width=8,
                height=7,
            ),
        ],
    )
    return dashboard(
        "synthmon-monitor",
        "synthmon / monitor health",
        "Is the monitor itself healthy: scraped, scheduling every probe, delivering notifications.",
        [process, scheduler, notifications, store],
        [],
    )


#: File name -> builder. The tests iterate over this.
DASHBOARDS = {
    "synthmon-overview.json": overview,
    "synthmon-probe.json": probe_detail,
    "synthmon-monitor.json": monitor_health,
}


def render(builder_name: str) -> str:
    """The exact file content for one dashboard (stable key order, trailing newline)."""
    return json.dumps(DASHBOARDS[builder_name](), indent=2) + "\n"


#: Where each alert's ``runbook_url`` points. ``{alert}`` becomes the alert name in lower case,
#: which is also the anchor of its "Runbook: <alert>" heading in docs/deploy.md. A build-time
#: setting, not a Prometheus external label: external labels ride on every alert and on every
#: remote-written or federated series, and a URL does not belong in a label set. Deployments that
#: host the runbooks elsewhere write their own copy with ``--runbook-url-pattern`` (see main).
RUNBOOK_URL_PATTERN = "https://synthmon.example.com/docs/deploy.md#runbook-{alert}"
#: The alert rules, relative to HERE (the committed copy carries RUNBOOK_URL_PATTERN's URLs).
RULES = Path("rules") / "synthmon.rules.yml"

_ALERT = re.compile(r"^\s*- alert: (\w+)\s*$")
_RUNBOOK_URL = re.compile(r"^(\s*runbook_url: ).*$")


def runbook_url(pattern: str, alert: str) -> str:
    """``pattern`` filled in for ``alert``; refuses patterns that would not give an absolute URL."""
    if "{alert}" not in pattern:
        raise ValueError(f"runbook URL pattern {pattern!r} has no {{alert}} placeholder")
    url = pattern.format(alert=alert.lower())
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"runbook URL pattern {pattern!r} does not give an absolute http(s) URL")
    return url


def render_rules(text: str, pattern: str = RUNBOOK_URL_PATTERN) -> str:
    """The rules file ``text`` with every alert's ``runbook_url`` set from ``pattern``.

    Line by line, so the comments and layout of the hand-written rules survive; every other line
    is left as it is.
    """
    out: list[str] = []
    alert: str | None = None
    for line in text.splitlines(keepends=True):
        if m := _ALERT.match(line):
            alert = m.group(1)
        elif m := _RUNBOOK_URL.match(line):
            if alert is None:
                raise ValueError("a runbook_url before the first alert")
            line = f'{m.group(1)}"{runbook_url(pattern, alert)}"\n'
        out.append(line)
    return "".join(out)


def main(argv: list[str]) -> int:
    """Write every dashboard and the rules' runbook URLs in place; ``--check`` only reports drift.

    ``--runbook-url-pattern PATTERN --rules-out FILE`` writes a copy of the rules whose
    ``runbook_url`` annotations follow PATTERN (for docs hosted elsewhere) and nothing else.
    """
    parser = argparse.ArgumentParser(description="Generate synthmon's dashboards and rule runbook URLs.")
    parser.add_argument("--check", action="store_true", help="only report files that differ (exit 1)")
    parser.add_argument("--runbook-url-pattern", help="e.g. https://wiki.example.com/synthmon/{alert}")
    parser.add_argument("--rules-out", type=Path, help="where to write the rules with that pattern")
    args = parser.parse_args(argv)
    rules = HERE / RULES
    if args.runbook_url_pattern or args.rules_out:
        if not (args.runbook_url_pattern and args.rules_out):
            parser.error("--runbook-url-pattern and --rules-out go together")
        try:
            content = render_rules(rules.read_text(), args.runbook_url_pattern)
        except ValueError as exc:
            parser.error(str(exc))
        args.rules_out.write_text(content)
        return 0
    files = {name: render(name) for name in DASHBOARDS}
    files[str(RULES)] = render_rules(rules.read_text())
    stale = []
    for name, content in files.items():
        path = HERE / name
        if path.exists() and path.read_text() == content:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(content)
    if args.check and stale:
        print("out of date: " + ", ".join(stale) + " (run: python dashboards/build.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
