"""NATS frames parsed where they arrive (rebeam._reader): every rebeam connection is read by
the reader, on asyncio's loop and on uvloop, over TCP and TLS, again after every reconnect;
messages, headers, requests, flushes, JetStream, slow consumers and the server's refusals
behave as with nats-py's own read loop; a server that sends what is not NATS is
disconnected from and reconnected to, as nats-py does, with no traceback and no hang. Real
nats-server, real sockets; a few tests feed bytes to a connected client's reader directly."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.errors import SlowConsumerError
from tests.sdk.hostile_inputs import until
from tests.tlsfiles import make_tls_files

import rebeam
from rebeam import _reader
from rebeam._nats_fixes import connect, guard
from rebeam.natsd import NatsServer, ServerOptions
from rebeam.pids import Pid

DEADLINE = 20.0  # seconds: a loaded 2-core machine, not the expected time
LOOPS = [
    "asyncio",
    pytest.param(
        "uvloop",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
        ),
    ),
]


def run_on(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_bounded(main))


async def _bounded(main: Callable[[], Awaitable[None]]) -> None:
    async with asyncio.timeout(120):
        await main()


def reader_of(nc: Any) -> _reader.Reader:
    protocol = nc._transport._io_writer.transport.get_protocol()
    assert isinstance(protocol, _reader.Reader), protocol
    return protocol


async def read_by_nats_py(url: str, **options: Any) -> Any:
    """A peer that nats-py reads with its own read loop, no Reader: what the reader is
    compared with. It has rebeam's flush fix (_nats_fixes.guard) all the same: nats-py's own
    ``flush()`` writes its PING ahead of a SUB still pending, so its PONG does not prove the
    server has the subscription, and a request from the other connection right after may find
    no responder. Measured beside two CPU burners: 61 of 1500 subscribe-flush-request rounds
    got NoRespondersError with nats-py's flush, none of 1500 with the fix."""
    nc = guard(NATS())
    await nc.connect(url, **options)
    assert not isinstance(nc._transport._io_writer.transport.get_protocol(), _reader.Reader)
    return nc


async def _received(sub: Any, count: int) -> list[Any]:
    out = []
    for _ in range(count):
        out.append(await sub.next_msg(timeout=DEADLINE))
    return out


# -- a real server: messages of every kind, on both loops, across a restart ------------------


async def _every_kind(nc: Any, other: Any) -> None:
    sub = await nc.subscribe("kinds.>")
    await nc.flush(timeout=DEADLINE)
    big = bytes(range(256)) * 2048  # 512 KiB: many packets
    await other.publish("kinds.plain", b"hello")
    await other.publish("kinds.headers", b"h", headers={"A": "1", "Bee": "two words"})
    await other.publish("kinds.big", big)
    for i in range(500):  # many frames in a packet
        await other.publish("kinds.burst", str(i).encode())
    await other.flush(timeout=DEADLINE)
    got = await _received(sub, 503)
    assert [m.subject for m in got[:3]] == ["kinds.plain", "kinds.headers", "kinds.big"]
    assert got[0].data == b"hello"
    assert got[0].headers is None
    assert got[1].headers == {"A": "1", "Bee": "two words"}
    assert got[2].data == big
    assert [m.data for m in got[3:]] == [str(i).encode() for i in range(500)]
    await sub.unsubscribe()


async def _requests(nc: Any, other: Any) -> None:
    async def echo(msg: Any) -> None:
        await other.publish(msg.reply, msg.data[::-1])

    responder = await other.subscribe("echo", cb=echo)
    await other.flush(timeout=DEADLINE)
    for i in range(20):
        reply = await nc.request("echo", f"ab{i}".encode(), timeout=DEADLINE)
        assert reply.data == f"ab{i}".encode()[::-1]
        await nc.flush(timeout=DEADLINE)  # a PONG for each PING
    await responder.unsubscribe()


async def _key_value(nc: Any) -> None:
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="reader_test")
    revision = await kv.put("k", b"v1")
    entry = await kv.get("k")
    assert (entry.value, entry.revision) == (b"v1", revision)
    await js.delete_key_value("reader_test")


@pytest.mark.parametrize("loop", LOOPS)
def test_every_kind_of_message_and_a_restart(nats_server, namespace, loop):
    token = nats_server.backend_credentials(namespace)

    async def main() -> None:
        reconnected = asyncio.Event()

        async def on_reconnect() -> None:
            reconnected.set()

        nc = await connect(
            nats_server.url, token=token, reconnect_time_wait=0.2, reconnected_cb=on_reconnect
        )
        other = await read_by_nats_py(nats_server.url, token=token, reconnect_time_wait=0.2)
        try:
            first = reader_of(nc)
            await _every_kind(nc, other)
            await _requests(nc, other)
            await _key_value(nc)
            kept = await nc.subscribe("kept")
            await asyncio.to_thread(nats_server.restart)
            async with asyncio.timeout(DEADLINE):
                await reconnected.wait()
            assert reader_of(nc) is not first  # the new socket has a reader of its own
            assert first.stopped
            await nc.flush(timeout=DEADLINE)  # the server has the subscriptions again

            async def delivered() -> bool:
                await other.publish("kept", b"again")
                await other.flush(timeout=DEADLINE)
                return kept.pending_msgs > 0

            await until(delivered, "a message on a subscription made before the restart")
            assert (await kept.next_msg(timeout=DEADLINE)).data == b"again"
            await _requests(nc, other)
        finally:
            await other.close()
            await nc.close()

    run_on(loop, main)


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture
def tls_server(tmp_path: Path, namespace: str) -> Iterator[NatsServer]:
    tls = make_tls_files(tmp_path / "pki")
    server = NatsServer.start(tmp_path / "nats", ServerOptions(namespaces=(namespace,), tls=tls))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("loop", LOOPS)
