"""What every command shares: ``--config`` resolution, loading the config, opening the store, tables.

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
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO

from pydantic import ValidationError
from sqlalchemy.exc import ArgumentError

from monitor.config import Config, interpolate, load_config
from monitor.configfile import ConfigError, load_document, read_config_text
from monitor.store.config import StoreConfig
from monitor.store.database import Database
from monitor.store.engine import sqlite_path
from monitor.store.migrate import SchemaError

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
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
    try:
        return load_config(config_path(args))
    except ConfigError as exc:
        print(f"synthmon: invalid config: {exc}", file=err or sys.stderr)
        return None


@dataclass(frozen=True, slots=True)
class StoreSection:
    """What the store commands need from the config file."""

    store: StoreConfig
    probes: tuple[str, ...]

    def label(self) -> str:
        """Which store this is, safe to print: the absolute file for SQLite, else the masked URL."""
        path = sqlite_path(self.store.url)
        return f"sqlite:///{path}" if path is not None else self.store.safe_url()


def load_store_section(path: str, env: Mapping[str, str] | None = None) -> StoreSection:
    """The interpolated, validated ``store:`` section of the config file at ``path`` and its probe
    names, without validating (or needing the secrets of) anything else.

    Raises ``monitor.config.ConfigError`` naming the file and field.
    """
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
    try:
        return load_store_section(config_path(args))
    except ConfigError as exc:
        print(f"synthmon: invalid config: {exc}", file=err)
        return None


def open_database(section: StoreSection, err: TextIO, *, migrate: bool = False) -> Database | None:
    """The store's database (migrated first when ``migrate``), or None after one line on ``err``."""
    opener = Database.open if migrate else Database.open_existing
    try:
        return opener(section.store.url)
    except SchemaError as exc:
        print(f"synthmon: store {section.label()}: {exc}", file=err)
    except ArgumentError:
        # The parser's message may quote the URL, password and all.
        print("synthmon: invalid config: store.url: not a valid database URL", file=err)
    except Exception as exc:  # unreachable database: one line naming the (masked) store, not a traceback
        print(f"synthmon: cannot open store {section.label()}: {type(exc).__name__}", file=err)
    return None


#: ``fn(args, db, section, out, err) -> exit code``: a command body run with an open database.
StoreCommand = Callable[[argparse.Namespace, Database, StoreSection, TextIO, TextIO], int]


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


def print_table(out: TextIO, rows: list[dict[str, str]], columns: list[str]) -> None:
    """Rows as aligned columns (headers upper-cased), or ``(nothing)``."""
    if not rows:
        out.write("(nothing)\n")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    out.write("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() + "\n")
