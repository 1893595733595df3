"""The Actor class users subclass, and the loop that hosts one (OTP's gen_server).

An actor is one OS process (or pod) run by ``python -m rebeam.runtime``. Its callbacks run
one at a time, in mailbox order::

    class Counter(rebeam.Actor):
        async def init(self, args):
            self.n = args.get("start", 0)

        async def handle_call(self, msg, from_):
            if msg == "stop":
                self.stop()                    # reply first, then stop with reason normal
                return "bye"
            self.n += 1
            return self.n

        async def handle_info(self, msg):
            if isinstance(msg, rebeam.Down):   # a monitored process ended
                ...

Callbacks may be ``async def`` or plain ``def``. An exception escaping a callback ends the
actor with reason ``crash`` (type, message, short traceback): let it crash, the supervisor
restarts it. A caller whose ``handle_call`` raised gets :class:`rebeam.RemoteError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import traceback
import typing
from collections import deque
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ClassVar

from rebeam._codec import decode
from rebeam._envelope import (
    CALL,
    CAST,
    SEND,
    VERSION,
    Envelope,
    pack_error,
    pack_reply,
)
from rebeam._fastpath import publish_now
from rebeam._loop import within
from rebeam._mailbox import Info
from rebeam._messages import From
from rebeam._node import Node
from rebeam._stats import bounded_status
from rebeam.errors import CodecError
from rebeam.exits import NORMAL, SHUTDOWN, ExitReason, crash, shutdown_with
from rebeam.metrics import INFO, REPLY, SAMPLED, clock
from rebeam.pids import Pid

if TYPE_CHECKING:
    from rebeam._spans import Tracing

__all__ = ["NOREPLY", "Actor", "Host", "Timer", "crash_reason"]

log = logging.getLogger("rebeam.actor")

_RECEIPT = pack_reply(None)  # a send or cast that asked for one: taken to be handled
# Plain ints: the hot path compares kinds read from the wire, which are ints.
_SEND, _CAST, _CALL = int(SEND), int(CAST), int(CALL)
# The first three bytes of a send, cast or call (rebeam._envelope): a msgpack array of 3
# items (or 4, with a trace context), version 2, the kind; each kind a one-byte positive fixint.
_FAST_HEADS = {
    bytes([0x90 | items, VERSION, kind]): kind for items in (3, 4) for kind in (_SEND, _CAST, _CALL)
}
# A client node handles no calls (Node.admit refuses them): its calls go the whole way.
_CLIENT_HEADS = {head: kind for head, kind in _FAST_HEADS.items() if kind != _CALL}
STATUS_TIMEOUT = 1.0  # an async format_status that takes longer is answered with a sentence


class _NoReply:
    def __repr__(self) -> str:
        return "rebeam.NOREPLY"


NOREPLY: Any = _NoReply()
"""Return this from ``handle_call`` to reply later with ``await self.reply(from_, value)``."""


class Timer:
    """A pending :meth:`Actor.send_after`; ``cancel()`` it to take it back."""

    def __init__(self, handle: asyncio.TimerHandle) -> None:
        self._handle = handle

    def cancel(self) -> None:
        self._handle.cancel()


class Actor:
    """Subclass and override the callbacks you need.

    ``mailbox_max_messages`` and ``mailbox_max_bytes`` bound this actor's mailbox (None: the
    default, 10 000 messages and 16 MiB); the runtime's ``--mailbox-max-messages`` and
    ``--mailbox-max-bytes`` flags (``REBEAM_MAILBOX_MAX_MESSAGES``/``_BYTES``, set from the
    manifest) win over them. A full mailbox refuses: calls fail with
    :class:`rebeam.MailboxFull`, casts and sends are counted (or wait, if the sender asked).

    An actor may define ``format_status(self, state) -> dict | str`` (OTP's
    ``format_status``): ``state`` is a dict of the actor's public attributes, and what it
    returns is the state summary ``rebeam observe`` shows (docs/sdk.md, "State summary").
    """

    mailbox_max_messages: ClassVar[int | None] = None
    mailbox_max_bytes: ClassVar[int | None] = None
    #: A durable mailbox (JetStream): what is sent with ``durable=True`` while this actor is
    #: down or restarting waits for its next incarnation. ``--mailbox-durable`` sets it too.
    mailbox_durable: ClassVar[bool] = False
    #: Deliveries of one durable message before it is parked (None: the default, 3).
    mailbox_max_deliver: ClassVar[int | None] = None

    _node: Node
    _host: Host

    async def init(self, args: Any) -> None:
        """Set up state. The supervisor's start waits for this to return; raising here is
        a failed start."""

    async def handle_call(self, message: Any, from_: From) -> Any:
        """Answer a call: the return value is the reply (or :data:`NOREPLY`)."""
        raise NotImplementedError(f"{type(self).__name__} does not handle calls")

    async def handle_cast(self, message: Any) -> None:
        """Handle a cast."""
        log.warning("%s: unexpected cast %r", self.pid, message)

    async def handle_info(self, message: Any) -> None:
        """Handle a plain message, a Down or Exit notice, or a timer's message."""
        log.info("%s: unexpected message %r", self.pid, message)

    async def terminate(self, reason: ExitReason) -> None:
        """Clean up. Called when the actor stops itself, when a callback raised, and on
        shutdown by the supervisor; not when a linked process's exit signal kills it (as in
        OTP, where a process that does not trap exits just dies)."""

    # -- what an actor can do --------------------------------------------------------

    @property
    def pid(self) -> Pid:
        return self._node.pid

    @property
    def node(self) -> Node:
        return self._node

    def stop(self, reason: ExitReason = NORMAL) -> None:
        """Stop after the current callback returns (a call is still answered first)."""
        self._host.request_stop(reason)

    def shutdown(self, info: Any) -> None:
        """Stop with reason ``{shutdown, info}``: a clean stop with a note."""
        self.stop(shutdown_with(info))

    @property
    def trap_exit(self) -> bool:
        return self._node.trap_exit

    @trap_exit.setter
    def trap_exit(self, value: bool) -> None:
        """Trap exits: linked processes' ends arrive as :class:`rebeam.Exit` messages
        instead of ending this actor."""
        self._node.trap_exit = bool(value)

    def send_after(self, delay: float, message: Any, dest: Any = None) -> Timer:
        """Deliver ``message`` after ``delay`` seconds: to this actor's ``handle_info``, or
        sent to ``dest``."""
        loop = asyncio.get_running_loop()
        if dest is None:
            handle = loop.call_later(delay, self._node.mailbox.offer, Info(message))
        else:
            handle = loop.call_later(
                delay, lambda: self._node._spawn(self._node.send(dest, message))
            )
        return Timer(handle)

    async def reply(self, from_: From, value: Any) -> None:
        """Reply to a call whose ``handle_call`` returned :data:`NOREPLY`."""
        await self._node.nc.publish(from_.reply_to, pack_reply(value))
        self._node.metrics.sent[REPLY] += 1


