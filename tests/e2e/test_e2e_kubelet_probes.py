"""The test kubelet ends each container's readiness probe with the container
(tests/e2e/README.md, "Readiness"): a probe that went on could hold up its container's end,
and with it the deletion of a tree half-way (the operator soak's other pods were left
running, orphans of the soak), or be destroyed pending when the kubelet's loop closed."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from infra.pods import python_pod, terminated
from infra.procs import wait_for
from kubernetes import client
from tests.soak import procs

pytestmark = pytest.mark.e2e

# Readiness probes whose command runs until it is killed: the probe is under way whenever
# its container ends.
PROBE_MARK = "rebeam-soak-held-probe"


def test_a_containers_run_ends_only_after_its_readiness_probe(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    """The soak's node (the test kubelet) ends a container's readiness probe, its command
    killed and reaped, before it reports the container ended: a probe left to end later was
    still waiting for its command when the kubelet's loop closed at the end of a test run
    ("Task was destroyed but it is pending!"), its command never reaped."""
    name = "probed"
    _create_probed(cluster, namespace, name, image)
    probe_pid = wait_for(lambda: _held_probe(name), timeout=60, what="the probe's command")
    states: list[dict[str, Any]] = []

    async def watch_the_probe() -> None:
        """On the kubelet's loop: the container's state at the moment its probe ends."""
        run = kubelet._container(namespace, name, None)
        [probe] = [t for t in asyncio.all_tasks() if _probes(t, run)]
        probe.add_done_callback(lambda _: states.append(dict(run.state)))

    kubelet._call(watch_the_probe())
    kubelet.kill_container(namespace, name, None, signal.SIGKILL)
    cluster.wait_pod(namespace, name, lambda p: bool(terminated(p)), what=f"{name} ended")
    assert states, "the probe had not ended when the container was reported ended"
    assert "running" in states[0], f"the probe ended after the container: {states[0]}"
    assert procs.start_time(probe_pid) is None  # killed and reaped: not even a zombie


def test_a_probe_whose_command_ends_with_its_container_ends_too(
    cluster: Cluster, kubelet: ProcessKubelet, namespace: str, image: str
) -> None:
    """A container and its readiness probe's command that end together (the kubelet sees
    both ends in one turn of its loop) end the probe too. On Python 3.11 asyncio.wait_for
    answered the probe's cancellation with the command's result: the probe went on probing
    a dead container ("Task was destroyed but it is pending!" when the loop closed), and a
    run that waits for its probe never ended, nor did its pod's deletion."""
    name = "together"
    _create_probed(cluster, namespace, name, image)
    probe_pid = wait_for(lambda: _held_probe(name), timeout=60, what="the probe's command")
    container_pid = kubelet.container_pid(namespace, name)
    assert container_pid is not None
    assert kubelet._loop is not None
    held, release = threading.Event(), threading.Event()

    def hold_the_loop() -> None:
        held.set()
        release.wait(30)

    kubelet._loop.call_soon_threadsafe(hold_the_loop)
    assert held.wait(10)
    try:  # both end while the loop is held: it sees both ends in one turn once released
        os.killpg(probe_pid, signal.SIGKILL)
        os.killpg(container_pid, signal.SIGKILL)
        wait_for(lambda: _zombie(probe_pid) and _zombie(container_pid), timeout=10, what="ends")
    finally:
        release.set()
    cluster.wait_pod(
        namespace, name, lambda p: bool(terminated(p)), timeout=30, what=f"{name} ended"
    )
    assert not kubelet._call(_probing(kubelet, namespace, name)), "its probe went on"
    assert _held_probe(name) is None  # nor started its command again


def _create_probed(cluster: Cluster, namespace: str, name: str, image: str) -> None:
    """A pod whose readiness probe's command runs until it is killed."""
    pod = python_pod(name, "import time\ntime.sleep(600)\n", image=image)
    command = ["python", "-c", "import time; time.sleep(600)", f"{PROBE_MARK}-{name}"]
    probe = {"exec": {"command": command}, "periodSeconds": 1, "timeoutSeconds": 600}
    pod["spec"]["containers"][0]["readinessProbe"] = probe
    client.CoreV1Api(cluster.api_client()).create_namespaced_pod(namespace, pod)


def _held_probe(name: str) -> int | None:
    mark = f"{PROBE_MARK}-{name}"
    return next((p for p in procs.descendants(os.getpid()) if mark in procs.command(p)), None)


def _zombie(pid: int) -> bool:
    stat = procs.stat(pid)
    return stat is not None and stat.state == "Z"


async def _probing(kubelet: ProcessKubelet, namespace: str, name: str) -> list[asyncio.Task[Any]]:
    """On the kubelet's loop: the readiness probes still running for that pod's container."""
    run = kubelet._container(namespace, name, None)
    return [t for t in asyncio.all_tasks() if _probes(t, run)]


def _probes(task: asyncio.Task[Any], run: Any) -> bool:
    """The task is the readiness probe of that container's run."""
    coro: Any = task.get_coro()
    if getattr(coro, "__qualname__", "") != "PodWorker._probe_readiness":
        return False
    return coro.cr_frame is not None and coro.cr_frame.f_locals.get("run") is run
