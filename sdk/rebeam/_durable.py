"""Durable mailboxes: JetStream keeps what is sent to an actor while it is down.

Layout (Core NATS by default, JetStream only where asked):

* **one stream per namespace**, ``rebeam_mbox_<ns>``, subjects ``rebeam.<ns>.dmbox.>``,
  work-queue retention (a message is deleted once acknowledged), file storage;
* a durable actor's queue is the subjects ``rebeam.<ns>.dmbox.q.<slot token>.<sender>._``:
  per *slot*, not per incarnation, so the next incarnation of the slot finds what was sent
  meanwhile; the sender's pid is in the subject, where the server enforces it;
* **one durable pull consumer per durable actor slot** (named ``q-<slot token>``), with
  ``max_ack_pending=1``: the next message is delivered only once the previous one was
  acknowledged, so order holds across crashes and redeliveries. The server's default limit is
  1000 consumers per stream: at most 1000 *durable* actors per namespace
  unless the server's ``default_max_consumers`` is raised; plain actors cost nothing here;
* a message's id is its stream sequence (the stream de-duplicates a sender's retried publish
  by ``Nats-Msg-Id = <sender pid>:<node nonce>:<msg_id>``: the nonce keeps anyone else from
  spending a sender's ids in advance); the handler's progress is the KV record
  ``d.<slot token>`` (the last stream sequence handled), written after the callback returned
  and before the ack, so a redelivery after a crash between the two is recognised and acked
  without running the callback again;
* a message delivered more than ``max_deliver`` times (it crashed or outlived every
  incarnation that got it) is **parked**: re-published to ``rebeam.<ns>.dmbox.parked.<slot
  token>`` with headers saying why, acknowledged, counted (``parked``) and logged, and the
  actor carries on with the next message.

Bounds: the stream holds at most ``DURABLE_MAX_MESSAGES`` messages per subject, refusing new
ones (``discard_new_per_subject``): a sender's publish then fails and raises
:class:`~rebeam.errors.MailboxFull`. Messages older than ``DURABLE_MAX_AGE`` are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.api as jsapi
import nats.js.errors as jserr

from rebeam import _subjects
from rebeam._envelope import CALL, USER_KINDS, pack_fields, unpack
from rebeam._streams import MAX_CONSUMERS
from rebeam.errors import CodecError, MailboxFull

if TYPE_CHECKING:
    from rebeam._actor import Host
    from rebeam._node import Node
    from rebeam.pids import Pid

__all__ = [
    "DEFAULT_MAX_DELIVER",
    "DurableMailbox",
    "consumer_name",
    "ensure_stream",
    "publish",
    "stream_name",
]

log = logging.getLogger("rebeam.durable")

DEFAULT_MAX_DELIVER = 3
DURABLE_MAX_MESSAGES = 10_000  # per durable actor (stream-wide per subject)
DURABLE_MAX_AGE = 7 * 24 * 3600.0
ACK_WAIT = 2.0  # seconds: an unacknowledged message is redelivered this long after a crash
_FETCH_WAIT = 1.0
_MAILBOX_FULL = 10077  # JetStream: maximum messages per subject exceeded
_MSG_ID = "Nats-Msg-Id"


def stream_name(namespace: str) -> str:
    return f"rebeam_mbox_{namespace}"


def consumer_name(pid: Pid) -> str:
    """The one consumer of ``pid``'s slot's queue."""
    return f"q-{pid.slot_token}"


parked_subject = _subjects.durable_parked


def durable_address(pid: Pid) -> str:
    """The ``to`` of a durable envelope: the slot, since any later incarnation may take it."""
    return f"{pid.namespace}.{pid.slot_token}.*"


async def ensure_stream(js: Any, namespace: str) -> None:
    """Create the namespace's durable-mailbox stream if it does not exist yet."""
    name = stream_name(namespace)
    try:
        await js.stream_info(name)
        return
    except jserr.NotFoundError:
        pass
    config = jsapi.StreamConfig(
        name=name,
        subjects=[_subjects.durable_all(namespace)],
        retention=jsapi.RetentionPolicy.WORK_QUEUE,
        storage=jsapi.StorageType.FILE,
        max_msgs_per_subject=DURABLE_MAX_MESSAGES,
        discard=jsapi.DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_age=DURABLE_MAX_AGE,
        duplicate_window=120.0,
        max_consumers=MAX_CONSUMERS,  # one consumer per durable actor (see _streams)
    )
    with contextlib.suppress(jserr.BadRequestError):  # created meanwhile by someone else
        await js.add_stream(config)


async def publish(node: Node, pid: Pid, kind: int, message: Any, timeout: float = 5.0) -> int:
    """Store a send or cast in ``pid``'s durable mailbox; returns its stream sequence once
    JetStream acknowledged it (it is on disk). Raises :class:`MailboxFull` when the mailbox
    is at its limit."""
    msg_id = next(node._seq)
    data = pack_fields(kind, durable_address(pid), node._pid_str, msg_id, message)
    headers = {_MSG_ID: f"{node._pid_str}:{node._inbox.rsplit('.', 1)[1]}:{msg_id}"}
    js = node.nc.jetstream()
    subject = _subjects.durable_queue(pid, node.pid)
    for attempt in range(2):
        try:
            ack = await js.publish(subject, data, timeout=timeout, headers=headers)
            return int(ack.seq)
        except jserr.NoStreamResponseError:
            if attempt:
                raise
            await ensure_stream(js, pid.namespace)
        except jserr.APIError as exc:
            if exc.err_code == _MAILBOX_FULL:
                raise MailboxFull(f"the durable mailbox of {pid} is full") from None
            raise
    raise AssertionError("unreachable")


