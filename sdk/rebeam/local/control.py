"""Talking to a running ``rebeam run`` from another terminal.

The run writes an instance file with its NATS URL (instances.py), and answers requests on
``rebeam.<ns>.control.<operation>.<requester>``: ``tree``, ``start-child``,
``terminate-child``, ``restart-child``, ``delete-child``, where the requester is the client
pid that asks (the server lets a connection publish there only as itself). Requests,
replies and error codes are the management protocol both backends share
(``rebeam._management_protocol``). ``rebeam events`` needs no control request: it
subscribes to the lifecycle events themselves.

Locally, the owner's credential is the only one allowed to make management requests, so a
request that reaches the run is the owner's: the requester is not checked further.

A request is answered only on a request inbox, as the operator answers
(``rebeam._management_server``): a request with any other reply subject is refused unread,
counted and logged at a bounded rate, so nobody can make this process publish on a subject
of their choosing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rebeam import _subjects
from rebeam._management_protocol import (
    Refusal,
    child_path,
    core_refusal,
    request_path,
)
from rebeam._management_server import RequestAnswerer
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
    from rebeam.local.forest import Forest
    from rebeam.local.supervisors import SupervisorRunner

__all__ = ["ControlServer"]

log = logging.getLogger("rebeam.run")


class ControlServer(RequestAnswerer):
    def __init__(self, namespace: str, forest: Forest, nc: Any) -> None:
        super().__init__(log)
        self.namespace = namespace
        self.forest = forest
        self.nc = nc
        self._subscriptions: list[Any] = []

    async def start(self) -> None:
        subject = _subjects.control_subscription(self.namespace)
        self._subscriptions.append(await self.nc.subscribe(subject, cb=self._accept))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            try:
                await subscription.unsubscribe()
            except Exception as exc:  # the connection may already be gone at the end
                log.debug("unsubscribe failed: %s", exc)
        self.cancel_in_progress()

    async def _accept(self, msg: Any) -> None:
        """Each request in a task of its own (``rebeam._management_server`` says why)."""
        await self.accept(msg, self._handle)

    async def _handle(self, msg: Any) -> None:
        parsed = _subjects.control_request(msg.subject)
        await self.answer(msg, parsed[0] if parsed is not None else "", self._answer)

    async def _answer(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        if operation == "tree":
            await self.forest.until_started()  # as OTP's which_children waits out an init
            return {"ok": snapshot(self.forest.roots)}
        path = request_path(request)
        if operation == "start-child":
            runner = await self._supervisor(path)
            if runner.spec.child_template is None:
                raise Refusal.of("not_simple_one_for_one", supervisor=path)
            args = request.get("args")
            result = await runner.request(lambda rid: StartChildRequest(rid, args=args))
            return _reply(result, runner, path, "")
        supervisor, child = child_path(path)
        found = await self.forest.parent_of(path)
        if found is None:
            raise Refusal.of("no_supervisor", supervisor=supervisor)
        runner = found[0]
        makers: dict[str, Callable[[int, str], Event]] = {
            "terminate-child": TerminateChildRequest,
            "restart-child": RestartChildRequest,
            "delete-child": DeleteChildRequest,
        }
        make = makers[operation]
        result = await runner.request(lambda rid: make(rid, child))
        return _reply(result, runner, supervisor, child)

    async def _supervisor(self, path: str) -> SupervisorRunner:
        """The supervisor at ``path``, once it has started (as OTP queues a request to a
        supervisor still in its init)."""
        runner = await self.forest.reach(path)
        if runner is None:
            raise Refusal.of("no_supervisor", supervisor=path)
        return runner


def _reply(
    result: Ok | Error, runner: SupervisorRunner, supervisor: str, child: str
) -> dict[str, Any]:
    if isinstance(result, Ok):
        value = result.value
        if isinstance(value, ChildRef):  # people address children by path
            return {"ok": f"{runner.path}/{value.id}#{value.incarnation}"}
        return {"ok": value}
    return core_refusal(
        result.reason,
        supervisor=supervisor,
        child=child,
        limit=runner.spec.max_children,
    ).reply()
