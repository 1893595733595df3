"""Hostile trace contexts at an actor that traces: each malformed one is dropped (and
counted, and logged at a bounded rate), never the message it came with, and never the
actor. Real nats-server, a real actor process recording its spans into a file."""

from __future__ import annotations

import pytest
from tests.sdk.hostile_inputs import packed, until
from tests.tracing.spanfiles import RELAY, actor_env, read_spans

import rebeam
from rebeam import _subjects
from rebeam._envelope import CAST
from rebeam._ratelog import DEFAULT_BURST

pytestmark = pytest.mark.nats

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
DEEP: list[object] = []
for _ in range(200):
    DEEP = [DEEP]
# Each drops the whole context: the message starts a new trace.
BAD_PARENTS = [PARENT, {"traceparent": PARENT}, [], [7], ["x" * 60_000], [PARENT.upper()]]
BAD_PARENTS += [["ff" + PARENT[2:]], [PARENT, "", "extra"], DEEP]
# Each drops only the tracestate: the message stays in the sender's trace.
BAD_STATES = [[PARENT, 7], [PARENT, "k=v,k=w"], [PARENT, "a=" + "x" * 600]]


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_malformed_trace_contexts_are_dropped_not_the_messages(launcher, node, tmp_path):
    spans_file = tmp_path / "spans.jsonl"
    child = await launcher.start(RELAY, env=actor_env(spans_file, tracing=True))
    subject = _subjects.mailbox(child.pid, node.pid)
    hostile = BAD_PARENTS + BAD_STATES
    for n, field in enumerate(hostile, start=1):
        await node.nc.publish(subject, packed([2, CAST, n, field]))
    assert await node.call(child.pid, "casts") == len(hostile)  # every message was handled

    # A span, and so the reading of its context, is made once its handler has run, a turn or
    # a timer later (rebeam._spans): the stats, answered on a subject of their own, can come
    # first.
    async def all_dropped() -> bool:
        return (await node.stats_of(child.pid))["trace_dropped"] >= len(hostile)

    await until(all_dropped, "every malformed context counted")
    assert (await node.stats_of(child.pid))["trace_dropped"] == len(hostile)

    async def recorded() -> bool:
        return len(read_spans(spans_file)) > len(hostile)

    await until(recorded, "the actor's spans")
    casts = [s for s in read_spans(spans_file) if s["name"] == "handle_cast"]
    parents = [s["parent_id"] for s in casts]
    assert parents == [None] * len(BAD_PARENTS) + [PARENT.split("-")[2]] * len(BAD_STATES)
    assert {s["trace_id"] for s in casts[len(BAD_PARENTS) :]} == {PARENT.split("-")[1]}
    logged = child.stderr().count("dropped a malformed trace context")
    assert 1 <= logged <= DEFAULT_BURST, child.stderr()
    assert "Traceback" not in child.stderr()
    assert child.proc.returncode is None
