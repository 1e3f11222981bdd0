"""The status page as pure functions: stored runs and open incidents in, a view model and HTML out.

What an on-call engineer needs without a terminal, top to bottom: a banner (every probe passing, or
each open incident with its root cause in words, the hint, the first action, the affected probes and
steps, since when), then one card per probe with its status, uptime over 24 h / 7 d / 30 d, a bar of
its last runs (oldest left, newest right, as gatus draws them), a bar per step, and the last failing
message in full.

The page is server-rendered HTML with inline CSS: no script, no build step, no external asset (it
must render on a locked-down network). Every text that comes from a run, a config or an incident is
HTML-escaped here, in one place (:func:`_e`); run messages are already masked by the runner.
Tooltips are the ``title`` attribute, so they work without JavaScript.
"""

from __future__ import annotations

import functools
import html
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from monitor.baselines.view import LatencyView, latency_html
from monitor.diagnosis import cause_title
from monitor.history.base import RunMark, StepMark
from monitor.locations_view import LocationsSnapshot
from monitor.locations_view import render_html as render_locations
from monitor.results import ProbeResult
from probes.base import Status

#: Runs per bar; the API and the page show the same number.
BAR_RUNS = 30

#: Uptime windows shown per probe, label → seconds.
UPTIME_WINDOWS: Mapping[str, float] = {"24h": 86400.0, "7d": 7 * 86400.0, "30d": 30 * 86400.0}

#: Seconds between automatic reloads of the page (a meta refresh: no script needed).
REFRESH_S = 30

#: A probe is stale when its newest run is older than this many usual gaps (plus a minute of slack
#: for jitter and a slow run): the monitor stopped probing it or stopped storing.
STALE_GAPS = 3

_COLOURS = {
    "PASS": "#2e7d32",
    "DEGRADED": "#f9a825",
    "FAIL": "#c62828",
    "ERROR": "#6a1b9a",
    "SKIPPED": "#9e9e9e",
}
_NONE_COLOUR = "#e0e0e0"


@dataclass(frozen=True, slots=True)
class Cell:
    """One run in a bar; ``status`` None when there is no run (or the run had no such step)."""

    status: str | None
    at: datetime | None = None
    duration_s: float = 0.0
    detail: str = ""

    def tooltip(self) -> str:
        """Time, status, duration and (for a failure) the failing step: the bar's hover text."""
        if self.at is None:
            return "no run"
        if self.status is None:
            return f"{_when(self.at)} · step not run"
        parts = [_when(self.at), self.status, human_duration(self.duration_s)]
        if self.detail:
            parts.append(self.detail)
        return " · ".join(parts)


