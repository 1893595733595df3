"""Answering management requests: what the control servers of ``rebeam run`` and of the
operator share, so that both refuse, read and answer a request alike (the protocol itself is
``rebeam._management_protocol``).

A request is answered only on a request inbox (``_INBOX.`` or ``_INBOX_rebeam.``): one with any
other reply subject is refused unread, counted and logged at a bounded rate, so nobody can make
a backend publish on a subject of their choosing. Every other request gets an answer, never the
caller's timeout: a refusal with its code, and a failure of the backend as ``internal``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rebeam import _subjects
from rebeam._management_protocol import Refusal, error_reply, parse_request
from rebeam._ratelog import RateLog

__all__ = ["Handler", "RequestAnswerer"]

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""What a backend does with a request it has read: ``(operation, body) -> reply``; it raises
:class:`Refusal` to refuse."""


class RequestAnswerer:
    """The counters and the answering of one control server."""

    def __init__(self, log: logging.Logger) -> None:
        self.refused = 0  # requests with a reply subject that is not an inbox
        self.bad_requests = 0  # requests answered bad_request: unreadable or unknown
        self._ratelog = RateLog(log, "control")

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
