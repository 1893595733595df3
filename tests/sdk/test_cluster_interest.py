"""A three-server NATS cluster (as the Helm chart runs): a process that has just started
receiving on one server is reachable at once from a caller on another server.

Interest in a subject reaches the other servers of a cluster asynchronously, so a request
sent right after the callee subscribed can get "no responders" (nats-notes §0.2). The SDK
retries a 503 briefly when the callee holds a live lease (rebeam._interest); without that,
these tests fail in a good fraction of the rounds. A dead pid must still be noproc at once.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import rebeam
from rebeam._actor import Host
from rebeam._node import Node
from rebeam._orphans import die_with_parent
from rebeam.natsd import find_nats_server
from rebeam.pids import Pid

ROUNDS = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsCluster:
    """Three nats-servers with JetStream, routed to each other on loopback."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.client_ports = [_free_port() for _ in range(size)]
        self.monitor_ports = [_free_port() for _ in range(size)]
        cluster_ports = [_free_port() for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in cluster_ports)
        self.processes: list[subprocess.Popen[bytes]] = []
        for i in range(size):
            argv = [
                find_nats_server(), "-a", "127.0.0.1",
                "-p", str(self.client_ports[i]), "-m", str(self.monitor_ports[i]),
                "--cluster", f"nats://127.0.0.1:{cluster_ports[i]}", "--routes", routes,
                "--cluster_name", "rebeam-test", "--server_name", f"s{i}",
                "-js", "-sd", str(workdir / f"s{i}"),
            ]  # fmt: skip
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
        for proc in self.processes:
            proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster(tmp_path)
    try:
        cluster.wait_ready()
        yield cluster
    finally:
        cluster.stop()


class Echo(rebeam.Actor):
    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return message


@contextlib.asynccontextmanager
async def _actor_on(url: str, namespace: str, slot: str) -> AsyncIterator[Node]:
    """An actor hosted in this process on one server: lease, then mailbox (as the runtime
    does), yielded once its subscriptions are flushed to that server."""
    pid = Pid.for_incarnation(namespace, slot, 1)
    node = await Node.connect(url, namespace=namespace, pid=pid, is_client=False, start=False)
    try:
        Host(node, Echo())
        await node.start()
        node.delivering.set()
        yield node
    finally:
        await node.close()


@contextlib.asynccontextmanager
async def _client_on(url: str, namespace: str) -> AsyncIterator[Node]:
    node = await Node.connect(url, namespace=namespace)
    try:
        yield node
    finally:
        await node.close()


async def test_a_fresh_actor_on_another_server_answers_calls_and_receipts(
    nats_cluster: NatsCluster, namespace: str
) -> None:
    async with _client_on(nats_cluster.url(1), namespace) as caller:
        for i in range(ROUNDS):
            async with _actor_on(nats_cluster.url(0), namespace, f"echo-{i}") as callee:
                # The very first request after the callee subscribed: the racy one.
                if i % 2:
                    assert await caller.call(callee.pid, i, timeout=5) == i
                else:
                    await caller.cast(callee.pid, i, wait=5)


async def test_monitoring_a_fresh_actor_on_another_server_is_no_false_down(
    nats_cluster: NatsCluster, namespace: str
) -> None:
    async with _client_on(nats_cluster.url(2), namespace) as watcher:
        for i in range(ROUNDS // 3):
            async with _actor_on(nats_cluster.url(0), namespace, f"watched-{i}") as callee:
                assert await watcher.is_alive(callee.pid), f"round {i}: a live actor seemed dead"


async def test_a_dead_pid_is_still_noproc_at_once(
    nats_cluster: NatsCluster, namespace: str
) -> None:
    async with _client_on(nats_cluster.url(1), namespace) as caller:
        async with _actor_on(nats_cluster.url(0), namespace, "gone") as callee:
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
