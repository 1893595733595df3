"""A sender span is planned before its send and started in the SDK after it: the envelope
carries the ids and sampling decision the SDK's span is then made with, its start time is
the time taken before the send, and a span sampled out never reaches the SDK (rebeam._planned;
docs/observability.md, "Tracing"). A tracer that is not the SDK's starts the span before the
send, as it always did.

A provider of each test's own (in process), and one call across real processes."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, TraceState

import rebeam
from rebeam._envelope import CALL, CAST, SEND
from rebeam._ratelog import RateLog
from rebeam._spans import Tracing
from rebeam._stats import Stats
from rebeam.pids import Pid
from tests.sdk.hostile_inputs import until
from tests.tracing.spanfiles import RELAY, actor_env, read_spans
from tests.tracing.traced_actors import record

ME = Pid.for_incarnation("ns", "run/sup/me", 1)
OTHER = Pid.for_incarnation("ns", "run/sup/other", 1)
REMOTE = SpanContext(
    0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, is_remote=True,
    trace_flags=TraceFlags(TraceFlags.SAMPLED), trace_state=TraceState([("congo", "t61rc")]),
)  # fmt: skip
UNSAMPLED = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True)


class Seen(SpanProcessor):
    """The names of the spans the SDK started and ended, in order (a span of a trace
    sampled out reaches no processor); ``raising``: every end raises, as a broken
    processor's would."""

    def __init__(self, *, raising: bool = False) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []
        self._raising = raising

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)
        if self._raising:
            raise RuntimeError("a broken span processor")


class Asked(Sampler):
    """``sampler``'s decisions, each one noted: how often the sampler was asked."""

    def __init__(self, sampler: Sampler) -> None:
        self.asked = 0
        self._sampler = sampler

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        self.asked += 1
        return self._sampler.should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "Asked"


class Coin(Sampler):
    """A custom sampler that decides at random: asked twice about a span, it would not
    always say the same."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return (ALWAYS_ON if random.random() < 0.5 else ALWAYS_OFF).should_sample(*args, **kwargs)

    def get_description(self) -> str:
        return "Coin"


def traced(
    sampler: Sampler | None = None, seen: Seen | None = None, tracer: Any = None
) -> tuple[Tracing, InMemorySpanExporter, Seen]:
    seen = seen or Seen()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(seen)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing = Tracing(
        tracer or provider.get_tracer("rebeam"), ME, Stats(), RateLog(logging.getLogger("t"), "t")
    )
    return tracing, memory, seen


def traceparent(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


@contextlib.contextmanager
def current(parent: SpanContext | None) -> Iterator[Context]:
    """``parent`` the current span (as a handler's would be), or none at all."""
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent)) if parent else Context()
    token = otel_context.attach(context)
    try:
        yield context
    finally:
        otel_context.detach(token)


async def test_the_envelope_carries_the_ids_of_the_span_the_sdk_makes_after_the_send() -> None:
    tracing, memory, seen = traced()
    before = time.time_ns()
    with tracing.sending(CALL, OTHER) as field:
        assert seen.started == [], "nothing of the SDK before the send"
        inside = time.time_ns()
    after = time.time_ns()
    assert seen.started == [], "nor when the call has its answer"
    tracing.finish()  # as a node's close does
    (span,) = memory.get_finished_spans()
    assert field == [traceparent(span)]
    assert (span.name, span.kind, span.parent) == ("call", SpanKind.CLIENT, None)
    assert span.attributes == {
        "messaging.system": "rebeam",
        "messaging.operation.name": "call",
        "messaging.destination.name": str(OTHER),
    }
    assert span.start_time is not None
    assert span.end_time is not None
    assert before <= span.start_time <= inside <= span.end_time <= after


async def test_a_planned_span_is_the_child_of_the_current_span_with_its_tracestate() -> None:
    tracing, memory, _ = traced()
    with current(REMOTE), tracing.sending(CAST, OTHER) as field:
        pass
    tracing.finish()
    (span,) = memory.get_finished_spans()
    assert span.kind is SpanKind.PRODUCER
    assert span.parent is not None
    assert (span.parent.trace_id, span.parent.span_id) == (REMOTE.trace_id, REMOTE.span_id)
    assert field == [traceparent(span), "congo=t61rc"]
    assert span.context.trace_state == REMOTE.trace_state


