"""Durable mailboxes: JetStream keeps what is sent to an actor while it is down.

Layout (Core NATS by default, JetStream only where asked):

* **one stream per namespace**, ``rebeam_mbox_<ns>``, subjects ``rebeam.<ns>.dmbox.>``,
  work-queue retention (a message is deleted once acknowledged), file storage;
* a durable actor's queue is the subjects ``rebeam.<ns>.dmbox.q.<slot token>.<sender>._``:
  per *slot*, not per incarnation, so the next incarnation of the slot finds what was sent
  meanwhile; the sender's pid is in the subject, where the server enforces it;
* **one durable pull consumer per durable actor slot** (named ``q-<slot token>``), pulled in
  batches of up to ``BATCH`` messages. Order across crashes: an incarnation that finds
  messages left unacknowledged by an earlier one first lowers ``max_ack_pending`` to 1 (so
  nothing new is delivered), takes their redeliveries, sorts them by stream sequence and
  handles them, and only then batches again. The server's default limit is
  1000 consumers per stream: at most 1000 *durable* actors per namespace
  unless the server's ``default_max_consumers`` is raised; plain actors cost nothing here;
* a message's id is its stream sequence (the stream de-duplicates a sender's retried publish
  by ``Nats-Msg-Id = <sender pid>:<node nonce>:<msg_id>``: the nonce keeps anyone else from
  spending a sender's ids in advance); the handler's progress is the KV record
  ``d.<slot token>`` (the last stream sequence handled), written once per batch after the
  callbacks returned and before the acks, so a redelivery of a recorded message after a crash
  is recognised and acked without running the callback again;
* a message delivered more than ``max_deliver`` times (it crashed or outlived every
  incarnation that got it; a delivery to an incarnation that crashed on an earlier message
  or stopped before running it is not counted, see :class:`Spared`) is **parked**:
  re-published to ``rebeam.<ns>.dmbox.parked.<slot token>`` with headers saying why,
  acknowledged, counted (``parked``) and logged, and the actor carries on with the next
  message.

Bounds: the stream holds at most ``DURABLE_MAX_MESSAGES`` messages per subject, refusing new
ones (``discard_new_per_subject``): a sender's publish then fails and raises
:class:`~rebeam.errors.MailboxFull`. Messages older than ``DURABLE_MAX_AGE`` are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import weakref
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
    "stream_config",
    "stream_name",
]

log = logging.getLogger("rebeam.durable")

DEFAULT_MAX_DELIVER = 3
DURABLE_MAX_MESSAGES = 10_000  # per durable actor (stream-wide per subject)
DURABLE_MAX_AGE = 7 * 24 * 3600.0
ACK_WAIT = 2.0  # seconds: an unacknowledged message is redelivered this long after a crash
BATCH = 256  # messages in flight per durable actor, in batched mode
_PULL_EXPIRES = 1.0  # seconds a pull request waits on the server for messages
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


def stream_config(name: str, subjects: str) -> jsapi.StreamConfig:
    """A durable-mailbox stream's settings (the benchmark's raw baseline uses them too)."""
    return jsapi.StreamConfig(
        name=name,
        subjects=[subjects],
        retention=jsapi.RetentionPolicy.WORK_QUEUE,
        storage=jsapi.StorageType.FILE,
        max_msgs_per_subject=DURABLE_MAX_MESSAGES,
        discard=jsapi.DiscardPolicy.NEW,
        discard_new_per_subject=True,
        max_age=DURABLE_MAX_AGE,
        duplicate_window=120.0,
        max_consumers=MAX_CONSUMERS,  # one consumer per durable actor (see _streams)
    )


async def ensure_stream(js: Any, namespace: str) -> None:
    """Create the namespace's durable-mailbox stream if it does not exist yet."""
    name = stream_name(namespace)
    try:
        await js.stream_info(name)
        return
    except jserr.NotFoundError:
        pass
    config = stream_config(name, _subjects.durable_all(namespace))
    with contextlib.suppress(jserr.BadRequestError):  # created meanwhile by someone else
        await js.add_stream(config)


async def publish(node: Node, pid: Pid, kind: int, message: Any, timeout: float = 5.0) -> int:
    """Store a send or cast in ``pid``'s durable mailbox; returns its stream sequence once
    JetStream acknowledged it (it is on disk). Raises :class:`MailboxFull` when the mailbox
    is at its limit."""
    msg_id = next(node._seq)
    data = pack_fields(kind, durable_address(pid), node._pid_str, msg_id, message)
    headers = {_MSG_ID: f"{node._pid_str}:{node._inbox.rsplit('.', 1)[1]}:{msg_id}"}
    js = _publisher(node.nc)
    subject = _subjects.durable_queue(pid, node.pid)
    for attempt in range(2):
        try:
            ack = await _stored(await js.publish_async(subject, data, headers=headers), timeout)
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


