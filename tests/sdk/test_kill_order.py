"""A backend's kill order (brutal_kill): the runtime of that incarnation SIGKILLs itself at
once; an order for another incarnation of the slot is none of its business."""

from __future__ import annotations

from dataclasses import replace

import rebeam
from rebeam.backends import order_kill
from rebeam.exits import KILLED

PROBE = "rebeam_test_actors:Probe"


async def test_a_runtime_ordered_killed_dies_killed(launcher):
    child = await launcher.start(PROBE, slot="ordered")
    await order_kill(launcher.nc, child.pid)
    assert await child.wait() == KILLED


async def test_an_order_for_another_incarnation_is_ignored(launcher, nats_server, namespace):
    child = await launcher.start(PROBE, slot="ordered", incarnation=2)
    await order_kill(launcher.nc, replace(child.pid, incarnation=1))
    await order_kill(launcher.nc, replace(child.pid, incarnation=3))
    # The orders reached the server before this call, and the runtime gets them first.
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        assert await node.call(child.pid, "pid") == child.pid
    assert child.proc.returncode is None
