"""The ``sandbox`` command: ``up``, ``fault``, ``clear``, ``status``.

``register(subparsers)`` adds it to any argparse root (``synthmon`` wires it in; ``python -m sandbox``
has its own root). Every handler takes the parsed args and returns the exit code:
0 success, 1 failure (not running, start failed, a child died), 2 usage error (unknown fault).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from sandbox.faults import DELAY_NAMES, FAULTS, UnknownFaultError, validate_delays, validate_fault_names

if TYPE_CHECKING:  # annotations only: functions import what they run (a fast --help)
    from sandbox.control import SandboxState
    from sandbox.core import Sandbox


#: Where ``sandbox up`` keeps its database, artifacts, logs and state file unless told otherwise.
DEFAULT_WORKDIR = "sandbox-work"
#: The env file ``up`` always writes into the work directory (mode 0600: it holds the keys).
ENV_FILE_NAME = "sandbox.env"
#: The ``up`` options that override a :class:`sandbox.settings.Delays` default when given.
UP_DELAYS = ("auth_slow_s", "mlflow_slow_s", "artifacts_slow_s", "upstream_timeout_s")


def register(subparsers: Any) -> None:
    """Add ``sandbox up|fault|clear|status`` to an argparse ``add_subparsers()`` object."""
    parser = subparsers.add_parser("sandbox", help="the local platform: real MLflow, auth, registry, faults")
    commands = parser.add_subparsers(dest="sandbox_command", required=True, metavar="COMMAND")
    default_dir = os.environ.get("SYNTHMON_SANDBOX_DIR", DEFAULT_WORKDIR)

    def workdir_arg(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--workdir", type=Path, default=Path(default_dir), help=f"work directory (default {default_dir})"
        )

    up = commands.add_parser("up", help="run the sandbox in the foreground until Ctrl-C / SIGTERM")
    workdir_arg(up)
    up.add_argument("--fault", action="append", default=[], metavar="NAME", help="start with this fault")
    up.add_argument("--env-file", type=Path, help="also write the monitor's env vars here (KEY=VALUE)")
    up.add_argument("--auth-port", type=int, default=8101, help="auth listener port (default 8101)")
    up.add_argument("--registry-port", type=int, default=8102, help="registry listener port (default 8102)")
    up.add_argument("--timeout", type=float, default=180.0, help="start-up deadline in seconds")
    # No defaults here: cmd_up leaves an option not given to Delays, so building the parser does not
    # import the sandbox's settings (dataclasses) on every ``synthmon`` command.
    up.add_argument("--auth-slow-s", type=float, help="auth-slow delay")
    up.add_argument("--mlflow-slow-s", type=float, help="mlflow-slow delay")
    up.add_argument("--artifacts-slow-s", type=float, help="artifacts-slow delay")
    up.add_argument(
        "--upstream-timeout-s",
        type=float,
        help="proxy's MLflow timeout (mlflow-timeout answers 504 after it)",
    )
    up.set_defaults(func=cmd_up)

    fault = commands.add_parser("fault", help="activate faults on the running sandbox")
    workdir_arg(fault)
    fault.add_argument("names", nargs="+", metavar="NAME", help=f"one of: {', '.join(FAULTS)}")
    fault.add_argument("--only", action="store_true", help="replace the active faults instead of adding")
    fault.add_argument(
        "--delay",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help=f"set a slow fault's delay until the faults are cleared ({', '.join(DELAY_NAMES)})",
    )
    fault.set_defaults(func=cmd_fault)

    clear = commands.add_parser("clear", help="deactivate every fault")
    workdir_arg(clear)
    clear.set_defaults(func=cmd_clear)

    status = commands.add_parser("status", help="components, URLs and active faults")
    workdir_arg(status)
    status.set_defaults(func=cmd_status)


def env_lines(env: dict[str, str]) -> str:
    """``KEY=VALUE`` lines, as ``--env-file`` writes them."""
    return "".join(f"{key}={value}\n" for key, value in env.items())


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """Write the env vars to ``path``, readable by the owner only (it holds API keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(env_lines(env))


def _print_ready(box: Sandbox, env_files: list[Path], out: TextIO) -> None:
    from sandbox.settings import mask_key

    masked = {
        key: (mask_key(value) if value.startswith("hk_") else value) for key, value in box.env().items()
    }
    print("sandbox ready", file=out)
    print(f"  auth      {box.auth_url}", file=out)
    print(f"  registry  {box.registry_url}   (MLflow tracking URI {box.mlflow_tracking_uri})", file=out)
    print(f"  mlflow    {box.mlflow_url}/mlflow   (direct, for tests)", file=out)
    print(f"  faults    {', '.join(box.active_faults()) or 'none'}", file=out)
    print(f"  logs      {box.log_dir}", file=out)
    print("environment for the monitor (keys masked here; full values in the env file):", file=out)
    for key, value in masked.items():
        print(f"  {key}={value}", file=out)
    for path in env_files:
        print(f"  set -a; . {path}; set +a", file=out)
    print("Ctrl-C stops everything.", file=out, flush=True)


@contextlib.contextmanager
def _progress(stream: TextIO, timeout_s: float) -> Iterator[None]:
    """While the block runs, a line on a terminal's ``stream`` saying how long the start has taken.

    A first start migrates MLflow's database and takes about a minute; without this line the
    terminal looks hung. Nothing is written when ``stream`` is not a terminal (pipes, tests, CI).
    The redrawing thread waits on an event set when the block ends, so it never outlives it.
    """
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        yield
        return
    done = threading.Event()
    started = time.monotonic()

    def draw() -> None:
        while True:
            elapsed = time.monotonic() - started
            stream.write(
                f"\r\x1b[Kstarting: {elapsed:.0f} s of at most {timeout_s:.0f} s "
                "(a first start migrates MLflow's database)"
            )
            stream.flush()
            if done.wait(1.0):
                return

    thread = threading.Thread(target=draw, name="sandbox-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=2.0)
        stream.write("\r\x1b[K")
        stream.flush()


def cmd_up(args: argparse.Namespace) -> int:
    """Start the sandbox, print how to reach it, and run until SIGINT/SIGTERM (then stop every child)."""
    from sandbox.core import Sandbox, SandboxStartError
    from sandbox.settings import Delays

    try:
        faults = validate_fault_names(args.fault)
    except UnknownFaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    given = {name: getattr(args, name) for name in UP_DELAYS}
    delays = Delays(**{name: value for name, value in given.items() if value is not None})
    box = Sandbox(
        args.workdir, auth_port=args.auth_port, registry_port=args.registry_port, faults=faults, delays=delays
    )
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"starting sandbox in {box.workdir} ...", flush=True)
        try:
            with _progress(sys.stderr, args.timeout):
                box.start(timeout_s=args.timeout)
        except SandboxStartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if stop_requested.is_set():
            return 0
        env_files = [box.workdir / ENV_FILE_NAME, *([args.env_file] if args.env_file else [])]
        for path in env_files:
            write_env_file(path, box.env())
        _print_ready(box, env_files, sys.stdout)
        # Wake up once a second to notice a child that died on its own.
        while not stop_requested.wait(1.0):
            if not box.running:
                print(
                    f"error: a sandbox process exited unexpectedly; see the logs in {box.log_dir}",
                    file=sys.stderr,
                )
                return 1
        print("stopping sandbox ...", flush=True)
        return 0
    finally:
        box.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _control(args: argparse.Namespace) -> SandboxState | None:
    from sandbox.control import SandboxNotRunningError, SandboxState

    try:
        return SandboxState.read(args.workdir)
    except SandboxNotRunningError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _delay_arg(text: str) -> tuple[str, object]:
    """``artifacts_slow_s=1.5`` as a name and a number (checked by ``validate_delays``)."""
    name, sep, value = text.partition("=")
    try:
        return name.strip(), float(value) if sep else None
    except ValueError:
        raise ValueError(f"--delay {text!r}: want NAME=SECONDS") from None


def cmd_fault(args: argparse.Namespace) -> int:
    """Activate faults (added to the active ones, or replacing them with ``--only``)."""
    from sandbox.control import FaultControlError, SandboxNotRunningError

    try:
        names = validate_fault_names(args.names)
        delays = validate_delays(dict(_delay_arg(d) for d in args.delay))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    state = _control(args)
    if state is None:
        return 1
    control = state.control()
    try:
        if delays:
            control.set_delays(**delays)
        if args.only:
            active = control.set_faults(*names)
        else:
            active = control.set_faults(*control.active_faults(), *names)
    except (SandboxNotRunningError, FaultControlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"active faults: {', '.join(active) or 'none'}")
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    """Deactivate every fault."""
    from sandbox.control import FaultControlError, SandboxNotRunningError

    state = _control(args)
    if state is None:
        return 1
    try:
        state.control().clear_faults()
    except (SandboxNotRunningError, FaultControlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("active faults: none")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print the components, their URLs and pids, and the active faults; 1 when not running."""
    from sandbox.control import FaultControlError, SandboxNotRunningError

    state = _control(args)
    if state is None:
        return 1
    try:
        active = state.control().active_faults()
    except (SandboxNotRunningError, FaultControlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"sandbox running (owner pid {state.owner_pid}), work directory {args.workdir}")
    print(f"  auth      {state.auth_url}   (platform pid {state.platform_pid})")
    print(f"  registry  {state.registry_url}   (platform pid {state.platform_pid})")
    print(f"  mlflow    {state.mlflow_url}/mlflow   (pid {state.mlflow_pid})")
    print(f"  faults    {', '.join(active) or 'none'}")
    return 0
