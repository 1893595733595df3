"""What a traced message waits for: the SDK's work on a span that ended well is done once
what the task wrote meanwhile (a reply, the next request) has gone, for a few messages'
spans together, and a handler span that nothing asked for while the handler ran is started
in the SDK only then, with the times the handler began and ended (rebeam._spans;
docs/observability.md, "Cost").

A provider of each test's own, with a processor that notes when the SDK starts and ends
each span; no process-wide state is touched."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, SamplingResult

from rebeam._envelope import CALL, CAST
from rebeam._ratelog import RateLog
from rebeam._spans import _MAX_PUT_OFF, Tracing
from rebeam._stats import Stats
from rebeam.pids import Pid

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ME = Pid.for_incarnation("ns", "run/sup/me", 1)
OTHER = Pid.for_incarnation("ns", "run/sup/other", 1)


class Seen(SpanProcessor):
    """The names of the spans the SDK started and ended, in order; ``raising`` ends the
    first span it is handed with an error, as a broken processor would."""

    def __init__(self, *, raising: bool = False) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []
        self.some_ended = asyncio.Event()
        self._raising = raising

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)
        self.some_ended.set()
        if self._raising and len(self.ended) == 1:
            raise RuntimeError("a broken span processor")


def traced(seen: Seen) -> tuple[Tracing, InMemorySpanExporter]:
    provider = TracerProvider()
    provider.add_span_processor(seen)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing = Tracing(
        provider.get_tracer("rebeam"), ME, Stats(), RateLog(logging.getLogger("t"), "t")
    )
    tracing.serve("Leaf")
    return tracing, memory


def a_message(kind: int) -> tuple[int, list[str]]:
    """The kind and trace field of a message from a traced sender, as a handler span takes them."""
    return int(kind), [PARENT]


async def ended(seen: Seen) -> None:
    await asyncio.wait_for(seen.some_ended.wait(), 10)


async def test_a_leaf_handler_span_is_made_after_the_handler_with_its_times() -> None:
    seen = Seen()
    tracing, memory = traced(seen)
    before = time.time_ns()
    with tracing.handling(*a_message(CALL), lambda: None):
        assert seen.started == [], "nothing of the SDK while the handler runs"
        inside = time.time_ns()
    after = time.time_ns()
    assert seen.started == [], "nor before the reply has gone"
    assert seen.ended == []
    await ended(seen)
    (span,) = memory.get_finished_spans()
    assert span.name == "handle_call"
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time <= inside <= span.end_time <= after
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT.split("-")[2]
    assert span.attributes is not None
    assert span.attributes["rebeam.actor.class"] == "Leaf"


async def test_a_handler_span_asked_for_its_context_parents_what_it_sends() -> None:
    seen = Seen()
    tracing, memory = traced(seen)
    with tracing.handling(*a_message(CAST), lambda: None), tracing.sending(CALL, OTHER) as field:
        # Both planned (test_planned): their SDK spans come later.
        assert seen.started == []
    tracing.finish()  # as a node's close does
    assert seen.started == ["call", "handle_cast"]
    assert seen.ended == ["call", "handle_cast"]
    spans = {s.name: s for s in memory.get_finished_spans()}
    handler, call = spans["handle_cast"].context, spans["call"].context
    caller, sender = spans["call"].parent, spans["handle_cast"].parent
    assert caller is not None
    assert sender is not None
    assert caller.span_id == handler.span_id
    assert f"{sender.trace_id:032x}-{sender.span_id:016x}" == PARENT[3:52]
    assert call.trace_id == handler.trace_id == sender.trace_id
    assert field is not None
    assert field[0].split("-")[2] == f"{call.span_id:016x}"


async def test_a_sender_span_that_ended_well_is_ended_in_the_sdk_later() -> None:
    seen = Seen()
    tracing, memory = traced(seen)
    with tracing.sending(CAST, OTHER):
        pass
    done = time.time_ns()
    assert seen.ended == []
    await ended(seen)
    (span,) = memory.get_finished_spans()
    assert span.end_time is not None
    assert span.end_time <= done, "with the time it ended"


async def turns(n: int) -> None:
    """Let the event loop run ``n`` times round."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_each_message_s_span_is_ended_two_turns_later_on_its_own() -> None:
    # Not held for a batch: a batch's SDK work held up the reply of whichever message came
    # during it (docs/observability.md, "Cost").
    seen = Seen()
    tracing, _ = traced(seen)
    with tracing.sending(CAST, OTHER):
        pass
    assert seen.ended == [], "not in the block of the message"
    await turns(1)
    assert seen.ended == [], "nor in the turn the message's write takes"
    await turns(2)
    assert seen.ended == ["cast"]
    with tracing.handling(*a_message(CALL), lambda: None):
        pass
    await turns(3)
    assert seen.ended == ["cast", "handle_call"]


