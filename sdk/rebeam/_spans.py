"""The spans of a node that traces (:mod:`rebeam.tracing` decides whether one does).

At the sender, a span around each send, cast and call (PRODUCER for the one-way kinds,
CLIENT for a call), a child of the current span, whose context the envelope carries. At the
receiver, a span around each handler invocation (CONSUMER, or SERVER for ``handle_call``), a
child of the sender's span, and current while the handler runs: a call the handler makes is
its child in turn (contextvars follow the handler's awaits).

Every span costs the OpenTelemetry SDK more than the rest of a message, so as little of it
as possible is on the way of a message (docs/observability.md, "Cost"):

* a sender span's ids and sampling decision are chosen before the send, for the envelope,
  and the SDK's span is started with them only once it ends, with the time taken before the
  send (rebeam._planned; :class:`_PlannedSending`); with a tracer that is not the SDK's,
  the span is started before the send, as the envelope needs its context;
* a span that ended well is ended (with the time it ended) a little later, with those of the
  next few messages, once what was written in the meantime (a call's reply, the next
  request) is on the wire: :meth:`Tracing.later`;
* a handler span is started only when something asks for it (the handler's own
  ``get_current_span().set_attribute``, say), with the time the handler began: one only
  asked for its context (a span planned under it, a propagator) is planned as a sender span
  is, and one that nobody asked for while the handler ran, the usual leaf, is planned
  after the reply went out; either is made in the SDK when it ends (:class:`_Handling`);
* hand-made context managers instead of ``start_as_current_span``'s generator, no sender
  span made current (nothing under it makes spans), attributes built (and checked for the
  SDK, rebeam._planned) once per destination, not per message, the current context read,
  set and reset on the API's own context variable when the runtime context is the API's
  default (:func:`_context_var`);
* on a message's path, as few Python calls as can be: a traced call to a pid is one
  coroutine around the request's (:meth:`_Around.around`), and a handler span on the
  receiving hot path is one object, made without an ``__init__``, that is also the current
  span, entered and left by one call each (:meth:`Tracing.enter`, :meth:`_Handling.leave`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types

from rebeam._envelope import CALL, CAST, SEND
from rebeam._ratelog import RateLog
from rebeam._stats import Stats
from rebeam._tracefield import TRACEPARENT, read_field
from rebeam.exits import ExitReason
from rebeam.pids import Pid

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from rebeam._planned import Plan, Planner

__all__ = ["Tracing", "provided_tracer"]

_SYSTEM = "rebeam"
_OPERATION = {int(SEND): "send", int(CAST): "cast", int(CALL): "call"}
_HANDLER = {int(SEND): "handle_info", int(CAST): "handle_cast", int(CALL): "handle_call"}
_HANDLER_KIND = {
    int(SEND): SpanKind.CONSUMER, int(CAST): SpanKind.CONSUMER, int(CALL): SpanKind.SERVER
}  # fmt: skip
_CALL = int(CALL)  # a plain int: compared on a message's path, where the kind is one
_CLIENT, _PRODUCER = SpanKind.CLIENT, SpanKind.PRODUCER
_MAX_STATUS = 200  # characters of an exit reason or exception kept in a span's status
_MAX_PUT_OFF = 16  # spans waiting to be ended at most (Tracing.later)
# The key under which the API keeps the current span in a context, learnt through the API
# once: a context holding one span is then made in one step, not three.
_SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))
_NO_STATE = trace.INVALID_SPAN_CONTEXT.trace_state  # the API's empty trace state


def _context_var() -> ContextVar[Context] | None:
    """The context variable behind the API's current context, when the runtime context is
    exactly the API's own (the default): getting, attaching and detaching a context are then
    its get, set and reset, without the API's two Python calls for each, on a message's
    path. None: another runtime context, used through the API."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    if type(runtime) is not ContextVarsRuntimeContext:
        return None
    var = getattr(runtime, "_current_context", None)
    return var if isinstance(var, ContextVar) else None


_CURRENT = _context_var()


