"""Spans planned before the send and made in the OpenTelemetry SDK after it (rebeam._spans;
docs/observability.md, "Tracing").

A request carries its sender span's context, so that span's ids and sampling decision must
be known before the request leaves; the SDK's span object need not exist yet, and making it
is most of what a traced call used to wait for. So the ids and the decision are chosen on
the path (:meth:`Planner.plan`), with the provider's own id generator and sampler, and the
SDK's span is made later (:meth:`Planner.start`), with those ids and decision and
``start_time=`` the time taken before the send. A handler span is planned the same way, under
the sender's context from the envelope, when its context is asked for or when it ends.

:meth:`Planner.start` makes the span as the SDK's ``Tracer.start_span`` does once it has
chosen ids and a decision: the same span class, the same arguments, the same processors
told, the SDK's own span metrics counted. What it leaves out is what ``start_span`` would
do again (find the parent, ask the sampler and the id generator): a third of an SDK span's
cost (docs/observability.md, "Cost"). That relies on the SDK's span constructor and tracer
fields, so :func:`for_tracer` checks them and plans nothing for an SDK that differs; the
tests compare a span made here with one ``start_span`` makes, field by field.

The sampler is asked once a span. The SDK's default, ``ParentBased`` with its default
delegates, decides a span with a valid parent by the parent's sampled flag alone, keeping
the parent's trace state and (sampled) the attributes: that decision is taken here without
the three calls it costs; a root is its root sampler's, decided here too when that is the
SDK's ``ALWAYS_ON`` (recorded and sampled, the attributes kept, no trace state: a client's
usual call, on its way) or ``ALWAYS_OFF`` (dropped, nothing kept: a process that only
continues the traces others start), and any other sampler is asked as it is.

What :meth:`Planner.start` leaves out of the span itself is only what provably changes
nothing a processor or exporter receives: attributes that rebeam made and checked once
against the tracer's limits are copied into the span as they are, not cleaned again value by
value; the span's start time is set without its ``start()`` when every span processor is
one of the SDK's whose ``on_start`` does nothing (nobody would hear of the start); and the
SDK's span metrics are not asked when they are its no-op kind (docs/observability.md,
"Cost").

Imported only when the OpenTelemetry SDK can be: a tracer of another implementation keeps
the eager start (:func:`for_tracer` says None).
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import Span, SpanContext, SpanKind, TraceFlags, TraceState

from rebeam._tracefield import TRACEPARENT

__all__ = ["Checked", "Plan", "Planner", "for_tracer"]

# The key under which the API keeps the current span in a context, learnt through the API.
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))

_SAMPLED = int(TraceFlags.SAMPLED)
# W3C Trace Context level 2's flag (the trace id's low 56 bits are random), which the SDK
# sets on a span whose parent has it, or on a root when its id generator says so; an API
# older than the flag has none.
_RANDOM = int(getattr(TraceFlags, "RANDOM_TRACE_ID", 0))
_RECORD_AND_SAMPLE, _DROP = Decision.RECORD_AND_SAMPLE, Decision.DROP
# What Planner.start hands the SDK's span class, by name, as start_span does.
_SPAN_ARGUMENTS = frozenset({
    "name", "context", "parent", "sampler", "resource", "attributes", "span_processor", "kind",
    "links", "instrumentation_info", "record_exception", "set_status_on_exception", "limits",
    "instrumentation_scope", "record_end_metrics",
})  # fmt: skip
_TRACER_FIELDS = (
    "id_generator", "sampler", "resource", "span_processor", "instrumentation_info",
    "_span_limits", "_instrumentation_scope", "_tracer_metrics",
)  # fmt: skip
# Span processors whose on_start does nothing: a span whose processors are all of these
# needs no start() call (module docstring). By function, so a subclass that overrides
# on_start is not one of them.
_QUIET_STARTS = frozenset({
    sdk_trace.SpanProcessor.on_start, SimpleSpanProcessor.on_start, BatchSpanProcessor.on_start,
})  # fmt: skip
_NO_METRICS: Any = None  # the SDK's span metrics when they are off
try:  # (SDK versions that have them)
    from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics

    _NO_METRICS = NoOpTracerMetrics
except ImportError:  # pragma: no cover - an SDK without span metrics
    pass


class Checked(dict[str, str]):
    """Span attributes made by rebeam and found, once, to be what the SDK would keep as
    they are under a tracer's limits (non-empty string keys, string values no longer than
    the limit, no more of them than the limit): a span gets a copy, not a cleaning."""


def for_tracer(tracer: trace.Tracer) -> Planner | None:
    """A planner for ``tracer``, or None if its spans cannot be planned: a tracer that is
    not exactly the SDK's (another implementation, or a subclass that may start spans its
    own way), one the SDK disabled (it hands out its parent's context, not new ids), or an
    SDK whose span class or tracer is not the one :meth:`Planner.start` knows."""
    if type(tracer) is not sdk_trace.Tracer:
        return None
    enabled = getattr(tracer, "_is_enabled", None)  # SDK versions with tracer configs
    if enabled is not None and not enabled():
        return None
    span_class = getattr(sdk_trace, "_Span", None)
    if span_class is None or not all(hasattr(tracer, name) for name in _TRACER_FIELDS):
        return None
    try:
        parameters = inspect.signature(span_class.__init__).parameters
    except (TypeError, ValueError):
        return None
    if not _SPAN_ARGUMENTS.issubset(parameters):
        return None
    return Planner(tracer, span_class)


def _copies_attributes() -> bool:
    """Whether the SDK's attribute container keeps its items in a plain ``_dict``, as the
    version rebeam knows does: only then are checked attributes copied into it."""
    try:
        probe = BoundedAttributes(None, None, immutable=False)
    except (TypeError, ValueError):
        return False
    return type(getattr(probe, "_dict", None)) is dict and getattr(probe, "dropped", None) == 0


class Plan:
    """What a span will be, chosen before the SDK makes it."""

    __slots__ = (
        "attributes", "decision", "flags", "parent", "parent_span", "recorded", "span_id",
        "started", "trace_id", "trace_state",
    )  # fmt: skip

    def __init__(
        self,
        parent: Context | None,
        parent_span: SpanContext | None,
        trace_id: int,
        span_id: int,
        decision: Decision,
        attributes: Mapping[str, Any] | None,
        trace_state: TraceState | None,
        flags: int,
        started: int,
    ) -> None:
        # The parent's context as it was, kept (immutable); None: only the parent span's,
        # made into one if a span processor's on_start is to be given it.
        self.parent = parent
        self.parent_span = parent_span  # its span's context, if valid (else a new trace)
        self.trace_id = trace_id
        self.span_id = span_id
        self.decision = decision
        self.recorded = decision is not _DROP  # whether the SDK will record the span
        self.attributes = attributes  # the span's, as the sampler decided
        self.trace_state = trace_state
        self.flags = flags
        self.started = started

    def field(self) -> list[str]:
        """The trace field of an envelope sent under the span: its W3C context."""
        text = TRACEPARENT % (self.trace_id, self.span_id, self.flags)
        state = self.trace_state
        # Most traces carry no tracestate: an empty one's header is a join over nothing.
        return [text, state.to_header()] if state else [text]

    def context(self) -> SpanContext:
        """The context the SDK's span will have."""
        return SpanContext(
            self.trace_id,
            self.span_id,
            is_remote=False,
            trace_flags=TraceFlags(self.flags),
            trace_state=self.trace_state,
        )

    def recording(self) -> bool:
        """Whether the SDK will record the span: if not, it needs no SDK span at all."""
        return self.recorded


class Planner:
    """Plans the spans of one node, and makes them in the SDK as planned."""

    def __init__(self, tracer: sdk_trace.Tracer, span_class: Any) -> None:
        self._tracer = tracer  # read at each start: the provider may update its resource
        self._span_class = span_class
        self._ids = tracer.id_generator  # the provider's, used as the SDK would
        # The SDK's default generator is random.getrandbits, called here without its call.
        self._random_ids = type(self._ids) is RandomIdGenerator
        sampler = tracer.sampler
        self._should_sample = sampler.should_sample
        random_roots = getattr(self._ids, "is_trace_id_random", None)
        self._root_flags = _RANDOM if random_roots is not None and random_roots() else 0
        # ParentBased with its default delegates: a valid parent's flag decides (module
        # docstring), a root is its root sampler's; None: ask the sampler as it is.
        self._by_parent: Sampler | None = None
        if _parent_based_by_default(sampler):
            self._by_parent = sampler._root  # type: ignore[attr-defined]
        self._copies = _copies_attributes()
        self._processors: Any = None  # the processors the verdict below is about
        self._quiet = False  # whether none of them does anything on a span's start

    def checked(self, attributes: dict[str, str]) -> dict[str, str]:
        """``attributes`` as a :class:`Checked` copy if the SDK keeps them as they are under
        this tracer's limits, else as they are (the SDK cleans them, span by span)."""
        limits = self._tracer._span_limits
        most, longest = limits.max_span_attributes, limits.max_span_attribute_length
        fit = (
            self._copies
            and (most is None or len(attributes) <= most)
            and all(
                type(key) is str and key and type(value) is str
                and (longest is None or len(value) <= longest)
                for key, value in attributes.items()
            )
        )  # fmt: skip
        return Checked(attributes) if fit else attributes

    def _span_id(self) -> int:
        if self._random_ids:  # as RandomIdGenerator.generate_span_id
            span_id = random.getrandbits(64)
            while span_id == 0:
                span_id = random.getrandbits(64)
            return span_id
        return self._ids.generate_span_id()

    def _trace_id(self) -> int:
        if self._random_ids:  # as RandomIdGenerator.generate_trace_id
            trace_id = random.getrandbits(128)
            while trace_id == 0:
                trace_id = random.getrandbits(128)
            return trace_id
        return self._ids.generate_trace_id()

    def plan(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, str],
        started: int,
        parent: Context,
        parent_span: SpanContext | None,
    ) -> Plan:
        """Choose a span's ids and sampling decision as the SDK's ``start_span`` would, under
        ``parent``, whose span's context is ``parent_span`` (None, or not valid: a root)."""
        if parent_span is not None and parent_span.is_valid:
            return self.plan_child(
                name, kind, attributes, started, parent, parent_span,
                parent_span.trace_id, parent_span.trace_flags, parent_span.trace_state,
            )  # fmt: skip
        if self._random_ids:  # as RandomIdGenerator draws them, without its two calls
            trace_id = random.getrandbits(128) or self._trace_id()
            span_id = random.getrandbits(64) or self._span_id()
        else:
            trace_id = self._ids.generate_trace_id()
            span_id = self._ids.generate_span_id()
        root = self._by_parent
        flags = self._root_flags
        if root is ALWAYS_ON:  # as it decides a root: recorded, with no parent's state
            return Plan(
                parent, None, trace_id, span_id, _RECORD_AND_SAMPLE, attributes, None,
                flags | _SAMPLED, started,
            )  # fmt: skip
        if root is ALWAYS_OFF:  # as it decides a root: dropped, no attributes, no state
            return Plan(parent, None, trace_id, span_id, _DROP, None, None, flags, started)
        # A sampler gets a copy of the attributes, made once per destination, not per span:
        # one that changed what it was given would change them for every span after.
        if root is None:
            result = self._should_sample(parent, trace_id, name, kind, dict(attributes), ())
        else:  # as ParentBased hands a root to its root sampler
            result = root.should_sample(
                parent_context=parent, trace_id=trace_id, name=name, kind=kind,
                attributes=dict(attributes), links=(),
            )  # fmt: skip
        return self._decided(parent, None, trace_id, span_id, attributes, result, flags, started)

    def plan_child(
        self,
        name: str,
        kind: SpanKind,
        attributes: dict[str, str],
        started: int,
        parent: Context | None,
        parent_span: SpanContext,
        trace_id: int,
        parent_flags: int,
        parent_state: TraceState,
    ) -> Plan:
        """:meth:`plan` under a valid ``parent_span``, whose trace id, flags and trace state
        the caller read already (a handler span's, from the envelope). ``parent`` None: the
        context that holds only ``parent_span``, made if a sampler or processor needs it."""
        span_id = random.getrandbits(64) if self._random_ids else 0
        span_id = span_id or self._span_id()
        flags = parent_flags & _RANDOM
        if self._by_parent is not None:  # as ParentBased's ALWAYS_ON or ALWAYS_OFF decide
            if parent_flags & _SAMPLED:
                return Plan(
                    parent, parent_span, trace_id, span_id, _RECORD_AND_SAMPLE, attributes,
                    parent_state, flags | _SAMPLED, started,
                )  # fmt: skip
            return Plan(
                parent, parent_span, trace_id, span_id, _DROP, None, parent_state, flags,
                started,
            )  # fmt: skip
        if parent is None:
            parent = _holding(parent_span)
        result = self._should_sample(parent, trace_id, name, kind, dict(attributes), ())
        return self._decided(
            parent, parent_span, trace_id, span_id, attributes, result, flags, started
        )

    @staticmethod
    def _decided(
        parent: Context,
        parent_span: SpanContext | None,
        trace_id: int,
        span_id: int,
        asked: dict[str, str],
        result: SamplingResult,
        flags: int,
        started: int,
    ) -> Plan:
        """The plan of a sampler's ``result`` for a span with the attributes ``asked``: its
        attributes are the sampler's, cleaned by the SDK, unless they are the very ones
        asked about, checked already (:class:`Checked`)."""
        if result.decision is _RECORD_AND_SAMPLE:
            flags |= _SAMPLED
        attributes: Mapping[str, Any] = result.attributes
        if type(asked) is Checked and attributes == asked:
            attributes = asked
        return Plan(
            parent, parent_span, trace_id, span_id, result.decision, attributes,
            result.trace_state, flags, started,
        )  # fmt: skip

    def start(self, plan: Plan, name: str, kind: SpanKind) -> Span:
        """Make and start the SDK's span of ``plan``, with its ids, decision and start time,
        as ``start_span`` makes one (module docstring)."""
        tracer = self._tracer
        context = SpanContext(
            plan.trace_id,
            plan.span_id,
            is_remote=False,
            trace_flags=TraceFlags(plan.flags),
            trace_state=plan.trace_state,
        )
        metrics = tracer._tracer_metrics
        ended = None if type(metrics) is _NO_METRICS else metrics.start_span(
            plan.parent_span, plan.decision
        )  # fmt: skip
        if plan.decision is _DROP:
            return trace.NonRecordingSpan(context)
        attributes = plan.attributes
        checked = type(attributes) is Checked
        span: sdk_trace.Span = self._span_class(
            name=name,
            context=context,
            parent=plan.parent_span,
            sampler=tracer.sampler,
            resource=tracer.resource,
            attributes=None if checked else attributes,
            span_processor=tracer.span_processor,
            kind=kind,
            links=(),
            instrumentation_info=tracer.instrumentation_info,
            record_exception=True,
            set_status_on_exception=True,
            limits=tracer._span_limits,
            instrumentation_scope=tracer._instrumentation_scope,
            record_end_metrics=ended,
        )
        if checked:  # what the SDK's cleaning would have kept, value for value
            span._attributes._dict = dict(attributes)  # type: ignore[arg-type,union-attr]
        if self._quiet_start(tracer.span_processor):
            span._start_time = plan.started  # as start() sets it; nobody to tell
        else:
            parent = plan.parent
            if parent is None:
                parent = _holding(plan.parent_span)
            span.start(start_time=plan.started, parent_context=parent)
        return span

    def _quiet_start(self, processor: Any) -> bool:
        """Whether starting a span tells nobody anything: every span processor is one of
        the SDK's whose on_start does nothing (asked again when the processors change)."""
        processors = getattr(processor, "_span_processors", None)
        if processors is not self._processors:
            self._processors = processors
            self._quiet = (
                type(processor) is sdk_trace.SynchronousMultiSpanProcessor
                and type(processors) is tuple
                and all(type(each).on_start in _QUIET_STARTS for each in processors)
            )
        return self._quiet


def _holding(parent_span: SpanContext | None) -> Context:
    """A context whose current span is ``parent_span`` (none: an empty one)."""
    if parent_span is None:
        return Context()
    return Context({_SPAN_KEY: trace.NonRecordingSpan(parent_span)})


def _parent_based_by_default(sampler: Sampler) -> bool:
    """Whether ``sampler`` is the SDK's ParentBased (a subclass that keeps its decision,
    such as the default sampler or ParentBasedTraceIdRatio) with the default delegates."""
    return (
        isinstance(sampler, ParentBased)
        and type(sampler).should_sample is ParentBased.should_sample
        and getattr(sampler, "_remote_parent_sampled", None) is ALWAYS_ON
        and getattr(sampler, "_remote_parent_not_sampled", None) is ALWAYS_OFF
        and getattr(sampler, "_local_parent_sampled", None) is ALWAYS_ON
        and getattr(sampler, "_local_parent_not_sampled", None) is ALWAYS_OFF
        and isinstance(getattr(sampler, "_root", None), Sampler)
    )
