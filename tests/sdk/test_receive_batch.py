"""An actor takes the messages queued in its mailbox in one go (docs/sdk.md, "Cast
throughput"): in order, refusals still refused and counted, the queue's accounting kept, and
at fewer Python calls per cast than a raw nats-py subscriber that decodes.

A real nats-server. A burst is fed to the client's own parser as MSG frames, so that it is
queued before the receive loop runs, as a busy socket read leaves it, every time alike."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from types import FrameType
from typing import Any

import pytest
from tests.sdk.hostile_inputs import message, until
from tests.sdk.hosting import hosted_here

import rebeam
from rebeam import _codec, _subjects
from rebeam._envelope import CAST
from rebeam._node import Node
from rebeam.natsd import NatsServer
from rebeam.pids import Pid

SUSPENDS = 40  # the cast whose handler awaits something that suspends


class Recorder(rebeam.Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def handle_cast(self, message: Any) -> None:
        if message == SUSPENDS:
            await asyncio.sleep(0)  # the batch goes on after a handler that suspended
        self.seen.append(message)


@contextlib.asynccontextmanager
async def hosted(server: NatsServer, namespace: str) -> AsyncIterator[tuple[Node, Recorder]]:
    actor = Recorder()
    async with hosted_here(server, namespace, "batch", actor) as node:
        yield node, actor


def frame(sid: int, subject: str, payload: bytes) -> bytes:
    return f"MSG {subject} {sid} {len(payload)}\r\n".encode() + payload + b"\r\n"


def sender_subject(node: Node, slot: str = "sender") -> str:
    return _subjects.mailbox(node.pid, Pid.for_incarnation(node.namespace, slot, 1))


async def test_a_queued_burst_is_handled_in_order_with_its_refusals(nats_server, namespace):
    async with hosted(nats_server, namespace) as (node, actor):
        sid, subject = node.mailbox_sub._id, sender_subject(node)
        light = subject[: -len(_subjects.WHOLE)] + "light"  # a subject of no sender
        burst = [frame(sid, subject, message(CAST, i)) for i in range(100)]
        burst.insert(30, frame(sid, subject, b"\x93\x02\x02\xc1"))  # a cast's head, no body
        burst.insert(70, frame(sid, light, message(CAST, "misaddressed")))
        await node.nc._ps.parse(b"".join(burst))

        async def all_taken() -> bool:
            return len(actor.seen) == 100 and node.stats.misaddressed == 1

        await until(all_taken, "the burst to be handled", timeout=10)
        assert actor.seen == list(range(100))
        assert (node.stats.received, node.stats.malformed) == (100, 1)
        assert node.metrics.received[CAST] == 100
        sub = node.mailbox_sub
        assert (sub.pending_msgs, sub.pending_bytes) == (0, 0)
        # Every message taken is done in the queue's count, as nats-py's loop does it:
        # otherwise draining the subscription would wait for ever.
        await asyncio.wait_for(sub._pending_queue.join(), 5)


async def calls_per_message(
    feed: Callable[[], Awaitable[None]], done: Callable[[], bool], count: int
) -> float:
    """Python calls made in this thread while ``feed`` queues a burst and the loop handles
    it, per message."""
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    sys.setprofile(profile)
    try:
        await feed()
        for _ in range(10_000):
            if done():
                break
            await asyncio.sleep(0)
    finally:
        sys.setprofile(None)
    assert done(), "the burst was not handled"
    return calls / count


@pytest.mark.parametrize("count", [500])
async def test_a_cast_costs_fewer_calls_than_a_raw_decoding_subscriber(
    nats_server, namespace, launcher, count
):
    raw_seen = [0]
    decode = _codec.decode

    async def raw(msg: Any) -> None:  # what the throughput benchmark compares with
        raw_seen[0] += 1
        decode(msg.data)

    raw_sub = await launcher.nc.subscribe("raw.cast", cb=raw, pending_msgs_limit=10 * count)
    async with hosted(nats_server, namespace) as (node, actor):
        ours = b"".join(
            frame(node.mailbox_sub._id, sender_subject(node), message(CAST, i))
            for i in range(count)
        )
        theirs = b"".join(frame(raw_sub._id, "raw.cast", message(CAST, i)) for i in range(count))
        # Warmed first: a path's first run imports and caches.
        await node.nc._ps.parse(ours)
        await launcher.nc._ps.parse(theirs)
        await until(lambda: _true(len(actor.seen) == count), "the warm-up casts", timeout=10)
        await until(lambda: _true(raw_seen[0] == count), "the warm-up messages", timeout=10)

        async def feed_ours() -> None:
            await node.nc._ps.parse(ours)

        async def feed_theirs() -> None:
            await launcher.nc._ps.parse(theirs)

        rebeam_calls = await calls_per_message(
            feed_ours, lambda: len(actor.seen) == 2 * count, count
        )
        raw_calls = await calls_per_message(feed_theirs, lambda: raw_seen[0] == 2 * count, count)
    assert rebeam_calls <= raw_calls, (rebeam_calls, raw_calls)


async def _true(value: bool) -> bool:
    return value
