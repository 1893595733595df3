"""The parsers of ``rebeam call|cast|send NAME JSON``."""

from __future__ import annotations

from typing import Any

from rebeam.cli.parsers._shared import Body, add_target


def add_parser(subparsers: Any) -> None:
    for kind, help_text in (
        ("call", "call an actor and print its reply"),
        ("cast", "cast a message to an actor (handle_cast)"),
        ("send", "send a plain message to an actor (handle_info)"),
    ):
        parser = subparsers.add_parser(kind, help=help_text)
        add_target(parser)
        parser.add_argument("dest", metavar="NAME", help="a registered name, or a pid")
        parser.add_argument("message", metavar="JSON", help="the message, as JSON")
        if kind == "call":
            parser.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
        parser.set_defaults(run=Body("rebeam.cli.messages"), kind=kind)
