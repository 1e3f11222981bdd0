"""The status page's SLO section: one row per SLO with attainment, budget left and burn rates.

Pure: statuses in, HTML out, every text escaped here. The page (:mod:`monitor.statuspage`) places
the section after its banner; the styles are inline, as the page has no external asset.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from monitor.slo.config import window_text
from monitor.slo.evaluate import SloStatus

_STATE_COLOURS = {
    "ok": "#2e7d32",
    "page": "#c62828",
    "ticket": "#ef6c00",
    "exhausted": "#6d4c41",
    "no data": "#757575",
}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _pct(value: float | None, digits: int = 3) -> str:
    return "no data" if value is None else f"{value * 100:.{digits}f} %"


def _budget(value: float | None) -> str:
    if value is None:
        return "no data"
    return f"{max(value, 0.0) * 100:.0f} %" + (" (overspent)" if value < 0 else "")


def _rates(status: SloStatus) -> str:
    parts = [
        f"{window_text(w)} {'n/a' if r is None else f'{r:.1f}×'}" for w, r in sorted(status.rates.items())
    ]
    return " · ".join(parts)


def render_section(statuses: Sequence[SloStatus]) -> str:
    """The section's HTML (empty when there is no SLO)."""
    if not statuses:
        return ""
    rows = []
    for s in statuses:
        colour = _STATE_COLOURS.get(s.state, "#757575")
        remaining = s.budget_remaining
        width = 0.0 if remaining is None else min(max(remaining, 0.0), 1.0) * 100
        gauge = (
            "<span style='display:inline-block;width:80px;height:8px;background:#e0e0e0'>"
            f"<span style='display:block;width:{width:.0f}%;height:8px;background:{colour}'></span></span>"
        )
        rows.append(
            f"<tr data-slo='{_e(s.slo.slo_name)}' data-state='{_e(s.state)}'>"
            f"<td class='name'>{_e(s.slo.slo_name)}</td>"
            f"<td>{_e(f'{s.slo.objective:g} %')} / {_e(window_text(s.slo.window))}</td>"
            f"<td class='attainment' style='white-space:nowrap'>{_e(_pct(s.attainment))}</td>"
            f"<td class='budget' style='white-space:nowrap'>{gauge} {_e(_budget(remaining))}</td>"
            f"<td class='muted'>{_e(_rates(s))}</td>"
            f"<td><span class='status' style='background:{colour}'>{_e(s.state.upper())}</span></td></tr>"
        )
    head = "".join(
        f"<th style='text-align:left'>{h}</th>"
        for h in ("SLO", "objective / window", "attainment", "budget left", "burn rate", "state")
    )
    return (
        "<section class='card' id='slos'><h3>Service level objectives</h3>"
        "<div class='muted' style='font-size:13px'>good = PASS or DEGRADED, bad = FAIL; "
        "ERROR and SKIPPED runs do not count. "
        "Burn rate 1× spends exactly the budget over the window.</div>"
        f"<table class='steps'><tr>{head}</tr>{''.join(rows)}</table></section>"
    )
