"""``rebeam tree`` and ``rebeam events``: look at a running ``rebeam run`` from elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import nats
from rich.console import Console

from rebeam import _subjects
from rebeam._management_protocol import parse_reply, refusal_text
from rebeam.cli._common import FAILURES, add_target, admin_connect, nats_url
from rebeam.events import LifecycleEvent
from rebeam.local.instances import NoInstance
from rebeam.local.view import describe_event, render_tree


def add_parser(subparsers: Any) -> None:
    tree = subparsers.add_parser("tree", help="show the running tree")
    add_target(tree)
    tree.add_argument("--json", action="store_true", help="print the tree as JSON")
    tree.set_defaults(run=run_tree)

    events = subparsers.add_parser("events", help="follow lifecycle events")
    add_target(events)
    events.add_argument("--json", action="store_true", help="print each event as JSON")
    events.add_argument("--count", type=int, metavar="N", help="stop after N events")
    events.set_defaults(run=run_events)


def run_tree(args: argparse.Namespace) -> int:
    reply = ask(args, "tree", {})
    if reply is None:
        return 1
    if args.json:
        print(json.dumps(reply["ok"], indent=2))
    else:
        Console().print(render_tree(reply["ok"]))
    return 0


def ask(args: argparse.Namespace, operation: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The ``{"ok": ...}`` reply to one control request, or None once the failure or the
    refusal (its sentence and code) has been printed in one line."""
    try:
        reply: dict[str, Any] = asyncio.run(request(args, operation, body))
    except FAILURES as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return None
    if "error" in reply:
        print(f"rebeam: {refusal_text(operation, body.get('path'), reply)}", file=sys.stderr)
        return None
    return reply


async def request(args: argparse.Namespace, operation: str, body: dict[str, Any]) -> Any:
    """One control request to the running instance; its JSON reply."""
    nc, pid = await admin_connect(args)
    try:
        msg = await nc.request(
            _subjects.control(args.namespace, operation, pid), json.dumps(body).encode(), 30
        )
        return parse_reply(msg.data)
    except ValueError as exc:  # printed as the other ways of getting no usable answer
        raise NoInstance(f"no usable answer for namespace {args.namespace!r}: {exc}") from None
    except nats.errors.TimeoutError:
        raise NoInstance(
            f"no answer for namespace {args.namespace!r} within 30s: is a rebeam run or an "
            "operator serving it, with a supervisor there?"
        ) from None
    except nats.errors.NoRespondersError:
        raise NoInstance(
            f"no rebeam run or operator answers for namespace {args.namespace!r}"
        ) from None
    finally:
        await nc.close()


def run_events(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_follow(args))
    except FAILURES as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return 1


async def _follow(args: argparse.Namespace) -> int:
    url = nats_url(args)
    closing = False

    async def disconnected_cb() -> None:
        if not closing:
            print(f"rebeam: lost the connection to NATS at {url}; reconnecting", file=sys.stderr)

    async def reconnected_cb() -> None:
        print(f"rebeam: reconnected to NATS at {url}", file=sys.stderr)

    nc, _ = await admin_connect(
        args, disconnected_cb=disconnected_cb, reconnected_cb=reconnected_cb
    )
    nc.options["allow_reconnect"] = True  # following: a server restart is waited out
    seen = 0
    done = asyncio.Event()

    async def show(msg: Any) -> None:
        nonlocal seen
        try:
            event = LifecycleEvent.model_validate_json(msg.data)
        except ValueError:
            return  # not an event of ours
        print(msg.data.decode() if args.json else describe_event(event), flush=True)
        seen += 1
        if args.count and seen >= args.count:
            done.set()

    await nc.subscribe(_subjects.events_all(args.namespace), cb=show)
    try:
        await done.wait()
    finally:
        closing = True
        await nc.close()
    return 0
