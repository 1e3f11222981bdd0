"""What every command shares: ``--config`` resolution, loading the config, opening the store, tables
that fit the terminal, a progress line.

Command modules (:data:`monitor.cli.COMMAND_MODULES`) import this module, never :mod:`monitor.cli`,
which imports them.

The store commands (history, uptime, silence, migrate, report) read only what they need from the
config file: the ``store:`` section, interpolated, and the probe names. So they work on a machine
without the probes' secrets (``SYNTHMON_API_KEY``), and a config broken elsewhere does not keep
on-call from reading history. Apart from ``migrate`` they open the store without migrating it and
refuse, with a clear message, a store that is missing or not at this synthmon's schema.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, NamedTuple, TextIO, TypeVar

if TYPE_CHECKING:  # only for annotations: importing them costs what ``synthmon --help`` must not
    from pathlib import Path

    from monitor.config import Config, ProbeConfig
    from monitor.results import ProbeResult
    from monitor.store.config import StoreConfig
    from monitor.store.database import Database

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
T = TypeVar("T")
DEFAULT_CONFIG = "./config.yaml"


def config_path(args: argparse.Namespace) -> str:
    """``--config``, else ``$SYNTHMON_CONFIG``, else ``./config.yaml``."""
    return str(getattr(args, "config", None) or os.environ.get("SYNTHMON_CONFIG") or DEFAULT_CONFIG)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Add the shared ``--config PATH`` option to a (sub)command parser."""
    # SUPPRESS: a subcommand's default must not overwrite `synthmon --config X <command>`.
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=f"config file (default: $SYNTHMON_CONFIG or {DEFAULT_CONFIG})",
    )


def load_or_report(args: argparse.Namespace, err: TextIO | None = None) -> Config | None:
    """The config, or None after printing its one error to stderr (the caller exits 2)."""
    from monitor.config import load_config
    from monitor.configfile import ConfigError

    try:
        return load_config(config_path(args))
    except ConfigError as exc:
        print(f"synthmon: invalid config: {exc}", file=err or sys.stderr)
        return None


class StoreSection(NamedTuple):
    """What the store commands need from the config file.

    A named tuple rather than a frozen dataclass: every command module imports this module, and
    :mod:`dataclasses` (with :mod:`inspect`) would be a tenth of what ``synthmon --help`` costs.
    """

    store: StoreConfig
    probes: tuple[str, ...]

    def sqlite_file(self) -> Path | None:
        """The absolute store file of a SQLite store, else None."""
        from monitor.store.url import parse_store_url

        return parse_store_url(self.store.url).sqlite_file()

    def label(self) -> str:
        """Which store this is, safe to print: the absolute file for SQLite, else the masked URL."""
        path = self.sqlite_file()
        return f"sqlite:///{path}" if path is not None else self.store.safe_url()


def load_store_section(path: str, env: Mapping[str, str] | None = None) -> StoreSection:
    """The interpolated, validated ``store:`` section of the config file at ``path`` and its probe
    names, without validating (or needing the secrets of) anything else.

    Raises ``monitor.config.ConfigError`` naming the file and field.
    """
    from pydantic import ValidationError

    from monitor.configfile import ConfigError, interpolate, load_document, read_config_text
    from monitor.store.config import StoreConfig

    text = read_config_text(path)
    data, _ = load_document(text, source=path)
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (environment:, probes:, ...)", source=path)
    try:
        section = interpolate(data.get("store") or {}, os.environ if env is None else env, ("store",))
        store = StoreConfig.model_validate(section)
    except ConfigError as exc:
        raise ConfigError(exc.reason, path=exc.path, source=path) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["store", *(str(p) for p in first["loc"])])
        raise ConfigError(first["msg"], path=where, source=path) from None
    probes = data.get("probes") or []
    names = tuple(str(p["name"]) for p in probes if isinstance(p, dict) and "name" in p)
    return StoreSection(store=store, probes=names)


def store_section(args: argparse.Namespace, err: TextIO) -> StoreSection | None:
    """The store section of ``--config``, or None after printing its one error (the caller exits 2)."""
    from monitor.configfile import ConfigError

    try:
        return load_store_section(config_path(args))
    except ConfigError as exc:
        print(f"synthmon: invalid config: {exc}", file=err)
        return None


