"""The trace field of an envelope, read as a tracing receiver reads it, and the switch."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from rebeam import _envelope, tracing
from rebeam.errors import CodecError
from rebeam.tracing import read_field

ROOT = Path(__file__).resolve().parents[2]
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_valid_context_is_kept() -> None:
    assert read_field([PARENT]) == (PARENT, "", None)
    state = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE,tenant@vendor=x"
    assert read_field([PARENT, state]) == (PARENT, state, None)
    assert read_field(None) == (None, "", None)


@pytest.mark.parametrize(
    ("trace_id", "span_id", "flags"),
    [
        (0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, 1),
        (1, 1, 0),
        (2**128 - 1, 2**64 - 1, 3),
    ],
)
def test_a_sender_writes_the_w3c_form_a_receiver_keeps(
    trace_id: int, span_id: int, flags: int
) -> None:
    """The sender's traceparent (ids and flags zero-padded, lowercase hex) is exactly what a
    W3C parser reads back, at the smallest and largest ids."""
    written = tracing.TRACEPARENT % (trace_id, span_id, flags)
    assert read_field([written]) == (written, "", None)
    version, trace_hex, span_hex, flags_hex = written.split("-")
    assert (version, int(trace_hex, 16), int(span_hex, 16), int(flags_hex, 16)) == (
        "00",
        trace_id,
        span_id,
        flags,
    )


@pytest.mark.parametrize(
    "field",
    [
        PARENT,  # not in an array
        {"traceparent": PARENT},
        [],
        [PARENT, "", "extra"],
        [1],
        [PARENT.encode()],
        [PARENT.upper()],
        [PARENT + "-00"],  # a later version's longer form
        ["ff" + PARENT[2:]],
        ["00-" + "0" * 32 + PARENT[35:]],
        [PARENT[:36] + "0" * 16 + "-01"],
        [PARENT.replace("-", "_")],
        ["x" * 1_000_000],
        [PARENT[:-1] + "\u00e9"],
    ],
)
def test_a_malformed_traceparent_drops_the_field(field: object) -> None:
    read = read_field(field)
    assert read.traceparent is None
    assert read.problem


@pytest.mark.parametrize(
    "state",
    [
        7,
        "a=" + "x" * 600,
        ",".join(f"k{i}=v" for i in range(33)),
        "Upper=1",
        "k=v=w",
        "k=v,k=w",
        "k=\u00e9",
        "=v",
    ],
)
def test_a_malformed_tracestate_is_dropped_alone(state: object) -> None:
    read = read_field([PARENT, state])
    assert read.traceparent == PARENT
    assert read.tracestate == ""
    assert read.problem


def test_an_envelope_has_six_or_seven_items() -> None:
    six = [1, 2, "ns.a.1", "ns.b.1", 1, "hi"]
    for fields in (six, [*six, [PARENT]], [*six, "anything"]):
        assert _envelope.unpack_fields(msgpack.packb(fields)) == fields
    for fields in (six[:5], [*six, [PARENT], None]):
        with pytest.raises(CodecError, match="not a 6- or 7-item array"):
            _envelope.unpack_fields(msgpack.packb(fields))
    with pytest.raises(CodecError, match="unknown message kind"):
        _envelope.unpack_fields(msgpack.packb([1, 9, "ns.a.1", None, 1, 0, [PARENT]]))


@pytest.mark.parametrize(
    ("value", "on"), [("1", True), ("on", True), ("", False), ("0", False), ("off", False)]
)
def test_the_switch(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv(tracing.ENV, value)
    assert tracing.wanted() is on
    assert tracing.wanted(not on) is not on  # a program's own choice wins


def test_a_typo_in_the_switch_is_warned_about_and_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(tracing.ENV, "ture")
    with caplog.at_level(logging.WARNING, "rebeam.tracing"):
        assert not tracing.wanted()
    assert "REBEAM_TRACING='ture' is neither" in caplog.text


def test_on_without_a_tracer_provider_stays_off() -> None:
    # A fresh interpreter: this one may have set its provider already (one per process).
    code = (
        "import logging; from rebeam import tracing, _ratelog, _stats; "
        "from rebeam.pids import Pid; logging.basicConfig(); "
        "pid = Pid.for_client('ns'); "
        "print(tracing.for_node(True, pid, _stats.Stats(), _ratelog.RateLog(tracing.log, '')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "set no OpenTelemetry tracer provider" in done.stderr
    assert "Traceback" not in done.stderr


def test_off_does_not_even_import_opentelemetry() -> None:
    # An idle actor's memory is a benchmark target: a process that does not trace must not
    # pay for the library.
    code = (
        "import sys, rebeam, rebeam.runtime._main; from rebeam import tracing, _ratelog, _stats; "
        "from rebeam.pids import Pid; "
        "log = _ratelog.RateLog(tracing.log, ''); "
        "tracing.for_node(None, Pid.for_client('ns'), _stats.Stats(), log); "
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {k: v for k, v in os.environ.items() if k != tracing.ENV}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