def test_a_tls_connection_is_read_by_the_reader(tls_server, namespace, loop):
    token = tls_server.backend_credentials(namespace)

    async def main() -> None:
        nc = await connect(tls_server.url, token=token, tls_ca=tls_server.tls_ca)
        other = await connect(tls_server.url, token=token, tls_ca=tls_server.tls_ca)
        try:
            assert nc._transport._io_writer.get_extra_info("ssl_object") is not None
            reader_of(nc)
            await _every_kind(nc, other)
            await _requests(nc, other)
        finally:
            await other.close()
            await nc.close()

    run_on(loop, main)


# -- bytes fed to a connected client's reader -----------------------------------------------


def _frames(sid: int) -> list[bytes]:
    return [
        b"MSG split.a %d 5\r\nhello\r\n" % sid,
        b"MSG split.b %d reply.to 0\r\n\r\n" % sid,
        b"HMSG split.c %d 20 23\r\nNATS/1.0\r\nKey: v\r\n\r\nabc\r\n" % sid,
        b"PONG\r\n",
        b"+OK\r\n",
        b"MSG  split.d\t%d   3\r\nx\r\n\r\n" % sid,  # nats-py reads any whitespace
    ]


def _expected(msgs: list[Any]) -> None:
    assert [(m.subject, m.reply, m.data, m.headers) for m in msgs] == [
        ("split.a", "", b"hello", None),
        ("split.b", "reply.to", b"", None),
        ("split.c", "", b"abc", {"Key": "v"}),
        ("split.d", "", b"x\r\n", None),
    ]


def _take(sub: Any) -> list[Any]:
    out = []
    while not sub._pending_queue.empty():
        msg = sub._pending_queue.get_nowait()
        sub._pending_size -= len(msg.data)
        out.append(msg)
    return out


@pytest.fixture
async def fed(nats_server: NatsServer, namespace: str) -> Any:
    nc = await connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:
        yield nc
    finally:
        await nc.close()


async def test_a_frame_split_at_every_byte(fed):
    sub = await fed.subscribe("split.>")
    reader = reader_of(fed)
    blob = b"".join(_frames(sub._id))
    for cut in range(1, len(blob)):
        reader.data_received(blob[:cut])
        reader.data_received(blob[cut:])
        _expected(_take(sub))
    for i in range(len(blob)):  # a byte at a time
        reader.data_received(blob[i : i + 1])
    _expected(_take(sub))
    reader.data_received(blob * 200)  # many in one packet
    msgs = _take(sub)
    assert len(msgs) == 800
    for i in range(0, 800, 4):
        _expected(msgs[i : i + 4])
    assert not reader.held
    assert not reader.stopped
    await fed.flush(timeout=DEADLINE)  # the connection still works


async def test_a_ping_is_answered_and_counters_are_kept(fed):
    sub = await fed.subscribe("count")
    reader = reader_of(fed)
    before = dict(fed.stats)
    reader.data_received(b"PING\r\nMSG count %d 3\r\nabc\r\n" % sub._id)
    assert reader.busy is not None  # the PONG is nats-py's: the message waits for it
    assert await sub.next_msg(timeout=DEADLINE)
    assert fed.stats["in_msgs"] - before["in_msgs"] == 1
    assert fed.stats["in_bytes"] - before["in_bytes"] == 3
    assert fed.stats["out_bytes"] == before["out_bytes"]  # a PONG is no message

    async def answered() -> bool:
        return reader.busy is None and not fed._pending

    await until(answered, "the PONG written")
    await fed.flush(timeout=DEADLINE)


@pytest.mark.parametrize(
    "raw",
    [
        b"NATS/1.0\r\nA: 1\r\nB: two\r\n\r\n",
        b"NATS/1.0 503\r\n\r\n",
        b"NATS/1.0 404 No Messages\r\n\r\n",
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 5\r\n\r\n",
        b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n",
        b"NATS/1.0\r\n\r\n",
        b"NATS/1.0\r\nNo colon\r\nX:y\r\n\r\n",
    ],
)
async def test_headers_read_as_nats_py_reads_them(raw):
    nc = NATS()
    assert _reader._headers(nc, raw) == await nc._process_headers(raw)


