"""A nested supervisor's shutdown, as OTP's supervisor does it
(docs/semantics.md, "Shutdown"): asked to stop, waited for up to its ``shutdown`` time, then
killed — on Kubernetes every pod of its subtree force-deleted and its exit reported as
``killed``. ``infinity`` waits as long as it takes; ``brutal_kill`` kills at once."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client, watch
from operator_helpers import (
    Lifecycle,
    Objects,
    Operator,
    child_state,
    sleeper,
    slow_stopper,
    supervisor,
    wait_armed,
)
from timeline import PodTimeline

pytestmark = pytest.mark.e2e

MARGIN = 3.0  # the operator's passes, the child's acknowledgement, API round trips


def stubborn_tree(name: str, shutdown: str, armed: Path, delay: float) -> dict[str, object]:
    """``name`` with one child supervisor ``mid`` (its ``shutdown`` as given) over an actor that
    takes ``delay`` seconds to stop after SIGTERM, with a pod grace period longer still."""
    mid = {"children": [slow_stopper("w", delay, armed, shutdown="300s")]}
    return supervisor(name, [{"name": "mid", "shutdown": shutdown, "supervisor": mid}])


def delete_and_time(objects: Objects, name: str, timeout: float) -> float:
    start = time.monotonic()
    objects.delete(name)
    wait_for(lambda: objects.get(name) is None, timeout=timeout, what=f"{name} to be gone")
    return time.monotonic() - start


class StatusLog:
    """Every status a Supervisor object had, from a watch (polling could miss a short one)."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.statuses: list[dict[str, object]] = []
        self._closing = False
        self._watch = watch.Watch()
        custom = client.CustomObjectsApi(cluster.api_client())
        self._thread = threading.Thread(
            target=self._run, args=(custom, namespace, name), daemon=True
        )
        self._thread.start()

    def _run(self, custom: client.CustomObjectsApi, namespace: str, name: str) -> None:
        try:
            for event in self._watch.stream(
                custom.list_namespaced_custom_object,
                "rebeam.io",
                "v1alpha1",
                namespace,
                "supervisors",
                field_selector=f"metadata.name={name}",
                timeout_seconds=120,
            ):
                self.statuses.append(dict(event["object"].get("status") or {}))
        except Exception as exc:
            if not self._closing:  # stopping a watch may break its connection: that is fine
                self.statuses.append({"watch broke": repr(exc)})

    def close(self) -> list[dict[str, object]]:
        self._closing = True
        self._watch.stop()
        self._thread.join(5)
        return self.statuses


def process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")  # a zombie has ended
    except FileNotFoundError:
        return True


