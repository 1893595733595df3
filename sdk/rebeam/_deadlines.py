"""The deadlines of a node's pending requests, kept by one timer whatever their number
(docs/architecture.md, "One request path").

A timer per request (``loop.call_later`` and its ``cancel``) costs every call a timer made,
put on the loop's heap and taken off again, though almost every call is answered long before
its deadline. Here a request's deadline is one entry pushed on a heap of ``(deadline,
token)``, and one timer waits for the nearest deadline of a request still pending. An
answered request leaves its entry behind (taking it out of a heap costs more than leaving
it): the timer skips such entries when it fires, and the heap is rebuilt from the pending
requests when stale entries outnumber them, so that it stays within a constant factor of
``max_pending`` however long the timeouts are.

Deadlines are read on :func:`clock` (``time.perf_counter``, the clock of the call latency in
rebeam.metrics), not on the loop's clock: the caller reads that clock anyway, for its
latency. The timer is a ``call_later``
for the difference; if it fires early by the loop's rounding (uvloop counts in
milliseconds), nothing has expired yet and it is set again for what is left. No request
expires before its deadline.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Collection
from time import perf_counter as clock

__all__ = ["Deadlines", "clock"]

# Stale entries the heap may hold beyond twice the pending requests before it is rebuilt.
_SLACK = 64


class Deadlines:
    """Calls ``expire(token)`` once the deadline given for ``token`` has passed, unless
    ``token`` is no longer in ``pending`` by then."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        pending: Collection[int],
        expire: Callable[[int], None],
    ) -> None:
        self._loop = loop
        self._pending = pending
        self._expire = expire
        self._heap: list[tuple[float, int]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")  # the deadline the timer is set for

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, deadline: float, token: int) -> None:
        """``token`` expires at ``deadline`` (on :func:`clock`)."""
        heap = self._heap
        heapq.heappush(heap, (deadline, token))
        if deadline < self._timer_at:
            self._set(deadline)
        elif len(heap) > 2 * len(self._pending) + _SLACK:
            self._rebuild()

    def _set(self, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(deadline - clock(), 0.0), self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        heap, pending = self._heap, self._pending
        now = clock()
        while heap and (heap[0][0] <= now or heap[0][1] not in pending):
            _, token = heapq.heappop(heap)
            if token in pending:
                self._expire(token)
        if heap:
            self._set(heap[0][0])

    def _rebuild(self) -> None:
        pending = self._pending
        self._heap = [entry for entry in self._heap if entry[1] in pending]
        heapq.heapify(self._heap)

    def close(self) -> None:
        """Stop the timer (the node is closing; nothing pending expires any more)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = float("inf")
        self._heap.clear()
