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


@pytest.fixture
def namespaces(cluster: Cluster, namespace: str) -> Iterator[list[str]]:
    """The test's namespace and two more: trees in (very likely) different shards."""
    extra = [cluster.create_namespace(f"shards-{i}") for i in range(2)]
    yield [namespace, *extra]
    for name in extra:
        cluster.delete_namespace(name)


@pytest.fixture
def prefix() -> str:
    return f"t{secrets.token_hex(4)}"  # this test's own set of leases


@pytest.fixture
def replicas(
    cluster: Cluster,
    namespaces: list[str],
    nats: E2ENats,
    operator_kubeconfig: Path,
    tmp_path: Path,
    prefix: str,
) -> Iterator[dict[str, Operator]]:
    started: dict[str, Operator] = {}
    try:
        for name in ("r1", "r2"):
            workdir = tmp_path / name
            workdir.mkdir()
            process = Operator(operator_kubeconfig, namespaces[0], nats, workdir)
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
        yield started
    finally:
        for process in started.values():
            process.stop()
        leases = client.CoordinationV1Api(cluster.api_client())
        leases.delete_collection_namespaced_lease(
            OPERATOR_NAMESPACE, label_selector=f"rebeam.io/shard-set={prefix}"
        )


def holders(cluster: Cluster, prefix: str) -> dict[int, str]:
    """Shard -> the replica (r1, r2) holding it, of the leases whose holder is one."""
    api = client.CoordinationV1Api(cluster.api_client())
    out = {}
    selector = f"rebeam.io/shard-set={prefix}"
    for lease in api.list_namespaced_lease(OPERATOR_NAMESPACE, label_selector=selector).items:
        name = lease.metadata.name
        holder = lease.spec.holder_identity or ""
        if "-shard-" in name and holder[:3] in ("r1-", "r2-"):
            out[int(name.rsplit("-", 1)[1])] = holder[:2]
    return out


def wait_balanced(cluster: Cluster, prefix: str) -> None:
    """Until both replicas hold two shards each (once both have joined, or again)."""
    wait_for(
        lambda: sorted(holders(cluster, prefix).values()) == ["r1", "r1", "r2", "r2"],
        timeout=60,
        what="2 shards for each replica",
    )


def owner(cluster: Cluster, prefix: str, namespace: str) -> str | None:
    return holders(cluster, prefix).get(shard_of(namespace, SHARDS))


def test_a_replica_killed_mid_restart_hands_its_shard_over(
    cluster: Cluster,
    namespaces: list[str],
    replicas: dict[str, Operator],
    kubelet: ProcessKubelet,
    tmp_path: Path,
    prefix: str,
) -> None:
    wait_balanced(cluster, prefix)

    armed = tmp_path / "c-armed"
    target = namespaces[0]
    objects = {ns: Objects(cluster, ns) for ns in namespaces}
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
    killed = owner(cluster, prefix, target)
    assert killed in replicas, holders(cluster, prefix)
    survivor = "r2" if killed == "r1" else "r1"
    kubelet.kill_container(target, "app-a-1", "actor", signal.SIGKILL)
    objects[target].wait_status(
        "app", lambda s: child_state(s, "c")["state"] == "stopping", what="c stopping"
    )
    replicas[killed].kill()
    killed_at = time.monotonic()

    wait_for(
        lambda: owner(cluster, prefix, target) == survivor,
        timeout=TAKEOVER,
        what=f"{survivor} holding the shard of {target}",
        interval=0.2,
    )
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
        lambda: (
            len(holders(cluster, prefix)) == SHARDS
            and set(holders(cluster, prefix).values()) == {survivor}
        ),
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
    cluster: Cluster,
    namespaces: list[str],
    replicas: dict[str, Operator],
    kubelet: ProcessKubelet,
    prefix: str,
) -> None:
    """SIGSTOP: the replica cannot renew, and cannot stop itself either. The other takes the
    shard over and drives the tree; woken up, the frozen one finds its renew deadline long
    past and drops the shard before anything else, so no restart is decided twice."""
    target = namespaces[0]
    objects = Objects(cluster, target)
    # A window long enough that the restart history keeps both restarts of the test.
    objects.apply(supervisor("app", [sleeper("a"), sleeper("b")], intensity=5, period="300s"))
    objects.wait_status("app", lambda s: s.get("ready") == "2/2", what="2/2 ready")
    wait_balanced(cluster, prefix)
    watchdog = Watchdog(objects)

    frozen = owner(cluster, prefix, target)
    assert frozen in replicas, holders(cluster, prefix)
    survivor = "r2" if frozen == "r1" else "r1"
    pid = replicas[frozen].popen.pid  # type: ignore[union-attr]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: owner(cluster, prefix, target) == survivor,
            timeout=TAKEOVER,
            what=f"{survivor} holding the shard of {target}",
            interval=0.2,
        )
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
    wait_balanced(cluster, prefix)
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
    cluster: Cluster,
    namespaces: list[str],
    replicas: dict[str, Operator],
    kubelet: ProcessKubelet,
    prefix: str,
) -> None:
    """Every replica is a credential issuer of the NATS server, and every one is asked about
    every connection. An actor pod is let in by the replica that drives its tree; the others
    leave it to that one rather than refuse it. In every namespace, whichever replica drives
    it, Python actors connect, start and are restarted after a crash."""
    wait_balanced(cluster, prefix)
    apps = {ns: Objects(cluster, ns) for ns in namespaces}
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
    for name, process in replicas.items():
        log = process.log_path.read_text()
        assert "is not an actor pod of this operator" not in log, f"{name}:\n{process.log_tail()}"
