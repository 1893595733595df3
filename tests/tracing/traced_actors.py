"""Actors the tracing tests run in real processes (``python -m rebeam.runtime``), and the
span records both sides compare.

At import, when ``REBEAM_TEST_TRACE_FILE`` names a file, the process sets an OpenTelemetry
tracer provider that appends each span, as it ends, to that file as one JSON line: how the
test process learns what an actor process recorded. Whether rebeam records anything is
still up to ``REBEAM_TRACING``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import rebeam

TRACE_FILE = "REBEAM_TEST_TRACE_FILE"


def record(span: ReadableSpan) -> dict[str, Any]:
    """What a test checks of a span, as plain JSON."""
    context = span.get_span_context()
    assert context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "start": span.start_time,
        "end": span.end_time,
    }


class JsonLinesExporter(SpanExporter):
    """Each span one line, written whole and flushed: a reader never sees half a line
    unless it reads during the one write."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a")  # noqa: SIM115 - open for the process's life

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._file.write("".join(json.dumps(record(s)) + "\n" for s in spans))
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


if os.environ.get(TRACE_FILE):
    _provider = TracerProvider()
    _provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(os.environ[TRACE_FILE])))
    trace.set_tracer_provider(_provider)


class Relay(rebeam.Actor):
    """Passes a message down a chain of hops: ``{"hops": [[how, pid], ...], "report_to":
    pid}``, each hop a ``call`` or a ``cast``; the last actor sends ``"done"`` to
    ``report_to``. Any other call is echoed; ``"casts"`` answers how many other casts came,
    ``"raise"`` raises (the actor crashes)."""

    async def init(self, args: Any) -> None:
        self.casts = 0

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        if isinstance(message, dict):
            return await self._hop(message)
        if message == "raise":
            raise ValueError("asked to")
        return self.casts if message == "casts" else message

    async def handle_cast(self, message: Any) -> None:
        if isinstance(message, dict):
            await self._hop(message)
        else:
            self.casts += 1

    async def _hop(self, message: dict[str, Any]) -> Any:
        hops = message["hops"]
        if not hops:
            await self.node.send(message["report_to"], "done")
            return "done"
        (how, to), rest = hops[0], {**message, "hops": hops[1:]}
        if how == "call":
            return await self.node.call(to, rest)
        await self.node.cast(to, rest)
        return "cast"
