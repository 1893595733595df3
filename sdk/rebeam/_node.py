"""The node: one process's connection to rebeam (its pid, mailbox, calls, monitors, links).

Every process that takes part has exactly one node and one NATS connection: an actor hosted by
``python -m rebeam.runtime``, and any program that called :func:`rebeam.connect`. One
connection per process is what gives OTP's per-pair ordering: NATS orders per publishing
connection (docs/nats.md, "Ordering").

What the node does, and where:

* the mailbox subscription (``rebeam.<ns>.pid.<slot>.<inc>``) decodes envelopes, refuses
  what is malformed, oversized or stamped for another incarnation, answers system signals
  (ping, link, unlink) itself, and hands user messages to ``deliver`` (an actor: its
  callbacks run right there, one at a time) or to the :class:`~rebeam._mailbox.Mailbox` (a
  client: ``receive()`` takes them);
* requests (:mod:`rebeam._requests`): a call, and a send or cast with ``wait``, take the one
  request path, with one reply subscription per node (``_INBOX_rebeam.<ns>.<pid>.*``); at
  most ``max_pending_calls`` wait for answers at once (more wait for a slot);
* bounds (docs/sdk.md): the mailbox subscription's pending queue is the mailbox, limited by
  :class:`~rebeam._mailbox.Limits`; what nats-py refuses past a limit comes back through
  ``error_cb`` and is answered ``mailbox_full`` (a call, a cast or send with ``wait``) or
  counted (a plain cast or send); every other subscription has limits too, and its drops are
  counted and logged (``slow_consumer_drops``); ``stats`` answers a node's counters on a
  subject of its own, so an overloaded mailbox does not delay the answer;
* exit watches (:mod:`rebeam._watching`) and names (:mod:`rebeam._naming`), each an
  object of its own;
* fencing: the node listens on its slot's fence subject and stops delivering as soon as a
  later incarnation of its slot announces itself, and re-checks the slot record after every
  reconnect before it delivers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import nats
import nats.errors
import nats.js.errors as jserr

from rebeam import _codec, _durable_batch, _subjects, metrics
from rebeam._addresses import Address, Name, Via
from rebeam._connecting import Connection, credentials_from_environment
from rebeam._envelope import (
    CALL,
    CAST,
    LINK,
    PING,
    SEND,
    UNLINK,
    USER_KINDS,
    VERSION,
    Envelope,
    mailbox_envelope,
    pack_error,
    pack_mailbox,
    pack_reply,
    unpack_mailbox,
    unpack_reply,
)
from rebeam._fastpath import pub_head, publish_queued
from rebeam._interest import InterestProbe
from rebeam._lease import Lease
from rebeam._loop import within
from rebeam._mailbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Info, Limits, Mailbox
from rebeam._messages import MonitorRef
from rebeam._naming import Naming
from rebeam._ratelog import RateLog
from rebeam._registry import Store
from rebeam._requests import RECEIPT, Answer, Requests
from rebeam._stats import STATUS_REQUEST, Stats
from rebeam._watching import Watching, WatchLimits
from rebeam.errors import (
    CallingSelf,
    CallTimeout,
    CodecError,
    MessageTooLarge,
    NoProc,
    NotPermitted,
)
from rebeam.exits import ExitReason
from rebeam.pids import Pid
from rebeam.tracing import for_node as _tracing_of

# credentials_from_environment: rebeam._api asks it too, where it imports the node from.
__all__ = ["Node", "Stats", "credentials_from_environment"]

log = logging.getLogger("rebeam.node")

DEFAULT_CALL_TIMEOUT = 5.0
_SEND = int(SEND)  # a plain int packs faster than the enum
_CAST = int(CAST)
_CALL = int(CALL)
DEFAULT_MAX_PENDING_CALLS = 10_000
# The bounds of the fence's and the stats request's subscriptions (both rare).
_SMALL_LIMITS = (1000, 1024 * 1024)
_RECEIPT_REPLY = pack_reply(None)  # a receipt: the send or cast is in the mailbox
_LOGGED_AT = frozenset({1, 10, 100, 1000, 10_000, 100_000, 1_000_000})
_PING = int(PING)
_MAX_SENDERS = 4096  # mailbox subjects whose sender a node remembers (sender_of)
_NOT_AN_INBOX = "the reply subject of a call must be a call inbox (_INBOX_rebeam.<namespace>.)"


class Node:
    """One process's presence in rebeam. Make one with :func:`rebeam.connect` (a client) or
    let ``python -m rebeam.runtime`` make it (an actor)."""

    def __init__(
        self,
        nc: Any,
        pid: Pid,
        *,
        local_scope: str | None = None,
        max_message_size: int | None = None,
        is_client: bool = True,
        mailbox_limits: Limits | None = None,
        inbox: str,
        max_pending_calls: int = DEFAULT_MAX_PENDING_CALLS,
        watch_limits: WatchLimits | None = None,
        tracing: bool | None = None,
    ) -> None:
        self.nc = nc
        self.pid = pid
        self.namespace = pid.namespace
        self.local_scope = local_scope or os.environ.get("REBEAM_LOCAL_SCOPE") or "default"
        self.is_client = is_client
        self.stats = Stats()
        self.metrics = metrics.NodeMetrics(self)
        # An actor's state summary (its format_status), added to a stats reply that asks.
        self.status_report: Callable[[], Awaitable[Any]] | None = None
        self.limits = mailbox_limits or Limits()
        self.mailbox = Mailbox(self.limits.max_messages)
        self.store = Store(nc.jetstream(), pid.namespace, on_invalid=self._registry_invalid)
        self._ratelog = RateLog(log, str(pid))
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._permission_waiters: dict[str, asyncio.Future[str]] = {}
        # Decided once: None (the default) keeps every message path free of tracing.
        self._tracing = _tracing_of(tracing, pid, self.stats, self._ratelog)
        self._init_runtime_hooks()
        self._init_fencing()
        self._init_sending(max_message_size)
        self._init_requests(inbox, max_pending_calls, watch_limits or WatchLimits.read(None, None))
        self._init_naming()

    def _init_runtime_hooks(self) -> None:
        """What the runtime sets (a client leaves them unset)."""
        # The mailbox subscription's callback, set before start(): an actor handles its
        # messages right there. Without it (a client) messages wait in the mailbox for
        # receive().
        self.on_message: Callable[[Any], Awaitable[None]] | None = None
        # What happens when a later incarnation fences this one, and when this node's
        # lease was lost (declared dead).
        self.on_fenced: Callable[[Pid], None] | None = None
        self.on_lease_lost: Callable[[], None] | None = None
        # What a backend's kill order (brutal_kill) does: the runtime dies at once.
        self.on_kill_order: Callable[[], None] | None = None

    def _init_fencing(self) -> None:
        self.delivering = asyncio.Event()
        self.delivering.set()
        self.fenced_by: Pid | None = None
        self.lease: Lease | None = None

    def _init_sending(self, max_message_size: int | None) -> None:
        self._pid_str = str(self.pid)
        self._max_size = max_message_size
        self._limit = self.max_message_size
        self._seq = itertools.count(1)
        self._mailboxes: dict[str, str] = {}  # pid string -> mailbox subject
        # pid string -> the start of a PUB to its mailbox (b"": one nats-py would refuse)
        self._heads: dict[str, bytes] = {}
        # What a plain send or cast returns once its message is queued on the connection:
        # awaiting a finished future is one C call; a coroutine would be a Python frame.
        self._queued: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.set_result(None)
        self._subject = _subjects.mailbox_subscription(self.pid)
        # What every subject of this mailbox starts with; its sender's two tokens and "_"
        # follow (`sender_of` reads them without splitting the whole subject).
        self._from_prefix = self._subject[: -len(".*.*.*")] + "."
        self._ns_dot = self.namespace + "."
        # The sender of each mailbox subject seen ("" for one of no sender's form): reading
        # it per message would be a tenth of what receiving a cast costs.
        self._senders: dict[str, str] = {}
        # Whether a call or receipt may be answered on a reply subject: only a rebeam call
        # inbox of this namespace (docs/sdk.md, "Input limits"). A partial, not a method:
        # every call received asks, and this way without a Python frame of its own.
        self.answerable: Callable[[str], bool] = functools.partial(
            _subjects.is_reply_inbox, namespace=self.namespace
        )
        self._mailbox_sid: int | None = None
        # The mailbox subscription: an actor's receive loop takes the messages queued behind
        # the one it was called with straight from its pending queue (rebeam._actor).
        self.mailbox_sub: Any = None

    def _init_requests(self, inbox: str, max_pending: int, watch_limits: WatchLimits) -> None:
        """The one request path, and the exit watches that end a call whose callee exits."""
        self._interest = InterestProbe(self.nc, self.namespace, self.stats)
        self._inbox = inbox  # its calls' replies come on "<inbox>.<token>" (rebeam._connecting)
        self._requests = Requests(
            self.nc,
            self._inbox,
            max_pending=max_pending,
            stats=self.stats,
            ratelog=self._ratelog,
            interest=self._interest,
        )
        self._watching = Watching(
            self.nc,
            self.pid,
            self.mailbox,
            stats=self.stats,
            ratelog=self._ratelog,
            interest=self._interest,
            spawn=self._spawn,
            resolve=self.resolve,
            fail_call=self._requests.fail,
            limits=watch_limits,
        )
        self._reply = Answer("reply", callees=self._watching, timing=self.metrics)

    def _init_naming(self) -> None:
        """This node's names and its name cache."""
        self._naming = Naming(
            self.pid, self.store, self.local_scope, spawn=self._spawn, permitted=self.permitted
        )

    # -- set-up and tear-down ------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        url: str = "nats://127.0.0.1:4222",
        *,
        namespace: str = "default",
        pid: Pid | None = None,
        is_client: bool = True,
        local_scope: str | None = None,
        max_message_size: int | None = None,
        mailbox_max_messages: int | None = None,
        mailbox_max_bytes: int | None = None,
        mailbox_limits: Limits | None = None,
        max_links: int | None = None,
        max_monitors: int | None = None,
        lease: bool = True,
        start: bool = True,
        connect_timeout: float = 2.0,
        max_reconnect_attempts: int = -1,
        reconnect_time_wait: float = 0.5,
        connect_deadline: float = float(os.environ.get("REBEAM_CONNECT_DEADLINE", "10")),
        credentials: str | Callable[[], str] | None = None,
        tls_ca: str | None = None,
        tracing: bool | None = None,
    ) -> Node:
        """Connect as ``pid`` (a fresh client pid by default) with ``credentials``: the
        token its backend issued (docs/security.md), or a function that reads it afresh for
        every (re)connection; from the environment otherwise (:func:`credentials_from_environment`).
        ``tls_ca``: a file of the CA certificates a ``tls://`` server's certificate must be
        signed by; ``REBEAM_NATS_CA`` otherwise (docs/security.md, "TLS"). ``tracing``:
        trace messages (None: ``REBEAM_TRACING``; docs/observability.md, "Tracing")."""
        pid = pid or Pid.for_client(namespace)
        # Read (and refused if unusable) before connecting: nothing to close on an error.
        limits = mailbox_limits or Limits(
            max_messages=mailbox_max_messages or DEFAULT_MAX_MESSAGES,
            max_bytes=mailbox_max_bytes or DEFAULT_MAX_BYTES,
        )
        watch_limits = WatchLimits.read(max_links, max_monitors)
        connection = Connection(pid, credentials, tls_ca)
        nc = await connection.open(
            url,
            connect_timeout=connect_timeout,
            reconnect_time_wait=reconnect_time_wait,
            connect_deadline=connect_deadline,
            max_reconnect_attempts=max_reconnect_attempts,
        )
        node = cls(
            nc,
            pid,
            local_scope=local_scope,
            max_message_size=max_message_size,
            is_client=is_client,
            mailbox_limits=limits,
            inbox=connection.inbox,
            watch_limits=watch_limits,
            tracing=tracing,
        )
        connection.listener = node
        if start:
            await node.start(lease=lease)
        return node

    @property
    def max_message_size(self) -> int:
        server = int(getattr(self.nc, "max_payload", 0) or 1024 * 1024)
        return min(server, self._max_size) if self._max_size else server

    async def start(self, *, lease: bool = True) -> None:
        """Take a lease, subscribe the mailbox, the reply inbox and the fence; flushed, so
        that once this returns the server routes messages to us
        (docs/nats.md, "Subscription interest")."""
        if lease:
            await self.take_lease()
        await self.subscribe()
        await self.nc.flush()

    async def take_lease(self, *, provisioned: bool = False) -> None:
        """Hold this pid's lease (raises Refused if it is held: the pid runs already);
        ``provisioned``: see :meth:`Lease.acquire`."""
        self.lease = Lease(self.nc.jetstream(), self.pid)
        self.lease.on_lost = self._lease_lost
        await self.lease.acquire(provisioned=provisioned)

    async def subscribe(self) -> None:
        """Subscribe the mailbox, the reply inbox and the fence, unflushed: the SUBs are
        queued on the connection ahead of whatever is sent after this returns."""
        on_message = self.on_message or self._on_mailbox
        sub = self.nc.subscribe
        mailbox = await sub(
            self._subject,
            cb=on_message,
            pending_msgs_limit=self.limits.max_messages,
            pending_bytes_limit=self.limits.max_bytes,
        )
        self._mailbox_sid = mailbox._id
        self.mailbox_sub = mailbox
        self._subs.append(mailbox)
        self._subs.append(await self._requests.subscribe())
        msgs, size = _SMALL_LIMITS
        fence = _subjects.fence(self.pid)
        stats = _subjects.stats(self.pid)
        for subject, cb in ((fence, self._on_fence), (stats, self._on_stats_request)):
            self._subs.append(
                await sub(subject, cb=cb, pending_msgs_limit=msgs, pending_bytes_limit=size)
            )

    async def settle_mailbox(self, timeout: float = 1.0) -> None:
        """Let the messages already received be delivered (the runtime answers the calls
        among them with its exit reason) before the mailbox goes away."""
        if not self._subs:
            return
        sub = self._subs[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # nats-py offers no event for "queue drained": poll, briefly and bounded.
        while sub.pending_msgs > 0 and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    async def stop_receiving(self) -> None:
        """Unsubscribe the mailbox: from now on, calls to this pid get noproc."""
        if self._subs:
            with contextlib.suppress(Exception):
                await self._subs[0].unsubscribe()
                await self.nc.flush(timeout=2)

    async def close(self, reason: ExitReason | None = None, *, publish_exit: bool = False) -> None:
        """Release this node's names and disconnect. A client (nobody else observes its
        end) publishes its own ``exited`` event, so its monitors and links hear of it."""
        if self._closed:
            return
        self._closed = True
        await self.stop_receiving()
        self._requests.fail_all(lambda pid: NoProc(f"{self.pid} closed during a call to {pid}"))
        if self.nc.is_connected:
            with contextlib.suppress(Exception):
                await within(self.release_all(), 5)
            if publish_exit:
                from rebeam.events import LifecycleEvent, publish  # pydantic: clients only

                event = LifecycleEvent.exited(self.pid, reason or ExitReason.from_wire("normal"))
                with contextlib.suppress(Exception):
                    await publish(self.nc, self.namespace, event)
        if self.lease is not None:
            # Not connected: it expires on its own, and a delete would only wait out its
            # timeout (a node cut off for good stops so: rebeam._lease).
            await self.lease.release(delete=self.nc.is_connected)
        self._naming.close()
        self._watching.close()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await within(self.nc.drain(), 5)
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self._tracing is not None:
            self._tracing.finish()  # the spans whose end was put off (rebeam._spans)

    def on_disconnected(self) -> None:
        if not self.is_client:
            self.delivering.clear()  # hold messages until the fence is re-checked

    def on_reconnected(self) -> None:
        self.stats.reconnects += 1
        self._spawn(self._after_reconnect())

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        if not asyncio.iscoroutine(coro):  # a plain send's awaitable (send_after's)
            coro = _awaited(coro)
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _lease_lost(self) -> None:
        if self.on_lease_lost is not None:
            self.on_lease_lost()

    # -- fencing -------------------------------------------------------------------------

    async def _on_fence(self, msg: Any) -> None:
        # Only backends may publish here: "N" (incarnation N started) or "kill N" (a
        # brutal_kill of incarnation N, which must not get to clean up).
        text = bytes(msg.data)
        if text.startswith(_subjects.KILL_ORDER):
            mine = text[len(_subjects.KILL_ORDER) :] == str(self.pid.incarnation).encode()
            if mine and self.on_kill_order is not None:
                self.on_kill_order()
            return
        try:
            incarnation = int(text)
        except ValueError:
            return
        if incarnation > self.pid.incarnation:
            self._fence(Pid(self.namespace, self.pid.slot, incarnation))

    def _fence(self, newer: Pid) -> None:
        if self.fenced_by is not None:
            return
        self.fenced_by = newer
        log.warning("%s is superseded by %s: no more deliveries", self.pid, newer)
        self.delivering.clear()
        self._spawn(self.stop_receiving())
        if self.on_fenced is not None:
            self.on_fenced(newer)

    async def superseded_by(self) -> Pid | None:
        """The later incarnation of this slot its backend recorded, if there is one. Only
        backends write slot records (docs/runtime-contract.md §6); a process reads its own
        to refuse a stale launch and to re-check after a reconnect."""
        kv = await self.store.kv()
        key = f"s.{self.pid.slot_token}"
        try:
            entry = await kv.get(key)
        except jserr.KeyNotFoundError:
            return None
        current, _ = self.store.record_owner(key, entry.value)
        return current if current is not None and current.supersedes(self.pid) else None

    async def _after_reconnect(self) -> None:
        if not self.is_client:
            try:
                current = await self.superseded_by()
                if current is not None:
                    self._fence(current)
                    return
            except Exception as exc:  # the registry may still be coming back: deliver
                log.warning("%s: fence check after reconnect failed: %s", self.pid, exc)
            if self.fenced_by is None:
                self.delivering.set()
        self._watching.recheck_all()

    # -- receiving -----------------------------------------------------------------------

    def admit(self, msg: Any) -> Envelope | None:
        """Check one message from the mailbox subscription: its :class:`Envelope`, or None
        when it was refused (oversized, malformed, on a subject that names no sender, with a
        reply subject that is no call inbox, a call to a client, or this incarnation is
        fenced). Refusals are counted and logged at a bounded rate,
        and answered only on an inbox (docs/sdk.md, "Input limits"). A plain
        function, not a coroutine: it runs for every message; the rare refusal is answered
        from a task of its own."""
        data = msg.data
        if len(data) > self._limit:
            self.stats.oversized += 1
            self._ratelog.warning("refused an oversized message", f"{len(data)} bytes")
            self._spawn(self._refuse(msg.reply, f"message of {len(data)} bytes exceeds the limit"))
            return None
        try:
            item = unpack_mailbox(data)
        except CodecError as exc:
            self.stats.malformed += 1
            self._ratelog.warning("refused a malformed message", str(exc))
            self._spawn(self._refuse(msg.reply, str(exc)))
            return None
        subject = msg.subject
        sender = self._senders.get(subject) or self.sender_of(subject)
        if not sender:
            # The sender is the one in the subject, which the server let only that sender
            # publish on; a subject of another form (a light actor's, which no process
            # hosts yet) names nobody to deliver from. (The target is this incarnation:
            # the subscription takes no other.)
            self.stats.misaddressed += 1
            self._ratelog.warning("refused a message on a subject of no sender", subject)
            self._spawn(self._refuse(msg.reply or None, f"{subject[:200]} names no sender"))
            return None
        reply = msg.reply
        if reply and not (
            _subjects.is_inbox(reply) if item[1] == _PING else self.answerable(reply)
        ):
            # A call or receipt is answered on a subject its sender chose: only a call inbox
            # of this namespace is one (a ping may use any inbox). Not delivered either: a
            # call that cannot be answered is not one to handle. The refusal itself goes
            # only to an inbox (_refuse), never to a $JS.API subject or a mailbox.
            self.stats.reply_refused += 1
            self._ratelog.warning("refused a message: its reply subject is no call inbox", reply)
            self._spawn(self._refuse(reply, _NOT_AN_INBOX))
            return None
        kind = item[1]
        if kind <= _CALL:  # a user message (SEND, CAST, CALL), not a system signal
            self.stats.received += 1
            if self.fenced_by is not None:
                self._spawn(self._refuse(msg.reply or None, f"superseded by {self.fenced_by}"))
                return None
            if kind == _CALL and self.is_client:
                self._spawn(self._refuse(msg.reply or None, "a client node does not handle calls"))
                return None
        return mailbox_envelope(item, self._pid_str, sender, reply or None, len(data))

    def on_violation(self, error: str) -> None:
        """The server refused something of ours (nats-py reports it apart from the request
        it concerns): wake whoever waits on that subject, count it, log it at a bounded
        rate."""
        self.stats.not_permitted += 1
        text = error.lower()
        for subject, waiter in list(self._permission_waiters.items()):
            if f'"{subject}"' in text and not waiter.done():
                waiter.set_result(error)
        if self.stats.not_permitted in _LOGGED_AT:
            log.warning("%s: %s [%d so far]", self.pid, error, self.stats.not_permitted)

    async def permitted(self, subject: str, operation: Awaitable[Any]) -> Any:
        """Run ``operation`` (a JetStream request on ``subject``); raise NotPermitted at once
        if the server refuses the subject, instead of a timeout later."""
        key = subject.lower()
        refused = self._permission_waiters[key] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(operation)
        try:
            await asyncio.wait({task, refused}, return_when=asyncio.FIRST_COMPLETED)
            if refused.done() and not task.done():
                task.cancel()
                raise NotPermitted(f"{self.pid} may not publish on {subject}: {refused.result()}")
            return await task
        finally:
            if self._permission_waiters.get(key) is refused:
                del self._permission_waiters[key]

    def sender_of(self, subject: str) -> str:
        """The pid string of the sender of a message on ``subject``, this mailbox's
        ``<prefix><slot>.<incarnation>._`` ("" for a subject of any other form), remembered
        (the actor's receiving fast path reads what was remembered first). The server lets
        only that sender publish on it (docs/security.md, "Who may say what"). The cache is
        bounded: a flood of made-up senders empties it now and then, and costs only the
        rebuilding."""
        cache = self._senders
        if len(cache) >= _MAX_SENDERS:
            cache.clear()
        prefix = self._from_prefix
        slot, _, rest = subject[len(prefix) :].partition(".")
        incarnation, _, tail = rest.partition(".")
        mine = subject.startswith(prefix) and slot and incarnation and tail == _subjects.WHOLE
        sender = f"{self._ns_dot}{slot}.{incarnation}" if mine else ""
        cache[subject] = sender
        return sender

    async def _on_mailbox(self, msg: Any) -> None:
        """A client's mailbox subscription: messages wait for :meth:`receive`."""
        env = self.admit(msg)
        if env is None:
            return
        if env.kind not in USER_KINDS:
            await self._on_signal(env)
        elif not self.mailbox.offer(env):
            self.stats.mailbox_refused += 1
            if env.reply:
                with contextlib.suppress(Exception):
                    await self.nc.publish(env.reply, self._full_reply())
            else:
                self.stats.refused_silently += 1
        elif env.reply:  # a send or cast that asked for a receipt: it is in the mailbox
            await self.nc.publish(env.reply, _RECEIPT_REPLY)

    async def _on_signal(self, env: Envelope) -> None:
        if env.kind is PING:
            if env.reply:
                await self.nc.publish(env.reply, pack_reply(None))
            return
        try:
            sender = Pid.parse(env.sender or "")
        except ValueError as exc:
            self.stats.malformed += 1
            self._ratelog.warning("refused a signal with a malformed sender", str(exc))
            return
        if env.kind is LINK:
            await self._watching.linked_by(sender)
        elif env.kind is UNLINK:
            self._watching.unlinked_by(sender)

    async def _refuse(self, reply: str | None, why: str) -> None:
        if reply and _subjects.is_inbox(reply):
            with contextlib.suppress(Exception):
                await self.nc.publish(reply, pack_error({"error": "refused", "message": why}))

    async def on_dropped(self, exc: nats.errors.SlowConsumerError) -> None:
        """nats-py refused a message because a subscription's pending queue was at its
        limit (called from its read loop, once per message). On the mailbox, that is a full
        mailbox: answer the sender if it waits for an answer, count it either way."""
        stats = self.stats
        if exc.sid == self._mailbox_sid:
            stats.mailbox_refused += 1
            if stats.mailbox_refused in _LOGGED_AT:
                log.warning(
                    "%s: mailbox full (%d messages / %d bytes): %d refused so far",
                    self.pid,
                    self.limits.max_messages,
                    self.limits.max_bytes,
                    stats.mailbox_refused,
                )
            if exc.reply and _subjects.is_inbox(exc.reply):
                with contextlib.suppress(Exception):
                    await self.nc.publish(exc.reply, self._full_reply())
            else:
                stats.refused_silently += 1
            return
        stats.slow_consumer_drops += 1
        if stats.slow_consumer_drops in _LOGGED_AT:
            log.warning(
                "%s: NATS dropped a message on %s (slow consumer): %d so far",
                self.pid,
                exc.subject,
                stats.slow_consumer_drops,
            )

    def _full_reply(self) -> bytes:
        return pack_error(
            {
                "error": "mailbox_full",
                "message": f"the mailbox of {self._pid_str} is full "
                f"({self.limits.max_messages} messages / {self.limits.max_bytes} bytes)",
            }
        )

    def stats_snapshot(self) -> dict[str, int]:
        """This node's counters, its mailbox limits and what waits in it now."""
        out = dataclasses.asdict(self.stats)
        sub = self._subs[0] if self._subs and self._mailbox_sid is not None else None
        out["mailbox_pending"] = int(sub.pending_msgs) if sub is not None else 0
        out["mailbox_pending_bytes"] = int(sub.pending_bytes) if sub is not None else 0
        out["mailbox_max_messages"] = self.limits.max_messages
        out["mailbox_max_bytes"] = self.limits.max_bytes
        out["local_pending"] = len(self.mailbox)  # Down, Exit, timers (and a client's mail)
        out["local_refused"] = self.mailbox.refused
        out["calls_pending"] = len(self._requests)
        out.update(self._watching.counts())
        # What the observer shows as handler latency: the metrics' handler timings.
        out["handler_samples"] = sum(sum(t.counts) for t in self.metrics.handler)
        out["handler_ns"] = int(sum(t.sum for t in self.metrics.handler) * 1e9)
        return out

    async def _on_stats_request(self, msg: Any) -> None:
        reply = msg.reply
        if not reply:
            return
        if not _subjects.is_inbox(reply):
            self.stats.reply_refused += 1
            self._ratelog.warning("refused a stats request: its reply subject is no inbox", reply)
            return
        answer: Any
        if msg.data == metrics.SCRAPE:
            answer = metrics.export()
        else:
            answer = self.stats_snapshot()
            if msg.data == STATUS_REQUEST and self.status_report is not None:
                answer["status"] = await self.status_report()
        with contextlib.suppress(Exception):
            await self.nc.publish(reply, pack_reply(answer))

    async def stats_of(self, dest: Address | None = None, timeout: float = 2.0) -> dict[str, int]:
        """The counters of a process (this one if ``dest`` is None): what it received, what
        its full mailbox refused, what NATS dropped, what waits in its mailbox now.

        Raises :class:`NoProc` if nobody holds ``dest``, :class:`CallTimeout` without an
        answer. Answered on a subject beside the mailbox, so a full mailbox does not delay it.
        """
        if dest is None:
            return self.stats_snapshot()
        pid = await self.resolve(dest)
        if pid == self.pid:
            return self.stats_snapshot()
        try:
            msg = await self.nc.request(_subjects.stats(pid), b"", timeout=timeout)
        except nats.errors.NoRespondersError:
            raise NoProc(f"no process {pid}") from None
        except nats.errors.TimeoutError:
            raise CallTimeout(f"no stats from {pid} within {timeout:g}s") from None
        status, payload = unpack_reply(msg.data)
        if status != 0 or not isinstance(payload, dict):
            raise CodecError("malformed stats reply")
        return {str(k): int(v) for k, v in payload.items() if isinstance(v, int)}

    async def receive(self, timeout: float | None = None) -> Any:
        """The next message in a client's mailbox (sends, casts, Down and Exit notices).

        Raises TimeoutError after ``timeout`` seconds. Actors get theirs through callbacks.
        """
        async with asyncio.timeout(timeout):
            item = None
            while item is None:
                item = await self.mailbox.get()
        if isinstance(item, Info):
            return item.message
        return item.body

    # -- sending -------------------------------------------------------------------------

    async def resolve(self, dest: Address, *, cached: bool = True) -> Pid:
        """The pid an address names now; raises :class:`NoProc` if none."""
        if isinstance(dest, Pid):
            return dest
        pid: Pid | None
        if isinstance(dest, str):
            pid = await self.whereis(dest, cached=cached)
        elif isinstance(dest, Name):
            pid = await self.whereis(dest.name, scope=dest.scope or self.local_scope)
        elif isinstance(dest, Via):
            found = await self.store.reg_lookup(dest.registry, "unique", dest.key)
            pid = found[0][0] if found else None
        else:
            raise TypeError(f"not an address: {dest!r}")
        if pid is None:
            raise NoProc(f"no process is registered as {dest!r}")
        return pid

    def _mailbox_of(self, pid: Pid) -> str:
        """``pid``'s mailbox subject, cached by the pid's string (a str's hash is cached,
        a Pid's is a Python call): escaping a slot on every message would cost more than
        the rest of a cast."""
        if len(self._mailboxes) > 4096:
            self._mailboxes.clear()
        subject = self._mailboxes[pid._text] = _subjects.mailbox(pid, self.pid)
        return subject

    def _head_of(self, pid: Pid) -> bytes:
        """The start of a PUB to ``pid``'s mailbox (:func:`rebeam._fastpath.pub_head`),
        cached as its subject is; b"" for a subject nats-py would refuse."""
        if len(self._heads) > 4096:
            self._heads.clear()
        subject = self._mailboxes.get(pid._text) or self._mailbox_of(pid)
        head = self._heads[pid._text] = pub_head(subject) or b""
        return head

    def _envelope(self, kind: int, message: Any, trace: Any = None) -> bytes:
        """Pack a message; ``trace``: the sender span's context, when tracing."""
        data = pack_mailbox(kind, message, trace)
        if len(data) > self._limit:
            raise MessageTooLarge(len(data), self._limit)
        return data

    def send(
        self, dest: Address, message: Any, *, wait: float | None = None, durable: bool = False
    ) -> Awaitable[None]:
        """Send a plain message (``handle_info``): at-most-once, ordered per pair, silent
        if the pid is dead. A name that is not registered raises :class:`NoProc` (OTP's
        ``badarg``).

        With ``wait`` (seconds), the send asks for a receipt instead: it returns once the
        receiver took the message to handle it, waits for room while the receiver's mailbox
        is full, and raises :class:`MailboxFull` if there was no room within ``wait``,
        :class:`NoProc` if nobody is there, :class:`CallTimeout` if it was admitted but not
        taken within ``wait`` (it may still be handled).

        With ``durable=True``, to an actor with a durable mailbox: stored by JetStream for
        the actor's slot, and returns once stored; kept while the actor is down or
        restarting, delivered in order, at least once, to the handler once (docs/sdk.md).
        Raises :class:`MailboxFull` if that mailbox is at its limit."""
        return self._deliver(_SEND, dest, message, wait, durable)

    def cast(
        self, dest: Address, message: Any, *, wait: float | None = None, durable: bool = False
    ) -> Awaitable[None]:
        """Cast (``handle_cast``): returns at once, and is silently lost if nobody is there,
        also when the name is not registered (OTP's ``gen_server:cast``). A full mailbox
        refuses it: the receiver counts it (``mailbox_refused`` in :meth:`stats_of`).

        With ``wait`` (seconds), as :meth:`send` with ``wait``: a receipt, room waited for
        up to ``wait``, and :class:`MailboxFull`, :class:`NoProc` or :class:`CallTimeout`
        when it cannot be delivered (an unregistered name raises :class:`NoProc` too).

        With ``durable=True``, as :meth:`send` with ``durable=True``."""
        return self._deliver(_CAST, dest, message, wait, durable)

    def _deliver(
        self, kind: int, dest: Address, message: Any, wait: float | None, durable: bool
    ) -> Awaitable[None]:
        """A send or a cast. The hot path, a plain one to a pid, runs no coroutine: the
        message is queued on the connection before this returns, as nats-py's publish
        would queue it (:func:`rebeam._fastpath.publish_queued`; nats-py's own publish when
        that declines), and what is returned is a finished future. The start of the PUB is
        cached by the pid's string, and the envelope packed right here, as
        :meth:`_envelope` does (calling it costs the sender 3% more CPU per cast). A node
        that traces takes the longer way too."""
        if type(dest) is not Pid or wait is not None or durable or self._tracing is not None:
            if durable and type(dest) is Pid:
                # Queued now, in the order of the calls, no coroutine of its own either.
                self.metrics.sent[kind] += 1
                return _durable_batch.submit(self, dest, kind, message)  # type: ignore[return-value]
            return self._deliver_resolving(kind, dest, message, wait, durable)
        head = self._heads.get(dest._text) or self._head_of(dest)
        data = _codec.encode([VERSION, kind, message])
        if len(data) > self._limit:
            raise MessageTooLarge(len(data), self._limit)
        self.metrics.sent[kind] += 1
        if head and publish_queued(self.nc, head, data):
            return self._queued
        subject = self._mailboxes.get(dest._text) or self._mailbox_of(dest)
        return self.nc.publish(subject, data)  # type: ignore[no-any-return]

    async def _deliver_resolving(
        self, kind: int, dest: Address, message: Any, wait: float | None, durable: bool
    ) -> None:
        if type(dest) is Pid:
            pid = dest
        elif kind == _CAST and wait is None and not durable:
            try:
                pid = await self.resolve(dest)
            except NoProc:
                return  # OTP's cast to an unregistered name: silently nothing
        else:
            pid = await self.resolve(dest)
        if durable:
            await _durable_batch.publish(self, pid, kind, message)
            self.metrics.sent[kind] += 1
        elif wait is not None:
            await self._request(pid, kind, message, wait, RECEIPT)
        elif self._tracing is not None:
            with self._tracing.sending(kind, pid) as trace:
                subject = self._mailboxes.get(pid._text) or self._mailbox_of(pid)
                await self.nc.publish(subject, self._envelope(kind, message, trace))
        else:
            await self._deliver(kind, pid, message, None, False)

    def call(
        self,
        dest: Address,
        message: Any,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> Coroutine[Any, Any, Any]:
        """Call (``handle_call``) and wait for the reply: await what this returns.

        Raises:
            NoProc: nobody holds the destination (at once, not after the timeout).
            CallTimeout: no reply within ``timeout`` seconds (None waits forever).
            CalleeExited: the callee ended during the call; ``.reason`` says why.
            RemoteError: ``handle_call`` raised; the remote exception's type and message.
            CallingSelf: a process called itself.
            Refused: the callee refused the message.

        The hot path, a call to a pid by a node that does not trace, is no coroutine of its
        own: the envelope is packed here, as :meth:`_deliver` packs a cast's, and what is
        returned is the request's one coroutine (:meth:`Requests.request
        <rebeam._requests.Requests.request>`). A message that cannot be sent (too large, not
        encodable, to this process itself) raises here, before anything is awaited."""
        if type(dest) is not Pid:
            return self._call_resolving(dest, message, timeout)
        if dest._text == self._pid_str:  # the string form of a pid names it alone
            raise CallingSelf(f"{dest} called itself")
        subject = self._mailboxes.get(dest._text) or self._mailbox_of(dest)
        if self._tracing is not None:
            return self._traced_call(dest, subject, message, timeout)
        data = _codec.encode([VERSION, _CALL, message])
        if len(data) > self._limit:
            raise MessageTooLarge(len(data), self._limit)
        self.metrics.sent[_CALL] += 1
        return self._requests.request(dest, subject, data, timeout, self._reply)

    def _traced_call(
        self, dest: Pid, subject: str, message: Any, timeout: float | None
    ) -> Coroutine[Any, Any, Any]:
        """A call to a pid by a node that traces: its span planned now, and the request's
        coroutine awaited inside it, one coroutine more than an untraced call's
        (docs/observability.md, "Cost"). What cannot be sent raises here, on the span."""
        tracing = self._tracing
        assert tracing is not None  # (the caller checked)
        span = tracing.sending(_CALL, dest)
        field = span.field  # None: a span of another tracer with no valid context
        try:  # packed as _envelope packs it, without its two calls
            item = [VERSION, _CALL, message] if field is None else [VERSION, _CALL, message, field]
            data = _codec.encode(item)
            if len(data) > self._limit:
                raise MessageTooLarge(len(data), self._limit)
        except BaseException as exc:
            span.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.metrics.sent[_CALL] += 1
        return span.around(self._requests.request(dest, subject, data, timeout, self._reply))

    async def _call_resolving(self, dest: Address, message: Any, timeout: float | None) -> Any:
        """A call to a name, or by a node that traces."""
        pid = dest if type(dest) is Pid else await self.resolve(dest)
        try:
            return await self._request(pid, _CALL, message, timeout, self._reply)
        except NoProc:
            if isinstance(dest, str) and self._naming.caching:
                # The cached name may be stale (its owner restarted): ask the registry.
                fresh = await self.resolve(dest, cached=False)
                if fresh != pid:
                    return await self._request(fresh, _CALL, message, timeout, self._reply)
            raise

    async def _request(
        self, pid: Pid, kind: int, message: Any, timeout: float | None, answer: Answer
    ) -> Any:
        """A call, or a send or cast with a receipt: the one request path
        (:meth:`Requests.request <rebeam._requests.Requests.request>`)."""
        if pid == self.pid:
            raise CallingSelf(
                f"{pid} called itself"
                if kind == _CALL
                else f"{pid} cannot wait for room in its own mailbox"
            )
        subject = self._mailboxes.get(pid._text) or self._mailbox_of(pid)
        self.metrics.sent[kind] += 1
        if self._tracing is None:
            data = self._envelope(kind, message)
            return await self._requests.request(pid, subject, data, timeout, answer)
        with self._tracing.sending(kind, pid) as trace:
            data = self._envelope(kind, message, trace)
            return await self._requests.request(pid, subject, data, timeout, answer)

    # -- exit watches (rebeam._watching) -------------------------------------------------

    @property
    def trap_exit(self) -> bool:
        """Whether exit signals from links arrive as :class:`Exit` messages."""
        return self._watching.trap_exit

    @trap_exit.setter
    def trap_exit(self, value: bool) -> None:
        self._watching.trap_exit = value

    @property
    def on_exit_signal(self) -> Callable[[Pid, ExitReason], None] | None:
        """Set by the runtime: how a non-trapping actor dies from an exit signal."""
        return self._watching.on_exit_signal

    @on_exit_signal.setter
    def on_exit_signal(self, value: Callable[[Pid, ExitReason], None] | None) -> None:
        self._watching.on_exit_signal = value

    @property
    def links(self) -> list[Pid]:
        return self._watching.links

    def monitor(self, dest: Address) -> Awaitable[MonitorRef]:
        """See :meth:`Watching.monitor <rebeam._watching.Watching.monitor>`."""
        return self._watching.monitor(dest)

    def demonitor(self, ref: MonitorRef) -> bool:
        """See :meth:`Watching.demonitor <rebeam._watching.Watching.demonitor>`."""
        return self._watching.demonitor(ref)

    def link(self, dest: Address) -> Awaitable[Pid]:
        """See :meth:`Watching.link <rebeam._watching.Watching.link>`."""
        return self._watching.link(dest)

    def unlink(self, dest: Address) -> Awaitable[None]:
        """See :meth:`Watching.unlink <rebeam._watching.Watching.unlink>`."""
        return self._watching.unlink(dest)

    def is_alive(self, pid: Pid, timeout: float = 5.0) -> Awaitable[bool]:
        """See :meth:`Watching.is_alive <rebeam._watching.Watching.is_alive>`."""
        return self._watching.is_alive(pid, timeout)

    # -- names (rebeam._naming) ----------------------------------------------------------

    async def register(self, name: str, *, scope: str | None = None, local: bool = False) -> None:
        """See :meth:`Naming.register <rebeam._naming.Naming.register>`."""
        await self._naming.register(name, scope=scope, local=local)

    async def unregister(self, name: str, *, scope: str | None = None, local: bool = False) -> None:
        """See :meth:`Naming.unregister <rebeam._naming.Naming.unregister>`."""
        await self._naming.unregister(name, scope=scope, local=local)

    async def whereis(
        self, name: str, *, scope: str | None = None, local: bool = False, cached: bool = True
    ) -> Pid | None:
        """See :meth:`Naming.whereis <rebeam._naming.Naming.whereis>`."""
        return await self._naming.whereis(name, scope=scope, local=local, cached=cached)

    async def release_all(self) -> None:
        """See :meth:`Naming.release_all <rebeam._naming.Naming.release_all>`."""
        await self._naming.release_all()

    def owns(self, key: str, local: bool = False) -> None:
        """See :meth:`Naming.owns <rebeam._naming.Naming.owns>`."""
        self._naming.owns(key, local)

    def disown(self, key: str, local: bool = False) -> None:
        """See :meth:`Naming.disown <rebeam._naming.Naming.disown>`."""
        self._naming.disown(key, local)

    def _registry_invalid(self, key: str, why: str) -> None:
        self.stats.registry_invalid += 1
        self._ratelog.warning("ignored an invalid registry record", f"{key}: {why}")


async def _awaited(work: Awaitable[Any]) -> Any:
    return await work
