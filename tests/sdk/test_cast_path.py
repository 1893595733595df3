"""A plain send or cast is queued on the connection without nats-py's publish coroutines
(rebeam._fastpath.publish_queued), and keeps everything that path guarantees: the order of a
sender's casts and calls, the pending buffer's limit, refusals, counters, nats-py's buffering
while it reconnects and its error once closed, the server's permission check. Real
nats-server, an actor hosted in the test's process, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any

import pytest
from nats.errors import ConnectionClosedError
from tests.sdk.hostile_inputs import until
from tests.sdk.hosting import hosted_here

import rebeam
from rebeam import _codec
from rebeam._envelope import CAST, SEND
from rebeam._node import Node
from rebeam.errors import MessageTooLarge
from rebeam.natsd import NatsServer
from rebeam.pids import Pid

PAYLOAD = {"n": 1, "data": "x" * 32}  # what the throughput benchmark casts
DEADLINE = 20.0  # seconds: a loaded 2-core machine, not the expected time


class Recorder(rebeam.Actor):
    """Records every message it handles, in the order it handles them."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def handle_cast(self, message: Any) -> None:
        self.seen.append(message)

    async def handle_info(self, message: Any) -> None:
        self.seen.append(message)

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        if message == "later":
            self.send_after(0, "timer", dest=self.pid)  # a plain send, from a timer
        self.seen.append(message)
        return len(self.seen)


@contextlib.asynccontextmanager
async def hosted(server: NatsServer, namespace: str) -> AsyncIterator[tuple[Pid, Recorder]]:
    actor = Recorder()
    async with hosted_here(server, namespace, "recorder", actor) as node:
        yield node.pid, actor


@pytest.fixture
async def client(nats_server: NatsServer, namespace: str) -> AsyncIterator[Node]:
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_casts_sends_and_calls_arrive_in_the_order_they_were_made(
    nats_server, namespace, client
):
    async with hosted(nats_server, namespace) as (pid, actor):
        for i in range(300):
            if i % 7 == 0:
                await client.call(pid, i)  # written at once, behind the casts still queued
            elif i % 3 == 0:
                await client.send(pid, i)
            else:
                await client.cast(pid, i)
        assert await client.call(pid, "last", timeout=DEADLINE) == 301
        assert actor.seen == [*range(300), "last"]


async def test_a_send_from_a_timer_arrives_and_raises_nothing(nats_server, namespace, client):
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda loop, context: errors.append(context))
    try:
        async with hosted(nats_server, namespace) as (pid, actor):
            await client.call(pid, "later")

            async def arrived() -> bool:
                return "timer" in actor.seen

            await until(arrived, "the timer's send", timeout=DEADLINE)
    finally:
        loop.set_exception_handler(None)
    assert errors == []


async def test_a_burst_past_the_pending_limit_is_written_and_waited_for(
    nats_server, namespace, client
):
    nc = client.nc
    limit = nc._max_pending_size = 16 * 1024  # nats-py's own limit, made small
    largest = 0
    async with hosted(nats_server, namespace) as (pid, actor):
        for i in range(2000):
            await client.cast(pid, {"i": i, "pad": "x" * 64})
            largest = max(largest, nc._pending_data_size)
        assert await client.call(pid, "last", timeout=DEADLINE) == 2001
        assert actor.seen[:-1] == [{"i": i, "pad": "x" * 64} for i in range(2000)]
    assert largest <= limit  # past it, nats-py wrote the buffer out and waited


async def test_a_refused_cast_queues_nothing(nats_server, namespace):
    async with (
        rebeam.connect(nats_server.url, namespace=namespace, max_message_size=1024) as node,
        hosted(nats_server, namespace) as (pid, actor),
    ):
        sent, out = list(node.metrics.sent), dict(node.nc.stats)
        with pytest.raises(MessageTooLarge):
            node.cast(pid, "x" * 2000)  # at the call, not when awaited
        with pytest.raises(MessageTooLarge):
            node.send(pid, "x" * 2000)
        assert (node.metrics.sent, node.nc.stats["out_msgs"]) == (sent, out["out_msgs"])
        await node.cast(pid, "small")
        assert await node.call(pid, "last", timeout=DEADLINE) == 2
        assert actor.seen == ["small", "last"]


async def test_casts_are_counted_where_nats_py_and_the_metrics_count_them(
    nats_server, namespace, client
):
    target = Pid.for_incarnation(namespace, "nobody", 1)  # lost silently: nobody is there
    nc = client.nc
    sent, out = list(client.metrics.sent), dict(nc.stats)
    for i in range(10):
        await client.cast(target, i)
        await client.send(target, i)
    size = 2 * sum(len(_codec.encode([2, CAST, i])) for i in range(10))
    assert client.metrics.sent[CAST] - sent[CAST] == 10
    assert client.metrics.sent[SEND] - sent[SEND] == 10
    assert nc.stats["out_msgs"] - out["out_msgs"] == 20
    assert nc.stats["out_bytes"] - out["out_bytes"] == size


async def test_a_cast_the_server_does_not_permit_is_counted(nats_server, namespace, client):
    # An ADMIN grant of one namespace may not publish into another's mailboxes.
    elsewhere = Pid.for_incarnation("elsewhere", "target", 1)
    await client.cast(elsewhere, "not for you")

    async def refused() -> bool:
        return client.stats.not_permitted >= 1

    await until(refused, "the server's permissions violation", timeout=DEADLINE)


async def test_while_reconnecting_a_cast_is_buffered_and_once_closed_it_raises(
    nats_server, namespace, client
):
    target = Pid.for_incarnation(namespace, "nobody", 1)
    nc = client.nc
    nats_server.kill()

    async def reconnecting() -> bool:
        return bool(nc.is_reconnecting)

    await until(reconnecting, "the client to notice the server is gone", timeout=DEADLINE)
    before = nc._pending_data_size
    await client.cast(target, "while away")  # nats-py's buffer holds it for the reconnect
    assert nc._pending_data_size > before
    await client.close()
    with pytest.raises(ConnectionClosedError):
        await client.cast(target, "after close")


async def test_a_cast_costs_fewer_python_calls_than_a_raw_publish(nats_server, namespace):
    """What the sender runs per cast, counted in Python calls: rebeam's cast, the node's and
    the module-level one, against a raw nats-py publish of a value it encodes (the throughput
    benchmark's baseline), on the same subject and connection."""
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        target = Pid.for_incarnation(namespace, "nobody", 1)
        subject = node._mailbox_of(target)
        publish, encode = node.nc.publish, _codec.encode
        count = 200

        async def by_node() -> None:
            for _ in range(count):
                await node.cast(target, PAYLOAD)

        async def by_api() -> None:
            for _ in range(count):
                await rebeam.cast(target, PAYLOAD)

        async def raw() -> None:
            for _ in range(count):
                await publish(subject, encode(PAYLOAD))

        for run in (by_node, by_api, raw):
            await run()  # warmed first: a path's first run imports and caches
        node_calls = await calls_per_message(by_node, count)
        api_calls = await calls_per_message(by_api, count)
        raw_calls = await calls_per_message(raw, count)
        # The module-level cast hands back the node's awaitable: no coroutine of its own.
        queued = rebeam.cast(target, PAYLOAD)
        assert not asyncio.iscoroutine(queued)
        await queued
    assert node_calls < raw_calls, (node_calls, raw_calls)
    assert api_calls <= node_calls + 2, (api_calls, node_calls)  # itself, current_node()


async def calls_per_message(run: Any, count: int) -> float:
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        await run()
    finally:
        sys.setprofile(None)
    return calls / count
