"""The management API on Kubernetes: the operator answers the same NATS control requests as
``rebeam run`` (``rebeam.<ns>.control.<operation>.<requester>``, see ``rebeam.local.control``), so
``rebeam start-child|terminate-child|restart-child|delete-child|tree --nats URL -n NS``
works against a cluster. The namespace is the Kubernetes namespace.

Who asks is in the subject; RBAC decides whether they may (access.py): ``tree`` needs ``get``
on the namespace's Supervisors, the rest ``patch`` on the root Supervisor they name.

A request names a supervisor by its path (``shop/storage``, as in the manifest) or by its
Supervisor object's name, and a child by ``<supervisor>/<child>``; a dynamic child's name is
``<template>-<n>`` (``pool/worker-3``) on both backends (``rebeam.supervision.dynamic``).
The request is handed to that supervisor's driver (through its view, view.py), which feeds
it to the core in its next pass as the same request ``rebeam run`` feeds, persists the
outcome and only then replies: start-child replies once the child's pod runs or its start
failed, as OTP's ``start_child`` does.

Namespaces where this operator drives nothing get no answer at all, so a ``rebeam run`` of
the same namespace on the same NATS is never answered for by the operator. As ``rebeam run``
does, it answers only on a request inbox, and refuses (unread, counted, logged at a bounded
rate) a request whose reply subject is anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rebeam import _subjects
from rebeam._limits import loads_json
from rebeam._ratelog import RateLog
from rebeam.local.control import OPERATIONS
from rebeam.pids import Pid
from rebeam.supervision import (
    ChildRef,
    DeleteChildRequest,
    Event,
    Ok,
    RestartChildRequest,
    StartChildRequest,
    TerminateChildRequest,
)
from rebeam_operator.access import refusal
from rebeam_operator.hosts import is_actor_slot
from rebeam_operator.tree import tree
from rebeam_operator.view import DriverView

if TYPE_CHECKING:
    from rebeam_operator.world import World

__all__ = ["ControlServer", "describe_error"]

log = logging.getLogger("rebeam.operator")

REPLY_DEADLINE = 25.0  # under the CLI's 30 s
CATCH_UP_DEADLINE = 30.0  # for kopf to deliver the objects listed at startup


def describe_error(reason: Any, driver: DriverView) -> str:
    """The core's error reasons, in words that say what to do."""
    if reason == "max_children":
        limit = driver.host.spec.max_children
        return f"max_children reached: {driver.host.path} already has {limit} children"
    if reason == "simple_one_for_one":
        return f"{driver.host.path} is simple_one_for_one: terminate its children instead"
    if reason == "not_found":
        return "no such child"
    if reason == "running":
        return "the child is running: terminate it first"
    if reason == "restarting":
        return "the child is being restarted: terminate it first"
    if reason == "noproc":
        return f"{driver.host.path} is not running"
    return str(reason)


