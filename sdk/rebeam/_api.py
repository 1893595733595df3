"""The module-level API: ``rebeam.call(...)`` and friends act on the current node.

Inside an actor the current node is the actor's; in any other program it is the one
``async with rebeam.connect(url)`` opened (per task context, so two connections in one
program do not mix); ``rebeam._current`` holds which it is. Every function here is also a
method of :class:`~rebeam._node.Node`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Coroutine
from types import TracebackType
from typing import Any

from rebeam import _current, _groups
from rebeam._addresses import Address
from rebeam._current import current_node, set_default_node
from rebeam._messages import MonitorRef
from rebeam._node import DEFAULT_CALL_TIMEOUT, Node, credentials_from_environment
from rebeam.pids import Pid

__all__ = [
    "broadcast",
    "call",
    "cast",
    "connect",
    "current_node",
    "demonitor",
    "join",
    "leave",
    "link",
    "members",
    "monitor",
    "register",
    "self_pid",
    "send",
    "set_default_node",
    "stats",
    "trap_exit",
    "unlink",
    "unregister",
    "whereis",
]


def _from_instance(url: str, namespace: str, key: str) -> str | None:
    """``key`` of the instance file of the local ``rebeam run`` serving ``namespace`` at
    ``url``: its owner's credential (the file is readable by its owner only), or the CA file
    it was given for a tls:// server. Of several such runs, the one started last."""
    from rebeam.local.instances import InstanceFile

    try:
        runs = InstanceFile.runs(namespace)
    except OSError:
        return None
    for info in reversed(runs):
        if info.get("nats_url") == url:
            found = info.get(key)
            return str(found) if found else None
    return None


class connect:
    """Connect this program to rebeam as a process with its own pid and mailbox.

    ::

        async with rebeam.connect("nats://127.0.0.1:4222", namespace="shop") as node:
            print(await rebeam.call("writer", {"rows": []}))

    Also ``node = await rebeam.connect(url)`` (then ``await node.close()``). When the block
    ends, the node releases its names and publishes its own ``exited`` event.

    Every connection needs a credential (docs/security.md): ``credentials=``, else
    ``REBEAM_CREDENTIALS`` (or the file ``REBEAM_CREDENTIALS_FILE`` names), else — for the
    person who started a ``rebeam run`` on this machine — the owner's credential from that
    run's instance file, when ``url`` is that run's server.

    A ``tls://`` server's certificate must be signed by the CA in the file ``tls_ca=``,
    else in the one that run was given (``--nats-ca``), else in ``REBEAM_NATS_CA`` (or
    ``REBEAM_NATS_CA_PEM``), else by a CA of the system's trust store (docs/security.md,
    "TLS").
    """

    def __init__(self, url: str = "nats://127.0.0.1:4222", **options: Any) -> None:
        self._url = url
        namespace = options.get("namespace", "default")
        if options.get("credentials") is None and credentials_from_environment() is None:
            options["credentials"] = _from_instance(url, namespace, "credentials")
        if options.get("tls_ca") is None:
            options["tls_ca"] = _from_instance(url, namespace, "nats_ca")
        self._options = options
        self._node: Node | None = None
        self._token: contextvars.Token[Node | None] | None = None

    def __await__(self) -> Any:
        return Node.connect(self._url, **self._options).__await__()

    async def __aenter__(self) -> Node:
        self._node = await Node.connect(self._url, **self._options)
        self._token = _current.enter(self._node)
        return self._node

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.restore(self._token)
        if self._node is not None:
            await self._node.close(publish_exit=True)


def self_pid() -> Pid:
    """The pid of the current process."""
    return current_node().pid


# send and cast hand back the node's awaitable rather than awaiting it in a coroutine of
# their own: for a plain one, a coroutine here would be a sixth of what the cast costs its
# sender (docs/sdk.md, "Cast throughput").
def send(
    dest: Address, message: Any, *, wait: float | None = None, durable: bool = False
) -> Awaitable[None]:
    """See :meth:`Node.send <rebeam._node.Node.send>`; await what it returns."""
    return current_node().send(dest, message, wait=wait, durable=durable)


def cast(
    dest: Address, message: Any, *, wait: float | None = None, durable: bool = False
) -> Awaitable[None]:
    """See :meth:`Node.cast <rebeam._node.Node.cast>`; await what it returns."""
    return current_node().cast(dest, message, wait=wait, durable=durable)


async def stats(dest: Address | None = None, timeout: float = 2.0) -> dict[str, int]:
    """A process's counters (the current one's if ``dest`` is None): ``received``,
    ``mailbox_refused`` (a full mailbox refused them), ``slow_consumer_drops``,
    ``mailbox_pending``, the limits, ... See :meth:`Node.stats_of`."""
    return await current_node().stats_of(dest, timeout)


# Likewise call: it hands back the node's coroutine, the request's one (Node.call).
def call(
    dest: Address,
    message: Any,
    timeout: float | None = DEFAULT_CALL_TIMEOUT,
) -> Coroutine[Any, Any, Any]:
    """See :meth:`Node.call <rebeam._node.Node.call>`; await what it returns."""
    return current_node().call(dest, message, timeout)


async def whereis(name: str, *, local: bool = False, cached: bool = True) -> Pid | None:
    return await current_node().whereis(name, local=local, cached=cached)


async def register(name: str, *, local: bool = False) -> None:
    await current_node().register(name, local=local)


async def unregister(name: str, *, local: bool = False) -> None:
    await current_node().unregister(name, local=local)


async def monitor(dest: Address) -> MonitorRef:
    return await current_node().monitor(dest)


def demonitor(ref: MonitorRef) -> bool:
    return current_node().demonitor(ref)


async def link(dest: Address) -> Pid:
    return await current_node().link(dest)


async def unlink(dest: Address) -> None:
    await current_node().unlink(dest)


def trap_exit(flag: bool = True) -> bool:
    """Set whether the current process traps exits; returns the previous setting."""
    node = current_node()
    old, node.trap_exit = node.trap_exit, bool(flag)
    return old


async def join(group: str, scope: str = "pg") -> None:
    await _groups.join(current_node(), group, scope)


async def leave(group: str, scope: str = "pg") -> bool:
    return await _groups.leave(current_node(), group, scope)


async def members(group: str, scope: str = "pg") -> list[Pid]:
    return await _groups.members(current_node(), group, scope)


async def broadcast(group: str, message: Any, scope: str = "pg") -> int:
    return await _groups.broadcast(current_node(), group, message, scope)
