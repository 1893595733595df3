"""The request path's shortcuts through nats-py (rebeam._fastpath) keep what nats-py's own
path guarantees: the order of the messages on a connection, waiting while the peer does not
read, and a read loop that goes on when a handler raises. Real nats-server, real sockets;
the server is frozen with SIGSTOP where a peer that does not read is needed."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.errors import ConnectionClosedError

from rebeam._fastpath import HIGH_WATER, handle_inline, publish_now
from rebeam._nats_fixes import connect

DEADLINE = 20.0  # seconds: a loaded 2-core machine, not the expected time


@pytest.fixture
async def pair(nats_server, namespace) -> AsyncIterator[tuple[Any, Any]]:
    """A sending and a receiving connection (BACKEND grants: any subject)."""
    token = nats_server.backend_credentials(namespace)
    sender = await connect(nats_server.url, token=token)
    receiver = await connect(nats_server.url, token=token)
    try:
        yield sender, receiver
    finally:
        for nc in (sender, receiver):
            await nc.close()


async def collect(receiver: Any, subject: str, count: int) -> tuple[list[bytes], asyncio.Event]:
    got: list[bytes] = []
    done = asyncio.Event()

    async def on_message(msg: Any) -> None:
        got.append(msg.data)
        if len(got) == count:
            done.set()

    await receiver.subscribe(subject, cb=on_message, pending_bytes_limit=-1)
    await receiver.flush()
    return got, done


async def test_a_message_written_now_goes_out_behind_everything_pending(pair):
    sender, receiver = pair
    got, done = await collect(receiver, "order", 51)
    for i in range(50):
        await sender.publish("order", str(i).encode())
    assert sender._pending  # they wait for nats-py's flusher, a turn of the loop away
    assert publish_now(sender, "order", b"last")
    assert not sender._pending  # written with it, ahead of it
    async with asyncio.timeout(DEADLINE):
        await done.wait()
    assert got == [str(i).encode() for i in range(50)] + [b"last"]


async def test_while_the_peer_does_not_read_publishes_queue_behind_nats_py(pair, nats_server):
    sender, receiver = pair
    size = min(256 * 1024, sender._max_payload)
    payload = b"x" * size
    got, _ = await collect(receiver, "backlog", 0)  # counted below: the sizes vary
    written = 0
    os.kill(nats_server.pid, signal.SIGSTOP)
    try:
        # The kernel's socket buffers fill first; then the transport's own buffer grows.
        for _ in range(1024):
            if not publish_now(sender, "backlog", payload):
                break
            written += 1
        transport = sender._transport._io_writer.transport
        assert transport.get_write_buffer_size() > HIGH_WATER
        assert not publish_now(sender, "backlog", b"behind")
        await sender.publish("backlog", b"behind")  # nats-py's path: pending, then drained
    finally:
        os.kill(nats_server.pid, signal.SIGCONT)
    await sender.publish("backlog", b"last")
    async with asyncio.timeout(DEADLINE):
        while len(got) < written + 2:  # noqa: ASYNC110 - a backlog of MiBs arrives in reads
            await asyncio.sleep(0.01)
    assert got[:written] == [payload] * written
    assert got[written:] == [b"behind", b"last"]


async def test_a_handler_that_raises_is_reported_and_reading_goes_on(nats_server, namespace):
    errors: list[Exception] = []
    reported = asyncio.Event()

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)
        reported.set()

    nc = await connect(
        nats_server.url, token=nats_server.backend_credentials(namespace), error_cb=error_cb
    )
    try:

        def handler(subject: bytes, data: bytes, headers: Any) -> None:
            raise ValueError(f"refused {data!r}")

        async def echo(msg: Any) -> None:
            await nc.publish(msg.reply, msg.data)

        sub = await nc.subscribe("inline")
        handle_inline(nc, sub._id, handler)
        await nc.subscribe("echo", cb=echo)
        await nc.publish("inline", b"boom")
        async with asyncio.timeout(DEADLINE):
            await reported.wait()
        assert [str(e) for e in errors] == ["refused b'boom'"]
        reply = await nc.request("echo", b"still reading", timeout=DEADLINE)
        assert reply.data == b"still reading"
    finally:
        await nc.close()


async def test_nothing_is_written_now_on_a_closed_connection(pair):
    sender, _ = pair
    await sender.close()
    assert not publish_now(sender, "anything", b"x")
    with pytest.raises(ConnectionClosedError):
        await sender.publish("anything", b"x")  # nats-py's path, which says why
