"""An envelope's trace field, read without OpenTelemetry: the W3C Trace Context formats are
checked here, so a hostile field is dropped (and counted) before any library parses it
(docs/observability.md, "On the wire"). Used by a node's spans (rebeam._spans) and
re-exported by :mod:`rebeam.tracing`; it imports neither.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

__all__ = ["MAX_TRACEPARENT", "MAX_TRACESTATE", "TRACEPARENT", "TraceField", "read_field"]

# W3C Trace Context, level 1. A traceparent is "version-traceid-parentid-flags" in lowercase
# hex, 55 characters; version ff and all-zero ids are invalid. Later versions may append
# fields: this reader takes the version-00 form only, and drops anything longer.
MAX_TRACEPARENT = 55
# The version-00 traceparent of a trace id, span id and flags (ints), as a sender writes it:
# one %-format, a third cheaper than an f-string's three format specifications, on the way
# of every traced message.
TRACEPARENT = "00-%032x-%016x-%02x"
_TRACEPARENT = re.compile(
    r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}"
)
# A tracestate is at most 32 comma-separated "key=value" members; 512 characters is what
# the specification asks every system to pass on, and the most this reader takes.
MAX_TRACESTATE = 512
MAX_TRACESTATE_MEMBERS = 32
_KEY = (
    r"(?:[a-z][_0-9a-z*/-]{0,255}"  # a simple key
    r"|[a-z0-9][_0-9a-z*/-]{0,240}@[a-z][_0-9a-z*/-]{0,13})"  # tenant@system
)
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"[ \t]*{_KEY}={_VALUE}[ \t]*")


class TraceField(NamedTuple):
    """An envelope's trace field, read: what may be used, and what was wrong with it."""

    traceparent: str | None
    tracestate: str
    problem: str | None  # set: a part was dropped, and why


_ABSENT = TraceField(None, "", None)


def read_field(field: Any) -> TraceField:
    """Check an envelope's trace field (``[traceparent]`` or ``[traceparent, tracestate]``).

    A malformed traceparent drops the whole field (the message starts a new trace); a
    malformed tracestate drops only itself, as the specification allows. Never raises."""
    if field is None:
        return _ABSENT
    if type(field) is not list or not 1 <= len(field) <= 2:
        return TraceField(None, "", "not a [traceparent, tracestate] array")
    parent = field[0]
    if type(parent) is not str or len(parent) != MAX_TRACEPARENT:
        return TraceField(None, "", f"traceparent is not a {MAX_TRACEPARENT}-character string")
    if _TRACEPARENT.fullmatch(parent) is None:
        return TraceField(None, "", "traceparent is not in the W3C format")
    if len(field) == 1:  # most traces carry no tracestate
        return TraceField(parent, "", None)
    state = field[1]
    problem = _tracestate_problem(state)
    return TraceField(parent, "" if problem else state, problem)


def _tracestate_problem(state: Any) -> str | None:
    if type(state) is not str:
        return "tracestate is not a string"
    if len(state) > MAX_TRACESTATE:
        return f"tracestate is longer than {MAX_TRACESTATE} characters"
    if not state:
        return None
    members = [m for m in state.split(",") if m.strip(" \t")]
    if len(members) > MAX_TRACESTATE_MEMBERS:
        return f"tracestate has more than {MAX_TRACESTATE_MEMBERS} members"
    if not all(_MEMBER.fullmatch(m) for m in members):
        return "tracestate is not in the W3C format"
    keys = {m.strip(" \t").partition("=")[0] for m in members}
    if len(keys) != len(members):
        return "tracestate repeats a key"
    return None
