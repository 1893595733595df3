"""One request path: every message that waits for an answer.

A call waits for its reply; a send or cast with ``wait`` waits for its receipt (the receiver
took the message). Each is a *request*, made by :meth:`Requests.request` and nowhere else
(docs/architecture.md, "One request path"): published with the reply subject
``<inbox>.<token>`` under the node's one reply inbox, kept in one map of pending requests,
and ended by exactly one of: its answer (:meth:`Requests.on_reply`, the reply inbox's
handler, run in the read loop), its deadline, its callee's exit (:meth:`Requests.fail`,
from the exit watches; calls only) or the node closing (:meth:`Requests.fail_all`). An
answer nobody waits for any more is counted and dropped, as OTP's aliases drop it. At most
``max_pending`` requests wait at once (the map is bounded); more wait for a slot, under
their own deadline. Requests are written to the socket at once (rebeam._fastpath).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from rebeam._deadlines import Deadlines, clock
from rebeam._envelope import OK, unpack_reply
from rebeam._fastpath import handle_inline, publish_request, request_head
from rebeam._interest import InterestProbe
from rebeam._ratelog import RateLog
from rebeam._stats import Stats
from rebeam.errors import (
    CalleeExited,
    CallTimeout,
    CodecError,
    MailboxFull,
    NoProc,
    Refused,
    RemoteError,
)
from rebeam.exits import ExitReason
from rebeam.pids import Pid

__all__ = ["RECEIPT", "Answer", "Callees", "Requests", "Timing", "error_from_reply"]

_STATUS = "Status"
_NO_RESPONDERS = "503"
# The status a 503 leaves in a request's future: no reply carries it (unpack_reply).
_NOBODY = -1
_MIN_ATTEMPT = 0.1  # seconds a retry after "mailbox full" needs at least
_MAX_BACKOFF = 0.1
_MAX_REFUSAL = 2000  # characters of a refusal's message kept in the error raised


class Callees(Protocol):
    """Who hears of each attempt of a request that its callee's exit must end: the exit
    watches, which then end it with :meth:`Requests.fail`."""

    async def add_call(self, pid: Pid, token: int) -> None: ...

    def end_call(self, pid: Pid, token: int) -> None: ...


class Timing(Protocol):
    """Where the time a request took is observed (a node's call latency histogram)."""

    def called(self, started: float) -> None: ...


@dataclass(frozen=True)
class Answer:
    """What a kind of request waits for."""

    name: str  # "reply" or "receipt": the words of its timeout
    note: str = ""  # what its timeout adds
    callees: Callees | None = None  # set: its callee's exit ends it (a call)
    # Retry while the receiver's mailbox is full, until the deadline (a receipt). Needs one.
    retry_full: bool = False
    # Set: each request that ended, however, is timed there from its start (a reading of
    # rebeam._deadlines.clock, which is rebeam.metrics.clock).
    timing: Timing | None = None


RECEIPT = Answer("receipt", " (it may still be handled)", retry_full=True)


class Requests:
    """One node's pending requests, and the one path every request takes."""

    def __init__(
        self,
        nc: Any,
        inbox: str,
        *,
        max_pending: int,
        stats: Stats,
        ratelog: RateLog,
        interest: InterestProbe,
    ) -> None:
        self.nc = nc
        self.inbox = inbox  # replies come on "<inbox>.<token>"
        self._token_at = len(inbox.encode()) + 1
        self.max_pending = max_pending
        self._stats = stats
        self._ratelog = ratelog
        self._interest = interest
        # token -> (its future, callee, answer, timeout): what its answer or expiry needs.
        self._pending: dict[int, tuple[asyncio.Future[Any], Pid, Answer, float | None]] = {}
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tokens = itertools.count(1)
        # Kept: asking for the running loop costs Python 3.11 a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._deadlines = Deadlines(self._loop, self._pending, self._expire)
        # subject -> the start of a request's PUB on it (b"": one nats-py would refuse)
        self._heads: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._pending)

    async def subscribe(self) -> Any:
        """Subscribe the reply inbox (unflushed); returns nats-py's subscription. Answers are
        handled where they arrive, with no queue of their own: :meth:`on_reply` only hands
        each to its future (rebeam._fastpath)."""
        sub = await self.nc.subscribe(f"{self.inbox}.*")
        handle_inline(self.nc, sub._id, self.on_reply)
        return sub

    async def request(
        self, pid: Pid, subject: str, data: bytes, timeout: float | None, answer: Answer
    ) -> Any:
        """Publish ``data`` (an envelope for ``pid``) on ``subject`` and wait up to
        ``timeout`` seconds (None: for ever) for the answer: its payload, or the error it
        carries (:func:`error_from_reply`) raised. A 503 is :class:`NoProc` unless a
        cluster's interest may lag (rebeam._interest); a full mailbox is retried when
        ``answer`` says so; either retry stays within the one deadline. One coroutine,
        whatever the attempts: each layer of coroutines would cost every call a frame made
        and resumed."""
        started = clock()
        deadline = None if timeout is None else started + timeout
        callees = answer.callees
        retry = None
        try:
            while True:
                if len(self._pending) >= self.max_pending:
                    await self._wait_for_slot(deadline, timeout)
                token = next(self._tokens)
                fut = self._loop.create_future()
                self._pending[token] = (fut, pid, answer, timeout)
                if deadline is not None:
                    self._deadlines.add(deadline, token)
                try:
                    if callees is not None:
                        await callees.add_call(pid, token)
                    head = self._heads.get(subject) or self._head(subject)
                    sent = clock()
                    if not (head and publish_request(self.nc, head, token, data)):
                        await self.nc.publish(subject, data, reply=f"{self.inbox}.{token}")
                    status, payload = await fut
                finally:
                    self._end(token, pid, callees)
                if status == OK:
                    return payload
                retry = retry or _Retry()
                retry.answered_in(clock() - sent)
                await self._before_retry(pid, status, payload, answer, deadline, retry)
        finally:
            if answer.timing is not None:
                answer.timing.called(started)

    def _head(self, subject: str) -> bytes:
        if len(self._heads) > 4096:
            self._heads.clear()
        head = self._heads[subject] = request_head(subject, self.inbox) or b""
        return head

    def _end(self, token: int, pid: Pid, callees: Callees | None) -> None:
        """An attempt ended, however: its slot and its callee's watch are free."""
        self._pending.pop(token, None)
        if self._slot_waiters:
            self._wake_slot()
        if callees is not None:
            callees.end_call(pid, token)

    async def _before_retry(
        self,
        pid: Pid,
        status: int,
        payload: Any,
        answer: Answer,
        deadline: float | None,
        retry: _Retry,
    ) -> None:
        """An attempt was not answered OK: wait before the next one, or raise the error."""
        left = None if deadline is None else deadline - clock()
        if status == _NOBODY:
            pause = await self._interest.pause_before_retry(pid, retry.attempt, left)
            if pause is None:
                raise NoProc(f"no process {pid}")
            retry.attempt += 1
        else:
            error = error_from_reply(payload, pid)
            pause = _pause_when_full(error, answer, left, retry)
            if pause is None:
                raise error
            retry.backoff = min(retry.backoff * 2, _MAX_BACKOFF)
        await asyncio.sleep(pause)  # interest to spread, or the receiver to make room

    async def _wait_for_slot(self, deadline: float | None, timeout: float | None) -> None:
        """Wait until fewer than ``max_pending`` requests wait for answers (``deadline`` on
        :func:`rebeam._deadlines.clock`)."""
        loop = self._loop
        try:
            async with asyncio.timeout(None if deadline is None else deadline - clock()):
                while len(self._pending) >= self.max_pending:
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._slot_waiters.append(waiter)
                    try:
                        await waiter
                    finally:
                        with contextlib.suppress(ValueError):
                            self._slot_waiters.remove(waiter)
        except TimeoutError:
            raise CallTimeout(f"no free call slot within {timeout:g}s") from None

    def _wake_slot(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def on_reply(self, subject: bytes, data: bytes, headers: dict[str, str] | None) -> None:
        """The reply inbox's handler, run where the answer arrives (rebeam._fastpath): hand
        it to the request waiting for it."""
        try:
            token = int(subject[self._token_at :])
        except ValueError:
            token = 0  # no token of ours: a late reply, as far as anyone can tell
        entry = self._pending.pop(token, None)
        if entry is None:
            self._stats.late_replies += 1  # the caller gave up: dropped, as OTP's aliases do
            return
        fut = entry[0]
        if fut.done():
            return
        if headers and headers.get(_STATUS) == _NO_RESPONDERS:
            fut.set_result((_NOBODY, None))
            return
        try:
            fut.set_result(unpack_reply(data))
        except CodecError as exc:
            self._stats.malformed_replies += 1
            self._ratelog.warning("refused a malformed reply", f"from {entry[1]}: {exc}")
            fut.set_exception(exc)

    def _expire(self, token: int) -> None:
        """The deadline of the request ``token`` passed (rebeam._deadlines)."""
        fut, pid, answer, timeout = self._pending[token]
        if not fut.done():
            fut.set_exception(
                CallTimeout(f"no {answer.name} from {pid} within {timeout:g}s{answer.note}")
            )

    def fail(self, token: int, error: Exception) -> None:
        """End the request ``token`` (if it still waits) with ``error``."""
        entry = self._pending.pop(token, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(error)

    def fail_all(self, error: Callable[[Pid], Exception]) -> None:
        """End every waiting request with ``error(callee)``: the node is closing."""
        for fut, pid, _, _ in list(self._pending.values()):
            if not fut.done():
                fut.set_exception(error(pid))
        self._deadlines.close()


class _Retry:
    """Where the retries of one request are: the interest probe's attempts, the backoff
    while the mailbox is full."""

    __slots__ = ("attempt", "backoff", "slowest")

    def __init__(self) -> None:
        self.attempt = 0
        self.backoff = 0.002
        self.slowest = 0.0  # seconds: the slowest refusal's round trip so far

    def answered_in(self, seconds: float) -> None:
        self.slowest = max(self.slowest, seconds)

    def needs(self) -> float:
        """The time another attempt needs left for its answer: :data:`_MIN_ATTEMPT`, or
        twice the slowest round trip seen, on a machine too busy for that."""
        return max(_MIN_ATTEMPT, 2 * self.slowest)


def _pause_when_full(
    error: Exception, answer: Answer, left: float | None, retry: _Retry
) -> float | None:
    """The pause before trying again a request that found the mailbox full, or None: the
    error stands. Retried only with time left for an answer (:meth:`_Retry.needs`): a
    refusal takes a round trip, and one arriving after the deadline would turn a clear
    "full" into an ambiguous timeout."""
    if not answer.retry_full or not isinstance(error, MailboxFull) or left is None:
        return None
    pause = min(retry.backoff, left - retry.needs())
    return pause if pause >= 0 else None


def error_from_reply(payload: Any, pid: Pid) -> Exception:
    """The error an error reply from ``pid`` carries."""
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
