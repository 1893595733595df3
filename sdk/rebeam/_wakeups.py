"""Waking every task that waits for something to change, so that each looks again.

Both backends make a management request wait while a supervisor is in its init: ``rebeam
run`` until the supervisor it names is created (``rebeam.local.arrivals``), the operator
until no supervisor of the namespace is starting (a driver's pass may have ended an init).
The waiters do not say what they wait for: each one woken checks its own condition again.
"""

from __future__ import annotations

import asyncio

__all__ = ["Wakeups"]


class Wakeups:
    def __init__(self) -> None:
        self._next: asyncio.Future[None] | None = None

    def announce(self) -> None:
        """Something changed: wake everyone waiting."""
        if self._next is not None and not self._next.done():
            self._next.set_result(None)
        self._next = None

    def waiter(self) -> asyncio.Future[None]:
        """Done at the next :meth:`announce`. Taken at once (a coroutine would start only
        later), so that an announcement made right after the caller looked is not missed;
        shielded, so that one waiter that gives up does not cancel the others' wait."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return asyncio.shield(self._next)

    async def next(self) -> None:
        """Until the next :meth:`announce`."""
        await self.waiter()
