"""The process kubelet behaves like a kubelet where our operator will look, and its fault
switches work. Runs on the local control plane only (an existing cluster has real kubelets)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet
from infra.pods import (
    container_status,
    events_named,
    phase,
    pod_events,
    python_pod,
    running,
    terminated,
)
from infra.pods import ready as is_ready
from infra.procs import wait_for
from kubernetes import client

pytestmark = pytest.mark.e2e

Json = dict[str, Any]

SLEEPS = """
    import time
    while True:
        time.sleep(0.1)
"""


def _create(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    client.CoreV1Api(cluster.api_client()).create_namespaced_pod(namespace, manifest)


def test_restart_policy_always_restarts_with_back_off(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    _create(
        cluster,
        namespace,
        python_pod("crashes", "import sys; sys.exit(7)", image=image, restart_policy="Always"),
    )

    pod = cluster.wait_pod(
        namespace,
        "crashes",
        lambda p: container_status(p).get("restartCount", 0) >= 2,
        what="restarted twice",
    )

    status = container_status(pod)
    assert status["lastState"]["terminated"]["exitCode"] == 7
    assert phase(pod) == "Running"
    # The kubelet's events: one BackOff Event counted up, not one per back-off.
    api = cluster.api_client()
    back_off = wait_for(
        lambda: [
            e
            for e in events_named(pod_events(api, namespace, "crashes"), "BackOff")
            if e["count"] >= 2
        ],
        timeout=30,
        what="a BackOff event counted twice",
        interval=0.2,
    )
    events = pod_events(api, namespace, "crashes")
    assert len(events_named(events, "BackOff")) == 1, events
    (event,) = back_off
    assert event["type"] == "Warning"
    uid = pod["metadata"]["uid"]
    assert event["message"] == (
        f"Back-off restarting failed container main in pod crashes_{namespace}({uid})"
    )
    assert event["involvedObject"]["fieldPath"] == "spec.containers{main}"
    assert event["involvedObject"]["uid"] == uid
    assert event["source"] == {"component": "kubelet", "host": kubelet.node_name}
    assert event["reportingComponent"] == "kubelet"
    for reason in ("Pulled", "Created", "Started"):
        (started,) = events_named(events, reason)
        assert started["type"] == "Normal"
        assert started["count"] >= 2, started  # once per run, aggregated


def test_restart_policy_on_failure_restarts_failures_only(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    # Fails on its first run, succeeds on the second: HOME (the pod's directory) remembers.
    code = """
        import os, sys
        marker = os.path.expanduser("~/ran-once")
        if not os.path.exists(marker):
            open(marker, "w").close()
            sys.exit(1)
    """
    _create(cluster, namespace, python_pod("flaky", code, image=image, restart_policy="OnFailure"))

    pod = cluster.wait_pod(namespace, "flaky", lambda p: phase(p) == "Succeeded", what="Succeeded")

    status = container_status(pod)
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["state"]["terminated"]["reason"] == "Completed"


def test_kill_container_with_a_signal(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    _create(cluster, namespace, python_pod("victim", SLEEPS, image=image))
    cluster.wait_pod(namespace, "victim", running, what="running")

    kubelet.kill_container(namespace, "victim", "main", signal.SIGKILL)

    pod = cluster.wait_pod(namespace, "victim", lambda p: phase(p) == "Failed", what="Failed")
    state = terminated(pod)
    assert state["exitCode"] == 128 + signal.SIGKILL
    assert state["signal"] == signal.SIGKILL
    assert state["reason"] == "Error"


def test_container_fails_to_start(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    kubelet.fail_start(namespace, "doomed", message="no such image, on purpose")
    _create(cluster, namespace, python_pod("doomed", SLEEPS, image=image))

    pod = cluster.wait_pod(namespace, "doomed", lambda p: phase(p) == "Failed", what="Failed")

    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (128, "StartError")
    assert state["message"] == "no such image, on purpose"
    # As a kubelet: a Warning "Failed" Event says why, on the container.
    events = wait_for(
        lambda: events_named(
            pod_events(cluster.api_client(), namespace, "doomed"), "Failed", "on purpose"
        ),
        timeout=30,
        what="the Failed event",
        interval=0.2,
    )
    assert [(e["type"], e["message"]) for e in events] == [
        ("Warning", "Error: no such image, on purpose")
    ]
    assert events[0]["involvedObject"]["fieldPath"] == "spec.containers{main}"
    reasons = {e["reason"] for e in pod_events(cluster.api_client(), namespace, "doomed")}
    assert reasons == {"Pulled", "Created", "Failed"}, reasons  # as a kubelet: never Started
    described = cluster.kubectl("describe", "pod", "doomed", "-n", namespace).stdout
    assert "Error: no such image, on purpose" in described, described


def test_a_start_error_again_and_again_is_one_event_counted(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    kubelet.fail_start(namespace, "hopeless", times=None, message="cannot run, on purpose")
    manifest = python_pod("hopeless", SLEEPS, image=image, restart_policy="Always")
    _create(cluster, namespace, manifest)
    api = cluster.api_client()

    def counted() -> list[Json]:
        failed = events_named(pod_events(api, namespace, "hopeless"), "Failed", "on purpose")
        return [e for e in failed if e["count"] >= 3]

    wait_for(counted, timeout=60, what="the Failed event counted 3 times", interval=0.2)
    events = pod_events(api, namespace, "hopeless")
    assert len(events_named(events, "Failed")) == 1, events
    assert len(events_named(events, "BackOff")) == 1, events


def test_a_deletion_is_a_killing_event(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    _create(cluster, namespace, python_pod("deleted", SLEEPS, image=image, grace_seconds=5))
    cluster.wait_pod(namespace, "deleted", running, what="running")
    client.CoreV1Api(cluster.api_client()).delete_namespaced_pod("deleted", namespace)
    cluster.wait_pod_gone(namespace, "deleted")

    events = wait_for(
        lambda: events_named(pod_events(cluster.api_client(), namespace, "deleted"), "Killing"),
        timeout=30,
        what="the Killing event",
        interval=0.2,
    )
    assert [(e["type"], e["message"], e["count"]) for e in events] == [
        ("Normal", "Stopping container main", 1)
    ]


def test_node_loss_keeps_processes_running_and_recovers(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    _create(cluster, namespace, python_pod("survivor", SLEEPS, image=image))
    cluster.wait_pod(namespace, "survivor", running, what="running")
    pid = kubelet.container_pid(namespace, "survivor")
    assert pid is not None
    core = client.CoreV1Api(cluster.api_client())

    def ready(status: str) -> bool:
        node = core.read_node(kubelet.node_name)
        return any(c.type == "Ready" and c.status == status for c in node.status.conditions)

    def tainted() -> bool:
        taints = core.read_node(kubelet.node_name).spec.taints or []
        return any(t.key == "node.kubernetes.io/unreachable" for t in taints)

    kubelet.lose_node()
    try:
        wait_for(lambda: ready("Unknown"), timeout=40, what="node Ready=Unknown")
        # What the node lifecycle controller does about it, as on a real cluster:
        wait_for(tainted, timeout=30, what="node tainted unreachable")
        cluster.wait_pod(namespace, "survivor", lambda p: not is_ready(p), what="not Ready")
        os.kill(pid, 0)  # the process goes on running, unseen
        # The API server takes a deletion meanwhile; the lost node does not complete it.
        core.delete_namespaced_pod("survivor", namespace, grace_period_seconds=5)
        pod = cluster.wait_pod(
            namespace, "survivor", lambda p: "deletionTimestamp" in p["metadata"], what="deleting"
        )
        assert running(pod)
        os.kill(pid, 0)
    finally:
        kubelet.recover_node()

    wait_for(lambda: ready("True"), timeout=10, what="node Ready=True")
    cluster.wait_pod_gone(namespace, "survivor", timeout=30)
    wait_for(lambda: not tainted(), timeout=30, what="unreachable taint removed")


def test_pod_acts_as_its_service_account(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    """KUBECONFIG in a container holds a token of the pod's ServiceAccount (default: no rights)."""
    code = """
        import json, os, ssl, sys, urllib.error, urllib.request
        import yaml
        config = yaml.safe_load(open(os.environ["KUBECONFIG"]))
        server = config["clusters"][0]["cluster"]
        token = config["users"][0]["user"]["token"]
        context = ssl.create_default_context(cafile=server["certificate-authority"])
        request = urllib.request.Request(
            server["server"] + "/api/v1/namespaces/default/secrets",
            headers={"Authorization": "Bearer " + token},
        )
        try:
            urllib.request.urlopen(request, context=context)
        except urllib.error.HTTPError as error:
            message = json.load(error)["message"]
            open(os.environ["REBEAM_TERMINATION_LOG"], "w").write(message)
            sys.exit(0 if error.code == 403 else 1)
        sys.exit(2)
    """
    _create(cluster, namespace, python_pod("who", code, image=image))

    pod = cluster.wait_pod(
        namespace, "who", lambda p: phase(p) in ("Succeeded", "Failed"), what="finished"
    )

    assert phase(pod) == "Succeeded", terminated(pod)
    assert f"system:serviceaccount:{namespace}:default" in terminated(pod)["message"]


