"""A flush cancelled or timed out must not leave the connection deaf (rebeam._nats_fixes).

With nats-py 2.16 alone, the PONG for a cancelled flush raises inside the read loop, which
stops reading while the client still says it is connected: the request below timed out.
"""

from __future__ import annotations

import asyncio
import contextlib

import rebeam
from rebeam._nats_fixes import connect


async def _cancel_a_flush(nc) -> None:
    flush = asyncio.ensure_future(nc.flush(timeout=5))
    await asyncio.sleep(0)  # the PING is queued with its future
    await asyncio.sleep(0)
    flush.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flush


async def test_a_cancelled_flush_leaves_the_connection_reading(nats_server, namespace):
    nc = await connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:

        async def echo(msg) -> None:
            await nc.publish(msg.reply, msg.data)

        await nc.subscribe("echo", cb=echo)
        for i in range(3):
            await _cancel_a_flush(nc)
            reply = await nc.request("echo", str(i).encode(), timeout=5)
            assert reply.data == str(i).encode()
        await nc.flush(timeout=5)  # later flushes still get their own PONG
    finally:
        await nc.close()


async def test_nodes_use_the_guarded_connection(nats_server, namespace, launcher):
    child = await launcher.start("rebeam_test_actors:Probe")
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        await _cancel_a_flush(node.nc)
        assert await node.call(child.pid, ["echo", 1]) == 1
