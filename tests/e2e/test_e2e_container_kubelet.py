"""The kubelet's container mode (infra/containers.py): pods run from our images with podman
and runc, as a kubelet runs them. A second node in container mode takes the test's namespace;
every other pod stays on the process node. The images come from `make images` (a missing
one fails the test)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.containers import LABEL_NODE
from infra.kubelet import ProcessKubelet
from infra.pods import container_status, events_named, phase, pod_events, running, terminated
from infra.procs import wait_for
from kubernetes import client
from tests.images.containers import built_images
from tools.images import Engine

pytestmark = pytest.mark.e2e

Json = dict[str, Any]


@pytest.fixture(scope="module")
def images() -> Engine:
    return built_images()


@pytest.fixture
def node(cluster: Cluster, namespace: str, images: Engine) -> Iterator[ProcessKubelet]:
    if cluster.kubelet is None:
        pytest.skip("container mode is a mode of the local test kubelet")
    with cluster.container_node(namespace) as kubelet:
        yield kubelet
    # None of its containers, nor their conmon, outlive it.
    left = images.run("ps", "--all", "--quiet", f"--filter=label={LABEL_NODE}", capture=True)
    assert not left.stdout.split(), left.stdout
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert not [line for line in ps.stdout.splitlines() if "conmon" in line and "k8s_" in line]


def _pod(name: str, image: str, command: list[str], **spec: Any) -> Json:
    container: Json = {"name": "main", "image": image, "command": command}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def _create(cluster: Cluster, namespace: str, manifest: Json) -> None:
    client.CoreV1Api(cluster.api_client()).create_namespaced_pod(namespace, manifest)


HARDENED = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
    "container": {
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        }
    },
}

# In the container: who it runs as, whether / is writable, the emptyDir and the secret volume,
# in-cluster config with the mounted ServiceAccount token; the answer goes to the termination
# message at its default path (no REBEAM_TERMINATION_LOG in container mode).
INSPECT = """
import json, os
from kubernetes import client, config
try:
    open("/probe", "w")
    rootfs = "writable"
except OSError:
    rootfs = "read-only"
