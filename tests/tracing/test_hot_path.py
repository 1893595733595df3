"""A node that traces takes the receiving hot path too (rebeam._actor.Host.on_message): a
traced call or cast to a free actor gets its handler span, a child of the sender's, without
the whole way (Node.admit, an Envelope, deliver, _dispatch), and costs, beyond the SDK's own
span, only a few Python calls more than an untraced one (docs/observability.md, "Cost").

A real nats-server; the actors are hosted in the test's own process, fed MSG frames through
nats-py's parser, as tests/sdk/test_call_path.py feeds them."""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import rebeam
from rebeam import _codec, _subjects
from rebeam._actor import Host
from rebeam._envelope import CALL, CAST, OK
from rebeam._node import Node
from rebeam.auth.grants import Grant, Role
from rebeam.natsd import NatsServer
from rebeam.pids import Pid
from tests.sdk.hostile_inputs import packed, until
from tests.sdk.test_call_path import call_frame
from tests.sdk.test_receive_batch import calls_per_message, frame
from tests.tracing.test_cost import tracings

DEADLINE = 20.0  # seconds: a loaded 2-core machine, not the expected time
PAYLOAD = {"n": 1, "data": "x" * 32}
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
COUNT = 400  # calls per count
# Python calls per received call a node that traces may add beyond the SDK's own span made
# by start_span: the handler span made, made current and restored, put off, planned and made
# as planned (which skips start_span's lookups: -1.7 with the SDK 1.45; -32.2 since the
# handler's span is one object entered and left in one call each, its attributes copied into
# the SDK's span as checked, and a start told nobody whose on_start does nothing). The whole
# way (Node.admit, an Envelope, deliver, _traced_dispatch, _dispatch) added 15.3.
EXTRA_PER_CALL = -30


class Answering(rebeam.Actor):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        self.seen.append(message)
        return message

    async def handle_cast(self, message: Any) -> None:
        self.seen.append(message)


@contextlib.asynccontextmanager
async def hosted(
    server: NatsServer, namespace: str, slot: str, *, tracing: bool
) -> AsyncIterator[tuple[Node, Answering]]:
    """An actor on a node of its own that traces or not; a BACKEND grant, as its answers go
    to requests the server never delivered."""
    actor = Answering()
    pid = Pid.for_incarnation(namespace, slot, 1)
    node = await Node.connect(
        server.url, namespace=namespace, pid=pid, is_client=False, start=False, lease=False,
        credentials=server.credentials(Grant(Role.BACKEND, namespace, pid)), tracing=tracing,
    )  # fmt: skip
    try:
        Host(node, actor)
        await node.start(lease=False)
        yield node, actor
    finally:
        await node.close()


def traced_message(kind: int, body: object) -> bytes:
    return packed([2, kind, body, [PARENT]])


async def test_a_traced_call_and_cast_take_the_hot_path_with_their_spans(
    nats_server, namespace, launcher, memory_spans: InMemorySpanExporter
) -> None:
    async with hosted(nats_server, namespace, "traced", tracing=True) as (node, actor):
        caller = Pid.for_incarnation(namespace, "caller", 1)
        subject, inbox = _subjects.mailbox(node.pid, caller), _subjects.inbox_prefix(caller)
        answers: list[Any] = []

        async def answered(msg: Any) -> None:
            answers.append(_codec.decode(msg.data))

        await launcher.nc.subscribe(f"{inbox}.>", cb=answered)
        await launcher.nc.flush()
        sid = node.mailbox_sub._id
        whole_way: list[str] = []
        admit = node.admit
        node.admit = lambda msg: whole_way.append(msg.subject) or admit(msg)  # type: ignore[method-assign]
        await node.nc._ps.parse(
            call_frame(sid, subject, f"{inbox}.1", traced_message(CALL, "call"))
            + frame(sid, subject, traced_message(CAST, "cast"))
        )
        await until(lambda: _true(len(answers) == 1), "the call's answer", timeout=DEADLINE)
        await until(lambda: _true(len(actor.seen) == 2), "the cast", timeout=DEADLINE)
        assert answers == [[OK, "call"]]
        assert whole_way == [], "a traced call or cast to a free actor takes the hot path"
        node._tracing.finish()  # type: ignore[union-attr]
        spans = {span.name: span for span in memory_spans.get_finished_spans()}
        for name, kind in (("handle_call", SpanKind.SERVER), ("handle_cast", SpanKind.CONSUMER)):
            span = spans[name]
            assert span.kind is kind
            assert span.parent is not None
            assert (span.context.trace_id, span.parent.span_id) == (
                0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7
            )  # fmt: skip
            assert span.attributes["messaging.destination.name"] == str(node.pid)
        assert node.metrics.received[CALL] == node.metrics.received[CAST] == 1


async def test_a_traced_call_costs_the_sdks_span_and_a_few_calls_more(
    nats_server, namespace, tracer_provider: TracerProvider, memory_spans: InMemorySpanExporter
) -> None:
    tracer = tracer_provider.get_tracer("rebeam")
    costs: dict[bool, float] = {}
    attributes: dict[str, str] = {}
    for traced in (False, True):
        slot = "traced" if traced else "untraced"
        async with hosted(nats_server, namespace, slot, tracing=traced) as (node, actor):
            caller = Pid.for_incarnation(namespace, "caller", 1)
            subject = _subjects.mailbox(node.pid, caller)
            reply = f"{_subjects.inbox_prefix(caller)}.0123456789abcdef.1"
            body = traced_message(CALL, PAYLOAD) if traced else packed([2, CALL, PAYLOAD])
            burst = call_frame(node.mailbox_sub._id, subject, reply, body) * COUNT

            async def feed(burst: bytes = burst, node: Node = node) -> None:
                await node.nc._ps.parse(burst)
                if node._tracing is not None:
                    node._tracing.finish()  # every span of the burst ended in the count

            await feed()  # warmed first: a path's first run imports and caches
            await until(lambda a=actor: _true(len(a.seen) == COUNT), "the warm-up", DEADLINE)
            costs[traced] = await calls_per_message(
                feed, lambda a=actor: len(a.seen) == 2 * COUNT, COUNT
            )
            assert node.stats.reply_refused == 0
            if traced:  # the SDK's own span is made with the actor's attributes
                attributes = node._tracing._handling[CALL]  # type: ignore[union-attr]

    async def sdk_span() -> None:
        for _ in range(COUNT):
            tracer.start_span("handle_call", kind=SpanKind.SERVER, attributes=attributes).end()

    await sdk_span()  # warmed as the paths were
    own = await calls_per_message(sdk_span, lambda: True, COUNT)
    assert costs[True] - costs[False] - own <= EXTRA_PER_CALL, (costs, own)


async def _true(value: bool) -> bool:
    return value


async def test_a_handler_span_left_in_another_context_is_detached_as_the_api_detaches(
    caplog,
) -> None:
    """The handler span is made current on the API's context variable directly; a token
    that is not the context's (the API would log it, never raise) is handed to the API."""
    _, actor, _ = tracings()

    def enter() -> Any:
        handling = actor.handling(int(CALL), [PARENT], lambda: None)
        handling.__enter__()
        return handling

    handling = contextvars.copy_context().run(enter)
    with caplog.at_level(logging.ERROR):
        contextvars.copy_context().run(handling.__exit__, None, None, None)
    assert "Failed to detach context" in caplog.text
    actor.finish()