async def test_spans_put_off_in_a_burst_are_ended_together_and_never_more_than_a_few() -> None:
    seen = Seen()
    tracing, _ = traced(seen)
    for _ in range(_MAX_PUT_OFF - 1):  # a burst: no turn of the loop between the messages
        with tracing.sending(CAST, OTHER):
            pass
    assert seen.ended == []
    with tracing.sending(CAST, OTHER):
        pass
    assert seen.ended == ["cast"] * _MAX_PUT_OFF, "at most so many wait"
    with tracing.sending(CAST, OTHER):
        pass
    await turns(3)
    assert seen.ended == ["cast"] * (_MAX_PUT_OFF + 1)


class Asked(Sampler):
    """The default sampler, noting the name of each span it is asked about: a span of a
    trace sampled out reaches no span processor, but its start asks the sampler."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self._sampler = ParentBased(ALWAYS_ON)

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.asked.append(args[2])  # (parent context, trace id, name, ...)
        return self._sampler.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "Asked"


async def test_a_handler_span_of_a_trace_sampled_out_is_started_and_ended_two_turns_later() -> None:
    sampler = Asked()
    tracing = Tracing(
        TracerProvider(sampler=sampler).get_tracer("rebeam"), ME, Stats(),
        RateLog(logging.getLogger("t"), "t"),
    )  # fmt: skip
    sampled_out = [PARENT[:-2] + "00"]
    with tracing.handling(int(CAST), sampled_out, lambda: None):
        pass
    assert sampler.asked == []
    await turns(3)
    assert sampler.asked == ["handle_cast"], "started and ended two turns later, alone"


async def test_a_span_put_off_is_ended_when_closing() -> None:
    seen = Seen()
    tracing, _ = traced(seen)
    with tracing.sending(CAST, OTHER):
        pass
    assert seen.ended == []
    tracing.finish()  # as a node's close does
    assert seen.ended == ["cast"]
    await turns(3)
    assert seen.ended == ["cast"], "ended once"


async def test_an_error_ends_the_sender_span_at_once() -> None:
    seen = Seen()
    tracing, memory = traced(seen)
    with pytest.raises(TimeoutError), tracing.sending(CALL, OTHER):
        raise TimeoutError("no reply")
    (span,) = memory.get_finished_spans()
    assert span.status.status_code.name == "ERROR"


async def test_a_raising_span_processor_loses_one_span_not_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen = Seen(raising=True)
    tracing, memory = traced(seen)
    for _ in range(2):
        with tracing.sending(CAST, OTHER):
            pass
    tracing.finish()
    assert seen.ended == ["cast", "cast"]
    assert len(memory.get_finished_spans()) == 1  # the first never reached the exporter
    assert "could not end a span" in caplog.text
    assert "a broken span processor" in caplog.text


async def test_a_burst_without_a_turn_of_the_loop_puts_off_a_few_spans_at_most() -> None:
    seen = Seen()
    tracing, _ = traced(seen)
    for n in range(1, _MAX_PUT_OFF * 2 + 1):
        with tracing.sending(CAST, OTHER):
            pass
        assert len(seen.ended) == n - n % _MAX_PUT_OFF
