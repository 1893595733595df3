"""Tracing's cost: call latency and cast throughput with tracing off and on, between the same
two kinds of processes, in alternating rounds (docs/observability.md, "Tracing").

Off is a plain :class:`BenchActor` and a node made with ``tracing=False``: what rebeam is
without tracing (its rows against raw nats-py are the main table's). On is the same actor
class in a process that set a tracer provider and ``REBEAM_TRACING=1`` at the import of this
module, and a node made with ``tracing=True`` here: a span at each end of every message,
recorded by the OpenTelemetry SDK and exported nowhere, so the figure is rebeam's and the
SDK's cost, not an exporter's. A second call row samples every trace out at its root (the
actor follows its parent's decision): the context still travels and every span is still
started, but the SDK records none, as with a sampling ratio in production.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    SamplingResult,
)

import rebeam
from benchmarks._measure import PAYLOAD, Row, a_core_each, cast_rate, p50_us, time_each
from benchmarks.bench_actor import BenchActor
from rebeam.auth.grants import Role

if TYPE_CHECKING:  # the actor process imports this module too: it needs no harness
    from benchmarks._harness import Backend

NAMESPACE = "bench"
TRACE_IN_ACTOR = "REBEAM_BENCH_TRACED_ACTOR"
TARGET = 1.10  # on may cost at most 10% of a call's p50


class Nowhere(SpanExporter):
    """Takes every span and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Roots(Sampler):
    """Samples a new trace in or out as :attr:`sampled` says at the time."""

    sampled = True

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        chosen = ALWAYS_ON if self.sampled else ALWAYS_OFF
        return chosen.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "Roots"


ROOTS = Roots()


def record_spans() -> None:
    """Set this process's tracer provider: the SDK, every span exported :class:`Nowhere`,
    a trace sampled as its root was (:data:`ROOTS` decides for this process's roots)."""
    provider = TracerProvider(sampler=ParentBased(ROOTS))
    provider.add_span_processor(SimpleSpanProcessor(Nowhere()))
    trace.set_tracer_provider(provider)


class TracedBench(BenchActor):
    """The benchmark actor in a process that traces (set up at this module's import)."""


if os.environ.get(TRACE_IN_ACTOR):
    # The runtime imports the actor's module before it connects: a provider set and the
    # switch on now make its node trace.
    record_spans()
    os.environ["REBEAM_TRACING"] = "1"


async def measure(backend: Backend, n: int, rounds: int) -> list[Row]:
    """The rows: call p50 (sampled in, and out) and cast throughput, on against off."""
    record_spans()
    off = await backend.actor(
        "benchmarks.bench_actor:BenchActor", None, "trace-off", namespace=NAMESPACE,
        extra=["--mailbox-max-messages", str(n * 50)],
    )  # fmt: skip
    os.environ[TRACE_IN_ACTOR] = "1"  # read by the actor process only (child_env copies it)
    try:
        on = await backend.actor(
            "benchmarks.bench_tracing:TracedBench", None, "trace-on", namespace=NAMESPACE,
            extra=["--mailbox-max-messages", str(n * 50)],
        )  # fmt: skip
    finally:
        del os.environ[TRACE_IN_ACTOR]
    grant = backend.client_credentials(NAMESPACE, Role.BACKEND)
    url = backend.url
    async with (
        rebeam.connect(url, namespace=NAMESPACE, credentials=grant, tracing=False) as plain,
        rebeam.connect(url, namespace=NAMESPACE, credentials=grant, tracing=True) as traced,
    ):
        if plain._tracing is not None or traced._tracing is None:
            raise RuntimeError("tracing is not off and on as the benchmark needs")
        calls = await _calls(plain, off.pid, traced, on.pid, n, rounds)
        with a_core_each([off.os_pid, on.os_pid]) as pinning:
            casts = await _casts(plain, off.pid, traced, on.pid, n * 10, rounds, pinning)
        ROOTS.sampled = False
        try:
            sampled_out = await _calls(plain, off.pid, traced, on.pid, n, rounds)
        finally:
            ROOTS.sampled = True
    return [calls, sampled_out, casts]


async def _calls(
    plain: rebeam.Node, off: Any, traced: rebeam.Node, on: Any, n: int, rounds: int
) -> Row:
    for _ in range(300):  # warm both paths
        await plain.call(off, PAYLOAD)
        await traced.call(on, PAYLOAD)
    offs, ons = [], []
    for _ in range(rounds):
        offs.append(p50_us(await time_each(n, lambda i: plain.call(off, PAYLOAD))))
        ons.append(p50_us(await time_each(n, lambda i: traced.call(on, PAYLOAD))))
    a, b = statistics.median(ons), statistics.median(offs)
    sampled = ROOTS.sampled
    return Row(
        "call p50, tracing on vs off" if sampled else "call p50, tracing on (sampled out) vs off",
        f"{a:.0f} us",
        f"{b:.0f} us",
        a / b,
        f"<= {TARGET:.2f}x",
        a / b <= TARGET,
        note=f"{rounds} rounds x {n} calls; on: "
        + ("a span at each end, SDK, exported nowhere" if sampled else "spans, none recorded"),
    )


async def _casts(
    plain: rebeam.Node,
    off: Any,
    traced: rebeam.Node,
    on: Any,
    n: int,
    rounds: int,
    pinning: str,
) -> Row:
    await cast_rate(plain, off, n)
    await cast_rate(traced, on, n)
    offs, ons = [], []
    for _ in range(rounds):
        offs.append(await cast_rate(plain, off, n))
        ons.append(await cast_rate(traced, on, n))
    a, b = statistics.median(ons), statistics.median(offs)
    return Row(
        "cast throughput, tracing on vs off",
        f"{a:,.0f}/s",
        f"{b:,.0f}/s",
        a / b,
        "-",
        None,
        note=f"{rounds} rounds x {n} casts, counted as handled; {pinning}",
    )
