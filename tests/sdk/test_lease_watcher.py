"""Leases after trouble: a lease watcher whose consumer nats-py replaced leaves nothing
behind for long; a peer slow to come back after an outage is not reported lost while it
holds its lease; and a holder whose refresh landed though its answer never came keeps it.

nats-py replaces the consumer of a key-value watch when it misses two idle heartbeats (a
process starved of CPU on a busy machine is enough) and does not delete the old one: the
server keeps it, with its subscriptions, for the watch's inactive threshold (docs/nats.md,
"Lease watchers"). A real nats-server's monitoring endpoint counts them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from typing import Any

import nats
from tests.sdk.hostile_inputs import until

import rebeam
from rebeam import _lease, _subjects
from rebeam._lease import Lease, lease_alive, open_leases
from rebeam._subjects import leases_bucket
from rebeam.auth.grants import Grant, Role
from rebeam.exits import ExitKind
from rebeam.pids import Pid

PROBE = "rebeam_test_actors:Probe"


async def server_subscriptions(monitor_url: str) -> int:
    def read() -> int:
        with urllib.request.urlopen(f"{monitor_url}/subsz", timeout=5) as answer:
            return int(json.load(answer)["num_subscriptions"])

    return await asyncio.to_thread(read)


def lease_watch_of(nc: Any) -> Any:
    """The node's lease watch: the one ordered consumer its connection subscribes for."""
    watches = [sub for sub in nc._subs.values() if sub._jsi is not None and sub._jsi._ordered]
    assert len(watches) == 1, f"{len(watches)} ordered consumers"
    return watches[0]


async def test_a_replaced_watcher_consumer_is_gone_soon(
    launcher, nats_server, namespace, monkeypatch
):
    monkeypatch.setattr(_lease, "WATCHER_IDLE_LIMIT", 2.0)  # the server's threshold, scaled
    peer = await launcher.start(PROBE)
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        await node.monitor(peer.pid)  # a monitor starts the node's lease watcher

        async def watching() -> bool:
            return any(sub._jsi is not None for sub in node.nc._subs.values())

        await until(watching, "the lease watcher to subscribe")
        await node.nc.flush()
        before = await server_subscriptions(nats_server.monitor_url)
        # What nats-py does after two missed heartbeats, done now instead of on a busy day.
        watch = lease_watch_of(node.nc)
        await watch._jsi.reset_ordered_consumer(watch._jsi._sseq + 1)

        async def replaced() -> bool:
            return await server_subscriptions(nats_server.monitor_url) > before

        await until(replaced, "the new consumer to be made")

        async def old_one_gone() -> bool:
            return await server_subscriptions(nats_server.monitor_url) <= before

        await until(old_one_gone, "the replaced consumer to be deleted by the server", timeout=30)


async def test_a_peer_slow_to_come_back_after_an_outage_is_not_reported_lost(
    launcher, nats_server, namespace
):
    # Its lease outlives the pause below by far; a NATS outage while it is paused is what a
    # busy machine does to a process that takes long to reconnect.
    peer = await launcher.start(PROBE, env={"REBEAM_LEASE_TTL": "120"})
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        ref = await node.monitor(peer.pid)
        os.kill(peer.os_pid, signal.SIGSTOP)
        try:
            await nats_server.restart_async()

            async def judged() -> bool:
                return (await node.stats_of())["slow_to_return"] == 1

            # The node asks again after its reconnect, and after 10 s without an answer
            # looks at the peer's lease.
            await until(judged, "the node to find the peer's lease standing", timeout=60)
        finally:
            os.kill(peer.os_pid, signal.SIGCONT)

        async def answers() -> bool:  # once it has reconnected in its turn
            try:
                return await node.call(peer.pid, ["echo", "back"], timeout=1) == "back"
            except (rebeam.NoProc, rebeam.CallTimeout):
                return False

        await until(answers, "the peer to answer again", timeout=60)
        assert node.demonitor(ref), "the monitor fired"  # active still: no Down came


async def test_a_refresh_that_landed_though_its_answer_never_came_keeps_the_lease(
    nats_server, namespace
):
    pid = Pid.for_incarnation(namespace, "held", 1)
    nc = await nats.connect(
        nats_server.url,
        token=nats_server.credentials(Grant(Role.ACTOR, namespace, pid=pid)),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.lease",  # an actor's inboxes only
    )
    lease = Lease(nc.jetstream(), pid, ttl=3)  # a refresh every second
    lost = asyncio.Event()
    lease.on_lost = lost.set
    try:
        await lease.acquire()
        # A refresh of this holder's that landed while its answer was lost (it timed out
        # behind a burst of other traffic): the key is one revision ahead of what the
        # holder knows.
        subject = _subjects.kv(leases_bucket(namespace), pid.tokens)
        ack = await nc.jetstream().publish(
            subject, b"1", headers={"Nats-Expected-Last-Subject-Sequence": str(lease.revision)}
        )
        landed = ack.seq

        async def caught_up() -> bool:
            return lost.is_set() or lease.revision > landed

        await until(caught_up, "the holder's next refresh", timeout=30)
        assert not lost.is_set(), "a refresh that landed was taken for a lost lease"
        assert await lease_alive(await open_leases(nc.jetstream(), namespace), pid)
    finally:
        await lease.release()
        await nc.close()


async def test_a_holder_cut_off_for_good_stops_once_its_lease_has_expired(
    launcher, nats_server, namespace
):
    """Its connection never comes back (the server is gone for good), so it can never hear
    that its lease expired: it must tell so by its own clock, and exit ``noconnection`` for
    its supervisor to restart it, not live on deaf under a pid everyone else has freed."""
    ttl = 3
    peer = await launcher.start(PROBE, env={"REBEAM_LEASE_TTL": str(ttl)})
    nats_server.kill()
    # Expired one TTL after its last confirmed refresh; told at the first refresh tick
    # after that, whose publish times out after TTL/3 (at least 1 s).
    reason = await peer.wait(timeout=4 * ttl + 20)
    assert reason.kind == ExitKind.NOCONNECTION, peer.stderr()
    assert "lost its lease" in peer.stderr()
