"""Durable mailboxes under batching (docs/sdk.md, "Durable mailboxes"): many messages in
flight per pull, one progress record per batch, and still order per sender, no second run of
a recorded message after kill -9 in the middle of a batch, and parking of the one message
that crashes, not of those that waited behind it.

Real actor processes and a real nats-server; waits are on reports, with deadlines.
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from nats.js.errors import KeyNotFoundError
from tests.sdk.test_durable import DURABLE, collect, settled

import rebeam
from rebeam import _durable, _durable_batch, _durable_stream
from rebeam._envelope import CAST
from rebeam._registry import Store
from rebeam.pids import Pid


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def send_all(sender: rebeam.Node, to: Pid, tag: str, count: int) -> list[int]:
    """``count`` durable casts ``[tag, i]`` one after the other; their stream sequences."""
    return [await _durable_batch.publish(sender, to, CAST, [tag, i]) for i in range(count)]


async def test_order_per_sender_holds_under_batching(launcher, node, nats_server):
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="bat-o")
    await first.stop()
    async with (
        rebeam.connect(nats_server.url, namespace=launcher.namespace) as b,
        rebeam.connect(nats_server.url, namespace=launcher.namespace) as c,
    ):
        # Two senders at once while the actor is down: they interleave in the stream, and
        # the next incarnation gets them in batches.
        await asyncio.gather(send_all(b, first.pid, "b", 300), send_all(c, first.pid, "c", 300))
        second = await launcher.start(DURABLE, args, slot="bat-o", incarnation=2)
        # And while it runs, a third sender concurrently with the backlog.
        await send_all(node, second.pid, "a", 200)
        got = [m["got"] for m in await collect(node, 800, timeout=60)]
    for tag, count in (("a", 200), ("b", 300), ("c", 300)):
        assert [i for t, i in got if t == tag] == list(range(count)), tag
    stats = await settled(second.pid, "durable_delivered", 800)
    assert stats["durable_duplicates"] == 0
    assert stats["parked"] == 0
    await second.stop()


async def test_kill_mid_batch_does_not_run_recorded_messages_again(launcher, node):
    total = 1000
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="bat-k")
    await first.stop()
    seqs = await send_all(node, first.pid, "a", total)
    first = await launcher.start(DURABLE, args, slot="bat-k", incarnation=2)
    before = await collect(node, 120)  # inside the first pulls of the backlog
    os.kill(first.os_pid, 9)
    await first.wait()
    # What the killed incarnation had recorded as handled when it died.
    kv = await Store(launcher.nc.jetstream(), launcher.namespace).kv()
    try:
        progress = _durable.Progress.parse((await kv.get(f"d.{first.pid.slot_token}")).value)
    except KeyNotFoundError:  # killed before its first record
        progress = _durable.Progress((0, _durable.WHOLE))
    recorded = sum(1 for s in seqs if progress.covers((s, _durable.WHOLE)))
    # The killed one may have handled more (reports are sent before the record is written)
    # and got more delivered (the rest of its batch): none of that is lost...
    assert [m["got"][1] for m in before] == list(range(len(before)))
    second = await launcher.start(DURABLE, args, slot="bat-k", incarnation=3)
    expected = list(range(recorded, total))
    deadline = time.monotonic() + 60
    after: list[int] = []
    while len(after) < len(expected):
        left = deadline - time.monotonic()
        assert left > 0, f"stuck at {after[-5:]}"
        try:
            report = await node.receive(timeout=left)
        except TimeoutError:
            raise AssertionError(f"stuck at {after[-5:]}: {second.stderr()[-3000:]}") from None
        if report["by"] == str(second.pid):
            after.append(report["got"][1])
    # ... and the next incarnation runs exactly what was not recorded, in order, once.
    assert after == expected
    stats = await settled(second.pid, "durable_delivered", len(expected))
    assert stats["durable_delivered"] == len(expected)
    assert stats["parked"] == 0
    await second.stop()


async def test_only_the_message_that_crashes_is_parked(launcher, node):
    args = {"report_to": str(node.pid)}
    extra = ["--mailbox-max-deliver", "2"]
    first = await launcher.start(DURABLE, args, slot="bat-p", extra=extra)
    await first.stop()
    for i in range(5):
        await node.cast(first.pid, ["a", i], durable=True)
    await node.cast(first.pid, "poison", durable=True)
    for i in range(5, 40):
        await node.cast(first.pid, ["a", i], durable=True)
    # Two incarnations crash on it, each with the rest of its batch delivered and not run;
    # the third parks it and runs the rest: a delivery not run is no attempt.
    for incarnation in (2, 3):
        crashing = await launcher.start(
            DURABLE, args, slot="bat-p", incarnation=incarnation, extra=extra
        )
        assert "poisoned" in str(await crashing.wait())
    third = await launcher.start(DURABLE, args, slot="bat-p", incarnation=4, extra=extra)
    got = [m["got"] for m in await collect(node, 40)]
    assert got == [["a", i] for i in range(40)]
    stats = await settled(third.pid, "parked", 1)
    assert stats["parked"] == 1
    js = node.nc.jetstream()
    parked = await js.get_last_msg(
        _durable_stream.stream_name(launcher.namespace), _durable_stream.parked_subject(first.pid)
    )
    assert parked.headers is not None
    assert parked.headers["Rebeam-Parked-Attempts"] == "3"
    await third.stop()
