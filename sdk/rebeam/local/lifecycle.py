"""Where lifecycle events go: a JSON-lines file (``--events FILE``), NATS
(``rebeam.<ns>.events.…``, for ``rebeam events`` and for monitors and links), and the view.

The file and the view get every event in order, at once unless an event waits for something
(an ``exited`` waits until the dead pid's names are released, so that whoever hears of the
end finds the names free, as in OTP): then it and every later event wait with it, and the
order holds. NATS publishes are queued and sent in the same order by one task, so a slow or
lost NATS never stalls supervision.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from rebeam._loop import within
from rebeam.events import LifecycleEvent, publish

__all__ = ["Lifecycle"]

log = logging.getLogger("rebeam.run")


class Lifecycle:
    def __init__(self, namespace: str, events_file: Path | None = None) -> None:
        self.namespace = namespace
        self._file: IO[str] | None = open(events_file, "a") if events_file else None  # noqa: SIM115
        self._listeners: list[Callable[[LifecycleEvent], None]] = []
        self._outbox: asyncio.Queue[LifecycleEvent | None] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        # Events not told yet, each with what it waits for (None: nothing).
        self._held: deque[tuple[LifecycleEvent, asyncio.Future[Any] | None]] = deque()
        self._waiting: asyncio.Future[Any] | None = None

    def attach(self, nc: Any) -> None:
        """Start publishing on NATS through ``nc``."""
        self._sender = asyncio.create_task(self._send(nc))

    def listen(self, listener: Callable[[LifecycleEvent], None]) -> None:
        self._listeners.append(listener)

    def emit(self, event: LifecycleEvent, after: asyncio.Future[Any] | None = None) -> None:
        """Tell ``event``, once ``after`` is done (if given) and every earlier event told."""
        self._held.append((event, after))
        if len(self._held) == 1:
            self._tell_held()

    def _tell_held(self, _: object = None) -> None:
        while self._held:
            event, after = self._held[0]
            if after is not None and not after.done():
                if self._waiting is not after:  # one callback per wait
                    self._waiting = after
                    after.add_done_callback(self._tell_held)
                return
            self._held.popleft()
            self._tell(event)

    async def settled(self) -> None:
        """Until every event emitted so far has been told."""
        while self._held:
            _, after = self._held[0]
            if after is not None:
                await asyncio.wait({after})
            self._tell_held()

    def _tell(self, event: LifecycleEvent) -> None:
        if self._file is not None:
            self._file.write(event.model_dump_json(exclude_none=True) + "\n")
            self._file.flush()
        for listener in self._listeners:
            listener(event)
        if self._sender is not None:
            self._outbox.put_nowait(event)

    async def _send(self, nc: Any) -> None:
        while (event := await self._outbox.get()) is not None:
            try:
                await publish(nc, self.namespace, event)
            except Exception as exc:  # NATS down: the file and the view still have it
                log.warning("could not publish %s event: %s", event.event, exc)

    async def close(self) -> None:
        await self.settled()
        if self._sender is not None:
            self._outbox.put_nowait(None)
            try:
                await within(self._sender, 5)
            except TimeoutError:
                self._sender.cancel()
        if self._file is not None:
            self._file.close()
            self._file = None