def provided_tracer() -> trace.Tracer | None:
    """rebeam's tracer from the provider this process set, or None if it set none."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("rebeam")


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
        self._planner = _planner_for(tracer)
        # The attributes of a sender span to each destination, made (and checked for the
        # SDK, rebeam._planned.Checked) once, not per message; bounded as a node's subject
        # caches are. One table a kind, keyed by the pid's text: no tuple made and hashed
        # on a message's path.
        self._sending_to: dict[int, dict[str, dict[str, str]]] = {kind: {} for kind in _OPERATION}
        # Spans that ended well, to be ended in the SDK by finish() (see later()).
        self._ending: list[_Ending] = []
        self._scheduled = False  # a callback two turns away will call finish()
        self.serve(None)

    def handling(self, kind: int, field: Any, outcome: Callable[[], ExitReason | None]) -> _Handled:
        """The span of one handler invocation for a message of ``kind`` (a plain int) whose
        envelope's trace field is ``field`` (None: it had none), current inside ``with``; a
        child of the sender's span when the field is a valid context. ``outcome()`` is the
        actor's exit reason once the handler returned: an unclean one marks the span as an
        error. The parts, not an Envelope: the receiving hot path makes none (it calls
        :meth:`enter` and :meth:`_Handling.leave`, this with fewer calls)."""
        return _Handled(self, kind, field, outcome)

    def enter(self, kind: int, field: Any) -> _Handling:
        """:meth:`handling`'s span, entered: current from now until its
        :meth:`_Handling.leave`. One Python call on a received message's path (the hot
        path's), where ``handling`` and ``with`` take three."""
        handling = _blank(_Handling)
        handling._tracing = self
        handling._kind = kind
        handling._field = field
        handling._span = None
        handling._plan = None
        handling._ended = 0
        handling._started = time.time_ns()
        current = Context({_SPAN_KEY: handling})
        handling._token = (
            otel_context.attach(current) if _CURRENT is None else _CURRENT.set(current)
        )
        return handling

    def serve(self, actor_class: str | None) -> None:
        """Name what handles this node's messages in the handler spans' attributes."""
        actor = {"rebeam.actor.path": self._slot}
        if actor_class:
            actor["rebeam.actor.class"] = actor_class
        self._handling = {
            kind: self._checked({
                "messaging.system": _SYSTEM,
                "messaging.operation.name": op,
                "messaging.destination.name": self._pid,
                **actor,
            })
            for kind, op in _OPERATION.items()
        }  # fmt: skip

    def _checked(self, attributes: dict[str, str]) -> dict[str, str]:
        planner = self._planner
        return attributes if planner is None else planner.checked(attributes)

    def _attributes_to(self, kind: int, to: Pid) -> dict[str, str]:
        """The attributes of a sender span of ``kind`` to ``to`` (cached)."""
        cache = self._sending_to[kind]
        if len(cache) > 4096:
            cache.clear()
        attributes = cache[to._text] = self._checked(
            {**self._sending[kind], "messaging.destination.name": to._text}
        )
        return attributes

    def sending(self, kind: int, to: Pid) -> _Sending | _PlannedSending:
        """The span of a send, cast or call to ``to``, beginning now: ``with`` gives the trace
        field its envelope carries (so does its ``field``), and records an exception
        escaping the block (a timeout, a remote error) on the span; so does :meth:`around
        <_PlannedSending.around>` for a request's coroutine."""
        attributes = self._sending_to[kind].get(to._text) or self._attributes_to(kind, to)
        span_kind = _CLIENT if kind == _CALL else _PRODUCER
        if self._planner is not None:
            return _PlannedSending(self, self._planner, kind, span_kind, attributes)
        # A copy: another implementation's span may keep the dict it is given, and change it.
        span = self._tracer.start_span(
            _OPERATION[kind], kind=span_kind, attributes=dict(attributes)
        )
        return _Sending(self, span)

    def start_handling(self, kind: int, field: Any, started: int, plan: Plan | None) -> Span:
        """Start the SDK's span of a handler invocation that began at ``started`` (ns): as
        ``plan`` says, planned now if it was not (this node's spans can be), else by the
        tracer, under the sender's context."""
        name, span_kind = _HANDLER[kind], _HANDLER_KIND[kind]
        planner = self._planner
        if planner is not None:
            return planner.start(plan or self.plan_handling(kind, field, started), name, span_kind)
        remote = self._remote(field)
        return self._tracer.start_span(
            name,
            context=Context() if remote is None else _under(remote[0]),
            kind=span_kind,
            attributes=self._handling[kind],
            start_time=started,
        )

    def plan_handling(self, kind: int, field: Any, started: int) -> Plan:
        """Plan the span of a handler invocation that began at ``started`` (ns), the child of
        the sender's span when ``field`` is a valid context, else a new trace (never
        whatever happens to be current in the receiving task); only for a node whose spans
        can be planned."""
        name, span_kind, attributes = _HANDLER[kind], _HANDLER_KIND[kind], self._handling[kind]
        planner = self._planner
        assert planner is not None  # (the caller checked)
        remote = self._remote(field)
        if remote is None:
            return planner.plan(name, span_kind, attributes, started, Context(), None)
        parent, trace_id, flags, state = remote
        # The parent's context (the remote span alone) is made only if a sampler or a span
        # processor is to be handed it (rebeam._planned).
        return planner.plan_child(
            name, span_kind, attributes, started, None, parent, trace_id, flags, state
        )

    def _remote(self, field: Any) -> tuple[SpanContext, int, int, TraceState] | None:
        """The sender's span context from an envelope's trace field, with its trace id,
        flags and trace state; None: a new trace. A malformed field is counted and logged."""
        read = read_field(field)
        if read.problem is not None:
            self._stats.trace_dropped += 1
            self._ratelog.warning("dropped a malformed trace context", read.problem)
        parent = read.traceparent  # "00-<32 hex trace id>-<16 hex span id>-<2 hex flags>"
        if parent is None:
            return None
        trace_id, flags = int(parent[3:35], 16), int(parent[53:55], 16)
        state = TraceState.from_header([read.tracestate]) if read.tracestate else _NO_STATE
        context = SpanContext(
            trace_id,
            int(parent[36:52], 16),
            is_remote=True,
            trace_flags=TraceFlags(flags),
            trace_state=state,
        )
        return context, trace_id, flags, state

    def later(self, ending_one: _Ending) -> None:
        """End ``ending_one``'s span in the SDK later, not now: from a callback two turns of
        the loop away, off the way of any message (docs/observability.md, "Cost").

        Whatever this task wrote before its next await (a handler's reply, the caller's next
        request) is queued for nats-py's flusher task, which the loop runs in its next turn,
        or was written already (rebeam._fastpath); a callback that schedules the work runs it
        in the turn after, once the write is done, while the message travels and the other
        processes work. Each message's spans are ended on their own: spans put off to be
        ended eight at a time cost a third less CPU each (their code and data stay warm), but
        the eighth message's reply then waited behind the batch's 0.3 ms whenever the next
        message arrived during it, and a call's p50 with tracing on was 1.11-1.13x against
        1.00-1.02x ended one by one (bench_tracing, the same machine).

        Spans put off while no turn of the loop comes (a burst of casts handled one after
        another) are ended together in that callback, :data:`_MAX_PUT_OFF` at most: past
        that they are ended at once, so that a burst does not hold them by the thousand
        (objects gone cold in the CPU's caches cost a fifth more CPU per cast, for nothing)."""
        ending = self._ending
        ending.append(ending_one)
        if len(ending) >= _MAX_PUT_OFF:
            self.finish()
        elif not self._scheduled:
            self._scheduled = True
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, self._finish_later)

    def _finish_later(self) -> None:
        self._scheduled = False
        self.finish()

    def finish(self) -> None:
        """End every span put off by :meth:`later` (also when the node closes). An SDK or
        span processor that raises loses that span, said at a bounded rate, never the rest."""
        ending, self._ending = self._ending, []
        for item in ending:  # (an item's finish: rebeam's call, then the SDK's work)
            try:
                item.finish()
            except Exception as exc:  # a span processor's or exporter's, not ours
                self.lost(exc)

    def lost(self, exc: Exception) -> None:
        """Say, at a bounded rate, that the SDK or a span processor lost a span by raising."""
        self._ratelog.error("could not end a span", f"{type(exc).__name__}: {exc}")