async def test_a_span_under_a_local_span_is_its_child() -> None:
    tracing, memory, _ = traced()
    provider_tracer = TracerProvider().get_tracer("test")
    with provider_tracer.start_as_current_span("root") as root, tracing.sending(SEND, OTHER):
        pass
    tracing.finish()
    (span,) = memory.get_finished_spans()
    assert span.parent is not None
    assert span.parent.span_id == root.get_span_context().span_id
    assert span.context.trace_id == root.get_span_context().trace_id


SAMPLERS = {
    "always on": lambda: ALWAYS_ON,
    "always off": lambda: ALWAYS_OFF,
    "parent based, on": lambda: ParentBased(ALWAYS_ON),
    "parent based, off": lambda: ParentBased(ALWAYS_OFF),
    "trace id ratio": lambda: TraceIdRatioBased(0.5),
    "parent based trace id ratio": lambda: ParentBasedTraceIdRatio(0.5),
}
PARENTS = {"no parent": None, "sampled parent": REMOTE, "unsampled parent": UNSAMPLED}


@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=SAMPLERS.keys())
@pytest.mark.parametrize("parent", PARENTS.values(), ids=PARENTS.keys())
async def test_the_span_is_sampled_as_its_envelope_says(
    sampler: Any, parent: SpanContext | None
) -> None:
    asked = Asked(sampler())
    tracing, memory, _ = traced(asked)
    decide = sampler()  # the same sampler, asked again with the span's own trace id
    fields = []
    with current(parent) as context:
        for _ in range(64):  # new traces with the ratio sampler: both ways, but by 2**-63
            with tracing.sending(CAST, OTHER) as field:
                fields.append(field[0])
    tracing.finish()
    exported = {traceparent(s) for s in memory.get_finished_spans()}
    for text in fields:
        sampled = int(text[-2:], 16) & TraceFlags.SAMPLED
        assert (text in exported) == bool(sampled), text
        expected = decide.should_sample(context, int(text[3:35], 16), "cast", SpanKind.PRODUCER)
        assert bool(sampled) == expected.decision.is_sampled(), text
    assert asked.asked == len(fields), "the sampler is asked once a span"


async def test_a_random_sampler_decides_once_and_the_envelope_says_what_it_decided() -> None:
    asked = Asked(Coin())
    tracing, memory, _ = traced(asked)
    fields = []
    for _ in range(64):
        with tracing.sending(CALL, OTHER) as field:
            fields.append(field[0])
    tracing.finish()
    exported = {traceparent(s) for s in memory.get_finished_spans()}
    assert exported == {t for t in fields if int(t[-2:], 16) & TraceFlags.SAMPLED}
    assert 0 < len(exported) < len(fields)
    assert asked.asked == len(fields)


class RecordOnly(Sampler):
    """Records every span without sampling it: processors see it, exporters do not."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


async def test_a_span_recorded_but_not_sampled_is_started_after_the_send() -> None:
    tracing, memory, seen = traced(RecordOnly())
    with tracing.sending(CALL, OTHER) as field:
        assert seen.started == []
    tracing.finish()
    assert seen.ended == ["call"]
    assert memory.get_finished_spans() == ()
    assert not int(field[0][-2:], 16) & TraceFlags.SAMPLED


async def test_a_span_sampled_out_never_reaches_the_sdk() -> None:
    asked = Asked(ALWAYS_OFF)
    tracing, memory, seen = traced(asked)
    with pytest.raises(TimeoutError), tracing.sending(CALL, OTHER) as field:
        raise TimeoutError("no reply")
    with tracing.sending(CALL, OTHER):
        pass
    tracing.finish()
    assert not int(field[0][-2:], 16) & TraceFlags.SAMPLED
    assert (seen.started, memory.get_finished_spans()) == ([], ())
    assert asked.asked == 2, "asked before each send, and not again"


async def test_a_root_that_parent_based_always_off_drops_never_reaches_the_sdk() -> None:
    """The planner takes ALWAYS_OFF's decision for a root itself: the envelope says sampled
    out, and neither the sender's span nor a start reaches the SDK."""
    tracing, memory, seen = traced(ParentBased(ALWAYS_OFF))
    with tracing.sending(CALL, OTHER) as field:
        pass
    tracing.finish()
    assert not int(field[0][-2:], 16) & TraceFlags.SAMPLED
    assert (seen.started, memory.get_finished_spans()) == ([], ())


