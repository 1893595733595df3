"""The parser of ``rebeam mailbox ls|parked|replay``."""

from __future__ import annotations

from typing import Any

from rebeam.cli.parsers._shared import Body, add_target

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    run = Body("rebeam.cli.mailbox")
    parser = subparsers.add_parser("mailbox", help="durable mailboxes: list, parked, replay")
    sub = parser.add_subparsers(dest="mailbox_command", metavar="ACTION", required=True)
    ls = sub.add_parser("ls", help="the namespace's durable mailboxes and their counts")
    add_target(ls)
    ls.set_defaults(run=run)
    parked = sub.add_parser("parked", help="the parked messages of a slot")
    add_target(parked)
    parked.add_argument("slot", metavar="SLOT", help="the actor's slot (as `mailbox ls` shows)")
    parked.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    parked.set_defaults(run=run)
    replay = sub.add_parser("replay", help="give parked messages back to their mailbox")
    add_target(replay)
    replay.add_argument("slot", metavar="SLOT", help="the actor's slot (as `mailbox ls` shows)")
    replay.add_argument("seqs", metavar="SEQ", type=int, nargs="*", help="parked messages")
    replay.add_argument("--all", action="store_true", help="every parked message of the slot")
    replay.set_defaults(run=run)