def open_database(section: StoreSection, err: TextIO, *, migrate: bool = False) -> Database | None:
    """The store's database (migrated first when ``migrate``), or None after one line on ``err``."""
    from monitor.store.database import Database

    return open_or_report(section, err, Database.open if migrate else Database.open_existing)


def open_or_report(section: StoreSection, err: TextIO, opener: Callable[[str], T]) -> T | None:
    """``opener(url)`` of the store's URL, or None after one line on ``err`` naming the store (the
    caller exits 2): every store command reports a store it cannot use the same way."""
    from monitor.store.migrate import SchemaError

    try:
        return opener(section.store.url)
    except SchemaError as exc:
        print(f"synthmon: store {section.label()}: {exc}", file=err)
    except Exception as exc:  # unreachable database: one line naming the (masked) store, not a traceback
        # SQLAlchemy is loaded only if it parsed the URL; its parser's message may quote the URL,
        # password and all.
        sa_exc = sys.modules.get("sqlalchemy.exc")
        if sa_exc is not None and isinstance(exc, sa_exc.ArgumentError):
            print("synthmon: invalid config: store.url: not a valid database URL", file=err)
        else:
            print(f"synthmon: cannot open store {section.label()}: {type(exc).__name__}", file=err)
    return None


#: ``fn(args, db, section, out, err) -> exit code``: a command body run with an open database.
StoreCommand = Callable[[argparse.Namespace, "Database", StoreSection, TextIO, TextIO], int]


def with_store(fn: StoreCommand, *, migrate: bool = False) -> Callable[..., int]:
    """A command handler that loads the store section, opens the database, runs ``fn`` and closes it."""

    def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
        # Resolved per call, not at import: tests and wrappers may swap sys.stdout.
        out = out or sys.stdout
        err = err or sys.stderr
        section = store_section(args, err)
        if section is None:
            return EXIT_CONFIG
        db = open_database(section, err, migrate=migrate)
        if db is None:
            return EXIT_CONFIG
        try:
            return fn(args, db, section, out, err)
        finally:
            db.close()

    run.__doc__ = fn.__doc__
    return run


def terminal_width() -> int:
    """The terminal's columns (``$COLUMNS`` first), or 100 when stdout is a file or a pipe.

    100 rather than shutil's 80: a CI job log is read in a browser, where 80 wraps too much.
    """
    return shutil.get_terminal_size((100, 24)).columns


def wrap_words(text: str, width: int) -> list[str]:
    """``text`` (whitespace folded) in lines of at most ``width`` characters, broken only between
    words. A word longer than a line (a URL, a path) gets a line of its own, whole: a table that
    overflows by a path is still readable, a path cut in two is not."""
    return textwrap.wrap(
        " ".join(text.split()), width=max(width, 1), break_long_words=False, break_on_hyphens=False
    ) or [""]


def shorten_words(text: str, width: int) -> str:
    """``text`` (whitespace folded) in at most ``width`` characters, cut between words with "…".

    A first word longer than ``width`` is kept whole (and overflows) rather than cut.
    """
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    out = ""
    for word in flat.split(" "):
        candidate = f"{out} {word}" if out else word
        if len(candidate) + 1 > width:
            break
        out = candidate
    return (out or flat.split(" ")[0]) + "…"


def wrap_cell(text: str, width: int, max_lines: int | None = None) -> tuple[list[str], bool]:
    """``text`` wrapped at words into ``width``; with ``max_lines``, the last kept line ends in "…".

    Returns the lines and whether anything was left out.
    """
    lines = wrap_words(text, width)
    if max_lines is None or len(lines) <= max_lines:
        return lines, False
    kept = lines[:max_lines]
    kept[-1] = shorten_words(kept[-1] + " " + lines[max_lines], width)
    return kept, True


#: Below this many columns a wrapping column is unreadable: its text goes on lines of its own.
MIN_WRAP_WIDTH = 24


