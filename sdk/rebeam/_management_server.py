"""Answering management requests: what the control servers of ``rebeam run`` and of the
operator share, so that both refuse, read and answer a request alike (the protocol itself is
``rebeam._management_protocol``).

A request is answered only on a request inbox (``_INBOX.`` or ``_INBOX_rebeam.``): one with any
other reply subject is refused unread, counted and logged at a bounded rate, so nobody can make
a backend publish on a subject of their choosing. Every other request gets an answer, never the
caller's timeout: a refusal with its code, and a failure of the backend as ``internal``.

Each request is answered in a task of its own (:meth:`RequestAnswerer.accept`): NATS hands one
subscription's messages over one at a time, and a request that waits for a supervisor still
in its init must not hold up the others (a child's init may itself be asking a supervisor that
runs already). A request may wait as long as a start takes; more than ``MAX_IN_PROGRESS`` at
once is somebody flooding the backend, and the next one is answered ``busy`` at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from rebeam import _subjects
from rebeam._management_protocol import Refusal, error_reply, parse_request
from rebeam._ratelog import RateLog

__all__ = ["MAX_IN_PROGRESS", "Handler", "RequestAnswerer"]

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""What a backend does with a request it has read: ``(operation, body) -> reply``; it raises
:class:`Refusal` to refuse."""


# Requests being answered at once, waiting ones included.
MAX_IN_PROGRESS = 64


class RequestAnswerer:
    """The counters and the answering of one control server."""

    def __init__(self, log: logging.Logger) -> None:
        self.refused = 0  # requests with a reply subject that is not an inbox
        self.bad_requests = 0  # requests answered bad_request: unreadable or unknown
        self.busy = 0  # requests refused because MAX_IN_PROGRESS were being answered
        self._ratelog = RateLog(log, "control")
        self._log = log
        self._in_progress: set[asyncio.Task[None]] = set()

    async def accept(self, msg: Any, handle: Callable[[Any], Coroutine[Any, Any, None]]) -> None:
        """Have ``handle(msg)`` answer ``msg`` in a task of its own, or answer ``busy`` now
        if ``MAX_IN_PROGRESS`` requests are being answered."""
        if len(self._in_progress) >= MAX_IN_PROGRESS:
            self.busy += 1
            self._ratelog.warning("refused a request: too many in progress", msg.subject[:200])
            if msg.reply and _subjects.is_inbox(msg.reply):
                busy = error_reply("busy", count=MAX_IN_PROGRESS)
                await msg.respond(json.dumps(busy).encode())
            return
        task = asyncio.create_task(handle(msg))
        self._in_progress.add(task)
        task.add_done_callback(self._in_progress.discard)
        task.add_done_callback(self._unanswered)

    def cancel_in_progress(self) -> None:
        """Stop answering (the server stops): the requests still waiting get no answer."""
        for task in list(self._in_progress):
            task.cancel()

    def _unanswered(self, task: asyncio.Task[None]) -> None:
        """A reply that could not be sent (the connection went at the end): nobody to tell."""
        if not task.cancelled() and task.exception() is not None:
            self._log.debug("a control reply was not sent: %s", task.exception())

    async def answer(self, msg: Any, operation: str, handle: Handler) -> None:
        """Answer ``msg``, a request for ``operation``, with what ``handle`` replies."""
        if msg.reply and not _subjects.is_inbox(msg.reply):
            self.refused += 1
            self._ratelog.warning("refused a request: its reply subject is no inbox", msg.reply)
            return
        try:
            reply = await handle(operation, parse_request(operation, msg.data))
        except Refusal as refused:
            if refused.code == "bad_request":
                self.bad_requests += 1
                self._ratelog.warning("answered a bad request", refused.sentence)
            reply = refused.reply()
        except Exception as exc:
            self._ratelog.error("a management request failed", f"{operation}: {exc!r}")
            reply = error_reply("internal", operation=operation, detail=f"{exc!r}")
        if msg.reply:
            await msg.respond(json.dumps(reply, default=str).encode())
