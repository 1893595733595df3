"""What receiving a cast or answering a call costs, in instructions:
``python -m benchmarks.receive_cost``.

Throughput on a shared 2-core machine swings from run to run (docs/sdk.md); an instruction
count does not. One process connects to a real nats-server, and ready-made MSG frames are fed
to what parses them: casts or calls to an actor's mailbox (its real callback), given to the
connection's reader (rebeam._reader, the socket's protocol, as the socket would), or payloads
to a raw nats-py subscriber that decodes them, as any real one does, given to nats-py's own
parser (the baseline; for a call, the benchmark's raw responder, which decodes the request
and encodes and publishes its answer). Neither count has the wake-up of nats-py's read-loop
task that the reader saves: the socket is not read here. Each is run under ``valgrind
--tool=callgrind`` twice, with ``SMALL`` and ``LARGE`` messages; the difference over the
difference in messages is the cost of one message, start-up and imports cancelled out.

Casts are fed in bursts of ``CAST_BURST`` frames, as a busy sender's reach a receiver. A
call is fed alone, a loop turn between two, as a caller that waits for each answer sends
them: the reply then goes out by itself too (rebeam writes it at once, the raw responder
through nats-py's flusher a turn later), as in the call benchmark. Both processes of a call
hold BACKEND grants: the server lets an actor answer only requests it delivered, and these
were fed to the parser, not delivered (the grant is the server's business; what is counted
is the client's).

``--traced`` measures a call to an actor that traces (an SDK provider, every span recorded
by a ``SimpleSpanProcessor`` to an exporter that keeps nothing), each call carrying a
sampled trace context, against the same call untraced: ``full`` counts everything, the
SDK's spans included; ``path`` drops the spans put off for later (``Tracing.finish`` ends
none), which leaves what tracing adds before and around the reply's write, the SDK's span
taken out.

The process runs on the loop rebeam's actors run on (``rebeam._loop``: uvloop when it is
installed, ``REBEAM_LOOP=asyncio`` for asyncio's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the measured process needs none of it
    from rebeam.natsd import NatsServer
    from rebeam.pids import Pid

SMALL, LARGE = 2000, 6000
CAST_BURST = 100  # frames per parse for casts; a call is one frame per parse
RECEIVERS = ("raw", "rebeam")
MESSAGES = ("cast", "call")
# A reply subject of a call inbox of the namespace (rebeam._subjects.is_reply_inbox), as long
# as a real caller's: <inbox prefix>.<16 hex digits>.<token>.
_REPLY_TAIL = ".0123456789abcdef.1"
_PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # a sampled sender span
TRACED = ("off", "path", "full")


def _frame(sid: int, subject: str, payload: bytes, reply: str = "") -> bytes:
    head = (
        f"MSG {subject} {sid} {reply} {len(payload)}"
        if reply
        else f"MSG {subject} {sid} {len(payload)}"
    )
    return head.encode() + b"\r\n" + payload + b"\r\n"


async def _receive(receiver: str, message: str, count: int, url: str, traced: str) -> None:
    """The measured process: receive ``count`` messages of kind ``message`` ("cast" or
    "call") with ``receiver`` ("rebeam" or "raw"); ``traced``: "off", or how much of a
    traced actor's work to keep (module docstring)."""
    if traced != "off":
        _trace_nowhere()
    import rebeam
    from rebeam import _codec, _subjects
    from rebeam._actor import Host
    from rebeam._envelope import CALL, CAST, pack_mailbox
    from rebeam._node import Node
    from rebeam.pids import Pid

    handled = [0]

    class Counter(rebeam.Actor):
        async def handle_cast(self, message: object) -> None:
            handled[0] += 1

        async def handle_call(self, message: object, from_: rebeam.From) -> object:
            handled[0] += 1
            return message  # what the benchmark's actor answers

    pid = _pid(receiver, message, count)
    node = await Node.connect(
        url, namespace="bench", pid=pid, is_client=False, start=False, lease=False,
        mailbox_max_messages=10**6, mailbox_max_bytes=10**9, tracing=traced != "off",
    )  # fmt: skip
    Host(node, Counter())
    tracing = node._tracing
    if traced == "path" and tracing is not None:
        tracing.finish = tracing._ending.clear  # type: ignore[method-assign]
    await node.start(lease=False)
    node.delivering.set()
    nc = node.nc

    async def raw_cast(msg: Any) -> None:
        handled[0] += 1
        _codec.decode(msg.data)

    async def raw_call(msg: Any) -> None:  # benchmarks.bench_actor's raw responder
        handled[0] += 1
        await nc.publish(msg.reply, _codec.encode(_codec.decode(msg.data)))

    body = {"n": 1, "data": "x" * 32}
    sender = Pid.parse("bench.client-0123456789abcdef.1")
    reply = _subjects.inbox_prefix(sender) + _REPLY_TAIL if message == "call" else ""
    if receiver == "rebeam":
        field = [_PARENT] if traced != "off" else None
        payload = pack_mailbox(CALL if message == "call" else CAST, body, field)
        # The subject names the sender, as the server lets only that sender publish it.
        frame = _frame(node._subs[0]._id, _subjects.mailbox(pid, sender), payload, reply)
    else:
        sub = await nc.subscribe(
            f"raw.{message}",
            cb=raw_call if message == "call" else raw_cast,
            pending_msgs_limit=10**6,
            pending_bytes_limit=10**9,
        )
        frame = _frame(sub._id, f"raw.{message}", _codec.encode(body), reply)
    per_parse = 1 if message == "call" else CAST_BURST
    chunk = frame * per_parse
    reader = nc._transport._io_writer.transport.get_protocol()
    for _ in range(count // per_parse):
        if receiver == "rebeam":
            reader.data_received(chunk)
        else:
            await nc._ps.parse(chunk)
        await asyncio.sleep(0)  # let the subscription's task take what was parsed
    # Every message was parsed: each is handled or refused (counted) within this loop's
    # turns, so a refusal ends it at once instead of waiting for what never comes.
    while handled[0] + _refused(node) < count:  # noqa: ASYNC110 - yielding is the point
        await asyncio.sleep(0)
    if handled[0] < count:
        print(f"{count - handled[0]} of {count} refused: {node.stats}", file=sys.stderr)
        os._exit(1)
    os._exit(0)  # no teardown in the count


def _trace_nowhere() -> None:
    """Set this process's tracer provider: every span recorded, exported nowhere."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import (
        SimpleSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Nowhere(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Nowhere()))
    trace.set_tracer_provider(provider)


def _pid(receiver: str, message: str, count: int) -> Pid:
    """The measured process's pid: one of its own per run, since the server's issuer ties a
    pid to the first credential it let in."""
    from rebeam.pids import Pid

    return Pid.for_incarnation("bench", f"receiver-{receiver}-{message}-{count}", 1)


def _refused(node: Any) -> int:
    stats = node.stats
    return int(
        stats.forged
        + stats.malformed
        + stats.misaddressed
        + stats.oversized
        + stats.mailbox_refused
        + stats.reply_refused
    )


def _instructions(
    receiver: str, message: str, count: int, server: NatsServer, workdir: Path, traced: str
) -> int:
    from benchmarks._callgrind import instructions
    from rebeam.auth.grants import Grant, Role

    # A receiver of casts connects as an actor does, with a credential of its own; the raw
    # subscriber's subject is no actor's, and a call's answer goes to a request the server
    # did not deliver (the module's doc): BACKEND grants there. (The server is not in what
    # is counted: the frames are fed to the client's parser.)
    pid = _pid(receiver, message, count)
    actor = receiver == "rebeam" and message == "cast"
    grant = Grant(Role.ACTOR if actor else Role.BACKEND, "bench", pid)
    args = ["--receive", receiver, message, str(count), server.url, traced]
    return instructions("benchmarks.receive_cost", args, server.credentials(grant) or "", workdir)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.receive_cost")
    parser.add_argument(
        "--only", choices=MESSAGES, help="measure one kind of message (default: both)"
    )
    parser.add_argument(
        "--traced", action="store_true", help="a call to an actor that traces, against untraced"
    )
    parser.add_argument(
        "--receive",
        nargs=5,
        metavar=("RECEIVER", "MESSAGE", "COUNT", "URL", "TRACED"),
        help="internal",
    )
    args = parser.parse_args()
    if args.receive:
        from rebeam import _loop

        receiver, message, count, url, traced = args.receive
        _loop.run(_receive(receiver, message, int(count), url, traced))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts")
        return 0
    from rebeam._loop import loop_name
    from rebeam.natsd import NatsServer, ServerOptions

    messages = (args.only,) if args.only else MESSAGES
    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer.start(Path(tmp) / "nats", ServerOptions(namespaces=("bench",))) as server,
    ):
        print(
            "instructions per message (callgrind; MSG frames fed to rebeam's reader, and to "
            f"nats-py's parser for raw; {loop_name()})"
        )
        if args.traced:
            _report_traced(_costs("rebeam", "call", TRACED, server, Path(tmp)))
            return 0
        for message in messages:
            _report(message, _costs(RECEIVERS, message, ("off",), server, Path(tmp)))
    return 0


def _costs(
    receivers: Sequence[str] | str,
    message: str,
    traced: Sequence[str],
    server: NatsServer,
    workdir: Path,
) -> dict[str, float]:
    """Instructions per message of each receiver (or each tracing variant of one)."""
    cost = {}
    for receiver in (receivers,) if isinstance(receivers, str) else receivers:
        for variant in traced:
            small = _instructions(receiver, message, SMALL, server, workdir, variant)
            large = _instructions(receiver, message, LARGE, server, workdir, variant)
            key = receiver if len(traced) == 1 else variant
            cost[key] = (large - small) / (LARGE - SMALL)
    return cost


def _report_traced(cost: dict[str, float]) -> None:
    off, path, full = (cost[variant] / 1000 for variant in TRACED)
    print("to receive one call, rebeam actor, async handle_call:")
    print(f"  {'untraced':<38}: {off:6.1f} k")
    print(f"  {'traced, the spans put off dropped':<38}: {path:6.1f} k  (+{path - off:.1f} k)")
    print(f"  {'traced, everything':<38}: {full:6.1f} k  (+{full - off:.1f} k)")


def _report(message: str, cost: dict[str, float]) -> None:
    if message == "cast":
        lines = ("raw nats-py subscriber, decoding it", "rebeam actor, async handle_cast")
    else:
        lines = ("raw nats-py responder, decode+encode", "rebeam actor, async handle_call")
    print(f"to receive one {message}:")
    print(f"  {lines[0]:<38}: {cost['raw'] / 1000:6.1f} k")
    print(f"  {lines[1]:<38}: {cost['rebeam'] / 1000:6.1f} k")
    print(f"  {'raw / rebeam':<38}: {cost['raw'] / cost['rebeam']:6.2f}x")


if __name__ == "__main__":
    raise SystemExit(main())