async def test_a_slow_consumer_is_reported_and_reading_goes_on(nats_server, namespace):
    token = nats_server.backend_credentials(namespace)
    dropped: list[Exception] = []

    async def error_cb(exc: Exception) -> None:
        await asyncio.sleep(0.01)  # a callback that suspends: the bytes behind it wait
        dropped.append(exc)

    nc = await connect(nats_server.url, token=token, error_cb=error_cb)
    try:
        sub = await nc.subscribe("slow", pending_msgs_limit=2)
        await nc.flush(timeout=DEADLINE)
        for i in range(10):
            await nc.publish("slow", str(i).encode())
        await nc.flush(timeout=DEADLINE)  # its PONG comes behind the ten messages
        assert [type(e) for e in dropped] == [SlowConsumerError] * 8
        assert [m.data for m in _take(sub)] == [b"0", b"1"]
    finally:
        await nc.close()


async def test_a_refusal_of_the_server_reaches_the_node_as_before(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        reader_of(node.nc)
        elsewhere = Pid.for_incarnation("elsewhere", "target", 1)  # not this owner's
        await node.cast(elsewhere, "not for you")

        async def refused() -> bool:
            return node.stats.not_permitted >= 1

        await until(refused, "the server's permissions violation", timeout=DEADLINE)
        await node.nc.flush(timeout=DEADLINE)  # and the connection reads on
        assert node.nc.is_connected


# -- a server that sends what is not NATS --------------------------------------------------

GARBAGE = {
    "unknown": b"GARBAGE\r\n",
    "huge": b"MSG a 1 99999999999\r\n",
    "endless": b"x" * 5000,
    "sid": b"MSG a notasid 1\r\nx\r\n",
    "unframed": b"MSG a 1 3\r\nabcXY\r\n",
    "info": b"INFO [1, 2]\r\n",
    "error": b"-ERR\r\n",
}


class FakeServer:
    """A NATS server of the test's own: a first connection gets ``garbage`` once it is
    connected, every later one a well-behaved server's PONGs."""

    def __init__(self, garbage: bytes, *, on_sub: bytes = b"", close: bool = False) -> None:
        self.garbage = garbage
        self.on_sub = on_sub  # written to the first connection when it subscribes
        self.close = close  # and that connection closed at the PING after it
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"nats://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        writer.write(b'INFO {"server_id":"fake","max_payload":1048576,"proto":1}\r\n')
        try:
            subscribed = False
            while line := await reader.readline():
                if line.startswith(b"SUB") and self.connections == 1:
                    writer.write(self.on_sub)
                    subscribed = True
                if line.startswith(b"PING"):
                    writer.write(b"PONG\r\n")
                    if first:
                        first = False
                        writer.write(self.garbage)
                    if subscribed and self.close:
                        break  # the end, right behind what was written
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("kind", sorted(GARBAGE))
async def test_a_server_that_sends_garbage_is_reconnected_to(kind, caplog):
    caplog.set_level(logging.WARNING)
    fake = FakeServer(GARBAGE[kind])
    url = await fake.start()
    reconnected = asyncio.Event()

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await connect(url, reconnect_time_wait=0.1, reconnected_cb=on_reconnect)
    try:
        async with asyncio.timeout(DEADLINE):
            await reconnected.wait()
        assert fake.connections == 2
        reader_of(nc)
        await nc.flush(timeout=DEADLINE)
    finally:
        await nc.close()
        await fake.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert any("not its protocol" in r.getMessage() for r in caplog.records)


async def test_what_came_before_the_end_is_read_before_nats_py_hears_of_it():
    """A PING (answered in a task, reading paused behind it), a message, then the end of the
    connection: the message is queued before nats-py starts its reconnect."""
    fake = FakeServer(b"", on_sub=b"PING\r\nMSG x 1 1\r\na\r\n", close=True)
    url = await fake.start()
    queued_at_disconnect: list[int] = []
    reconnected = asyncio.Event()
    sub: Any = None

    async def on_disconnect() -> None:
        queued_at_disconnect.append(sub.pending_msgs if sub is not None else -1)

    async def on_reconnect() -> None:
        reconnected.set()

    nc = await connect(
        url, reconnect_time_wait=0.1, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect
    )
    try:
        sub = await nc.subscribe("x")
        with contextlib.suppress(nats.errors.FlushTimeoutError, nats.errors.ConnectionClosedError):
            await nc.flush(timeout=DEADLINE)
        async with asyncio.timeout(DEADLINE):
            await reconnected.wait()
        assert queued_at_disconnect == [1]
        assert (await sub.next_msg(timeout=DEADLINE)).data == b"a"
    finally:
        await nc.close()
        await fake.stop()


async def test_the_end_waits_for_the_bytes_before_it(fed):
    """The end of the connection, told while a PING's task holds the bytes behind it, reaches
    nats-py's stream only once those bytes are read."""
    sub = await fed.subscribe("end")
    reader = reader_of(fed)
    stream = fed._transport._io_reader
    reader.data_received(b"PING\r\nMSG end %d 1\r\na\r\n" % sub._id)
    assert reader.busy is not None
    reader.eof_received()
    assert not stream._eof  # nats-py has not heard of it yet
    assert (await sub.next_msg(timeout=DEADLINE)).data == b"a"

    async def told() -> bool:
        return bool(stream._eof)

    await until(told, "the end passed on to nats-py's stream")
