"""Two operator replicas share the trees by shards of namespaces, each shard held through a
Lease. The replica that drives a tree is SIGKILLed while that tree is in the middle of a
group restart: the other takes the shard over within the lease duration (plus a margin) and
finishes the restart once, with no child ever running two incarnations, nothing orphaned."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client
from operator_helpers import (
    OPERATOR_NAMESPACE,
    Objects,
    Operator,
    Watchdog,
    actor,
    child_state,
    sleeper,
    slow_stopper,
    supervisor,
    wait_armed,
)

from rebeam_operator.shards import shard_of

pytestmark = pytest.mark.e2e

SHARDS = 4
LEASE_SECONDS = 6  # renew deadline 4 s, a round every second
# How long after the kill the survivor may take to hold the shard: the lease's duration
# from the last renewal it saw, a round to notice, and room for a busy machine.
TAKEOVER = LEASE_SECONDS + 10


@dataclass
class Shards:
    """Two operator replicas, r1 and r2, sharing SHARDS shards through this test's own set of
    leases (``prefix``), over the test's namespace and two more: trees in (very likely)
    different shards."""

    cluster: Cluster
    namespaces: list[str]
    replicas: dict[str, Operator]
    prefix: str

    def holders(self) -> dict[int, str]:
        """Shard -> the replica (r1, r2) holding it, of the leases whose holder is one."""
        api = client.CoordinationV1Api(self.cluster.api_client())
        out = {}
        selector = f"rebeam.io/shard-set={self.prefix}"
        for lease in api.list_namespaced_lease(OPERATOR_NAMESPACE, label_selector=selector).items:
            name = lease.metadata.name
            holder = lease.spec.holder_identity or ""
            if "-shard-" in name and holder[:3] in ("r1-", "r2-"):
                out[int(name.rsplit("-", 1)[1])] = holder[:2]
        return out

    def owner(self, namespace: str) -> str | None:
        return self.holders().get(shard_of(namespace, SHARDS))

    def wait_balanced(self) -> None:
        """Until both replicas hold two shards each (once both have joined, or again)."""
        wait_for(
            lambda: sorted(self.holders().values()) == ["r1", "r1", "r2", "r2"],
            timeout=60,
            what="2 shards for each replica",
        )

    def wait_owner(self, namespace: str, replica: str) -> None:
        """Until ``replica`` holds the shard of ``namespace``, within TAKEOVER seconds."""
        wait_for(
            lambda: self.owner(namespace) == replica,
            timeout=TAKEOVER,
            what=f"{replica} holding the shard of {namespace}",
            interval=0.2,
        )


@pytest.fixture
def shards(
    cluster: Cluster, namespace: str, nats: E2ENats, operator_kubeconfig: Path, tmp_path: Path
) -> Iterator[Shards]:
    """The two replicas started, each stopped by its pid at the end; then the test's leases
    and its extra namespaces deleted."""
    prefix = f"t{secrets.token_hex(4)}"
    namespaces = [namespace]
    started: dict[str, Operator] = {}
    try:
        for i in range(2):  # one by one: each made is deleted, should the next fail
            namespaces.append(cluster.create_namespace(f"shards-{i}"))
        for name in ("r1", "r2"):
            workdir = tmp_path / name
            workdir.mkdir()
            process = Operator(operator_kubeconfig, namespace, nats, workdir)
            process.also_watch = tuple(namespaces[1:])
            process.start(
                {
                    "REBEAM_OPERATOR_SHARDS": str(SHARDS),
                    "REBEAM_OPERATOR_POD_NAMESPACE": OPERATOR_NAMESPACE,
                    "REBEAM_OPERATOR_POD_NAME": name,
                    "REBEAM_OPERATOR_SHARD_LEASE_SECONDS": str(LEASE_SECONDS),
                    "REBEAM_OPERATOR_SHARD_LEASE_PREFIX": prefix,
                }
            )
            started[name] = process
        yield Shards(cluster, namespaces, started, prefix)
    finally:
        for process in started.values():
            process.stop()
        leases = client.CoordinationV1Api(cluster.api_client())
        leases.delete_collection_namespaced_lease(
            OPERATOR_NAMESPACE, label_selector=f"rebeam.io/shard-set={prefix}"
        )
        for extra in namespaces[1:]:
            cluster.delete_namespace(extra)


def test_a_replica_killed_mid_restart_hands_its_shard_over(
    shards: Shards, kubelet: ProcessKubelet, tmp_path: Path
) -> None:
    namespaces, replicas = shards.namespaces, shards.replicas
    shards.wait_balanced()

    armed = tmp_path / "c-armed"
    target = namespaces[0]
    objects = {ns: Objects(shards.cluster, ns) for ns in namespaces}
    for ns in namespaces[1:]:
        objects[ns].apply(supervisor("other", [sleeper("x"), sleeper("y")]))
    children = [sleeper("a"), sleeper("b"), slow_stopper("c", 3, armed, shutdown="20s")]
    objects[target].apply(
        supervisor("app", children, strategy="one_for_all", intensity=5, period="120s")
    )
    for ns in namespaces[1:]:
        objects[ns].wait_status("other", lambda s: s.get("ready") == "2/2", what="2/2 ready")
    objects[target].wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    wait_armed(armed)
    watchdog = Watchdog(objects[target])

    # The group restart in progress: c takes its time to stop. Kill the replica driving it.
    killed = shards.owner(target)
    assert killed in replicas, shards.holders()
    survivor = "r2" if killed == "r1" else "r1"
    kubelet.kill_container(target, "app-a-1", "actor", signal.SIGKILL)
    objects[target].wait_status(
        "app", lambda s: child_state(s, "c")["state"] == "stopping", what="c stopping"
    )
    replicas[killed].kill()
    killed_at = time.monotonic()

    shards.wait_owner(target, survivor)
    assert time.monotonic() - killed_at < TAKEOVER
    status = objects[target].wait_status(
        "app",
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == {"a": 2, "b": 2, "c": 2},
        what="the group restart finished by the survivor",
        timeout=90,
    )
    assert len(status["restartHistory"]) == 1  # decided once
    assert child_state(status, "a")["lastExit"]["reason"] == "killed"
    live = {"app-a-2", "app-b-2", "app-c-2"}
    wait_for(lambda: set(objects[target].pods()) == live, timeout=30, what=f"only {live} left")
    assert watchdog.close() == []

    # Every shard is the survivor's now, and it drives every tree: a crash anywhere is
    # restarted by it.
    wait_for(
        lambda: len(shards.holders()) == SHARDS and set(shards.holders().values()) == {survivor},
        timeout=TAKEOVER,
        what=f"{survivor} holding every shard",
    )
    for ns in namespaces[1:]:
        kubelet.kill_container(ns, "other-x-1", "actor", signal.SIGKILL)
        objects[ns].wait_status(
            "other",
            lambda s: s.get("ready") == "2/2" and (s.get("incarnations") or {}).get("x") == 2,
            what=f"x restarted in {ns}",
        )
        assert set(objects[ns].pods()) == {"other-x-2", "other-y-1"}
    replicas[survivor].check_running()


def test_a_frozen_replica_fences_itself_and_acts_on_nothing_when_it_wakes(
    shards: Shards, kubelet: ProcessKubelet
) -> None:
    """SIGSTOP: the replica cannot renew, and cannot stop itself either. The other takes the
    shard over and drives the tree; woken up, the frozen one finds its renew deadline long
    past and drops the shard before anything else, so no restart is decided twice."""
    target = shards.namespaces[0]
    objects = Objects(shards.cluster, target)
    # A window long enough that the restart history keeps both restarts of the test.
    objects.apply(supervisor("app", [sleeper("a"), sleeper("b")], intensity=5, period="300s"))
    objects.wait_status("app", lambda s: s.get("ready") == "2/2", what="2/2 ready")
    shards.wait_balanced()
    watchdog = Watchdog(objects)

    frozen = shards.owner(target)
    replicas = shards.replicas
    assert frozen in replicas, shards.holders()
    survivor = "r2" if frozen == "r1" else "r1"
    pid = replicas[frozen].popen.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)
    try:
        shards.wait_owner(target, survivor)
        kubelet.kill_container(target, "app-a-1", "actor", signal.SIGKILL)
        objects.wait_status(
            "app",
            lambda s: s.get("ready") == "2/2" and s.get("incarnations") == {"a": 2, "b": 1},
            what="a restarted by the survivor",
        )
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(
        lambda: "not renewed in time" in replicas[frozen].log_path.read_text(),
        timeout=30,
        what=f"{frozen} dropping its shards once awake",
    )
    # The two share the shards again, and the tree is driven once: a crash now is one restart.
    shards.wait_balanced()
    kubelet.kill_container(target, "app-b-1", "actor", signal.SIGKILL)
    status = objects.wait_status(
        "app",
        lambda s: s.get("ready") == "2/2" and s.get("incarnations") == {"a": 2, "b": 2},
        what="b restarted",
    )
    assert len(status["restartHistory"]) == 2  # one restart each, none decided twice
    live = {"app-a-2", "app-b-2"}
    wait_for(lambda: set(objects.pods()) == live, timeout=30, what=f"only {live} left")
    assert watchdog.close() == []
    for process in replicas.values():
        process.check_running()


def test_actor_pods_are_let_into_nats_by_the_replica_driving_them(
    shards: Shards, kubelet: ProcessKubelet
) -> None:
    """Every replica is a credential issuer of the NATS server, and every one is asked about
    every connection. An actor pod is let in by the replica that drives its tree; the others
    leave it to that one rather than refuse it. In every namespace, whichever replica drives
    it, Python actors connect, start and are restarted after a crash."""
    shards.wait_balanced()
    apps = {ns: Objects(shards.cluster, ns) for ns in shards.namespaces}
    for objects in apps.values():
        children = [actor(f"g{i}", "hello.greeter:Greeter", register=f"g{i}") for i in range(3)]
        objects.apply(supervisor("app", children))
    for ns, objects in apps.items():
        objects.wait_status("app", lambda s: s.get("ready") == "3/3", what=f"3/3 ready in {ns}")
    for ns in apps:
        kubelet.kill_container(ns, "app-g0-1", "actor", signal.SIGKILL)
    for ns, objects in apps.items():
        status = objects.wait_status(
            "app",
            lambda s: s.get("ready") == "3/3" and (s.get("incarnations") or {}).get("g0") == 2,
            what=f"g0 restarted in {ns}",
        )
        assert all(c["restarts"] == (1 if c["name"] == "g0" else 0) for c in status["children"])
    # No replica refused a pod it does not drive: it left the answer to the one that does.
    for name, process in shards.replicas.items():
        log = process.log_path.read_text()
        assert "is not an actor pod of this operator" not in log, f"{name}:\n{process.log_tail()}"
