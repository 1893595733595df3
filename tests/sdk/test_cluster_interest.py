"""A three-server NATS cluster (as the Helm chart runs): a process that has just started
receiving on one server is reachable at once from a caller on another server.

The cluster is secured like every server rebeam starts: the same accounts and auth callout on
all three, one issuer (on the first server) answering for every server's clients.

Interest in a subject reaches the other servers of a cluster asynchronously, so a request
sent right after the callee subscribed can get "no responders"
(docs/nats.md, "Subscription interest"). The SDK retries a 503 briefly when the callee holds
a live lease (rebeam._interest); without that, these tests fail in a good fraction of the
rounds. A dead pid must still be noproc at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest

import rebeam
from rebeam._actor import Host
from rebeam._node import Node
from rebeam._orphans import die_with_parent
from rebeam.auth import serverconf
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Issuer, IssuerSecrets
from rebeam.backends import provision
from rebeam.natsd import find_nats_server
from rebeam.pids import Pid

ROUNDS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsCluster:
    """Three nats-servers with JetStream, routed to each other on loopback."""

    def __init__(self, workdir: Path, namespace: str, size: int = 3) -> None:
        self.namespace = namespace
        self.client_ports = [_free_port() for _ in range(size)]
        self.monitor_ports = [_free_port() for _ in range(size)]
        cluster_ports = [_free_port() for _ in range(size)]
        routes = ", ".join(f'"nats://127.0.0.1:{port}"' for port in cluster_ports)
        self.secrets = IssuerSecrets.create()
        self.issuer: Issuer | None = None
        self.processes: list[subprocess.Popen[bytes]] = []
        for i in range(size):
            (workdir / f"p{i}").mkdir()
            config = serverconf.render(
                port=self.client_ports[i],
                ports_dir=workdir / f"p{i}",
                store_dir=workdir / f"s{i}",
                namespaces=(namespace,),
                issuer_secrets=self.secrets,
            ) + "\n".join([
                f'server_name: "s{i}"',
                f'http: "127.0.0.1:{self.monitor_ports[i]}"',
                "cluster {",
                '  name: "rebeam-test"',
                f'  listen: "127.0.0.1:{cluster_ports[i]}"',
                f"  routes: [{routes}]",
                "}",
                "",
            ])  # fmt: skip
            (workdir / f"s{i}.conf").write_text(config)
            argv = [find_nats_server(), "-c", str(workdir / f"s{i}.conf")]
            with open(workdir / f"s{i}.log", "wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        argv,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        preexec_fn=die_with_parent,
                    )
                )

    def url(self, i: int) -> str:
        return f"nats://127.0.0.1:{self.client_ports[i]}"

    def credentials(self, role: Role, pid: Pid | None = None) -> str:
        assert self.issuer is not None
        return self.issuer.issue(Grant(role, self.namespace, pid))

    async def set_up(self) -> None:
        """Start the issuer, and provision the namespace as its backend would."""
        self.issuer = Issuer(self.url(0), self.secrets)
        self.issuer.start()
        nc = await nats.connect(self.url(0), token=self.credentials(Role.BACKEND))
        try:
            await provision(nc, self.namespace)
        finally:
            await nc.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every server sees its routes and JetStream has a meta leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._ready(i) for i in range(len(self.processes))):
                return
            time.sleep(0.1)
        raise TimeoutError("the NATS cluster did not form")

    def _ready(self, i: int) -> bool:
        try:
            base = f"http://127.0.0.1:{self.monitor_ports[i]}"
            with urllib.request.urlopen(f"{base}/routez", timeout=1) as r:
                routes = json.load(r).get("num_routes", 0)
            with urllib.request.urlopen(f"{base}/jsz", timeout=1) as r:
                leader = (json.load(r).get("meta_cluster") or {}).get("leader")
        except OSError:
            return False
        return routes >= len(self.processes) - 1 and bool(leader)

    def stop(self) -> None:
        if self.issuer is not None:
            self.issuer.stop()
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def nats_cluster(tmp_path: Path, namespace: str) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(tmp_path, namespace)
    try:
        cluster.wait_ready()
        await cluster.set_up()
        yield cluster
    finally:
        cluster.stop()


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