# One JetStream context per connection for durable sends: nats-py's asynchronous publish
# keeps its reply subscription and pending acks in the context, and a request-reply publish
# costs a timer task per message, which is much of a sender's CPU at thousands per second.
_publishers: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _publisher(nc: Any) -> Any:
    js = _publishers.get(nc)
    if js is None:
        js = _publishers[nc] = nc.jetstream()
    return js


async def _stored(ack: asyncio.Future[Any], timeout: float) -> Any:
    """The PubAck of an asynchronous publish, or nats-py's TimeoutError after ``timeout``."""

    def expire() -> None:
        if not ack.done():
            ack.set_exception(nats.errors.TimeoutError())

    timer = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await ack
    finally:
        timer.cancel()


class DurableMailbox:
    """The receiving side, in the runtime: pull batches, hand each message to the host in
    order, record the batch handled, then acknowledge it (docs/sdk.md, "Durable mailboxes")."""

    def __init__(self, node: Node, host: Host, max_deliver: int = DEFAULT_MAX_DELIVER) -> None:
        if max_deliver < 1:
            raise ValueError("max_deliver must be at least 1")
        self.node = node
        self.host = host
        self.max_deliver = max_deliver
        self.pid = node.pid
        self._key = f"d.{self.pid.slot_token}"
        self._address = durable_address(self.pid)
        self._stream = stream_name(self.pid.namespace)
        self._next = _subjects.js_api(
            "CONSUMER", "MSG", "NEXT", self._stream, consumer_name(self.pid)
        )
        self._inbox = ""
        self._recorded = Progress(0)  # the progress record as stored
        self._spared = Spared()
        self._handled = 0  # the last stream sequence handled (or parked) in this incarnation
        self._counted = 0  # handled since the last flush: counted once recorded
        self._left = 0  # unacknowledged messages an earlier incarnation left
        self._arrived: collections.deque[Any] = collections.deque()
        self._wake = asyncio.Event()
        self._current: Any = None  # the message being handled
        self._settled: list[Any] = []  # handled, parked or duplicates: acked at the next flush
        self._flushing: list[Any] = []  # being recorded, then acked
        self._flusher: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        js = self.node.nc.jetstream()
        await ensure_stream(js, self.pid.namespace)
        kv = await self.node.store.kv()
        try:
            entry = await kv.get(self._key)
            self._recorded = Progress.parse(entry.value)
        except jserr.KeyNotFoundError:
            pass
        except ValueError as exc:
            # Not a record we wrote: start from the beginning of what is stored (at least
            # once, as after a crash) rather than not at all.
            self.node._registry_invalid(self._key, str(exc))
        self._handled = self._recorded.done
        self._spared = self._recorded.spared
        # One at a time first, so that nothing new overtakes what an earlier incarnation
        # left unacknowledged; batched at once if it left nothing.
        info = await self._configure(1)
        self._left = int(info.num_ack_pending)
        if not self._left:
            await self._configure(BATCH)
        self._inbox = self.node.nc.new_inbox()
        self._sub = await self.node.nc.subscribe(self._inbox, cb=self._arrive)
        self._tasks = [self.node._spawn(self._loop()), self.node._spawn(self._heartbeat())]

    async def _configure(self, max_ack_pending: int) -> Any:
        config = jsapi.ConsumerConfig(
            ack_policy=jsapi.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
            max_ack_pending=max_ack_pending,
            max_deliver=-1,  # parking is ours: we see num_delivered and decide
            deliver_policy=jsapi.DeliverPolicy.ALL,
            filter_subject=_subjects.durable_queue_filter(self.pid),
            # Named with its filter, the creation request's subject carries both, so the
            # server can let an actor create this consumer and no other (docs/security.md).
            name=consumer_name(self.pid),
            durable_name=consumer_name(self.pid),
        )
        return await self.node.nc.jetstream().add_consumer(self._stream, config=config)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def _arrive(self, msg: Any) -> None:
        self._arrived.append(msg)
        self._wake.set()

    async def _request(self, batch: int, expires: float) -> None:
        request = b'{"batch":%d,"expires":%d}' % (batch, int(expires * 1e9))
        await self.node.nc.publish(self._next, request, reply=self._inbox)

    async def _take(self, timeout: float) -> Any:
        """The next message of the pull, or None once the pull is over (a status message,
        or nothing for ``timeout``: the pull was lost with a reconnect)."""
        while True:
            if not self._arrived:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout)
                except TimeoutError:
                    return None
                continue
            msg = self._arrived.popleft()
            status = msg.headers.get("Status") if msg.headers and not msg.data else None
            if status is None:
                return msg
            if status == "100":  # an idle heartbeat
                continue
            if status not in ("404", "408"):  # 409: the consumer changed or went away
                self.node._ratelog.error("durable pull refused", status)
                await asyncio.sleep(0.5)
            return None

    async def _loop(self) -> None:
        try:
            if self._left:
                await self._recover()
            while self.host._stop is None:
                # Half the window: the next pull is served while the last is recorded.
                await self._request(BATCH // 2, _PULL_EXPIRES)
                await self._pull()
        finally:
            await self._give_back()

    async def _recover(self) -> None:
        """Take the redeliveries of what an earlier incarnation left (it holds them no more
        once their ack wait passed), and handle them in stream order: the server redelivers
        in the order their ack waits ran out, which is not always the order they were sent."""
        await self._request(self._left, ACK_WAIT + 1.0)
        left: dict[int, Any] = {}
        while len(left) < self._left and self.host._stop is None:
            msg = await self._take(ACK_WAIT + 2.0)
            if msg is None:
                break
            left.setdefault(int(msg.metadata.sequence.stream), msg)
        self._arrived.extendleft(left[seq] for seq in sorted(left, reverse=True))
        while self._arrived and self.host._stop is None:
            msg = self._arrived.popleft()
            if msg.data and not await self._one(msg):
                return
        if self.host._stop is None:
            self._spared = Spared()  # every delivery to an earlier incarnation is resolved
            self._flush()
            await self._configure(BATCH)

    async def _pull(self) -> None:
        """Handle what one pull request delivers, flushing whenever nothing more waits."""
        delivered = 0
        while self.host._stop is None and delivered < BATCH // 2:
            msg = await self._take(_PULL_EXPIRES + 2.0)
            if msg is None:
                break
            delivered += 1
            if not await self._one(msg):
                return
            if not self._arrived:
                self._flush()
        self._flush()

    async def _one(self, msg: Any) -> bool:
        """Handle ``msg``; False if it was not (the actor crashed or is stopping)."""
        self._current = msg
        meta = msg.metadata
        seq, attempt = int(meta.sequence.stream), int(meta.num_delivered)
        self.node.stats.durable_redelivered += attempt > 1
        if seq <= self._handled:  # handled before (maybe by a crashed incarnation): not again
            self.node.stats.durable_duplicates += 1
            return self._settle(msg)
        attempt = self._spared.attempts(seq, attempt)
        if attempt > self.max_deliver:
            return await self._park(msg, seq, attempt, "delivered too many times")
        try:
            env = unpack(msg.data)
        except CodecError as exc:
            self.node.stats.malformed += 1
            return await self._park(msg, seq, attempt, f"malformed: {exc}")
        if env.sender != _subjects.sender_text(msg.subject):
            return await self._park(msg, seq, attempt, "the sender does not match the subject")
        if env.to != self._address or env.kind not in USER_KINDS or env.kind is CALL:
            why = f"not a durable send or cast for {self._address}"
            return await self._park(msg, seq, attempt, why)

        async def handled() -> None:  # the host calls it once the callback returned
            self._handled = seq
            self._counted += 1
            self._settle(msg)

        env.ack = handled
        await self.host.deliver(env)
        return self._current is None

    def _settle(self, msg: Any) -> bool:
        self._settled.append(msg)
        self._current = None
        return True

    def _flush(self) -> None:
        """Have what was handled recorded and acknowledged, in the background: handling goes
        on meanwhile, and one record then covers all that was handled while the previous one
        was written (one write in flight at a time, so records only ever go forward)."""
        if self._settled and (self._flusher is None or self._flusher.done()):
            self._flusher = self.node._spawn(self._flush_all())

    async def _flush_all(self) -> None:
        while self._settled:
            # Taken together, with no await between: the record covers exactly these.
            self._flushing, self._settled = self._settled, []
            await self._record(self._handled)
            # Acked after the record: a redelivery of any of them (an ack is not waited
            # for, and can be lost) is recognised by it.
            flushing, self._flushing = self._flushing, []
            for msg in flushing:
                with contextlib.suppress(Exception):
                    await msg.ack()

    async def _record(self, handled: int) -> None:
        progress = Progress(handled, self._spared)
        counted, self._counted = self._counted, 0
        if progress != self._recorded:
            try:
                kv = await self.node.store.kv()
                await kv.put(self._key, progress.encode())
                self._recorded = progress
            except Exception as exc:
                # NATS away: acked all the same (an ack that arrives needs no record); one
                # that is lost too means the message runs again (at least once).
                self.node._ratelog.error("cannot record durable progress", str(exc))
        self.node.stats.durable_delivered += counted

    async def _give_back(self) -> None:
        """Crashed or stopping: record and acknowledge what was handled. What was delivered
        and not handled is left to the ack wait: the next incarnation takes it then, in order
        (see _recover)."""
        # End the pull first: nothing more is delivered to an incarnation that is going.
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        rest = [self._current] if self._current is not None else []
        rest += [m for m in self._arrived if m.data]  # not the pull's status messages
        self._arrived.clear()
        if rest:
            stop = self.host._stop
            crashed = self._current is not None and stop is not None and not stop.is_clean
            first = int(rest[0].metadata.sequence.stream)
            # Delivered here and never run: that delivery is no attempt at them.
            self._spared = self._spared.plus(first if crashed else first - 1)
        if self._flusher is not None:
            with contextlib.suppress(BaseException):
                await self._flusher
        with contextlib.suppress(Exception):
            await self._flush_all()
            await self._record(self._handled)  # what is spared, if nothing else

    async def _heartbeat(self) -> None:
        """Keep what waits behind a long callback (and the callback's own message) from being
        redelivered while this incarnation still holds it."""
        while True:
            await asyncio.sleep(ACK_WAIT / 3)
            for msg in [self._current, *self._arrived, *self._settled, *self._flushing]:
                if msg is not None and msg.data:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

    async def _park(self, msg: Any, seq: int, attempt: int, why: str) -> bool:
        js = self.node.nc.jetstream()
        headers = {
            "Rebeam-Parked-Reason": why,
            "Rebeam-Parked-Seq": str(seq),
            "Rebeam-Parked-Attempts": str(attempt),
        }
        while True:  # what comes after it waits: order holds
            try:
                await js.publish(parked_subject(self.pid), msg.data, headers=headers)
                break
            except Exception as exc:  # NATS away: try again shortly
                self.node._ratelog.error("cannot park a durable message", f"{seq}: {exc}")
                if self.host._stop is not None:
                    return False
                await asyncio.sleep(0.5)
        self._handled = max(self._handled, seq)  # recorded: never run again
        self.node.stats.parked += 1
        where = parked_subject(self.pid)
        self.node._ratelog.error(
            "parked a durable message", f"{seq} on {where} ({attempt} deliveries): {why}"
        )
        return self._settle(msg)


@dataclasses.dataclass(frozen=True)
class Spared:
    """Deliveries not to count as attempts: messages after stream sequence ``after`` were
    delivered up to ``count`` times to incarnations that ended before running them (they
    had arrived behind the message that crashed, or the actor was stopping)."""

    after: int | None = None
    count: int = 0

    def attempts(self, seq: int, delivered: int) -> int:
        if self.after is None or seq <= self.after:
            return delivered
        return max(1, delivered - self.count)

    def plus(self, after: int) -> Spared:
        """One more incarnation ended with what follows ``after`` delivered and not run."""
        low = after if self.after is None else min(after, self.after)
        return Spared(low, self.count + 1)


@dataclasses.dataclass(frozen=True)
class Progress:
    """The progress record ``d.<slot>``: the last stream sequence handled, and what
    :class:`Spared` says (``"<done>"`` or ``"<done> <after> <count>"``)."""

    done: int
    spared: Spared = Spared()

    def encode(self) -> bytes:
        if self.spared.after is None:
            return str(self.done).encode()
        return f"{self.done} {self.spared.after} {self.spared.count}".encode()

    @classmethod
    def parse(cls, value: bytes | None) -> Progress:
        """ValueError if ``value`` is not a record we write."""
        text = (value or b"0").decode("ascii", errors="replace")
        parts = text.split(" ")
        # A uint64 has at most 20 digits.
        if len(parts) not in (1, 3) or not all(p.isdigit() and len(p) <= 20 for p in parts):
            raise ValueError(f"not a stream sequence: {text[:40]!r}")
        if len(parts) == 1:
            return cls(int(parts[0]))
        return cls(int(parts[0]), Spared(int(parts[1]), int(parts[2])))
