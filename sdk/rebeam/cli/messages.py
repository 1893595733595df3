"""``rebeam call|cast|send NAME JSON``: talk to an actor by registered name (or pid).

A reply is printed as JSON, with every pid in it as its string form
``<namespace>.<slot>.<incarnation>`` (README, "Pids on the command line"): the form NAME
accepts, so a pid from one command's output can be pasted into the next one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from rebeam._limits import loads_json
from rebeam.cli._common import FAILURES, client_node
from rebeam.errors import RebeamError
from rebeam.exits import ExitReason
from rebeam.pids import Pid


def run(args: argparse.Namespace) -> int:
    try:
        message = loads_json(args.message, what="the message")
    except ValueError as exc:  # not JSON, too large or nested too deep: one line, exit 2
        print(f"rebeam: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_talk(args, message))
    except (*FAILURES, RebeamError) as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return 1


async def _talk(args: argparse.Namespace, message: Any) -> int:
    dest: Pid | str = args.dest
    with contextlib.suppress(ValueError):  # not a pid: a registered name
        dest = Pid.parse(args.dest)
    node = await client_node(args)
    try:
        if args.kind == "call":
            reply = await node.call(dest, message, args.timeout)
            print(printable(reply))
        elif args.kind == "cast":
            await node.cast(dest, message)
        else:
            await node.send(dest, message)
    finally:
        await node.close()
    return 0


def printable(reply: Any) -> str:
    """A reply as one line of JSON: a pid as the text NAME accepts, an exit reason as its
    wire form (the form of lifecycle events), any other non-JSON value as its repr."""
    return json.dumps(reply, default=_as_json)


def _as_json(value: Any) -> Any:
    if isinstance(value, Pid):
        return str(value)
    if isinstance(value, ExitReason):
        return value.to_wire()
    return repr(value)
