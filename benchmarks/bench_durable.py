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
from rebeam import _durable
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


async def _windowed(send: Any, n: int) -> None:
    """``n`` sends, at most ``WINDOW`` of them awaited at a time (``send()`` returns an
    awaitable that is done once the message is stored)."""
    pending: set[Any] = set()
    for _ in range(n):
        pending.add(await send())
        if len(pending) >= WINDOW:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                fut.result()  # a failed send fails the benchmark
    for fut in pending:
        await fut


async def measure(backend: Backend, n: int, rounds: int) -> list[dict[str, Any]]:
    """Rows (dicts with the fields of ``benchmarks._measure.Row``) for the table."""
    raw_subject = f"benchraw.{os.getpid()}"
    # The raw stream is the backend's to make: no actor or tree owner may create streams.
    js = (await backend.connection(NAMESPACE)).jetstream()
    await js.add_stream(_durable.stream_config(RAW_STREAM, "benchraw.>"))
    # Both ends use the raw stream and its consumer beside the durable mailbox, on the
    # same connections: BACKEND grants, as for the other raw baselines.
    actor = await backend.actor(
        "benchmarks.bench_durable:DurableBench", {"raw_subject": raw_subject}, "durable-bench",
        namespace=NAMESPACE, role=Role.BACKEND, extra=["--mailbox-max-messages", str(n * 20)],
    )  # fmt: skip
    credentials = backend.client_credentials(NAMESPACE, Role.BACKEND)
    async with rebeam.connect(backend.url, namespace=NAMESPACE, credentials=credentials) as node:
        return await _measure(node, actor.pid, raw_subject, n, rounds)


async def _measure(
    node: rebeam.Node, pid: Pid, raw_subject: str, n: int, rounds: int
) -> list[dict[str, Any]]:
    js = node.nc.jetstream()
    payload = {"n": 1, "data": "x" * 32}
    # A raw message as large as the durable envelope of the same payload.
    raw = b"r" * len(pack_fields(CAST, _durable.durable_address(pid), str(node.pid), 1, payload))
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
        return asyncio.ensure_future(node.cast(pid, payload, durable=True))

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
    for fn in (plain, durable, raw_js):  # warm up
        await fn()
    thr: dict[str, list[float]] = {"plain": [], "durable": [], "raw": []}
    lat: dict[str, list[float]] = {"plain": [], "durable": [], "raw": []}
    for _ in range(rounds):  # alternate, so that other load falls on all alike
        thr["plain"].append(await plain())
        thr["durable"].append(await durable())
        thr["raw"].append(await raw_js())
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
        {
            "metric": "durable casts per second",
            "rebeam": f"{t['durable']:,.0f}/s",
            "baseline": "-",
            "ratio": None,
            "target": ">= 10,000/s",
            "ok": t["durable"] >= 10_000,
            "note": note,
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
