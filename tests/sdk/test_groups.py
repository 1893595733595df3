"""Process groups (OTP's pg) across real processes."""

from __future__ import annotations

import pytest

import rebeam

PROBE = "rebeam_test_actors:Probe"


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_join_leave_members_broadcast(launcher, node):
    a = await launcher.start(PROBE, {"join": ["workers"], "report_to": str(node.pid)})
    b = await launcher.start(PROBE, {"join": ["workers", "workers"], "report_to": str(node.pid)})
    members = await rebeam.members("workers")
    assert sorted(map(str, members)) == sorted([str(a.pid), str(b.pid), str(b.pid)])
    assert await rebeam.broadcast("workers", "hello") == 2  # each member once
    got = [await node.receive(timeout=5), await node.receive(timeout=5)]
    assert got == ["hello", "hello"]
    # A member that ends leaves every group.
    b.kill()
    await b.wait()
    assert await rebeam.members("workers") == [a.pid]
    await rebeam.join("workers")
    assert node.pid in await rebeam.members("workers")
    assert await rebeam.leave("workers")
    assert not await rebeam.leave("workers")
    assert await rebeam.members("workers") == [a.pid]
    assert await rebeam.members("nobody-here") == []
