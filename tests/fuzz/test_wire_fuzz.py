"""The wire's decoders under hypothesis: each returns a value or raises its documented
refusal, never anything else, whatever the bytes.

| surface | decoder | refusal |
|---|---|---|
| codec | ``_codec.decode`` | CodecError |
| envelope | ``_envelope.unpack_mailbox`` | CodecError |
| durable envelope | ``_envelope.unpack_fields`` | CodecError |
| call reply | ``_envelope.unpack_reply``, then the error it becomes | CodecError |
| registry record | ``_registry._owner_of`` | CodecError |
| exit reason | ``ExitReason.from_wire`` (then printed) | ValueError |
| exit record | ``ExitReason.from_json`` | ValueError |
| exit event | ``_watching.exit_event`` | ValueError |
| lifecycle event | ``LifecycleEvent.model_validate_json`` (``rebeam events``) | ValueError |
| control reply | ``_management_protocol.parse_reply`` | ValueError |
| durable progress | ``_durable.Progress.parse`` | ValueError |

Inputs: raw msgpack built here (never by the codec), with extensions 1, 2 and 3 nested to
random depths and random payloads; random bytes; truncations of valid input; each envelope
field replaced by a value of the wrong type. Every test is bounded in examples; a failure
prints the blob that reproduces it (``@reproduce_failure``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import msgpack
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rebeam import _codec, _envelope
from rebeam._durable import Progress
from rebeam._management_protocol import parse_reply
from rebeam._registry import _owner_of
from rebeam._requests import error_from_reply
from rebeam._watching import exit_event
from rebeam.errors import CodecError
from rebeam.events import LifecycleEvent
from rebeam.exits import ExitReason
from rebeam.pids import Pid
from tests.fuzz.report import tally

FUZZ = settings(
    max_examples=300,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PID = Pid.for_incarnation("fuzz", "slot", 1)

# -- raw msgpack, built without the codec ----------------------------------------------------


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True, strict_types=False)  # type: ignore[no-any-return]


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
)


def _ext(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[msgpack.ExtType]:
    """An extension 1, 2 or 3 (or another code) whose payload is packed ``inner``, or bytes."""
    payload = inner.map(_pack) | st.binary(max_size=30) | st.just(str(PID).encode())
    return st.builds(msgpack.ExtType, st.sampled_from([1, 2, 3, 3, 2, 1, 0, 127]), payload)


values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.binary(max_size=4), inner, max_size=4)
        | _ext(inner)
    ),
    max_leaves=30,
)


def nested_ext(depth: int, code: int) -> msgpack.ExtType:
    inner = _pack("normal")
    for _ in range(depth - 1):
        inner = _pack(msgpack.ExtType(code, inner))
    return msgpack.ExtType(code, inner)


deep_exts = st.builds(
    nested_ext, st.integers(min_value=1, max_value=40), st.sampled_from([1, 2, 3])
)


@st.composite
def mangled(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """Valid bytes, then maybe truncated, maybe with a byte flipped, maybe with junk after."""
    data = draw(valid)
    how = draw(st.sampled_from(["as is", "truncated", "flipped", "extended"]))
    if how == "truncated" and data:
        return data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
    if how == "flipped" and data:
        i = draw(st.integers(min_value=0, max_value=len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if how == "extended":
        return data + draw(st.binary(min_size=1, max_size=8))
    return data


any_bytes = st.binary(max_size=300)
packed_values = (values | deep_exts).map(_pack)


def refuses(surface: str, decode: Any, data: Any, refusal: type[Exception]) -> Any:
    """Feed one input: a value comes back, or ``refusal``; anything else fails the test
    (and is counted as a crash of ``surface``)."""
    with tally(surface):
        try:
            return decode(data)
        except refusal:
            return None


# -- the codec and the envelope ---------------------------------------------------------------


@FUZZ
@given(mangled(packed_values) | any_bytes)
@example(b"\x91" * 2000 + b"\xc0")  # containers deeper than msgpack's stack
@example(_pack(nested_ext(9, 3)))
def test_codec(data: bytes) -> None:
    value = refuses("codec", _codec.decode, data, CodecError)
    if value is not None:  # what decoded can be sent on, or is refused as cleanly
        refuses("codec (re-encoded)", _codec.encode, value, CodecError)


@st.composite
def mailbox_messages(draw: st.DrawFn) -> bytes:
    """A mailbox message whose fields are valid, or each replaced by any value."""
    fields: list[Any] = [2, draw(st.sampled_from([1, 2, 3, 4, 5, 6])), draw(values | deep_exts)]
    if draw(st.booleans()):
        fields.append(draw(values))  # the trace context, unchecked here
    for i in range(2):
        if draw(st.booleans()):
            fields[i] = draw(values)
    if draw(st.integers(0, 9)) == 0:  # the wrong number of fields
        fields = fields[: draw(st.integers(0, 4))] + draw(st.lists(values, max_size=2))
    return _pack(fields)


@FUZZ
@given(mangled(mailbox_messages()) | any_bytes)
def test_envelope(data: bytes) -> None:
    item = refuses("envelope", _envelope.unpack_mailbox, data, CodecError)
    if item is not None:
        env = _envelope.mailbox_envelope(item, str(PID), "fuzz.c.1", None, len(data))
        assert env.kind in (1, 2, 3, 4, 5, 6)


@st.composite
def durable_envelopes(draw: st.DrawFn) -> bytes:
    """A durable envelope array whose fields are valid, or each replaced by any value."""
    fields: list[Any] = [1, draw(st.sampled_from([1, 2, 3, 4, 5, 6])), str(PID), "fuzz.c.1", 1]
    fields.append(draw(values | deep_exts))
    for i in range(5):
        if draw(st.booleans()):
            fields[i] = draw(values)
    if draw(st.integers(0, 9)) == 0:  # the wrong number of fields
        fields = fields[: draw(st.integers(0, 7))] + draw(st.lists(values, max_size=2))
    return _pack(fields)


@FUZZ
@given(mangled(durable_envelopes()) | any_bytes)
def test_durable_envelope(data: bytes) -> None:
    item = refuses("durable envelope", _envelope.unpack_fields, data, CodecError)
    if item is not None:
        env = _envelope.envelope_of(item, None, len(data))
        assert isinstance(env.to, str)
        assert env.sender is None or isinstance(env.sender, str)


@FUZZ
@given(
    mangled(st.tuples(st.sampled_from([0, 1, 1, 2, True, 1.0]), values | deep_exts).map(_pack))
    | any_bytes
)
@example(_pack([1, {"error": "exited", "reason": {"crash": {b"a": 1, "b": 2}}}]))
@example(_pack([1, {"error": "refused", "message": [[[]]] * 10}]))
def test_call_reply(data: bytes) -> None:
    reply = refuses("call reply", _envelope.unpack_reply, data, CodecError)
    if reply is not None and reply[0] == _envelope.ERROR:
        with tally("call reply (error)"):
            error = error_from_reply(reply[1], PID)
            assert isinstance(error, Exception)
            str(error)


@FUZZ
@given(
    mangled(
        st.fixed_dictionaries(
            {"pid": st.just(msgpack.ExtType(1, str(PID).encode())) | values},
            optional={"value": values | deep_exts},
        ).map(_pack)
    )
    | any_bytes
)
def test_registry_record(data: bytes) -> None:
    refuses("registry record", _owner_of, data, CodecError)


# -- exit reasons, records and events ---------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=20,
)
crash_details = st.dictionaries(
    st.sampled_from(["exception_type", "message", "traceback", "exit_code", "signal", "other"]),
    json_values,
    max_size=4,
)
reasons = (
    st.sampled_from(["normal", "shutdown", "killed", "noconnection", "noproc", "crash", "x"])
    | st.builds(lambda info: {"shutdown": info}, json_values)
    | st.builds(lambda details: {"crash": details}, crash_details | json_values)
    | json_values
)


@FUZZ
@given(reasons)
@example({"shutdown": json.loads("[" * 40 + "]" * 40)})
def test_exit_reason(wire: Any) -> None:
    reason = refuses("exit reason", ExitReason.from_wire, wire, ValueError)
    if reason is not None:
        str(reason)
        assert ExitReason.from_wire(reason.to_wire()).to_wire() == reason.to_wire()


texts = reasons.map(json.dumps) | st.text(max_size=200)


@FUZZ
@given(mangled(texts.map(str.encode)) | any_bytes)
@example(b"[" * 100_000)
def test_exit_record(data: bytes) -> None:
    refuses("exit record", ExitReason.from_json, data, ValueError)


events = st.fixed_dictionaries(
    {"event": st.sampled_from(["exited", "started", "x"]), "pid": st.just(str(PID)) | json_values},
    optional={"reason": reasons, "incarnation": json_values, "time": json_values},
).map(json.dumps)


@FUZZ
@given(mangled(events.map(str.encode)) | any_bytes)
def test_exit_event(data: bytes) -> None:
    refuses("exit event", exit_event, data, ValueError)
    event = refuses("lifecycle event", LifecycleEvent.model_validate_json, data, ValueError)
    if event is not None and event.reason is not None:
        refuses("lifecycle event reason", lambda e: e.exit_reason, event, ValueError)


control_replies = st.dictionaries(st.sampled_from(["ok", "error", "x"]), json_values)


@FUZZ
@given(mangled(control_replies.map(json.dumps).map(str.encode)) | any_bytes)
def test_control_reply(data: bytes) -> None:
    refuses("control reply", parse_reply, data, ValueError)


@FUZZ
@given(st.none() | st.binary(max_size=30) | st.integers(0, 2**70).map(lambda n: str(n).encode()))
def test_durable_progress(data: bytes | None) -> None:
    refuses("durable progress", Progress.parse, data, ValueError)


# -- the deepest value: in a process of its own, so a crash is a failed test, not pytest's ----

DEEP = """
import msgpack
from rebeam import _codec
from rebeam.errors import CodecError
for code in (1, 2, 3):
    inner = msgpack.packb("normal")
    for _ in range(10_000):
        inner = msgpack.packb(msgpack.ExtType(code, inner))
    try:
        _codec.decode(inner)
    except CodecError as exc:
        print(code, exc)
"""


def test_ten_thousand_nested_extensions_are_a_codec_error() -> None:
    with tally("codec (10,000 nested extensions)") as t:
        done = subprocess.run(
            [sys.executable, "-c", DEEP], capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            t.crash()
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}"
    lines = done.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["1", "2", "3"], done.stdout
    assert all("nested too deeply" in line for line in lines[1:]), done.stdout