async def test_an_error_starts_and_ends_the_span_at_once_as_planned() -> None:
    tracing, memory, _ = traced()
    before = time.time_ns()
    with pytest.raises(TimeoutError), tracing.sending(CALL, OTHER) as field:
        raise TimeoutError("no reply")
    raised = time.time_ns()
    (span,) = memory.get_finished_spans()  # no finish(): at once
    assert field == [traceparent(span)]
    assert span.status.status_code.name == "ERROR"
    assert span.status.description == "TimeoutError: no reply"
    assert [e.name for e in span.events] == ["exception"]
    assert span.start_time is not None
    assert before <= span.start_time <= raised


async def test_a_raising_span_processor_does_not_hide_the_error_that_ended_a_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracing, _, _ = traced(seen=Seen(raising=True))
    with pytest.raises(TimeoutError), tracing.sending(CALL, OTHER):
        raise TimeoutError("no reply")
    assert "could not end a span" in caplog.text
    assert "a broken span processor" in caplog.text


def a_message(kind: int, parent: SpanContext) -> tuple[int, list[str]]:
    """The kind and trace field of a message sent under ``parent``, as a handler span takes
    them."""
    return int(kind), [
        f"00-{parent.trace_id:032x}-{parent.span_id:016x}-{int(parent.trace_flags):02x}"
    ]


async def test_a_handler_span_asked_for_its_context_is_planned_until_more_is_asked() -> None:
    tracing, memory, seen = traced()
    with tracing.handling(*a_message(CALL, REMOTE), lambda: None):
        current = trace.get_current_span()
        context = current.get_span_context()
        assert current.is_recording()
        assert seen.started == [], "its context and whether it records: planned"
        current.set_attribute("asked", "yes")
        assert seen.started == ["handle_call"], "anything more: started at once"
    tracing.finish()
    (span,) = memory.get_finished_spans()
    assert span.context is not None
    assert (span.context.trace_id, span.context.span_id) == (context.trace_id, context.span_id)
    assert span.context.trace_flags == context.trace_flags
    assert span.parent is not None
    assert (span.parent.trace_id, span.parent.span_id) == (REMOTE.trace_id, REMOTE.span_id)
    assert span.attributes is not None
    assert span.attributes["asked"] == "yes"


async def test_a_planned_handler_span_of_a_trace_sampled_out_never_reaches_the_sdk() -> None:
    asked = Asked(ParentBased(ALWAYS_ON))
    tracing, memory, seen = traced(asked)
    with tracing.handling(*a_message(CAST, UNSAMPLED), lambda: None):
        assert not trace.get_current_span().is_recording()
        with tracing.sending(CALL, OTHER) as field:
            pass
    tracing.finish()
    assert not int(field[0][-2:], 16) & TraceFlags.SAMPLED
    assert (seen.started, memory.get_finished_spans()) == ([], ())
    assert asked.asked == 2, "the handler span and the call's, once each"