def table_lines(
    rows: Sequence[Sequence[str]], *, width: int, max_lines: int | None = None
) -> tuple[list[str], bool]:
    """Rows (the first is the header) as aligned columns fitting ``width`` where they can.

    The last column is the free text (a message, a reason): it gets what the others leave and
    wraps between words, continuation lines aligned under it. When that room is less than
    :data:`MIN_WRAP_WIDTH` or narrower than one of the text's words (a URL, a path), a text that
    does not fit goes under its row instead, indented, on the full width. Other columns are never
    wrapped (names, statuses, ids must stay whole). ``max_lines`` caps the lines of one cell
    (shortened with "…"). Returns the lines and whether any cell was shortened.
    """
    if not rows:
        return [], False
    fixed = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(fixed)]
    indent = sum(widths) + 2 * fixed
    room = width - indent
    out: list[str] = []
    shortened = False
    for n, row in enumerate(rows):
        head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:fixed]))
        text = " ".join(row[fixed].split()) if fixed < len(row) else ""
        if n == 0 or len(text) <= room:
            out.append((head + "  " + text).rstrip())
            continue
        below = room < MIN_WRAP_WIDTH or max(len(word) for word in text.split()) > room
        cell, cut = wrap_cell(text, width - 4 if below else room, max_lines)
        shortened = shortened or cut
        if below:
            out.append(head.rstrip())
            out.extend("    " + line for line in cell)
        else:
            out.append((head + "  " + cell[0]).rstrip())
            out.extend(" " * indent + line for line in cell[1:])
    return out, shortened


def print_table(
    out: TextIO, rows: list[dict[str, str]], columns: list[str], *, width: int | None = None
) -> None:
    """Rows as aligned columns (headers upper-cased), or ``(nothing)``.

    The last column wraps between words to fit the terminal (``width``, default
    :func:`terminal_width`); nothing is cut.
    """
    if not rows:
        out.write("(nothing)\n")
        return
    table = [[c.upper() for c in columns], *([str(r.get(c, "")) for c in columns] for r in rows)]
    lines, _ = table_lines(table, width=width if width is not None else terminal_width())
    out.write("".join(line + "\n" for line in lines))


class StatusLine:
    """One line of progress on a terminal, redrawn every second and erased when done.

    Only when ``stream`` is a TTY: in a pipeline, a test or a file, nothing extra is written.
    ``text(elapsed_s)`` says what is going on; it is cut to the terminal's width so that ``\r``
    always returns to the start of the line. Used as a context manager; the redrawing thread ends
    with the block (it waits on an event, so it is bounded by the block's own duration).
    """

    def __init__(self, stream: TextIO, text: Callable[[float], str], *, every_s: float = 1.0) -> None:
        self._stream = stream
        self._text = text
        self._every_s = every_s
        self._stop = threading.Event()
        # refresh() (the caller's thread) and the redrawing thread write the same line.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        try:
            self.enabled = stream.isatty()
        except (AttributeError, ValueError):
            self.enabled = False

    def __enter__(self) -> StatusLine:
        if self.enabled:
            self._started = time.monotonic()
            self._draw()
            self._thread = threading.Thread(target=self._loop, name="status-line", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=2.0)
            self._write("\r\x1b[K")

    def refresh(self) -> None:
        """Redraw now (after the state behind ``text`` changed)."""
        if self.enabled:
            self._draw()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            self._draw()

    def _draw(self) -> None:
        line = self._text(time.monotonic() - self._started)
        self._write("\r\x1b[K" + shorten_words(line, terminal_width() - 1))

    def _write(self, text: str) -> None:
        with self._lock:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):  # a closed terminal is no reason to fail the command
                self._stop.set()


class RunProgress:
    """What a one-off run of probes (``once``, ``report --run``) has finished and what it still waits
    for, as a result sink.

    Feeds a :class:`StatusLine` on a terminal's stderr: a registration run takes tens of seconds,
    and a silent terminal for that long looks hung.
    """

    def __init__(self, command: str, probes: Sequence[ProbeConfig]) -> None:
        self._command = command
        self._pending = [p.name for p in probes]
        self._total = len(self._pending)
        self._failed: list[str] = []
        self.on_change: Callable[[], None] = lambda: None

    async def handle(self, result: ProbeResult) -> None:
        """Mark ``result``'s probe done."""
        if result.probe in self._pending:
            self._pending.remove(result.probe)
        if not result.status.ok:
            self._failed.append(result.probe)
        self.on_change()

    def line(self, elapsed_s: float) -> str:
        """``synthmon once: 3/5 done (1 failed: auth), waiting for registration, ... (12 s)``."""
        done = self._total - len(self._pending)
        failed = f" ({len(self._failed)} failed: {', '.join(self._failed)})" if self._failed else ""
        waiting = f", waiting for {', '.join(self._pending)}" if self._pending else ""
        return f"{self._command}: {done}/{self._total} done{failed}{waiting} ({elapsed_s:.0f} s)"
