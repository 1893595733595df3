"""The envelope: what travels in one NATS message to a mailbox, and the reply to a call.

A mailbox message is msgpack ``[2, kind, body]`` (version 2):

* ``kind`` says how the receiver treats it (send, cast, call, or a system signal);
* ``body`` is the message itself, in the codec's msgpack (one msgpack document for the whole
  envelope: decoding twice was a large part of the receiving cost). A body that
  does not decode makes the envelope fail; a call is still answered ``refused``, because
  its reply subject travels outside the payload;
* an optional fourth item, ``trace``, the W3C trace context of the sender's span
  (``[traceparent]`` or ``[traceparent, tracestate]``), present only when the sender traces
  (docs/observability.md, "Tracing"). It is checked only by a receiver that traces
  (:mod:`rebeam.tracing`): a malformed one is dropped there, never the message.

Who sent it and to whom are the subject's (``rebeam.<ns>.pid.<to>._.<from>._``): the server
lets only the sender publish with its own pid there, and a node subscribes only its own
incarnation's mailbox, so the payload repeats neither (version 1 did, and a receiver then
had to check both against the subject; they were most of an envelope's bytes).

A durable message is version 1, ``[1, kind, to, sender, msg_id, body]`` and perhaps the
trace: JetStream keeps it for a slot, any later incarnation takes it (``to`` names the
slot), and ``(sender, msg_id)`` is what a redelivery is recognised by (:mod:`rebeam._durable`).

A call's reply is codec msgpack ``[status, payload]``: ``0`` and the reply value, or ``1``
and an error map ``{"error": kind, ...}``. The NATS reply subject carries the call; the
server's no-responders status (503) is the ``noproc`` answer.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rebeam import _codec
from rebeam._limits import describe
from rebeam.errors import CodecError

__all__ = [
    "Envelope",
    "Kind",
    "envelope_of",
    "mailbox_envelope",
    "pack_fields",
    "pack_mailbox",
    "pack_reply",
    "unpack",
    "unpack_fields",
    "unpack_mailbox",
    "unpack_reply",
]

VERSION = 2  # a mailbox message: [2, kind, body] (and the trace)
DURABLE_VERSION = 1  # a durable message: [1, kind, to, sender, msg_id, body] (and the trace)


class Kind(enum.IntEnum):
    SEND = 1  # a plain message: handle_info
    CAST = 2  # handle_cast
    CALL = 3  # handle_call, with a reply subject
    LINK = 4  # system: the sender linked to us
    UNLINK = 5  # system: the sender unlinked
    PING = 6  # system: are you there (monitor and link set-up); answered by the node


# Module-level aliases: on Python 3.11 ``Kind.CALL`` is a descriptor lookup that costs five
# times a global's; the hot paths compare against these.
SEND, CAST, CALL = Kind.SEND, Kind.CAST, Kind.CALL
LINK, UNLINK, PING = Kind.LINK, Kind.UNLINK, Kind.PING
USER_KINDS = frozenset({SEND, CAST, CALL})


@dataclass(slots=True)
class Envelope:
    kind: Kind
    to: str  # read from the subject (a mailbox message) or the payload (a durable one)
    sender: str | None  # likewise
    body: Any
    msg_id: int | None = None  # a durable message's
    reply: str | None = None  # the NATS reply subject of a call; not part of the payload
    size: int = 0
    # The sender's trace context, as it came (the envelope's last item); read only by a
    # receiver that traces, which validates it (rebeam.tracing).
    trace: Any = None
    # Set by a durable mailbox: acknowledge once handled (at-least-once delivery).
    ack: Callable[[], Awaitable[None]] | None = None


_KINDS = {int(k): k for k in Kind}


def pack_mailbox(kind: int, body: Any, trace: Any = None) -> bytes:
    """A mailbox message ``[2, kind, body]``, with the sender's trace context when it has
    one; raises :class:`CodecError` for a body the codec refuses."""
    return _codec.encode([VERSION, kind, body] if trace is None else [VERSION, kind, body, trace])


def unpack_mailbox(data: bytes) -> list[Any]:
    """Decode and check a mailbox message: the array ``[2, kind, body]`` with ``kind`` a
    known kind's plain int, and perhaps a fourth item, the trace context, left unchecked (see
    the module's doc). The receiving hot path reads casts from it directly; a dataclass per
    message cost as much as the decoding. Any malformed input raises :class:`CodecError`."""
    item: list[Any] = _codec.decode(data)  # a list once ``head`` is (checked below)
    # The untraced three items take the first test alone: the hot path pays nothing for
    # the trace field it does not carry.
    if type(item) is list and len(item) == 3:
        version, kind, _ = item
    elif type(item) is list and len(item) == 4:
        version, kind, _, _ = item
    else:
        raise CodecError("malformed envelope: not a 3- or 4-item array")
    if type(version) is not int or version != VERSION:
        raise CodecError(f"unsupported envelope version {describe(version)}")
    # ``type(...) is int`` first: True and 2.0 hash like 1 and 2 but are not kinds.
    if type(kind) is not int or kind not in _KINDS:
        raise CodecError(f"unknown message kind {describe(kind)}")
    return item


def mailbox_envelope(
    item: list[Any], to: str, sender: str, reply: str | None, size: int
) -> Envelope:
    """The :class:`Envelope` of an array :func:`unpack_mailbox` checked, with the pids its
    subject named."""
    trace = item[3] if len(item) == 4 else None
    return Envelope(_KINDS[item[1]], to, sender, item[2], None, reply, size, trace)


def pack_fields(kind: int, to: str, sender: str | None, msg_id: int | None, body: Any) -> bytes:
    """A durable message (version 1); raises :class:`CodecError` for a body the codec
    refuses."""
    return _codec.encode([DURABLE_VERSION, kind, to, sender, msg_id, body])


def unpack(data: bytes, reply: str | None = None) -> Envelope:
    """Decode a durable message; any malformed input raises :class:`CodecError`."""
    return envelope_of(unpack_fields(data), reply, len(data))


def unpack_fields(data: bytes) -> list[Any]:
    """Decode and check a durable message: the array ``[1, kind, to, sender, msg_id, body]``
    with ``kind`` a known kind's plain int, and perhaps a seventh item, the trace context,
    left unchecked. Any malformed input raises :class:`CodecError`."""
    item: list[Any] = _codec.decode(data)  # a list once ``head`` is (checked below)
    head = item if type(item) is list and len(item) == 6 else _traced_head(item)
    version, kind, to, sender, msg_id, _ = head
    if type(version) is not int or version != DURABLE_VERSION:
        raise CodecError(f"unsupported envelope version {describe(version)}")
    if type(kind) is not int or kind not in _KINDS:
        raise CodecError(f"unknown message kind {describe(kind)}")
    if type(to) is not str:
        raise CodecError("malformed envelope: bad target")
    if sender is not None and type(sender) is not str:
        raise CodecError("malformed envelope: bad sender")
    if msg_id is not None and type(msg_id) is not int:
        raise CodecError("malformed envelope: bad message id")
    return item


def _traced_head(item: Any) -> list[Any]:
    """The first six items of a durable message that carries a trace context."""
    if type(item) is not list or len(item) != 7:
        raise CodecError("malformed envelope: not a 6- or 7-item array")
    return item[:6]


def envelope_of(item: list[Any], reply: str | None, size: int) -> Envelope:
    """The :class:`Envelope` of an array :func:`unpack_fields` checked."""
    return Envelope(_KINDS[item[1]], item[2], item[3], item[5], item[4], reply, size)


OK = 0
ERROR = 1


def pack_reply(value: Any) -> bytes:
    """A call's reply; raises :class:`CodecError` for a value the codec refuses."""
    return _codec.encode([OK, value])


def pack_error(error: dict[str, Any]) -> bytes:
    return _codec.encode([ERROR, error])


def unpack_reply(data: bytes) -> tuple[int, Any]:
    """Decode a call's reply: ``(OK, value)`` or ``(ERROR, error)``; any malformed input
    raises :class:`CodecError`."""
    item = _codec.decode(data)
    # ``type(...) is int``: True and 1.0 compare equal to 1 but are not statuses.
    if not (type(item) is list and len(item) == 2 and type(item[0]) is int):
        raise CodecError("malformed reply: not a [status, payload] array")
    if item[0] not in (OK, ERROR):
        raise CodecError(f"malformed reply: unknown status {item[0]}")
    return item[0], item[1]