def test_env_from_config_map_and_expansion(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_config_map(
        namespace,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"k": "v"}},
    )
    env = [
        {"name": "FROM_MAP", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
        {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "BOTH", "value": "$(FROM_MAP)-$(LABEL)-$$(LITERAL)"},
    ]
    manifest = python_pod(
        "env",
        'import os; open(os.environ["REBEAM_TERMINATION_LOG"], "w").write(os.environ["BOTH"])',
        image=image,
        env=env,
    )
    manifest["metadata"]["labels"] = {"app": "demo"}
    _create(cluster, namespace, manifest)

    pod = cluster.wait_pod(namespace, "env", lambda p: phase(p) == "Succeeded", what="Succeeded")

    assert terminated(pod)["message"] == "v-demo-$(LITERAL)"


def test_pods_reach_nats_with_jetstream(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str, nats: E2ENats
) -> None:
    code = """
        import asyncio, os
        import nats

        async def main():
            nc = await nats.connect(os.environ["NATS_URL"], token=os.environ["NATS_TOKEN"])
            js = nc.jetstream()
            await js.add_stream(name="E2E_" + os.environ["NS"].replace("-", "_"), subjects=[])
            await nc.close()

        asyncio.run(main())
    """
    env = [
        {"name": "NATS_URL", "value": nats.url},
        # The e2e NATS is secured: a backend's credential, from the test's own issuer.
        {"name": "NATS_TOKEN", "value": nats.backend_token()},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    manifest = python_pod("nats", code, image=image, env=env)
    manifest["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    _create(cluster, namespace, manifest)

    pod = cluster.wait_pod(
        namespace, "nats", lambda p: phase(p) in ("Succeeded", "Failed"), what="finished"
    )

    assert phase(pod) == "Succeeded", terminated(pod).get("message")


def test_secret_and_projected_token_volumes_are_files_env_paths_name(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    """A secret volume and a projected ServiceAccount token (with its audience, bound to the
    pod) are files; an env value naming a path under their mountPath names the real file."""
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_secret(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "stringData": {"k": "v1"},
        },
    )
    code = """
        import os, pathlib
        secret = pathlib.Path(os.environ["SECRET"]).read_text()
        token = pathlib.Path(os.environ["TOKEN"]).read_text()
        pathlib.Path(os.environ["REBEAM_TERMINATION_LOG"]).write_text(secret + " " + token)
    """
    env = [
        {"name": "SECRET", "value": "/etc/demo/k"},
        {"name": "TOKEN", "value": "/var/run/secrets/demo/token"},
    ]
    manifest = python_pod("volumes", code, image=image, env=env)
    manifest["spec"]["automountServiceAccountToken"] = False
    manifest["spec"]["volumes"] = [
        {"name": "s", "secret": {"secretName": "s"}},
        {
            "name": "t",
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": "demo",
                            "expirationSeconds": 600,
                            "path": "token",
                        }
                    }
                ]
            },
        },
    ]
    manifest["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "s", "mountPath": "/etc/demo"},
        {"name": "t", "mountPath": "/var/run/secrets/demo"},
    ]
    _create(cluster, namespace, manifest)

    pod = cluster.wait_pod(
        namespace, "volumes", lambda p: phase(p) in ("Succeeded", "Failed"), what="finished"
    )

    assert phase(pod) == "Succeeded", terminated(pod).get("message")
    secret, token = terminated(pod)["message"].split(" ")
    assert secret == "v1"
    review = client.AuthenticationV1Api(cluster.api_client()).create_token_review(
        {"apiVersion": "authentication.k8s.io/v1", "spec": {"token": token, "audiences": ["demo"]}}
    )
    assert review.status.authenticated, review.status.error
    assert review.status.user.username == f"system:serviceaccount:{namespace}:default"
    assert review.status.user.extra["authentication.kubernetes.io/pod-name"] == ["volumes"]


