"""Monitors and links across real processes, with and without trap_exit."""

from __future__ import annotations

import os
import signal

import pytest

import rebeam
from rebeam.exits import KILLED, NOCONNECTION, NOPROC, NORMAL, ExitKind

PROBE = "rebeam_test_actors:Probe"


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_monitor_delivers_down_with_the_real_reason(launcher, node):
    child = await launcher.start(PROBE)
    ref = await node.monitor(child.pid)
    child.kill()
    down = await node.receive(timeout=10)
    assert down == rebeam.Down(ref, child.pid, KILLED)


async def test_monitor_of_a_dead_process_is_noproc_at_once(launcher, node):
    child = await launcher.start(PROBE)
    await child.stop()
    ref = await node.monitor(child.pid)
    assert await node.receive(timeout=2) == rebeam.Down(ref, child.pid, NOPROC)
    ref2 = await node.monitor("no-such-name")
    assert await node.receive(timeout=2) == rebeam.Down(ref2, None, NOPROC, "no-such-name")


async def test_demonitor(launcher, node):
    child = await launcher.start(PROBE)
    ref = await node.monitor(child.pid)
    ref2 = await node.monitor(child.pid)
    assert node.demonitor(ref)
    assert not node.demonitor(ref)
    await node.call(child.pid, "stop")
    assert await node.receive(timeout=10) == rebeam.Down(ref2, child.pid, NORMAL)


async def test_actor_monitors_actor(launcher, node):
    watcher = await launcher.start(PROBE, {"report_to": str(node.pid)})
    target = await launcher.start(PROBE)
    assert await node.call(watcher.pid, ["monitor", str(target.pid)]) == "ok"
    with pytest.raises(rebeam.RemoteError):
        await node.call(target.pid, ["raise", "oops"])
    report = await node.receive(timeout=10)
    assert report["down"] == str(target.pid)
    assert report["reason"]["crash"]["exception_type"] == "ValueError"


async def test_link_without_trap_exit_propagates_the_crash(launcher, node):
    a = await launcher.start(PROBE)
    b = await launcher.start(PROBE)
    assert await node.call(a.pid, ["link", str(b.pid)]) == "ok"
    b.kill()
    assert await b.wait() == KILLED
    assert await a.wait() == KILLED  # a dies with the same reason, without terminate


async def test_link_is_bidirectional(launcher, node):
    a = await launcher.start(PROBE)
    b = await launcher.start(PROBE, {"report_to": str(node.pid), "trap_exit": True})
    assert await node.call(a.pid, ["link", str(b.pid)]) == "ok"
    await node.cast(a.pid, "crash")
    reason = await a.wait()
    assert reason.kind is ExitKind.CRASH
    report = await node.receive(timeout=10)
    assert report == {"exit": str(a.pid), "reason": reason.to_wire()}
    assert await node.call(b.pid, ["echo", "alive"]) == "alive"


async def test_normal_exit_of_a_link_is_ignored_unless_trapping(launcher, node):
    a = await launcher.start(PROBE)
    b = await launcher.start(PROBE)
    await node.call(a.pid, ["link", str(b.pid)])
    await node.call(b.pid, "stop")
    assert await b.wait() == NORMAL
    # a is still there: prove it by having it link to something else that crashes.
    assert await node.call(a.pid, ["echo", 1]) == 1


async def test_link_to_dead_process(launcher, node):
    dead = await launcher.start(PROBE)
    await dead.stop()
    trapping = await launcher.start(PROBE, {"report_to": str(node.pid), "trap_exit": True})
    await node.call(trapping.pid, ["link", str(dead.pid)])
    assert await node.receive(timeout=5) == {"exit": str(dead.pid), "reason": "noproc"}
    plain = await launcher.start(PROBE)
    # The exit signal is asynchronous, as in OTP: the reply may or may not get out first.
    outcome: object
    try:
        outcome = await node.call(plain.pid, ["link", str(dead.pid)])
    except rebeam.CalleeExited as exc:
        outcome = exc.reason
    assert outcome in ("ok", NOPROC)
    assert await plain.wait() == NOPROC


async def test_unlink(launcher, node):
    a = await launcher.start(PROBE)
    b = await launcher.start(PROBE)
    await node.call(a.pid, ["link", str(b.pid)])
    await node.call(a.pid, ["unlink", str(b.pid)])
    b.kill()
    await b.wait()
    assert await node.call(a.pid, ["echo", 2]) == 2


async def test_client_links_get_exit_messages(launcher, node):
    child = await launcher.start(PROBE)
    await node.link(child.pid)
    child.kill()
    assert await node.receive(timeout=10) == rebeam.Exit(child.pid, KILLED)


async def test_client_exit_is_published(launcher, nats_server, namespace, node):
    watcher = await launcher.start(PROBE, {"report_to": str(node.pid)})
    async with rebeam.connect(nats_server.url, namespace=namespace) as other:
        assert await node.call(watcher.pid, ["monitor", str(other.pid)]) == "ok"
    report = await node.receive(timeout=10)
    assert report == {"down": str(other.pid), "reason": "normal"}


async def test_lost_node_is_noconnection_and_frees_its_names(launcher, node):
    # A frozen process (SIGSTOP) stands in for a lost node or a partition: its lease stops
    # being refreshed, nobody observes an exit.
    child = await launcher.start(PROBE, name="lost", env={"REBEAM_LEASE_TTL": "2"})
    ref = await node.monitor(child.pid)
    os.kill(child.os_pid, signal.SIGSTOP)
    assert await node.receive(timeout=20) == rebeam.Down(ref, child.pid, NOCONNECTION)
    await node.register("lost")  # the lost pid's name is free
    assert await node.whereis("lost", cached=False) == node.pid
    # When it comes back it finds its lease gone, and stops being that pid.
    os.kill(child.os_pid, signal.SIGCONT)
    assert await child.wait() == NOCONNECTION
    assert await node.whereis("lost", cached=False) == node.pid
