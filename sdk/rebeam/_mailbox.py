"""The mailbox: the in-process queue between a node's NATS subscription and its actor.

The NATS subscription callback never runs user code: it decodes the envelope and offers it
here, and the actor's receive loop takes items out one at a time (nats-notes §0.3: a slow
callback makes nats-py drop messages; the policy for a full mailbox must be ours).

Issue 4 plugs in here without touching the receive loop: a bounded mailbox makes ``offer``
return False when full (the node then answers a call with an error and counts a dropped
cast), and a durable mailbox feeds the same queue from a JetStream consumer and sets
``Envelope.ack``, which the loop calls after the handler returned.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from rebeam._envelope import Envelope

__all__ = ["Info", "Item", "Mailbox"]


@dataclass(slots=True)
class Info:
    """A message produced inside this node (Down, Exit, a timer's message): handle_info."""

    message: Any


Item = Envelope | Info


class Mailbox:
    """An ordered queue of envelopes and local info messages."""

    def __init__(self, max_messages: int | None = None) -> None:
        self.max_messages = max_messages  # None: unbounded (issue 4 sets a default limit)
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.refused = 0

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Item) -> bool:
        """Append ``item``; False (and nothing queued) if the mailbox is full."""
        if self.max_messages is not None and len(self._items) >= self.max_messages:
            self.refused += 1
            return False
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def get(self) -> Item | None:
        """The next item; None when :meth:`wake` interrupted the wait (check for a stop)."""
        if not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            if not self._items:
                return None
        return self._items.popleft()

    def wake(self) -> None:
        """Make a pending :meth:`get` return None (a stop was requested)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def get_nowait(self) -> Item | None:
        return self._items.popleft() if self._items else None

    def drain(self) -> list[Item]:
        items = list(self._items)
        self._items.clear()
        return items
