"""The in-process queue of a node: a client's messages, and every node's local info messages.

Where messages wait, and how the bounds hold (docs/sdk.md, "Bounded mailboxes"):

* An actor's NATS messages are handled in the mailbox subscription's task
  (``Host.deliver``), so they wait in that subscription's pending queue while a callback
  runs. That queue *is* the mailbox: :class:`Limits` sets the subscription's
  ``pending_msgs_limit``/``pending_bytes_limit``. nats-py refuses each message past a limit
  through ``error_cb(SlowConsumerError)``, which carries the message's reply subject: the
  node answers a call (or a cast that asked for a receipt) ``mailbox_full`` at once, and
  counts a plain cast or send it refused (``Stats.mailbox_refused``).
* A durable mailbox (:mod:`rebeam._durable`) delivers from a JetStream consumer through the
  same ``deliver`` with ``Envelope.ack`` set; the host calls it only when the callback
  returned (it records the stream sequence, then acks), so a crash leaves the message to be
  delivered again, and a recorded one is skipped.
* This queue holds what the node produces itself (Down, Exit, timers: :class:`Info`) for an
  actor, and everything for a client (``Node.receive``); ``max_messages`` bounds it, and
  ``offer`` returning False is the refusal.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from rebeam._envelope import Envelope

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_MESSAGES", "Info", "Item", "Limits", "Mailbox"]

log = logging.getLogger("rebeam.mailbox")

DEFAULT_MAX_MESSAGES = 10_000
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """A mailbox's bounds: messages waiting, and their encoded bytes. Both must be positive."""

    max_messages: int = DEFAULT_MAX_MESSAGES
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.max_messages < 1 or self.max_bytes < 1:
            raise ValueError(f"mailbox limits must be positive: {self}")


@dataclass(slots=True)
class Info:
    """A message produced inside this node (Down, Exit, a timer's message): handle_info."""

    message: Any


Item = Envelope | Info


class Mailbox:
    """An ordered queue of envelopes and local info messages."""

    def __init__(self, max_messages: int | None = DEFAULT_MAX_MESSAGES) -> None:
        self.max_messages = max_messages  # None: unbounded (only on request)
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.refused = 0

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: Item) -> bool:
        """Append ``item``; False (and nothing queued) if the mailbox is full."""
        if self.max_messages is not None and len(self._items) >= self.max_messages:
            self.refused += 1
            if self.refused in (1, 10, 100, 1000, 10_000, 100_000):
                log.warning("local queue full (%d): %d refused so far", len(self), self.refused)
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
