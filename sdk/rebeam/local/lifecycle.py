"""Where lifecycle events go: a JSON-lines file (``--events FILE``), NATS
(``rebeam.<ns>.events.…``, for ``rebeam events`` and for monitors and links), and the view.

The file and the view get every event synchronously and in order; NATS publishes are queued
and sent in the same order by one task, so a slow or lost NATS never stalls supervision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

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

    def attach(self, nc: Any) -> None:
        """Start publishing on NATS through ``nc``."""
        self._sender = asyncio.create_task(self._send(nc))

    def listen(self, listener: Callable[[LifecycleEvent], None]) -> None:
        self._listeners.append(listener)

    def emit(self, event: LifecycleEvent) -> None:
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
        if self._sender is not None:
            self._outbox.put_nowait(None)
            try:
                await asyncio.wait_for(self._sender, timeout=5)
            except TimeoutError:
                self._sender.cancel()
        if self._file is not None:
            self._file.close()
            self._file = None
