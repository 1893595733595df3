"""Durable mailboxes (docs/sdk.md): JetStream keeps what is sent while an actor is down.

Real actor processes killed with SIGKILL and restarted as the next incarnation of their
slot, a real nats-server (restarted with its store kept). Waits are on reports, with
deadlines.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

import rebeam
from rebeam._durable_stream import stream_name
from rebeam._registry import Store
from rebeam.backends import provision

DURABLE = "rebeam_test_actors:DurableProbe"


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def collect(node: rebeam.Node, count: int, timeout: float = 30.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{len(got)} of {count} arrived: {got[-5:]}")
        got.append(await node.receive(timeout=remaining))
    return got


async def settled(pid: rebeam.Pid, key: str, value: int, timeout: float = 20.0) -> dict[str, int]:
    """The process's stats once ``key`` reached ``value`` (a handler reports before the
    runtime records and counts the message)."""
    deadline = time.monotonic() + timeout
    while (stats := await rebeam.stats(pid))[key] < value:
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} = {stats[key]}, not {value}")
        await asyncio.sleep(0.01)
    return stats


async def test_sent_while_killed_and_restarting_arrives_once_in_order(launcher, node, nats_server):
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="dur-a")
    async with rebeam.connect(nats_server.url, namespace=launcher.namespace) as other:
        for i in range(20):
            await node.cast(first.pid, ["a", i], durable=True)
            await other.cast(first.pid, ["b", i], durable=True)
        before = await collect(node, 40)
        # Kill once the 40th was recorded as handled (its ack may still be in the client's
        # buffer: then it is redelivered and the record de-duplicates it).
        await settled(first.pid, "durable_delivered", 40)
        os.kill(first.os_pid, 9)  # kill -9
        await first.wait()
        # Sent while nobody runs the slot: kept, for the next incarnation.
        for i in range(20, 60):
            await node.cast(first.pid, ["a", i], durable=True)
            await other.send(first.pid, ["b", i], durable=True)  # handle_info: not a cast
        second = await launcher.start(DURABLE, args, slot="dur-a", incarnation=2)
        for i in range(60, 80):  # and after the restart
            await node.cast(second.pid, ["a", i], durable=True)
        after = await collect(node, 60 + 40)
    got = [m["got"] for m in before + after]
    # Every message exactly once, in order per sender, across the kill and the restart.
    assert [seq for s, seq in got if s == "a"] == list(range(80))
    assert [seq for s, seq in got if s == "b"] == list(range(60))
    assert all(m.get("info") for m in after if m["got"][0] == "b")  # sends: handle_info
    assert {m["by"] for m in after} == {str(second.pid)}
    stats = await settled(second.pid, "durable_delivered", 100)
    assert stats["durable_delivered"] == 100
    assert stats["durable_duplicates"] <= 1  # the last ack before the kill, if it was lost
    assert stats["parked"] == 0
    await second.stop()


async def test_killed_mid_handling_the_message_goes_to_the_next_incarnation(launcher, node):
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="dur-k")
    await node.cast(first.pid, ["slow", 60], durable=True)
    await node.cast(first.pid, ["a", 0], durable=True)
    started = await collect(node, 1)
    assert started[0] == {"started": ["slow", 60], "by": str(first.pid)}
    first.kill()  # kill -9 inside the callback: never acknowledged
    await first.wait()
    second = await launcher.start(DURABLE, args, slot="dur-k", incarnation=2)
    got = await collect(node, 1, timeout=30)  # after the ack wait (2 s), to the successor
    assert got[0] == {"started": ["slow", 60], "by": str(second.pid)}
    stats = await rebeam.stats(second.pid)
    assert stats["durable_delivered"] == 0  # still in the slow one; ["a", 0] waits behind it


async def test_a_redelivery_of_a_handled_message_is_not_handled_again(launcher, node):
    """The crash window the SDK de-duplicates: handled and recorded, not acknowledged."""
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="dur-d")
    await first.stop()
    for i in range(3):
        await node.cast(first.pid, ["a", i], durable=True)
    # Record the first as handled, as a process killed between the record and the ack did
    # (with the backend's rights: only the actor itself may write that record).
    js = launcher.nc.jetstream()
    info = await js.stream_info(stream_name(launcher.namespace))
    kv = await Store(js, launcher.namespace).kv()
    await kv.put(f"d.{first.pid.slot_token}", str(info.state.first_seq).encode())
    second = await launcher.start(DURABLE, args, slot="dur-d", incarnation=2)
    got = await collect(node, 2)
    assert [m["got"] for m in got] == [["a", 1], ["a", 2]]
    stats = await settled(second.pid, "durable_delivered", 2)
    assert stats["durable_duplicates"] == 1
    assert stats["durable_delivered"] == 2


async def test_a_poison_message_is_parked_and_the_actor_keeps_running(launcher, node):
    args = {"report_to": str(node.pid)}
    extra = ["--mailbox-max-deliver", "1"]
    first = await launcher.start(DURABLE, args, slot="dur-p", extra=extra)
    await node.cast(first.pid, "poison", durable=True)
    await node.cast(first.pid, ["a", 0], durable=True)
    reason = await first.wait()
    assert "poisoned" in str(reason)
    second = await launcher.start(DURABLE, args, slot="dur-p", incarnation=2, extra=extra)
    got = await collect(node, 1)
    assert got[0]["got"] == ["a", 0]
    stats = await rebeam.stats(second.pid)
    assert stats["parked"] == 1
    assert await node.call(second.pid, "alive") == "alive"
    assert second.proc.returncode is None
    # Parked where an operator can look at it, with the reason.
    js = node.nc.jetstream()
    parked = await js.get_last_msg(
        stream_name(launcher.namespace),
        f"rebeam.{launcher.namespace}.dmbox.parked.{first.pid.slot_token}",
    )
    assert parked.headers is not None
    assert parked.headers["Rebeam-Parked-Attempts"] == "2"


async def test_server_restart_keeps_what_was_acknowledged(launcher, node, nats_server):
    args = {"report_to": str(node.pid)}
    first = await launcher.start(DURABLE, args, slot="dur-s")
    await first.stop()
    for i in range(50):
        await node.cast(first.pid, ["a", i], durable=True)  # each returns once stored
    await asyncio.to_thread(nats_server.restart)
    # The reports come back by Core NATS: this client must have re-subscribed first.
    deadline = time.monotonic() + 20
    while not node.nc.is_connected:
        assert time.monotonic() < deadline, "the client did not reconnect"
        await asyncio.sleep(0.02)
    await node.nc.flush(timeout=10)
    # A backend provisions again after its server restarted: memory buckets (leases, local
    # scopes) do not survive a restart, and actors may not make them.
    while not launcher.nc.is_connected:
        assert time.monotonic() < deadline, "the backend did not reconnect"
        await asyncio.sleep(0.02)
    await provision(launcher.nc, launcher.namespace)
    second = await launcher.start(DURABLE, args, slot="dur-s", incarnation=2)
    got = await collect(node, 50)
    assert [m["got"] for m in got] == [["a", i] for i in range(50)]
    await second.stop()
