"""What the CLI prints for people: tables that fit the terminal without cutting words, the full
message one flag away, progress only on a terminal, and ``once --record`` feeding ``report``."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.cliutil import StatusLine, print_table, shorten_words, wrap_words
from monitor.once_output import once_table
from monitor.report import render_report
from monitor.results import ProbeResult
from probes.base import Diagnosis, Status, StepResult
from tests.core.conftest import FAKE_KEY, REPO
from tests.core.target import Target

#: A message like the seed's: a long path (one word), hyphenated words, an exception's text.
LONG_MESSAGE = (
    "PUT /api/mlflow/api/2.0/mlflow-artifacts/artifacts/synthmon/2026-07-01/roundtrip-7f3a9c.bin "
    "answered 404, expected 200; the registry proxy returned a plain-text body and the upload failed "
    "with exception HTTPStatusError after retrying twice against registry.example.internal:443"
)
HINT = (
    "artifact route not deployed or not routed through the proxy "
    "(…/api/mlflow/api/2.0/mlflow-artifacts/… answers 404)"
)
WIDTHS = [60, 100, 200]


def _results() -> list[ProbeResult]:
    failing = StepResult(
        name="upload",
        status=Status.FAIL,
        duration_s=0.01,
        http_status=404,
        message=LONG_MESSAGE,
        diagnosis=Diagnosis(
            cause="artifact_route_not_deployed", hint=HINT, action="Check the proxy's artifact route."
        ),
    )
    long_name = StepResult(
        name="isolation_registry_has_no_auth_api", status=Status.PASS, duration_s=0.002, http_status=404
    )
    return [
        ProbeResult(
            probe="artifact_roundtrip",
            kind="artifact_roundtrip",
            run_id="r1",
            started_at=datetime(2026, 7, 1, tzinfo=UTC),
            duration_s=0.02,
            status=Status.FAIL,
            steps=(failing, StepResult(name="download", status=Status.SKIPPED)),
        ),
        ProbeResult(
            probe="alb_health",
            kind="alb_health",
            run_id="r2",
            started_at=datetime(2026, 7, 1, tzinfo=UTC),
            duration_s=1.5,
            status=Status.PASS,
            steps=(long_name,),
        ),
    ]


def _words(text: str) -> list[str]:
    return text.split()


def _assert_whole_words(rendered: str, source: str) -> None:
    """``source``'s words appear in ``rendered`` whole and in order: all of them, or (when the text
    was shortened) the first few, the last of them followed by "…". Nothing was split."""
    words = _words(rendered)
    expected = _words(source)
    start = words.index(expected[0])
    shown = words[start : start + len(expected)]
    for i, (got, want) in enumerate(zip(shown, expected, strict=False)):
        if got == want:
            continue
        assert got == want + "…", f"word {i} of the message is {got!r}, expected {want!r}"
        return
    assert shown == expected


@pytest.mark.parametrize("width", WIDTHS, ids=[f"width{w}" for w in WIDTHS])
def test_once_table_full_never_splits_a_word_and_keeps_the_whole_message(width: int) -> None:
    """With --full every word of a long message appears whole and in order, at any width."""
    text = once_table(_results(), width=width, full=True)
    _assert_whole_words(text, LONG_MESSAGE)
    assert LONG_MESSAGE.split()[-1] in text.split()  # not shortened
    _assert_whole_words(text, HINT)
    assert "--full" not in text


@pytest.mark.parametrize("width", WIDTHS, ids=[f"width{w}" for w in WIDTHS])
def test_once_table_fits_the_width_except_for_one_overlong_word(width: int) -> None:
    """Lines fit the width; a line may overflow only by a single word longer than the space (a path)."""
    text = once_table(_results(), width=width, full=True)
    for line in text.splitlines():
        if len(line) <= width:
            continue
        # The name columns alone may exceed a narrow terminal (a 34-character step name): such a line
        # holds no free text. Otherwise only a single word longer than the line may overflow.
        assert line.startswith(("PROBE / STEP", "  isolation_registry_has_no_auth_api")) or (
            len(line.split()) == 1
        ), line


@pytest.mark.parametrize("width", WIDTHS, ids=[f"width{w}" for w in WIDTHS])
def test_once_table_shortens_at_a_word_and_points_to_full(width: int) -> None:
    """By default a long message is cut between words with "…", and the table says how to see it whole."""
    text = once_table(_results(), width=width)
    _assert_whole_words(text, LONG_MESSAGE)
    _assert_whole_words(text, HINT)
    if LONG_MESSAGE.split()[-1] not in text.split():
        assert "(messages shortened; --full shows them whole)" in text
    assert "artifact_route_not_deployed" in text


def test_once_table_at_200_columns_shows_the_message_on_one_line() -> None:
    """A wide terminal shows the whole failing message without wrapping or shortening."""
    text = once_table(_results(), width=400)
    assert any(line.rstrip().endswith(LONG_MESSAGE) for line in text.splitlines())
    assert "--full" not in text


def test_narrow_terminal_puts_the_message_under_its_row() -> None:
    """When the name columns leave too little room, the message goes on indented lines below its row."""
    text = once_table(_results(), width=60, full=True)
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("  upload"))
    assert lines[row + 1].startswith("    PUT")
    assert lines[row + 2] == "    " + LONG_MESSAGE.split()[1]  # the path, whole, on a line of its own


@pytest.mark.parametrize("width", WIDTHS, ids=[f"width{w}" for w in WIDTHS])
def test_print_table_wraps_the_last_column_between_words(width: int) -> None:
    """``print_table`` (history, silences) wraps its last column at words to fit the terminal."""
    out = io.StringIO()
    rows = [{"id": "7", "probe": "registration", "reason": LONG_MESSAGE}]
    print_table(out, rows, ["id", "probe", "reason"], width=width)
    text = out.getvalue()
    assert text.splitlines()[0].split() == ["ID", "PROBE", "REASON"]
    assert _words(text)[5:] == _words(LONG_MESSAGE)  # whole, in order, nothing dropped or split


@pytest.mark.parametrize(
    ("text", "width", "expected"),
    [
        ("answered 404, expected 200", 100, "answered 404, expected 200"),
        ("answered 404, expected 200", 16, "answered 404,…"),
        ("mlflow-artifacts route missing", 12, "mlflow-artifacts…"),
    ],
    ids=["fits", "cut-between-words", "first-word-kept-whole"],
)
def test_shorten_words(text: str, width: int, expected: str) -> None:
    """Shortening cuts between words and keeps even an over-long first word whole."""
    assert shorten_words(text, width) == expected


def test_wrap_words_keeps_hyphenated_words_and_paths_whole() -> None:
    """Wrapping breaks neither at hyphens nor inside a path."""
    lines = wrap_words("see mlflow-artifacts at /api/mlflow/api/2.0/mlflow-artifacts/artifacts now", 10)
    assert "mlflow-artifacts" in lines
    assert "/api/mlflow/api/2.0/mlflow-artifacts/artifacts" in lines


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_status_line_draws_and_erases_on_a_terminal_only() -> None:
    """The progress line is drawn and erased on a TTY; a pipe or file gets nothing at all."""
    tty = _Terminal()
    with StatusLine(tty, lambda t: "synthmon once: 1/2 done, waiting for registration") as line:
        line.refresh()
    assert "synthmon once: 1/2 done, waiting for registration" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")
    pipe = io.StringIO()
    with StatusLine(pipe, lambda t: "never shown") as line:
        line.refresh()
    assert pipe.getvalue() == ""


def test_an_empty_report_never_says_every_probe_passed() -> None:
    """With no run at all the report says there is no data, not that every probe passed."""
    text = render_report([], [], environment="demo", generated_at=datetime(2026, 7, 1, tzinfo=UTC))
    assert "every probe passed" not in text.lower()
    assert "no probe has a run to act on" in text


# --- once --record feeds report ------------------------------------------------------------------


def _config(target: Target, store: str) -> str:
    return f"""\
