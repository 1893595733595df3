"""A call to a free actor takes the receiving hot path (rebeam._actor.Host.on_message), and
keeps everything the whole way guarantees: From and a later reply (NOREPLY), a raise answered
with the crash and the actor crashed, a call waiting its turn behind a busy handler, the
caller of the current call told when the actor finishes, the order of calls and casts,
refusals counted and answered, the call counted before its reply is written; and at fewer
Python calls per call than a raw nats-py responder. A real nats-server; the actor is hosted in
the test's own process, its callers real nodes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.sdk.hostile_inputs import message, until
from tests.sdk.hosting import hosted_here
from tests.sdk.test_receive_batch import calls_per_message, frame

import rebeam
from rebeam import _codec, _subjects
from rebeam._actor import NOREPLY
from rebeam._envelope import CALL, CAST, ERROR, OK, pack_mailbox
from rebeam._node import Node
from rebeam.auth.grants import Role
from rebeam.errors import CalleeExited, RemoteError
from rebeam.exits import ExitReason
from rebeam.natsd import NatsServer
from rebeam.pids import Pid

DEADLINE = 20.0  # seconds: a loaded 2-core machine, not the expected time
PAYLOAD = {"n": 1, "data": "x" * 32}  # what the call benchmark sends


class Answering(rebeam.Actor):
    """Answers calls, records what it handles in order, and can be held in a handler."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.release = asyncio.Event()
        self.held = asyncio.Event()  # a handler is waiting for ``release``
        self.deferred: list[rebeam.From] = []

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        self.seen.append(message)
        if message == "hold":
            self.held.set()
            await self.release.wait()
        elif message == "later":
            self.deferred.append(from_)
            return NOREPLY
        elif message == "raise":
            raise ValueError("told to raise")
        elif message == "from":
            return from_.sender
        elif message == "counted":
            return self.node.metrics.received[CALL]
        return message

    def handle_cast(self, message: Any) -> None:  # a plain def: it may be either
        self.seen.append(message)

    async def handle_info(self, message: Any) -> None:
        self.seen.append(message)
        if message == "hold":
            self.held.set()
            await self.release.wait()


@contextlib.asynccontextmanager
async def hosted(
    server: NatsServer, namespace: str, role: Role = Role.ACTOR
) -> AsyncIterator[tuple[Node, Answering, Node]]:
    """The actor's node, the actor, and a caller's node (the tree owner's)."""
    actor = Answering()
    async with (
        hosted_here(server, namespace, "answering", actor, role) as node,
        rebeam.connect(server.url, namespace=namespace) as caller,
    ):
        yield node, actor, caller


async def test_a_call_is_answered_with_its_sender_and_counted_before_the_reply(
    nats_server, namespace
):
    async with hosted(nats_server, namespace) as (node, actor, client):
        assert await client.call(node.pid, PAYLOAD, timeout=DEADLINE) == PAYLOAD
        assert await client.call(node.pid, "from", timeout=DEADLINE) == str(client.pid)
        # The reply is written after the call is counted: a caller holding it finds it.
        assert await client.call(node.pid, "counted", timeout=DEADLINE) == 3
        assert node.metrics.received[CALL] == 3
        assert node.stats.received == 3
        assert actor._host._current is None


async def test_a_call_answered_later_gets_the_later_reply(nats_server, namespace):
    async with hosted(nats_server, namespace) as (node, actor, client):
        later = asyncio.ensure_future(client.call(node.pid, "later", timeout=DEADLINE))

        async def deferred() -> bool:
            return bool(actor.deferred)

        await until(deferred, "the call to be handled", timeout=DEADLINE)
        # Handled and not answered: the actor takes the next call meanwhile.
        assert await client.call(node.pid, "next", timeout=DEADLINE) == "next"
        assert not later.done()
        (from_,) = actor.deferred
        assert from_.pid == client.pid
        await actor.reply(from_, "at last")
        assert await later == "at last"


