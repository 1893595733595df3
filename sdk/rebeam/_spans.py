"""The spans of a node that traces (:mod:`rebeam.tracing` decides whether one does).

At the sender, a span around each send, cast and call (PRODUCER for the one-way kinds,
CLIENT for a call), a child of the current span, whose context the envelope carries. At the
receiver, a span around each handler invocation (CONSUMER, or SERVER for ``handle_call``), a
child of the sender's span, and current while the handler runs: a call the handler makes is
its child in turn (contextvars follow the handler's awaits).

Every span costs the OpenTelemetry SDK more than the rest of a message, so the few steps
here are written out: hand-made context managers instead of ``start_as_current_span``'s
generator, no sender span made current (nothing under it makes spans), attributes that do
not change from message to message built once.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from rebeam import tracing
from rebeam._envelope import CALL, CAST, SEND, Envelope
from rebeam._ratelog import RateLog
from rebeam._stats import Stats
from rebeam.exits import ExitReason
from rebeam.pids import Pid

__all__ = ["Tracing", "for_node"]

_SYSTEM = "rebeam"
_OPERATION = {int(SEND): "send", int(CAST): "cast", int(CALL): "call"}
_HANDLER = {int(SEND): "handle_info", int(CAST): "handle_cast", int(CALL): "handle_call"}
_MAX_STATUS = 200  # characters of an exit reason or exception kept in a span's status


def for_node(pid: Pid, stats: Stats, ratelog: RateLog) -> Tracing | None:
    """A node's tracing, or None if the process set no tracer provider: without one the API
    hands out spans that record nothing, and rebeam would pay for them for nothing."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        tracing.log.warning(
            "%s=1 but this process set no OpenTelemetry tracer provider before connecting: "
            'tracing is off (docs/observability.md, "Tracing")',
            tracing.ENV,
        )
        return None
    return Tracing(provider.get_tracer("rebeam"), pid, stats, ratelog)


class Tracing:
    """One node's spans, and the trace field of the envelopes it sends and receives."""

    def __init__(self, tracer: trace.Tracer, pid: Pid, stats: Stats, ratelog: RateLog) -> None:
        self._tracer = tracer
        self._stats = stats
        self._ratelog = ratelog
        self._pid = str(pid)
        self._slot = pid.slot
        self._sending = {
            kind: {"messaging.system": _SYSTEM, "messaging.operation.name": op}
            for kind, op in _OPERATION.items()
        }
        self.serve(None)

    def serve(self, actor_class: str | None) -> None:
        """Name what handles this node's messages in the handler spans' attributes."""
        actor = {"rebeam.actor.path": self._slot}
        if actor_class:
            actor["rebeam.actor.class"] = actor_class
        self._handling = {
            kind: {
                "messaging.system": _SYSTEM,
                "messaging.operation.name": op,
                "messaging.destination.name": self._pid,
                **actor,
            }
            for kind, op in _OPERATION.items()
        }

    def sending(self, kind: int, to: Pid) -> _Sending:
        """The span of a send, cast or call to ``to``: ``with`` gives the trace field its
        envelope carries, and records an exception escaping the block (a timeout, a remote
        error) on the span."""
        attributes = {**self._sending[kind], "messaging.destination.name": to._text}
        span_kind = SpanKind.CLIENT if kind == CALL else SpanKind.PRODUCER
        return _Sending(
            self._tracer.start_span(_OPERATION[kind], kind=span_kind, attributes=attributes)
        )

    def handling(self, env: Envelope, outcome: Callable[[], ExitReason | None]) -> _Handling:
        """The span of one handler invocation for ``env``, current inside ``with``; a child of
        the sender's span when the envelope carried a valid context. ``outcome()`` is the
        actor's exit reason once the handler returned: an unclean one marks the span as an
        error."""
        kind = int(env.kind)
        span = self._tracer.start_span(
            _HANDLER[kind],
            context=self._parent(env.trace),
            kind=SpanKind.SERVER if kind == CALL else SpanKind.CONSUMER,
            attributes=self._handling[kind],
        )
        return _Handling(span, outcome)

    def _parent(self, field: Any) -> Context:
        """The context a handler span starts in: the sender's span, or none at all (a new
        trace; never whatever happens to be current in the receiving task)."""
        read = tracing.read_field(field)
        if read.problem is not None:
            self._stats.trace_dropped += 1
            self._ratelog.warning("dropped a malformed trace context", read.problem)
        if read.traceparent is None:
            return Context()
        parent = read.traceparent  # "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
        remote = trace.SpanContext(
            int(parent[3:35], 16),
            int(parent[36:52], 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(parent[53:55], 16)),
            trace_state=trace.TraceState.from_header([read.tracestate])
            if read.tracestate
            else None,
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())


def _field(span: Span) -> list[str] | None:
    """The trace field of an envelope sent under ``span``: its W3C context."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
    state = context.trace_state
    # Most traces carry no tracestate: an empty one's header is a join over nothing that
    # cost a tenth of this function.
    return [parent, state.to_header()] if state else [parent]


class _Sending:
    """A started sender span: ended when the block ends, with the error that ended it."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> list[str] | None:
        return _field(self._span)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._span.record_exception(exc)
            self._span.set_status(
                Status(StatusCode.ERROR, f"{kind.__name__ if kind else ''}: {exc}"[:_MAX_STATUS])
            )
        self._span.end()


class _Handling:
    """A started handler span: current inside the block, ended after it."""

    __slots__ = ("_outcome", "_span", "_token")

    def __init__(self, span: Span, outcome: Callable[[], ExitReason | None]) -> None:
        self._span = span
        self._outcome = outcome
        self._token: Any = None  # the attach's contextvars token

    def __enter__(self) -> None:
        self._token = otel_context.attach(trace.set_span_in_context(self._span, Context()))

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        reason = self._outcome()
        if reason is not None and not reason.is_clean:
            self._span.set_status(Status(StatusCode.ERROR, str(reason)[:_MAX_STATUS]))
        otel_context.detach(self._token)
        self._span.end()
