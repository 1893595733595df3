"""Sender spans planned before the send and started in the OpenTelemetry SDK after it
(rebeam._spans; docs/observability.md, "Tracing").

A request carries its sender span's context, so that span's ids and sampling decision must
be known before the request leaves; the SDK's span object need not exist yet, and making it
is most of what a traced call used to wait for. So the ids and the decision are chosen on
the path (:meth:`Planner.plan`), with the provider's own id generator and sampler, and the
SDK's span is started later (:meth:`Planner.start`) with ``start_time=`` the time taken
before the send, by a tracer of rebeam's own: a copy of the SDK's whose id generator and
sampler hand out what was planned for that one span. The span the SDK makes then has the
ids, flags and trace state the envelope carried, and the sampler was asked once.

A handler span whose context something asks for while the handler runs (a call it makes,
whose envelope names it as the parent) is planned the same way, under the sender's context
from the envelope.

Imported only when the OpenTelemetry SDK can be: a tracer of another implementation keeps
the eager start (:func:`for_tracer` says None).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context, get_current
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, TraceState
from opentelemetry.util.types import Attributes

__all__ = ["Plan", "Planner", "for_tracer"]

_SAMPLED = int(trace.TraceFlags.SAMPLED)
# W3C Trace Context level 2's flag (the trace id's low 56 bits are random), which the SDK
# sets on a span whose parent has it, or on a root when its id generator says so; an API
# older than the flag has none.
_RANDOM = int(getattr(trace.TraceFlags, "RANDOM_TRACE_ID", 0))


def for_tracer(tracer: trace.Tracer) -> Planner | None:
    """A planner for ``tracer``, or None if its spans cannot be planned: a tracer that is
    not exactly the SDK's (another implementation, or a subclass that may start spans its
    own way), or one the SDK disabled (it hands out its parent's context, not new ids)."""
    if type(tracer) is not sdk_trace.Tracer:
        return None
    enabled = getattr(tracer, "_is_enabled", None)  # SDK versions with tracer configs
    if enabled is not None and not enabled():
        return None
    return Planner(tracer)


class Plan:
    """What a span will be, chosen before the SDK makes it: the trace field of an envelope
    sent under it, and what the SDK needs to start the same span later."""

    __slots__ = (
        "field", "flags", "new_trace", "parent", "result", "span_id", "started", "trace_id"
    )  # fmt: skip

    def __init__(
        self,
        parent: Context,
        trace_id: int,
        new_trace: bool,
        span_id: int,
        result: SamplingResult,
        flags: int,
        started: int,
    ) -> None:
        self.parent = parent  # immutable: the parent's context as it was, kept
        self.trace_id = trace_id
        self.new_trace = new_trace  # the SDK then asks the id generator for a trace id
        self.span_id = span_id
        self.result = result
        self.flags = flags
        self.started = started
        text = f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"
        state = result.trace_state
        # Most traces carry no tracestate: an empty one's header is a join over nothing.
        self.field = [text, state.to_header()] if state else [text]

    def context(self) -> SpanContext:
        """The context the SDK's span will have."""
        return SpanContext(
            self.trace_id,
            self.span_id,
            is_remote=False,
            trace_flags=trace.TraceFlags(self.flags),
            trace_state=self.result.trace_state,
        )

    def recording(self) -> bool:
        """Whether the SDK will record the span: if not, it needs no SDK span at all."""
        return self.result.decision is not Decision.DROP


class Planner:
    """Plans the spans of one node, and starts them in the SDK as planned."""

    def __init__(self, tracer: sdk_trace.Tracer) -> None:
        self._ids = tracer.id_generator  # the provider's, used as the SDK would
        self._should_sample = tracer.sampler.should_sample
        random_roots = getattr(self._ids, "is_trace_id_random", None)
        self._root_flags = _RANDOM if random_roots is not None and random_roots() else 0
        self._planned_ids = _PlannedIds(tracer.id_generator)
        self._planned_sampler = _PlannedSampler(tracer.sampler)
        # A copy, not the provider's tracer: the provider hands that one to every caller of
        # get_tracer("rebeam") (and to every node of this process), and its id generator
        # and sampler stay theirs. What the copy misses is a change the provider makes to
        # its tracers later (a resource updated in a forked child, an experimental tracer
        # configurator); a node does not outlive a fork.
        own = copy.copy(tracer)
        own.id_generator = self._planned_ids
        own.sampler = self._planned_sampler
        self._tracer = own

    def plan(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, str],
        started: int,
        parent: Context | None = None,
    ) -> Plan:
        """Choose a span's ids and sampling decision as the SDK's ``start_span`` would, under
        ``parent`` (None: the context current now)."""
        if parent is None:
            parent = get_current()
        context = trace.get_current_span(parent).get_span_context()
        if context.is_valid:
            trace_id = context.trace_id
            flags = context.trace_flags & _RANDOM
        else:
            trace_id = self._ids.generate_trace_id()
            flags = self._root_flags
        span_id = self._ids.generate_span_id()
        result = self._should_sample(parent, trace_id, name, kind, attributes, ())
        if result.decision is Decision.RECORD_AND_SAMPLE:
            flags |= _SAMPLED
        return Plan(parent, trace_id, not context.is_valid, span_id, result, flags, started)

    def start(self, plan: Plan, name: str, kind: SpanKind, attributes: dict[str, str]) -> Span:
        """Start the SDK's span of ``plan``, with its ids, decision and start time."""
        ids, sampler = self._planned_ids, self._planned_sampler
        ids.span_id = plan.span_id
        ids.trace_id = plan.trace_id if plan.new_trace else 0
        sampler.result = plan.result
        try:
            return self._tracer.start_span(
                name, plan.parent, kind, attributes, start_time=plan.started
            )
        finally:  # whatever the SDK did not take is not for the next span
            ids.span_id = ids.trace_id = 0
            sampler.result = None

    @staticmethod
    def as_planned(span: Span, plan: Plan) -> bool:
        """Whether the SDK made ``span`` with the ids and flags the envelope carried (an SDK
        whose ``start_span`` no longer asks its id generator and sampler would not)."""
        context = span.get_span_context()
        return (
            context.span_id == plan.span_id
            and context.trace_id == plan.trace_id
            and int(context.trace_flags) == plan.flags
        )


class _PlannedIds(IdGenerator):
    """The ids planned for the span being started, else the provider's generator's."""

    def __init__(self, ids: IdGenerator) -> None:
        self._ids = ids
        self.span_id = 0  # 0: none planned (never a valid id)
        self.trace_id = 0

    def generate_span_id(self) -> int:
        return self.span_id or self._ids.generate_span_id()

    def generate_trace_id(self) -> int:
        return self.trace_id or self._ids.generate_trace_id()

    def is_trace_id_random(self) -> bool:
        random = getattr(self._ids, "is_trace_id_random", None)
        return bool(random is not None and random())


class _PlannedSampler(Sampler):
    """The decision taken for the span being started, else the provider's sampler's: the
    span is sampled (or not) as its envelope said, and a sampler is asked once a span."""

    def __init__(self, sampler: Sampler) -> None:
        self._sampler = sampler
        self.result: SamplingResult | None = None

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if self.result is not None:
            return self.result
        return self._sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return self._sampler.get_description()
