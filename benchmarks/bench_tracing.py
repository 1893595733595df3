"""Tracing's cost: call latency and cast throughput with tracing off and on, between the same
two kinds of processes, taking turns within each round; every ratio is the median of the
rounds' own ratios (docs/observability.md, "Tracing").

Off is a plain :class:`BenchActor` and a node made with ``tracing=False``: what rebeam is
without tracing (its rows against raw nats-py are the main table's). On is the same actor
class in a process that set a tracer provider and ``REBEAM_TRACING=1`` at the import of this
module, and a node made with ``tracing=True`` here: a span at each end of every message,
recorded by the OpenTelemetry SDK and exported nowhere, so the figure is rebeam's and the
SDK's cost, not an exporter's. A second call row samples every trace out at its root (the
actor follows its parent's decision): the context still travels and the sampler is still
asked at every span, but the SDK records none, as with a sampling ratio in production.

The target row's processor is the SDK's synchronous ``SimpleSpanProcessor``, which exports
inside each span's end; production setups use ``BatchSpanProcessor``, which queues the span
for a worker thread that exports in batches. A third pair of sides (a traced client node of
its own provider, a traced actor process with the batch processor) takes the same turns in
the call rounds, for reference rows beside the target's; not in the cast rounds, where a
burst fills the batch processor's queue and it drops spans (docs/observability.md, "Cost").
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
)

import rebeam
from benchmarks._measure import (
    PAYLOAD,
    Row,
    a_core_each,
    cast_rate,
    cpu_ns,
    p50_us,
    paired,
    print_table,
    time_each,
)
from benchmarks.bench_actor import BenchActor
from rebeam._spans import Tracing
from rebeam.auth.grants import Role

if TYPE_CHECKING:  # the actor process imports this module too: it needs no harness
    from benchmarks._harness import Actor, Backend

NAMESPACE = "bench"
TRACE_IN_ACTOR = "REBEAM_BENCH_TRACED_ACTOR"
TARGET = 1.10  # on may cost at most 10% of a call's p50


class Nowhere(SpanExporter):
    """Takes every span and keeps none; counts them by name in this process (:data:`SEEN`),
    so that the benchmark can check that "on" made the spans it claims to measure."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            SEEN[span.name] = SEEN.get(span.name, 0) + 1
        return SpanExportResult.SUCCESS


SEEN: dict[str, int] = {}  # spans exported in this process, by name
SPANS_ASKED = "spans?"  # a call TracedBench answers with its process's SEEN


def spans_provider(processor: str, sampled: bool = True) -> TracerProvider:
    """A tracer provider: the SDK, every span exported :class:`Nowhere` by the ``simple``
    or the ``batch`` processor. Its sampler is the SDK's default, ``ParentBased(ALWAYS_ON)``
    (what ``TracerProvider()`` gets unless ``OTEL_TRACES_SAMPLER`` says otherwise, named
    here so that the environment cannot change it); ``sampled=False``: ``ALWAYS_OFF`` at
    the roots instead, every new trace sampled out. A child follows its parent either way:
    the actor's handler spans are sampled as the caller's span was."""
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON if sampled else ALWAYS_OFF))
    exporter = Nowhere()
    provider.add_span_processor(
        BatchSpanProcessor(exporter) if processor == "batch" else SimpleSpanProcessor(exporter)
    )
    return provider


def record_spans(processor: str = "simple") -> None:
    """Set this process's tracer provider (:func:`spans_provider`)."""
    trace.set_tracer_provider(spans_provider(processor))


class TracedBench(BenchActor):
    """The benchmark actor in a process that traces (set up at this module's import)."""

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        if message == SPANS_ASKED:
            return dict(SEEN)
        return await super().handle_call(message, from_)


if os.environ.get(TRACE_IN_ACTOR):
    # The runtime imports the actor's module before it connects: a provider set and the
    # switch on now make its node trace.
    record_spans(os.environ[TRACE_IN_ACTOR])
    os.environ["REBEAM_TRACING"] = "1"


CHUNK = 50  # calls of one side before the other's turn, within a round


@dataclass
class Side:
    """One side of the comparison: a node and the actor it calls or casts to, and what was
    measured of it, round by round."""

    node: rebeam.Node
    actor: Actor
    p50s: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    sender_ns: list[float] = field(default_factory=list)  # this process's CPU per message
    receiver_ns: list[float] = field(default_factory=list)  # the actor process's

    async def calls(self, n: int) -> tuple[list[int], int, int]:
        """``n`` timed calls: their latencies, and the CPU both processes spent meanwhile."""
        me, them = cpu_ns(os.getpid()), cpu_ns(self.actor.os_pid)
        samples = await time_each(n, lambda i: self.node.call(self.actor.pid, PAYLOAD))
        return samples, cpu_ns(os.getpid()) - me, cpu_ns(self.actor.os_pid) - them

    async def casts(self, n: int) -> None:
        me, them = cpu_ns(os.getpid()), cpu_ns(self.actor.os_pid)
        self.rates.append(await cast_rate(self.node, self.actor.pid, n))
        self.sender_ns.append((cpu_ns(os.getpid()) - me) / n)
        self.receiver_ns.append((cpu_ns(self.actor.os_pid) - them) / n)