async def test_a_raise_answers_the_caller_with_the_crash_and_crashes_the_actor(
    nats_server, namespace
):
    async with hosted(nats_server, namespace) as (node, actor, client):
        with pytest.raises(RemoteError) as raised:
            await client.call(node.pid, "raise", timeout=DEADLINE)
        assert raised.value.exception_type == "ValueError"
        host = actor._host
        assert host._stopping.is_set()
        assert host._stop is not None
        assert not host._stop.is_clean
        # A crashed actor handles nothing more: the next caller learns it has exited.
        with pytest.raises(CalleeExited):
            await client.call(node.pid, "after", timeout=DEADLINE)
        assert actor.seen == ["raise"]


async def test_a_call_waits_for_the_turn_a_busy_handler_holds(nats_server, namespace):
    async with hosted(nats_server, namespace) as (node, actor, client):
        # A timer's message holds the turn (from the info task, not the receive loop): the
        # call arrives at a busy actor, waits, and is answered once the handler returns.
        host = actor._host
        infos = asyncio.ensure_future(host._info_loop())  # Host.run's, which is not running
        try:
            actor.send_after(0, "hold")
            await asyncio.wait_for(actor.held.wait(), DEADLINE)
            queued = asyncio.ensure_future(client.call(node.pid, "queued", timeout=DEADLINE))

            async def waiting() -> bool:
                return len(host._turn_waiters) == 1

            await until(waiting, "the call to wait for its turn", timeout=DEADLINE)
            assert not queued.done()
            actor.release.set()
            assert await queued == "queued"
            assert actor.seen == ["hold", "queued"]
            assert not host._busy
        finally:
            infos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await infos


async def test_a_call_behind_a_suspended_call_is_answered_after_it(nats_server, namespace):
    async with hosted(nats_server, namespace) as (node, actor, client):
        first = asyncio.ensure_future(client.call(node.pid, "hold", timeout=DEADLINE))
        await asyncio.wait_for(actor.held.wait(), DEADLINE)
        second = asyncio.ensure_future(client.call(node.pid, "second", timeout=DEADLINE))

        async def queued() -> bool:
            return node.mailbox_sub.pending_msgs == 1

        await until(queued, "the second call to wait in the mailbox", timeout=DEADLINE)
        assert actor.seen == ["hold"]
        actor.release.set()
        assert await first == "hold"
        assert await second == "second"
        assert actor.seen == ["hold", "second"]


async def test_finishing_answers_the_current_call_with_the_exit_reason(nats_server, namespace):
    async with hosted(nats_server, namespace) as (node, actor, client):
        current = asyncio.ensure_future(client.call(node.pid, "hold", timeout=DEADLINE))
        await asyncio.wait_for(actor.held.wait(), DEADLINE)
        assert actor._host._current  # the reply subject of the call being handled
        await actor._host.finish(ExitReason.from_wire("normal"))
        with pytest.raises(CalleeExited) as exited:
            await current
        assert exited.value.reason.is_clean
        actor.release.set()


async def test_calls_and_casts_queued_together_are_handled_in_order(
    nats_server, namespace, launcher
):
    # A burst fed to the actor's parser: every message is queued before the receive loop
    # runs, calls among casts, as a busy socket read leaves them (test_receive_batch.py).
    async with hosted(nats_server, namespace, Role.BACKEND) as (node, actor, _):
        caller = Pid.for_incarnation(namespace, "caller", 1)
        subject, inbox = _subjects.mailbox(node.pid, caller), _subjects.inbox_prefix(caller)
        answers: list[Any] = []

        async def answered(msg: Any) -> None:
            answers.append((msg.subject, _codec.decode(msg.data)))

        await launcher.nc.subscribe(f"{inbox}.>", cb=answered)
        await launcher.nc.flush()
        sid = node.mailbox_sub._id
        burst = [
            call_frame(sid, subject, f"{inbox}.{i}", message(CALL, i))
            if i % 3 == 0
            else frame(sid, subject, message(CAST, i))
            for i in range(300)
        ]
        await node.nc._ps.parse(b"".join(burst))

        async def all_answered() -> bool:
            return len(answers) == 100

        await until(all_answered, "every call to be answered", timeout=DEADLINE)
        assert actor.seen == list(range(300))
        assert answers == [(f"{inbox}.{i}", [OK, i]) for i in range(0, 300, 3)]
        assert (node.metrics.received[CALL], node.metrics.received[CAST]) == (100, 200)


