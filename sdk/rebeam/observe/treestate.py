"""A running tree kept current from lifecycle events: what ``rebeam tree --watch`` draws and
the observer page shows.

One subscription to the namespace's events and one ``tree`` control request per refresh: an
event is applied to the last tree at once (a crash shows as soon as it is published), and the
tree is asked for again at most every ``refresh_every`` seconds to pick up what events do
not say (supervisor restart counts, dynamic children). A burst of events costs one request
per interval, never one per event or per actor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

import nats

from rebeam import _subjects
from rebeam._management_protocol import parse_reply
from rebeam.events import LifecycleEvent
from rebeam.pids import Pid

__all__ = ["TIMELINE", "NoTree", "TreeFollower", "TreeState", "client_event"]

TIMELINE: Final = 500
"""Lifecycle events kept for the timeline (the newest)."""

REFRESH_EVERY: Final = 0.5
TREE_TIMEOUT: Final = 30.0


class NoTree(RuntimeError):
    """Nobody answered the tree request usefully; the message says why, in words."""


def client_event(event: LifecycleEvent) -> bool:
    """True for the exit of a program connected with ``rebeam.connect`` (a pid
    ``<namespace>.client-….1`` outside any supervisor): it says nothing about the tree."""
    if event.supervisor is not None or event.pid is None:
        return False
    try:
        return Pid.parse(event.pid).slot.startswith("client-")
    except ValueError:
        return False


class TreeState:
    """The last tree answered, with the events since applied to it, and the timeline."""

    def __init__(self, timeline: int = TIMELINE) -> None:
        self.roots: list[dict[str, Any]] = []
        self._index: dict[str, dict[str, Any]] = {}
        self.timeline: deque[dict[str, Any]] = deque(maxlen=timeline)
        self.version = 0  # goes up with every change: a reader redraws when it moved

    def replace(self, roots: list[dict[str, Any]]) -> None:
        """Take a fresh tree answer as the truth."""
        self.roots = roots
        self._index = {}
        for root in roots:
            self._walk(root)
        self.version += 1

    def _walk(self, node: dict[str, Any]) -> None:
        if isinstance(node.get("path"), str):
            self._index[node["path"]] = node
        for child in node.get("children") or ():
            if isinstance(child, dict):
                self._walk(child)

    def node(self, path: str) -> dict[str, Any] | None:
        return self._index.get(path)

    def apply(self, event: LifecycleEvent) -> bool:
        """Record ``event`` in the timeline and on its child; False if the tree does not know
        the child (a dynamic child started since: the next refresh brings it)."""
        self.timeline.append(event.model_dump(mode="json"))
        self.version += 1
        if not (event.supervisor and event.child):
            return event.supervisor is None or event.supervisor in self._index
        child = self._index.get(f"{event.supervisor}/{event.child}")
        if child is None:
            return False
        if event.event == "started":
            child.update(state="running", incarnation=event.incarnation, pid=event.pid)
            child["os_pid"] = event.os_pid
            child["pod"] = None  # the event does not name it: the next refresh does
            child["starts"] = int(child.get("starts") or 0) + 1
        elif event.event == "exited":
            child.update(state="exited", last_exit=event.reason, os_pid=None, pod=None)
        elif event.event in ("restarting", "start_failed"):
            child["state"] = "restarting"
            parent = self._index.get(event.supervisor)
            if parent is not None and event.event == "restarting":
                parent["restarts"] = int(parent.get("restarts") or 0) + 1
        return True

    def children(self) -> list[dict[str, Any]]:
        """Every child that is not a supervisor, in tree order."""
        return [n for n in self._index.values() if "name" in n and n.get("kind") != "supervisor"]

    def places(self) -> dict[str, str]:
        """``{pid: "path#incarnation"}`` of every child the tree gives a pid."""
        return {
            str(n["pid"]): f"{n.get('path')}#{n.get('incarnation')}"
            for n in self.children()
            if n.get("pid")
        }


Changed = Callable[[TreeState], Awaitable[None] | None]


class TreeFollower:
    """Follows one namespace's tree on a NATS connection the caller owns.

    ``on_change`` runs after each change (an event applied, a fresh tree), at most every
    ``refresh_every`` seconds for fresh trees; events are applied as they come."""

    def __init__(
        self,
        nc: Any,
        requester: Pid,
        namespace: str,
        *,
        refresh_every: float = REFRESH_EVERY,
        on_event: Callable[[LifecycleEvent], Awaitable[None] | None] | None = None,
        on_error: Callable[[NoTree], None] | None = None,
    ) -> None:
        self.nc = nc
        self.requester = requester
        self.namespace = namespace
        self.refresh_every = refresh_every
        self.on_event = on_event
        self.on_error = on_error  # without one, a failed refresh ends run()
        self.error: str | None = None  # why the last refresh failed; None once one worked
        self.state = TreeState()
        self.changed = asyncio.Event()
        self._stale = asyncio.Event()
        self._sub: Any = None
        self._running = True

    async def start(self) -> None:
        """Subscribe, then read the tree once (raises :class:`NoTree`): no event between
        the two is missed."""
        self._sub = await self.nc.subscribe(_subjects.events_all(self.namespace), cb=self._on_msg)
        await self.refresh()

    async def _on_msg(self, msg: Any) -> None:
        try:
            event = LifecycleEvent.model_validate_json(msg.data)
        except ValueError:
            return  # not an event of ours
        if client_event(event):
            return
        self.state.apply(event)
        self._stale.set()
        self.changed.set()
        if self.on_event is not None:
            result = self.on_event(event)
            if result is not None:
                await result

    def mark_stale(self) -> None:
        """Ask for the tree again soon (after an action whose outcome events may not say)."""
        self._stale.set()

    async def refresh(self) -> None:
        """Ask for the tree once and take it as the truth."""
        self.state.replace(await fetch_tree(self.nc, self.requester, self.namespace))
        self.changed.set()

    async def run(self, retry: float = 5.0) -> None:
        """Refresh after events, at most every ``refresh_every`` seconds, until cancelled.
        With ``on_error``, a failed refresh is reported and tried again after the next event
        or ``retry`` seconds; without, it ends the run. Ends after :meth:`stop` too: a
        cancellation can be lost in a NATS request (asyncio.wait_for in Python 3.11 returns
        a result that arrives together with the cancellation, and drops the latter)."""
        while self._running:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if self.error is None else retry):
                    await self._stale.wait()
            if not self._running:
                return
            self._stale.clear()
            try:
                await self.refresh()
            except NoTree as exc:
                if self.on_error is None:
                    raise
                self.error = str(exc)
                self.on_error(exc)
            else:
                self.error = None
            await asyncio.sleep(self.refresh_every)

    async def stop(self) -> None:
        """Unsubscribe, and end :meth:`run` at its next turn."""
        self._running = False
        self._stale.set()
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


async def fetch_tree(nc: Any, requester: Pid, namespace: str) -> list[dict[str, Any]]:
    """The ``tree`` answer of the namespace's backend; :class:`NoTree` with a sentence."""
    subject = _subjects.control(namespace, "tree", requester)
    try:
        msg = await nc.request(subject, b"{}", TREE_TIMEOUT)
        reply = parse_reply(msg.data)
    except ValueError as exc:
        raise NoTree(f"no usable tree for namespace {namespace!r}: {exc}") from None
    except nats.errors.TimeoutError:
        raise NoTree(
            f"no answer for namespace {namespace!r} within {TREE_TIMEOUT:g}s: is a rebeam run "
            "or an operator serving it, with a supervisor there?"
        ) from None
    except nats.errors.NoRespondersError:
        raise NoTree(f"no rebeam run or operator answers for namespace {namespace!r}") from None
    if "error" in reply:
        raise NoTree(f"tree: {reply['error']} ({reply['code']})")
    roots = reply["ok"]
    if not isinstance(roots, list):
        raise NoTree(f"the tree answer is {json.dumps(roots)[:80]}, no list of supervisors")
    return [root for root in roots if isinstance(root, dict)]