class DurableMailbox:
    """The receiving side, in the runtime: fetch one message at a time, hand it to the host,
    record it handled, acknowledge."""

    def __init__(self, node: Node, host: Host, max_deliver: int = DEFAULT_MAX_DELIVER) -> None:
        if max_deliver < 1:
            raise ValueError("max_deliver must be at least 1")
        self.node = node
        self.host = host
        self.max_deliver = max_deliver
        self.pid = node.pid
        self._key = f"d.{self.pid.slot_token}"
        self._address = durable_address(self.pid)
        self._done = 0  # the last stream sequence the handler finished
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        js = self.node.nc.jetstream()
        await ensure_stream(js, self.pid.namespace)
        kv = await self.node.store.kv()
        try:
            entry = await kv.get(self._key)
            self._done = _progress(entry.value)
        except jserr.KeyNotFoundError:
            self._done = 0
        except ValueError as exc:
            # Not a record we wrote: start from the beginning of what is stored (at least
            # once, as after a crash) rather than not at all.
            self.node._registry_invalid(self._key, str(exc))
            self._done = 0
        config = jsapi.ConsumerConfig(
            ack_policy=jsapi.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
            max_ack_pending=1,  # in order, also across redeliveries
            max_deliver=-1,  # parking is ours: we see num_delivered and decide
            deliver_policy=jsapi.DeliverPolicy.ALL,
            filter_subject=_subjects.durable_queue_filter(self.pid),
            # Named with its filter, the creation request's subject carries both, so the
            # server can let an actor create this consumer and no other (docs/security.md).
            name=consumer_name(self.pid),
            durable_name=consumer_name(self.pid),
        )
        stream = stream_name(self.pid.namespace)
        await js.add_consumer(stream, config=config)
        self._sub = await js.pull_subscribe_bind(consumer_name(self.pid), stream)
        self._task = self.node._spawn(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _loop(self) -> None:
        host = self.host
        while host._stop is None:
            try:
                msgs = await self._sub.fetch(1, timeout=_FETCH_WAIT)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as exc:
                log.warning("%s: durable fetch failed: %s", self.pid, exc)
                await asyncio.sleep(0.5)  # the server may be restarting: try again shortly
                continue
            for msg in msgs:
                await self._one(msg)

    async def _one(self, msg: Any) -> None:
        stats = self.node.stats
        meta = msg.metadata
        seq, attempt = int(meta.sequence.stream), int(meta.num_delivered)
        stats.durable_redelivered += attempt > 1
        if seq <= self._done:  # handled before a crash, not acknowledged: do not run again
            stats.durable_duplicates += 1
            await msg.ack()
            return
        if attempt > self.max_deliver:
            await self._park(msg, seq, attempt, "delivered too many times")
            return
        try:
            env = unpack(msg.data)
        except CodecError as exc:
            self.node.stats.malformed += 1
            await self._park(msg, seq, attempt, f"malformed: {exc}")
            return
        if env.sender != _subjects.sender_text(msg.subject):
            await self._park(msg, seq, attempt, "the sender does not match the subject")
            return
        if env.to != self._address or env.kind not in USER_KINDS or env.kind is CALL:
            await self._park(msg, seq, attempt, f"not a durable send or cast for {self._address}")
            return
        acked = False

        async def ack() -> None:
            nonlocal acked
            kv = await self.node.store.kv()
            await kv.put(self._key, str(seq).encode())
            self._done = seq
            await msg.ack()
            acked = True

        env.ack = ack
        beat = self.node._spawn(_heartbeat(msg))
        try:
            await self.host.deliver(env)
        except Exception as exc:  # recording or acknowledging failed (NATS away): retried
            log.warning("%s: durable message %d not acknowledged: %s", self.pid, seq, exc)
        finally:
            beat.cancel()
        if acked:
            stats.durable_delivered += 1
        else:  # crashed or stopping: let the next incarnation have it at once
            with contextlib.suppress(Exception):
                await msg.nak()

    async def _park(self, msg: Any, seq: int, attempt: int, why: str) -> None:
        js = self.node.nc.jetstream()
        headers = {
            "Rebeam-Parked-Reason": why,
            "Rebeam-Parked-Seq": str(seq),
            "Rebeam-Parked-Attempts": str(attempt),
        }
        try:
            await js.publish(parked_subject(self.pid), msg.data, headers=headers)
        except Exception as exc:  # cannot park: leave it to be redelivered
            self.node._ratelog.error("cannot park a durable message", f"{seq}: {exc}")
            return
        await msg.ack()
        self.node.stats.parked += 1
        where = parked_subject(self.pid)
        self.node._ratelog.error(
            "parked a durable message", f"{seq} on {where} ({attempt} deliveries): {why}"
        )


def _progress(value: bytes | None) -> int:
    """The stream sequence a progress record holds; ValueError if it holds none."""
    text = (value or b"0").decode("ascii", errors="replace")
    if not (text.isdigit() and len(text) <= 20):  # a uint64 has at most 20 digits
        raise ValueError(f"not a stream sequence: {text[:40]!r}")
    return int(text)


async def _heartbeat(msg: Any) -> None:
    """Keep a long callback's message from being redelivered while it is still handled."""
    while True:
        await asyncio.sleep(ACK_WAIT / 3)
        with contextlib.suppress(Exception):
            await msg.in_progress()
