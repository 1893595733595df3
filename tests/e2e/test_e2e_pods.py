"""The e2e tier's own proof: real API server behaviour, and pods that really run and exit."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.pods import MARK_READY, phase, python_pod, ready, terminated
from kubernetes import client

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("exit_code", "expected_phase", "expected_reason"),
    [(0, "Succeeded", "Completed"), (3, "Failed", "Error")],
)
def test_pod_runs_and_reports_its_exit(
    cluster: Cluster,
    namespace: str,
    image: str,
    exit_code: int,
    expected_phase: str,
    expected_reason: str,
) -> None:
    code = f"""
        import os, sys
        with open(os.environ["REBEAM_TERMINATION_LOG"], "w") as log:
            log.write("bye from " + os.environ["POD_NAME"] + " in " + os.environ["POD_NS"])
        sys.exit({exit_code})
    """
    env = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_pod(namespace, python_pod("exits", code, image=image, env=env))

    pod = cluster.wait_pod(
        namespace, "exits", lambda p: phase(p) in ("Succeeded", "Failed"), what="finished"
    )

    assert phase(pod) == expected_phase
    state = terminated(pod)
    assert state["exitCode"] == exit_code
    assert state["reason"] == expected_reason
    assert state["message"] == f"bye from exits in {namespace}"
    assert pod["spec"]["nodeName"]


TRAPS_SIGTERM = f"""
    import signal, sys, time
    def on_term(signum, frame):
        print("got SIGTERM, ignoring it", flush=True)
    signal.signal(signal.SIGTERM, on_term)
    {MARK_READY}
    while True:
        time.sleep(0.1)
"""

EXITS_ON_SIGTERM = f"""
    import signal, sys, time
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    {MARK_READY}
    while True:
        time.sleep(0.1)
"""


def _start(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    """Create the pod and wait until it is Ready (its readiness probe, if any, passed)."""
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_pod(namespace, manifest)
    cluster.wait_pod(namespace, manifest["metadata"]["name"], ready, what="Ready")


def test_deletion_waits_out_the_grace_period(cluster: Cluster, namespace: str, image: str) -> None:
    """A process that traps SIGTERM keeps the pod until the grace period ends (then SIGKILL)."""
    grace = 4
    manifest = python_pod(
        "stubborn", TRAPS_SIGTERM, image=image, grace_seconds=grace, ready_file=True
    )
    _start(cluster, namespace, manifest)
    kubelet = cluster.kubelet
    if kubelet is not None:
        pid = kubelet.container_pid(namespace, "stubborn")
        log = kubelet.log_path(namespace, "stubborn")
    core = client.CoreV1Api(cluster.api_client())

    started = time.monotonic()
    core.delete_namespaced_pod("stubborn", namespace)
    cluster.wait_pod_gone(namespace, "stubborn", timeout=grace + 30)
    took = time.monotonic() - started

    assert took >= grace - 0.5, f"pod gone after {took:.1f}s, before its {grace}s grace period"
    if kubelet is not None:
        assert "got SIGTERM" in log.read_text(), "SIGTERM was not delivered first"
        assert pid is not None
        assert not _alive(pid), "the container process outlived its pod"


def test_deletion_ends_when_the_process_exits(cluster: Cluster, namespace: str, image: str) -> None:
    """A process that exits on SIGTERM ends its pod's deletion long before the grace period."""
    grace = 60
    manifest = python_pod(
        "polite", EXITS_ON_SIGTERM, image=image, grace_seconds=grace, ready_file=True
    )
    _start(cluster, namespace, manifest)
    core = client.CoreV1Api(cluster.api_client())

    started = time.monotonic()
    core.delete_namespaced_pod("polite", namespace)
    cluster.wait_pod_gone(namespace, "polite", timeout=grace)

    assert time.monotonic() - started < grace / 2


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