async def measure(backend: Backend, n: int, rounds: int) -> list[Row]:
    """The rows: call p50 (sampled in, and out) and cast throughput, on against off, each
    the median of the rounds' own ratios; and the CPU each end spends per message."""
    record_spans()
    off = await backend.actor(
        "benchmarks.bench_actor:BenchActor", None, "trace-off", namespace=NAMESPACE,
        extra=["--mailbox-max-messages", str(n * 50)],
    )  # fmt: skip
    on, on_batch = [await _traced_actor(backend, processor, n) for processor in ("simple", "batch")]
    grant = backend.client_credentials(NAMESPACE, Role.BACKEND)
    url = backend.url
    async with (
        rebeam.connect(url, namespace=NAMESPACE, credentials=grant, tracing=False) as plain,
        rebeam.connect(url, namespace=NAMESPACE, credentials=grant, tracing=True) as traced,
        rebeam.connect(url, namespace=NAMESPACE, credentials=grant, tracing=True) as batched,
    ):
        if plain._tracing is not None or traced._tracing is None or batched._tracing is None:
            raise RuntimeError("tracing is not off and on as the benchmark needs")
        # This process's provider is the simple processor's (OpenTelemetry takes one per
        # process): the batch side's node traces with a provider of its own.
        batch_provider = spans_provider("batch")
        batched._tracing = Tracing(
            batch_provider.get_tracer("rebeam"), batched.pid, batched.stats, batched._ratelog
        )
        rows = await _calls(
            Side(plain, off), [Side(traced, on), Side(batched, on_batch)], n, rounds
        )
        await _check_recorded(traced, on, 300 + n * rounds)
        with a_core_each([off.os_pid, on.os_pid]) as pinning:
            rows += await _casts(Side(plain, off), Side(traced, on), n * 10, rounds, pinning)
        rows += await _sampled_out(Side(plain, off), Side(traced, on), n, rounds)
        batch_provider.shutdown()
    return rows


async def _sampled_out(off: Side, on: Side, n: int, rounds: int) -> list[Row]:
    """The call p50 row with every trace sampled out at its root: the "on" node traces with
    a provider of its own whose root sampler is ``ALWAYS_OFF`` (the SDK's, asked at every
    root span as a ratio sampler would be), for these rounds only."""
    node = on.node
    sampling = node._tracing
    assert sampling is not None  # (measure checked)
    sampling.finish()
    provider = spans_provider("simple", sampled=False)
    node._tracing = Tracing(provider.get_tracer("rebeam"), node.pid, node.stats, node._ratelog)
    try:
        return (await _calls(off, [on], n, rounds, sampled=False))[:1]
    finally:
        node._tracing.finish()
        node._tracing = sampling
        provider.shutdown()


async def _check_recorded(node: rebeam.Node, actor: Actor, calls: int) -> None:
    """Raise unless both ends of the "on" side exported a span for every call they made and
    handled: a ratio of 1.00x must not come from spans that were never made."""
    at_actor = await node.call(actor.pid, SPANS_ASKED)
    made = {"caller": SEEN.get("call", 0), "actor": at_actor.get("handle_call", 0)}
    if min(made.values()) < calls:
        raise RuntimeError(f"tracing on exported fewer spans than its {calls} calls: {made}")


async def _traced_actor(backend: Backend, processor: str, n: int) -> Actor:
    os.environ[TRACE_IN_ACTOR] = processor  # read by the actor process only (child_env copies it)
    try:
        return await backend.actor(
            "benchmarks.bench_tracing:TracedBench", None, f"trace-on-{processor}",
            namespace=NAMESPACE, extra=["--mailbox-max-messages", str(n * 50)],
        )  # fmt: skip
    finally:
        del os.environ[TRACE_IN_ACTOR]


async def _calls(
    off: Side, ons: list[Side], n: int, rounds: int, sampled: bool = True
) -> list[Row]:
    sides = [off, *ons]
    for _ in range(300):  # warm every path
        for side in sides:
            await side.node.call(side.actor.pid, PAYLOAD)
    for i in range(rounds):
        # The sides take turns in chunks, so that the machine's other load falls on all
        # alike, and the one that goes first changes every round.
        order = sides[i % len(sides) :] + sides[: i % len(sides)]
        samples: dict[int, list[int]] = {id(side): [] for side in sides}
        cpu = {id(side): [0, 0] for side in sides}
        for _ in range(0, n, CHUNK):
            for side in order:
                taken, caller_ns, actor_ns = await side.calls(CHUNK)
                samples[id(side)].extend(taken)
                cpu[id(side)][0] += caller_ns
                cpu[id(side)][1] += actor_ns
        for side in order:
            side.p50s.append(p50_us(samples[id(side)]))
            side.sender_ns.append(cpu[id(side)][0] / len(samples[id(side)]))
            side.receiver_ns.append(cpu[id(side)][1] / len(samples[id(side)]))
    rows = []
    for on, batch in zip(ons, (False, True), strict=False):
        rows += _call_rows(off, on, n, rounds, batch, sampled)
    return rows


