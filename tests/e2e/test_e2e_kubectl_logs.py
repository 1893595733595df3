"""`kubectl logs` against the test cluster: the API server proxies ``pods/log`` to the node's
log endpoint (infra/logserver.py), in process mode and in container mode alike; the endpoint
lets in the API server's kubelet client certificate and nobody else."""

from __future__ import annotations

import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from infra.binaries import kubectl
from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from infra.pods import container_status, terminated
from kubernetes import client
from tests.images.containers import built_images

pytestmark = pytest.mark.e2e

Json = dict[str, Any]

# Prints three lines, then one more per run, then waits for "go" in its scratch file so
# that a follower sees it running; exits 1 (restartPolicy OnFailure restarts it once).
PRINTS = """
import os, sys, time
marker = "/scratch/ran-once"
first = not os.path.exists(marker)
open(marker, "a").close()
for line in ("one", "two", "three"):
    print(line, flush=True)
print("first run" if first else "second run", flush=True)
while not os.path.exists("/scratch/go"):
    time.sleep(0.05)
print("done", flush=True)
sys.exit(1 if first else 0)
"""


def _pod(image: str, python: str) -> Json:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "talker"},
        "spec": {
            "restartPolicy": "OnFailure",
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "command": [python, "-c", PRINTS.replace("/scratch", "$(SCRATCH)")],
                    "env": [{"name": "SCRATCH", "value": "/scratch"}],
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }


@dataclass
class Setup:
    node: ProcessKubelet
    pod: Json
    scratch: Callable[[], Path]  # the pod's scratch directory on this host


@pytest.fixture(params=["processes", "containers"])
def setup(
    request: pytest.FixtureRequest, cluster: Cluster, kubelet: ProcessKubelet, namespace: str
) -> Iterator[Setup]:
    """The node running the test's pod, and the pod."""
    if request.param == "processes":
        pod = _pod("none", "python")
        # A process sees no emptyDir: its scratch is a directory of this host.
        scratch = kubelet.workdir / f"scratch-{namespace}"
        scratch.mkdir(parents=True)
        pod["spec"]["containers"][0]["env"] = [{"name": "SCRATCH", "value": str(scratch)}]
        yield Setup(kubelet, pod, lambda: scratch)
        return
    images = built_images()
    with cluster.container_node(namespace) as node:
        yield Setup(
            node,
            _pod(images.name("actor"), "python"),
            lambda: next(node.workdir.glob(f"pods/{namespace}_talker_*/volumes/scratch")),
        )


def _logs(cluster: Cluster, namespace: str, *args: str) -> str:
    return cluster.kubectl("logs", "-n", namespace, "talker", *args).stdout


def test_kubectl_logs_tail_follow_previous(cluster: Cluster, namespace: str, setup: Setup) -> None:
    client.CoreV1Api(cluster.api_client()).create_namespaced_pod(namespace, setup.pod)
    cluster.wait_pod(
        namespace,
        "talker",
        lambda p: "first run" in _logs(cluster, namespace),
        what="its first lines in kubectl logs",
    )
    assert _logs(cluster, namespace) == "one\ntwo\nthree\nfirst run\n"
    assert _logs(cluster, namespace, "--tail=1") == "first run\n"
    assert _logs(cluster, namespace, "--limit-bytes=3") == "one"
    # --follow: the lines as they come, until the run ends.
    follow = subprocess.Popen(
        [*_kubectl(cluster), "logs", "-n", namespace, "talker", "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "one\n"  # it is following: the run is still going
        (setup.scratch() / "go").touch()  # the run ends
        rest = follow.stdout.read()  # to the end: kubectl ends when the run has ended
        assert follow.wait(timeout=30) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert rest == "two\nthree\nfirst run\ndone\n"
    # Restarted (it exited 1): --previous is the first run's log.
    cluster.wait_pod(
        namespace,
        "talker",
        lambda p: (
            container_status(p).get("restartCount") == 1
            and "second run" in _logs(cluster, namespace)
        ),
        what="its second run",
    )
    assert _logs(cluster, namespace, "--previous") == "one\ntwo\nthree\nfirst run\ndone\n"
    (setup.scratch() / "go").touch()
    cluster.wait_pod(namespace, "talker", lambda p: bool(terminated(p)), what="ended")
    assert _logs(cluster, namespace).endswith("second run\ndone\n")
    missing = cluster.kubectl("logs", "-n", namespace, "talker", "-c", "absent", check=False)
    assert missing.returncode != 0
    assert "absent" in missing.stderr


def _kubectl(cluster: Cluster) -> list[str]:
    return [kubectl(), f"--kubeconfig={cluster.kubeconfig}"]


def test_the_log_endpoint_lets_in_the_api_server_only(
    cluster: Cluster, kubelet: ProcessKubelet
) -> None:
    """Without a client certificate there is no TLS session; the admin's token is no way in."""
    assert kubelet.logs is not None
    assert cluster.control_plane is not None
    context = ssl.create_default_context(cafile=str(cluster.control_plane.pki.ca_cert))
    url = f"https://127.0.0.1:{kubelet.logs.port}/containerLogs/default/any/main"
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {cluster.admin_token()}"}
    )
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(request, context=context, timeout=10)
