"""The parsers of ``rebeam tree`` and ``rebeam events``."""

from __future__ import annotations

from typing import Any

from rebeam.cli.parsers._shared import Body, add_target


def add_parser(subparsers: Any) -> None:
    tree = subparsers.add_parser("tree", help="show the running tree")
    add_target(tree)
    tree.add_argument("--json", action="store_true", help="print the tree as JSON")
    tree.add_argument("--watch", action="store_true", help="redraw on lifecycle events, to Ctrl-C")
    tree.set_defaults(run=Body("rebeam.cli.inspect", "run_tree"))

    events = subparsers.add_parser("events", help="follow lifecycle events")
    add_target(events)
    events.add_argument("--json", action="store_true", help="print each event as JSON")
    events.add_argument("--count", type=int, metavar="N", help="stop after N events")
    events.add_argument(
        "--all",
        action="store_true",
        help="also the exits of programs connected with rebeam.connect (outside any tree)",
    )
    events.set_defaults(run=Body("rebeam.cli.inspect", "run_events"))