def crash_reason(exc: BaseException) -> ExitReason:
    """The exit reason for an exception: its type, message and the last frames."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8))
    return crash(
        exception_type=type(exc).__qualname__,
        message=str(exc)[:2000],
        traceback=tb[-4000:],
    )


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class Host:
    """Runs one actor on one node: init, delivery one message at a time, terminate.

    Messages are handled in the mailbox subscription's own task, in arrival order, under
    the actor's turn lock; local info messages (Down, Exit, timers) take the same lock from
    a second task. Handling a message where it arrives saves a task switch per message
    (a call's latency target is 1.1x a raw request/reply); while a callback runs, later
    messages wait in the subscription's pending queue, whose limits and overflow callback
    are where a bounded mailbox (docs/sdk.md) refuses them.
    """

    def __init__(self, node: Node, actor: Actor) -> None:
        self.node = node
        self.actor = actor
        actor._node = node
        actor._host = self
        self._stop: ExitReason | None = None
        self._killed = False
        self._stopping = asyncio.Event()
        # The actor's turn: one callback at a time. A flag and a queue of waiters rather
        # than asyncio.Lock, because taking a free turn must cost nothing on the hot path.
        self._busy = False
        self._turn_waiters: deque[asyncio.Future[None]] = deque()
        self._held_for_init = False
        # The reply subject of the call being handled ("" for a call with none), for
        # finish(): a caller waiting on it learns the exit reason.
        self._current: str | None = None
        # Chosen once: a node that traces puts a span around each handler, on the hot path
        # and the whole way alike; one that does not has no tracing in its paths at all.
        self._tracing = node._tracing
        self._handle = self._dispatch
        node.on_message = self.on_message
        # What a handler span reads once its handler returned: made once, not per message.
        self._outcome = lambda: self._stop
        if self._tracing is not None:
            self._tracing.serve(type(actor).__qualname__)
            self._handle = self._traced_dispatch
        node.on_exit_signal = self._on_exit_signal
        node.on_fenced = lambda newer: self.request_stop(shutdown_with("superseded"))
        node.status_report = self.status_report

    async def status_report(self) -> dict[str, Any] | str:
        """The actor's ``format_status`` of its public attributes, bounded; a sentence when
        it has none, raises or takes too long. Not under the actor's turn: a stuck actor
        still answers, which is when people look."""
        format_status = getattr(self.actor, "format_status", None)
        if not callable(format_status):
            return f"{type(self.actor).__name__} defines no format_status"
        state = {k: v for k, v in vars(self.actor).items() if not k.startswith("_")}
        try:
            summary = format_status(state)
            if inspect.isawaitable(summary):
                summary = await within(summary, STATUS_TIMEOUT)
        except TimeoutError:
            return f"format_status took longer than {STATUS_TIMEOUT:g}s"
        except Exception as exc:
            return bounded_status(f"format_status raised {type(exc).__name__}: {exc}")
        return bounded_status(summary)

    def request_stop(self, reason: ExitReason = SHUTDOWN) -> None:
        if self._stop is None:
            self._stop = reason
        self._stopping.set()
        self.node.mailbox.wake()
        self.node.delivering.set()  # a fenced node must still get out of its wait

    def _on_exit_signal(self, sender: Pid, reason: ExitReason) -> None:
        # A linked process ended abnormally and we do not trap exits: die at once with the
        # same reason, without terminate (OTP) and without waiting for the current callback.
        if self._stop is None or self._stop.is_clean:
            self._stop = reason
            self._killed = True
        self._stopping.set()

    def hold_turn_for_init(self) -> None:
        """Take the actor's turn now and keep it until ``init`` returns: called before the
        mailbox is subscribed, so that a message arriving while the runtime still reads its
        slot record and registers its name waits for ``init`` too."""
        assert not self._busy, "the turn is held already"
        self._busy = True
        self._held_for_init = True

    async def init(self, args: Any) -> ExitReason | None:
        """Run ``init``; its crash reason if it raised. As in OTP, no message is handled
        before init has returned: init holds the actor's turn (from before the mailbox is
        subscribed, see :meth:`hold_turn_for_init`), and a call that arrives meanwhile (the
        name is registered before init) waits for it."""
        if self._held_for_init:
            self._held_for_init = False
        else:
            await self._take_turn()
        try:
            await _maybe_await(self.actor.init(args))
        except Exception as exc:
            return crash_reason(exc)
        finally:
            self._give_turn()
        return None

    async def _take_turn(self) -> None:
        if not self._busy:
            self._busy = True
            return
        waiter = asyncio.get_running_loop().create_future()
        self._turn_waiters.append(waiter)
        try:
            await waiter  # the releaser hands the turn over: _busy stays True
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give_turn()
            raise

    def _give_turn(self) -> None:
        while self._turn_waiters:
            waiter = self._turn_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy = False

    async def run(self) -> ExitReason:
        """Serve until a stop; then terminate. Returns the exit reason."""
        infos = asyncio.get_running_loop().create_task(self._info_loop())
        try:
            await self._stopping.wait()
            if self._killed:
                return await self._end(self._stop or NORMAL, terminate=False)
            await self._take_turn()  # the current callback finishes (and replies) first
            return await self._end(self._stop or NORMAL, terminate=not self._killed)
        finally:
            infos.cancel()

    async def _end(self, reason: ExitReason, *, terminate: bool) -> ExitReason:
        if terminate:
            try:
                await _maybe_await(self.actor.terminate(reason))
            except Exception as exc:
                log.error("%s: terminate raised: %r", self.node.pid, exc)
                reason = crash_reason(exc)
        self._stop = reason
        await self.finish(reason)
        return reason

    async def finish(self, reason: ExitReason) -> None:
        """Stop receiving; everyone still waiting on a call learns the exit reason."""
        self._stop = self._stop or reason
        if current := self._current:
            with contextlib.suppress(Exception):
                await self.node.nc.publish(current, self._exited(reason))
        # Calls already queued behind us are answered by deliver() from now on; a process
        # killed by an exit signal does not wait for them (its callback may never return).
        if not self._killed:
            await self.node.settle_mailbox()
        await self.node.stop_receiving()

    @staticmethod
    def _exited(reason: ExitReason) -> bytes:
        return pack_error({"error": "exited", "reason": reason.to_wire()})

    async def on_message(self, msg: Any) -> None:
        """The mailbox subscription's callback: ``msg``, then every message queued behind it,
        in order, taken as nats-py's loop takes them (docs/sdk.md, "Cast throughput": why, and
        what it relies on). A send, cast or call to a free, delivering actor takes the hot
        path (:meth:`_hot`), its handler called on the decoded body (in a node that traces,
        inside its handler span, made from the decoded kind and trace field). Anything else
        goes the whole way (_admit)."""
        node = self.node
        sub = node.mailbox_sub
        queue = sub._pending_queue
        waiting = queue._queue
        actor, stats, counts = self.actor, node.stats, node.metrics.received
        tracing = self._tracing
        while True:
            hot = self._hot(msg)
            if hot is None:
                await self._admit(msg)
            else:
                kind, item, sender, reply = hot
                stats.received += 1
                self._busy = True
                # Counted before the reply is written (see deliver). Every call is timed,
                # one other message in SAMPLED+1 (docs/observability.md).
                counted = counts[kind] = counts[kind] + 1
                started = clock() if kind == _CALL or not counted & SAMPLED else 0.0
                # A node that traces: the handler span around the handler, its trace field
                # the envelope's fourth item (checked only when the span is planned).
                handling = None
                if tracing is not None:
                    handling = tracing.enter(kind, item[3] if len(item) > 3 else None)
                try:
                    if kind == _CALL:
                        await self._call(item[2], sender, reply)
                    else:
                        try:
                            if reply:  # a cast or send that asked for a receipt
                                await node.nc.publish(reply, _RECEIPT)
                            handler = actor.handle_cast if kind == _CAST else actor.handle_info
                            result = handler(item[2])
                            if type(result) is CoroutineType or hasattr(result, "__await__"):
                                await result
                        except Exception as exc:
                            self._crash(crash_reason(exc))
                finally:
                    # After the reply was written: the span is put off (Tracing.later).
                    if handling is not None:
                        handling.leave(self._stop)
                    if started:
                        node.metrics.timed(kind, started)
                    if self._turn_waiters:
                        self._give_turn()
                    else:
                        self._busy = False
            if not waiting:  # asyncio.Queue's get_nowait and task_done, less their calls
                return
            msg = waiting.popleft()
            queue._unfinished_tasks -= 1
            sub._pending_size -= len(msg.data)

    def _hot(self, msg: Any) -> tuple[int, list[Any], str, str] | None:
        """``(kind, decoded envelope, sender, reply)`` for a message that may take the hot
        path: a send, cast or call (not to a client) read from the envelope's first three
        bytes, to a free, delivering actor, that passes Node.admit's checks (inlined here);
        None for anything else, which _admit takes, counts and refuses as need be."""
        node = self.node
        data = msg.data
        kind = (_CLIENT_HEADS if node.is_client else _FAST_HEADS).get(data[:3])
        if (
            kind is not None
            and len(data) <= node._limit
            and not self._busy
            and self._stop is None
            # The subject names a sender (Node.sender_of's remembered case, inlined).
            and (sender := node._senders.get(subject := msg.subject) or node.sender_of(subject))
            and node.fenced_by is None
            and node.delivering.is_set()
            and (not (reply := msg.reply) or node.answerable(reply))
        ):
            try:
                return kind, decode(data), sender, reply
            except CodecError:
                return None  # refused by _admit, which counts and logs it
        return None

    async def _admit(self, msg: Any) -> None:
        """Every message the whole way: admitted, then a signal or :meth:`deliver`."""
        node = self.node
        env = node.admit(msg)
        if env is None:
            return
        if env.kind > _CALL:
            await node._on_signal(env)
        else:
            await self.deliver(env)

    async def deliver(self, env: Envelope) -> None:
        """Handle one user message when the fast path cannot: a call, a busy or paused
        actor, or one that is stopping."""
        node = self.node
        if self._stop is None and not node.delivering.is_set():
            await node.delivering.wait()
        if self._stop is None:
            if self._busy:
                await self._take_turn()
            else:
                self._busy = True  # a free turn: taken without a coroutine call
            try:
                if self._stop is None:
                    # Counted before the handler runs, as the fast path counts: a call's
                    # reply is written as soon as it is made, and a caller holding it must
                    # find the call counted (the metrics are read from another thread).
                    node.metrics.received[env.kind] += 1
                    started = clock()
                    await self._handle(env)
                    node.metrics.timed(env.kind, started)
                    return
            finally:
                self._give_turn()
        if env.reply:  # a call, or a send or cast waiting for its receipt
            await node.nc.publish(env.reply, self._exited(self._stop or NORMAL))

    async def _info_loop(self) -> None:
        mailbox = self.node.mailbox
        while True:
            item = await mailbox.get()
            if not isinstance(item, Info):
                continue
            await self._take_turn()
            try:
                if self._stop is not None:
                    return
                # Handled exactly as a plain send is: handle_info, and a raise crashes the actor.
                self.node.metrics.received[INFO] += 1
                started = clock()
                await self._handle(Envelope(SEND, self.node._pid_str, None, item.message))
                self.node.metrics.timed(INFO, started)
            finally:
                self._give_turn()

    async def _traced_dispatch(self, env: Envelope) -> None:
        # Chosen (in __init__) only for a node that traces.
        tracing = typing.cast("Tracing", self._tracing)
        with tracing.handling(int(env.kind), env.trace, self._outcome):
            await self._dispatch(env)

    async def _dispatch(self, env: Envelope) -> None:
        message = env.body
        if env.kind is CALL:
            await self._call(message, env.sender, env.reply or "")
        else:  # a cast or a plain send: the hot path, so written out here, not in a helper
            if env.reply:
                await self.node.nc.publish(env.reply, _RECEIPT)
            callback = self.actor.handle_cast if env.kind is CAST else self.actor.handle_info
            try:
                result = callback(message)
                if result is not None and hasattr(result, "__await__"):
                    await result
            except Exception as exc:
                self._crash(crash_reason(exc))
                return  # not acknowledged: a durable message is delivered again
            if env.ack is not None:
                await env.ack()

    async def _call(self, message: Any, sender: str | None, reply: str) -> None:
        """Handle one call, the turn taken and the call counted, and answer it on ``reply``
        (none: "") with the handler's value, or with the crash if it raised; the actor then
        crashes. Both ways a call comes take it: the hot path and :meth:`_dispatch`."""
        self._current = reply
        try:
            result = self.actor.handle_call(message, From(sender, reply))
            if type(result) is CoroutineType or (
                result is not None and hasattr(result, "__await__")
            ):
                result = await result
            if result is not NOREPLY and reply:
                data, nc = pack_reply(result), self.node.nc
                self.node.metrics.sent[REPLY] += 1  # before the caller can have it
                if not publish_now(nc, reply, data):  # the reply on its way this turn
                    await nc.publish(reply, data)
        except Exception as exc:
            reason = crash_reason(exc)
            self._crash(reason)
            if reply:
                crashed = {"error": "exited", "raised": True, "reason": reason.to_wire()}
                await self.node.nc.publish(reply, pack_error(crashed))
        finally:
            self._current = None

    def _crash(self, reason: ExitReason) -> None:
        log.error("%s crashed: %s", self.node.pid, reason)
        if self._stop is None or self._stop.is_clean:
            self._stop = reason
        self._stopping.set()