class Elsewhere(trace.Tracer):
    """A tracer of another implementation of the API (here handing out the SDK's spans):
    rebeam cannot plan its spans."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer.start_span(*args, **kwargs)

    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Any:
        return self._tracer.start_as_current_span(*args, **kwargs)


async def test_a_tracer_that_is_not_the_sdks_starts_the_span_before_the_send() -> None:
    seen = Seen()
    provider = TracerProvider()
    provider.add_span_processor(seen)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing, _, _ = traced(tracer=Elsewhere(provider.get_tracer("rebeam")))
    with tracing.sending(CALL, OTHER) as field:
        assert seen.started == ["call"]
    tracing.finish()
    (span,) = memory.get_finished_spans()
    assert field == [traceparent(span)]
    with pytest.raises(TimeoutError), tracing.sending(CALL, OTHER):
        raise TimeoutError("no reply")
    assert memory.get_finished_spans()[-1].status.status_code.name == "ERROR"
    with tracing.handling(*a_message(CALL, REMOTE), lambda: None):
        trace.get_current_span().get_span_context()
        assert seen.started[-1] == "handle_call", "its context: started at once"


async def test_an_sdk_whose_span_class_rebeam_does_not_know_starts_spans_before_the_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As a later SDK whose span class took other arguments would be (to rebeam's check).
    class Other(sdk_trace.Span):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(sdk_trace, "_Span", Other)
    tracing, memory, seen = traced()
    assert tracing._planner is None
    with tracing.sending(CALL, OTHER) as field:
        assert seen.started == ["call"], "started before the send"
    tracing.finish()
    assert field == [traceparent(memory.get_finished_spans()[-1])]


def made(span: ReadableSpan) -> dict[str, Any]:
    """Everything an exporter sees of ``span`` but its ids and times."""
    seen = json.loads(span.to_json())
    for key in ("context", "parent_id", "start_time", "end_time"):
        seen.pop(key)
    parent = span.parent
    return {
        **seen,
        "flags": int(span.context.trace_flags) if span.context else None,
        "state": span.context.trace_state.to_header() if span.context else None,
        "remote parent": parent.is_remote if parent else None,
        "scope": span.instrumentation_scope,
        "limits": repr(span._limits) if isinstance(span, sdk_trace.Span) else None,
        "dropped attributes": span.dropped_attributes,
        "attributes' limits": (span._attributes.maxlen, span._attributes.max_value_len)  # type: ignore[union-attr]
        if span._attributes is not None
        else None,
    }


@pytest.mark.parametrize(
    "sampler", [None, ParentBased(ALWAYS_ON), ParentBasedTraceIdRatio(1.0), Coin()]
)
@pytest.mark.parametrize("parent", [None, REMOTE])
async def test_a_planned_span_is_the_span_start_span_makes(
    sampler: Sampler | None, parent: SpanContext | None
) -> None:
    """The SDK's span of a plan is made as start_span makes one: the same fields, the same
    processors told."""
    tracing, memory, seen = traced(sampler)
    tracer = tracing._tracer
    with current(parent):
        with tracing.sending(CALL, OTHER) as field:
            pass
        tracing.finish()
        attributes = {**tracing._sending[CALL], "messaging.destination.name": OTHER._text}
        started = time.time_ns()
        tracer.start_span("call", kind=SpanKind.CLIENT, attributes=attributes).end()
    spans = memory.get_finished_spans()
    if len(spans) < 2:  # Coin sampled one of them out: so does it the other, one day
        return
    planned, direct = spans
    assert made(planned) == made(direct)
    assert field[0].endswith(f"-{int(planned.context.trace_flags):02x}")
    assert seen.started == seen.ended == ["call", "call"]
    assert planned.start_time is not None
    assert planned.start_time <= started


@pytest.mark.nats
async def test_across_processes_the_callers_span_is_the_parent_and_spans_the_handler(
    launcher, nats_server, namespace, tmp_path, memory_spans
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    child = await launcher.start(RELAY, env=actor_env(spans_file, tracing=True))
    async with rebeam.connect(nats_server.url, namespace=namespace, tracing=True) as node:
        assert await node.call(child.pid, "ping") == "ping"
        assert memory_spans.get_finished_spans() == (), "the caller's span is ended later"
    (caller,) = memory_spans.get_finished_spans()  # closing the node ended it

    async def handler_recorded() -> bool:
        return len(read_spans(spans_file)) >= 1

    await until(handler_recorded, "the actor's span")
    (handler,) = read_spans(spans_file)
    mine = record(caller)
    assert (mine["name"], mine["kind"]) == ("call", "CLIENT")
    assert (handler["name"], handler["kind"]) == ("handle_call", "SERVER")
    assert handler["parent_id"] == mine["span_id"]
    assert handler["trace_id"] == mine["trace_id"]
    # One clock (the machine's): the call began before its request left, and ended once its
    # reply came, after the handler began. Not necessarily after the handler's span ended: the
    # reply is written the moment it is made, inside the handler's span, and the caller may
    # have it (and end its span) before the actor takes the time its handler ended.
    assert mine["start"] <= handler["start"] <= mine["end"]
    assert handler["start"] <= handler["end"]


LOCAL = SpanContext(
    REMOTE.trace_id, REMOTE.span_id, is_remote=False, trace_flags=REMOTE.trace_flags,
    trace_state=REMOTE.trace_state,
)  # fmt: skip


@pytest.mark.parametrize(
    "parent",
    [
        REMOTE, UNSAMPLED, LOCAL, SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=False),
        trace.INVALID_SPAN_CONTEXT,  # a root: the root sampler's decision, taken by the planner
    ],
)  # fmt: skip
@pytest.mark.parametrize("root", [ALWAYS_ON, ALWAYS_OFF])
async def test_under_the_default_sampler_a_span_is_decided_as_parent_based_decides(
    parent: SpanContext, root: Sampler
) -> None:
    sampler = ParentBased(root)
    tracing, _, _ = traced(sampler)
    planner = tracing._planner
    assert planner is not None
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    attributes = {"messaging.system": "rebeam"}
    plan = planner.plan("call", SpanKind.CLIENT, attributes, 0, context, parent)
    said = sampler.should_sample(context, parent.trace_id, "call", SpanKind.CLIENT, attributes, ())
    assert plan.decision is said.decision
    assert dict(plan.attributes or {}) == dict(said.attributes)
    assert plan.trace_state == said.trace_state
    assert plan.recorded is (said.decision is not Decision.DROP)


async def test_a_parent_based_sampler_with_delegates_of_its_own_is_asked() -> None:
    delegate = Asked(ALWAYS_OFF)
    tracing, memory, _ = traced(ParentBased(ALWAYS_ON, remote_parent_sampled=delegate))
    with current(REMOTE), tracing.sending(CALL, OTHER) as field:
        pass
    tracing.finish()
    assert delegate.asked == 1
    assert field[0].endswith("-00"), "its decision, not the parent's flag"
    assert memory.get_finished_spans() == ()


class Recorded(SpanProcessor):
    """Keeps each ended span, as an exporter would see it, and the SDK's span object too."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


