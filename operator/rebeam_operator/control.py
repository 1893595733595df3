"""The management API on Kubernetes: the operator answers the same NATS control requests as
``rebeam run``, with the same error codes and sentences (the management protocol,
``rebeam._management_protocol``), so ``rebeam start-child|terminate-child|restart-child|
delete-child|tree --nats URL -n NS`` works against a cluster. The namespace is the
Kubernetes namespace.

Who asks is in the subject; RBAC decides whether they may (access.py): ``tree`` needs ``get``
on the namespace's Supervisors, the rest ``patch`` on the root Supervisor they name.

A request names a supervisor by its path (``shop/storage``, as in the manifest) or by its
Supervisor object's name, and a child by ``<supervisor>/<child>``; a dynamic child's name is
``<template>-<n>`` (``pool/worker-3``) on both backends (``rebeam.supervision.dynamic``).
The request is handed to that supervisor's driver (through its view, view.py), which feeds
it to the core in its next pass as the same request ``rebeam run`` feeds, persists the
outcome and only then replies: start-child replies once the child's pod runs or its start
failed, as OTP's ``start_child`` does.

A request to a supervisor still in its init waits for the init to end, as OTP queues a call
to a supervisor in init and as ``rebeam run`` does: the core keeps a child request in its
mailbox until then, and a tree request waits until no supervisor of the namespace is
starting (each driver announces its passes: ``World.passes``). The wait is bounded by
``REPLY_DEADLINE`` (then ``timeout``); a supervisor that ends meanwhile answers ``noproc``.
Each request is answered in a task of its own, at most ``MAX_IN_PROGRESS`` at once (then
``busy``), as ``rebeam run`` answers (``rebeam._management_server``).

Namespaces where this operator drives nothing get no answer at all, so a ``rebeam run`` of
the same namespace on the same NATS is never answered for by the operator. As ``rebeam run``
does (``rebeam._management_server``), it answers only on a request inbox, and refuses
(unread, counted, logged at a bounded rate) a request whose reply subject is anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rebeam import _subjects
from rebeam._management_protocol import Refusal, child_path, core_refusal, request_path
from rebeam._management_server import RequestAnswerer
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

__all__ = ["ControlServer"]

log = logging.getLogger("rebeam.operator")

REPLY_DEADLINE = 25.0  # under the CLI's 30 s
CATCH_UP_DEADLINE = 30.0  # for kopf to deliver the objects listed at startup


class ControlServer(RequestAnswerer):
    def __init__(self, world: World) -> None:
        super().__init__(log)
        self.world = world
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
            self._subscriptions.append(await messaging.nc.subscribe(subject, cb=self._accept))
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
                async with asyncio.timeout_at(deadline):
                    await world.host_seen.wait()

    async def _accept(self, msg: Any) -> None:
        parsed = _subjects.control_request(msg.subject)
        if parsed is None:
            return  # not a management request's subject: nothing to answer
        if not self._drivers(parsed[1].namespace):
            return  # not ours: stay silent (a rebeam run may answer)
        await self.accept(msg, self._handle)

    def _drivers(self, namespace: str) -> list[DriverView]:
        return [d for d in self.world.drivers.values() if d.host.namespace == namespace]

    async def _handle(self, msg: Any) -> None:
        parsed = _subjects.control_request(msg.subject)
        assert parsed is not None, "accepted only with a request's subject"
        operation, requester = parsed

        async def handle(operation: str, request: dict[str, Any]) -> dict[str, Any]:
            return await self._answer(operation, request, requester)

        await self.answer(msg, operation, handle)

    async def _answer(
        self, operation: str, request: dict[str, Any], requester: Pid
    ) -> dict[str, Any]:
        drivers = self._drivers(requester.namespace)
        if operation == "tree":
            await self._allowed(requester, operation, None, "")
            await self._inits_done(requester.namespace)
            return {"ok": tree(self._drivers(requester.namespace))}
        path = request_path(request)
        if operation == "start-child":
            driver = _find(drivers, path)
            # Asked before anything is said of the path: no probing what exists.
            await self._allowed(requester, operation, driver, path)
            if driver is None:
                raise Refusal.of("no_supervisor", supervisor=path)
            if driver.host.spec.child_template is None:
                raise Refusal.of("not_simple_one_for_one", supervisor=path)
            args = request.get("args")
            return await _ask(driver, path, "", lambda rid: StartChildRequest(rid, args=args))
        parent, child = child_path(path)
        driver = _find(drivers, parent)
        await self._allowed(requester, operation, driver, path)
        if driver is None:
            raise Refusal.of("no_supervisor", supervisor=parent)
        makers: dict[str, Callable[[str, str], Event]] = {
            "terminate-child": TerminateChildRequest,
            "restart-child": RestartChildRequest,
            "delete-child": DeleteChildRequest,
        }
        make = makers[operation]
        return await _ask(driver, parent, child, lambda rid: make(rid, child))

    async def _inits_done(self, namespace: str) -> None:
        """Until no supervisor of ``namespace`` is in its init (as OTP's which_children waits
        out an init), at most ``REPLY_DEADLINE``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REPLY_DEADLINE
        while True:
            # Looked at before taking the wake-up, with no await in between: a pass that
            # ends an init after this look is announced to this waiter.
            starting = [d.host.path for d in self._drivers(namespace) if d.starting]
            if not starting:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Refusal.of("timeout", supervisor=starting[0], seconds=REPLY_DEADLINE)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await self.world.passes.waiter()

    async def _allowed(
        self, requester: Pid, operation: str, target: DriverView | None, path: str
    ) -> None:
        world = self.world
        refused = await refusal(
            world.messaging.identity, world.kube, requester, operation, target, path
        )
        if refused:
            raise Refusal.of("forbidden", detail=refused)


def _find(drivers: list[DriverView], path: str) -> DriverView | None:
    for driver in drivers:
        if driver.host.kind == "Supervisor" and driver.host.path == path:
            return driver
    for driver in drivers:
        if driver.host.kind == "Supervisor" and driver.host.name == path:
            return driver
    return None


async def _ask(
    driver: DriverView, supervisor: str, child: str, make: Callable[[str], Event]
) -> dict[str, Any]:
    future = driver.ask(make)
    try:
        async with asyncio.timeout(REPLY_DEADLINE):
            result = await asyncio.shield(future)
    except TimeoutError:
        driver.withdraw(future)
        raise Refusal.of("timeout", supervisor=supervisor, seconds=REPLY_DEADLINE) from None
    if isinstance(result, Ok):
        value = result.value
        if isinstance(value, ChildRef):  # people address children by path
            return {"ok": f"{driver.host.path}/{value.id}#{value.incarnation}"}
        return {"ok": value}
    raise core_refusal(
        result.reason,
        supervisor=supervisor,
        child=child,
        limit=driver.host.spec.max_children,
    )
