"""Work-arounds for nats-py defects that would leave a connection deaf.

**A cancelled flush kills the read loop** (nats-py 2.16). ``flush()`` queues a future per
PING and the next PONG resolves the oldest with ``set_result``. A flush that timed out, or
whose task was cancelled (an ``asyncio.wait_for`` around anything that flushes, a task
cancelled at shutdown), leaves its future cancelled in the queue; its PONG then raises
``InvalidStateError`` inside the read loop, which logs "nats: encountered error" and stops
reading, while the client still reports itself connected (upstream: nats-io/nats.py#624 for
the flusher's twin of this, #914 for the read loop's catch-all). Every later request times
out and no message arrives: a runtime would look alive and be deaf. Measured here: a
request after one cancelled flush timed out on a connected client.

:func:`guard` replaces that connection's PONG handler with one that does the same, but
skips a future that is already done. The PONG still answers its own PING (PONGs come in
PING order), so no later flush is resolved early.
"""

from __future__ import annotations

from typing import Any

import nats

__all__ = ["connect", "guard"]


def guard(nc: Any) -> Any:
    """Install the work-arounds on one connection; returns it."""

    async def process_pong() -> None:
        pongs = nc._pongs
        if pongs:
            future = pongs.pop(0)
            if not future.done():
                future.set_result(True)
            nc._pongs_received += 1
            nc._pings_outstanding = 0

    if all(hasattr(nc, attr) for attr in ("_pongs", "_pongs_received", "_pings_outstanding")):
        nc._process_pong = process_pong  # the parser calls it through the instance
    return nc


async def connect(*args: Any, **kwargs: Any) -> Any:
    """``nats.connect`` with :func:`guard` applied: how rebeam opens every connection."""
    return guard(await nats.connect(*args, **kwargs))
