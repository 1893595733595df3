"""Exit watches: monitors, links, and the callee watch of every call.

A node that monitors, links or calls a pid subscribes to that pid's ``exited`` event subject
(``rebeam.<ns>.events.exited.<slot>.<inc>``): one Core NATS subscription per watched pid,
shared by every reason to watch it, dropped when the last reason goes. An event becomes
:class:`~rebeam.Down` messages, exit signals (OTP's link semantics) and failed calls. Lost
nodes are found by their expired leases (one lease watcher per node that monitors or links),
and after a NATS outage every watched pid is asked again whether it is still there.

The watches are an object of their own (:class:`Watching`), composed into the node: it owns
their state and is given what it needs of the node (its connection, mailbox, counters, a way
to resolve names and to end a call whose callee exited).

Each watched pid costs a subscription here and on the server, and anyone can send a ``link``
signal naming any pid: so a node holds at most ``max_links`` links and ``max_monitors``
monitors (refused past that, counted), and a link from a pid that does not answer a ping
is dropped at once. It may never have existed, and then no ``exited`` event will ever come
to release the watch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats.errors

from rebeam import _subjects
from rebeam._addresses import Address
from rebeam._envelope import LINK, PING, UNLINK, pack_mailbox
from rebeam._interest import InterestProbe
from rebeam._lease import lease_alive, open_leases, watch_expiries
from rebeam._limits import loads_json
from rebeam._mailbox import Info, Mailbox
from rebeam._messages import Down, Exit, MonitorRef
from rebeam._ratelog import RateLog
from rebeam._stats import Stats
from rebeam.errors import CalleeExited, NoProc, Refused
from rebeam.exits import NOCONNECTION, NOPROC, ExitReason
from rebeam.pids import Pid

__all__ = [
    "DEFAULT_MAX_LINKS",
    "DEFAULT_MAX_MONITORS",
    "Resolver",
    "WatchLimits",
    "Watching",
    "exit_event",
    "limit_from_env",
]

log = logging.getLogger("rebeam.node")

DEFAULT_MAX_LINKS = 1000
DEFAULT_MAX_MONITORS = 10_000
MAX_EVENT_BYTES = 1024 * 1024  # an exit event: NATS's default max_payload
_MAX_IDLE_WATCHES = 256


def limit_from_env(name: str, default: int) -> int:
    """A positive limit from ``REBEAM_<name>``, else ``default``; a clear error if unusable."""
    text = os.environ.get(f"REBEAM_{name}", "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"REBEAM_{name} must be a positive integer, not {text!r}")
    return value


@dataclass(frozen=True)
class WatchLimits:
    """How many links and monitors a node may hold (each costs a subscription)."""

    max_links: int = DEFAULT_MAX_LINKS
    max_monitors: int = DEFAULT_MAX_MONITORS

    @classmethod
    def read(cls, max_links: int | None, max_monitors: int | None) -> WatchLimits:
        """The limits given, else ``REBEAM_MAX_LINKS`` and ``REBEAM_MAX_MONITORS``, else
        the defaults; a clear error if one is unusable."""
        return cls(
            max_links or limit_from_env("MAX_LINKS", DEFAULT_MAX_LINKS),
            max_monitors or limit_from_env("MAX_MONITORS", DEFAULT_MAX_MONITORS),
        )


@dataclass
class _Watch:
    """Why this node listens for one pid's exit."""

    sub: Any
    monitors: dict[MonitorRef, str | None] = field(default_factory=dict)
    linked: bool = False
    calls: set[int] = field(default_factory=set)

    @property
    def idle(self) -> bool:
        return not self.monitors and not self.linked and not self.calls


class Resolver(Protocol):
    """How the watches find the pid an address names now (the node's ``resolve``)."""

    def __call__(self, dest: Address, *, cached: bool = ...) -> Awaitable[Pid]: ...


