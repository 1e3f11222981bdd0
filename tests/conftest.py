"""Top-level test configuration: the sandbox fixtures (``sandbox``, ``faults``) for every test area."""

import sys
from pathlib import Path

import pytest

# pytest puts tests/ itself on sys.path (this conftest's directory has no __init__.py). There the
# directories tests/sandbox/ and tests/probes/ would be found first, as namespace packages named
# `sandbox` and `probes`, hiding the real packages (the editable install's finder comes after
# sys.path). The repository root goes in front so the real packages win.
_ROOT = str(Path(__file__).resolve().parent.parent)
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)

pytest_plugins = ["sandbox.pytest_plugin"]


@pytest.fixture(autouse=True)
def _ci_log_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables are laid out for the width of a CI log (100 columns, what the commands assume when
    stdout is not a terminal), also under pytest-xdist, whose workers run with ``COLUMNS=80``, and
    in a developer's narrower terminal. A test about the width sets its own ``COLUMNS``."""
    monkeypatch.setenv("COLUMNS", "100")