def test_garbage_collector_deletes_owned_pods(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    """kube-controller-manager runs: deleting an owner deletes the pods it owns."""
    core = client.CoreV1Api(cluster.api_client())
    owner = core.create_namespaced_config_map(
        namespace, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}
    )
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    _create(
        cluster,
        namespace,
        python_pod("owned", SLEEPS, image=image, grace_seconds=5, owner=reference),
    )
    cluster.wait_pod(namespace, "owned", running, what="running")

    core.delete_namespaced_config_map("owner", namespace)

    cluster.wait_pod_gone(namespace, "owned", timeout=60)


def _ended(pid: int) -> bool:
    """Gone, or a zombie that only its reaper keeps."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_stop_out_of_time_still_kills_every_container(
    cluster: Cluster, namespace: str, image: str
) -> None:
    """A stop whose loop cannot end the containers in time (10,000 of them, or a loop held
    up) kills them itself, each by its pid, and says nothing went wrong: no orphans."""
    names = [f"sleeps-{i}" for i in range(3)]
    with cluster.second_node(namespace, node_name="rebeam-e2e-stops", containers=False) as node:
        for name in names:
            _create(cluster, namespace, python_pod(name, SLEEPS, image=image))
        pids: list[int] = []
        for name in names:
            cluster.wait_pod(namespace, name, running, what=f"{name} running")
            pid = node.container_pid(namespace, name)
            assert pid is not None
            pids.append(pid)
        assert node._loop is not None
        held = threading.Event()

        def hold_the_loop() -> None:
            held.set()
            release.wait(30)  # the loop runs nothing, its shutdown included, until released

        release = threading.Event()
        node._loop.call_soon_threadsafe(hold_the_loop)
        assert held.wait(10)
        try:
            node.stop(timeout=0.2)
            wait_for(lambda: all(map(_ended, pids)), timeout=10, what="every container killed")
        finally:
            release.set()
