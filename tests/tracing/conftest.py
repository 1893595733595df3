"""Fixtures of the tracing tests: this process's spans in memory, each actor's in a file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.tracing.traced_actors import TRACE_FILE

HERE = Path(__file__).resolve().parent
RELAY = "traced_actors:Relay"

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="session")
def tracer_provider() -> TracerProvider:
    """This process's provider: OpenTelemetry takes one per process, so one per session."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)
    return provider


@pytest.fixture
def memory_spans(tracer_provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def actor_env(trace_file: Path, *, tracing: bool) -> dict[str, str]:
    """The environment of a traced_actors process: its span file, tracing on or off."""
    return {
        "PYTHONPATH": str(HERE),
        TRACE_FILE: str(trace_file),
        "REBEAM_TRACING": "1" if tracing else "0",
    }


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The spans an actor wrote so far (a line still being written is left for later)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]
