"""CLI commands ``synthmon slo`` (each SLO's attainment, budget left and burn rates) and
``synthmon slo rules`` (the Prometheus rules for the config's SLOs).

Like ``synthmon uptime`` they read only what they need from the config file (``store:``, the probe
names and ``slos:``), so they work without the probes' secrets; ``slo`` opens the store without
migrating it. Exit codes: 0 done, 2 bad config or unusable store.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from monitor.cliutil import EXIT_CONFIG, EXIT_OK, add_config_option, config_path, print_table

if TYPE_CHECKING:  # annotations only: the handlers import what they run (fast --help)
    from monitor.cliutil import StoreSection
    from monitor.slo.config import SloConfig


def register(subparsers: Any) -> None:
    """Add ``slo`` (and ``slo rules``) to the ``synthmon`` parser."""
    s = subparsers.add_parser("slo", help="SLOs: attainment, error budget left and burn rates")
    add_config_option(s)
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(func=cmd_slo)
    sub = s.add_subparsers(dest="slo_command", metavar="{rules}")
    r = sub.add_parser(
        "rules",
        help="print Prometheus recording and alert rules for the config's SLOs",
        description="Print Prometheus recording and alert rules for the config's SLOs.",
    )
    add_config_option(r)
    r.add_argument("-o", "--output", metavar="FILE", help="write the rules here instead of stdout")
    r.add_argument(
        "--runbook-url-pattern",
        metavar="PATTERN",
        help="runbook_url of the alerts, with {alert} for the lower-case alert name",
    )
    r.set_defaults(func=cmd_rules)


class SloSection(NamedTuple):
    """What the SLO commands need from the config file (a named tuple, for the reason
    :class:`monitor.cliutil.StoreSection` is one)."""

    store: StoreSection
    slos: tuple[SloConfig, ...]
    #: ``alerting.quorum.min_locations``: the generated rules judge locations as the daemon does.
    min_locations: int = 2


def load_slo_section(path: str) -> SloSection:
    """The store section, probe names and validated ``slos:`` of the config file at ``path``.

    Raises ``monitor.configfile.ConfigError`` naming the file, field path and line.
    """
    from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

    from monitor.alerting.config import QuorumConfig
    from monitor.cliutil import load_store_section
    from monitor.config import _to_config_error
    from monitor.configfile import interpolate, load_document, read_config_text
    from monitor.slo.config import SloConfig, check_slos  # noqa: F401 (pydantic reads it from locals)

    store = load_store_section(path)

    class _Alerting(BaseModel):
        model_config = ConfigDict(extra="ignore", frozen=True)
        quorum: QuorumConfig = Field(default_factory=QuorumConfig)

    class _Section(BaseModel):
        model_config = ConfigDict(extra="ignore", frozen=True)
        slos: list[SloConfig] = Field(default_factory=list)
        alerting: _Alerting = Field(default_factory=_Alerting)

        @model_validator(mode="after")
        def _cross(self, info: ValidationInfo) -> _Section:
            error = check_slos(self.slos, store.probes, retention_days=store.store.retention_days)
            if error is not None:
                raise error
            return self

    data, lines = load_document(read_config_text(path), source=path)
    doc = data if isinstance(data, dict) else {}
    alerting = doc.get("alerting")
    quorum = alerting.get("quorum") if isinstance(alerting, dict) else None
    section = interpolate({"slos": doc.get("slos") or [], "alerting": {"quorum": quorum or {}}}, os.environ)
    try:
        parsed = _Section.model_validate(section)
    except ValidationError as exc:
        raise _to_config_error(exc, lines, path, section) from None
    return SloSection(
        store=store, slos=tuple(parsed.slos), min_locations=parsed.alerting.quorum.min_locations
    )


def _section(args: argparse.Namespace, err: TextIO) -> SloSection | None:
    from monitor.configfile import ConfigError

    try:
        return load_slo_section(config_path(args))
    except ConfigError as exc:
        print(f"synthmon: invalid config: {exc}", file=err)
        return None


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def cmd_slo(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``synthmon slo``: per SLO the objective, window, attainment, budget left, burn rates, state."""
    from monitor.cliutil import open_database
    from monitor.history.sqlstore import SqlHistoryStore
    from monitor.slo.config import window_text
    from monitor.slo.evaluate import read_statuses
    from probes.base import SystemClock

    out, err = out or sys.stdout, err or sys.stderr
    section = _section(args, err)
    if section is None:
        return EXIT_CONFIG
    if not section.slos:
        print("synthmon: no SLO configured (add an slos: section to the config)", file=err)
        return EXIT_OK
    db = open_database(section.store, err)
    if db is None:
        return EXIT_CONFIG
    try:
        store = SqlHistoryStore(db, retention_days=section.store.store.retention_days)
        statuses = read_statuses(store, section.slos, SystemClock().now())
    finally:
        db.close()
    if args.json:
        out.write(json.dumps({"slos": [s.to_dict() for s in statuses]}, indent=2) + "\n")
        return EXIT_OK
    print(f"store: {section.store.label()}", file=out)
    rows = []
    for s in statuses:
        att, left = s.attainment, s.budget_remaining
        rows.append(
            {
                "slo": s.slo.slo_name,
                "objective": f"{s.slo.objective:g}%",
                "window": window_text(s.slo.window),
                "attainment": "no data" if att is None else f"{att * 100:.3f}%",
                "budget_left": "no data" if left is None else f"{left * 100:.1f}%",
                "state": s.state,
                "burn_rates": "  ".join(f"{window_text(w)} {_rate(r)}" for w, r in sorted(s.rates.items())),
            }
        )
    print_table(out, rows, ["slo", "objective", "window", "attainment", "budget_left", "state", "burn_rates"])
    return EXIT_OK


def cmd_rules(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``synthmon slo rules``: the Prometheus rules for the config's SLOs, on stdout or in a file."""
    from monitor.slo.rules import RUNBOOK_URL_PATTERN, render_rules

    out, err = out or sys.stdout, err or sys.stderr
    section = _section(args, err)
    if section is None:
        return EXIT_CONFIG
    pattern = args.runbook_url_pattern or RUNBOOK_URL_PATTERN
    if "{alert}" not in pattern:
        print("synthmon: --runbook-url-pattern must contain {alert}", file=err)
        return EXIT_CONFIG
    text = render_rules(section.slos, runbook_url_pattern=pattern, min_locations=section.min_locations)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        out.write(text)
    return EXIT_OK
