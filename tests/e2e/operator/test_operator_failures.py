"""Start failures and node loss.

* A start that fails (the container cannot start) or overruns ``startTimeout`` is a failed
  start under OTP's rules: during init it fails the supervisor, during a restart it is
  retried and counted again.
* A pod on a lost node is not replaced while its incarnation may still live: only once its
  runtime's lease has expired is the pod force-deleted and the exit reported as
  ``noconnection``.
* A pod evicted (``kubectl drain`` uses the Eviction API) was taken away by the platform: its
  exit is ``noconnection`` too, so a transient child is restarted as well.
"""

from __future__ import annotations

import signal
import time

import pytest
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client
from operator_helpers import Objects, Operator, actor, child_state, sleeper, supervisor

pytestmark = pytest.mark.e2e


def test_a_failed_restart_is_retried_and_counted(
    operator: Operator, objects: Objects, kubelet: ProcessKubelet, namespace: str
) -> None:
    objects.apply(supervisor("app", [sleeper("w")], intensity=3, period="120s"))
    objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="1/1 ready")
    kubelet.fail_start(namespace, pod="app-w-2", message="image pull failed (injected)")

    kubelet.kill_container(namespace, "app-w-1", "actor", signal.SIGKILL)

    status = objects.wait_status(
        "app",
        lambda s: s.get("ready") == "1/1" and s.get("incarnations") == {"w": 3},
        what="w#3 running after w#2 failed to start",
    )
    assert status["restartsInWindow"] == 2  # the retry counts again, as in OTP
    messages = [e["message"] for e in objects.events("app") if e["reason"] == "Restarting"]
    assert any("w exited (killed), restarting w" in m for m in messages)
    assert any("retrying the failed start of w" in m for m in messages)


def test_start_timeout_fails_init(
    operator: Operator, objects: Objects, kubelet: ProcessKubelet
) -> None:
    kubelet.lose_node()  # nothing gets scheduled: the pod stays Pending
    try:
        objects.apply(supervisor("late", [sleeper("w", startTimeout="2s")], intensity=3))
        status = objects.wait_status(
            "late", lambda s: s.get("phase") == "Failed", what="init failed", timeout=60
        )
    finally:
        kubelet.recover_node()
    assert status["initFailed"]["child"] == "w"
    assert "startTimeout" in status["childExits"]["w"]["message"]
    failed = [e["message"] for e in objects.events("late") if e["reason"] == "StartFailed"]
    assert len(failed) == 1
    assert "w failed to start" in failed[0]
    assert "startTimeout 2s" in failed[0]
    wait_for(lambda: not objects.pods(), timeout=30, what="the pending pod deleted")


def test_node_loss_replaces_a_pod_only_once_it_is_fenced(
    operator: Operator, objects: Objects, kubelet: ProcessKubelet, namespace: str
) -> None:
    objects.apply(supervisor("app", [actor("g", "hello.greeter:Greeter", register="greeter")]))
    objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="1/1 ready")
    kubelet.lose_node()
    try:
        # The runtime lives on and holds its lease: it must not be replaced. (A window of
        # observation, three lease lifetimes long: a "never" cannot be waited for.)
        ttl = float(operator.lease_ttl)
        deadline = time.monotonic() + 3 * ttl
        while time.monotonic() < deadline:
            assert "app-g-2" not in objects.pods()
            assert objects.status("app")["incarnations"] == {"g": 1}
            time.sleep(0.5)

        # Now it dies unseen (the node is silent); its lease expires; the pod is fenced.
        kubelet.kill_container(namespace, "app-g-1", "actor", signal.SIGKILL)
        status = objects.wait_status(
            "app",
            lambda s: s.get("incarnations") == {"g": 2},
            what="g#2 decided after the lease expired",
            timeout=60,
        )
        assert child_state(status, "g")["lastExit"]["reason"] == "noconnection"
        assert "app-g-1" not in objects.pods()  # force-deleted before the replacement
    finally:
        kubelet.recover_node()
    objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="g#2 ready", timeout=60)
    operator.check_running()


def test_an_evicted_pod_exits_noconnection_and_is_restarted(
    operator: Operator, objects: Objects, namespace: str
) -> None:
    """What a drain does to a pod: the Eviction API marks it DisruptionTarget and deletes it
    with its grace period; the kubelet SIGTERMs it. That SIGTERM would read as ``shutdown``,
    which would leave a transient child stopped for good."""
    children = [sleeper("a", shutdown="2s"), sleeper("t", restart="transient", shutdown="2s")]
    objects.apply(supervisor("app", children, intensity=5, period="120s"))
    objects.wait_status("app", lambda s: s.get("ready") == "2/2", what="2/2 ready")
    for pod in ("app-a-1", "app-t-1"):
        eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=namespace))
        objects.core.create_namespaced_pod_eviction(pod, namespace, eviction)

    status = objects.wait_status(
        "app",
        lambda s: s.get("ready") == "2/2" and s.get("incarnations") == {"a": 2, "t": 2},
        what="both children restarted",
    )
    assert status["restartsInWindow"] == 2
    assert child_state(status, "a")["lastExit"]["reason"] == "noconnection"
    assert child_state(status, "t")["lastExit"]["reason"] == "noconnection"
    messages = [e["message"] for e in objects.events("app") if e["reason"] == "Restarting"]
    assert any(m.startswith("a exited (noconnection), restarting a") for m in messages)
    assert any(m.startswith("t exited (noconnection), restarting t") for m in messages)
