"""OTP's management API from Python: ``await rebeam.start_child("pool", {"job": 1})``.

The same control requests the ``rebeam start-child`` command sends
(``rebeam.<ns>.control.<operation>.<requester>``): a ``rebeam run`` answers them locally, the
operator on Kubernetes, so one call works on both backends. They go through the current
node's NATS connection, namespace and pid (an actor's credential may not make them).
"""

from __future__ import annotations

import json
from typing import Any

import nats

from rebeam import _subjects
from rebeam._api import current_node
from rebeam._limits import loads_json
from rebeam.errors import NoSupervisor, SupervisorError, SupervisorRefused

__all__ = ["delete_child", "parse_reply", "restart_child", "start_child", "terminate_child"]

DEFAULT_TIMEOUT = 30.0
MAX_REPLY_BYTES = 64 * 1024 * 1024  # NATS's largest max_payload: a big tree still fits
MAX_REPLY_DEPTH = 256  # two levels per supervisor in a tree


def parse_reply(data: bytes) -> dict[str, Any]:
    """A control reply, ``{"ok": value}`` or ``{"error": text}``; ValueError for anything
    else (too large or deep included)."""
    reply = loads_json(
        data, what="the control reply", max_bytes=MAX_REPLY_BYTES, max_depth=MAX_REPLY_DEPTH
    )
    if not (isinstance(reply, dict) and ("ok" in reply or "error" in reply)):
        raise ValueError("the control reply is neither {ok: ...} nor {error: ...}")
    return reply


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
        raise SupervisorRefused(f"{operation} {body.get('path')}: {reply['error']}")
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