def _call_rows(off: Side, on: Side, n: int, rounds: int, batch: bool, sampled: bool) -> list[Row]:
    p50 = paired(on.p50s, off.p50s)
    sender = paired(on.sender_ns, off.sender_ns)
    receiver = paired(on.receiver_ns, off.receiver_ns)
    metric = "call p50, tracing on " + ("vs off" if sampled else "(sampled out) vs off")
    which = " (batch)" if batch else ""
    if batch:
        metric = "  (for reference) call p50, on (BatchSpanProcessor) vs off"
    # The target is the latency tracing adds to a call. Without a real-time priority, on
    # a machine with no core to spare, the SDK's work after each reply (off the call's
    # path) competes for a core with the next call's three processes: what that costs is
    # CPU, shown in the CPU rows, and this row is then a reference (docs/observability.md,
    # "Cost").
    judged = _realtime()
    unjudged = "" if judged else f" (no real-time priority: the target is read with {REALTIME})"
    what = "a span at each end, SDK, every span exported nowhere" if sampled else (
        "every trace sampled out at its root"
    )  # fmt: skip
    return [
        Row(
            metric,
            f"{p50.ours:.0f} us",
            f"{p50.theirs:.0f} us",
            p50.ratio,
            "-" if batch or not judged else f"<= {TARGET:.2f}x",
            None if batch or not judged else p50.ratio <= TARGET,
            note=f"{rounds} rounds x {n} calls in turns of {CHUNK}; on: {what}{unjudged}; "
            "median of the "
            f"round ratios ({p50.spread})",
        ),
        Row(
            f"  (for reference) caller CPU per call{which}",
            f"{sender.ours / 1000:.1f} us",
            f"{sender.theirs / 1000:.1f} us",
            sender.ratio,
            "-",
            None,
            note="CPU the calling process spent per call (schedstat), tracing on vs off",
        ),
        Row(
            f"  (for reference) actor CPU per call{which}",
            f"{receiver.ours / 1000:.1f} us",
            f"{receiver.theirs / 1000:.1f} us",
            receiver.ratio,
            "-",
            None,
            note="CPU the called actor's process spent per call, tracing on vs off",
        ),
    ]


async def _casts(off: Side, on: Side, n: int, rounds: int, pinning: str) -> list[Row]:
    await off.casts(n)
    await on.casts(n)
    for side in (off, on):
        side.rates.clear()
        side.sender_ns.clear()
        side.receiver_ns.clear()
    for i in range(rounds):
        for side in (off, on) if i % 2 == 0 else (on, off):
            await side.casts(n)
    rate = paired(on.rates, off.rates)
    receiver = paired(on.receiver_ns, off.receiver_ns)
    return [
        Row(
            "cast throughput, tracing on vs off",
            f"{rate.ours:,.0f}/s",
            f"{rate.theirs:,.0f}/s",
            rate.ratio,
            "-",
            None,
            note=f"{rounds} rounds x {n} casts, counted as handled; median of the round ratios "
            f"({rate.spread}); {pinning}",
        ),
        Row(
            "  (for reference) actor CPU per cast",
            f"{receiver.ours / 1000:.1f} us",
            f"{receiver.theirs / 1000:.1f} us",
            receiver.ratio,
            "-",
            None,
            note="CPU the receiving actor's process spent per cast, tracing on vs off",
        ),
    ]


async def _alone(n: int, rounds: int) -> list[Row]:
    from benchmarks._harness import Backend, Processes  # the actor process never runs this

    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as tmp:
        procs = Processes()
        backend: Backend | None = None
        try:
            backend = await Backend.start(Path(tmp) / "nats", (NAMESPACE,), procs)
            return await measure(backend, n, rounds)
        finally:
            procs.stop()  # the actors end while their server is still there
            if backend is not None:
                await backend.close()


REALTIME = "python -m benchmarks.bench_tracing --realtime"


def _realtime() -> bool:
    """Whether this process runs at a real-time priority (``--realtime``)."""
    return os.sched_getscheduler(0) in (os.SCHED_FIFO, os.SCHED_RR)


def main() -> int:
    """The tracing rows alone (``make bench`` prints them with the rest), with the load
    average before and after: on a shared machine the figures mean little without it."""
    from rebeam import _loop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="calls per side per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--realtime",
        action="store_true",
        help="run this process and every process it starts (nats-server, the actors) at a "
        "real-time priority, so that they get a core when they need one: the latency of a "
        "machine with CPU to spare, on one that has none (needs root or CAP_SYS_NICE)",
    )
    args = parser.parse_args()
    if args.realtime:
        try:  # inherited by the processes started from here on
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
        except OSError as exc:
            parser.error(f"--realtime: cannot take a real-time priority ({exc.strerror})")
    before = os.getloadavg()
    rows = _loop.run(_alone(args.n, args.rounds))
    print_table(rows)
    after = os.getloadavg()
    print(
        f"(load average {before[0]:.1f} before, {after[0]:.1f} after; {_loop.loop_name()} loop"
        + ("; real-time priority)" if args.realtime else ")")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
