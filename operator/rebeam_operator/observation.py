"""What a pod says about its incarnation: still starting, running, or ended and why.

The container's terminated state is turned into an exit reason by
:func:`rebeam.exits.from_container_end`, with what the runtime recorded through the
termination message (``REBEAM_EXIT_RECORD`` names the termination-message path). A pod that is
gone without a final status we saw is reported by :func:`vanished_reason`.

A pod the platform took away — evicted by a drain or for node pressure, preempted, deleted by
the taint manager: Kubernetes marks all of these with the ``DisruptionTarget`` condition —
ended with ``noconnection``, whatever its process said when the SIGTERM came: as on a lost
node, the process did not choose to stop and its supervisor did not ask it to (a transient
child is restarted, as it must be). A pod deleted by hand is OTP's ``exit(Pid, shutdown)``
and ends ``shutdown``.

A pod that is still pending when its child's ``startTimeout`` runs out says why, when Kubernetes
says more than "starting": its container waits for an image it cannot pull or a config it cannot
make (``ImagePullBackOff`` with the kubelet's message), or no node takes it (``Unschedulable``).
:func:`start_timeout_reason` puts that after the ``not ready within startTimeout Ns`` every
backend reports, so that the Supervisor's status names the cause (docs/kubernetes.md).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rebeam.exits import (
    KILLED,
    NOCONNECTION,
    NORMAL,
    SHUTDOWN,
    ExitKind,
    ExitReason,
    crash,
    from_container_end,
    not_ready_within,
)
from rebeam_operator.pods import CONTAINER

__all__ = [
    "PodPhase",
    "PodView",
    "created_at",
    "disrupted",
    "observe_pod",
    "recorded_reason",
    "start_timeout_reason",
    "vanished_reason",
]

Json = dict[str, Any]

# A container's waiting reasons on its way to running: nothing to tell a user.
STARTING = frozenset({"", "ContainerCreating", "PodInitializing"})
# Terminated reasons of a container whose process never ran: the runtime could not start it.
NEVER_RAN = frozenset({"StartError", "ContainerCannotRun"})
MAX_CAUSE = 500  # characters of the kubelet's or scheduler's message kept in an exit message


class PodPhase(enum.Enum):
    PENDING = "pending"  # not running yet (unbound, pulling, waiting)
    RUNNING = "running"
    ENDED = "ended"


@dataclass(frozen=True)
class PodView:
    phase: PodPhase
    reason: ExitReason | None = None  # when ENDED
    node: str | None = None
    deleting: bool = False
    ready: bool = False  # the container passed its readiness probe (an actor's init is done)
    ran: bool = False  # the container's process did start (it did not fail to start)
    stuck: str | None = None  # when PENDING: why, if Kubernetes says more than "starting"


def recorded_reason(message: str | None) -> ExitReason | None:
    """The exit reason the runtime wrote to the termination message, if it wrote one."""
    if not message or not message.strip():
        return None
    try:
        return ExitReason.from_json(message)
    except ValueError:
        return None


def _container(pod: Json) -> Json | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return None


def created_at(body: Json) -> float | None:
    """When a Kubernetes object was created, in epoch seconds."""
    stamp = (body.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def disrupted(pod: Json) -> bool:
    """Kubernetes took the pod away (eviction, preemption, taint manager, node pressure)."""
    return any(
        c.get("type") == "DisruptionTarget" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def observe_pod(pod: Json, *, stop_requested: bool) -> PodView:
    status = pod.get("status") or {}
    node = (pod.get("spec") or {}).get("nodeName")
    deleting = "deletionTimestamp" in (pod.get("metadata") or {})
    container = _container(pod)
    state = (container or {}).get("state") or {}
    terminated = state.get("terminated")
    if terminated:
        message = terminated.get("message")
        recorded = recorded_reason(message)
        reason = from_container_end(
            int(terminated.get("exitCode", 0)),
            reason=terminated.get("reason"),
            signal=terminated.get("signal"),
            stop_requested=stop_requested,
            recorded=recorded,
        )
        ran = terminated.get("reason") not in NEVER_RAN
        if recorded is None and reason.kind is ExitKind.CRASH and message:
            details = reason.details
            reason = crash(
                # The runtime's reason names a start that failed (the message says why).
                exception_type=None if ran else terminated.get("reason"),
                exit_code=details.exit_code if details else None,
                signal=details.signal if details else None,
                message=message.strip()[-300:],
            )
        if disrupted(pod) and not stop_requested:
            reason = NOCONNECTION
        return PodView(PodPhase.ENDED, reason, node, deleting, ran=ran)
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):  # evicted, or ended before a container status
        if stop_requested:
            reason = SHUTDOWN
        elif disrupted(pod):
            reason = NOCONNECTION
        elif phase == "Succeeded":
            reason = NORMAL  # every container exited 0: the kubelet says so by this phase
        else:
            reason = crash(message=status.get("message") or status.get("reason") or "pod Failed")
        return PodView(PodPhase.ENDED, reason, node, deleting)
    if state.get("running") or phase == "Running":
        ready = bool((container or {}).get("ready"))
        return PodView(PodPhase.RUNNING, None, node, deleting, ready)
    return PodView(PodPhase.PENDING, None, node, deleting, stuck=_stuck(pod, container))


def _stuck(pod: Json, container: Json | None) -> str | None:
    """Why a pending pod does not start, in Kubernetes' words; None while it is just starting."""
    waiting = ((container or {}).get("state") or {}).get("waiting") or {}
    reason = str(waiting.get("reason") or "")
    if reason not in STARTING:
        message = str(waiting.get("message") or "").strip()
        said = f"{reason}: {message}" if message else reason
        return f"container {CONTAINER} waiting: {said}"[:MAX_CAUSE]
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            message = str(condition.get("message") or "").strip()
            return f"not scheduled: Unschedulable: {message}"[:MAX_CAUSE]
    return None


def start_timeout_reason(seconds: float, view: PodView | None) -> ExitReason:
    """The failed start of a child not ready within ``seconds``: the reason every backend
    gives, and after it why the pod was stuck (``view``: the pod's last observation)."""
    reason = not_ready_within(seconds)
    details = reason.details
    if view is None or view.stuck is None or details is None:
        return reason
    return crash(exception_type=details.exception_type, message=f"{details.message}: {view.stuck}")


def vanished_reason(
    *, stop_requested: bool, brutal: bool, node_lost: bool, disrupted: bool = False
) -> ExitReason:
    """A pod that went away before we saw how it ended (``disrupted``: its last state seen
    had the ``DisruptionTarget`` condition)."""
    if node_lost:
        return NOCONNECTION
    if stop_requested:
        return KILLED if brutal else SHUTDOWN
    if disrupted:
        return NOCONNECTION
    return KILLED