environment: e2e
store:
  url: {store}
secrets:
  api_key: ${{SYNTHMON_API_KEY}}
probes:
  - name: health
    kind: http
    interval: 30s
    timeout: 2s
    options:
      url: {target.url}/health
      bearer_secret: api_key
      json_equals: {{status: healthy}}
"""


def _synthmon(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYNTHMON_API_KEY": FAKE_KEY, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_once_record_gives_report_a_previous_run_to_compare_with(target: Target, tmp_path: Path) -> None:
    """Two ``once --record`` runs (healthy, then failing) make ``report`` compare them: Regressed."""
    config = tmp_path / "config.yaml"
    config.write_text(_config(target, f"sqlite:///{tmp_path / 'history.db'}"))
    plain = _synthmon("once", "--config", str(config))
    assert plain.returncode == 0, plain.stderr
    empty = _synthmon("report", "--config", str(config))
    assert empty.returncode == 2  # without --record nothing was stored: there is no store yet
    first = _synthmon("once", "--record", "--config", str(config))
    assert first.returncode == 0, first.stderr
    assert "1 runs recorded in sqlite:///" in first.stderr
    target.mode = "error"
    second = _synthmon("once", "--record", "--config", str(config))
    assert second.returncode == 1, second.stderr
    report = _synthmon("report", "--config", str(config))
    assert report.returncode == 1, report.stderr
    comparison = report.stdout.split("## Comparison with previous run", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in comparison.splitlines() if line.startswith("| health |"))
    assert "PASS" in row.split("|")[2]
    assert "FAIL" in row.split("|")[3]
    assert row.rstrip().endswith("| **Regressed** |")
    assert FAKE_KEY not in report.stdout + first.stderr + second.stderr


def test_once_record_refuses_an_unusable_store_before_running(target: Target, tmp_path: Path) -> None:
    """A store ``--record`` cannot open is exit 2 with one line, and no probe runs first."""
    config = tmp_path / "config.yaml"
    (tmp_path / "a-file").write_text("")
    config.write_text(_config(target, f"sqlite:///{tmp_path / 'a-file' / 'history.db'}"))
    proc = _synthmon("once", "--record", "--config", str(config))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert target.requests == []


def test_sandbox_up_progress_on_a_terminal_only() -> None:
    """`sandbox up` shows how long the start has taken on a terminal's stderr, and nothing elsewhere."""
    from sandbox.cli import _progress

    tty = _Terminal()
    with _progress(tty, 180):
        pass
    assert "starting: 0 s of at most 180 s" in tty.getvalue()
    assert tty.getvalue().endswith("\r\x1b[K")
    pipe = io.StringIO()
    with _progress(pipe, 180):
        pass
    assert pipe.getvalue() == ""
