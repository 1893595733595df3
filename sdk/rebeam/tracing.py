"""Distributed tracing: the W3C trace context travels in the envelope, and OpenTelemetry spans
wrap every send, cast and call at the sender and every handler at the receiver, so a request
that crosses five actors is one trace (docs/observability.md, "Tracing").

Off by default, and then free: a node decides once, when it is made (:func:`wanted`), and
an actor's host picks its handler path then; nothing on the way of a message looks up a
context or imports OpenTelemetry. On when both hold:

* ``REBEAM_TRACING=1`` in the process's environment (``rebeam.connect(..., tracing=True)``
  for a client says so in code);
* the process set an OpenTelemetry tracer provider before the node was made (an actor: at
  the import of its module). ``rebeam[tracing]`` installs the SDK; the exporter is the
  program's choice.

The trace field of an envelope is read without OpenTelemetry (rebeam._tracefield, whose
names this module re-exports).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from rebeam._tracefield import (
    MAX_TRACEPARENT,
    MAX_TRACESTATE,
    TRACEPARENT,
    TraceField,
    read_field,
)

if TYPE_CHECKING:
    from rebeam._ratelog import RateLog
    from rebeam._spans import Tracing
    from rebeam._stats import Stats
    from rebeam.pids import Pid

__all__ = [
    "ENV",
    "MAX_TRACEPARENT",
    "MAX_TRACESTATE",
    "TRACEPARENT",
    "TraceField",
    "read_field",
    "wanted",
]

log = logging.getLogger("rebeam.tracing")

ENV = "REBEAM_TRACING"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def wanted(option: bool | None = None) -> bool:
    """Whether this process asks for tracing: ``option`` if given, else ``REBEAM_TRACING``.
    A value that is neither on nor off is warned about and taken as off: a typo in a
    setting must not stop a process from starting."""
    if option is not None:
        return option
    text = os.environ.get(ENV, "").strip().lower()
    if text in _ON:
        return True
    if text not in _OFF:
        log.warning("%s=%r is neither 1/true/yes/on nor 0/false/no/off: tracing is off", ENV, text)
    return False


def for_node(option: bool | None, pid: Pid, stats: Stats, ratelog: RateLog) -> Tracing | None:
    """The tracing of a node being made, or None: not asked for, or nothing to record spans
    with (each said once in the log)."""
    if not wanted(option):
        return None
    try:
        from rebeam import _spans  # OpenTelemetry: imported only by a process that traces
    except ImportError as exc:
        log.warning("tracing is on but OpenTelemetry cannot be imported (%s): tracing is off", exc)
        return None
    tracer = _spans.provided_tracer()
    if tracer is None:
        # Without a provider the API hands out spans that record nothing: rebeam would pay
        # for them for nothing.
        log.warning(
            "%s=1 but this process set no OpenTelemetry tracer provider before connecting: "
            'tracing is off (docs/observability.md, "Tracing")',
            ENV,
        )
        return None
    return _spans.Tracing(tracer, pid, stats, ratelog)