def _planner_for(tracer: trace.Tracer) -> Planner | None:
    try:
        from rebeam import _planned  # the OpenTelemetry SDK's: not installed with the API
    except ImportError:
        return None  # the tracer is another implementation's
    return _planned.for_tracer(tracer)


def _under(parent: SpanContext) -> Context:
    """A context whose current span is the (remote) ``parent``, and nothing else."""
    return Context({_SPAN_KEY: NonRecordingSpan(parent)})


def _field(span: Span) -> list[str] | None:
    """The trace field of an envelope sent under ``span``: its W3C context."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    parent = TRACEPARENT % (context.trace_id, context.span_id, context.trace_flags)
    state = context.trace_state
    # Most traces carry no tracestate: an empty one's header is a join over nothing that
    # cost a tenth of this function.
    return [parent, state.to_header()] if state else [parent]


def _error(exc: BaseException) -> Status:
    return Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:_MAX_STATUS])


class _Around:
    """What the sender spans share: a request's coroutine run inside the span."""

    __slots__ = ()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        raise NotImplementedError

    async def around(self, request: Awaitable[Any]) -> Any:
        """Await ``request`` (a call's, whose envelope carries this span's field) inside the
        span, as ``with`` would: one coroutine on the way of a traced call, not a block
        inside another (rebeam._node's traced call)."""
        try:
            result = await request
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self.__exit__(None, None, None)
        return result


