"""``rebeam call|cast|send NAME JSON``: talk to an actor by registered name (or pid)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from rebeam._api import connect
from rebeam._limits import loads_json
from rebeam.cli._common import add_target, credentials, nats_ca, nats_url
from rebeam.errors import RebeamError
from rebeam.local.control import NoInstance
from rebeam.pids import Pid


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
        parser.set_defaults(run=run, kind=kind)


def run(args: argparse.Namespace) -> int:
    try:
        message = loads_json(args.message, what="the message")
    except ValueError as exc:  # not JSON, too large or nested too deep: one line, exit 2
        print(f"rebeam: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_talk(args, message))
    except (NoInstance, RebeamError, OSError) as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return 1


async def _talk(args: argparse.Namespace, message: Any) -> int:
    dest: Pid | str = args.dest
    with contextlib.suppress(ValueError):  # not a pid: a registered name
        dest = Pid.parse(args.dest)
    async with connect(
        nats_url(args),
        namespace=args.namespace,
        lease=False,
        credentials=credentials(args),
        tls_ca=nats_ca(args),
    ) as node:
        if args.kind == "call":
            reply = await node.call(dest, message, args.timeout)
            print(json.dumps(reply, default=repr))
        elif args.kind == "cast":
            await node.cast(dest, message)
        else:
            await node.send(dest, message)
    return 0
