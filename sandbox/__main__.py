"""``python -m sandbox up|fault|clear|status``: the sandbox command without the rest of synthmon."""

from __future__ import annotations

import argparse
import sys

from sandbox.cli import register


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` as ``sandbox <command> ...`` and run the command's handler."""
    root = argparse.ArgumentParser(prog="python -m sandbox")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(["sandbox", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