class _Sending(_Around):
    """A sender span started before the send (a tracer that is not the SDK's, whose spans
    cannot be planned): ended when the block ends, with the error that ended it."""

    __slots__ = ("_ended", "_span", "_tracing", "field")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self._tracing = tracing
        self._span = span
        self._ended = 0
        self.field = _field(span)

    def __enter__(self) -> list[str] | None:
        return self.field

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        if exc is not None:  # rare, and the process may be on its way out: ended now
            span.record_exception(exc)
            span.set_status(_error(exc))
            span.end()
        elif span.is_recording():  # a trace sampled out has nothing to end
            self._ended = time.time_ns()
            self._tracing.later(self)

    def finish(self) -> None:
        self._span.end(end_time=self._ended)


class _PlannedSending(_Around):
    """A sender span planned when it is made, right before its block (rebeam._planned), and
    started in the SDK only when it is ended: later with others if it ended well, at once
    if an exception ends the block; never if its trace is sampled out (such a span records
    nothing)."""

    __slots__ = ("_ended", "_plan", "_planner", "_tracing", "field", "kind", "name")

    def __init__(
        self,
        tracing: Tracing,
        planner: Planner,
        kind: int,
        span_kind: SpanKind,
        attributes: dict[str, str],
    ) -> None:
        self._tracing = tracing
        self._planner = planner
        self.name = name = _OPERATION[kind]
        self.kind = span_kind
        parent = otel_context.get_current() if _CURRENT is None else _CURRENT.get()
        # The current span as get_current_span finds it, without its two calls; most
        # clients call with none (a root), and then the plan asks no span for its context.
        current = parent.get(_SPAN_KEY)
        self._plan = plan = planner.plan(
            name,
            span_kind,
            attributes,
            time.time_ns(),
            parent,
            None if current is None else current.get_span_context(),  # type: ignore[attr-defined]
        )
        self._ended = 0
        self.field = plan.field()  # the trace field of the envelope sent under it

    def __enter__(self) -> list[str]:
        return self.field

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._plan.recorded:
            return
        if exc is None:
            self._ended = time.time_ns()
            self._tracing.later(self)
            return
        # Rare, and the process may be on its way out: started and ended now. A span
        # processor that raises must not take the place of the exception that ended the call.
        try:
            span = self._start()
            span.record_exception(exc)
            span.set_status(_error(exc))
            span.end()
        except Exception as lost:
            self._tracing.lost(lost)

    def _start(self) -> Span:
        return self._planner.start(self._plan, self.name, self.kind)

    def finish(self) -> None:
        self._start().end(end_time=self._ended)


