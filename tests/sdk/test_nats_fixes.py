"""A flush cancelled or timed out must not leave the connection deaf (rebeam._nats_fixes).

With nats-py 2.16 alone, the PONG for a cancelled flush raises inside the read loop, which
stops reading while the client still says it is connected: the request below timed out.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError

import rebeam
from rebeam._nats_fixes import connect, guard
from rebeam._reader import Reader


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


async def test_a_flush_goes_out_behind_the_subscriptions_before_it(nats_server, namespace):
    """The PONG of a flush must mean the server has every SUB sent before it: the PING is
    written after them (nats-py 2.16 alone wrote it first)."""
    nc = await connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:
        writer = nc._transport._io_writer
        wire: list[bytes] = []
        write, writelines = writer.write, writer.writelines

        def recording_write(data: bytes) -> None:
            wire.append(bytes(data))
            write(data)

        def recording_writelines(lines: list[bytes]) -> None:
            wire.extend(bytes(line) for line in lines)
            writelines(lines)

        writer.write, writer.writelines = recording_write, recording_writelines
        await nc.subscribe("first")
        await nc.subscribe("second")
        await nc.flush(timeout=5)
        assert b"".join(wire) == b"SUB first  1\r\nSUB second  2\r\nPING\r\n"
    finally:
        await nc.close()


REFUSAL = b"-ERR 'Authorization Violation'\r\n"


@pytest.mark.parametrize("reader", ["rebeam", "nats-py"])
async def test_an_authorization_violation_is_a_reconnect_not_the_end(
    nats_server, namespace, reader
):
    """What the server says when it refuses a connection, read after nats-py took an INFO
    for its PONG (a cluster's server restarting while the issuer reconnects): nats-py alone
    closed the client for good, leaving a runtime alive and on no server. Here the line
    comes from the socket's parser, rebeam's or nats-py's own, as if the server had sent it."""
    reconnected = asyncio.Event()
    errors: list[Exception] = []

    async def on_reconnected() -> None:
        reconnected.set()

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    token = nats_server.backend_credentials(namespace)
    if reader == "rebeam":
        nc = await connect(
            nats_server.url, token=token, reconnected_cb=on_reconnected, error_cb=on_error
        )
    else:
        nc = guard(NATS())
        await nc.connect(
            nats_server.url, token=token, reconnected_cb=on_reconnected, error_cb=on_error
        )
    try:

        async def echo(msg) -> None:
            await nc.publish(msg.reply, msg.data)

        await nc.subscribe("echo", cb=echo)
        await nc.flush(timeout=5)
        protocol = nc._transport._io_writer.transport.get_protocol()
        if reader == "rebeam":
            assert isinstance(protocol, Reader), "not read by rebeam's reader"
            protocol.data_received(REFUSAL)
        else:
            assert not isinstance(protocol, Reader)
            await nc._ps.parse(REFUSAL)
        async with asyncio.timeout(30):
            await reconnected.wait()
        assert not nc.is_closed
        assert any(isinstance(e, AuthorizationError) for e in errors), errors
        reply = await nc.request("echo", b"again", timeout=5)
        assert reply.data == b"again"
    finally:
        await nc.close()
