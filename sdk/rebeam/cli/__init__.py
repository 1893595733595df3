"""The ``rebeam`` command line. Each subcommand's parser lives in :mod:`rebeam.cli.parsers`
(``add_parser(subparsers)``), its body in its own module here, imported only when the command
runs: ``--version``, ``--help`` and a usage error cost argparse, not the SDK and nats-py.

Exit codes (README, "CLI errors"): 0 done, 1 the command failed (problems found, no running
instance, a supervisor gave up), 2 a usage error or refused input (nothing was done), 70 an
internal error. A user never sees a Python traceback unless they ask for it with ``--debug``
or ``REBEAM_DEBUG=1``: an unexpected exception is one line naming it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, Final

from rebeam.cli.parsers import COMMANDS

__all__ = ["EXIT_INTERNAL", "main"]

EXIT_INTERNAL: Final = 70  # EX_SOFTWARE in sysexits.h
DEBUG_HELP: Final = "show the Python traceback of an internal error (also: REBEAM_DEBUG=1)"


class _Parser(argparse.ArgumentParser):
    """argparse's parser (its subcommands' parsers are of the same class), less one defect.

    Python 3.11's argparse takes ``--`` given as a positional's value (``rebeam call NAME
    --``) for the end of the options a second time, drops it, and hands the positional an
    empty list where every command expects a string. It is refused as the usage error it
    is."""

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        if not action.option_strings and action.nargs is None and arg_strings == ["--"]:
            self.error(f"argument {action.metavar or action.dest}: expected a value, not '--'")
        return super()._get_values(action, arg_strings)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rebeam",
        description="Erlang/OTP supervision trees, registry and messaging for Python.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--version", action="version", version=f"rebeam {installed_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
    # Also after the subcommand, where users type it; SUPPRESS keeps a --debug given before
    # the subcommand from being reset by the subcommand's default.
    for sub in subparsers.choices.values():
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def installed_version() -> str:
    """The version of the installed ``rebeam`` distribution (what pip installed), not a
    constant in the source that could drift from it."""
    try:
        return importlib.metadata.version("rebeam")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return _exit_code(exc)
    debug = args.debug or os.environ.get("REBEAM_DEBUG", "") not in ("", "0")
    try:
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe fails here, where it is handled, not at exit
        return code
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:
        return _exit_code(exc)
    except BrokenPipeError:
        # The reader went away (`rebeam tree | head`): nothing left to say to anyone. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if debug:
            traceback.print_exc()
        print(_internal_error(exc), file=sys.stderr)
        return EXIT_INTERNAL


def _internal_error(exc: Exception) -> str:
    detail = " ".join(str(exc).split())  # one line, whatever the exception says
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return (
        f"rebeam: internal error: {type(exc).__name__}: {detail} "
        "(please report; --debug shows the traceback)"
    )


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)  # sys.exit("message") means: print it, exit 1
    return 1


if __name__ == "__main__":
    sys.exit(main())
