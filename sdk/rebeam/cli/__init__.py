"""The ``rebeam`` command line. Each subcommand lives in its own module and registers itself
with :func:`main`'s parser through an ``add_parser(subparsers)`` function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rebeam.cli import children, inspect, messages, run, secrets, validate

__all__ = ["main"]

COMMANDS = [run, validate, inspect, messages, children, secrets]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rebeam",
        description="Erlang/OTP supervision trees, registry and messaging for Python.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
