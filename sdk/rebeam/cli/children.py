"""``rebeam start-child|terminate-child|restart-child|delete-child``: OTP's management API
against a running ``rebeam run``, by path (``shop/storage/cache``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rebeam._limits import loads_json
from rebeam.cli._common import add_target
from rebeam.cli.inspect import ask

HELP = {
    "start-child": "start a dynamic child of a simple_one_for_one supervisor",
    "terminate-child": "stop a child; it is not restarted until restart-child",
    "restart-child": "start a stopped child again",
    "delete-child": "forget a stopped child",
}


def add_parser(subparsers: Any) -> None:
    for operation, help_text in HELP.items():
        parser = subparsers.add_parser(operation, help=help_text)
        add_target(parser)
        what = "SUPERVISOR" if operation == "start-child" else "PATH"
        parser.add_argument("path", metavar=what, help="e.g. shop/storage or shop/storage/cache")
        if operation == "start-child":
            parser.add_argument("args", nargs="?", metavar="JSON", help="extra args, as JSON")
        parser.set_defaults(run=run, operation=operation)


def run(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"path": args.path}
    if getattr(args, "args", None) is not None:
        try:
            body["args"] = loads_json(args.args, what="the args")
        except ValueError as exc:  # not JSON, too large or nested too deep: one line, exit 2
            print(f"rebeam: {exc}", file=sys.stderr)
            return 2
    reply = ask(args, args.operation, body, f"rebeam: {args.operation} {args.path}")
    if reply is None:
        return 1
    print(reply["ok"] if reply["ok"] is not None else "ok")
    return 0
