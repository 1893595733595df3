"""The calling side of a call: ``rebeam.call`` and ``Node.call`` hand back the request's one
coroutine (rebeam._requests), whose deadline is kept by the node's one timer
(rebeam._deadlines), and whose PUB starts with a head made once per destination
(rebeam._fastpath.publish_request). What that path keeps: the timeout's words and that it never
comes early, each call ending at its own deadline, answers that come late or malformed
counted, a cancelled call's slot freed at once, errors raised before anything is sent, the
node's close ending what waits. Real nats-server, real actor processes."""

from __future__ import annotations

import asyncio
import collections
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import rebeam
from rebeam import _deadlines, _reader, metrics
from rebeam._codec import encode
from rebeam._fastpath import publish_request, request_head
from rebeam._requests import Requests
from rebeam.errors import CallingSelf, CallTimeout, CodecError, MessageTooLarge

PROBE = "rebeam_test_actors:Probe"
REBEAM = str(Path(rebeam.__file__).parent)  # the package's own modules, not its subpackages
# rebeam._reader stands in for nats-py's read loop, which is left out of the caller's count:
# its calls are counted apart.
READER = str(Path(_reader.__file__))
DEADLINE = 20.0  # seconds: a loaded 2-core machine, not the expected time


@pytest.fixture
async def node(nats_server: Any, namespace: str) -> AsyncIterator[rebeam.Node]:
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_a_call_is_the_request_s_one_coroutine_and_runs_few_python_calls(launcher, node):
    """What the caller runs per call, in Python calls of rebeam's own (nats-py's read loop
    and the event loop are left out: they are the same for any caller). A layer of
    coroutines (api, node, request, attempt) costs two each: made, and resumed on the
    answer."""
    child = await launcher.start(PROBE)
    for made in (node.call(child.pid, "count"), rebeam.call(child.pid, "count")):
        assert made.cr_code is Requests.request.__code__
        await made
    count = 200

    async def by_node() -> None:
        for _ in range(count):
            await node.call(child.pid, ["echo", 1])

    async def by_api() -> None:
        for _ in range(count):
            await rebeam.call(child.pid, ["echo", 1])

    await by_node()  # warmed: the first calls import, cache and subscribe
    node_calls = (await python_calls(by_node))[REBEAM] / count
    api_calls = (await python_calls(by_api))[REBEAM] / count
    # request (made and resumed), encode, the deadline, the callee watch in and out (its
    # Pid hashed each time), the PUB, the answer's routing, handling and decoding, the end,
    # the latency histogram. There were 22 with four layers of coroutines (and 25 by the
    # module-level call, a coroutine of its own).
    assert node_calls < 18.5, node_calls  # (a few rebuild the deadline heap)
    # Itself and current_node(); the halves leave room for the odd timer or lease refresh.
    assert api_calls < node_calls + 2.5, (api_calls, node_calls)
    # The reader, per answer: data_received, _parse, _frame, _message (and the inline handler,
    # counted above as the answer's handling).
    assert (await python_calls(by_node))[READER] / count < 4.5


async def python_calls(run: Callable[[], Awaitable[None]]) -> collections.Counter[str]:
    """The Python functions entered while ``run`` ran (a coroutine resumed is entered
    again), by the directory of their file (rebeam._reader's by its file)."""
    entered: collections.Counter[str] = collections.Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            filename = frame.f_code.co_filename
            entered[filename if filename == READER else str(Path(filename).parent)] += 1

    sys.setprofile(profile)
    try:
        await run()
    finally:
        sys.setprofile(None)
    return entered


async def test_a_timeout_keeps_its_words_and_never_comes_early(launcher, node):
    child = await launcher.start(PROBE)
    started = time.perf_counter()
    words = rf"no reply from {child.pid} within 0\.3s$"
    with pytest.raises(CallTimeout, match=words):
        await node.call(child.pid, "defer", timeout=0.3)
    assert time.perf_counter() - started >= 0.3
    assert len(node._requests) == 0
    # The deadline's clock is the latency histogram's: one reading serves both.
    assert _deadlines.clock is metrics.clock


