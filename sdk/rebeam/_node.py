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
* calls: one reply subscription per node (``_INBOX_rebeam.<ns>.<pid>.*``), a future per call,
  a timer for the deadline; a reply nobody waits for any more is counted and dropped; at most
  ``max_pending_calls`` calls wait for replies at once (more wait for a slot);
* bounds (docs/sdk.md): the mailbox subscription's pending queue is the mailbox, limited by
  :class:`~rebeam._mailbox.Limits`; what nats-py refuses past a limit comes back through
  ``error_cb`` and is answered ``mailbox_full`` (a call, a cast or send with ``wait``) or
  counted (a plain cast or send); every other subscription has limits too, and its drops are
  counted and logged (``slow_consumer_drops``); ``stats`` answers a node's counters on a
  subject of its own, so an overloaded mailbox does not delay the answer;
* exit watches (:mod:`rebeam._watching`) and names (:mod:`rebeam._naming`), mixed in;
* fencing: the node listens on its slot's fence subject and stops delivering as soon as a
  later incarnation of its slot announces itself, and re-checks the slot record after every
  reconnect before it delivers again.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.errors
import nats.js.errors as jserr

from rebeam import _codec, _durable, _subjects
from rebeam._addresses import Address, Name, Via
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
    Kind,
    envelope_of,
    pack_error,
    pack_fields,
    pack_reply,
    unpack_fields,
    unpack_reply,
)
from rebeam._interest import InterestProbe
from rebeam._lease import Lease
from rebeam._mailbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Info, Limits, Mailbox
from rebeam._naming import Naming
from rebeam._nats_fixes import connect as nats_connect
from rebeam._ratelog import RateLog
from rebeam._registry import Store
from rebeam._watching import (
    DEFAULT_MAX_LINKS,
    DEFAULT_MAX_MONITORS,
    Watching,
    _Watch,
    limit_from_env,
)
from rebeam.errors import (
    CalleeExited,
    CallingSelf,
    CallTimeout,
    CodecError,
    MailboxFull,
    MessageTooLarge,
    NoProc,
    NotPermitted,
    Refused,
    RemoteError,
)
from rebeam.exits import ExitReason
from rebeam.pids import Pid

__all__ = ["Node", "Stats"]

log = logging.getLogger("rebeam.node")

DEFAULT_CALL_TIMEOUT = 5.0
_STATUS = "Status"
_NO_RESPONDERS = "503"
_MAX_IDLE_WATCHES = 256
_CAST = int(CAST)  # a plain int packs faster than the enum
_CALL = int(CALL)
DEFAULT_MAX_PENDING_CALLS = 10_000
# The other subscriptions' bounds: replies (one per call in flight), the fence (rare).
_INBOX_LIMITS = (2 * DEFAULT_MAX_PENDING_CALLS, 64 * 1024 * 1024)
_SMALL_LIMITS = (1000, 1024 * 1024)
_RECEIPT = pack_reply(None)
_MIN_ATTEMPT = 0.1  # seconds a retry of a send or cast waiting for room needs at least
_LOGGED_AT = frozenset({1, 10, 100, 1000, 10_000, 100_000, 1_000_000})
_PING = int(PING)
_MAX_REFUSAL = 2000  # characters of a refusal's message kept in the error raised
_NOT_AN_INBOX = "the reply subject of a call must be a call inbox (_INBOX_rebeam.<namespace>.)"


@dataclass
class Stats:
    """Counters a node keeps, for logs, status, ``rebeam.stats`` and tests."""

    received: int = 0  # user messages (send, cast, call) admitted from the mailbox
    malformed: int = 0
    oversized: int = 0
    misaddressed: int = 0
    late_replies: int = 0
    slow_consumer_drops: int = 0  # dropped by nats-py on a subscription other than the mailbox
    mailbox_refused: int = 0  # refused because the mailbox was full (answered when possible)
    refused_silently: int = 0  # ... of which plain casts and sends: no sender to answer
    durable_delivered: int = 0  # durable mailbox: handled and acknowledged
    durable_duplicates: int = 0  # durable mailbox: redeliveries of handled messages, skipped
    parked: int = 0  # durable mailbox: poison messages moved aside
    # Requests sent again after a cluster answered "no responders" for a pid holding a live
    # lease: its subscription had not reached our server yet (rebeam._interest).
    interest_retries: int = 0
    # Messages whose envelope named another sender than the subject they came on.
    forged: int = 0
    # Operations the server refused: this process's credential does not allow them.
    not_permitted: int = 0
    # Refused input (docs/sdk.md, "Input limits"); each is also logged, at a bounded rate.
    reply_refused: int = 0  # requests whose reply subject is not an inbox: not answered
    malformed_replies: int = 0  # call replies that did not decode (the caller got CodecError)
    malformed_events: int = 0  # exit events that did not decode: ignored
    registry_invalid: int = 0  # registry records that did not decode: taken as absent
    links_refused: int = 0  # link signals past max_links (or from another namespace)
    links_dropped: int = 0  # links from pids that did not answer a ping