@dataclass(frozen=True, slots=True)
class Failure:
    """The failing step of one run, with what diagnosis says about it."""

    probe: str
    step: str
    at: datetime
    status: str
    http_status: int | None
    error_class: str | None
    message: str
    cause: str | None
    hint: str | None
    action: str | None

    @property
    def title(self) -> str:
        """The cause in words (the diagnosis title), else the failing step and error."""
        if self.cause:
            return cause_title(self.cause)
        code = f" ({self.http_status})" if self.http_status else ""
        return f"{self.probe}: {self.step} failed{code}"


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step of a probe: its status in the latest run and its bar."""

    name: str
    status: str | None
    bar: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class ProbeCard:
    """One probe on the page."""

    name: str
    status: str | None
    last_run_at: datetime | None
    duration_s: float | None
    uptime: Mapping[str, float | None]
    bar: tuple[Cell, ...]
    steps: tuple[StepRow, ...]
    failing: Failure | None  # the latest run's failing step
    last_failure: Failure | None  # the newest failure among the recent runs (may be the latest)
    incident_id: str | None = None
    interval_s: float | None = None  # the usual gap between its runs, from the recent ones
    stale: bool = False  # no run for much longer than usual: the page may show an old state


@dataclass(frozen=True, slots=True)
class Member:
    """A probe taking part in an incident, and the step it fails at (None when not known)."""

    probe: str
    step: str | None


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An open incident as the page shows it; ``root`` is the failure that names its cause."""

    incident_id: str
    since: datetime
    members: tuple[Member, ...]
    root: Failure | None

    @property
    def title(self) -> str:
        """The root cause in words, or who fails when nothing was diagnosed."""
        if self.root is not None:
            return self.root.title
        return "Failing: " + ", ".join(m.probe for m in self.members)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the page and ``/api/v1/status`` show, taken at ``now``."""

    environment: str
    now: datetime
    probes: tuple[ProbeCard, ...]
    incidents: tuple[OpenIncident, ...] = field(default_factory=tuple)
    latency: LatencyView = field(default_factory=dict)  # latency baselines, by probe
    locations: LocationsSnapshot | None = None
    #: Ready-made (escaped) HTML sections of other features, shown after the banner (e.g. the SLOs).
    sections: tuple[str, ...] = ()


# ---- from runs to the view model ------------------------------------------------------------------


def failure_of(result: ProbeResult) -> Failure | None:
    """The failing step of ``result`` (FAIL or ERROR) with its diagnosis, or None."""
    step = result.failing_step
    if step is None:
        return None
    diag = step.diagnosis
    return Failure(
        probe=result.probe,
        step=step.name,
        at=result.started_at,
        status=step.status.value,
        http_status=step.http_status,
        error_class=step.error_class,
        message=step.message,
        cause=diag.cause if diag else None,
        hint=diag.hint if diag else None,
        action=(diag.action or None) if diag else None,
    )


def _detail(failing: str | None, steps: Sequence[StepMark]) -> str:
    if failing is None:
        return ""
    code = next((s.http_status for s in steps if s.name == failing), None)
    return f"failed at {failing}" + (f" ({code})" if code else "")


def _pad(cells: list[Cell], n: int) -> tuple[Cell, ...]:
    """Oldest left, newest right, padded on the left so every bar has ``n`` cells."""
    cells = list(reversed(cells[:n]))
    return tuple([Cell(None)] * (n - len(cells)) + cells)


def newest_failing(marks: Sequence[RunMark]) -> RunMark | None:
    """The newest FAIL or ERROR run among ``marks`` (newest first)."""
    return next((m for m in marks if m.status in (Status.FAIL, Status.ERROR)), None)


def usual_interval(marks: Sequence[RunMark]) -> float | None:
    """The median gap between consecutive runs (newest first), or None with fewer than three runs."""
    gaps = sorted((a.started_at - b.started_at).total_seconds() for a, b in itertools.pairwise(marks))
    return gaps[len(gaps) // 2] if len(gaps) >= 2 else None


def probe_card(
    name: str,
    marks: Sequence[RunMark],
    full: Mapping[str, ProbeResult],
    uptime: Mapping[str, float | None],
    *,
    now: datetime,
    bar_runs: int = BAR_RUNS,
    incident_id: str | None = None,
) -> ProbeCard:
    """The card of probe ``name`` at ``now`` from its recent runs (``marks``, newest first) and the
    stored runs ``full`` holds by run id (at least the newest run and the newest failing one, for
    their messages and diagnoses)."""
    runs = list(marks[:bar_runs])
    latest = runs[0] if runs else None
    interval = usual_interval(runs)
    stale = bool(
        latest and interval and (now - latest.started_at).total_seconds() > STALE_GAPS * interval + 60
    )
    bar = _pad(
        [Cell(r.status.value, r.started_at, r.duration_s, _detail(r.failing_step, r.steps)) for r in runs],
        bar_runs,
    )
    # Step order: the latest run's, then steps only older runs had (a renamed or removed check).
    names: list[str] = []
    for r in runs:
        names += [s.name for s in r.steps if s.name not in names]
    by_name = [{s.name: s for s in r.steps} for r in runs]
    steps = []
    for step_name in names:
        cells = []
        for r, named in zip(runs, by_name, strict=True):
            step = named.get(step_name)
            if step is None:
                cells.append(Cell(None, r.started_at))
            else:
                failed = step.status in (Status.FAIL, Status.ERROR)
                detail = _detail(step.name, [step]) if failed else ""
                cells.append(Cell(step.status.value, r.started_at, step.duration_s, detail))
        current = by_name[0].get(step_name) if by_name else None
        steps.append(StepRow(step_name, current.status.value if current else None, _pad(cells, bar_runs)))
    latest_run = full.get(latest.run_id) if latest else None
    failed_mark = newest_failing(runs)
    failed_run = full.get(failed_mark.run_id) if failed_mark else None
    return ProbeCard(
        name=name,
        status=latest.status.value if latest else None,
        last_run_at=latest.started_at if latest else None,
        duration_s=latest.duration_s if latest else None,
        uptime=dict(uptime),
        bar=bar,
        steps=tuple(steps),
        failing=failure_of(latest_run) if latest_run else None,
        last_failure=failure_of(failed_run) if failed_run else None,
        incident_id=incident_id,
        interval_s=interval,
        stale=stale,
    )


# ---- small formatting helpers ----------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """``0.42 s``, ``12 s``, ``3 min``, ``2 h 5 min``: the unit that fits."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 90:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{hours // 24} d {hours % 24} h"


@functools.lru_cache(maxsize=4096)
def _when(at: datetime) -> str:
    # Cached: a run's time appears in its bar cell and in each of its step cells.
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ago(at: datetime, now: datetime) -> str:
    seconds = max(0.0, (now - at).total_seconds())
    return f"{human_duration(seconds)} ago"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"


