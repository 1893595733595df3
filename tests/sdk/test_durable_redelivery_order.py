"""Durable mailboxes whose deliveries come back out of order (docs/sdk.md, "Durable
mailboxes"): a send delivered somewhere the actor never saw it (a pull of an earlier
incarnation, a delivery lost with a connection) comes back after the ack wait, behind
sends stored later that the actor handled meanwhile. It must still run: it was never
handled, whatever its place in the stream.

Real actor processes and a real nats-server; the lost delivery is a real pull on the
actor's consumer, held and then given back; waits are on reports, with deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from nats.aio.client import Client
from nats.aio.msg import Msg
from tests.sdk.test_durable import DURABLE, collect, settled

import rebeam
from rebeam import _durable_stream, _subjects


async def _hold_one(nc: Client, stream: str, consumer: str) -> tuple[Msg, asyncio.Task[None]]:
    """Pull one message off ``consumer`` as an unseen delivery would take it: nobody handles
    or acknowledges it. Returns the message and a task that keeps it from being redelivered
    until cancelled."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, max_msgs=1)
    request = json.dumps({"batch": 1, "expires": 10_000_000_000}).encode()
    pull = _subjects.js_api("CONSUMER", "MSG", "NEXT", stream, consumer)
    await nc.publish(pull, request, reply=inbox)
    msg = await sub.next_msg(timeout=10)

    async def keep() -> None:
        while True:
            await msg.in_progress()
            await asyncio.sleep(0.3)

    return msg, asyncio.get_running_loop().create_task(keep())


async def test_a_send_redelivered_behind_later_handled_sends_still_runs(launcher, nats_server):
    async with rebeam.connect(nats_server.url, namespace=launcher.namespace) as node:
        args = {"report_to": str(node.pid)}
        first = await launcher.start(DURABLE, args, slot="ro-a")
        await node.cast(first.pid, ["a", 0], durable=True)
        assert [m["got"] for m in await collect(node, 1)] == [["a", 0]]
        await settled(first.pid, "durable_delivered", 1)  # recorded and acknowledged
        await first.stop()
        # Stored while nobody runs the slot, then taken by a pull the next incarnation
        # never sees (as a pull of the one before it would have taken it).
        await node.cast(first.pid, ["a", 1], durable=True)
        stream = _durable_stream.stream_name(launcher.namespace)
        held, keep = await _hold_one(launcher.nc, stream, _durable_stream.consumer_name(first.pid))
        try:
            second = await launcher.start(DURABLE, args, slot="ro-a", incarnation=2)
            # Stored after it, and handled while it is away.
            await node.cast(second.pid, ["a", 2], durable=True)
            assert [m["got"] for m in await collect(node, 1, timeout=30)] == [["a", 2]]
            await settled(second.pid, "durable_delivered", 1)
        finally:
            keep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keep
        await held.nak()  # back to the consumer, now: redelivered behind ["a", 2]
        # Never handled, so it runs, late.
        assert [m["got"] for m in await collect(node, 1, timeout=30)] == [["a", 1]]
        stats = await settled(second.pid, "durable_delivered", 2)
        assert stats["parked"] == 0
        await second.stop()


async def test_a_send_only_delivered_to_killed_incarnations_is_not_parked(launcher, nats_server):
    """Parking counts the runs of a send, not its deliveries: incarnations killed -9 while
    a send waited behind another are no attempts at it, however many."""
    async with rebeam.connect(nats_server.url, namespace=launcher.namespace) as node:
        args = {"report_to": str(node.pid)}
        extra = ["--mailbox-max-deliver", "1"]
        actor = await launcher.start(DURABLE, args, slot="ro-k", extra=extra)
        await node.cast(actor.pid, ["slow", 600], durable=True)  # runs until killed
        await node.cast(actor.pid, ["a", 0], durable=True)  # delivered behind it
        for incarnation in (2, 3):
            started = await collect(node, 1, timeout=30)
            assert started == [{"started": ["slow", 600], "by": str(actor.pid)}]
            actor.kill()  # kill -9 inside the slow one: ["a", 0] delivered, never run
            await actor.wait()
            actor = await launcher.start(
                DURABLE, args, slot="ro-k", incarnation=incarnation, extra=extra
            )
        # The slow one was started twice (once counted as it started): parked. The other
        # one was delivered three times and never run: it runs now.
        assert [m["got"] for m in await collect(node, 1, timeout=30)] == [["a", 0]]
        stats = await settled(actor.pid, "parked", 1)
        assert stats["parked"] == 1
        await actor.stop()