class Node(Naming, Watching):
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
        max_pending_calls: int = DEFAULT_MAX_PENDING_CALLS,
        inbox: str | None = None,
        max_links: int | None = None,
        max_monitors: int | None = None,
    ) -> None:
        self.nc = nc
        self.pid = pid
        self.namespace = pid.namespace
        self.local_scope = local_scope or os.environ.get("REBEAM_LOCAL_SCOPE") or "default"
        self.is_client = is_client
        self.stats = Stats()
        self.limits = mailbox_limits or Limits()
        self.max_pending_calls = max_pending_calls
        self.max_links = max_links or limit_from_env("MAX_LINKS", DEFAULT_MAX_LINKS)
        self.max_monitors = max_monitors or limit_from_env("MAX_MONITORS", DEFAULT_MAX_MONITORS)
        self._ratelog = RateLog(log, str(pid))
        self.mailbox = Mailbox(self.limits.max_messages)
        self.trap_exit = False
        # Set by the runtime: how a non-trapping actor dies from an exit signal, and what
        # happens when a later incarnation fences this one. A client gets Exit messages.
        self.on_exit_signal: Callable[[Pid, ExitReason], None] | None = None
        # Set by the runtime before start(): the mailbox subscription's callback (an actor
        # handles its messages right there). Without it (a client) messages wait in the
        # mailbox for receive().
        self.on_message: Callable[[Any], Awaitable[None]] | None = None
        self.on_fenced: Callable[[Pid], None] | None = None
        self.store = Store(nc.jetstream(), pid.namespace, on_invalid=self._registry_invalid)
        self._interest = InterestProbe(nc, pid.namespace, self.stats)
        self.delivering = asyncio.Event()
        self.delivering.set()
        self._pid_str = str(pid)
        self._permission_waiters: dict[str, asyncio.Future[str]] = {}
        self._max_size = max_message_size
        self._limit = self.max_message_size
        self._mailboxes: dict[str, str] = {}  # pid string -> mailbox subject
        self._subject = _subjects.mailbox_subscription(pid)
        # What the subject of a message from sender "<ns>.<slot>.<n>" is, less its tail:
        # `sent_by` compares without splitting the subject (it runs for every message).
        self._from_prefix = self._subject[: -len(".*.*.*")] + "."
        self._ns_dot = pid.namespace + "."
        # Reply inboxes carry a random token: a call's reply can only come from someone who
        # was given the reply subject (docs/security.md, "Who may say what").
        self._inbox = inbox or f"{_subjects.inbox_prefix(pid)}.{secrets.token_hex(8)}"
        self._tokens = itertools.count(1)
        self._seq = itertools.count(1)
        self._calls: dict[str, tuple[asyncio.Future[Any], Pid]] = {}
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._mailbox_sid: int | None = None
        self._watches: dict[Pid, _Watch] = {}
        self._link_count = 0  # watches with linked set
        self._monitor_count = 0  # monitors in all watches
        self._owned: set[tuple[str, bool]] = set()
        self._names: dict[str, Pid] | None = None  # the name cache, once watching
        self._name_watch_task: asyncio.Task[None] | None = None
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.fenced_by: Pid | None = None
        self.lease: Lease | None = None
        self._lease_watch: asyncio.Task[None] | None = None
        # Set by the runtime: what to do when this node's lease was lost (declared dead).
        self.on_lease_lost: Callable[[], None] | None = None

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
    ) -> Node:
        """Connect as ``pid`` (a fresh client pid by default) with ``credentials``: the
        token its backend issued (docs/security.md), or a function that reads it afresh
        for every (re)connection; from the environment otherwise
        (:func:`credentials_from_environment`). ``tls_ca``: a file of the CA certificates a
        ``tls://`` server's certificate must be signed by; ``REBEAM_NATS_CA`` otherwise
        (docs/security.md, "TLS")."""
        pid = pid or Pid.for_client(namespace)
        if credentials is None:
            credentials = credentials_from_environment()
        # Every inbox of this connection, nats-py's own (JetStream and KV replies) and the
        # node's call inbox, lies under the pid's inbox prefix: all it may subscribe to.
        inbox = f"{_subjects.inbox_prefix(pid)}.{secrets.token_hex(8)}"
        if mailbox_limits is None:
            mailbox_limits = Limits(
                max_messages=mailbox_max_messages or DEFAULT_MAX_MESSAGES,
                max_bytes=mailbox_max_bytes or DEFAULT_MAX_BYTES,
            )
        # Read (and refused if unusable) before connecting: nothing to close on an error.
        max_links = max_links or limit_from_env("MAX_LINKS", DEFAULT_MAX_LINKS)
        max_monitors = max_monitors or limit_from_env("MAX_MONITORS", DEFAULT_MAX_MONITORS)
        holder: dict[str, Node] = {}
        refused_by_server: list[str] = []  # the server's refusals of our credential

        async def error_cb(exc: Exception) -> None:
            node = holder.get("node")
            if isinstance(exc, nats.errors.SlowConsumerError):
                if node is not None:
                    await node._on_dropped(exc)
                else:
                    log.warning("%s: NATS dropped a message on %s", pid, exc.subject)
                return
            if "authorization violation" in str(exc).lower():
                refused_by_server.append(str(exc))
            if node is not None and "permissions violation" in str(exc).lower():
                node.on_violation(str(exc))
                return
            log.debug("%s: NATS error: %s", pid, exc)

        async def disconnected_cb() -> None:
            node = holder.get("node")
            if node is not None and not node.is_client:
                node.delivering.clear()  # hold messages until the fence is re-checked

        async def reconnected_cb() -> None:
            node = holder.get("node")
            if node is not None:
                node._spawn(node._after_reconnect())

        try:
            nc = await nats_connect(
                url,
                name=str(pid),
                connect_timeout=connect_timeout,
                # nats-py retries the first connect with the reconnect budget, and -1 would
                # retry forever: bound the first connect, then allow the configured budget.
                max_reconnect_attempts=max(1, int(connect_deadline / reconnect_time_wait)),
                reconnect_time_wait=reconnect_time_wait,
                allow_reconnect=True,
                error_cb=error_cb,
                disconnected_cb=disconnected_cb,
                reconnected_cb=reconnected_cb,
                token=credentials,
                inbox_prefix=f"{inbox}n",
                tls_ca=tls_ca,
            )
        except nats.errors.NoServersError:
            if refused_by_server:
                why = (
                    "no credential was given"
                    if not credentials
                    else "its credential was refused (unknown, revoked, or its pid is in use)"
                )
                raise NotPermitted(
                    f"NATS at {url} refused {pid}: {why} "
                    "(docs/security.md, 'How a process is let in')"
                ) from None
            raise
        nc.options["max_reconnect_attempts"] = max_reconnect_attempts
        node = cls(
            nc,
            pid,
            local_scope=local_scope,
            max_message_size=max_message_size,
            is_client=is_client,
            mailbox_limits=mailbox_limits,
            inbox=inbox,
            max_links=max_links,
            max_monitors=max_monitors,
        )
        holder["node"] = node
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
            self.lease = Lease(self.nc.jetstream(), self.pid)
            self.lease.on_lost = self._lease_lost
            await self.lease.acquire()
        on_message = self.on_message or self._on_mailbox
        sub = self.nc.subscribe
        mailbox = await sub(
            self._subject,
            cb=on_message,
            pending_msgs_limit=self.limits.max_messages,
            pending_bytes_limit=self.limits.max_bytes,
        )
        self._mailbox_sid = mailbox._id
        self._subs.append(mailbox)
        msgs, size = _INBOX_LIMITS
        self._subs.append(
            await sub(
                self._inbox + ".*",
                cb=self._on_reply,
                pending_msgs_limit=max(msgs, 2 * self.max_pending_calls),
                pending_bytes_limit=size,
            )
        )
        msgs, size = _SMALL_LIMITS
        fence = _subjects.fence(self.pid)
        stats = _subjects.stats(self.pid)
        for subject, cb in ((fence, self._on_fence), (stats, self._on_stats_request)):
            self._subs.append(
                await sub(subject, cb=cb, pending_msgs_limit=msgs, pending_bytes_limit=size)
            )
        await self.nc.flush()

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
        for fut, pid in list(self._calls.values()):
            if not fut.done():
                fut.set_exception(NoProc(f"{self.pid} closed during a call to {pid}"))
        if self.nc.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.release_all(), 5)
            if publish_exit:
                from rebeam.events import LifecycleEvent, publish  # pydantic: clients only

                event = LifecycleEvent.exited(self.pid, reason or ExitReason.from_wire("normal"))
                with contextlib.suppress(Exception):
                    await publish(self.nc, self.namespace, event)
        if self.lease is not None:
            await self.lease.release()
        if self._name_watch_task is not None:
            self._name_watch_task.cancel()
        if self._lease_watch is not None:
            self._lease_watch.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.drain(), 5)
        if not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _lease_lost(self) -> None:
        if self.on_lease_lost is not None:
            self.on_lease_lost()

    # -- fencing -------------------------------------------------------------------------

    async def _on_fence(self, msg: Any) -> None:
        try:
            incarnation = int(msg.data)
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
        # Exit events published while we were away are lost (Core NATS): ask again.
        for pid in list(self._watches):
            self._spawn(self._recheck(pid))

    # -- receiving -----------------------------------------------------------------------

    def admit(self, msg: Any) -> Envelope | None:
        """:meth:`admit_fields`, as an :class:`Envelope`."""
        item = self.admit_fields(msg)
        if item is None:
            return None
        return envelope_of(item, msg.reply or None, len(msg.data))

    def admit_fields(self, msg: Any) -> list[Any] | None:
        """Check one message from the mailbox subscription: the checked envelope array
        (:func:`unpack_fields`), or None when it was refused (oversized, malformed, for
        another incarnation, with a reply subject that is no call inbox, a call to a client,
        or this incarnation is fenced). Refusals are counted and logged at a bounded rate,
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
            item = unpack_fields(data)
        except CodecError as exc:
            self.stats.malformed += 1
            self._ratelog.warning("refused a malformed message", str(exc))
            self._spawn(self._refuse(msg.reply, str(exc)))
            return None
        if not self.sent_by(msg.subject, item[3]):
            # The sender is the one in the subject, which the server let only that sender
            # publish on; an envelope naming someone else is a forgery. (A message that
            # JetStream delivered keeps its stored subject, which is no mailbox: refused.)
            self.stats.forged += 1
            self._spawn(self._refuse(None, "the sender does not match the subject"))
            return None
        if item[2] != self._pid_str:
            # Never deliver a message stamped for another incarnation (fencing).
            self.stats.misaddressed += 1
            refusal = f"addressed to {item[2][:200]}, not {self._pid_str}"
            self._spawn(self._refuse(msg.reply or None, refusal))
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
        return item

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

    def sent_by(self, subject: str, sender: Any) -> bool:
        """Whether a mailbox message on ``subject`` really comes from the envelope's
        ``sender``: the subject carries the sender's pid, and the server lets only that
        sender publish on it (docs/security.md, "Who may say what")."""
        return (
            type(sender) is str
            and sender.startswith(self._ns_dot)
            and subject == f"{self._from_prefix}{sender[len(self._ns_dot) :]}.{_subjects.WHOLE}"
        )

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
            await self.nc.publish(env.reply, _RECEIPT)

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
            await self._linked_by(sender)
        elif env.kind is UNLINK:
            self._unlinked_by(sender)

    def answerable(self, reply: str) -> bool:
        """Whether a call or receipt may be answered on ``reply``: only a rebeam call inbox
        of this namespace (docs/sdk.md, "Input limits")."""
        return _subjects.is_reply_inbox(reply, self.namespace)

    async def _refuse(self, reply: str | None, why: str) -> None:
        if reply and _subjects.is_inbox(reply):
            with contextlib.suppress(Exception):
                await self.nc.publish(reply, pack_error({"error": "refused", "message": why}))

    async def _on_dropped(self, exc: nats.errors.SlowConsumerError) -> None:
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
        out["calls_pending"] = len(self._calls)
        out["links"] = self._link_count
        out["monitors"] = self._monitor_count
        out["watches"] = len(self._watches)
        return out

    async def _on_stats_request(self, msg: Any) -> None:
        reply = msg.reply
        if not reply:
            return
        if not _subjects.is_inbox(reply):
            self.stats.reply_refused += 1
            self._ratelog.warning("refused a stats request: its reply subject is no inbox", reply)
            return
        with contextlib.suppress(Exception):
            await self.nc.publish(reply, pack_reply(self.stats_snapshot()))

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

    def _route(self, pid: Pid) -> tuple[str, str]:
        """``(mailbox subject, pid string)``."""
        return self._mailboxes.get(pid._text) or self._mailbox_of(pid), pid._text

    def _mailbox_of(self, pid: Pid) -> str:
        """``pid``'s mailbox subject, cached by the pid's string (a str's hash is cached,
        a Pid's is a Python call): escaping a slot on every message would cost more than
        the rest of a cast."""
        if len(self._mailboxes) > 4096:
            self._mailboxes.clear()
        subject = self._mailboxes[pid._text] = _subjects.mailbox(pid, self.pid)
        return subject

    def _envelope(self, kind: Kind, to: str, message: Any) -> bytes:
        data = pack_fields(kind, to, self._pid_str, next(self._seq), message)
        if len(data) > self._limit:
            raise MessageTooLarge(len(data), self._limit)
        return data

    def send(
        self,
        dest: Address,
        message: Any,
        *,
        wait: float | None = None,
        durable: bool = False,
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
        if type(dest) is not Pid or wait is not None or durable:
            return self._send_resolving(dest, message, wait, durable)
        # A plain send to a pid has no coroutine of its own: the awaitable returned is
        # nats-py's publish (an async frame per message is a tenth of what a send costs).
        subject = self._mailboxes.get(dest._text) or self._mailbox_of(dest)
        return self.nc.publish(subject, self._envelope(SEND, dest._text, message))  # type: ignore[no-any-return]

    async def _send_resolving(
        self, dest: Address, message: Any, wait: float | None, durable: bool
    ) -> None:
        pid = dest if type(dest) is Pid else await self.resolve(dest)
        if durable:
            await _durable.publish(self, pid, SEND, message)
        elif wait is not None:
            await self._with_receipt(pid, SEND, message, wait)
        else:
            subject, to = self._route(pid)
            await self.nc.publish(subject, self._envelope(SEND, to, message))

    def cast(
        self,
        dest: Address,
        message: Any,
        *,
        wait: float | None = None,
        durable: bool = False,
    ) -> Awaitable[None]:
        """Cast (``handle_cast``): returns at once, and is silently lost if nobody is there,
        also when the name is not registered (OTP's ``gen_server:cast``). A full mailbox
        refuses it: the receiver counts it (``mailbox_refused`` in :meth:`stats_of`).

        With ``wait`` (seconds), as :meth:`send` with ``wait``: a receipt, room waited for
        up to ``wait``, and :class:`MailboxFull`, :class:`NoProc` or :class:`CallTimeout`
        when it cannot be delivered (an unregistered name raises :class:`NoProc` too).

        With ``durable=True``, as :meth:`send` with ``durable=True``."""
        if type(dest) is not Pid or wait is not None or durable:
            return self._cast_resolving(dest, message, wait, durable)
        # The hot path, a plain cast to a pid: no coroutine of its own (the awaitable
        # returned is nats-py's publish), the subject cached by the pid's string, and the
        # envelope packed in one go. It is what a cast costs the sender beyond nats-py.
        text = dest._text
        subject = self._mailboxes.get(text) or self._mailbox_of(dest)
        data = _codec.encode([VERSION, _CAST, text, self._pid_str, next(self._seq), message])
        if len(data) > self._limit:
            raise MessageTooLarge(len(data), self._limit)
        return self.nc.publish(subject, data)  # type: ignore[no-any-return]

    async def _cast_resolving(
        self, dest: Address, message: Any, wait: float | None, durable: bool
    ) -> None:
        if type(dest) is Pid:
            pid = dest
        elif wait is not None or durable:
            pid = await self.resolve(dest)
        else:
            try:
                pid = await self.resolve(dest)
            except NoProc:
                return  # OTP's cast to an unregistered name: silently nothing
        if durable:
            await _durable.publish(self, pid, CAST, message)
        elif wait is not None:
            await self._with_receipt(pid, CAST, message, wait)
        else:
            await self.cast(pid, message)

    async def call(
        self,
        dest: Address,
        message: Any,
        timeout: float | None = DEFAULT_CALL_TIMEOUT,
    ) -> Any:
        """Call (``handle_call``) and wait for the reply.

        Raises:
            NoProc: nobody holds the destination (at once, not after the timeout).
            CallTimeout: no reply within ``timeout`` seconds (None waits forever).
            CalleeExited: the callee ended during the call; ``.reason`` says why.
            RemoteError: ``handle_call`` raised; the remote exception's type and message.
            CallingSelf: a process called itself.
            Refused: the callee refused the message.
        """
        pid = dest if type(dest) is Pid else await self.resolve(dest)
        try:
            return await self._call(pid, message, timeout)
        except NoProc:
            if isinstance(dest, str) and self._names is not None:
                # The cached name may be stale (its owner restarted): ask the registry.
                fresh = await self.resolve(dest, cached=False)
                if fresh != pid:
                    return await self._call(fresh, message, timeout)
            raise

    async def _with_receipt(self, pid: Pid, kind: Kind, message: Any, wait: float) -> None:
        """Deliver a send or cast with a receipt, retrying while the mailbox is full."""
        if pid == self.pid:
            raise CallingSelf(f"{pid} cannot wait for room in its own mailbox")
        subject, to = self._route(pid)
        data = self._envelope(kind, to, message)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        backoff = 0.002
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if len(self._calls) >= self.max_pending_calls:
                try:
                    await self._wait_for_slot(remaining)
                except TimeoutError:
                    raise CallTimeout(f"no free call slot within {wait:g}s") from None
                remaining = deadline - loop.time()
            token = str(next(self._tokens))
            fut: asyncio.Future[Any] = loop.create_future()
            self._calls[token] = (fut, pid)
            timer = loop.call_later(max(remaining, 0.0), _expire_receipt, fut, pid, wait)
            retry_after: float | None = None
            try:
                await self.nc.publish(subject, data, reply=f"{self._inbox}.{token}")
                status, payload = await fut
            except _NoResponders:
                retry_after = await self._interest.pause_before_retry(
                    pid, attempt, deadline - loop.time()
                )
                if retry_after is None:
                    raise NoProc(f"no process {pid}") from None
            finally:
                self._calls.pop(token, None)
                timer.cancel()
                self._wake_slot()
            if retry_after is not None:
                await asyncio.sleep(retry_after)  # a cluster's interest may lag (_interest)
                attempt += 1
                continue
            if status == 0:
                return
            error = _error_from_reply(payload, pid)
            # Retry only with time left for an answer: a refusal takes a round trip, and one
            # arriving after the deadline would turn a clear "full" into an ambiguous timeout.
            if not isinstance(error, MailboxFull):
                raise error
            pause = min(backoff, deadline - loop.time() - _MIN_ATTEMPT)
            if pause < 0:
                raise error
            await asyncio.sleep(pause)  # room is made by the receiver
            backoff = min(backoff * 2, 0.1)

    async def _wait_for_slot(self, timeout: float | None) -> None:
        """Wait until fewer than ``max_pending_calls`` calls wait for replies (the reply
        map is bounded; callers past the bound queue here, each under its own deadline)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(None if timeout is None else max(timeout, 0.0)):
            while len(self._calls) >= self.max_pending_calls:
                waiter: asyncio.Future[None] = loop.create_future()
                self._slot_waiters.append(waiter)
                try:
                    await waiter
                finally:
                    with contextlib.suppress(ValueError):
                        self._slot_waiters.remove(waiter)

    def _wake_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def _call(self, pid: Pid, message: Any, timeout: float | None) -> Any:
        if pid == self.pid:
            raise CallingSelf(f"{pid} called itself")
        subject, to = self._route(pid)
        data = self._envelope(CALL, to, message)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        attempt = 0
        while True:
            left = None if deadline is None else deadline - loop.time()
            try:
                status, payload = await self._call_once(pid, subject, data, left, timeout)
                break
            except _NoResponders:
                pause = await self._interest.pause_before_retry(pid, attempt, left)
                if pause is None:
                    raise NoProc(f"no process {pid}") from None
            await asyncio.sleep(pause)  # a cluster's interest may lag (see _interest)
            attempt += 1
        if status == 0:
            return payload
        raise _error_from_reply(payload, pid)

    async def _call_once(
        self, pid: Pid, subject: str, data: bytes, left: float | None, timeout: float | None
    ) -> tuple[int, Any]:
        """Publish one call and wait for its reply: ``(status, payload)``. Raises
        :class:`_NoResponders` on a 503, :class:`CallTimeout` past ``left`` seconds."""
        if len(self._calls) >= self.max_pending_calls:
            try:
                await self._wait_for_slot(left)
            except TimeoutError:
                raise CallTimeout(f"no free call slot within {timeout:g}s") from None
        token = str(next(self._tokens))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._calls[token] = (fut, pid)
        watch = self._watches.get(pid)
        if watch is None:
            watch = await self._watch(pid)
        watch.calls.add(token)
        timer = None
        if left is not None:
            timer = loop.call_later(
                max(left, 0.0), _expire, fut, pid, left if timeout is None else timeout
            )
        try:
            await self.nc.publish(subject, data, reply=f"{self._inbox}.{token}")
            return await fut  # type: ignore[no-any-return]
        finally:
            self._calls.pop(token, None)
            if timer is not None:
                timer.cancel()
            if self._slot_waiters:
                self._wake_slot()
            watch.calls.discard(token)
            if len(self._watches) > _MAX_IDLE_WATCHES:
                self._maybe_unwatch(pid)

    async def _on_reply(self, msg: Any) -> None:
        token = msg.subject[len(self._inbox) + 1 :]
        entry = self._calls.pop(token, None)
        if entry is None:
            self.stats.late_replies += 1  # the caller gave up: dropped, as OTP's aliases do
            return
        fut, pid = entry
        if fut.done():
            return
        headers = msg.headers
        if headers and headers.get(_STATUS) == _NO_RESPONDERS:
            fut.set_exception(_NoResponders(f"no process {pid}"))
            return
        try:
            fut.set_result(unpack_reply(msg.data))
        except CodecError as exc:
            self.stats.malformed_replies += 1
            self._ratelog.warning("refused a malformed reply", f"from {pid}: {exc}")
            fut.set_exception(exc)

    def _registry_invalid(self, key: str, why: str) -> None:
        self.stats.registry_invalid += 1
        self._ratelog.warning("ignored an invalid registry record", f"{key}: {why}")


def credentials_from_environment() -> str | Callable[[], str] | None:
    """The credential a process was given: ``REBEAM_CREDENTIALS``, or the file named by
    ``REBEAM_CREDENTIALS_FILE`` (what a backend hands a process it starts). The file is read
    now, so that an unreadable one fails the start by name, and again at every reconnection:
    a Kubernetes pod's projected token is such a file, and the kubelet replaces it with a
    fresh token before the old one expires."""
    token = os.environ.get("REBEAM_CREDENTIALS")
    if token:
        return token
    path = os.environ.get("REBEAM_CREDENTIALS_FILE")
    if not path:
        return None
    first = _read_credentials(path)
    if not first:
        return None  # an empty file: no credential (an open server)

    def current() -> str:
        try:
            return _read_credentials(path) or first
        except ConnectionError as exc:  # keep the last good one: the server says if it is stale
            log.warning("%s", exc)
            return first

    return current


def _read_credentials(path: str) -> str:
    try:
        with open(path) as source:
            return source.read(64 * 1024).strip()
    except OSError as exc:
        raise ConnectionError(f"cannot read the credential file {path}: {exc}") from None


class _NoResponders(NoProc):
    """A 503: nobody subscribes the mailbox, as far as our server knows (see _interest)."""


def _expire(fut: asyncio.Future[Any], pid: Pid, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(CallTimeout(f"no reply from {pid} within {timeout:g}s"))


def _expire_receipt(fut: asyncio.Future[Any], pid: Pid, wait: float) -> None:
    if not fut.done():
        fut.set_exception(
            CallTimeout(f"no receipt from {pid} within {wait:g}s (it may still be handled)")
        )


def _error_from_reply(payload: Any, pid: Pid) -> Exception:
    if not isinstance(payload, dict):
        return CodecError("malformed error reply")
    kind = payload.get("error")
    if kind == "exited":
        try:
            reason = ExitReason.from_wire(payload.get("reason"))
        except ValueError:
            return CodecError("malformed exit reason in reply")
        return RemoteError(reason, pid) if payload.get("raised") else CalleeExited(reason, pid)
    if kind == "noproc":
        return NoProc(f"no process {pid}")
    # The callee's words, only if they are words: str() of any other value could be huge.
    message = payload.get("message")
    message = message[:_MAX_REFUSAL] if isinstance(message, str) and message else None
    if kind == "mailbox_full":
        return MailboxFull(message or f"the mailbox of {pid} is full")
    return Refused(message or "refused")