def _e(text: object) -> str:
    """Escape anything for HTML text and attributes (quotes too)."""
    return html.escape(str(text), quote=True)


# ---- HTML ----------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f5f5;color:#212121}
header{background:#263238;color:#fff;padding:12px 24px}
header h1{margin:0;font-size:20px}
header .meta{font-size:13px;opacity:.8}
main{padding:16px 24px;max-width:1100px}
.banner{border-radius:6px;padding:12px 16px;margin-bottom:16px;color:#fff}
.banner h2{margin:0 0 6px 0;font-size:18px}
.banner.ok{background:#2e7d32}
.banner.incident{background:#b71c1c}
.banner.down{background:#6d4c41}
.banner.stale{background:#ef6c00}
.banner p{margin:4px 0 0 0}
.banner dl{margin:6px 0 0 0;display:grid;grid-template-columns:max-content 1fr;gap:2px 12px}
.banner dt{font-weight:600}
.banner dd{margin:0}
.card{background:#fff;border-radius:6px;padding:12px 16px;margin-bottom:12px;box-shadow:0 1px 2px #0002}
.card h3{margin:0;font-size:17px;display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
.status{font-weight:700;padding:1px 8px;border-radius:4px;color:#fff;font-size:13px}
.uptime{font-size:13px;color:#555}
.bar{display:flex;gap:2px;margin:6px 0}
.cell{flex:1;height:20px;border-radius:2px;min-width:4px}
.steps{width:100%;border-collapse:collapse;font-size:13px}
.steps td{padding:1px 6px 1px 0;vertical-align:middle}
.steps td.name{width:30%;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.steps td.st{width:80px}
.steps .bar{margin:0}
.steps .cell{height:12px}
.failure{border-left:4px solid #c62828;background:#fff5f5;padding:6px 10px;margin-top:8px;font-size:13px}
.failure pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;font-size:12px}
.muted{color:#757575}
b.stale{color:#ef6c00}
.latency{font-size:13px;margin-top:4px}
.latency.regressed{border-left:4px solid #ef6c00;background:#fff8e1;padding:4px 10px}
"""


def _badge(status: str | None) -> str:
    colour = _COLOURS.get(status or "", "#757575")
    return f'<span class="status" style="background:{colour}">{_e(status or "NO RUNS")}</span>'


def _bar(cells: Sequence[Cell], label: str) -> str:
    spans = "".join(
        f'<span class="cell" data-status="{_e(c.status or "none")}" '
        f'style="background:{_COLOURS.get(c.status or "", _NONE_COLOUR)}" title="{_e(c.tooltip())}"></span>'
        for c in cells
    )
    return f'<div class="bar" role="img" aria-label="{_e(label)}">{spans}</div>'


def _failure_html(f: Failure, now: datetime, *, heading: str) -> str:
    code = f" · HTTP {f.http_status}" if f.http_status else ""
    err = f" · {_e(f.error_class)}" if f.error_class else ""
    lines = [
        f"<div><b>{_e(heading)}</b> at step <b class='failing-step'>{_e(f.step)}</b>{code}{err}"
        f" · {_e(_when(f.at))} ({_e(_ago(f.at, now))})</div>"
    ]
    if f.cause:
        lines.append(f"<div>Cause: <b>{_e(f.title)}</b> <span class='muted'>({_e(f.cause)})</span></div>")
    if f.hint:
        lines.append(f"<div>Hint: {_e(f.hint)}</div>")
    if f.action:
        lines.append(f"<div>Action: {_e(f.action)}</div>")
    if f.message:
        lines.append(f"<pre class='message'>{_e(f.message)}</pre>")
    return f"<div class='failure'>{''.join(lines)}</div>"


def _stale_note(snapshot: Snapshot) -> str:
    stale = [p for p in snapshot.probes if p.stale and p.last_run_at]
    if not stale:
        return ""
    names = ", ".join(f"{p.name} ({_ago(p.last_run_at, snapshot.now)})" for p in stale if p.last_run_at)
    return (
        "<section class='banner stale' id='stale'><h2>No recent run: what is shown may be out of date"
        f"</h2><p>Last runs: {_e(names)}. Check that synthmon is running and can write to its store "
        "(<code>/healthz</code>, <code>/api/v1/store</code>).</p></section>"
    )


def _banner(snapshot: Snapshot) -> str:
    return _incidents_banner(snapshot) + _stale_note(snapshot)


def _incidents_banner(snapshot: Snapshot) -> str:
    if not snapshot.incidents:
        failing = [p.name for p in snapshot.probes if p.status in ("FAIL", "ERROR")]
        if failing:
            return (
                "<section class='banner incident' id='banner'><h2>Failing, no incident open yet: "
                f"{_e(', '.join(failing))}</h2></section>"
            )
        n = len(snapshot.probes)
        words = f"All {n} probes passing" if n != 1 else "The probe is passing"
        return f"<section class='banner ok' id='banner'><h2>{words}</h2></section>"
    parts = []
    for inc in snapshot.incidents:
        members = ", ".join(f"{m.probe} ({m.step})" if m.step else m.probe for m in inc.members)
        rows = [
            ("Since", f"{_when(inc.since)} ({_ago(inc.since, snapshot.now)})"),
            ("Affected", members),
        ]
        root = inc.root
        if root is not None:
            cause = f"{root.title} ({root.cause})" if root.cause else root.title
            rows.append(("Root cause", f"{cause} at {root.probe} / {root.step}"))
            if root.hint:
                rows.append(("Hint", root.hint))
            if root.action:
                rows.append(("Action", root.action))
        rows.append(("Incident", inc.incident_id))
        dl = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
        parts.append(
            f"<section class='banner incident' id='banner' data-incident='{_e(inc.incident_id)}'>"
            f"<h2>Incident open: {_e(inc.title)}</h2><dl>{dl}</dl></section>"
        )
    return "".join(parts)


def _card(p: ProbeCard, now: datetime, bar_runs: int, latency: LatencyView) -> str:
    uptime = " · ".join(f"{label} {_pct(p.uptime.get(label))}" for label in UPTIME_WINDOWS)
    last = (
        f"last run {_e(_when(p.last_run_at))} ({_e(_ago(p.last_run_at, now))}), "
        f"took {_e(human_duration(p.duration_s or 0.0))}"
        if p.last_run_at
        else "no run stored yet"
    )
    if p.interval_s:
        last += f"; runs every {_e(human_duration(p.interval_s))}"
    if p.stale:
        last = f"<b class='stale'>STALE</b> {last}"
    rows = "".join(
        f"<tr data-step='{_e(s.name)}'><td class='name' title='{_e(s.name)}'>{_e(s.name)}</td>"
        f"<td class='st'>{_badge(s.status) if s.status else '<span class=muted>not run</span>'}</td>"
        f"<td>{_bar(s.bar, f'{p.name} {s.name}: last {bar_runs} runs')}</td></tr>"
        for s in p.steps
    )
    failure = ""
    if p.failing is not None:
        failure = _failure_html(p.failing, now, heading="Failing")
    elif p.last_failure is not None:
        failure = (
            "<details><summary class='muted'>Last failure among the recent runs</summary>"
            f"{_failure_html(p.last_failure, now, heading='Failed')}</details>"
        )
    return (
        f"<section class='card' id='probe-{_e(p.name)}' data-probe='{_e(p.name)}' "
        f"data-status='{_e(p.status or 'none')}'>"
        f"<h3>{_e(p.name)} {_badge(p.status)} <span class='uptime'>uptime {uptime}</span></h3>"
        f"<div class='muted'>{last}</div>"
        f"{_bar(p.bar, f'{p.name}: last {bar_runs} runs')}"
        f"<table class='steps'>{rows}</table>{latency_html(latency, p.name)}{failure}</section>"
    )


def _document(environment: str, now: datetime, body: str) -> str:
    title = f"synthmon — {environment}" if environment else "synthmon"
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='refresh' content='{REFRESH_S}'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><div class='meta'>as of {_e(_when(now))}; "
        f"reloads every {REFRESH_S} s; bars: last runs, oldest left, newest right</div></header>"
        f"<main>{body}</main></body></html>"
    )


def render(snapshot: Snapshot, *, bar_runs: int = BAR_RUNS) -> str:
    """The status page for ``snapshot``."""
    cards = "".join(_card(p, snapshot.now, bar_runs, snapshot.latency) for p in snapshot.probes)
    if not snapshot.probes:
        cards = "<p class='muted'>No run stored yet: the first results appear after the first probe runs.</p>"
    places = render_locations(snapshot.locations, _badge) if snapshot.locations is not None else ""
    return _document(
        snapshot.environment, snapshot.now, _banner(snapshot) + "".join(snapshot.sections) + places + cards
    )


def render_unavailable(environment: str, now: datetime, reason: str) -> str:
    """The page shown when the store cannot be read: what is wrong, and that probing goes on."""
    body = (
        "<section class='banner down' id='banner'><h2>Status unavailable: the history store cannot be read"
        f"</h2><p>{_e(reason)}. Probing and <code>/metrics</code> go on; results wait in memory and "
        "are stored, and shown here, as soon as the store answers again. <code>/api/v1/store</code> "
        "says whether it is ready.</p></section>"
    )
    return _document(environment, now, body)
