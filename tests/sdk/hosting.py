"""An actor hosted in the test's own process, on a node of its own with an ACTOR credential,
for tests that look inside the receive or send path (counting calls, feeding frames)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import rebeam
from rebeam._actor import Host
from rebeam._node import Node
from rebeam.auth.grants import Grant, Role
from rebeam.natsd import NatsServer
from rebeam.pids import Pid


@contextlib.asynccontextmanager
async def hosted_here(
    server: NatsServer, namespace: str, slot: str, actor: rebeam.Actor, role: Role = Role.ACTOR
) -> AsyncIterator[Node]:
    """``actor`` started on a node of its own as incarnation 1 of ``slot``; closed after.
    ``role``: BACKEND for a test that feeds calls to the parser, whose answers go to requests
    the server never delivered (an ACTOR may answer only those it was given)."""
    pid = Pid.for_incarnation(namespace, slot, 1)
    node = await Node.connect(
        server.url,
        namespace=namespace,
        pid=pid,
        is_client=False,
        start=False,
        lease=False,
        credentials=server.credentials(Grant(role, namespace, pid)),
    )
    try:
        Host(node, actor)
        await node.start(lease=False)
        yield node
    finally:
        await node.close()
