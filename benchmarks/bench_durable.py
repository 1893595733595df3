"""Durable casts against plain casts and against raw JetStream, between the same processes.

One actor process (:class:`DurableBench`, a durable mailbox) also runs a raw nats-py
JetStream pull consumer on a stream of its own; the benchmark process sends to both:

* throughput: ``n`` messages, timed until the receiver counted them all: plain casts (Core
  NATS, back to back), durable casts (each returns once JetStream stored it; ``WINDOW`` of
  them awaited at a time) and raw ``js.publish_async`` of messages of the same size with the
  same window, consumed by the raw consumer. The raw stream has the durable stream's settings
  and the raw messages carry a ``Nats-Msg-Id`` as durable ones do; the raw consumer fetches
  batches of ``BATCH`` and acks each message, as the durable mailbox does, with no order,
  parking or de-duplication promise;
* latency: one message at a time, from the send to a Core NATS echo the receiver publishes
  from its handler (the echo hop is the same for all three, so the ratios compare the paths).

The durable path pays for what it promises: a progress record per batch (de-duplication
after a crash), order across redeliveries, parking.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import TYPE_CHECKING, Any

import nats.js.api as jsapi

import rebeam
from benchmarks._measure import cpu_ns
from rebeam import _durable, _durable_stream
from rebeam._durable_batch import (
    BATCH_HEADER,
    MAX_FLYING,
    MAX_ITEMS,
    durable_address,
    frame,
    items_of,
)
from rebeam._envelope import CAST, pack_fields
from rebeam.auth.grants import Role
from rebeam.pids import Pid

if TYPE_CHECKING:  # the actor process imports this module too: it needs no harness
    from benchmarks._harness import Backend

NAMESPACE = "bench-durable"
RAW_STREAM = "benchraw"
WINDOW = 256  # sends awaited at a time, durable and raw alike


class DurableBench(rebeam.Actor):
    """Counts casts (plain and durable alike) and raw JetStream messages; echoes on request."""

    mailbox_durable = True

    async def init(self, args: Any) -> None:
        self.casts = 0
        self.raw = 0
        nc = self.node.nc
        js = nc.jetstream()
        subject = args["raw_subject"]
        config = jsapi.ConsumerConfig(  # as the durable mailbox's consumer
            ack_policy=jsapi.AckPolicy.EXPLICIT,
            ack_wait=_durable.ACK_WAIT,
            max_ack_pending=_durable.BATCH,
        )
        sub = await js.pull_subscribe(subject, durable="raw", stream=RAW_STREAM, config=config)

        async def consume() -> None:
            while True:
                try:
                    msgs = await sub.fetch(_durable.BATCH, timeout=1.0)
                except Exception:  # a fetch timeout: nothing to do
                    continue
                for msg in msgs:
                    if msg.headers and BATCH_HEADER in msg.headers:  # the coalesced baseline
                        self.raw += len(items_of(msg.data, msg.headers))
                        await msg.ack()
                        continue
                    self.raw += 1
                    if msg.data[:1] == b"e":  # an echo request: b"e<reply subject>"
                        await nc.publish(msg.data[1:].decode(), b"")
                    await msg.ack()

        self._raw_sub = sub
        self._consumer = asyncio.get_running_loop().create_task(consume())

    async def terminate(self, reason: rebeam.ExitReason) -> None:
        self._consumer.cancel()  # before the node drains its subscriptions
        await self._raw_sub.unsubscribe()

    async def handle_cast(self, message: Any) -> None:
        self.casts += 1
        if type(message) is list:  # ["echo", subject]
            await self.node.nc.publish(message[1], b"")

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return self.casts if message == "casts" else self.raw


async def _until(check: Any, target: int) -> None:
    while await check() < target:  # noqa: ASYNC110 - a remote count
        await asyncio.sleep(0.002)


async def _windowed(send: Any, n: int, window: int = WINDOW) -> None:
    """``n`` sends, at most ``window`` of them awaited at a time (``send()`` returns an
    awaitable that is done once the message is stored). A counter, not ``asyncio.wait`` on
    the set in flight or a semaphore: those cost the sender more than a send does."""
    loop = asyncio.get_running_loop()
    flying = 0
    room: asyncio.Future[None] | None = None
    sent = []

    def landed(_: Any) -> None:
        nonlocal flying
        flying -= 1
        if room is not None and not room.done():
            room.set_result(None)

    for _ in range(n):
        while flying >= window:
            room = loop.create_future()
            await room
        flying += 1
        fut = asyncio.ensure_future(await send())
        fut.add_done_callback(landed)
        sent.append(fut)
    for fut in sent:
        await fut  # a failed send fails the benchmark


async def measure(backend: Backend, n: int, rounds: int) -> list[dict[str, Any]]:
    """Rows (dicts with the fields of ``benchmarks._measure.Row``) for the table."""
    raw_subject = f"benchraw.{os.getpid()}"
    # The raw stream is the backend's to make: no actor or tree owner may create streams.
    js = (await backend.connection(NAMESPACE)).jetstream()
    await js.add_stream(_durable_stream.stream_config(RAW_STREAM, "benchraw.>"))
    # Both ends use the raw stream and its consumer beside the durable mailbox, on the
    # same connections: BACKEND grants, as for the other raw baselines.
    actor = await backend.actor(
        "benchmarks.bench_durable:DurableBench", {"raw_subject": raw_subject}, "durable-bench",
        namespace=NAMESPACE, role=Role.BACKEND, extra=["--mailbox-max-messages", str(n * 20)],
    )  # fmt: skip
    credentials = backend.client_credentials(NAMESPACE, Role.BACKEND)
    async with rebeam.connect(backend.url, namespace=NAMESPACE, credentials=credentials) as node:
        os_pids = {"receiver": actor.os_pid, "nats-server": backend.server.pid or 0}
        return await _measure(node, actor.pid, raw_subject, n, rounds, os_pids)


async def _measure(
    node: rebeam.Node, pid: Pid, raw_subject: str, n: int, rounds: int, os_pids: dict[str, int]
) -> list[dict[str, Any]]:
    js = node.nc.jetstream()
    payload = {"n": 1, "data": "x" * 32}
    # A raw message as large as the durable envelope of the same payload.
    raw = b"r" * len(pack_fields(CAST, durable_address(pid), str(node.pid), 1, payload))
    ids = iter(range(1 << 62))

    async def casts() -> int:
        return int(await node.call(pid, "casts"))

    async def raws() -> int:
        return int(await node.call(pid, "raw"))

    async def plain() -> float:
        base = await casts()
        started = time.perf_counter()
        for _ in range(n):
            await node.cast(pid, payload)
        await _until(casts, base + n)
        return n / (time.perf_counter() - started)

    async def durable_cast() -> Any:
        return node.cast(pid, payload, durable=True)

    async def raw_publish() -> Any:
        headers = {"Nats-Msg-Id": f"bench:{next(ids)}"}  # de-duplicated as durable ones are
        return await js.publish_async(raw_subject, raw, headers=headers)

    async def durable() -> float:
        base = await casts()
        started = time.perf_counter()
        await _windowed(durable_cast, n)
        await _until(casts, base + n)
        return n / (time.perf_counter() - started)

    async def raw_js() -> float:
        base = await raws()
        started = time.perf_counter()
        await _windowed(raw_publish, n)
        await _until(raws, base + n)
        return n / (time.perf_counter() - started)

    # Coalesced as the durable path does at its fullest: MAX_ITEMS messages per stored
    # message, MAX_FLYING stores awaited at a time.
    batch = frame([raw] * MAX_ITEMS)
    batch_headers = {BATCH_HEADER: str(MAX_ITEMS)}

    async def raw_batch_publish() -> Any:
        headers = {**batch_headers, "Nats-Msg-Id": f"bench:{next(ids)}"}
        return await js.publish_async(raw_subject, batch, headers=headers)

    async def raw_coalesced() -> float:
        base = await raws()
        started = time.perf_counter()
        await _windowed(raw_batch_publish, n // MAX_ITEMS, MAX_FLYING)
        await _until(raws, base + n // MAX_ITEMS * MAX_ITEMS)
        return n // MAX_ITEMS * MAX_ITEMS / (time.perf_counter() - started)

    inbox = node.nc.new_inbox()
    echoes: asyncio.Queue[None] = asyncio.Queue()

    async def on_echo(msg: Any) -> None:
        echoes.put_nowait(None)

    sub = await node.nc.subscribe(inbox, cb=on_echo)
    m = max(50, n // 10)

    async def latency(send: Any) -> list[float]:
        out = []
        for _ in range(m):
            started = time.perf_counter_ns()
            await send()
            await asyncio.wait_for(echoes.get(), 10)
            out.append((time.perf_counter_ns() - started) / 1000)
        return out

    echo = ["echo", inbox]
    echo_raw = b"e" + inbox.encode()
    senders = {
        "plain": lambda: node.cast(pid, echo),
        "durable": lambda: node.cast(pid, echo, durable=True),
        "raw": lambda: js.publish(raw_subject, echo_raw),
    }
    for fn in (plain, durable, raw_js, raw_coalesced):  # warm up
        await fn()
    thr: dict[str, list[float]] = {"plain": [], "durable": [], "raw": [], "coalesced": []}
    lat: dict[str, list[float]] = {"plain": [], "durable": [], "raw": []}
    cpu = {"sender": 0, **dict.fromkeys(os_pids, 0)}  # ns, over the durable rounds

    def cpu_now() -> dict[str, int]:
        return {"sender": time.process_time_ns(), **{k: cpu_ns(v) for k, v in os_pids.items()}}

    for _ in range(rounds):  # alternate, so that other load falls on all alike
        thr["plain"].append(await plain())
        before = cpu_now()
        thr["durable"].append(await durable())
        for key, value in cpu_now().items():
            cpu[key] += value - before[key]
        thr["raw"].append(await raw_js())
        thr["coalesced"].append(await raw_coalesced())
        for key, send in senders.items():
            lat[key].extend(await latency(send))
    await sub.unsubscribe()
    t = {k: statistics.median(v) for k, v in thr.items()}
    p50 = {k: statistics.median(v) for k, v in lat.items()}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    note = (
        f"{rounds} rounds x {n} messages, {WINDOW} sends in flight; latency: {rounds} x {m} "
        f"sends, to an echo; both with BACKEND grants: the raw stream is no actor's; "
        f"load average {load} on {os.cpu_count()} cores"
    )
    ratio = t["durable"] / t["raw"]
    return [
        _row("durable cast throughput vs plain cast", t["durable"], t["plain"], "/s", note),
        {
            **_row("durable cast throughput vs raw JetStream", t["durable"], t["raw"], "/s", note),
            "target": ">= 0.5x",
            "ok": ratio >= 0.5,
        },
        _row(
            "durable cast throughput vs raw JetStream, coalesced",
            t["durable"],
            t["coalesced"],
            "/s",
            f"raw: {MAX_ITEMS} messages per stored message, {MAX_FLYING} stores in flight; " + note,
        ),
        {
            "metric": "durable casts per second",
            "rebeam": f"{t['durable']:,.0f}/s",
            "baseline": "-",
            "ratio": None,
            "target": ">= 10,000/s",
            "ok": t["durable"] >= 10_000,
            "note": note,
        },
        {
            "metric": "(for reference) CPU per durable cast",
            "rebeam": ", ".join(f"{k} {v / 1000 / (n * rounds):.0f} us" for k, v in cpu.items()),
            "baseline": "-",
            "ratio": None,
            "target": "-",
            "ok": None,
            "note": "over the durable throughput rounds; the sender's includes its benchmark loop",
        },
        _row("durable cast p50 vs plain cast", p50["durable"], p50["plain"], " us", note),
        _row("durable cast p50 vs raw JetStream", p50["durable"], p50["raw"], " us", note),
    ]


def _row(metric: str, ours: float, base: float, unit: str, note: str) -> dict[str, Any]:
    spec = ",.0f" if unit == "/s" else ".0f"
    return {
        "metric": metric,
        "rebeam": f"{ours:{spec}}{unit}",
        "baseline": f"{base:{spec}}{unit}",
        "ratio": ours / base,
        "target": "-",
        "ok": None,
        "note": note,
    }


def main() -> int:
    """``python -m benchmarks.bench_durable [-n N] [--rounds R]``: this table alone."""
    import argparse
    import tempfile
    from pathlib import Path

    from benchmarks._harness import Backend, Processes
    from benchmarks._measure import Row, print_table
    from rebeam import _loop

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_durable")
    parser.add_argument("-n", type=int, default=2000, help="messages per round (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    ns = parser.parse_args()

    async def run(workdir: Path) -> list[dict[str, Any]]:
        procs = Processes()
        backend: Backend | None = None
        try:
            backend = await Backend.start(workdir, (NAMESPACE,), procs)
            return await measure(backend, ns.n, ns.rounds)
        finally:
            procs.stop()  # the actor ends while its server is still there
            if backend is not None:
                await backend.close()

    with tempfile.TemporaryDirectory() as tmp:
        rows = _loop.run(run(Path(tmp) / "secured"))
    print_table([Row(**row) for row in rows])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
