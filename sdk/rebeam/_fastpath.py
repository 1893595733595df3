"""The message paths' shortcuts through nats-py 2.16 (docs/architecture.md, "One request
path" and "Sends and casts"): a call costs two loop turns fewer at the caller and one fewer at
the callee, and a plain send or cast none of nats-py's coroutines.

**Written now.** nats-py's ``publish`` appends the message to the connection's pending
buffer and wakes its flusher task, which writes it in a later turn of the loop: a call pays
that turn for its request and again for its reply. :func:`publish_now` writes the PUB to
the socket at once, behind whatever is pending (that goes first, in one write: the order on
the connection is the order of the publishes, as nats-py's flusher keeps it). It declines,
and the caller takes ``nc.publish``, whenever nats-py's own path has something to do that
this one does not: the client is not connected (connecting, reconnecting, draining, closed:
nats-py buffers or raises), the transport is not a TCP or TLS stream (a websocket), the
socket's own buffer holds more than :data:`HIGH_WATER` bytes (the flusher's drain waits for
the peer then, and so does everything behind it), or the message is one nats-py would refuse
(too large, a subject with whitespace). Nothing else changes: the same bytes, the same
subjects, the same permissions checked by the server. A request's PUB starts with a head
made once per destination, its reply inbox included (:func:`request_head`: the subjects are
checked then, not per request), and :func:`publish_request` adds the token and the payload.

**Queued without a coroutine.** A plain send or cast is one publish, and nats-py's
``publish`` is three coroutines deep (``publish``, ``_send_publish``, ``_send_command``),
with its checks read through properties: half of the 26.7 k instructions a cast cost its
sender (docs/sdk.md, "Cast throughput"). :func:`publish_queued` does what that path does for
a connected client, in one plain call: it appends the PUB to the same pending buffer (so it
goes out in the order of every other publish of the connection, calls included, which
:func:`publish_now` writes behind it), counts it in the connection's stats, and wakes the
flusher exactly as nats-py does, when its queue is empty. The command starts with a head
made once per subject (:func:`pub_head`). It declines, and the caller takes ``nc.publish``,
whenever nats-py's path would do more than append: the client is not connected (it buffers
while reconnecting, raises once closed or draining), the message is one it would refuse, the
pending buffer would pass its limit (nats-py writes it and waits for the flusher then), or
the flusher task is gone (nats-py writes inline).

**Handled where it arrives.** Every message nats-py receives goes from the parser into its
subscription's queue, and from there to the subscription's own task, which runs the
callback a turn later. :func:`handle_inline` has one subscription's messages handled by a
plain function in the read loop itself: for the reply inbox, whose handler only hands the
answer to the future waiting for it, that queue and task switch are pure cost. The handler
must be quick and bounded (it holds up every other message of the connection while it
runs); one that raises is reported to the connection's error callback, as nats-py reports a
callback's exception, and the read loop goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from nats.aio.client import _SUBJECT_INVALID_RE, Client
from nats.aio.transport import TcpTransport
from nats.protocol.command import pub_cmd

__all__ = [
    "HIGH_WATER",
    "Inline",
    "handle_inline",
    "pub_head",
    "publish_now",
    "publish_queued",
    "publish_request",
    "request_head",
]

# Above this many unsent bytes in the socket's buffer, publishes queue behind the flusher's
# drain: asyncio's (and uvloop's) default high-water mark for a stream.
HIGH_WATER = 64 * 1024
_CONNECTED = Client.CONNECTED
# What nats-py's publish refuses in a subject (a space, a tab or a line break would let the
# subject end early and the rest be read as a protocol command): its own pattern.
_BAD_SUBJECT = _SUBJECT_INVALID_RE


def publish_now(
    nc: Any, subject: str, data: bytes, reply: str = "", command: bytes | None = None
) -> bool:
    """Write a PUB to ``nc``'s socket now, after everything still pending on it. False: it
    was not written; the caller publishes with ``nc.publish`` (which buffers, waits or
    raises as nats-py does). ``command``: the PUB already made, its subjects checked
    (:func:`publish_request`)."""
    if nc._status != _CONNECTED or len(data) > nc._max_payload:
        return False
    transport = nc._transport
    if type(transport) is not TcpTransport:
        return False
    writer = transport._io_writer
    if writer is None or writer.transport.get_write_buffer_size() > HIGH_WATER:
        return False
    if command is None:
        if not nc._skip_subject_validation and (
            not subject or _BAD_SUBJECT.search(subject) or (reply and _BAD_SUBJECT.search(reply))
        ):
            return False
        command = pub_cmd(subject, reply, data)
    pending = nc._pending
    if pending:
        pending.append(command)
        writer.writelines(pending)
        nc._pending = []
        nc._pending_data_size = 0
    else:
        writer.write(command)
    stats = nc.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += len(data)
    return True


def request_head(subject: str, inbox: str) -> bytes | None:
    """What a PUB on ``subject`` with a reply subject ``<inbox>.<token>`` starts with
    (``PUB <subject> <inbox>.``), for :func:`publish_request`; None for a subject or inbox
    nats-py would refuse: that one is left to ``nc.publish``, which says why."""
    if not subject or _BAD_SUBJECT.search(subject) or _BAD_SUBJECT.search(inbox):
        return None
    return f"PUB {subject} {inbox}.".encode()


def publish_request(nc: Any, head: bytes, token: int, data: bytes) -> bool:
    """:func:`publish_now` for a request: ``head`` from :func:`request_head` (its subjects
    checked once), the reply subject ending in ``token``."""
    command = b"%b%d %d\r\n%b\r\n" % (head, token, len(data), data)
    return publish_now(nc, "", data, "", command)


def pub_head(subject: str) -> bytes | None:
    """What a PUB of no reply on ``subject`` starts with (``PUB <subject> ``), for
    :func:`publish_queued`; None for a subject nats-py would refuse (an empty one, or one
    with whitespace): that one is left to ``nc.publish``, which says why."""
    if not subject or _BAD_SUBJECT.search(subject):
        return None
    return f"PUB {subject} ".encode()


def publish_queued(nc: Any, head: bytes, data: bytes) -> bool:
    """Queue a PUB (``head`` from :func:`pub_head`) on ``nc`` as nats-py's publish does for
    a connected client: appended to its pending buffer, counted, its flusher woken. False:
    nothing was queued; the caller publishes with ``nc.publish`` (which buffers, waits or
    raises as nats-py does)."""
    if nc._status != _CONNECTED or len(data) > nc._max_payload:
        return False
    command = b"%b%d\r\n%b\r\n" % (head, len(data), data)
    size = nc._pending_data_size + len(command)
    if size > nc._max_pending_size:
        return False
    flush_queue = nc._flush_queue
    if flush_queue.empty():
        flusher = nc._flusher_task
        if flusher is None or flusher.done():
            return False
        flush_queue.put_nowait(asyncio.get_running_loop().create_future())
    nc._pending.append(command)
    nc._pending_data_size = size
    stats = nc.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += len(data)
    return True


# (subject, data, headers): headers as nats-py parses them, None when the message had none.
Inline = Callable[[bytes, bytes, "dict[str, str] | None"], None]


def handle_inline(nc: Any, sid: int, handler: Inline) -> None:
    """Have the messages of ``nc``'s subscription ``sid`` handled by ``handler`` in the
    read loop, instead of going through the subscription's queue and task. The subscription
    stays nats-py's (resubscribed on reconnect, unsubscribed as usual); its queue stays
    empty."""
    handlers: dict[int, Inline] | None = getattr(nc, "_rebeam_inline", None)
    if handlers is None:
        handlers = nc._rebeam_inline = {}
        _route(nc, handlers)
    handlers[sid] = handler


def _route(nc: Any, handlers: dict[int, Inline]) -> None:
    process_msg = nc._process_msg
    process_headers = nc._process_headers

    async def routed(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        handler = handlers.get(sid)
        if handler is None:
            await process_msg(sid, subject, reply, data, headers)
            return
        stats = nc.stats
        stats["in_msgs"] += 1  # nats-py's bookkeeping for a message, as _process_msg does it
        stats["in_bytes"] += len(data)
        sub = nc._subs.get(sid)
        if sub is None:
            return  # unsubscribed: nats-py drops it the same way
        sub._received += 1
        try:
            handler(subject, data, await process_headers(headers) if headers else None)
        except Exception as exc:
            await nc._error_cb(exc)

    nc._process_msg = routed  # the parser calls it through the instance
