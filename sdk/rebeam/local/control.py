"""Talking to a running ``rebeam run`` from another terminal.

The run writes an instance file with its NATS URL (instances.py), and answers requests on
``rebeam.<ns>.control.<operation>.<requester>``: ``tree``, ``start-child``,
``terminate-child``, ``restart-child``, ``delete-child``, where the requester is the client
pid that asks (the server lets a connection publish there only as itself). Requests and
replies are JSON; a reply is ``{"ok": value}`` or ``{"error": "what went wrong"}``. ``rebeam
events`` needs no control request: it subscribes to the lifecycle events themselves.

Locally, the owner's credential is the only one allowed to make management requests, so a
request that reaches the run is the owner's: the requester is not checked further.

A request is answered only on a request inbox (``_INBOX.`` or ``_INBOX_rebeam.``): a request
with any other reply subject is refused unread, counted and logged at a bounded rate, so
nobody can make this process publish on a subject of their choosing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rebeam import _subjects
from rebeam._limits import loads_json
from rebeam._ratelog import RateLog
from rebeam.local.snapshot import snapshot
from rebeam.supervision import (
    ChildRef,
    DeleteChildRequest,
    Error,
    Event,
    Ok,
    RestartChildRequest,
    StartChildRequest,
    TerminateChildRequest,
)

if TYPE_CHECKING:
    from rebeam.local.runner import LocalRun
    from rebeam.local.supervisors import SupervisorRunner

__all__ = ["OPERATIONS", "ControlServer"]

log = logging.getLogger("rebeam.run")

OPERATIONS = ("tree", "start-child", "terminate-child", "restart-child", "delete-child")

# Requests being answered at once. A request may wait for a tree that is starting (as long as
# its starts take); more than this many at once is somebody flooding the run.
MAX_IN_PROGRESS = 64


class ControlServer:
    def __init__(self, run: LocalRun, nc: Any) -> None:
        self.run = run
        self.nc = nc
        self.refused = 0  # requests with a reply subject that is not an inbox
        self.busy = 0  # requests refused because MAX_IN_PROGRESS were being answered
        self._ratelog = RateLog(log, "control")
        self._subscriptions: list[Any] = []
        self._in_progress: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        subject = _subjects.control_subscription(self.run.options.namespace)
        self._subscriptions.append(await self.nc.subscribe(subject, cb=self._accept))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # the connection may already be gone at the end
                log.debug("unsubscribe failed: %s", exc)
        for task in list(self._in_progress):
            task.cancel()

    async def _accept(self, msg: Any) -> None:
        """Each request in a task of its own: NATS hands one subscription's messages over
        one at a time, and a request waiting for a starting supervisor must not hold up the
        others (a child's init may be asking a supervisor that runs already)."""
        if len(self._in_progress) >= MAX_IN_PROGRESS:
            self.busy += 1
            self._ratelog.warning("refused a request: too many in progress", msg.subject[:200])
            if msg.reply and _subjects.is_inbox(msg.reply):
                busy = f"busy: {MAX_IN_PROGRESS} requests are being answered; ask again later"
                await msg.respond(json.dumps({"error": busy}).encode())
            return
        task = asyncio.create_task(self._handle(msg))
        self._in_progress.add(task)
        task.add_done_callback(self._in_progress.discard)
        task.add_done_callback(_unanswered)

    async def _handle(self, msg: Any) -> None:
        if msg.reply and not _subjects.is_inbox(msg.reply):
            self.refused += 1
            self._ratelog.warning("refused a request: its reply subject is no inbox", msg.reply)
            return
        parsed = _subjects.control_request(msg.subject)
        try:
            if parsed is None or parsed[0] not in OPERATIONS:
                raise ValueError(f"no such management operation: {msg.subject[:200]}")
            request = loads_json(msg.data or b"{}", what="a control request")
            if not isinstance(request, dict):
                raise ValueError("a control request is a JSON object")
            reply = await self._answer(parsed[0], request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if msg.reply:
            await msg.respond(json.dumps(reply, default=str).encode())

    async def _answer(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if operation == "tree":
            await self.run.until_started()  # as OTP's which_children waits out an init
            return {"ok": snapshot(self.run)}
        path = str(request.get("path", ""))
        if operation == "start-child":
            runner = await self.run.reach(path)
            if runner is None:
                return {"error": f"no running supervisor at {path!r}"}
            if runner.spec.child_template is None:
                return {"error": f"{path} is not simple_one_for_one: add children to the manifest"}
            args = request.get("args")
            result = await runner.request(lambda rid: StartChildRequest(rid, args=args))
            return _reply(result, runner)
        found = await self.run.parent_of(path)
        if found is None:
            return {"error": f"no running supervisor holds {path!r}"}
        runner, child = found
        makers: dict[str, Callable[[int, str], Event]] = {
            "terminate-child": TerminateChildRequest,
            "restart-child": RestartChildRequest,
            "delete-child": DeleteChildRequest,
        }
        make = makers[operation]
        return _reply(await runner.request(lambda rid: make(rid, child)), runner)


def _unanswered(task: asyncio.Task[None]) -> None:
    """A reply that could not be sent (the connection went at the end): nobody to tell."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("a control reply was not sent: %s", task.exception())


def _reply(result: Ok | Error, runner: SupervisorRunner) -> dict[str, Any]:
    if isinstance(result, Ok):
        value = result.value
        if isinstance(value, ChildRef):  # people address children by path
            return {"ok": f"{runner.path}/{value.id}#{value.incarnation}"}
        return {"ok": value}
    reason = result.reason
    return {"error": str(reason) if not isinstance(reason, str) else reason}
