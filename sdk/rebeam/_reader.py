"""NATS frames parsed where they arrive: one task wake-up fewer per message at each end of a
call (docs/architecture.md, "One request path").

nats-py 2.16 reads a connection in a task of its own: the socket's protocol
(``asyncio.StreamReaderProtocol``) feeds each packet to a ``StreamReader``, which wakes that
task (a future, one more turn of the loop, the task's step, a copy of the buffer), and the
task hands the bytes to nats-py's async parser. :func:`install` sets a :class:`Reader` as
the socket's protocol instead, once the client is connected and again after every reconnect
(nats-py makes a new transport each time): it parses the server's operations in
``data_received`` and does for each what nats-py's parser and handlers do, with nothing
awaited.

* ``MSG`` and ``HMSG``: the connection's counters, the subscription looked up, an inline
  handler of :mod:`rebeam._fastpath` called, a request's future resolved, or the message put
  on the subscription's queue under nats-py's pending limits. A JetStream control message, an
  ordered consumer's message and headers that need nats-py's optional mail parser go through
  nats-py's own ``_process_msg``.
* ``PONG`` resolves the oldest flush, skipping one already done (``_nats_fixes.guard``);
  ``+OK`` is skipped.
* ``PING`` (nats-py's ``_process_ping``), ``INFO`` (``_process_info``: cluster updates, lame
  duck mode), ``-ERR`` (``_process_err``: a permissions violation reaches the error callback
  as before), and the error callback of a slow consumer or of an inline handler that raised,
  may suspend: each runs in a task of its own, and the bytes behind it wait
  (``pause_reading``) until it is done, so the connection's order is kept.
* Anything the parser cannot read (an unknown operation, a malformed ``MSG``, a control line
  longer than nats-py's 4 KiB without its end, a payload longer than the server's
  ``max_payload`` allows, a payload not followed by CRLF) is nats-py's ``ProtocolError``:
  reading stops and ``_process_op_err`` reconnects, as nats-py's read loop does. The buffer
  never holds more than one frame.

nats-py's read loop task stays, idle: it waits on a ``StreamReader`` that gets no data, only
the end of the connection. :class:`Reader` passes ``eof_received`` and ``connection_lost`` on
to the stream's own protocol, after the bytes that came before them, so the read loop sees
the end as before and nats-py starts its reconnect exactly as it does today; and
``pause_writing``/``resume_writing``, on which ``StreamWriter.drain`` waits. When that task
ends (nats-py cancels it to reconnect or close, or it saw the end), the reader stops.

What it relies on in nats-py 2.16: ``Client._process_connect_init`` opens every connection
(first and reconnects) and starts ``_reading_task`` before it returns; ``TcpTransport``'s
``_io_reader`` and ``_io_writer``; ``Subscription``'s ``_pending_queue``, ``_pending_size``,
``_pending_bytes_limit``, ``_received``, ``_max_msgs``, ``_future`` and ``_jsi``;
``Client.stats``, ``_subs``, ``_pongs``, ``_max_payload``, ``msg_class`` and
``_parse_header_lines``. A websocket transport keeps nats-py's read loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import nats.aio.client as _client
from nats.aio.transport import TcpTransport
from nats.errors import ProtocolError, SlowConsumerError
from nats.js.api import Header

__all__ = [
    "MAX_CONTROL_LINE",
    "MAX_INFO_LINE",
    "PAYLOAD_SLACK",
    "Reader",
    "answer_pong",
    "attach",
    "install",
]

log = logging.getLogger("rebeam.nats")

# The longest control line without its CRLF that is still waited for: nats-py's parser's
# bound. An INFO line lists a cluster's URLs and may be longer: up to MAX_INFO_LINE.
MAX_CONTROL_LINE = 4096
MAX_INFO_LINE = 64 * 1024
# A payload (headers included) may exceed the server's max_payload by this much before the
# frame is refused: what the server counts and what it sends differ by nothing, in practice.
PAYLOAD_SLACK = 64 * 1024
_CRLF = b"\r\n"
_HEAD = b"NATS/1.0"
_STATUS_LEN = 3  # "NATS/1.0 503 ..." : a three-digit status
_STATUS = Header.STATUS.value
_DESCRIPTION = Header.DESCRIPTION.value

Deferred = Callable[[], Coroutine[Any, Any, Any]]


def install(nc: Any) -> None:
    """Have every connection ``nc`` opens (the first and each reconnect) read by a
    :class:`Reader`."""
    connect_init = nc._process_connect_init

    async def connecting() -> None:
        await connect_init()
        attach(nc)  # in the same step: nats-py's read loop has not run yet

    nc._process_connect_init = connecting  # connect() and the reconnect call it so


def attach(nc: Any) -> Reader | None:
    """Set a :class:`Reader` on ``nc``'s current socket; None when nats-py keeps reading it
    (a websocket, a stream already at its end, a transport that is not the stream's)."""
    transport = nc._transport
    task = nc._reading_task
    if type(transport) is not TcpTransport or task is None or task.done():
        return None
    stream: Any = transport._io_reader
    writer = transport._io_writer
    if stream is None or writer is None:
        return None
    socket = writer.transport
    original = socket.get_protocol()
    if stream._eof or stream.exception() is not None or getattr(stream, "_paused", False):
        return None
    if not isinstance(original, asyncio.StreamReaderProtocol):
        return None
    reader = Reader(nc, socket, original, task)
    socket.set_protocol(reader)
    early = bytes(stream._buffer)  # what came with the connect's PONG
    stream._buffer.clear()
    if early:
        reader.data_received(early)
    return reader


def answer_pong(nc: Any) -> None:
    """A PONG answers ``nc``'s oldest PING: its flush is resolved unless it gave up already
    (a flush that timed out or was cancelled), so that no later flush is resolved early.
    The one PONG rule of a rebeam connection: this reader's, and ``_nats_fixes.guard``'s
    for a connection nats-py still reads."""
    pongs = nc._pongs
    if pongs:
        future = pongs.pop(0)
        if not future.done():
            future.set_result(True)
        nc._pongs_received += 1
        nc._pings_outstanding = 0


class Reader(asyncio.Protocol):
    """One connection's protocol: the server's operations parsed as they arrive."""

    def __init__(self, nc: Any, socket: Any, original: Any, watched: asyncio.Task[Any]) -> None:
        self.nc = nc
        self.socket = socket
        self.original = original  # the StreamReaderProtocol: told of the end, of flow
        self.held = bytearray()  # an incomplete frame, or what waits behind a task
        self.need = 0  # bytes held before the next parse can make progress
        self.busy: asyncio.Task[Any] | None = None
        self.ends: list[Callable[[], Any]] = []  # the end, told once the bytes before it are
        self.stopped = False
        self.dropped = 0  # messages whose subject or headers could not be read
        watched.add_done_callback(self._watched_ended)

    # asyncio's Protocol ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.stopped:
            return
        held = self.held
        if held or self.busy is not None:
            held += data
            if self.busy is not None or len(held) < self.need:
                return
            data = bytes(held)
            self.held = bytearray()
        self._parse(data)

    def eof_received(self) -> bool | None:
        # A frame that is still incomplete never will be: only a task's bytes are waited for.
        if self.stopped or self.busy is None:
            return bool(self.original.eof_received())
        self.ends.append(self.original.eof_received)
        # Kept open until the held bytes are read, as the stream's protocol asks; TLS cannot
        # keep a half-closed connection and says so if asked.
        return not getattr(self.original, "_over_ssl", False)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None or self.stopped or self.busy is None:
            # An error ends the stream at once (a StreamReader raises it before its data).
            self._stop(cancel=False)
            self.original.connection_lost(exc)
            return
        self.ends.append(lambda: self.original.connection_lost(None))

    def pause_writing(self) -> None:
        self.original.pause_writing()

    def resume_writing(self) -> None:
        self.original.resume_writing()

    # parsing -----------------------------------------------------------------------------

    def _parse(self, data: bytes) -> None:
        """Handle every whole frame of ``data``; hold the rest."""
        pos, end = 0, len(data)
        try:
            while pos < end and self.busy is None and not self.stopped:
                line_end = data.find(_CRLF, pos)
                if line_end < 0:
                    self._hold_line(data, pos)
                    break
                done = self._frame(data, pos, line_end)
                if done < 0:
                    self.held, self.need = bytearray(data[pos:]), -done - pos
                    break
                pos = done
            else:
                if pos < end and not self.stopped:
                    self.held += data[pos:]  # behind a task that has to finish first
        except Exception as exc:  # any frame it cannot read: nats-py's ProtocolError
            self._garbled(data, pos, exc)
            return
        if self.ends and self.busy is None:
            self._tell_end()

    def _hold_line(self, data: bytes, pos: int) -> None:
        """A control line without its CRLF yet: hold it, within nats-py's bound."""
        size = len(data) - pos
        limit = MAX_INFO_LINE if data.startswith(b"INFO", pos) else MAX_CONTROL_LINE
        if size > limit:
            raise ProtocolError(f"nats: a control line over {limit} bytes")
        self.held, self.need = bytearray(data[pos:]), size + 1

    def _frame(self, data: bytes, pos: int, line_end: int) -> int:
        """Handle the frame at ``pos`` whose control line ends at ``line_end``: where the
        next frame starts, or ``-(pos + bytes needed)`` when the payload is not all here."""
        if data.startswith(b"MSG", pos):
            args = data[pos + 3 : line_end].split()
            if len(args) not in (3, 4) or not data[pos + 3 : pos + 4].isspace():
                raise ProtocolError("nats: malformed MSG")
            field, head = args[-1], 0
            if not field.isdigit():  # int() would take a sign, spaces or underscores
                raise ProtocolError("nats: malformed MSG")
            size = int(field)
        elif data.startswith(b"HMSG", pos):
            args = data[pos + 4 : line_end].split()
            if len(args) not in (4, 5) or not data[pos + 4 : pos + 5].isspace():
                raise ProtocolError("nats: malformed HMSG")
            size, head = _size(args[-1]), _size(args[-2])
            args = args[:-1]
            if head > size:
                raise ProtocolError("nats: malformed HMSG")
        else:
            self._control(data[pos:line_end])
            return line_end + 2
        if size > self.nc._max_payload + PAYLOAD_SLACK:
            raise ProtocolError(f"nats: a message of {size} bytes")
        start = line_end + 2
        stop = start + size
        if stop + 2 > len(data):
            return -(stop + 2)
        if data[stop : stop + 2] != _CRLF:
            raise ProtocolError("nats: a message's payload not followed by CRLF")
        sid = int(args[1])
        reply = args[2] if len(args) == 4 else b""
        if head:
            self._message(
                sid, args[0], reply, data[start + head : stop], data[start : start + head]
            )
        else:
            self._message(sid, args[0], reply, data[start:stop], None)
        return stop + 2

    def _control(self, line: bytes) -> None:
        """Every operation but a message, as nats-py's parser reads them."""
        op = line.split(None, 1)
        name = op[0] if op else b""
        if name == b"PONG" and len(op) == 1:
            self._pong()
        elif name == b"+OK" and len(op) == 1:
            return
        elif name == b"PING" and len(op) == 1:
            self._defer(self.nc._process_ping)
        elif name == b"INFO" and len(op) == 2:
            info = json.loads(op[1].decode())
            if not isinstance(info, dict):
                raise ProtocolError("nats: an INFO that is no object")
            self._defer(lambda: self.nc._process_info(info))
        elif name == b"-ERR" and len(op) == 2 and _quoted(op[1]):
            text = op[1].strip().decode().lower()
            self._defer(lambda: self.nc._process_err(text))
        else:
            raise ProtocolError("nats: unknown protocol")

    def _pong(self) -> None:
        answer_pong(self.nc)

    # messages ----------------------------------------------------------------------------

    def _message(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, head: bytes | None
    ) -> None:
        """What nats-py's ``_process_msg`` (and ``_fastpath``'s inline route) does with one
        message, the cases that never suspend done here, the others handed to it."""
        nc = self.nc
        sub = nc._subs.get(sid)
        if sub is not None and (head or sub._jsi) and _needs_nats(sub, data, head):
            self._defer(lambda: nc._process_msg(sid, subject, reply, data, head))
            return
        stats = nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        if sub is None:
            return  # unsubscribed: nats-py drops it the same way
        sub._received += 1
        try:
            headers = _headers(nc, head) if head else None
        except (ProtocolError, UnicodeDecodeError):
            self._unreadable(subject)
            return
        inline = getattr(nc, "_rebeam_inline", None)
        handler = inline.get(sid) if inline else None
        if handler is not None:
            try:
                handler(subject, data, headers)
            except Exception as exc:
                error = exc  # the name "exc" is gone once the except clause ends
                self._defer(lambda: nc._error_cb(error))
            return
        if sub._max_msgs > 0 and sub._received >= sub._max_msgs:
            nc._subs.pop(sid, None)
        try:
            text, reply_text = subject.decode(), reply.decode()
        except UnicodeDecodeError:
            self._unreadable(subject)
            return
        msg = nc.msg_class(
            subject=text, reply=reply_text, data=data, headers=headers, _client=nc, _sid=sid
        )
        self._deliver(sub, msg, sid)

    def _unreadable(self, subject: bytes) -> None:
        """A message whose subjects or headers are not text: dropped and counted (nats-py's
        read loop would stop on it for good), logged at first and then every 1000th."""
        self.dropped += 1
        if self.dropped <= 3 or self.dropped % 1000 == 0:
            log.warning(
                "%s: dropped a NATS message on %r that cannot be read (%d so far)",
                self._name(),
                subject[:64],
                self.dropped,
            )

    def _deliver(self, sub: Any, msg: Any, sid: int) -> None:
        """A request's future resolved, or the message queued for the subscription's task
        within its limits (a slow consumer is reported, as nats-py reports it)."""
        jsi = sub._jsi
        if jsi is not None:
            jsi._active = True
        future = sub._future
        if future is not None:
            if not future.done():
                future.set_result(msg)
            return
        size = len(msg.data)
        sub._pending_size += size
        limit = sub._pending_bytes_limit
        try:
            if limit > 0 and sub._pending_size >= limit:
                raise asyncio.QueueFull
            sub._pending_queue.put_nowait(msg)
        except asyncio.QueueFull:
            sub._pending_size -= size
            dropped = SlowConsumerError(subject=msg.subject, reply=msg.reply, sid=sid, sub=sub)
            self._defer(lambda: self.nc._error_cb(dropped))
        if jsi is not None:
            jsi.track_sequences(msg.reply)

    # what may suspend --------------------------------------------------------------------

    def _defer(self, work: Deferred) -> None:
        """Run ``work`` in a task; the bytes behind it wait until it is done."""
        task = asyncio.get_running_loop().create_task(work())
        self.busy = task
        self.socket.pause_reading()
        task.add_done_callback(self._resume)

    def _resume(self, task: asyncio.Task[Any]) -> None:
        if self.busy is task:
            self.busy = None
        failure = None if task.cancelled() else task.exception()
        if self.stopped:
            return
        if isinstance(failure, ProtocolError | OSError):
            self._fail(failure)  # what nats-py's read loop does with either
            return
        if failure is not None:  # nats-py's read loop would log it and stop reading for good
            log.error("nats: encountered error", exc_info=failure)
        if not self.socket.is_closing():
            self.socket.resume_reading()
        held = self.held
        self.held = bytearray()
        self._parse(bytes(held))

    def _tell_end(self) -> None:
        ends, self.ends = self.ends, []
        for end in ends:
            end()

    def _name(self) -> str:
        return str(self.nc.options.get("name") or "a connection")

    def _garbled(self, data: bytes, pos: int, exc: Exception) -> None:
        """Bytes that are no NATS frame: one line (the first 64 bytes quoted), then what
        nats-py's read loop does with a ProtocolError."""
        log.warning(
            "%s: NATS sent what is not its protocol (%s), reconnecting: %r",
            self._name(),
            exc.args[0] if exc.args else type(exc).__name__,
            data[pos : pos + 64],
        )
        self._fail(ProtocolError())

    def _fail(self, exc: Exception) -> None:
        """Stop reading and hand the connection to nats-py's error handling."""
        self._stop(cancel=False)
        process_op_err = self.nc._process_op_err
        task = asyncio.get_running_loop().create_task(process_op_err(exc))
        task.add_done_callback(_quiet)

    def _watched_ended(self, _task: Any) -> None:
        self._stop(cancel=True)  # nats-py cancelled its read loop: so is what it awaited

    def _stop(self, *, cancel: bool) -> None:
        """No more parsing: nats-py's read loop ended, or the connection failed."""
        if self.stopped:
            return
        self.stopped = True
        self.held = bytearray()
        busy = self.busy
        if cancel and busy is not None and busy is not asyncio.current_task():
            busy.cancel()
        self._tell_end()


def _quiet(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (failure := task.exception()) is not None:
        log.error("nats: encountered error", exc_info=failure)


def _size(field: bytes) -> int:
    if not field.isdigit():
        raise ProtocolError("nats: malformed MSG")
    return int(field)


def _quoted(text: bytes) -> bool:
    text = text.strip()
    return len(text) >= 3 and text.startswith(b"'") and text.endswith(b"'")


def _needs_nats(sub: Any, data: bytes, head: bytes | None) -> bool:
    """A message whose handling may suspend: left to nats-py's ``_process_msg``."""
    if head is not None and getattr(_client, "parse_email", None) is not None:
        return True  # headers for the optional mail parser, which may report an error
    jsi = sub._jsi
    return jsi is not None and (jsi._ordered or (head is not None and not data))


def _headers(nc: Any, raw: bytes) -> dict[str, str] | None:
    """nats-py's ``_process_headers`` without its optional mail parser: a status line
    (``NATS/1.0 503 No Responders``) and the header lines."""
    if not raw.startswith(_HEAD):
        raise ProtocolError("nats: malformed HMSG headers")
    rest = raw[len(_HEAD) :]
    headers: dict[str, str] | None = None
    if rest[:1] == b" ":
        line = rest[1:]
        status = line[:_STATUS_LEN].strip().decode()
        description = line[_STATUS_LEN + 1 : len(line) - 4]
        headers = {}
        if status.isdigit():
            headers[_STATUS] = status
        rest = rest[rest.find(_CRLF) + 2 :]
        if description:
            i = description.find(_CRLF)
            if i > 0:
                headers[_DESCRIPTION] = description[:i].decode()
                headers.update(nc._parse_header_lines(description[i + 2 :]))
            else:
                headers[_DESCRIPTION] = description.decode()
    if len(rest) <= 2:
        return headers
    parsed = nc._parse_header_lines(raw[len(_HEAD) + 2 :])
    if headers:
        headers.update(parsed)
        return headers
    return parsed or None
