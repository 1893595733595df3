"""Status as users read it: phase, ready/total, restarts in the window, per-child state and
conditions (Ready, GaveUp) with observedGeneration — built from the core and what the driver
persists beside it.

Beside the documented fields a driver keeps, in the same status, what it needs to carry on
after an operator restart (``coreSnapshot``, ``seq``, ``fed``, ``outbox``,
``supervisorIncarnation``, ``shutdownFed``, ``childExits``, ``exitReason``, ...; record.py
says what each is): status is the only memory the operator trusts.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rebeam.exits import ExitKind, ExitReason
from rebeam.spec.models import ChildState, Condition, ExitSummary, SupervisorStatus
from rebeam.supervision import ChildInfo, ChildStatus, Strategy, Supervisor, SupervisorState

__all__ = ["build_status", "condition", "exit_summary", "now_iso", "start_order"]

Json = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def exit_summary(reason: ExitReason) -> Json:
    details = reason.details
    summary = ExitSummary(
        reason=reason.kind.value,
        message=(
            details.summary()
            if reason.kind is ExitKind.CRASH and details
            else (str(reason) if reason.info is not None else None)
        ),
        exit_code=details.exit_code if details else None,
        signal=details.signal if details else None,
        time=now_iso(),
    )
    return summary.model_dump(mode="json", by_alias=True, exclude_none=True)


def condition(
    previous: list[Json], kind: str, status: str, reason: str, message: str, generation: int
) -> Json:
    transition = now_iso()
    for old in previous:
        if old.get("type") == kind and old.get("status") == status:
            transition = old.get("lastTransitionTime", transition)
    return Condition(
        type=kind,
        status=status,  # type: ignore[arg-type,unused-ignore]
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    ).model_dump(mode="json", by_alias=True, exclude_none=True)


def start_order(core: Supervisor) -> list[ChildInfo]:
    """Children as people read a tree: in start order. which_children is OTP's order: newest
    first for a static supervisor, in start order for simple_one_for_one."""
    rows = core.which_children()
    simple = core.flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE
    return rows if simple else list(reversed(rows))


def phase_of(core: Supervisor, *, stopping: bool, gave_up: bool, init_failed: bool) -> str:
    if core.state is SupervisorState.TERMINATED:
        if init_failed:
            return "Failed"
        return "GaveUp" if gave_up else "Terminated"
    if stopping:
        return "ShuttingDown"
    if core.state in (SupervisorState.NEW, SupervisorState.STARTING):
        return "Starting"
    return "Restarting" if core.busy else "Running"


def _child_states(
    core: Supervisor, rows: list[ChildInfo], pids: dict[str, str], child_exits: dict[str, Json]
) -> list[ChildState]:
    return [
        ChildState(
            name=info.id,
            state=info.status.value,  # type: ignore[arg-type,unused-ignore]
            incarnation=info.incarnation,
            pid=pids.get(info.id) if info.status is ChildStatus.RUNNING else None,
            restarts=max(0, core.incarnations.get(info.id, 0) - 1),
            last_exit=ExitSummary.model_validate(child_exits[info.id])
            if info.id in child_exits
            else None,
        )
        for info in rows
    ]


def _conditions(
    rows: list[ChildInfo], previous: Json, phase: str, gave_up_message: str | None, generation: int
) -> list[Json]:
    """Ready and GaveUp."""
    running = sum(1 for info in rows if info.status is ChildStatus.RUNNING)
    old = list(previous.get("conditions") or [])
    # Ready: every child that should run runs (a transient child that ended cleanly, or a
    # temporary one that ended, is undefined and wants nothing).
    settled = all(info.status in (ChildStatus.RUNNING, ChildStatus.UNDEFINED) for info in rows)
    ready = phase == "Running" and settled
    return [
        condition(
            old,
            "Ready",
            "True" if ready else "False",
            "ChildrenRunning" if ready else phase,
            f"{running}/{len(rows)} children running",
            generation,
        ),
        condition(
            old,
            "GaveUp",
            "True" if gave_up_message else "False",
            "ReachedMaxRestartIntensity" if gave_up_message else "WithinIntensity",
            gave_up_message or "",
            generation,
        ),
    ]


def build_status(
    core: Supervisor,
    *,
    now: float,
    generation: int,
    previous: Json,
    pids: dict[str, str],
    child_exits: dict[str, Json],
    phase: str,
    gave_up_message: str | None,
    extra: Json,
) -> Json:
    rows = start_order(core)
    running = sum(1 for info in rows if info.status is ChildStatus.RUNNING)
    conditions = _conditions(rows, previous, phase, gave_up_message, generation)
    window = [t for t in core.restart_history if now - t <= core.flags.period]
    status = SupervisorStatus(
        observed_generation=generation,
        phase=phase,
        ready=f"{running}/{len(rows)}",
        ready_children=running,
        total_children=len(rows),
        restarts_in_window=len(window),
        restart_history=list(window),
        incarnations=core.incarnations,
        children=_child_states(core, rows, pids, child_exits),
        conditions=[Condition.model_validate(c) for c in conditions],
    )
    body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    body.update(extra)
    return body