class ControlServer:
    def __init__(self, world: World) -> None:
        self.world = world
        self.refused = 0  # requests with a reply subject that is not an inbox
        self._ratelog = RateLog(log, "control")
        self._subscriptions: list[Any] = []

    async def start(self) -> None:
        """Subscribe once NATS is reached (the operator supervises without it meanwhile) and
        every tree that exists has been picked up."""
        messaging = self.world.messaging
        await messaging.connected()
        await self._caught_up()
        self.world.seen = None  # only this wait needs it: stop recording
        namespaces = self.world.settings.namespaces or ("*",)
        for namespace in namespaces:
            subject = _subjects.control_subscription(namespace)
            self._subscriptions.append(await messaging.nc.subscribe(subject, cb=self._handle))
        log.info("answering control requests for namespaces %s", ",".join(namespaces))

    async def _caught_up(self) -> None:
        """Wait until kopf has handed every Supervisor and Actor that exists now to the world.

        The server stays silent for a namespace where it drives nothing (a ``rebeam run`` may
        serve it). Subscribed before the trees were picked up, a just-restarted operator would
        leave a request unanswered, and its caller would wait out its whole timeout. Until
        the subscription exists, a caller gets "no responders" at once instead."""
        world = self.world
        seen = world.seen
        assert seen is not None, "recorded from the operator's start until this wait is over"
        wanted: set[str] = set()
        try:
            for namespace in world.settings.namespaces or (None,):
                for plural in ("supervisors", "actors"):
                    for obj in await world.kube.list_objects(namespace, plural):
                        if not is_actor_slot(obj):
                            wanted.add(obj["metadata"]["uid"])
        except Exception as exc:  # answer anyway: a request then may wait, but it is answered
            log.warning("cannot list the trees to wait for: %s", exc)
            return
        deadline = asyncio.get_running_loop().time() + CATCH_UP_DEADLINE
        while True:
            world.host_seen.clear()
            missing = wanted - seen
            remaining = deadline - asyncio.get_running_loop().time()
            if not missing:
                return
            if remaining <= 0:
                log.warning("answering before %d object(s) were picked up", len(missing))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(world.host_seen.wait(), remaining)

    async def _handle(self, msg: Any) -> None:
        parsed = _subjects.control_request(msg.subject)
        if parsed is None:
            return  # not a management request's subject: nothing to answer
        operation, requester = parsed
        drivers: list[DriverView] = [
            d for d in self.world.drivers.values() if d.host.namespace == requester.namespace
        ]
        if not drivers:
            return  # not ours: stay silent (a rebeam run may answer)
        if msg.reply and not _subjects.is_inbox(msg.reply):
            self.refused += 1
            self._ratelog.warning("refused a request: its reply subject is no inbox", msg.reply)
            return
        try:
            if operation not in OPERATIONS:
                raise ValueError(f"no such management operation: {operation[:100]}")
            request = loads_json(msg.data or b"{}", what="a control request")
            if not isinstance(request, dict):
                raise ValueError("a control request is a JSON object")
            reply = await self._answer(operation, request, drivers, requester)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        if msg.reply:
            await msg.respond(json.dumps(reply, default=str).encode())

    async def _answer(
        self, operation: str, request: dict[str, Any], drivers: list[DriverView], requester: Pid
    ) -> dict[str, Any]:
        if operation == "tree":
            refused = await self._refusal(requester, operation, None, "")
            return {"error": refused} if refused else {"ok": tree(drivers)}
        path = str(request.get("path", "")).strip("/")
        if not path:
            return {"error": "a path is needed, e.g. pool or shop/storage/cache"}
        if operation == "start-child":
            driver = _find(drivers, path)
            # Asked before anything is said of the path: no probing what exists.
            refused = await self._refusal(requester, operation, driver, path)
            if refused:
                return {"error": refused}
            if driver is None:
                return {"error": f"no supervisor at {path!r} in this namespace"}
            if driver.host.spec.child_template is None:
                return {"error": f"{path} is not simple_one_for_one: add children to the manifest"}
            args = request.get("args")
            return await _ask(driver, lambda rid: StartChildRequest(rid, args=args))
        parent, _, child = path.rpartition("/")
        driver = _find(drivers, parent) if parent else None
        refused = await self._refusal(requester, operation, driver, path)
        if refused:
            return {"error": refused}
        if driver is None:
            return {"error": f"no supervisor holds {path!r} in this namespace"}
        makers: dict[str, Callable[[str, str], Event]] = {
            "terminate-child": TerminateChildRequest,
            "restart-child": RestartChildRequest,
            "delete-child": DeleteChildRequest,
        }
        make = makers[operation]
        return await _ask(driver, lambda rid: make(rid, child))

    async def _refusal(
        self, requester: Pid, operation: str, target: DriverView | None, path: str
    ) -> str | None:
        world = self.world
        return await refusal(
            world.messaging.identity, world.kube, requester, operation, target, path
        )


def _find(drivers: list[DriverView], path: str) -> DriverView | None:
    for driver in drivers:
        if driver.host.kind == "Supervisor" and driver.host.path == path:
            return driver
    for driver in drivers:
        if driver.host.kind == "Supervisor" and driver.host.name == path:
            return driver
    return None


async def _ask(driver: DriverView, make: Callable[[str], Event]) -> dict[str, Any]:
    future = driver.ask(make)
    try:
        result = await asyncio.wait_for(asyncio.shield(future), REPLY_DEADLINE)
    except TimeoutError:
        driver.withdraw(future)
        return {"error": f"no answer from {driver.host.path} within {REPLY_DEADLINE:g}s"}
    if isinstance(result, Ok):
        value = result.value
        if isinstance(value, ChildRef):  # people address children by path
            return {"ok": f"{driver.host.path}/{value.id}#{value.incarnation}"}
        return {"ok": value}
    return {"error": describe_error(result.reason, driver)}
