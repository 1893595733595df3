"""``rebeam tree`` and ``rebeam events``: look at a running ``rebeam run`` from elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any, Final

import nats
from rich.console import Console
from rich.live import Live

from rebeam import _subjects
from rebeam._management_protocol import parse_reply, refusal_text
from rebeam.cli._common import FAILURES, Unreachable, admin_connect, nats_url
from rebeam.events import LifecycleEvent
from rebeam.local.instances import NoInstance
from rebeam.observe.console import describe_event, render_tree
from rebeam.observe.treestate import NoTree, TreeFollower, client_event
from rebeam.pids import Pid

REDRAW_EVERY: Final = 0.5
"""``tree --watch`` redraws at most this often (seconds), however many events arrive: a
burst of restarts costs one tree request per interval, not one per event."""


def run_tree(args: argparse.Namespace) -> int:
    if args.watch:
        try:
            return asyncio.run(_watch(args))
        except FAILURES as exc:
            print(f"rebeam: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # how a watch is meant to end
            return 0
    reply = ask(args, "tree", {})
    if reply is None:
        return 1
    if args.json:
        print(json.dumps(reply["ok"], indent=2))
    else:
        console = Console()
        console.print(render_tree(reply["ok"], console.width))
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
        return await _request(nc, pid, args.namespace, operation, body)
    finally:
        await nc.close()


async def _request(nc: Any, pid: Pid, namespace: str, operation: str, body: dict[str, Any]) -> Any:
    try:
        msg = await nc.request(
            _subjects.control(namespace, operation, pid), json.dumps(body).encode(), 30
        )
        return parse_reply(msg.data)
    except ValueError as exc:  # printed as the other ways of getting no usable answer
        raise NoInstance(f"no usable answer for namespace {namespace!r}: {exc}") from None
    except nats.errors.TimeoutError:
        raise NoInstance(
            f"no answer for namespace {namespace!r} within 30s: is a rebeam run or an "
            "operator serving it, with a supervisor there?"
        ) from None
    except nats.errors.NoRespondersError:
        raise NoInstance(f"no rebeam run or operator answers for namespace {namespace!r}") from None


async def _watch(args: argparse.Namespace) -> int:
    """Draw the tree, then again after lifecycle events, from the same follower the observer
    uses (rebeam.observe.treestate): one tree request per redraw at most, never one per
    actor, and at most one drawing every REDRAW_EVERY seconds."""
    url = nats_url(args)
    closed = False

    async def closed_cb() -> None:
        nonlocal closed
        closed = True
        follower.changed.set()

    nc, pid = await admin_connect(args, closed_cb=closed_cb)
    follower = TreeFollower(nc, pid, args.namespace, refresh_every=REDRAW_EVERY)
    console = Console()
    refreshing: asyncio.Task[None] | None = None
    try:
        await follower.start()
        refreshing = asyncio.get_running_loop().create_task(follower.run())
        with _Drawing(console) as draw:
            while True:
                follower.changed.clear()
                if closed:
                    raise Unreachable(f"NATS at {url} closed the connection (did the run end?)")
                draw(render_tree(follower.state.roots, console.width))
                await asyncio.sleep(REDRAW_EVERY)
                changed = asyncio.ensure_future(follower.changed.wait())
                await asyncio.wait([changed, refreshing], return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
                if refreshing.done():
                    refreshing.result()  # a failed refresh: its NoTree says why
    except NoTree as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return 1
    finally:
        if refreshing is not None:
            refreshing.cancel()
        if not closed:
            await nc.close()


class _Drawing:
    """Where ``tree --watch`` draws: in place in a terminal; elsewhere (a pipe, a log) each
    drawing in full after the last, with a blank line between."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live = Live(console=console, auto_refresh=False) if console.is_terminal else None

    def __enter__(self) -> Callable[[Any], None]:
        if self.live is not None:
            self.live.__enter__()
        return self.draw

    def draw(self, renderable: Any) -> None:
        if self.live is not None:
            self.live.update(renderable, refresh=True)
        else:
            self.console.print(renderable)
            self.console.print()

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)


def shown(data: bytes, *, everything: bool) -> LifecycleEvent | None:
    """The event in ``data`` if it is one to show. Without ``everything``, the exits of
    programs connected with ``rebeam.connect`` (pids ``<namespace>.client-….1``, outside any
    supervisor) are not: a short-lived client (a script run in a loop, a command) would add
    a line per run that says nothing about the tree."""
    try:
        event = LifecycleEvent.model_validate_json(data)
    except ValueError:
        return None  # not an event of ours
    return event if everything or not client_event(event) else None


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
        event = shown(msg.data, everything=args.all)
        if event is None:
            return
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
