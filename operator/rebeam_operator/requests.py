"""Management requests waiting for one driver's next pass (control.py hands them over), and
their callers: a request is fed to the core in a pass, and its caller answered only once the
pass has persisted what the request did."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from rebeam.supervision import Command, Error, Event, Ok, Reply

__all__ = ["Requests"]


class Requests:
    """Management requests waiting for one driver's next pass, and their callers."""

    def __init__(self) -> None:
        self._queued: list[Event] = []
        self._waiting: dict[str, asyncio.Future[Ok | Error]] = {}
        self._fed: set[str] = set()  # taken into the core, not answered yet
        self._answers: dict[str, Ok | Error] = {}  # answered, to deliver once persisted

    def submit(self, make: Callable[[str], Event]) -> asyncio.Future[Ok | Error]:
        request_id = f"control/{uuid.uuid4().hex}"
        future: asyncio.Future[Ok | Error] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._queued.append(make(request_id))
        return future

    def take(self) -> list[Event]:
        """The requests to feed to the core now (their replies come as Reply commands)."""
        queued, self._queued = self._queued, []
        self._fed.update(str(getattr(e, "request_id", "")) for e in queued)
        return queued

    def answered(self, commands: list[Command]) -> None:
        """Keep the core's replies among ``commands`` until :meth:`deliver`."""
        for command in commands:
            if isinstance(command, Reply) and str(command.request_id) in self._waiting:
                self._answers[str(command.request_id)] = command.result

    def deliver(self) -> None:
        """Answer the callers whose replies were kept (call once they are persisted)."""
        for request_id, result in self._answers.items():
            self._fed.discard(request_id)
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(result)
        self._answers.clear()

    def forget(self, why: str) -> None:
        """The driver went back to what status says: requests fed since may be lost, so
        their callers are told to ask again (requests still queued are fed as usual)."""
        for request_id in self._fed:
            future = self._waiting.pop(request_id, None)
            if future is not None and not future.done():
                future.set_result(Error(why))
        self._fed.clear()
        self._answers.clear()

    def ended(self) -> None:
        """The supervisor has ended: every request it has not answered gets ``noproc`` (its
        caller asked an ended process, as in OTP), delivered with the others."""
        for request_id in self._waiting:
            self._answers.setdefault(request_id, Error("noproc"))
        self._queued.clear()

    def drop(self, future: asyncio.Future[Ok | Error]) -> None:
        for key, value in list(self._waiting.items()):
            if value is future:
                del self._waiting[key]
                self._fed.discard(key)
