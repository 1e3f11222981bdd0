"""Reading synthmon's Grafana dashboards the way Grafana does: panels, queries, template variables."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "dashboards"

#: Grafana's built-in interval variables, as a dashboard with a 1 s scrape interval would get them.
BUILTINS = {"__rate_interval": "15s", "__range": "1m", "__interval": "5s"}
_VAR = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class Query:
    """One panel target: where it comes from and its PromQL."""

    dashboard: str
    panel: str
    ref: str
    expr: str
    instant: bool

    @property
    def id(self) -> str:
        """A readable pytest id."""
        return f"{self.dashboard}/{self.panel}/{self.ref}"


def dashboard_files() -> list[Path]:
    """Every dashboard JSON file."""
    return sorted(DASHBOARD_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    """A dashboard document."""
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def panels(doc: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and panels nested in collapsed rows included."""
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries() -> list[Query]:
    """Every PromQL target of every dashboard."""
    out = []
    for path in dashboard_files():
        doc = load(path)
        for panel in panels(doc):
            for target in panel.get("targets", []):
                out.append(
                    Query(
                        doc["uid"],
                        panel["title"],
                        target["refId"],
                        target["expr"],
                        bool(target.get("instant")),
                    )
                )
    return out


def variable_queries() -> list[tuple[str, str, str]]:
    """``(dashboard uid, variable name, label_values query)`` of every query variable."""
    out = []
    for path in dashboard_files():
        doc = load(path)
        for var in doc["templating"]["list"]:
            if var["type"] == "query":
                out.append((doc["uid"], var["name"], var["definition"]))
    return out


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with ``$var`` / ``${var}`` replaced from ``values`` and Grafana's built-ins."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        merged = {**BUILTINS, **values}
        if name not in merged:
            raise KeyError(f"no value for ${name} in {expr!r}")
        return merged[name]

    return _VAR.sub(repl, expr)