# How a provider's processors and limits may be, for the comparisons below: a processor
# told of each start (rebeam starts the span as start_span does), the SDK's exporting
# processors alone (whose on_start does nothing: rebeam tells them nothing either), and
# limits under which rebeam's attributes are cut or dropped (the SDK cleans them itself).
SETUPS = {
    "a processor told of starts": ({}, True),
    "the SDK's processors alone": ({}, False),
    "values cut short": ({"max_span_attribute_length": 6}, False),
    "attributes dropped": ({"max_span_attributes": 2}, False),
}


def compared(setup: str) -> tuple[Tracing, InMemorySpanExporter, TracerProvider]:
    limits, told = SETUPS[setup]
    provider = TracerProvider(span_limits=SpanLimits(**limits))
    if told:
        provider.add_span_processor(Seen())
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(BatchSpanProcessor(InMemorySpanExporter()))
    tracing = Tracing(
        provider.get_tracer("rebeam"), ME, Stats(), RateLog(logging.getLogger("t"), "t")
    )
    tracing.serve("Leaf")
    return tracing, memory, provider


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("parent", [None, REMOTE])
async def test_a_planned_span_is_the_span_start_span_makes_however_the_provider_is(
    setup: str, parent: SpanContext | None
) -> None:
    tracing, memory, _ = compared(setup)
    with current(parent):
        with tracing.sending(CALL, OTHER):
            pass
        tracing.finish()
        attributes = {**tracing._sending[CALL], "messaging.destination.name": OTHER._text}
        tracing._tracer.start_span("call", kind=SpanKind.CLIENT, attributes=attributes).end()
    planned, direct = memory.get_finished_spans()
    assert made(planned) == made(direct)
    if setup == "values cut short":
        assert planned.attributes == {key: value[:6] for key, value in attributes.items()}
    if setup == "attributes dropped":
        assert planned.dropped_attributes == 1