class _Handling(Span):
    """A handler invocation's span, as the current span while the handler runs: the SDK's
    span, started the first time anything hands this one something to record; asked only
    for its context (or whether it records), it plans the span instead, if this node's
    spans can be planned. Until then it costs an object and nothing of the SDK. Entered by
    ``with`` or :meth:`Tracing.enter`, left by ``with`` or :meth:`leave`; ended after it."""

    __slots__ = (
        "_ended", "_field", "_kind", "_plan", "_span", "_started", "_token", "_tracing",
    )  # fmt: skip
    # Set by Tracing.enter, which makes the object without an __init__ call (a Python call
    # less on a message's path).
    _tracing: Tracing
    _kind: int
    _field: Any
    _span: Span | None  # the SDK's, once started
    _plan: Plan | None  # its ids and sampling, once chosen
    _started: int  # time.time_ns() when the handler began
    _ended: int
    _token: Any  # the attach's contextvars token

    def __init__(self) -> None:
        raise TypeError("made by Tracing.enter")

    def span(self) -> Span:
        """The SDK's span, started now if it was not yet (with the time the handler began,
        and the ids planned for it if they were)."""
        span = self._span
        if span is None:
            span = self._span = self._tracing.start_handling(
                self._kind, self._field, self._started, self._plan
            )
        return span

    def _planned(self) -> Plan | None:
        """The span's plan, made now if need be; None once its SDK span was started (it is
        the one to ask then), or if this node's spans cannot be planned."""
        if self._span is not None:
            return None
        plan = self._plan
        if plan is None and self._tracing._planner is not None:
            plan = self._plan = self._tracing.plan_handling(self._kind, self._field, self._started)
        return plan

    def leave(self, reason: ExitReason | None) -> None:
        """The handler returned, and the actor's exit reason is ``reason`` (None: it goes
        on): the current span is the one before again; the span is ended now if the actor
        crashed, else put off (:meth:`Tracing.later`)."""
        self._ended = time.time_ns()
        if _CURRENT is None:
            otel_context.detach(self._token)
        else:
            try:
                _CURRENT.reset(self._token)
            except ValueError:  # not this task's token: the API says so, as it would
                otel_context.detach(self._token)
        if reason is not None and not reason.is_clean:
            # The actor crashed: ended now, before the process may end.
            span = self.span()
            span.set_status(Status(StatusCode.ERROR, str(reason)[:_MAX_STATUS]))
            span.end(end_time=self._ended)
        else:
            self._tracing.later(self)

    def finish(self) -> None:
        if self._span is None:
            plan = self._plan
            tracing = self._tracing
            if plan is None and tracing._planner is not None:
                plan = self._plan = tracing.plan_handling(self._kind, self._field, self._started)
            if plan is not None and not plan.recording():
                return  # planned, and sampled out: no SDK span at all
        self.span().end(end_time=self._ended)

    # -- the Span API, as the current span

    def get_span_context(self) -> SpanContext:
        """The span's context, for a span made under it or a propagator: planned, with no
        SDK span yet, if this node's spans can be."""
        plan = self._planned()
        return plan.context() if plan is not None else self.span().get_span_context()

    def is_recording(self) -> bool:
        plan = self._planned()
        return plan.recording() if plan is not None else self.span().is_recording()

    def end(self, end_time: int | None = None) -> None:
        self.span().end(end_time)

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        self.span().set_attributes(attributes)

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        self.span().set_attribute(key, value)

    def add_event(
        self, name: str, attributes: types.Attributes = None, timestamp: int | None = None
    ) -> None:
        self.span().add_event(name, attributes, timestamp)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        self.span().add_link(context, attributes)

    def update_name(self, name: str) -> None:
        self.span().update_name(name)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        self.span().set_status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: types.Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        self.span().record_exception(exception, attributes, timestamp, escaped)


class _Handled:
    """:meth:`Tracing.handling`: a handler span entered and left by ``with``."""

    __slots__ = ("_field", "_handling", "_kind", "_outcome", "_tracing")

    def __init__(
        self, tracing: Tracing, kind: int, field: Any, outcome: Callable[[], ExitReason | None]
    ) -> None:
        self._tracing = tracing
        self._kind = kind
        self._field = field
        self._outcome = outcome
        self._handling: _Handling | None = None

    def __enter__(self) -> None:
        self._handling = self._tracing.enter(self._kind, self._field)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handling is not None:
            self._handling.leave(self._outcome())


_blank = object.__new__  # an object of a class with slots, no __init__ called
_Ending = _Sending | _PlannedSending | _Handling  # what Tracing.later puts off
