"""Codec, envelope and pids; malformed and oversized input never crash a runtime."""

from __future__ import annotations

import contextlib

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rebeam
from rebeam import _codec, _envelope, _subjects
from rebeam.exits import crash, shutdown_with
from rebeam.pids import Pid, escape_token, unescape_token

PROBE = "rebeam_test_actors:Probe"

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(json_like)
def test_codec_round_trips_json_like_values(value):
    assert _codec.decode(_codec.encode(value)) == value


@given(st.binary(max_size=512))
def test_decoding_random_bytes_raises_only_codec_error(data):
    for decode in (_codec.decode, _envelope.unpack, _envelope.unpack_reply):
        with contextlib.suppress(rebeam.CodecError):
            decode(data)


@given(st.text(min_size=1, max_size=40))
def test_tokens_are_safe_and_reversible(text):
    token = escape_token(text)
    assert all(c.isascii() and (c.isalnum() or c in "_-=") for c in token)
    assert unescape_token(token) == text


def test_pids():
    pid = Pid.for_incarnation("shop", "run-1/pipeline/writer", 2)
    assert str(pid) == "shop.run-1=2Fpipeline=2Fwriter.2"
    assert Pid.parse(str(pid)) == pid
    assert Pid.for_incarnation("shop", "run-1/pipeline/writer", 3).supersedes(pid)
    assert Pid.for_client("shop") != Pid.for_client("shop")
    sender = Pid.for_incarnation("shop", "c", 1)
    assert _subjects.mailbox(pid, sender) == "rebeam.shop.pid.run-1=2Fpipeline=2Fwriter.2._.c.1._"
    assert _subjects.sender_text(_subjects.mailbox(pid, sender)) == "shop.c.1"
    with pytest.raises(ValueError, match="namespace"):
        Pid.for_incarnation("Bad.NS", "x", 1)
    with pytest.raises(ValueError, match="malformed"):
        Pid.parse("a.b")


def test_pids_exit_reasons_and_models_travel():
    @rebeam.message(name="test.Point")
    class Point(pydantic.BaseModel):
        x: int
        blob: bytes

    value = {
        "pid": Pid.for_client("ns"),
        "reason": crash(exception_type="E", message="m"),
        "shutdown": shutdown_with([1]),
        "point": Point(x=1, blob=b"\x00"),
    }
    assert _codec.decode(_codec.encode(value)) == value


def test_unencodable_values_are_refused_at_the_sender():
    class NotRegistered(pydantic.BaseModel):
        x: int = 1

    with pytest.raises(rebeam.CodecError, match="not a registered message type"):
        _codec.encode(NotRegistered())
    with pytest.raises(rebeam.CodecError, match="set"):
        _codec.encode({1, 2})
    with pytest.raises(rebeam.CodecError):
        _codec.encode(object())


def test_unknown_model_is_refused_at_the_receiver():
    @rebeam.message(name="test.Secret")
    class Secret(pydantic.BaseModel):
        x: int

    data = _codec.encode(Secret(x=1))
    del _codec._models_by_name["test.Secret"]
    try:
        with pytest.raises(rebeam.CodecError, match="not registered"):
            _codec.decode(data)
    finally:
        _codec._models_by_name["test.Secret"] = Secret


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_oversized_message_refused_at_sender(launcher, node):
    child = await launcher.start(PROBE)
    with pytest.raises(rebeam.MessageTooLarge):
        await node.call(child.pid, ["echo", b"x" * (2 * 1024 * 1024)])
    assert await node.call(child.pid, ["echo", "still fine"]) == "still fine"


async def test_garbage_never_crashes_a_runtime(launcher, node):
    child = await launcher.start(PROBE)
    subject = _subjects.mailbox(child.pid, node.pid)
    garbage_count = 0

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        st.binary(max_size=256)
        | st.builds(
            lambda kind, body: _envelope.pack_mailbox(kind, body),
            st.sampled_from(list(_envelope.Kind)),
            st.binary(max_size=64),
        )
    )
    def publish_garbage(data: bytes) -> None:
        nonlocal garbage_count
        garbage.append(data)
        garbage_count += 1

    garbage: list[bytes] = []
    publish_garbage()
    for data in garbage:
        await node.nc.publish(subject, data)
        await node.nc.publish(subject, data, reply=node.nc.new_inbox())
    # A malformed call is answered with an error, not a timeout.
    reply = await node.nc.request(subject, b"\x93\x01\x02", timeout=5)
    assert _envelope.unpack_reply(reply.data)[0] == 1
    assert await node.call(child.pid, ["echo", "alive"]) == "alive"
    stats = await node.call(child.pid, "stats")
    assert stats["malformed"] > 0
    assert child.proc.returncode is None


async def test_oversized_message_refused_at_receiver(nats_server, namespace):
    async with (
        rebeam.connect(nats_server.url, namespace=namespace, max_message_size=1000) as small,
        rebeam.connect(nats_server.url, namespace=namespace) as big,
    ):
        await big.send(small.pid, b"x" * 5000)  # fits the server, not the receiver's limit
        await big.send(small.pid, "small")
        assert await small.receive(timeout=5) == "small"
        assert small.stats.oversized == 1
