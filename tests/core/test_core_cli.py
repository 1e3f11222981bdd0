"""The command line: help texts that document the daemon, and log masking in `once`."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from monitor.cli import build_parser, limit_malloc_arenas, main
from probes.registry import PROBE_KINDS
from tests.core import kinds

REPO = Path(__file__).resolve().parents[2]


def _help(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_run_help_names_env_vars_routes_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """`synthmon run --help` names every ${VAR} of the shipped config.yaml, the HTTP routes and exits."""
    text = _help("run", capsys=capsys)
    config_vars = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (REPO / "config.yaml").read_text())) - {"VAR"}
    assert config_vars, "config.yaml reads no environment variables?"
    assert sorted(v for v in config_vars if v not in text) == []
    for route in ("/metrics", "/healthz", "/readyz", "/api/v1/runs"):
        assert route in text
    assert re.search(r"^\s+1\s+the listen address", text, re.M)
    assert re.search(r"^\s+2\s+invalid config, or a store written by a newer synthmon", text, re.M)


def test_every_command_has_a_description() -> None:
    """Each top-level command's --help starts with a description, also those registered by other modules."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [name for name, sub in commands.choices.items() if not sub.description]
    assert missing == []
    assert {"history", "uptime", "silence", "demo"} <= set(commands.choices)


def test_history_help_shows_its_description(capsys: pytest.CaptureFixture[str]) -> None:
    """`synthmon history --help` says what the command does (its help text, as a sentence)."""
    assert "\nRecent runs from the store.\n" in _help("history", capsys=capsys)


def test_once_masks_library_logs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stdlib warning logged during `synthmon once` is forwarded as a JSON line with secrets masked."""
    monkeypatch.setitem(PROBE_KINDS, "t_stdlib_log", kinds.StdlibLogProbe)
    secret = "plain-secret-" + "z" * 16  # not key-shaped: only the config's secret list can mask it
    path = tmp_path / "config.yaml"
    path.write_text(
        "environment: t\nsecrets:\n  token: ${TOKEN}\nprobes:\n"
        "  - {name: p, kind: t_stdlib_log, options: {message: '${TOKEN}'}}\n"
    )
    monkeypatch.setenv("TOKEN", secret)
    code = main(["once", "--config", str(path), "--log-format", "json"])
    _out, err = capsys.readouterr()
    assert code == 0
    assert secret not in err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    forwarded = [line for line in lines if line.get("logger") == "some.library"]
    assert [line["event"] for line in forwarded] == ["retrying with **********"]


def test_help_loads_no_heavy_library() -> None:
    """Building the whole parser (what ``synthmon --help`` does) imports none of the libraries the
    commands themselves need: each command imports those when it runs."""
    heavy = [
        "sqlalchemy",
        "alembic",
        "pydantic",
        "httpx",
        "slack_sdk",
        "starlette",
        "uvicorn",
        "mlflow",
        "prometheus_client",
        "yaml",
        "apscheduler",
        "bcrypt",
        "asyncio",
    ]
    assert _loaded_by_help(heavy, top_level=True) == "[]"


def test_help_loads_no_metadata_logging_or_dataclasses() -> None:
    """``synthmon --help`` reads no distribution metadata and loads neither logging nor dataclasses:
    tens of milliseconds each, paid by every command that never logs or shows the version."""
    slow = ["importlib.metadata", "logging", "dataclasses", "secrets"]
    assert _loaded_by_help(slow, top_level=False) == "[]"


def _loaded_by_help(names: list[str], *, top_level: bool) -> str:
    """Which of ``names`` a fresh interpreter has imported after building the whole parser
    (``top_level``: compare top-level packages, so ``sqlalchemy.orm`` counts as ``sqlalchemy``)."""
    loaded = "{m.split('.')[0] for m in sys.modules}" if top_level else "set(sys.modules)"
    code = (
        "import sys\n"
        "from monitor.cli import build_parser\n"
        "build_parser().format_help()\n"
        f"print(sorted({loaded} & set({names!r})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout.strip()


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``synthmon --version`` prints the installed distribution's version on stdout and exits 0."""
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"synthmon {version('synthmon')}\n"


class _FakeLibc:
    """Records ``mallopt`` calls instead of changing this test process's allocator."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return 1


def _not_glibc(name: str) -> str:
    raise ValueError("unrecognized configuration name")


@pytest.mark.parametrize(
    ("confstr", "env", "expected"),
    [
        (lambda name: "glibc 2.36", None, [(-8, 2)]),
        (lambda name: "glibc 2.36", "4", []),
        (_not_glibc, None, []),
    ],
    ids=["glibc-capped", "env-set-wins", "not-glibc-untouched"],
)
def test_run_caps_glibc_malloc_arenas_unless_the_environment_sets_them(
    monkeypatch: pytest.MonkeyPatch,
    confstr: Callable[[str], str],
    env: str | None,
    expected: list[tuple[int, int]],
) -> None:
    """The daemon caps glibc's arenas at MALLOC_ARENAS (M_ARENA_MAX is -8); MALLOC_ARENA_MAX or
    another C library leaves the allocator as it is."""
    fake = _FakeLibc()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: fake)
    monkeypatch.setattr(os, "confstr", confstr)
    if env is None:
        monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    else:
        monkeypatch.setenv("MALLOC_ARENA_MAX", env)
    limit_malloc_arenas()
    assert fake.calls == expected
