"""observation.py: what a pod says about its incarnation, for every way a container can end and
every pod phase; and the reason of a pod that vanished before we saw it end."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rebeam.exits import (
    KILLED,
    NOCONNECTION,
    NORMAL,
    SHUTDOWN,
    ExitKind,
    crash,
    not_ready_within,
    shutdown_with,
)
from rebeam_operator.observation import (
    PodPhase,
    PodView,
    disrupted,
    observe_pod,
    recorded_reason,
    start_timeout_reason,
    vanished_reason,
)
from rebeam_operator.status import exit_summary

Json = dict[str, Any]


def pod(
    *,
    phase: str = "Running",
    state: Json | None = None,
    ready: bool = False,
    node: str | None = "node-1",
    deleting: bool = False,
    container: str = "actor",
    message: str | None = None,
) -> Json:
    meta: Json = {"name": "app-a-1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: Json = {"phase": phase}
    if message is not None:
        status["message"] = message
    if state is not None:
        status["containerStatuses"] = [{"name": container, "state": state, "ready": ready}]
    spec: Json = {"nodeName": node} if node else {}
    return {"metadata": meta, "spec": spec, "status": status}


def terminated(code: int, reason: str = "Error", **more: Any) -> Json:
    return {"terminated": {"exitCode": code, "reason": reason, **more}}


# --- containers that ended ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "stop", "expected"),
    [
        (0, "Completed", False, NORMAL),
        (0, "Completed", True, SHUTDOWN),  # asked to stop and it did: shutdown
        (137, "Error", False, KILLED),  # SIGKILL from anyone
        (137, "Error", True, KILLED),  # grace period overrun
        (143, "Error", False, SHUTDOWN),  # SIGTERM from outside is shutdown too
        (143, "Error", True, SHUTDOWN),
        (1, "Error", False, crash(exit_code=1)),
        (1, "Error", True, crash(exit_code=1)),  # a crash while stopping is still a crash
        (139, "Error", False, crash(exit_code=139)),
        (0, "OOMKilled", False, KILLED),
        (137, "OOMKilled", False, KILLED),
    ],
)
def test_container_end(code: int, reason: str, stop: bool, expected: Any) -> None:
    view = observe_pod(pod(phase="Failed", state=terminated(code, reason)), stop_requested=stop)
    assert view.phase is PodPhase.ENDED
    assert view.reason == expected
    assert view.ran


def test_signal_field_wins_over_exit_code() -> None:
    view = observe_pod(pod(state=terminated(0, signal=9)), stop_requested=False)
    assert view.reason == KILLED
    view = observe_pod(pod(state=terminated(0, signal=15)), stop_requested=False)
    assert view.reason == SHUTDOWN


def test_other_signal_is_a_crash_naming_it() -> None:
    view = observe_pod(pod(state=terminated(0, signal=11)), stop_requested=False)
    assert view.reason == crash(signal="SIGSEGV")


@pytest.mark.parametrize("reason", ["StartError", "ContainerCannotRun"])
def test_container_that_never_ran(reason: str) -> None:
    view = observe_pod(pod(phase="Failed", state=terminated(128, reason)), stop_requested=False)
    assert view.phase is PodPhase.ENDED
    assert not view.ran
    assert view.reason is not None
    assert view.reason.kind is ExitKind.CRASH


def test_a_start_error_says_so_and_why() -> None:
    """The runtime's words reach the Supervisor's status (not just "exit code 128")."""
    state = terminated(128, "StartError", message="exec: /no/such/program: not found\n")
    view = observe_pod(pod(phase="Failed", state=state), stop_requested=False)
    assert view.reason == crash(
        exception_type="StartError", exit_code=128, message="exec: /no/such/program: not found"
    )
    summary = exit_summary(view.reason)
    assert summary["message"] == "StartError: exec: /no/such/program: not found"


def test_recorded_reason_wins_over_exit_code() -> None:
    boom = crash(exception_type="ValueError", message="boom")
    message = json.dumps(boom.to_wire())
    view = observe_pod(pod(state=terminated(1, message=message)), stop_requested=False)
    assert view.reason == boom
    info = shutdown_with({"done": True})
    message = json.dumps(info.to_wire())
    view = observe_pod(pod(state=terminated(0, message=message)), stop_requested=False)
    assert view.reason == info


def test_sigkill_wins_over_recorded_reason() -> None:
    message = json.dumps(SHUTDOWN.to_wire())
    view = observe_pod(pod(state=terminated(137, message=message)), stop_requested=True)
    assert view.reason == KILLED


def test_unrecorded_message_of_a_crash_is_kept_as_its_text() -> None:
    tail = "x" * 500 + "Traceback: the end\n"
    view = observe_pod(pod(state=terminated(2, message=tail)), stop_requested=False)
    assert view.reason is not None
    details = view.reason.details
    assert details is not None
    assert details.exit_code == 2
    assert details.message is not None
    assert details.message.endswith("Traceback: the end")
    assert len(details.message) == 300


@pytest.mark.parametrize(
    "message", ["", "   ", "not json", "42", '"bogus"', '{"crash": 3}', '{"crash": {"x": 1}}']
)
def test_recorded_reason_ignores_what_is_not_an_exit_reason(message: str) -> None:
    assert recorded_reason(message) is None
    assert recorded_reason(None) is None


# --- pods that did not end (yet) ---------------------------------------------------------


def test_running_and_ready() -> None:
    view = observe_pod(pod(state={"running": {}}, ready=True), stop_requested=False)
    assert view.phase is PodPhase.RUNNING
    assert view.ready
    assert view.node == "node-1"
    assert not view.deleting


def test_running_not_ready_yet() -> None:
    view = observe_pod(pod(state={"running": {}}), stop_requested=False)
    assert view.phase is PodPhase.RUNNING
    assert not view.ready


def test_running_phase_without_container_status() -> None:
    view = observe_pod(pod(phase="Running"), stop_requested=False)
    assert view.phase is PodPhase.RUNNING


@pytest.mark.parametrize(
    "state",
    [
        None,
        {"waiting": {"reason": "ContainerCreating"}},
        {"waiting": {"reason": "ErrImagePull"}},
        {"waiting": {"reason": "ImagePullBackOff"}},
    ],
)
def test_pending(state: Json | None) -> None:
    view = observe_pod(pod(phase="Pending", state=state, node=None), stop_requested=False)
    assert view.phase is PodPhase.PENDING
    assert view.reason is None
    assert view.node is None


BACK_OFF = 'Back-off pulling image "r/absent:1": ErrImagePull: not found'


@pytest.mark.parametrize(
    ("state", "stuck"),
    [
        (None, None),
        ({"waiting": {"reason": "ContainerCreating"}}, None),  # just starting
        ({"waiting": {}}, None),
        (
            {"waiting": {"reason": "ImagePullBackOff", "message": BACK_OFF}},
            f"container actor waiting: ImagePullBackOff: {BACK_OFF}",
        ),
        ({"waiting": {"reason": "ErrImagePull"}}, "container actor waiting: ErrImagePull"),
        (
            {"waiting": {"reason": "CreateContainerConfigError", "message": "no key k\n"}},
            "container actor waiting: CreateContainerConfigError: no key k",
        ),
    ],
)
def test_a_pending_pod_says_why_it_is_stuck(state: Json | None, stuck: str | None) -> None:
    view = observe_pod(pod(phase="Pending", state=state), stop_requested=False)
    assert view.phase is PodPhase.PENDING
    assert view.stuck == stuck


def test_an_unschedulable_pod_says_why() -> None:
    body = pod(phase="Pending", node=None)
    body["status"]["conditions"] = [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory.",
        }
    ]
    view = observe_pod(body, stop_requested=False)
    assert view.stuck == (
        "not scheduled: Unschedulable: 0/3 nodes are available: 3 Insufficient memory."
    )


def test_a_long_kubelet_message_is_cut() -> None:
    state = {"waiting": {"reason": "ErrImagePull", "message": "x" * 10_000}}
    view = observe_pod(pod(phase="Pending", state=state), stop_requested=False)
    assert view.stuck is not None
    assert len(view.stuck) == 500


def test_the_start_timeout_names_why_the_pod_was_stuck() -> None:
    state = {"waiting": {"reason": "ImagePullBackOff", "message": BACK_OFF}}
    view = observe_pod(pod(phase="Pending", state=state), stop_requested=False)
    summary = exit_summary(start_timeout_reason(8, view))
    assert summary["message"] == (
        "StartTimeout: not ready within startTimeout 8s: "
        f"container actor waiting: ImagePullBackOff: {BACK_OFF}"
    )


@pytest.mark.parametrize(
    "view",
    [
        None,
        PodView(PodPhase.RUNNING),  # running, not ready: every backend says the same
        PodView(PodPhase.PENDING),
    ],
)
def test_the_start_timeout_alone_when_nothing_is_stuck(view: PodView | None) -> None:
    assert start_timeout_reason(2, view) == not_ready_within(2)


def test_unknown_phase_is_not_an_end() -> None:
    """A pod on a lost node: nothing is known, nothing is concluded (the fencing rule)."""
    view = observe_pod(pod(phase="Unknown"), stop_requested=False)
    assert view.phase is PodPhase.PENDING


def test_deleting_is_seen() -> None:
    view = observe_pod(pod(state={"running": {}}, deleting=True), stop_requested=True)
    assert view.deleting
    assert view.phase is PodPhase.RUNNING


def test_other_containers_are_not_ours() -> None:
    view = observe_pod(
        pod(phase="Pending", state=terminated(1), container="sidecar"), stop_requested=False
    )
    assert view.phase is PodPhase.PENDING


# --- pods that ended without a container status ------------------------------------------


def test_failed_pod_without_container_status_is_a_crash_with_its_message() -> None:
    view = observe_pod(
        pod(phase="Failed", message="The node was low on resource: memory."),
        stop_requested=False,
    )
    assert view.phase is PodPhase.ENDED
    assert view.reason == crash(message="The node was low on resource: memory.")


def test_failed_pod_we_were_stopping_is_shutdown() -> None:
    view = observe_pod(pod(phase="Failed"), stop_requested=True)
    assert view.reason == SHUTDOWN


def test_succeeded_pod_without_container_status_is_normal() -> None:
    """Succeeded means every container exited 0: a normal exit, not a crash."""
    view = observe_pod(pod(phase="Succeeded"), stop_requested=False)
    assert view.phase is PodPhase.ENDED
    assert view.reason == NORMAL
    view = observe_pod(pod(phase="Succeeded"), stop_requested=True)
    assert view.reason == SHUTDOWN


def test_empty_pod_body() -> None:
    view = observe_pod({"metadata": {}}, stop_requested=False)
    assert view.phase is PodPhase.PENDING


# --- vanished pods -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop", "brutal", "lost", "expected"),
    [
        (False, False, False, KILLED),  # deleted behind our back: we never saw it end
        (False, True, False, KILLED),
        (True, False, False, SHUTDOWN),
        (True, True, False, KILLED),  # brutal_kill: grace 0
        (False, False, True, NOCONNECTION),  # fenced on a lost node
        (True, False, True, NOCONNECTION),
        (True, True, True, NOCONNECTION),
    ],
)
def test_vanished_reason(stop: bool, brutal: bool, lost: bool, expected: Any) -> None:
    assert vanished_reason(stop_requested=stop, brutal=brutal, node_lost=lost) == expected


def test_a_disrupted_pod_that_vanished_is_noconnection_unless_we_stopped_it() -> None:
    assert vanished_reason(stop_requested=False, brutal=False, node_lost=False, disrupted=True) == (
        NOCONNECTION
    )
    assert vanished_reason(stop_requested=True, brutal=False, node_lost=False, disrupted=True) == (
        SHUTDOWN
    )


# --- pods Kubernetes took away (DisruptionTarget) -----------------------------------------


def evicted(body: Json, reason: str = "EvictionByEvictionAPI") -> Json:
    condition = {"type": "DisruptionTarget", "status": "True", "reason": reason}
    body["status"].setdefault("conditions", []).append(condition)
    return body


def test_disrupted_reads_the_condition() -> None:
    assert disrupted(evicted(pod()))
    assert not disrupted(pod())
    off = pod()
    off["status"]["conditions"] = [{"type": "DisruptionTarget", "status": "False"}]
    assert not disrupted(off)


@pytest.mark.parametrize(
    "state",
    [
        terminated(143),  # the SIGTERM of the eviction: would be shutdown
        terminated(137),  # the SIGKILL after its grace period: would be killed
        terminated(1, message='{"shutdown": "bye"}'),  # what the runtime recorded
    ],
)
def test_an_evicted_pod_ends_noconnection(state: Json) -> None:
    view = observe_pod(evicted(pod(state=state, deleting=True)), stop_requested=False)
    assert view.phase is PodPhase.ENDED
    assert view.reason == NOCONNECTION


def test_an_evicted_pod_we_were_stopping_ends_as_stopped() -> None:
    view = observe_pod(evicted(pod(state=terminated(143), deleting=True)), stop_requested=True)
    assert view.reason == SHUTDOWN


def test_a_pod_failed_by_node_pressure_is_noconnection() -> None:
    body = evicted(pod(phase="Failed", message="low on memory"), reason="TerminationByKubelet")
    assert observe_pod(body, stop_requested=False).reason == NOCONNECTION


# --- the driver reports it -------------------------------------------------------------------


async def test_a_child_stuck_on_its_image_fails_its_start_naming_the_image_problem() -> None:
    """The driver's failed start carries the cause (what `kubectl describe supervisor` shows)."""
    from tests.operator.bodies import SLEEP
    from tests.operator.test_driver import started

    driver, fake = await started([{"name": "a", "actor": SLEEP, "startTimeout": "1s"}])
    body = fake.pods["app-a-1"]
    body["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"  # long past its timeout
    waiting = {"reason": "ImagePullBackOff", "message": BACK_OFF}
    body["status"] = {
        "phase": "Pending",
        "containerStatuses": [{"name": "actor", "state": {"waiting": waiting}}],
    }
    driver.on_pod(json.loads(json.dumps(body)), deleted=False)
    await driver.reconcile()
    (reason,) = [e[3] for e in fake.emitted if e[:3] == ("start_failed", "a", 1)]
    assert exit_summary(reason)["message"] == (
        "StartTimeout: not ready within startTimeout 1s: "
        f"container actor waiting: ImagePullBackOff: {BACK_OFF}"
    )