@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("asked", [False, True], ids=["a leaf", "its context asked for"])
async def test_a_handler_span_is_the_span_start_span_makes_however_the_provider_is(
    setup: str, asked: bool
) -> None:
    tracing, memory, _ = compared(setup)
    kind, field = a_message(CALL, REMOTE)
    started = time.time_ns()
    with tracing.handling(kind, field, lambda: None):
        if asked:  # as a call made by the handler asks it: planned, not started
            trace.get_current_span().get_span_context()
    tracing.finish()
    remote = SpanContext(REMOTE.trace_id, REMOTE.span_id, is_remote=True,
                         trace_flags=REMOTE.trace_flags)  # fmt: skip
    tracing._tracer.start_span(
        "handle_call", context=trace.set_span_in_context(trace.NonRecordingSpan(remote)),
        kind=SpanKind.SERVER, attributes=tracing._handling[CALL],
    ).end()  # fmt: skip
    handler, direct = memory.get_finished_spans()
    assert made(handler) == made(direct)
    assert handler.start_time is not None
    assert started <= handler.start_time


async def test_a_processor_added_later_is_told_of_the_starts_after() -> None:
    tracing, memory, provider = compared("the SDK's processors alone")
    with tracing.sending(CALL, OTHER):
        pass
    tracing.finish()
    seen = Seen()
    provider.add_span_processor(seen)
    with tracing.sending(CAST, OTHER):
        pass
    with tracing.handling(*a_message(CALL, REMOTE), lambda: None):
        pass
    tracing.finish()
    assert seen.started == seen.ended == ["cast", "handle_call"]
    assert len(memory.get_finished_spans()) == 3


async def test_attributes_rebeam_made_are_the_sdks_own_kind_and_can_still_be_set() -> None:
    tracing, _, provider = compared("the SDK's processors alone")
    recorded = Recorded()
    provider.add_span_processor(recorded)
    with tracing.handling(*a_message(CALL, REMOTE), lambda: None):
        trace.get_current_span().set_attribute("asked", "yes")
    with tracing.handling(*a_message(CALL, REMOTE), lambda: None):
        pass
    tracing.finish()
    asked, leaf = recorded.spans
    assert asked.attributes is not None
    assert dict(asked.attributes) == {**tracing._handling[CALL], "asked": "yes"}
    assert type(leaf.attributes) is type(asked.attributes)
    with pytest.raises(TypeError):  # an ended span's attributes are immutable, as the SDK's
        leaf.attributes["late"] = "no"  # type: ignore[index]


async def test_a_traced_call_that_cannot_be_sent_raises_before_it_is_awaited_and_is_an_error(
    nats_server, namespace, memory_spans
) -> None:
    async with rebeam.connect(nats_server.url, namespace=namespace, tracing=True) as node:
        with pytest.raises(rebeam.MessageTooLarge):
            node.call(OTHER, "x" * (2 * node._limit))
    (span,) = memory_spans.get_finished_spans()
    assert (span.name, span.status.status_code.name) == ("call", "ERROR")
    assert "MessageTooLarge" in (span.status.description or "")


async def test_the_sdks_span_metrics_count_a_planned_span_as_they_count_start_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Turned on, the SDK's own span metrics are asked for each planned span as start_span
    asks them (off, they are its no-op kind, and rebeam does not ask them)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    counts = {}
    for planned in (True, False):
        reader = InMemoryMetricReader()
        provider = TracerProvider(meter_provider=MeterProvider(metric_readers=[reader]))
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        tracing = Tracing(
            provider.get_tracer("rebeam"), ME, Stats(), RateLog(logging.getLogger("t"), "t")
        )
        assert tracing._planner is not None
        with current(REMOTE):
            for _ in range(3):
                if planned:
                    with tracing.sending(CALL, OTHER):
                        pass
                else:
                    tracing._tracer.start_span("call", kind=SpanKind.CLIENT).end()
            tracing.finish()
        data = reader.get_metrics_data()
        assert data is not None
        counts[planned] = {
            (metric.name, tuple(sorted(point.attributes.items())), point.value)  # type: ignore[union-attr]
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name.startswith("otel.sdk.span")
            for point in metric.data.data_points
        }
    assert counts[True] == counts[False]
    assert any(value == 3 for _, _, value in counts[True]), counts[True]
