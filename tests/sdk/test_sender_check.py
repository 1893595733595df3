"""The mailbox's sender check (the envelope's sender must be the one its subject names)
remembers each sender's subject: remembering must neither let a forger through nor grow
without bound. A real nats-server; the backend's connection may publish as anyone, the worst
case."""

from __future__ import annotations

import pytest
from tests.sdk.hostile_inputs import envelope, until

import rebeam
from rebeam import _node, _subjects
from rebeam._envelope import CAST
from rebeam.pids import Pid


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_a_sender_seen_before_is_still_refused_on_another_subject(launcher, node):
    honest = Pid.for_incarnation(launcher.namespace, "honest", 1)
    other = Pid.for_incarnation(launcher.namespace, "other", 1)
    nc = launcher.nc
    await nc.publish(_subjects.mailbox(node.pid, honest), envelope(CAST, node.pid, str(honest), 1))
    await nc.flush()
    assert await node.receive(timeout=10) == 1
    # The same sender string, now on a subject only ``other`` may publish: a forgery.
    await nc.publish(_subjects.mailbox(node.pid, other), envelope(CAST, node.pid, str(honest), 2))
    await nc.publish(_subjects.mailbox(node.pid, honest), envelope(CAST, node.pid, str(honest), 3))
    await nc.flush()
    assert await node.receive(timeout=10) == 3
    assert node.stats.forged == 1


async def test_the_remembered_senders_are_bounded(launcher, node):
    fakes = _node._MAX_SENDER_SUBJECTS + 100
    for i in range(fakes):
        fake = Pid.for_incarnation(launcher.namespace, f"fake-{i}", 1)
        await launcher.nc.publish(
            _subjects.mailbox(node.pid, fake), envelope(CAST, node.pid, str(fake), i)
        )
    await launcher.nc.flush()

    async def all_received() -> bool:
        return node.stats.received == fakes

    await until(all_received, f"{fakes} casts to be received", timeout=60)
    assert node.stats.forged == 0
    assert len(node._sender_subjects) <= _node._MAX_SENDER_SUBJECTS