@pytest.mark.parametrize(("shutdown", "limit"), [("2s", 2.0), ("brutal_kill", 0.0)])
def test_finite_shutdown_kills_the_subtree(
    shutdown: str,
    limit: float,
    operator: Operator,
    objects: Objects,
    lifecycle: Lifecycle,
    kubelet: ProcessKubelet,
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    armed = tmp_path / "w-armed"
    objects.apply(stubborn_tree("top", shutdown, armed, delay=600))
    objects.wait_status("top", lambda s: s.get("ready") == "1/1", what="top 1/1")
    wait_armed(armed)
    pid = kubelet.container_pid(namespace, "top-mid-w-1", "actor")
    assert pid is not None
    mid_statuses = StatusLog(cluster, namespace, "top-mid")

    took = delete_and_time(objects, "top", timeout=limit + 30)
    print(f"shutdown {shutdown}: top deleted in {took:.2f}s")

    assert limit <= took <= limit + MARGIN, f"stopping top took {took:.1f}s"
    lines = lifecycle.lines()
    assert "exited mid killed" in lines, lines
    assert "exited w shutdown" not in lines  # w never got to end by its own SIGTERM handler
    # As rebeam run reports a killed subtree: w's exit, killed, told (by mid, playing dead)
    # before mid's own, so a monitor of w gets DOWN at once.
    assert lines.index("exited w killed") < lines.index("exited mid killed"), lines
    wait_for(lambda: not objects.pods(), timeout=10, what="every pod gone")
    wait_for(lambda: process_gone(pid), timeout=10, what="w's process to be killed")
    # mid acknowledged the kill in its status: Terminated, killed, no child running.
    acks = [s for s in mid_statuses.close() if s.get("killedIncarnation") == 1]
    assert acks, "mid never acknowledged the kill"
    assert acks[0]["phase"] == "Terminated"
    assert acks[0]["exitReason"] == "killed"
    assert acks[0]["ready"] == "0/1"
    operator.check_running()


def test_infinity_waits_for_the_subtree(
    operator: Operator, objects: Objects, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    armed = tmp_path / "w-armed"
    objects.apply(stubborn_tree("top", "infinity", armed, delay=4))
    objects.wait_status("top", lambda s: s.get("ready") == "1/1", what="top 1/1")
    wait_armed(armed)

    took = delete_and_time(objects, "top", timeout=60)
    print(f"shutdown infinity: top deleted in {took:.2f}s")

    assert took >= 4.0, f"top stopped after {took:.1f}s, before w's 4 s"
    lines = lifecycle.lines()
    assert "exited w shutdown" in lines, lines
    assert "exited mid shutdown" in lines, lines
    operator.check_running()


def test_killed_child_supervisor_restarts_fresh_and_crash_safe(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    """one_for_all: a sibling's crash stops ``mid`` (2 s, then killed) and restarts both; the
    operator is SIGKILLed right after it force-deleted mid's subtree, and started again."""
    timeline = PodTimeline(cluster, namespace)
    armed = tmp_path / "w-armed"
    mid = {"children": [slow_stopper("w", 600, armed, shutdown="300s")]}
    objects.apply(
        supervisor(
            "top",
            [sleeper("a"), {"name": "mid", "shutdown": "2s", "supervisor": mid}],
            strategy="one_for_all",
            intensity=5,
            period="600s",
        )
    )
    objects.wait_status("top", lambda s: s.get("ready") == "2/2", what="top 2/2")
    wait_armed(armed)

    operator.kill()
    operator.start({"REBEAM_OPERATOR_FAILPOINT": "subtree-killed"})
    kubelet.kill_container(namespace, "top-a-1", "actor", signal.SIGKILL)
    assert operator.wait_exit(60) == -signal.SIGKILL
    operator.start()

    status = objects.wait_status(
        "top",
        lambda s: s.get("ready") == "2/2" and s.get("incarnations") == {"a": 2, "mid": 2},
        what="a and mid restarted",
        timeout=60,
    )
    assert len(status["restartHistory"]) == 1
    assert child_state(status, "mid")["lastExit"]["reason"] == "killed"
    nested = objects.status("top-mid")
    assert nested["supervisorIncarnation"] == 2
    assert nested["incarnations"] == {"w": 2}  # the new core continues: no second w#1
    assert nested["killedIncarnation"] == 1  # its first incarnation acknowledged the kill
    wait_for(
        lambda: set(objects.pods()) == {"top-a-2", "top-mid-w-2"},
        timeout=30,
        what="only top-a-2 and top-mid-w-2 left",
    )
    assert timeline.close() == []
    operator.check_running()


def test_the_kill_deadline_survives_an_operator_restart(
    operator: Operator, objects: Objects, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    """The operator dies right after asking mid to stop (shutdown 10s) and stays down past the
    deadline: the restarted operator kills mid at once, from the moment it persisted, instead
    of granting 10 s afresh."""
    armed = tmp_path / "w-armed"
    objects.apply(stubborn_tree("top", "10s", armed, delay=600))
    objects.wait_status("top", lambda s: s.get("ready") == "1/1", what="top 1/1")
    wait_armed(armed)

    operator.kill()
    operator.start({"REBEAM_OPERATOR_FAILPOINT": "supervisor-asked"})
    objects.delete("top")
    assert operator.wait_exit(60) == -signal.SIGKILL
    mid = objects.get("top-mid")
    assert mid is not None
    assert mid["metadata"]["annotations"]["rebeam.io/stop-incarnation"] == "1"
    asked = float(objects.status("top")["stopsAsked"]["mid#1"])
    # Down past the deadline: the condition under test is time itself.
    time.sleep(max(0.0, asked + 10.5 - time.time()))

    start = time.monotonic()
    operator.start()
    wait_for(lambda: objects.get("top") is None, timeout=60, what="top to be gone")
    took = time.monotonic() - start
    print(f"restarted past the deadline: top deleted {took:.2f}s after the operator's start")
    assert took < 10.0, f"took {took:.1f}s: the 10 s deadline was granted again"
    assert "exited mid killed" in lifecycle.lines()
    operator.check_running()
