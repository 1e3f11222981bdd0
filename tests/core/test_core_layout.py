"""The tree is the architecture: import rules between packages, one test file per probe kind,
modules of a readable size. Each failure names the offending file, line and import."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from probes.registry import PROBE_KINDS

ROOT = Path(__file__).resolve().parents[2]

#: (package, packages it must never import, why). Prefix match on dotted module names.
RULES: list[tuple[str, tuple[str, ...], str]] = [
    (
        "monitor.store",
        (
            "monitor.history",
            "monitor.alerting",
            "monitor.api",
            "monitor.daemon",
            "monitor.app",
            "monitor.cli",
        ),
        "the store is the bottom layer: it knows no feature",
    ),
    ("monitor.history", ("monitor.alerting",), "history and alerting are independent features"),
    ("monitor.history", ("monitor.slo",), "SLOs read history through its protocol, not the reverse"),
    ("monitor.alerting", ("monitor.slo",), "SLO burns reach alerting as runs; alerting knows no SLO"),
    (
        "monitor.slo",
        ("monitor.api", "monitor.daemon", "monitor.app", "monitor.cli"),
        "features are wired from above, never the other way",
    ),
    ("monitor.alerting", ("monitor.history",), "history and alerting are independent features"),
    (
        "monitor.history",
        ("monitor.api", "monitor.daemon", "monitor.app", "monitor.cli"),
        "features are wired from above, never the other way",
    ),
    (
        "monitor.alerting",
        ("monitor.api", "monitor.daemon", "monitor.app", "monitor.cli"),
        "features are wired from above, never the other way",
    ),
    (
        "monitor.daemon",
        ("monitor.history", "monitor.alerting", "monitor.slo", "monitor.app"),
        "the daemon knows no feature",
    ),
    ("monitor.api", ("monitor.app", "monitor.cli", "monitor.daemon"), "the API is wired by app.py"),
    ("probes", ("monitor", "sandbox"), "probes/ is the bottom of the graph"),
    ("sandbox", ("monitor", "probes"), "the sandbox stands alone; only the CLI wires it in"),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> Iterator[Path]:
    for package in ("monitor", "probes", "sandbox"):
        yield from sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (function-level imports count too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations() -> list[str]:
    """One line per import that breaks a rule: ``file:line: module imports X (why)``."""
    found = []
    for path in _sources():
        module = _module_name(path)
        for lineno, imported in _imports(path):
            for package, forbidden, why in RULES:
                if not _within(module, package):
                    continue
                for bad in forbidden:
                    if _within(imported, bad):
                        found.append(
                            f"{path.relative_to(ROOT)}:{lineno}: {module} imports {imported} ({why})"
                        )
            if module not in ("monitor.cli", "monitor.__main__") and _within(imported, "monitor.cli"):
                found.append(
                    f"{path.relative_to(ROOT)}:{lineno}: {module} imports {imported} "
                    "(monitor.cli loads the command modules; shared helpers are in monitor.cliutil)"
                )
    return sorted(set(found))


def test_import_rules_hold() -> None:
    """No module imports across the layer rules (store < features < api/daemon < app/cli)."""
    assert violations() == []


def test_the_rule_check_can_fail(tmp_path: Path) -> None:
    """The import scan sees function-level imports (so a late import cannot hide a cycle)."""
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from monitor.alerting.base import Event\n    return Event\n")
    assert (2, "monitor.alerting.base.Event") in list(_imports(source))


@pytest.mark.parametrize("kind", sorted(PROBE_KINDS))
def test_every_probe_kind_has_its_test_file(kind: str) -> None:
    """Each registered kind has tests/probes/test_probes_<kind>.py, and that file tests the kind."""
    path = ROOT / "tests" / "probes" / f"test_probes_{kind}.py"
    assert path.is_file(), f"missing {path.relative_to(ROOT)}"
    module = PROBE_KINDS[kind].__module__
    text = path.read_text(encoding="utf-8")
    assert f"kind: {kind}" in text or module in text, f"{path.name} never uses the {kind} kind"


def test_modules_stay_readable() -> None:
    """No product module grows past ~500 lines unless its docstring says why."""
    long = []
    for path in _sources():
        lines = path.read_text(encoding="utf-8").splitlines()
        doc = ast.get_docstring(ast.parse("\n".join(lines))) or ""
        if len(lines) > 520 and "long because" not in doc.lower():
            long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert long == []