async def test_refused_calls_are_counted_and_answered(nats_server, namespace, launcher):
    async with hosted(nats_server, namespace) as (node, actor, _):
        node._limit = 1024  # read by the receive loop at each batch
        caller = Pid.for_incarnation(namespace, "caller", 1)
        subject = _subjects.mailbox(node.pid, caller)
        inbox = f"{_subjects.inbox_prefix(caller)}.abc"
        answers: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        async def answered(msg: Any) -> None:
            await answers.put((msg.subject, _codec.decode(msg.data)))

        # The launcher's backend connection may publish as anyone and listen anywhere.
        nc = launcher.nc
        await nc.subscribe(f"{_subjects.inbox_prefix(caller)}.>", cb=answered)
        await nc.subscribe("_INBOX.refused", cb=answered)
        await nc.flush()

        async def answer() -> tuple[str, Any]:
            return await asyncio.wait_for(answers.get(), DEADLINE)

        refusals = [
            (pack_mailbox(CALL, "x" * 2000), inbox, "oversized"),
            (b"\x93\x02\x03\xc1", inbox, "malformed"),  # a call's head, no body
            (pack_mailbox(CALL, "to a non-call inbox"), "_INBOX.refused", "reply_refused"),
        ]
        for payload, reply, counter in refusals:
            before = getattr(node.stats, counter)
            await nc.publish(subject, payload, reply=reply)
            to, (status, error) = await answer()
            assert (to, status, error["error"]) == (reply, ERROR, "refused")
            assert getattr(node.stats, counter) == before + 1
        # The actor still answers, on the hot path.
        await nc.publish(subject, pack_mailbox(CALL, "fine"), reply=inbox)
        assert await answer() == (inbox, [OK, "fine"])
        assert actor.seen == ["fine"]
        assert node.metrics.received[CALL] == 1


def call_frame(sid: int, subject: str, reply: str, payload: bytes) -> bytes:
    return f"MSG {subject} {sid} {reply} {len(payload)}\r\n".encode() + payload + b"\r\n"


@pytest.mark.parametrize("count", [500])
async def test_a_call_costs_fewer_calls_than_a_raw_nats_py_responder(
    nats_server, namespace, launcher, count
):
    responded = [0]
    nc = launcher.nc
    decode, encode = _codec.decode, _codec.encode

    async def raw(msg: Any) -> None:  # the call benchmark's raw responder
        responded[0] += 1
        await nc.publish(msg.reply, encode(decode(msg.data)))

    raw_sub = await nc.subscribe("raw.call", cb=raw, pending_msgs_limit=10 * count)
    # A BACKEND grant: the answers go to requests the server never delivered (hosted_here).
    async with hosted(nats_server, namespace, Role.BACKEND) as (node, actor, _):
        caller = Pid.for_incarnation(namespace, "caller", 1)
        subject = _subjects.mailbox(node.pid, caller)
        reply = f"{_subjects.inbox_prefix(caller)}.0123456789abcdef.1"  # a caller's, as long
        ours = b"".join(
            call_frame(node.mailbox_sub._id, subject, reply, message(CALL, PAYLOAD))
            for _ in range(count)
        )
        theirs = call_frame(raw_sub._id, "raw.call", reply, encode(PAYLOAD)) * count
        # Warmed first: a path's first run imports and caches.
        await node.nc._ps.parse(ours)
        await nc._ps.parse(theirs)
        await until(lambda: _true(len(actor.seen) == count), "the warm-up calls", timeout=10)
        await until(lambda: _true(responded[0] == count), "the warm-up requests", timeout=10)

        async def feed_ours() -> None:
            await node.nc._ps.parse(ours)

        async def feed_theirs() -> None:
            await nc._ps.parse(theirs)

        rebeam_calls = await calls_per_message(
            feed_ours, lambda: len(actor.seen) == 2 * count, count
        )
        raw_calls = await calls_per_message(feed_theirs, lambda: responded[0] == 2 * count, count)
        assert node.stats.reply_refused == 0
    # The hot path: 28 against the responder's 29; the whole way (Node.admit, an Envelope,
    # deliver, _dispatch) took 42.
    assert rebeam_calls <= raw_calls, (rebeam_calls, raw_calls)


async def _true(value: bool) -> bool:
    return value
