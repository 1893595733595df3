"""The spans of a node that traces (:mod:`rebeam.tracing` decides whether one does).

At the sender, a span around each send, cast and call (PRODUCER for the one-way kinds,
CLIENT for a call), current while the envelope is packed, so the envelope carries its
context. At the receiver, a span around each handler invocation (CONSUMER, or SERVER for
``handle_call``), a child of the sender's span, and current while the handler runs: a call
the handler makes is its child in turn (contextvars follow the handler's awaits).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

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
_MAX_STATUS = 200  # characters of an exit reason kept in a span's status


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
        # The attributes that do not change from message to message, one dict per kind.
        self._sending = {
            kind: {
                "messaging.system": _SYSTEM,
                "messaging.operation.name": op,
                "messaging.operation.type": "send",
                "rebeam.message.kind": op,
                "rebeam.sender.pid": self._pid,
            }
            for kind, op in _OPERATION.items()
        }
        self.serve(None, pid)

    def serve(self, actor_class: str | None, pid: Pid) -> None:
        """Name what handles this node's messages in the handler spans' attributes."""
        actor = {"rebeam.actor.pid": self._pid, "rebeam.actor.path": pid.slot}
        if actor_class:
            actor["rebeam.actor.class"] = actor_class
        self._handling = {
            kind: {
                "messaging.system": _SYSTEM,
                "messaging.operation.name": _HANDLER[kind],
                "messaging.operation.type": "process",
                "messaging.destination.name": self._pid,
                "rebeam.message.kind": op,
                **actor,
            }
            for kind, op in _OPERATION.items()
        }

    def sending(self, kind: int, to: Pid) -> Any:
        """The span of a send, cast or call to ``to``, current until the block ends; an
        exception escaping the block (a timeout, a remote error) is recorded on it."""
        attributes = {**self._sending[kind], "messaging.destination.name": to._text}
        span_kind = SpanKind.CLIENT if kind == CALL else SpanKind.PRODUCER
        return self._tracer.start_as_current_span(
            _OPERATION[kind], kind=span_kind, attributes=attributes
        )

    def stamp(self, fields: list[Any]) -> None:
        """Append the current span's context to an envelope's ``fields``, if there is one."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return
        parent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        state = context.trace_state.to_header()
        fields.append([parent, state] if state else [parent])

    @contextmanager
    def handling(self, env: Envelope, outcome: Any) -> Iterator[None]:
        """The span of one handler invocation for ``env``, a child of the sender's span when
        the envelope carried a valid context; ``outcome()`` is the actor's exit reason once
        the handler returned (an unclean one marks the span as an error)."""
        kind = int(env.kind)
        attributes = self._handling[kind]
        if env.sender:
            attributes = {**attributes, "rebeam.sender.pid": env.sender}
        span_kind = SpanKind.SERVER if kind == CALL else SpanKind.CONSUMER
        with self._tracer.start_as_current_span(
            _HANDLER[kind], context=self._parent(env.trace), kind=span_kind, attributes=attributes
        ) as span:
            yield
            reason: ExitReason | None = outcome()
            if reason is not None and not reason.is_clean:
                span.set_status(Status(StatusCode.ERROR, str(reason)[:_MAX_STATUS]))

    def _parent(self, field: Any) -> Context:
        """The context a handler span starts in: the sender's span, or none at all (a new
        trace; never whatever happens to be current in the receiving task)."""
        read = tracing.read_field(field)
        if read.problem is not None:
            self._stats.trace_dropped += 1
            self._ratelog.warning("dropped a malformed trace context", read.problem)
        if read.traceparent is None:
            return Context()
        _, trace_id, span_id, flags = read.traceparent.split("-")
        remote = trace.SpanContext(
            int(trace_id, 16),
            int(span_id, 16),
            is_remote=True,
            trace_flags=trace.TraceFlags(int(flags, 16)),
            trace_state=trace.TraceState.from_header([read.tracestate])
            if read.tracestate
            else None,
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(remote), Context())
