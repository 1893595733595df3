"""A three-server NATS cluster (as the Helm chart runs): a process that has just started
receiving on one server is reachable at once from a caller on another server.

The cluster (tests/natscluster.py, the ``nats_cluster`` fixture) is secured like every server
rebeam starts.

Interest in a subject reaches the other servers of a cluster asynchronously, so a request
sent right after the callee subscribed can get "no responders"
(docs/nats.md, "Subscription interest"). The SDK retries a 503 briefly when the callee holds
a live lease (rebeam._interest); without that, these tests fail in a good fraction of the
rounds. A dead pid must still be noproc at once.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.natscluster import NatsCluster, free_port

import rebeam
from rebeam._actor import Host
from rebeam._node import Node
from rebeam.auth.grants import Role
from rebeam.pids import Pid

ROUNDS = 60


class Echo(rebeam.Actor):
    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return message


@contextlib.asynccontextmanager
async def _actor_on(cluster: NatsCluster, i: int, slot: str) -> AsyncIterator[Node]:
    """An actor hosted in this process on server ``i``: lease, then mailbox (as the runtime
    does), yielded once its subscriptions are flushed to that server."""
    pid = Pid.for_incarnation(cluster.namespace, slot, 1)
    node = await Node.connect(
        cluster.url(i),
        namespace=cluster.namespace,
        pid=pid,
        is_client=False,
        start=False,
        credentials=cluster.credentials(Role.ACTOR, pid),
    )
    try:
        Host(node, Echo())
        await node.start()
        node.delivering.set()
        yield node
    finally:
        await node.close()


@contextlib.asynccontextmanager
async def _client_on(cluster: NatsCluster, i: int) -> AsyncIterator[Node]:
    node = await Node.connect(
        cluster.url(i), namespace=cluster.namespace, credentials=cluster.credentials(Role.ADMIN)
    )
    try:
        yield node
    finally:
        await node.close()


async def test_a_fresh_actor_on_another_server_answers_calls_and_receipts(
    nats_cluster: NatsCluster, namespace: str
) -> None:
    async with _client_on(nats_cluster, 1) as caller:
        for i in range(ROUNDS):
            async with _actor_on(nats_cluster, 0, f"echo-{i}") as callee:
                # The very first request after the callee subscribed: the racy one.
                if i % 2:
                    assert await caller.call(callee.pid, i, timeout=5) == i
                else:
                    await caller.cast(callee.pid, i, wait=5)


async def test_monitoring_a_fresh_actor_on_another_server_is_no_false_down(
    nats_cluster: NatsCluster, namespace: str
) -> None:
    async with _client_on(nats_cluster, 2) as watcher:
        for i in range(ROUNDS // 3):
            async with _actor_on(nats_cluster, 0, f"watched-{i}") as callee:
                assert await watcher.is_alive(callee.pid), f"round {i}: a live actor seemed dead"


async def test_a_dead_pid_is_still_noproc_at_once(
    nats_cluster: NatsCluster, namespace: str
) -> None:
    async with _client_on(nats_cluster, 1) as caller:
        async with _actor_on(nats_cluster, 0, "gone") as callee:
            pass  # a clean stop drops the lease
        retries = caller.stats.interest_retries
        with pytest.raises(rebeam.NoProc):
            await caller.call(callee.pid, "hello", timeout=5)
        never = Pid.for_incarnation(namespace, "never-started", 1)
        with pytest.raises(rebeam.NoProc):
            await caller.call(never, "hello", timeout=5)
        assert not await caller.is_alive(never)
        # No lease, so not one retry: the 503 was taken as final.
        assert caller.stats.interest_retries == retries


def test_the_cluster_forms_when_another_process_takes_a_port_picked_for_it(
    tmp_path: Path, namespace: str
) -> None:
    """A route port is picked free before the servers start, and another test run may take
    it before the server listens (what made the cluster "not form" once, on a busy machine).
    The server that cannot listen exits; the cluster is started again on fresh ports."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = int(squatter.getsockname()[1])
        picks = iter([taken])
        cluster = NatsCluster(tmp_path, namespace, pick_port=lambda: next(picks, 0) or free_port())
        try:
            cluster.start()
        finally:
            cluster.stop()
    assert cluster.attempt == 2
