"""Work-arounds for nats-py defects that would leave a connection deaf.

**A cancelled flush kills the read loop** (nats-py 2.16). ``flush()`` queues a future per
PING and the next PONG resolves the oldest with ``set_result``. A flush that timed out, or
whose task was cancelled (an ``asyncio.wait_for`` around anything that flushes, a task
cancelled at shutdown), leaves its future cancelled in the queue; its PONG then raises
``InvalidStateError`` inside the read loop, which logs "nats: encountered error" and stops
reading, while the client still reports itself connected (upstream: nats-io/nats.py#624 for
the flusher's twin of this, #914 for the read loop's catch-all). Every later request times
out and no message arrives: a runtime would look alive and be deaf. Measured here: a
request after one cancelled flush timed out on a connected client.

:func:`guard` replaces that connection's PONG handler with one that does the same, but
skips a future that is already done. The PONG still answers its own PING (PONGs come in
PING order), so no later flush is resolved early.

**A flush does not cover what is pending** (nats-py 2.16). ``flush()`` promises that what
was sent before it has reached the server when it returns, but it writes its PING straight
to the socket, ahead of the commands still waiting in the pending buffer for the flusher
task: a ``subscribe()`` then ``flush()`` puts ``PING`` on the wire before ``SUB``, and the
PONG can come back before the server has the subscription. Measured here: the bytes written
were ``PING`` then ``SUB``, and a message published from another connection right after the
flush returned was lost, in 6 of 40 runs of a test on a busy machine. :func:`guard` queues
the PING behind everything pending, so its PONG means what nats-py says it means.

**An "Authorization Violation" closes a client for good** (nats-py 2.16). nats-py's
``_process_err`` closes the client, with no reconnect and no ``error_cb``, on any ``-ERR``
but a stale connection or a permissions violation. An "Authorization Violation" came on
connections nats-py had taken for made, around a restart of a server while the issuer that
accepts connections was itself reconnecting (about one run in fifty of a restart test, and
the cluster soak's drain; why then is not known: nats-py does take any line but ``-ERR``
after its CONNECT's PING for the PONG, a cluster's INFO included). A runtime was left alive
with its client closed, on no server, its calls answered "no responders", its supervisor
seeing it alive. :func:`guard` makes it what it is for nats.go's client: a failed
connection, reported to ``error_cb`` and reconnected while reconnects are allowed. A
credential that stays refused is then refused at every attempt, and the process ends when
its lease does (rebeam._lease).

**A tls:// URL does not make nats-py use TLS** (nats-py 2.16). It upgrades a connection only
when the server's first INFO says ``tls_required``; a server that does not (a plain server
at that address, or someone in between who removed the flag) gets CONNECT, with the
credential, in plaintext. Measured here: a ``tls://`` URL to a plain nats-server connected,
unencrypted. :func:`require_tls` refuses such an INFO before anything is sent, on every
connection attempt, reconnects included.

**A failed TLS handshake is retried like an unreachable server**, for the whole connect
budget, and ends as "no servers available". A certificate that does not verify will not
verify a moment later: :func:`connect` stops the first connect at the first such failure and
raises :class:`~rebeam.errors.TlsError` saying why (rebeam._tls words it). Other handshake
failures (a busy server that gave up waiting) are retried, and when the budget is spent the
last one is raised as a TlsError instead of "no servers available".

**A failed TLS handshake hangs the connect** (nats-py 2.16, Python 3.11). After the handshake
fails, nats-py closes the connection and waits for the close of the plain stream it started
from; that stream handed its socket to the TLS layer, never hears of the close, and the wait
never ends. Measured here: a connect to a server that answered the handshake with garbage
never returned. :func:`bound_close_wait` gives that wait a deadline on every connection
attempt.

**Every TLS connection that the server ends logs an asyncio warning**, "returning true from
eof_received() has no effect when using ssl": nats-py's stream protocol was made for the
plain socket it later upgrades, and asks to keep a half-closed connection open, which TLS
cannot. Nothing is wrong; an actor's log would show it at every server restart.
:func:`connect` filters out exactly that message once a TLS connection is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from nats.aio.client import PING_PROTO
from nats.aio.client import Client as NATS
from nats.errors import AuthorizationError, NoServersError
from nats.protocol.parser import AUTHORIZATION_VIOLATION

from rebeam import _reader, _tls

__all__ = ["bound_close_wait", "connect", "guard", "require_tls"]

log = logging.getLogger("nats.aio.client")  # where nats-py logs an error nobody handles
_EOF_WARNING = "returning true from eof_received() has no effect when using ssl"


class _QuietTlsEof(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _EOF_WARNING


_quiet_tls_eof = _QuietTlsEof()


def guard(nc: Any) -> Any:
    """Install the work-arounds on one connection; returns it."""

    async def process_pong() -> None:
        _reader.answer_pong(nc)

    async def send_ping(future: asyncio.Future[Any] | None = None) -> None:
        if future is None:
            future = asyncio.get_running_loop().create_future()
        nc._pongs.append(future)
        await nc._send_command(PING_PROTO)  # behind every command still pending
        await nc._flush_pending()

    process_err = nc._process_err

    async def refused_or_other(err_msg: str) -> None:
        may_reconnect = nc.options.get("allow_reconnect") and (nc.is_connected or nc.is_connecting)
        if AUTHORIZATION_VIOLATION not in err_msg or not may_reconnect:
            await process_err(err_msg)
            return
        nc._err = error = AuthorizationError()
        await nc._error_cb(error)
        await nc._process_op_err(error)

    if all(hasattr(nc, attr) for attr in ("_process_err", "_process_op_err", "_error_cb")):
        nc._process_err = refused_or_other  # both parsers, nats-py's and rebeam._reader's
    if all(hasattr(nc, attr) for attr in ("_pongs", "_pongs_received", "_pings_outstanding")):
        nc._process_pong = process_pong  # the parser calls it through the instance
    if all(hasattr(nc, attr) for attr in ("_pongs", "_send_command", "_flush_pending")):
        nc._send_ping = send_ping  # flush() and the ping interval call it so too
    return nc


CLOSE_WAIT = 2.0  # seconds to wait for a closed socket to say so: a local matter


def bound_close_wait(nc: Any) -> None:
    """Give the wait for a closed connection a deadline, on the transport of every attempt
    (nats-py makes it when it connects)."""
    connect_to_server = nc._connect_to_server

    async def connecting(server: Any) -> None:
        await connect_to_server(server)
        transport = nc._transport
        if transport is None or getattr(transport, "_rebeam_bounded", False):
            return
        wait_closed = transport.wait_closed

        async def bounded() -> None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_WAIT):
                    await wait_closed()

        transport.wait_closed = bounded
        transport._rebeam_bounded = True

    nc._connect_to_server = connecting


def require_tls(nc: Any, url: str) -> None:
    """Refuse a server that does not require TLS, before CONNECT is sent (``url`` asked for
    TLS). nats-py then upgrades every connection it makes before it says anything."""
    process_info = nc._process_info

    async def checked(info: dict[str, Any], initial_connection: bool = False) -> None:
        if initial_connection and not info.get("tls_required"):
            raise _tls.plaintext_refused(url)  # an OSError: the attempt fails, nothing sent
        await process_info(info, initial_connection)

    nc._process_info = checked


async def connect(url: str, *, tls_ca: str | None = None, **kwargs: Any) -> Any:
    """``nats.connect`` as rebeam opens every connection: with the TLS context of
    :mod:`rebeam._tls` (``tls_ca``: a CA file; its default is ``$REBEAM_NATS_CA``), no
    plaintext for a ``tls://`` URL, :func:`guard` applied, and a TLS failure of the first
    connect raised at once as :class:`~rebeam.errors.TlsError`."""
    options, trusted = _tls.nats_options(url, tls_ca)
    if options:
        logging.getLogger("asyncio").addFilter(_quiet_tls_eof)  # again: a no-op
    nc = guard(NATS())
    bound_close_wait(nc)
    _reader.install(nc)  # every connection of nc is read where its bytes arrive
    if _tls.wants_tls(url):
        require_tls(nc, url)
    given = kwargs.pop("error_cb", None)
    connecting = True
    handshakes: list[ssl.SSLError] = []  # failed handshakes of the first connect

    async def error_cb(exc: Exception) -> None:
        if connecting and (failure := _tls.failure(exc, url, trusted)) is not None:
            raise failure  # out of nats-py's retry loop, through nc.connect() below
        if connecting and isinstance(exc, ssl.SSLError):
            handshakes[:] = [exc]
        if given is not None:
            await given(exc)
        else:
            log.error("nats: encountered error", exc_info=exc)  # what nats-py does by default

    try:
        await nc.connect(url, error_cb=error_cb, **options, **kwargs)
    except NoServersError:
        if handshakes:
            raise _tls.handshake_failed(handshakes[0], url) from None
        raise
    except OSError as exc:  # TlsError is one
        failure = _tls.failure(exc, url, trusted)
        if failure is None and isinstance(exc, ssl.SSLError):
            failure = _tls.handshake_failed(exc, url)  # the only attempt (no reconnects)
        if failure is None:
            raise
        _drop_socket(nc)
        raise failure from None
    connecting = False
    return nc


def _drop_socket(nc: Any) -> None:
    """Close the socket of a connect that failed (nats-py keeps it when it gives up, and
    ``close()`` of a client that never connected waits forever)."""
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()
