"""Durable sends: :func:`submit` queues a send or cast for a slot's durable mailbox, and
coalesces many sends from one sender to one slot into one stored message.

This is the sending side of durable mailboxes (the receiving side is rebeam._durable), and
every node may use it: the node sits above this module and hands itself in as a
:class:`SendingNode`.

A durable send costs JetStream a stored message, a PubAck, a delivery and an ack, whatever
its size; at thousands per second that is most of the work of the server and of nats-py at
both ends. So a sender's durable sends to one slot go through an :class:`Outbox`, which
queues each at its call and has one task publish what waits, in order, while fewer than
``MAX_FLYING`` of its stores wait for their PubAck: the sends queued by then (in the same
step of the event loop, or while the stores in flight waited) go as one *batch* message,
a send that found nothing queued goes alone, as a plain envelope. A lone send waits for
nothing but its own store, and under load one PubAck answers for many sends.

A batch message carries the header ``Rebeam-Batch: <count>`` and its items framed as
``<4-byte big-endian length><envelope>``, in the order the sends were made. Each item is
a whole envelope with its own message id; the receiver handles, records, de-duplicates and
parks every item on its own (rebeam._durable). The stored message's ``Nats-Msg-Id`` is its
first item's, so a retried store of the same batch is kept once.

Order: one outbox per (sender connection, slot), and its stores are published one after
the other by one task, so the stream keeps a sender's sends to a slot in the order they
were made, batched or not.

Bound: an outbox counts the sends of its stores that may still wait and refuses a batch
(:class:`MailboxFull` to each send) that would take them past ``MAX_WAITING``; it asks the
server how many of its stored messages are left only when that count says no.

PubAcks: each sender connection has one :class:`Acks`, an inbox subscription that takes the
stream's answers by token, rather than nats-py's ``publish_async``: that one awaits a
semaphore and builds a future per message, and an error answer with code 503 (the one
JetStream gives for a full per-subject limit) raises inside its reply handler, so the
publish never learns it was refused and times out instead (nats-py 2.16; docs/nats.md,
"Durable mailbox streams").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import json
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import nats.errors
import nats.js.errors as jserr

from rebeam import _subjects
from rebeam._durable_stream import ensure_stream, stream_name
from rebeam._envelope import pack_fields
from rebeam.errors import CodecError, MailboxFull

if TYPE_CHECKING:
    from rebeam.pids import Pid

__all__ = [
    "BATCH_HEADER",
    "MAX_ITEMS",
    "Acks",
    "Outbox",
    "Sender",
    "SendingNode",
    "durable_address",
    "frame",
    "items_of",
    "publish",
    "sender",
    "submit",
]

BATCH_HEADER = "Rebeam-Batch"
MAX_ITEMS = 64  # sends per stored message at most
MAX_FLYING = 4  # stores of one outbox waiting for their PubAck at a time
MAX_WAITING = 10_000  # sends from one sender waiting in one slot's mailbox
_KEEP_COUNTED = 1024  # idle outboxes kept for the sends they counted as waiting
_FRAME = 4  # bytes of an item's length
_MAX_BATCH_BYTES = 256 * 1024  # and never past the server's max_payload
_MAILBOX_FULL = 10077  # JetStream: maximum messages per subject exceeded
_MSG_ID = "Nats-Msg-Id"
STORE_TIMEOUT = 5.0  # seconds a store waits for its answer
_MAX_ANSWER = 4096  # bytes: a PubAck or a JetStream error is far smaller


class SendingNode(Protocol):
    """What a durable send reads of the node it is made from (rebeam._node.Node is one): its
    connection and pid, and the counter and inbox its message ids are made of."""

    @property
    def nc(self) -> Any: ...

    @property
    def pid(self) -> Pid: ...

    @property
    def _pid_str(self) -> str: ...

    @property
    def _inbox(self) -> str: ...

    @property
    def _seq(self) -> Iterator[int]: ...


def submit(node: SendingNode, pid: Pid, kind: int, message: Any) -> asyncio.Future[int]:
    """Queue a send or cast for ``pid``'s durable mailbox, now; the future gives the stream
    sequence of the message that holds it once JetStream acknowledged that (it is on disk).
    Sends made while earlier ones to the same slot wait for their acknowledgement are stored
    together, in the order of the calls (see the module's doc). The future raises
    :class:`MailboxFull` when the mailbox is at its limit, nats-py's TimeoutError when no
    answer came within 5 s; a message the codec refuses raises here."""
    msg_id = next(node._seq)
    out = sender(node)
    box = out.outbox(pid)
    data = pack_fields(kind, box.address, node._pid_str, msg_id, message)
    return box.put(data, f"{out.id_prefix}{msg_id}")


async def publish(node: SendingNode, pid: Pid, kind: int, message: Any) -> int:
    """:func:`submit`, awaited."""
    return await submit(node, pid, kind, message)


def durable_address(pid: Pid) -> str:
    """The ``to`` of a durable envelope: the slot, since any later incarnation may take it."""
    return f"{pid.namespace}.{pid.slot_token}.*"


def frame(items: list[bytes]) -> bytes:
    return b"".join(len(item).to_bytes(_FRAME, "big") + item for item in items)


def items_of(data: bytes, headers: dict[str, str] | None) -> list[bytes]:
    """The envelopes a stored durable message carries: itself, or a batch's items.
    Raises :class:`CodecError` for a batch that is not framed as its header says."""
    count_text = headers.get(BATCH_HEADER) if headers else None
    if count_text is None:
        return [data]
    if not (count_text.isdigit() and 1 <= len(count_text) <= 3):
        raise CodecError(f"malformed batch: count {count_text[:20]!r}")
    count = int(count_text)
    if not 1 <= count <= MAX_ITEMS:
        raise CodecError(f"malformed batch: {count} items (at most {MAX_ITEMS})")
    items: list[bytes] = []
    at, end = 0, len(data)
    view = memoryview(data)
    for _ in range(count):
        if end - at < _FRAME:
            raise CodecError(f"malformed batch: truncated after {len(items)} items")
        size = int.from_bytes(view[at : at + _FRAME], "big")
        at += _FRAME
        if size > end - at:
            raise CodecError(f"malformed batch: item {len(items)} runs past the end")
        items.append(bytes(view[at : at + size]))
        at += size
    if at != end:
        raise CodecError(f"malformed batch: {end - at} bytes after {count} items")
    return items


class Acks:
    """One connection's stores awaiting their answer: publish with a reply subject under
    this connection's own inbox, and resolve the store's future by the reply's token."""

    def __init__(self, nc: Any) -> None:
        self.nc = nc
        self.prefix = nc.new_inbox()
        self.pending: dict[str, asyncio.Future[int]] = {}
        self._tokens = itertools.count()
        self._subscribed = False
        self._subscribing = asyncio.Lock()  # outboxes' first stores may race to subscribe

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str], timeout: float
    ) -> asyncio.Future[int]:
        """Publish a store; the future gives its stream sequence, or raises why not."""
        if not self._subscribed:
            async with self._subscribing:
                if not self._subscribed:
                    await self.nc.subscribe(f"{self.prefix}.*", cb=self._answer)
                    self._subscribed = True
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[int] = loop.create_future()
        self.pending[token] = answer
        timer = loop.call_later(timeout, self._expire, token)
        answer.add_done_callback(lambda _: timer.cancel())
        try:
            await self.nc.publish(subject, data, reply=f"{self.prefix}.{token}", headers=headers)
        except BaseException:
            self.pending.pop(token, None)
            timer.cancel()
            raise
        return answer

    def _expire(self, token: str) -> None:
        answer = self.pending.pop(token, None)
        if answer is not None and not answer.done():
            answer.set_exception(nats.errors.TimeoutError())

    async def _answer(self, msg: Any) -> None:
        answer = self.pending.pop(msg.subject.rpartition(".")[2], None)
        if answer is None or answer.done():
            return  # expired meanwhile
        if msg.headers and msg.headers.get("Status") == "503":  # no stream takes the subject
            answer.set_exception(jserr.NoStreamResponseError())
            return
        try:
            if len(msg.data) > _MAX_ANSWER:
                raise ValueError("too long")
            reply = json.loads(msg.data)
            error = reply.get("error")
            if error is not None:
                answer.set_exception(
                    jserr.APIError(
                        code=error.get("code"),
                        err_code=error.get("err_code"),
                        description=str(error.get("description"))[:200],
                    )
                )
            else:
                answer.set_result(int(reply["seq"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            answer.set_exception(
                CodecError(f"unreadable JetStream answer to a durable send: {exc}")
            )


class _Batch:
    """Sends gathered for one stored message. Each send awaits a future of its own: a caller
    that stops waiting (a timeout) cancels its own, never its batch-mates'."""

    __slots__ = ("first_id", "items", "sends", "size")

    def __init__(self, first_id: str) -> None:
        self.first_id = first_id
        self.items: list[bytes] = []
        self.sends: list[asyncio.Future[int]] = []
        self.size = 0

    def stored(self, seq: int) -> None:
        for send in self.sends:
            if not send.done():
                send.set_result(seq)

    def fail(self, exc: BaseException) -> None:
        for send in self.sends:
            if not send.done():
                send.set_exception(exc)
                send.exception()  # read: a send nobody awaits logs nothing


class Outbox:
    """One sender connection's durable sends to one slot (see the module's doc)."""

    def __init__(self, acks: Acks, js: Any, subject: str, to: Pid, max_bytes: int) -> None:
        self.acks = acks
        self.js = js
        self.subject = subject
        self.to = to
        self.address = durable_address(to)
        self.max_bytes = max_bytes
        self.waiting: collections.deque[_Batch] = collections.deque()
        self.flying = 0
        # The bound counts sends, as the user does, though the stream counts stored messages
        # (one may hold MAX_ITEMS sends): (stream sequence, sends) of each store that may
        # still wait, oldest first, and their sends, with those of the stores in flight.
        self.stored: collections.deque[tuple[int, int]] = collections.deque()
        self.stored_sends = 0
        self.flying_sends = 0
        # Until a first store succeeded, one at a time: the stream may not exist yet, and a
        # store retried after creating it must not come after later ones.
        self.confirmed = False
        self._pump: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def put(self, data: bytes, msg_id: str) -> asyncio.Future[int]:
        """Queue one envelope, now: the future gives its stored message's stream sequence.
        Queued at the call, not at an await, so the order of the calls is the order kept."""
        last = self.waiting[-1] if self.waiting else None
        size = len(data) + _FRAME
        if last is None or len(last.items) >= MAX_ITEMS or last.size + size > self.max_bytes:
            last = _Batch(msg_id)
            self.waiting.append(last)
        last.items.append(data)
        last.size += size
        send: asyncio.Future[int] = self._loop.create_future()
        last.sends.append(send)
        self._kick()
        return send

    def _kick(self) -> None:
        """Start the pump if something waits, there is room, and it is not running."""
        if self.waiting and self._pump is None and self._room():
            self._pump = self._loop.create_task(self._send())

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.flying and self._pump is None

    @property
    def forgettable(self) -> bool:
        """Idle and counting no send as waiting: dropping it forgets nothing."""
        return self.idle and not self.stored

    def _room(self) -> bool:
        return self.flying < (MAX_FLYING if self.confirmed else 1)

    async def _send(self) -> None:
        """Publish waiting batches in order while there is room; their answers settle them
        by callback, with no task each."""
        try:
            while self.waiting and self._room():
                batch = self.waiting.popleft()
                if not await self._fits(len(batch.items)):
                    batch.fail(MailboxFull(f"the durable mailbox of {self.to} is full"))
                    continue
                self.flying += 1
                self.flying_sends += len(batch.items)
                try:
                    ack = await self._publish(batch)
                except BaseException as exc:
                    self.flying -= 1
                    self.flying_sends -= len(batch.items)
                    batch.fail(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                if self.confirmed:
                    ack.add_done_callback(functools.partial(self._answered, batch))
                else:
                    self._loop.create_task(self._first(batch, ack))
        finally:
            self._pump = None

    async def _fits(self, sends: int) -> bool:
        """Whether ``sends`` more keep this sender's sends waiting in the slot within
        MAX_WAITING; once the count says no, the server is asked what is left."""
        if self.stored_sends + self.flying_sends + sends <= MAX_WAITING:
            return True
        try:
            info = await self.js.stream_info(
                stream_name(self.to.namespace), subjects_filter=self.subject
            )
            left = int((info.state.subjects or {}).get(self.subject, 0))
        except Exception:  # cannot tell: counted as waiting still (refused, not overrun)
            left = len(self.stored)
        # The receiver takes a sender's stores in the order stored: what is left is the
        # newest (stores in flight may be among them: then a few more count than wait).
        while len(self.stored) > left:
            self.stored_sends -= self.stored.popleft()[1]
        return self.stored_sends + self.flying_sends + sends <= MAX_WAITING

    async def _publish(self, batch: _Batch) -> asyncio.Future[int]:
        if len(batch.items) == 1:
            data, headers = batch.items[0], {_MSG_ID: batch.first_id}
        else:
            data = frame(batch.items)
            headers = {_MSG_ID: batch.first_id, BATCH_HEADER: str(len(batch.items))}
        return await self.acks.publish(self.subject, data, headers, STORE_TIMEOUT)

    async def _first(self, batch: _Batch, ack: asyncio.Future[int]) -> None:
        """The first store of this outbox: alone, and once more after creating the stream
        if there was none (the same id: stored once)."""
        with contextlib.suppress(Exception):  # the answer is read in _answered
            await asyncio.shield(ack)
        if isinstance(ack.exception(), jserr.NoStreamResponseError):
            try:
                await ensure_stream(self.js, self.to.namespace)
                ack = await self._publish(batch)
                with contextlib.suppress(Exception):
                    await asyncio.shield(ack)
            except Exception as exc:
                ack = self._loop.create_future()
                ack.set_exception(exc)
        self._answered(batch, ack)

    def _answered(self, batch: _Batch, ack: asyncio.Future[int]) -> None:
        self.flying -= 1
        self.flying_sends -= len(batch.items)
        exc = nats.errors.TimeoutError() if ack.cancelled() else ack.exception()
        if exc is None:
            self.confirmed = True
            self.stored.append((ack.result(), len(batch.items)))
            self.stored_sends += len(batch.items)
            batch.stored(ack.result())
        elif isinstance(exc, jserr.APIError) and exc.err_code == _MAILBOX_FULL:
            batch.fail(MailboxFull(f"the durable mailbox of {self.to} is full"))
        else:
            batch.fail(exc)
        self._kick()


class Sender:
    """One node's durable sends: its outboxes (by queue subject, and by the pids sent to,
    so that a send computes no subject), the answers they share, and the prefix of its
    de-duplication ids. Outboxes are dropped once idle, so a sender to many slots keeps few."""

    def __init__(self, node: SendingNode) -> None:
        self.nc = node.nc
        self.acks = Acks(node.nc)
        # The inbox's last token is the node's nonce: nobody else can spend its ids ahead.
        self.id_prefix = f"{node._pid_str}:{node._inbox.rsplit('.', 1)[1]}:"
        self.sender = node.pid
        self.max_bytes = min(_MAX_BATCH_BYTES, int(node.nc.max_payload) - 1024)
        self.by_subject: dict[str, Outbox] = {}
        self.by_pid: dict[str, Outbox] = {}

    def outbox(self, to: Pid) -> Outbox:
        return self.by_pid.get(to._text) or self._make(to)

    def _make(self, to: Pid) -> Outbox:
        if len(self.by_pid) > 64:  # forget idle ones now and then
            # Those still counting sends as waiting too, once there are many of them: a new
            # outbox for the slot then counts afresh (the stream's own bound still holds).
            drop = "forgettable" if len(self.by_subject) <= _KEEP_COUNTED else "idle"
            self.by_pid = {k: b for k, b in self.by_pid.items() if not getattr(b, drop)}
            self.by_subject = {k: b for k, b in self.by_subject.items() if not getattr(b, drop)}
        # Every incarnation of a slot shares one queue subject, so one outbox: one order.
        subject = _subjects.durable_queue(to, self.sender)
        box = self.by_subject.get(subject)
        if box is None:
            box = Outbox(self.acks, self.nc.jetstream(), subject, to, self.max_bytes)
            self.by_subject[subject] = box
        self.by_pid[to._text] = box
        return box


_senders: weakref.WeakKeyDictionary[Any, Sender] = weakref.WeakKeyDictionary()


def sender(node: SendingNode) -> Sender:
    found = _senders.get(node)
    if found is None:
        found = _senders[node] = Sender(node)
    return found
