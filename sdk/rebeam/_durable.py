"""Durable mailboxes: JetStream keeps what is sent to an actor while it is down.

This module is the receiving side, in the runtime: :class:`DurableMailbox` hands an actor's
host what its slot's consumer delivers, in order, and records what was handled. The sending
side, which any node uses, is rebeam._durable_batch; the stream's name and settings, which
both sides (and the backends that create the stream) name, are rebeam._durable_stream.

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
* a stored message holds one send, or a batch of sends coalesced by the sender
  (rebeam._durable_batch); a send's id is its *position*, (stream sequence, item), the only
  or last item of a stored message being ``WHOLE`` (the stream de-duplicates a sender's
  retried store by ``Nats-Msg-Id = <sender pid>:<node nonce>:<msg_id>`` of its first send:
  the nonce keeps anyone else from spending a sender's ids in advance); the handler's
  progress is the KV record ``d.<slot token>`` (the position of the last send handled),
  written once per pull's worth of handling after the callbacks returned and before the
  acks, so a redelivery of a recorded send after a crash, a whole stored message or the
  first sends of a batch, is recognised and not run again;
* a send started more than ``max_deliver`` times by incarnations that did not finish it
  (it crashed them, or they were killed in it; counted in the record, see
  :class:`Attempt`: a send merely delivered to an incarnation that died is not counted)
  is **parked**: its
  envelope alone re-published to ``rebeam.<ns>.dmbox.parked.<slot token>`` with headers
  saying why, counted (``parked``) and logged, and the actor carries on with the next send;
  a stored message is acknowledged once all of its sends are handled or parked.

Bounds: a sender lets at most ``_durable_batch.MAX_WAITING`` of its sends wait per slot,
counted by the sender (the stream counts stored messages, each holding up to
``_durable_batch.MAX_ITEMS`` sends), raising :class:`~rebeam.errors.MailboxFull` past it;
behind that, the stream holds at most ``_durable_stream.DURABLE_MAX_MESSAGES`` stored
messages per subject (per sender and slot), refusing new ones (``discard_new_per_subject``):
a sender's store then fails and raises :class:`~rebeam.errors.MailboxFull` to each of its
sends. Messages older than ``_durable_stream.DURABLE_MAX_AGE`` are dropped. File storage,
one replica (docs/nats.md, "Durable mailbox streams", says what that keeps).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import nats.js.api as jsapi
import nats.js.errors as jserr

from rebeam import _subjects
from rebeam._durable_batch import durable_address, items_of
from rebeam._durable_stream import consumer_name, ensure_stream, parked_subject, stream_name
from rebeam._envelope import CALL, USER_KINDS, unpack
from rebeam.errors import CodecError

if TYPE_CHECKING:
    from rebeam._actor import Host
    from rebeam._node import Node

__all__ = [
    "DEFAULT_MAX_DELIVER",
    "DurableMailbox",
]

log = logging.getLogger("rebeam.durable")

DEFAULT_MAX_DELIVER = 3
ACK_WAIT = 2.0  # seconds: an unacknowledged message is redelivered this long after a crash
BATCH = 256  # messages in flight per durable actor, in batched mode
_PULL_EXPIRES = 1.0  # seconds a pull request waits on the server for messages
_ASK_FLOOR = 64  # sends remembered above the floor before the server is asked for its own
MAX_ITEMS_RECORDED = 4096  # stored messages a progress record names at most
_MAX_RECORD = 128 * 1024  # bytes of a progress record read at most


# A send's place in the stream: (stream sequence, item). The only or last item of a stored
# message is WHOLE, so "all of message s" is (s, WHOLE) and a record of single sends reads
# as the stream sequence alone; the others of a batch are 0, 1, ... in the order sent.
Position = tuple[int, int]
WHOLE = (1 << 32) - 1


def _format(at: Position) -> str:
    return str(at[0]) if at[1] == WHOLE else f"{at[0]}.{at[1]}"


def _parse(text: str) -> Position:
    seq, dot, item = text.partition(".")
    # A uint64 has at most 20 digits; an item is below WHOLE.
    if not (seq.isdigit() and len(seq) <= 20) or (dot and not (item.isdigit() and len(item) <= 10)):
        raise ValueError(f"not a stream position: {text[:40]!r}")
    position = (int(seq), int(item) if dot else WHOLE)
    if position[1] > WHOLE:
        raise ValueError(f"not a stream position: {text[:40]!r}")
    return position


class DurableMailbox:
    """The receiving side, in the runtime: pull batches, hand each send to the host in
    order, record what was handled, then acknowledge it (docs/sdk.md, "Durable mailboxes")."""

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
        self._recorded = Progress((0, WHOLE))  # the progress record as stored
        # The send an earlier incarnation may have died in, and how many started it.
        self._attempt: Attempt | None = None
        self._suspect = False  # the next send to run is the first an earlier one left
        self._writing = asyncio.Lock()  # one progress write at a time, the latest state
        # What was handled (or parked): every send up to ``_done``, and above it the sends
        # of ``_items`` (stream sequence -> its last item handled). Not one position: a send
        # may come back behind later ones (its delivery was lost), and must still run.
        self._done: Position = (0, WHOLE)
        self._items: dict[int, int] = {}
        self._at: Position = (0, WHOLE)  # the item being handled
        self._ran = False  # the item's callback returned
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
        self._done = self._recorded.done
        self._items = dict(self._recorded.items)
        self._attempt = self._recorded.attempt
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
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
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
        self._suspect = bool(left)
        while self._arrived and self.host._stop is None:
            msg = self._arrived.popleft()
            if msg.data and not await self._one(msg):
                return
        if self.host._stop is None:
            self._suspect = False
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
        """Handle every item of ``msg`` (one send, or a batch of them) in order; False if
        one was not handled (the actor crashed or is stopping)."""
        self._current = msg
        meta = msg.metadata
        seq, delivered = int(meta.sequence.stream), int(meta.num_delivered)
        self._at = (seq, 0)
        self.node.stats.durable_redelivered += delivered > 1
        if self._was_handled((seq, WHOLE)):  # handled before (maybe by a crashed incarnation)
            self.node.stats.durable_duplicates += 1
            return self._settle(msg)
        try:
            items = items_of(msg.data, msg.headers)
        except CodecError as exc:  # cannot be split: parked whole
            self.node.stats.malformed += 1
            self._at = (seq, WHOLE)
            parked = await self._park(msg.data, self._at, delivered, f"malformed: {exc}", None)
            return parked and self._settle(msg)
        last = len(items) - 1
        sender = _subjects.sender_text(msg.subject)  # who may have sent what it holds
        for i, data in enumerate(items):
            self._at = at = (seq, WHOLE if i == last else i)
            if self._was_handled(at):  # the part of a batch a crashed incarnation handled
                self.node.stats.durable_duplicates += 1
                continue
            index = i if last else None
            if not await self._item(data, at, delivered, sender, index):
                return False
        return self._settle(msg)

    async def _item(
        self, data: bytes, at: Position, delivered: int, sender: str | None, index: int | None
    ) -> bool:
        """Handle one send; False if it was not (the actor crashed or is stopping)."""
        attempt = await self._starting(at) if self._suspect else 1
        if attempt > self.max_deliver:
            return await self._park(data, at, attempt, "delivered too many times", index)
        try:
            env = unpack(data)
        except CodecError as exc:
            self.node.stats.malformed += 1
            return await self._park(data, at, attempt, f"malformed: {exc}", index)
        if env.sender != sender:
            why = "the sender does not match the subject"
            return await self._park(data, at, attempt, why, index)
        if env.to != self._address or env.kind not in USER_KINDS or env.kind is CALL:
            why = f"not a durable send or cast for {self._address}"
            return await self._park(data, at, attempt, why, index)
        self._ran = False

        async def handled() -> None:  # the host calls it once the callback returned
            self._mark(at)
            self._counted += 1
            self._ran = True

        env.ack = handled
        await self.host.deliver(env)
        return self._ran

    async def _starting(self, at: Position) -> int:
        """The first send an earlier incarnation left: it may have died running it. Which
        run of it this is, counted in the record before it runs, so that a kill -9 in it
        counts too. Only this send: the earlier ones handled in order, so none after it
        was started (a send merely delivered to an incarnation that died is no attempt)."""
        self._suspect = False
        before = self._attempt.count if self._attempt and self._attempt.at == at else 0
        self._attempt = Attempt(at, before + 1)
        await self._record()
        return before + 1

    def _was_handled(self, at: Position) -> bool:
        return at <= self._done or at[1] <= self._items.get(at[0], -1)

    def _mark(self, at: Position) -> None:
        seq, item = at
        if item > self._items.get(seq, -1) and at > self._done:
            self._items[seq] = item

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
            await self._record()
            # Acked after the record: a redelivery of any of them (an ack is not waited
            # for, and can be lost) is recognised by it.
            flushing, self._flushing = self._flushing, []
            for msg in flushing:
                with contextlib.suppress(Exception):
                    await msg.ack()

    async def _record(self) -> None:
        async with self._writing:  # a write never lands after a later one
            await self._write()

    async def _write(self) -> None:
        if len(self._items) > _ASK_FLOOR:
            await self._lift_floor()
        if len(self._items) > MAX_ITEMS_RECORDED:
            # Forgotten, the oldest can only run twice (at least once), never be lost.
            self.node._ratelog.error("durable progress record full", str(len(self._items)))
            for seq in sorted(self._items)[: len(self._items) - MAX_ITEMS_RECORDED]:
                del self._items[seq]
        progress = Progress(self._done, self._attempt, tuple(sorted(self._items.items())))
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

    async def _lift_floor(self) -> None:
        """Forget the sends JetStream can deliver no more: all up to the consumer's ack
        floor were acknowledged (by this incarnation or an earlier one)."""
        try:
            info = await self.node.nc.jetstream().consumer_info(
                self._stream, consumer_name(self.pid)
            )
            floor = int(info.ack_floor.stream_seq)
        except Exception as exc:  # NATS away: the next record asks again
            self.node._ratelog.error("cannot read the durable ack floor", str(exc))
            return
        if (floor, WHOLE) > self._done:
            self._done = (floor, WHOLE)
            self._items = {seq: item for seq, item in self._items.items() if seq > floor}

    async def _give_back(self) -> None:
        """Crashed or stopping: record and acknowledge what was handled. What was delivered
        and not handled is left to the ack wait: the next incarnation takes it then, in order
        (see _recover)."""
        # End the pull first: nothing more is delivered to an incarnation that is going.
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        self._arrived.clear()
        stop = self.host._stop
        crashed = self._current is not None and stop is not None and not stop.is_clean
        # Crashed in this send: one run of it, unless counted when it started.
        if crashed and (self._attempt is None or self._attempt.at != self._at):
            self._attempt = Attempt(self._at, 1)
        if self._flusher is not None:
            with contextlib.suppress(BaseException):
                await self._flusher
        with contextlib.suppress(Exception):
            await self._flush_all()
            await self._record()  # the attempt, if nothing else

    async def _heartbeat(self) -> None:
        """Keep what waits behind a long callback (and the callback's own message) from being
        redelivered while this incarnation still holds it."""
        while True:
            await asyncio.sleep(ACK_WAIT / 3)
            for msg in [self._current, *self._arrived, *self._settled, *self._flushing]:
                if msg is not None and msg.data:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

    async def _park(
        self, data: bytes, at: Position, attempt: int, why: str, index: int | None
    ) -> bool:
        """Park one send (or a stored message that cannot be split); False if the actor is
        stopping before it could."""
        js = self.node.nc.jetstream()
        seq = at[0]
        headers = {
            "Rebeam-Parked-Reason": why,
            "Rebeam-Parked-Seq": str(seq),
            "Rebeam-Parked-Attempts": str(attempt),
        }
        if index is not None:  # one item of a batch: the others are not parked
            headers["Rebeam-Parked-Item"] = str(index)
        while True:  # what comes after it waits: order holds
            try:
                await js.publish(parked_subject(self.pid), data, headers=headers)
                break
            except Exception as exc:  # NATS away: try again shortly
                self.node._ratelog.error("cannot park a durable message", f"{seq}: {exc}")
                if self.host._stop is not None:
                    return False
                await asyncio.sleep(0.5)
        self._mark(at)  # recorded: never run again
        self.node.stats.parked += 1
        where = parked_subject(self.pid)
        what = str(seq) if index is None else f"{seq} item {index}"
        self.node._ratelog.error(
            "parked a durable message", f"{what} on {where} ({attempt} deliveries): {why}"
        )
        return True


@dataclasses.dataclass(frozen=True)
class Attempt:
    """The send at ``at`` was started ``count`` times by incarnations that did not live to
    finish it (a crash in it, a kill, a hang)."""

    at: Position
    count: int


@dataclasses.dataclass(frozen=True)
class Progress:
    """The progress record ``d.<slot>``: every send up to position ``done`` was handled, and
    so was each send of ``items`` above it ((stream sequence, last item handled), by
    sequence); ``attempt`` says which send incarnations died in, and how many times.

    Written ``"<done>[ a=<position>:<count>][ h=<items>]"``: a position is ``<seq>`` for a
    whole stored message, ``<seq>.<item>`` inside a batch; ``<items>`` is a comma-separated
    list of positions and of ``<first>-<last>`` runs of whole stored messages. An older
    record's ``"<done> <position> <count>"`` is read without its two last fields."""

    done: Position
    attempt: Attempt | None = None
    items: tuple[tuple[int, int], ...] = ()

    def covers(self, at: Position) -> bool:
        """Whether the send at ``at`` was handled."""
        return at <= self.done or any(seq == at[0] and at[1] <= item for seq, item in self.items)

    def encode(self) -> bytes:
        parts = [_format(self.done)]
        if self.attempt is not None:
            parts.append(f"a={_format(self.attempt.at)}:{self.attempt.count}")
        if self.items:
            parts.append("h=" + ",".join(_runs(self.items)))
        return " ".join(parts).encode()

    @classmethod
    def parse(cls, value: bytes | None) -> Progress:
        """ValueError if ``value`` is not a record we write."""
        if value is not None and len(value) > _MAX_RECORD:
            raise ValueError(f"not a progress record: {len(value)} bytes")
        text = (value or b"0").decode("ascii", errors="replace")
        parts = text.split(" ")
        items: tuple[tuple[int, int], ...] = ()
        if len(parts) > 1 and parts[-1].startswith("h="):
            items = _parse_items(parts.pop()[2:])
        attempt = None
        if len(parts) == 2 and parts[1].startswith("a="):
            at, colon, count = parts.pop()[2:].partition(":")
            if not (colon and count.isdigit() and len(count) <= 20):
                raise ValueError(f"not a progress record: {text[:40]!r}")
            attempt = Attempt(_parse(at), int(count))
        elif len(parts) == 3:  # an older record's note of deliveries that were no attempt
            if not (parts[2].isdigit() and len(parts[2]) <= 20):
                raise ValueError(f"not a progress record: {text[:40]!r}")
            _parse(parts.pop(1))
            parts.pop()
        if len(parts) != 1:
            raise ValueError(f"not a progress record: {text[:40]!r}")
        done = _parse(parts[0])
        if items and (items[0][0] < done[0] or (items[0][0] == done[0] and done[1] == WHOLE)):
            raise ValueError(f"not a progress record: {text[:40]!r}")
        return cls(done, attempt, items)


def _runs(items: tuple[tuple[int, int], ...]) -> list[str]:
    """``items`` written short: whole stored messages of consecutive sequences as one run."""
    out: list[str] = []
    first = last = -1
    for seq, item in (*items, (-1, 0)):  # a sentinel ends the last run
        if item == WHOLE and seq == last + 1 and first >= 0:
            last = seq
            continue
        if first >= 0:
            out.append(str(first) if first == last else f"{first}-{last}")
            first = last = -1
        if item == WHOLE:
            first = last = seq
        elif seq >= 0:
            out.append(f"{seq}.{item}")
    return out


def _parse_items(text: str) -> tuple[tuple[int, int], ...]:
    items: list[tuple[int, int]] = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        first = _parse(low)
        last = _parse(high) if dash else first
        if dash and (first[1] != WHOLE or last[1] != WHOLE or last[0] <= first[0]):
            raise ValueError(f"not a run of stored messages: {part[:40]!r}")
        if items and items[-1][0] >= first[0]:
            raise ValueError(f"stored messages recorded out of order: {part[:40]!r}")
        if len(items) + last[0] - first[0] >= MAX_ITEMS_RECORDED:
            raise ValueError(f"more than {MAX_ITEMS_RECORDED} stored messages recorded")
        items += [(seq, first[1]) for seq in range(first[0], last[0] + 1)]
    return tuple(items)
