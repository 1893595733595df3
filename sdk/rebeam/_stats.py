"""The counters a node keeps; its parts (requests, exit watches, interest) count into them.
And what an actor's ``format_status`` says about its state, bounded (docs/sdk.md, "State
summary")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["STATUS_REQUEST", "Stats", "bounded_status"]

STATUS_REQUEST: Final = b"status"
"""The body of a stats request that also asks for the actor's state summary."""
STATUS_MAX_ITEMS: Final = 50
STATUS_MAX_VALUE_CHARS: Final = 300
STATUS_MAX_CHARS: Final = 4000


@dataclass
class Stats:
    """Counters a node keeps, for logs, status, ``rebeam.stats`` and tests."""

    received: int = 0  # user messages (send, cast, call) admitted from the mailbox
    malformed: int = 0
    oversized: int = 0
    misaddressed: int = 0
    late_replies: int = 0
    slow_consumer_drops: int = 0  # dropped by nats-py on a subscription other than the mailbox
    mailbox_refused: int = 0  # refused because the mailbox was full (answered when possible)
    refused_silently: int = 0  # ... of which plain casts and sends: no sender to answer
    durable_delivered: int = 0  # durable mailbox: handled and acknowledged
    durable_duplicates: int = 0  # durable mailbox: redeliveries of handled messages, skipped
    parked: int = 0  # durable mailbox: poison messages moved aside
    durable_redelivered: int = 0  # durable mailbox: deliveries after the first of a message
    reconnects: int = 0  # to NATS, after the connection was lost
    # Requests sent again after a cluster answered "no responders" for a pid holding a live
    # lease: its subscription had not reached our server yet (rebeam._interest).
    interest_retries: int = 0
    # Watched pids that did not answer after a NATS outage but still held their lease: kept,
    # not reported lost (rebeam._watching).
    slow_to_return: int = 0
    # Messages whose envelope named another sender than the subject they came on.
    forged: int = 0
    # Operations the server refused: this process's credential does not allow them.
    not_permitted: int = 0
    # Refused input (docs/sdk.md, "Input limits"); each is also logged, at a bounded rate.
    reply_refused: int = 0  # requests whose reply subject is not an inbox: not answered
    malformed_replies: int = 0  # call replies that did not decode (the caller got CodecError)
    malformed_events: int = 0  # exit events that did not decode: ignored
    registry_invalid: int = 0  # registry records that did not decode: taken as absent
    links_refused: int = 0  # link signals past max_links (or from another namespace)
    links_dropped: int = 0  # links from pids that did not answer a ping
    trace_dropped: int = 0  # malformed trace contexts a tracing receiver dropped (rebeam.tracing)


def bounded_status(summary: Any) -> dict[str, Any] | str:
    """What ``format_status`` returned, made small and plain enough to send: a dict keeps
    its first STATUS_MAX_ITEMS items, keys as text, values as JSON scalars or their repr,
    each cut to STATUS_MAX_VALUE_CHARS; anything else is its text, cut to STATUS_MAX_CHARS."""
    if isinstance(summary, dict):
        out: dict[str, Any] = {}
        for n, (key, value) in enumerate(summary.items()):
            if n == STATUS_MAX_ITEMS:
                out["..."] = f"{len(summary) - n} more items not shown"
                break
            out[_cut(str(key), 100)] = _plain(value)
        return out
    return _cut(summary if isinstance(summary, str) else _safe_repr(summary), STATUS_MAX_CHARS)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        try:
            json.dumps(value, allow_nan=False)
            return value
        except (ValueError, OverflowError):
            return repr(value)
    if isinstance(value, str):
        return _cut(value, STATUS_MAX_VALUE_CHARS)
    return _cut(_safe_repr(value), STATUS_MAX_VALUE_CHARS)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as exc:  # a user's __repr__ may raise: say so instead
        return f"<{type(value).__name__}: repr raised {type(exc).__name__}>"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
