"""A lease on a three-server cluster outlives the restart of the server that holds the lease
bucket: that server comes back with its store, and the holder's refreshes go on, with no
"lost its lease" (docs/nats.md, "Leases across a server restart")."""

from __future__ import annotations

import asyncio
import time

import nats
import pytest
from tests.natscluster import NatsCluster

from rebeam import _subjects
from rebeam._lease import Lease, lease_alive, open_leases
from rebeam._subjects import leases_bucket
from rebeam.auth.grants import Role
from rebeam.pids import Pid

TTL = 15  # a refresh every 5 s: the server's restart must fit in the 10 s left at worst
DEADLINE = 60.0


async def _holder_of_leases(cluster: NatsCluster) -> int:
    """The index of the server that holds the namespace's lease bucket."""
    nc = await nats.connect(cluster.url(0), token=cluster.credentials(Role.BACKEND))
    try:
        stream = _subjects.kv_stream(leases_bucket(cluster.namespace))
        info = await nc.jetstream().stream_info(stream)
    finally:
        await nc.close()
    assert info.cluster is not None
    assert info.cluster.leader is not None
    return int(info.cluster.leader.removeprefix("s"))


@pytest.mark.timeout(180)
async def test_a_lease_outlives_a_restart_of_the_server_holding_it(
    nats_cluster: NatsCluster, namespace: str
) -> None:
    holder = await _holder_of_leases(nats_cluster)
    other = (holder + 1) % nats_cluster.size
    pid = Pid.for_incarnation(namespace, "survivor", 1)
    nc = await nats.connect(
        nats_cluster.url(other),
        token=nats_cluster.credentials(Role.ACTOR, pid),
        inbox_prefix=f"{_subjects.inbox_prefix(pid)}.lease",  # an actor's inboxes only
    )
    lease = Lease(nc.jetstream(), pid, ttl=TTL)
    lost = asyncio.Event()
    lease.on_lost = lost.set
    try:
        await lease.acquire()
        nats_cluster.kill(holder)
        before = lease.revision  # no refresh can land while the bucket's server is down
        nats_cluster.restart(holder)
        # The holder's first refresh on the restarted server is where a lost bucket would
        # have taken its lease: wait for that refresh (or the loss), not for a while.
        deadline = time.monotonic() + DEADLINE
        while lease.revision == before and not lost.is_set():
            assert time.monotonic() < deadline, "no lease refresh after the server came back"
            await asyncio.sleep(0.1)
        assert not lost.is_set(), f"{pid} lost its lease in the restart"
        leases = await open_leases(nc.jetstream(), namespace)
        assert await lease_alive(leases, pid)
    finally:
        await lease.release()
        await nc.close()
