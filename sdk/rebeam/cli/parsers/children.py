"""The parsers of ``rebeam start-child|terminate-child|restart-child|delete-child``."""

from __future__ import annotations

from typing import Any

from rebeam.cli.parsers._shared import Body, add_target

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
        parser.set_defaults(run=Body("rebeam.cli.children"), operation=operation)
