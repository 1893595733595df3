"""A mailbox message's sender is the pid its subject names (the payload names none): reading
it must neither credit a message to anyone but the subject's sender nor remember without
bound. A real nats-server; the backend's connection may publish as anyone, the worst case."""

from __future__ import annotations

import pytest
from tests.sdk.hostile_inputs import message, until

import rebeam
from rebeam import _node, _subjects
from rebeam._envelope import CAST
from rebeam.pids import Pid


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


def test_the_sender_is_read_from_the_subject_alone() -> None:
    node = _node.Node.__new__(_node.Node)  # only what sender_of reads
    node.pid = Pid.for_incarnation("ns", "me", 3)
    node.namespace = "ns"
    node._senders = {}
    node._subject = _subjects.mailbox_subscription(node.pid)
    node._from_prefix = node._subject[: -len(".*.*.*")] + "."
    node._ns_dot = "ns."
    sender = Pid.for_incarnation("ns", "you", 7)
    assert node.sender_of(_subjects.mailbox(node.pid, sender)) == "ns.you.7"
    light = _subjects.mailbox(node.pid, sender)[: -len(_subjects.WHOLE)] + "light"
    other = _subjects.mailbox(Pid.for_incarnation("ns", "me", 2), sender)
    for subject in (light, other, "", "rebeam.ns.pid.me.3._.you.7", "rebeam.ns.pid.me.3._."):
        assert node.sender_of(subject) == "", subject


async def test_the_remembered_senders_are_bounded(launcher, node):
    fakes = _node._MAX_SENDERS + 100
    for i in range(fakes):
        fake = Pid.for_incarnation(launcher.namespace, f"fake-{i}", 1)
        await launcher.nc.publish(_subjects.mailbox(node.pid, fake), message(CAST, i))
    await launcher.nc.flush()

    async def all_received() -> bool:
        return node.stats.received == fakes

    await until(all_received, f"{fakes} casts to be received", timeout=60)
    assert node.stats.misaddressed == 0
    assert len(node._senders) <= _node._MAX_SENDERS
