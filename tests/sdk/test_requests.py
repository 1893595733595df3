"""The one request path (rebeam._requests): the bound on pending requests, and that every way
a request ends leaves nothing pending. A real actor process answers; a Requests of its own,
beside the node's, is small enough to fill."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator

import pytest

import rebeam
from rebeam import _subjects
from rebeam._envelope import CALL, SEND
from rebeam._interest import InterestProbe
from rebeam._ratelog import RateLog
from rebeam._requests import RECEIPT, Answer, Requests
from rebeam._stats import Stats

PROBE = "rebeam_test_actors:Probe"
REPLY = Answer("reply")


@pytest.fixture
async def node(nats_server, namespace) -> AsyncIterator[rebeam.Node]:
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def one_slot(node: rebeam.Node) -> Requests:
    """A Requests with room for one, answered on an inbox of the node's own."""
    stats = Stats()
    requests = Requests(
        node.nc,
        f"{node._inbox}.one",
        max_pending=1,
        stats=stats,
        ratelog=RateLog(logging.getLogger("test"), "test"),
        interest=InterestProbe(node.nc, node.namespace, stats),
    )
    await node.nc.subscribe(f"{requests.inbox}.*", cb=requests.on_reply)
    await node.nc.flush()
    return requests


def call_to(node: rebeam.Node, pid: rebeam.Pid, message: object) -> tuple[str, bytes]:
    return _subjects.mailbox(pid, node.pid), node._envelope(int(CALL), message)


async def until_pending(requests: Requests, count: int) -> None:
    async with asyncio.timeout(5):
        while len(requests) != count:  # noqa: ASYNC110 - a request is out when it is pending
            await asyncio.sleep(0.005)


async def test_past_the_bound_a_request_waits_for_a_slot_within_its_deadline(launcher, node):
    child = await launcher.start(PROBE)
    requests = await one_slot(node)
    subject, defer = call_to(node, child.pid, "defer")
    held = asyncio.create_task(requests.request(child.pid, subject, defer, 10, REPLY))
    await until_pending(requests, 1)
    subject, echo = call_to(node, child.pid, ["echo", "queued"])
    with pytest.raises(rebeam.CallTimeout, match=r"no free call slot within 0\.2s"):
        await requests.request(child.pid, subject, echo, 0.2, REPLY)
    # A request waiting for the slot gets it once the held one is answered.
    queued = asyncio.create_task(requests.request(child.pid, subject, echo, 10, REPLY))
    assert await node.call(child.pid, ["release", "late"]) == "released"
    assert await asyncio.wait_for(held, 5) == "late"
    assert await asyncio.wait_for(queued, 5) == "queued"
    assert len(requests) == 0


async def test_every_end_of_a_request_leaves_nothing_pending(launcher, node):
    child = await launcher.start(PROBE)
    requests = await one_slot(node)
    subject, echo = call_to(node, child.pid, ["echo", 1])
    assert await requests.request(child.pid, subject, echo, 5, REPLY) == 1
    subject, sleep = call_to(node, child.pid, ["sleep", 0.5])
    timeout = re.escape(f"no reply from {child.pid} within 0.1s")
    with pytest.raises(rebeam.CallTimeout, match=timeout):
        await requests.request(child.pid, subject, sleep, 0.1, REPLY)
    receipt = node._envelope(int(SEND), "hello")
    assert await requests.request(child.pid, subject, receipt, 5, RECEIPT) is None
    nobody = rebeam.Pid.for_incarnation(node.namespace, "nobody", 1)
    subject, echo = call_to(node, nobody, ["echo", 1])
    with pytest.raises(rebeam.NoProc):
        await requests.request(nobody, subject, echo, 5, REPLY)
    assert len(requests) == 0
    subject, defer = call_to(node, child.pid, "defer")
    held = asyncio.create_task(requests.request(child.pid, subject, defer, None, REPLY))
    await until_pending(requests, 1)
    requests.fail_all(lambda pid: rebeam.NoProc(f"closed during a call to {pid}"))
    with pytest.raises(rebeam.NoProc, match="closed during a call"):
        await held
    assert len(requests) == 0
