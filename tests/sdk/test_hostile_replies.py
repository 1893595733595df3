"""A reply goes only to an inbox: the reply subject of a request is the sender's choice, and
a process that answers any subject publishes for the sender, with its own permissions: to
the JetStream API (``$JS.API.STREAM.DELETE.<stream>``), into a stream, into a mailbox. Real
actor processes, a real ``rebeam run``, a real nats-server with JetStream; a stream whose
subjects are reply subjects here shows whether anything was published there."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import nats
import pytest
from tests.local.conftest import SLEEPER, StartRun, rebeam_run, supervisor  # noqa: F401
from tests.sdk.hostile_inputs import deep_json, message, until

import rebeam
from rebeam import _subjects
from rebeam._envelope import CALL, CAST, PING, unpack_reply

PROBE = "rebeam_test_actors:Probe"
STREAM = "VICTIM"
DELETE = f"$JS.API.STREAM.DELETE.{STREAM}"
STORED = "victim.reply"  # a subject of the stream: a reply published there is stored


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def a_stream(nc) -> None:
    await nc.jetstream().add_stream(name=STREAM, subjects=["victim.>"])


async def stream_untouched(nc) -> bool:
    """The stream is still there and nothing was published to it."""
    info = await nc.jetstream().stream_info(STREAM)
    return info.state.messages == 0


async def test_no_request_to_an_actor_is_answered_on_a_subject_that_is_no_inbox(launcher, node):
    await a_stream(launcher.nc)
    child = await launcher.start(PROBE)
    bystander = await launcher.start(PROBE)  # its mailbox is a reply subject too
    subject = _subjects.mailbox(child.pid, node.pid)
    for reply in (DELETE, STORED, _subjects.mailbox(bystander.pid, child.pid)):
        await node.nc.publish(subject, message(CALL, "count"), reply=reply)
        await node.nc.publish(subject, message(CAST, "x"), reply=reply)
        await node.nc.publish(subject, message(PING, None), reply=reply)
        await node.nc.publish(subject, b"\xc1", reply=reply)  # malformed: not answered either
        await node.nc.publish(_subjects.stats(child.pid), b"", reply=reply)
    await node.nc.flush()
    # The mailbox is in order: this call comes after the refused ones, none of them handled.
    count = await node.call(child.pid, "count")
    assert await stream_untouched(launcher.nc)
    assert count == 1

    async def counted() -> bool:
        return (await node.stats_of(child.pid))["reply_refused"] == 12

    await until(counted, "12 requests to be refused")
    stats = await node.stats_of(child.pid)
    assert (stats["malformed"], stats["received"]) == (3, 1)
    assert (await node.stats_of(bystander.pid))["malformed"] == 0
    assert await node.call(child.pid, "casts") == []


async def test_a_nats_inbox_gets_pings_and_refusals_but_no_call_is_handled(launcher, node):
    child = await launcher.start(PROBE)
    subject, me = _subjects.mailbox(child.pid, node.pid), str(node.pid)
    # A connection with nats-py's own `_INBOX.` inboxes, sending as the test's client (only
    # a backend's credential may both: an actor's inboxes are always rebeam call inboxes).
    nc = launcher.nc
    pong = await nc.request(subject, message(PING, None), timeout=5)
    assert unpack_reply(pong.data) == (0, None)
    assert await node.is_alive(child.pid)
    refused = await nc.request(subject, message(CALL, "count"), timeout=5)
    status, error = unpack_reply(refused.data)
    assert (status, error["error"]) == (1, "refused")
    assert "call inbox" in error["message"]
    # A call inbox of another namespace is an inbox, but not one of this namespace's calls.
    inbox = f"_INBOX_rebeam.elsewhere.{me.split('.', 1)[1]}.1"
    waiting = await nc.subscribe(inbox, max_msgs=1)
    await nc.publish(subject, message(CALL, "count"), reply=inbox)
    status, error = unpack_reply((await waiting.next_msg(timeout=5)).data)
    assert (status, error["error"]) == (1, "refused")
    assert await node.call(child.pid, "count") == 1
    assert (await node.stats_of(child.pid))["reply_refused"] == 2


@pytest.mark.parametrize(
    ("subject", "reply_inbox", "inbox"),
    [
        ("_INBOX_rebeam.ns.slot.1.7", True, True),
        ("_INBOX_rebeam.other.slot.1.7", False, True),
        ("_INBOX.abc.def", False, True),
        ("_INBOX_rebeam.ns.", False, False),
        ("_INBOX_rebeam.ns.a..b", False, False),
        ("_INBOX_rebeam.ns.*", False, False),
        ("_INBOX_rebeam.ns.>", False, False),
        ("_INBOX.>", False, False),
        ("_INBOX", False, False),
        ("_INBOXES.x", False, False),
        ("$JS.API.STREAM.DELETE.x", False, False),
        ("rebeam.ns.pid.slot.1", False, False),
        ("", False, False),
    ],
)
def test_what_is_an_inbox(subject: str, reply_inbox: bool, inbox: bool) -> None:
    assert _subjects.is_reply_inbox(subject, "ns") is reply_inbox
    assert _subjects.is_inbox(subject) is inbox


def test_a_node_s_own_call_inbox_is_a_reply_inbox() -> None:
    prefix = _subjects.inbox_prefix(rebeam.Pid.parse("ns.s.1"))
    assert _subjects.is_reply_inbox(f"{prefix}.9", "ns")


def test_rebeam_run_answers_control_requests_only_on_an_inbox(
    rebeam_run,  # noqa: F811
    nats_server,
    namespace,
) -> None:
    run = rebeam_run(
        supervisor("app", f"    - {{name: idle, actor: {SLEEPER}}}\n"),
        "--nats",
        nats_server.url,
        "--issuer",
        str(nats_server.workdir / "issuer.json"),
        namespace=namespace,
    )
    run.events.wait("started", "idle")

    async def main() -> None:
        nc = await nats.connect(nats_server.url, token=nats_server.backend_credentials(namespace))
        try:
            await a_stream(nc)
            asker = rebeam.Pid.for_client(run.namespace)
            subject = _subjects.control(run.namespace, "terminate-child", asker)
            stop = json.dumps({"path": "app/idle"}).encode()
            await nc.publish(subject, stop, reply=DELETE)
            await nc.publish(subject, stop, reply=STORED)
            # One subscription answers in order: once this is answered, the one before it
            # was handled (refused).
            ghost = await nc.request(subject, json.dumps({"path": "app/ghost"}).encode(), 10)
            assert "error" in json.loads(ghost.data)
            assert await stream_untouched(nc)
            deep = await nc.request(subject, deep_json(100_000).encode(), 10)
            assert "nested too deeply" in json.loads(deep.data)["error"]
        finally:
            await nc.close()

    asyncio.run(main())
    tree = run.rebeam("tree", "--json")
    assert tree.returncode == 0, tree.stderr
    (root,) = json.loads(tree.stdout)
    assert [(c["name"], c["state"]) for c in root["children"]] == [("idle", "running")]


async def test_the_operator_answers_control_requests_only_on_an_inbox(nats_server, namespace):
    from rebeam_operator.control import ControlServer

    # The operator's world, reduced to what answering needs: one driver in this namespace,
    # no credential issuer (so no RBAC check). A backend's connection asks and answers.
    driver = SimpleNamespace(host=SimpleNamespace(namespace=namespace))
    world = SimpleNamespace(drivers={"d": driver}, messaging=SimpleNamespace(identity=None))
    server = ControlServer(world)  # type: ignore[arg-type]
    nc = await nats.connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:
        await a_stream(nc)
        subject = _subjects.control(namespace, "terminate-child", rebeam.Pid.for_client(namespace))
        await nc.subscribe(_subjects.control_subscription(namespace), cb=server._handle)
        for reply in (DELETE, STORED):
            await nc.publish(subject, b'{"path": ""}', reply=reply)
        answer = await nc.request(subject, b'{"path": ""}', timeout=10)  # after them, in order
        assert "a path is needed" in json.loads(answer.data)["error"]
        assert await stream_untouched(nc)
        assert server.refused == 2
    finally:
        await nc.close()
