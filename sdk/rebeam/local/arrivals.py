"""Waking requests that wait for a supervisor to appear in a tree that is still starting.

While ``rebeam run`` starts its trees, a management request may name a supervisor that does
not exist yet (its parent has not come to it). OTP queues a request to a supervisor that is
initialising; here the request waits for the supervisor to be created, then its core queues
the request until its init is done (docs/sdk.md, "While a tree starts"). :class:`Arrivals`
is how the waiting requests hear that a supervisor was created: each one looks again.
"""

from __future__ import annotations

import asyncio

__all__ = ["Arrivals"]


class Arrivals:
    def __init__(self) -> None:
        self._next: asyncio.Future[None] | None = None

    def announce(self) -> None:
        """A supervisor was created: wake everyone waiting."""
        if self._next is not None and not self._next.done():
            self._next.set_result(None)
        self._next = None

    async def next(self) -> None:
        """Until the next :meth:`announce`."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        # Shielded: one waiter that gives up must not cancel the others' wait.
        await asyncio.shield(self._next)