async def test_calls_end_at_their_own_deadlines_one_timer_for_all(launcher, node):
    child = await launcher.start(PROBE)
    ended: list[float] = []

    async def times_out(timeout: float) -> None:
        with pytest.raises(CallTimeout, match=rf"within {timeout:g}s$"):
            await node.call(child.pid, "defer", timeout=timeout)
        ended.append(timeout)

    # Made longest first: each shorter one needs the one timer set nearer.
    started = time.perf_counter()
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*(times_out(t) for t in (0.6, 0.4, 0.2)))
    assert ended == [0.2, 0.4, 0.6]
    assert time.perf_counter() - started >= 0.6
    # An answered call leaves nothing to wait for: no timer is left set.
    assert await node.call(child.pid, ["echo", "after"], timeout=DEADLINE) == "after"
    assert node._requests._deadlines._timer is not None  # the one for this call's deadline...
    assert len(node._requests) == 0  # ...which finds nothing pending when it fires


async def test_the_deadline_heap_stays_bounded_however_long_the_timeouts(launcher, node):
    child = await launcher.start(PROBE)
    for i in range(600):
        assert await node.call(child.pid, ["echo", i], timeout=3600) == i
    # Every answered call left its entry; the heap was rebuilt before it held more than
    # twice the pending requests and a constant.
    assert len(node._requests._deadlines) <= 64 + 1


async def test_late_and_malformed_answers_are_counted_and_refused(launcher, node):
    child = await launcher.start(PROBE)
    inbox = node._requests.inbox
    call = asyncio.ensure_future(node.call(child.pid, "defer", timeout=DEADLINE))
    async with asyncio.timeout(DEADLINE):
        while not node._requests._pending:  # noqa: ASYNC110 - out when it is pending
            await asyncio.sleep(0.005)
    (token,) = node._requests._pending
    await launcher.nc.publish(f"{inbox}.nonsense", encode([0, "x"]))  # no token at all
    await launcher.nc.publish(f"{inbox}.{token + 1000}", encode([0, "x"]))  # not ours
    await launcher.nc.publish(f"{inbox}.{token}", b"\xc1 not msgpack")
    with pytest.raises(CodecError):
        await asyncio.wait_for(call, DEADLINE)
    assert node.stats.malformed_replies == 1
    assert node.stats.late_replies == 2
    assert len(node._requests) == 0
    assert await node.call(child.pid, ["echo", "still"], timeout=DEADLINE) == "still"


async def test_a_cancelled_call_frees_its_slot_at_once(launcher, node):
    child = await launcher.start(PROBE)
    call = asyncio.ensure_future(node.call(child.pid, "defer", timeout=None))
    async with asyncio.timeout(DEADLINE):
        while not node._requests._pending:  # noqa: ASYNC110 - out when it is pending
            await asyncio.sleep(0.005)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert len(node._requests) == 0
    # The callee's watch may stay (the next call needs no SUB), with no call in it.
    assert all(not watch.calls for watch in node._watching._watches.values())


async def test_what_cannot_be_sent_raises_before_anything_is_awaited(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace, max_message_size=1024) as node:
        sent, out = list(node.metrics.sent), node.nc.stats["out_msgs"]
        with pytest.raises(CallingSelf, match="called itself"):
            node.call(node.pid, "me")
        with pytest.raises(MessageTooLarge):
            rebeam.call(rebeam.Pid.for_incarnation(namespace, "anyone", 1), "x" * 2000)
        assert (node.metrics.sent, node.nc.stats["out_msgs"]) == (sent, out)
        assert len(node._requests) == 0


async def test_closing_the_node_ends_the_calls_waiting_and_their_timer(launcher, nats_server):
    node = await rebeam.connect(nats_server.url, namespace=launcher.namespace)
    child = await launcher.start(PROBE)
    call = asyncio.ensure_future(node.call(child.pid, "defer", timeout=DEADLINE))
    async with asyncio.timeout(DEADLINE):
        while not node._requests._pending:  # noqa: ASYNC110 - out when it is pending
            await asyncio.sleep(0.005)
    await node.close()
    with pytest.raises(rebeam.NoProc, match="closed during a call"):
        await asyncio.wait_for(call, DEADLINE)
    assert node._requests._deadlines._timer is None


async def test_a_request_head_is_refused_where_nats_py_would_refuse_the_subject(node):
    assert request_head("a.b", "_INBOX_rebeam.x") == b"PUB a.b _INBOX_rebeam.x."
    assert request_head("a b", "_INBOX_rebeam.x") is None
    assert request_head("", "_INBOX_rebeam.x") is None
    assert request_head("a.b", "in box") is None
    head = request_head("a.b", node._requests.inbox)
    assert head is not None
    await node.nc.close()
    assert not publish_request(node.nc, head, 1, b"x")  # closed: nats-py's path raises