class Watching:
    """One node's exit watches: its monitors and links, the callee watch of its calls
    (:class:`~rebeam._requests.Callees`), and how the process takes exit signals."""

    def __init__(
        self,
        nc: Any,
        pid: Pid,
        mailbox: Mailbox,
        *,
        stats: Stats,
        ratelog: RateLog,
        interest: InterestProbe,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        resolve: Resolver,
        fail_call: Callable[[int, Exception], None],
        limits: WatchLimits,
    ) -> None:
        self.nc = nc
        self.pid = pid
        self.mailbox = mailbox  # where Down and Exit messages go
        self.max_links = limits.max_links
        self.max_monitors = limits.max_monitors
        self.trap_exit = False
        # Set by the runtime: how a non-trapping actor dies from an exit signal. A client
        # gets Exit messages.
        self.on_exit_signal: Callable[[Pid, ExitReason], None] | None = None
        self._stats = stats
        self._ratelog = ratelog
        self._interest = interest
        self._spawn = spawn
        self._resolve = resolve
        self._fail_call = fail_call  # ends a call whose callee exited (Requests.fail)
        self._watches: dict[Pid, _Watch] = {}
        self._link_count = 0  # watches with linked set
        self._monitor_count = 0  # monitors in all watches
        self._lease_watch: asyncio.Task[None] | None = None
        # Unsubscriptions under way: a new watch waits for them, so the server never holds
        # more subscriptions than the limits allow, not even for a moment.
        self._releasing: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        if self._lease_watch is not None:
            self._lease_watch.cancel()

    def counts(self) -> dict[str, int]:
        """For the node's stats: its links, monitors and watched pids."""
        return {
            "links": self._link_count,
            "monitors": self._monitor_count,
            "watches": len(self._watches),
        }

    def _watch_leases(self) -> None:
        """Start this node's one lease watcher (monitors and links need it)."""
        if self._lease_watch is None:

            def expired(pid: Pid) -> None:
                if pid in self._watches:
                    self._handle_exit(pid, NOCONNECTION)

            self._lease_watch = self._spawn(
                watch_expiries(self.nc.jetstream(), self.pid.namespace, expired)
            )

    def recheck_all(self) -> None:
        """After a NATS outage: exit events published meanwhile are lost (Core NATS), so
        ask every watched pid again."""
        for pid in list(self._watches):
            self._spawn(self._recheck(pid))

    async def _recheck(self, pid: Pid, grace: float = 10.0) -> None:
        # After a NATS outage the peer reconnects on its own schedule: only a peer that
        # stays unreachable for the whole grace period, and whose lease is gone, is reported
        # gone (noconnection). A peer that still holds its lease is alive, only slow to come
        # back (a busy machine): if it was lost after all, its lease expires and the lease
        # watcher of a monitor or link reports it then (a call has its own timeout).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            if pid not in self._watches or await self.is_alive(pid, timeout=2.0):
                return
            await asyncio.sleep(0.25)
        if pid not in self._watches:
            return
        if await self._holds_lease(pid):
            self._stats.slow_to_return += 1
        else:
            self._handle_exit(pid, NOCONNECTION)

    async def _holds_lease(self, pid: Pid) -> bool:
        try:
            return await lease_alive(await open_leases(self.nc.jetstream(), pid.namespace), pid)
        except (nats.errors.Error, OSError):  # JetStream errors are nats.errors.Error too
            return False  # cannot tell: unreachable is all we know

    # -- exit watches: monitors, links, calls ---------------------------------------------

    async def _watch(self, pid: Pid) -> _Watch:
        watch = self._watches.get(pid)
        if watch is None and self._releasing:
            await asyncio.wait(set(self._releasing))
            watch = self._watches.get(pid)
        if watch is None:
            # SUB goes out before anything we publish next on this connection, so the
            # server knows our interest before the callee can possibly exit from it.
            sub = await self.nc.subscribe(_subjects.events_of(pid), cb=self._on_exited)
            watch = self._watches.setdefault(pid, _Watch(sub))
            if watch.sub is not sub:
                await sub.unsubscribe()
        return watch

    def _maybe_unwatch(self, pid: Pid) -> None:
        watch = self._watches.get(pid)
        if watch is not None and watch.idle:
            del self._watches[pid]
            self._release(watch)

    def _release(self, watch: _Watch) -> None:
        task = self._spawn(_unsubscribe(watch.sub))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    async def add_call(self, pid: Pid, token: int) -> None:
        """A call to ``pid`` goes out: its exit fails the call (``CalleeExited``)."""
        watch = self._watches.get(pid)
        if watch is None:
            watch = await self._watch(pid)
        watch.calls.add(token)

    def end_call(self, pid: Pid, token: int) -> None:
        watch = self._watches.get(pid)
        if watch is not None:
            watch.calls.discard(token)
        # A callee watch is kept while few pids are watched: the next call needs no SUB.
        if len(self._watches) > _MAX_IDLE_WATCHES:
            self._maybe_unwatch(pid)

    def _set_linked(self, watch: _Watch, linked: bool) -> None:
        if watch.linked != linked:
            watch.linked = linked
            self._link_count += 1 if linked else -1

    def _drop_monitor(self, watch: _Watch, ref: MonitorRef) -> bool:
        if watch.monitors.pop(ref, 0) == 0:
            return False
        self._monitor_count -= 1
        return True

    async def _on_exited(self, msg: Any) -> None:
        try:
            pid, reason = exit_event(msg.data)
        except ValueError as exc:
            self._stats.malformed_events += 1
            self._ratelog.warning("ignored a malformed exit event", str(exc))
            return
        self._handle_exit(pid, reason)

    def _handle_exit(self, pid: Pid, reason: ExitReason) -> None:
        watch = self._watches.pop(pid, None)
        if watch is None:
            return
        self._release(watch)
        self._link_count -= watch.linked
        self._monitor_count -= len(watch.monitors)
        for token in watch.calls:
            self._fail_call(token, CalleeExited(reason, pid))
        for ref, name in watch.monitors.items():
            self.mailbox.offer(Info(Down(ref, pid, reason, name)))
        if watch.linked:
            self.exit_signal(pid, reason)

    def exit_signal(self, sender: Pid, reason: ExitReason) -> None:
        """An exit signal from a linked process, as OTP handles it."""
        if self.trap_exit or self.on_exit_signal is None:
            self.mailbox.offer(Info(Exit(sender, reason)))
        elif not reason.is_normal:
            self.on_exit_signal(sender, reason)

    async def is_alive(self, pid: Pid, timeout: float = 5.0) -> bool:
        """Whether ``pid`` holds its mailbox now (a timeout counts as alive: busy, not gone)."""
        data = pack_mailbox(PING, None)
        attempt = 0
        while True:
            try:
                await self.nc.request(_subjects.mailbox(pid, self.pid), data, timeout=timeout)
            except nats.errors.NoRespondersError:
                pause = await self._interest.pause_before_retry(pid, attempt, None)
                if pause is None:
                    return False
                await asyncio.sleep(pause)  # a cluster's interest may lag (see _interest)
                attempt += 1
                continue
            except nats.errors.TimeoutError:
                return True
            return True

    async def monitor(self, dest: Address) -> MonitorRef:
        """Monitor a process: a :class:`Down` arrives when it ends, with its exit reason;
        at once with ``noproc`` if it is not there."""
        ref = MonitorRef()
        name = dest if isinstance(dest, str) else None
        try:
            pid = await self._resolve(dest, cached=False)
        except NoProc:
            self.mailbox.offer(Info(Down(ref, None, NOPROC, name)))
            return ref
        if pid == self.pid:
            return ref  # monitoring yourself: it can never fire while you are there to get it
        if self._monitor_count >= self.max_monitors:
            raise Refused(
                f"{self.pid} has {self._monitor_count} monitors, its limit (max_monitors)"
            )
        self._watch_leases()
        watch = await self._watch(pid)
        watch.monitors[ref] = name
        self._monitor_count += 1
        # Pinging only after the watch is in place: an exit between the two cannot be missed.
        if not await self.is_alive(pid) and self._watches.get(pid) is watch:
            if self._drop_monitor(watch, ref):
                self.mailbox.offer(Info(Down(ref, pid, NOPROC, name)))
            self._maybe_unwatch(pid)
        return ref

    def demonitor(self, ref: MonitorRef) -> bool:
        """Remove a monitor; True if it was active. A Down already queued stays queued."""
        for pid, watch in list(self._watches.items()):
            if self._drop_monitor(watch, ref):
                self._maybe_unwatch(pid)
                return True
        return False

    async def link(self, dest: Address) -> Pid:
        """Link to a process (both ways). If it is not there, this process gets an exit
        signal with reason ``noproc``."""
        try:
            pid = await self._resolve(dest, cached=False)
        except NoProc:
            if self.trap_exit or self.on_exit_signal is None:
                raise
            self.exit_signal(self.pid, NOPROC)
            raise
        if pid == self.pid:
            return pid
        known = self._watches.get(pid)
        if (known is None or not known.linked) and self._link_count >= self.max_links:
            raise Refused(f"{self.pid} has {self._link_count} links, its limit (max_links)")
        self._watch_leases()
        watch = await self._watch(pid)
        self._set_linked(watch, True)
        await self.nc.publish(_subjects.mailbox(pid, self.pid), pack_mailbox(LINK, None))
        if not await self.is_alive(pid) and self._watches.get(pid) is watch and watch.linked:
            self._set_linked(watch, False)
            self._maybe_unwatch(pid)
            self.exit_signal(pid, NOPROC)
        return pid

    async def linked_by(self, sender: Pid) -> None:
        """A ``link`` signal from ``sender``: watch it, within ``max_links``, and drop the
        link again if ``sender`` does not answer a ping (anyone can name any pid)."""
        watch = self._watches.get(sender)
        if watch is not None and watch.linked:
            return
        if sender.namespace != self.pid.namespace or sender == self.pid:
            why = f"{sender} is not a peer in namespace {self.pid.namespace}"
        elif self._link_count >= self.max_links:
            why = f"from {sender}: {self.max_links} links, the limit (max_links)"
        else:
            self._watch_leases()
            watch = await self._watch(sender)
            self._set_linked(watch, True)
            self._spawn(self._check_linker(sender, watch))
            return
        self._stats.links_refused += 1
        self._ratelog.warning("refused a link", why)

    async def _check_linker(self, sender: Pid, watch: _Watch) -> None:
        # Pinging only after the watch is in place: an exit between the two cannot be missed.
        if await self.is_alive(sender):
            return
        if self._watches.get(sender) is watch and watch.linked:
            # Gone, or never there: its exit event (if there ever is one) may have passed
            # before the watch was in place, and nothing else would ever release the watch.
            self._stats.links_dropped += 1
            self._ratelog.warning("dropped a link", f"{sender} does not answer")
            self._set_linked(watch, False)
            self._maybe_unwatch(sender)

    def unlinked_by(self, sender: Pid) -> None:
        """An ``unlink`` signal from ``sender`` (or this process unlinked it)."""
        watch = self._watches.get(sender)
        if watch is not None:
            self._set_linked(watch, False)
            self._maybe_unwatch(sender)

    async def unlink(self, dest: Address) -> None:
        pid = await self._resolve(dest, cached=False)
        self.unlinked_by(pid)  # both ways: the link is gone here too
        await self.nc.publish(_subjects.mailbox(pid, self.pid), pack_mailbox(UNLINK, None))

    @property
    def links(self) -> list[Pid]:
        return [pid for pid, watch in self._watches.items() if watch.linked]


def exit_event(data: bytes) -> tuple[Pid, ExitReason]:
    """The pid and reason of an ``exited`` event; ValueError for anything else.

    Reads the two fields from the event's JSON directly: validating it with LifecycleEvent
    would make every actor process load pydantic (RSS)."""
    event = loads_json(data, what="an exit event", max_bytes=MAX_EVENT_BYTES)
    if not isinstance(event, dict) or not isinstance(event.get("pid"), str):
        raise ValueError("an exit event is a JSON object with a pid")
    return Pid.parse(event["pid"]), ExitReason.from_wire(event.get("reason"))


async def _unsubscribe(sub: Any) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