open("/scratch/file", "w").write("x")
config.load_incluster_config()
review = client.AuthenticationV1Api().create_self_subject_review(
    {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
)
facts = {
    "uid": os.getuid(), "gid": os.getgid(), "rootfs": rootfs,
    "secret": open("/etc/secret/key").read(),
    "user": review.status.user_info.username,
    "namespace": open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read(),
    "env": os.environ.get("FROM_ENV"),
}
open("/dev/termination-log", "w").write(json.dumps(facts))
"""


def test_a_pod_runs_from_its_image_as_a_kubelet_runs_it(
    cluster: Cluster, node: ProcessKubelet, namespace: str, images: Engine
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_secret(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "s"},
            "stringData": {"key": "v"},
        },
    )
    manifest = _pod(
        "inspect",
        images.name("operator"),
        ["python", "-c", INSPECT],
        volumes=[{"name": "scratch", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "s"}}],
        **HARDENED,
    )
    manifest["spec"]["containers"][0].update(
        {
            "securityContext": HARDENED["container"]["securityContext"],
            "env": [{"name": "A", "value": "a"}, {"name": "FROM_ENV", "value": "$(A)-b"}],
            "volumeMounts": [
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "s", "mountPath": "/etc/secret", "readOnly": True},
            ],
        }
    )
    _create(cluster, namespace, manifest)
    pod = cluster.wait_pod(namespace, "inspect", lambda p: bool(terminated(p)), what="ended")
    state = terminated(pod)
    assert state["exitCode"] == 0, (state, node.log_path(namespace, "inspect").read_text())
    assert state["reason"] == "Completed"
    assert container_status(pod)["containerID"].startswith("podman://")
    facts = json.loads(state["message"])
    assert facts == {
        "uid": 10001,
        "gid": 10001,
        "rootfs": "read-only",
        "secret": "v",
        "user": f"system:serviceaccount:{namespace}:default",
        "namespace": namespace,
        "env": "a-b",
    }
    assert phase(pod) == "Succeeded"


TRAPS_TERM = """
import signal, sys, time
def stop(*_):
    open("/dev/termination-log", "w").write("stopped by SIGTERM")
    sys.exit(3)
signal.signal(signal.SIGTERM, stop)
print("up", flush=True)
while True:
    time.sleep(0.1)
"""


def test_graceful_stop_and_signals(
    cluster: Cluster, node: ProcessKubelet, namespace: str, images: Engine
) -> None:
    image = images.name("actor")
    _create(cluster, namespace, _pod("graceful", image, ["python", "-c", TRAPS_TERM]))
    _create(cluster, namespace, _pod("killed", image, ["sleep", "600"]))
    for name in ("graceful", "killed"):
        cluster.wait_pod(namespace, name, running, what="running")
    log = node.log_path(namespace, "graceful")
    wait_for(lambda: log.read_text().strip() == "up", timeout=30, what="its handler set up")
    # Deleted: SIGTERM, which it handles and records, then the pod is gone.
    core = client.CoreV1Api(cluster.api_client())
    core.delete_namespaced_pod("graceful", namespace, grace_period_seconds=30)
    cluster.wait_pod_gone(namespace, "graceful")
    # Killed by SIGKILL: exit code 128+9, as containerd reports it.
    node.kill_container(namespace, "killed", "main", signal.SIGKILL)
    pod = cluster.wait_pod(namespace, "killed", lambda p: bool(terminated(p)), what="ended")
    assert terminated(pod)["exitCode"] == 137
    assert terminated(pod)["reason"] == "Error"


def test_graceful_stop_records_the_termination_message(
    cluster: Cluster, node: ProcessKubelet, namespace: str, images: Engine
) -> None:
    """The grace period: a container that ends on SIGTERM within it gets to say why."""
    _create(
        cluster,
        namespace,
        _pod("traps", images.name("actor"), ["python", "-c", TRAPS_TERM], restartPolicy="Never"),
    )
    cluster.wait_pod(namespace, "traps", running, what="running")
    log = node.log_path(namespace, "traps")
    wait_for(lambda: log.read_text().strip() == "up", timeout=30, what="its handler set up")
    node.kill_container(namespace, "traps", "main", signal.SIGTERM)
    pod = cluster.wait_pod(namespace, "traps", lambda p: bool(terminated(p)), what="ended")
    assert terminated(pod)["exitCode"] == 3, (terminated(pod), log.read_text())
    assert terminated(pod)["message"] == "stopped by SIGTERM"
    assert node.log_path(namespace, "traps").read_text().strip() == "up"


ABSENT = "localhost/rebeam-absent:dev"


def test_a_missing_image_waits_and_a_bad_entry_point_is_a_start_error(
    cluster: Cluster, node: ProcessKubelet, namespace: str, images: Engine
) -> None:
    _create(cluster, namespace, _pod("no-image", ABSENT, ["true"]))
    _create(cluster, namespace, _pod("no-entry", images.name("actor"), ["/no/such/program"]))

    def waiting(p: Json) -> str:
        return str(container_status(p).get("state", {}).get("waiting", {}).get("reason", ""))

    pod = cluster.wait_pod(
        namespace, "no-image", lambda p: waiting(p) == "ImagePullBackOff", what="back-off"
    )
    assert phase(pod) == "Pending"
    # The back-off's message keeps the pull error, as a kubelet's does.
    message = container_status(pod)["state"]["waiting"]["message"]
    assert message.startswith(f'Back-off pulling image "{ABSENT}": ErrImagePull: '), message
    assert "is not on node" in message, message
    pod = cluster.wait_pod(namespace, "no-entry", lambda p: bool(terminated(p)), what="ended")
    state = terminated(pod)
    assert (state["exitCode"], state["reason"]) == (128, "StartError"), state
    assert "/no/such/program" in state["message"], state
    assert phase(pod) == "Failed"

    # The kubelet's events, as `kubectl describe pod` shows them; each back-off repeats the
    # same events: counted on one object each, not one object per back-off.
    api = cluster.api_client()

    def pulls_failed_twice() -> list[Json]:
        events = pod_events(api, namespace, "no-image")
        return [e for e in events_named(events, "Failed", "ErrImagePull") if e["count"] >= 2]

    wait_for(pulls_failed_twice, timeout=60, what="ErrImagePull counted twice", interval=0.2)
    events = pod_events(api, namespace, "no-image")
    shown = {(e["type"], e["reason"], e["message"]) for e in events}
    pull_failed = f'Failed to pull image "{ABSENT}": image "{ABSENT}" is not on node'
    assert [m for t, r, m in shown if m.startswith(pull_failed) and t == "Warning"], shown
    assert {
        ("Normal", "Pulling", f'Pulling image "{ABSENT}"'),
        ("Warning", "Failed", "Error: ErrImagePull"),
        ("Normal", "BackOff", f'Back-off pulling image "{ABSENT}"'),
        ("Warning", "Failed", "Error: ImagePullBackOff"),
    } <= shown, shown
    assert len(events) == len(shown), events  # aggregated: one object per distinct event
    for event in events:
        assert event["involvedObject"]["fieldPath"] == "spec.containers{main}", event
        assert event["source"] == {"component": "kubelet", "host": node.node_name}, event
    described = cluster.kubectl("describe", "pod", "no-image", "-n", namespace).stdout
    assert "Error: ImagePullBackOff" in described, described

    def start_failed() -> list[Json]:
        return events_named(pod_events(api, namespace, "no-entry"), "Failed", "Error: ")

    (failed,) = wait_for(start_failed, timeout=30, what="the start's Failed event", interval=0.2)
    assert failed["type"] == "Warning"
    assert "/no/such/program" in failed["message"], failed
