"""OTP's management API from Python: ``await rebeam.start_child("pool", {"job": 1})``.

The same control requests the ``rebeam start-child`` command sends (the management protocol,
``rebeam._management_protocol``): a ``rebeam run`` answers them locally, the operator on
Kubernetes, so one call works on both backends, and a refusal carries the same code and
sentence from both. They go through the current node's NATS connection, namespace and pid
(an actor's credential may not make them).
"""

from __future__ import annotations

import json
from typing import Any

import nats

from rebeam import _subjects
from rebeam._api import current_node
from rebeam._management_protocol import parse_reply, refusal_text
from rebeam.errors import NoSupervisor, SupervisorError, SupervisorRefused

__all__ = ["delete_child", "restart_child", "start_child", "terminate_child"]

DEFAULT_TIMEOUT = 30.0


async def _request(operation: str, body: dict[str, Any], timeout: float) -> Any:
    node = current_node()
    subject = _subjects.control(node.namespace, operation, node.pid)
    try:
        msg = await node.nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    except nats.errors.NoRespondersError:
        raise NoSupervisor(
            f"nothing supervises namespace {node.namespace!r} (no rebeam run, no operator)"
        ) from None
    try:
        reply = parse_reply(msg.data)
    except ValueError as exc:
        raise SupervisorError(f"{operation} {body.get('path')}: {exc}") from None
    if "error" in reply:
        raise SupervisorRefused(
            refusal_text(operation, body.get("path"), reply),
            code=reply["code"],
            sentence=reply["error"],
        )
    return reply["ok"]


async def start_child(
    supervisor: str, args: Any = None, *, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Start a dynamic child of a simple_one_for_one supervisor (by path); returns once it
    is started, as ``<supervisor>/<id>#<incarnation>``."""
    body: dict[str, Any] = {"path": supervisor}
    if args is not None:
        body["args"] = args
    return str(await _request("start-child", body, timeout))


async def terminate_child(path: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Stop a child (``pool/3``, ``shop/storage/cache``); it is not restarted."""
    await _request("terminate-child", {"path": path}, timeout)


async def restart_child(path: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """Start a terminated static child again."""
    return await _request("restart-child", {"path": path}, timeout)


async def delete_child(path: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Forget a terminated static child."""
    await _request("delete-child", {"path": path}, timeout)
