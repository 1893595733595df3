"""status.py: the status users read (phase, ready/total, restarts in the window, per-child
state, conditions) built from a real supervision core."""

from __future__ import annotations

from typing import Any

import pytest

from rebeam.exits import KILLED, SHUTDOWN, crash, shutdown_with
from rebeam.supervision import (
    ChildExited,
    ChildSpec,
    ChildStarted,
    RestartType,
    ShutdownRequest,
    StartFailed,
    Strategy,
    Supervisor,
    SupervisorFlags,
)
from rebeam_operator.status import build_status, exit_summary, phase_of

Json = dict[str, Any]


def running(*ids: str, **flags: Any) -> Supervisor:
    core = Supervisor(SupervisorFlags(**flags), [ChildSpec(i) for i in ids])
    core.init(0.0)
    for i in ids:
        core.handle(ChildStarted(i, 1), 0.0)
    return core


def status_of(
    core: Supervisor, *, now: float = 10.0, previous: Json | None = None, **kw: Any
) -> Json:
    args: dict[str, Any] = {
        "generation": 4,
        "previous": previous or {},
        "pids": {},
        "child_exits": {},
        "phase": "Running",
        "gave_up_message": None,
        "extra": {},
    }
    args.update(kw)
    return build_status(core, now=now, **args)


def conditions(status: Json) -> dict[str, Json]:
    return {c["type"]: c for c in status["conditions"]}


# --- exit summaries ----------------------------------------------------------------------


def test_exit_summary_of_each_kind() -> None:
    assert exit_summary(KILLED)["reason"] == "killed"
    assert "message" not in exit_summary(KILLED)
    assert exit_summary(SHUTDOWN)["reason"] == "shutdown"
    info = exit_summary(shutdown_with({"k": 1}))
    assert info["reason"] == "shutdown"
    assert info["message"] == "{shutdown, {'k': 1}}"
    boom = exit_summary(crash(exception_type="ValueError", message="boom", exit_code=1))
    assert boom["reason"] == "crash"
    assert boom["message"] == "ValueError: boom"
    assert boom["exitCode"] == 1
    signal = exit_summary(crash(signal="SIGSEGV"))
    assert signal["signal"] == "SIGSEGV"
    assert signal["message"] == "signal SIGSEGV"
    assert exit_summary(crash(exit_code=3))["message"] == "exit code 3"
    assert exit_summary(KILLED)["time"].endswith("Z")


# --- phases ------------------------------------------------------------------------------


def test_phase_of_every_state() -> None:
    new = Supervisor(SupervisorFlags(), [ChildSpec("a")])
    assert phase_of(new, stopping=False, gave_up=False, init_failed=False) == "Starting"
    new.init(0.0)
    assert phase_of(new, stopping=False, gave_up=False, init_failed=False) == "Starting"
    core = running("a", "b")
    assert phase_of(core, stopping=False, gave_up=False, init_failed=False) == "Running"
    assert phase_of(core, stopping=True, gave_up=False, init_failed=False) == "ShuttingDown"
    core.handle(ChildExited("a", 1, crash()), 1.0)  # a restart under way: a is starting
    assert phase_of(core, stopping=False, gave_up=False, init_failed=False) == "Restarting"
    core.handle(ChildStarted("a", 2), 1.1)
    assert phase_of(core, stopping=False, gave_up=False, init_failed=False) == "Running"
    core.handle(ShutdownRequest(SHUTDOWN), 2.0)
    core.handle(ChildExited("b", 1, SHUTDOWN), 2.1)
    core.handle(ChildExited("a", 2, SHUTDOWN), 2.2)
    for flags, phase in [
        ({}, "Terminated"),
        ({"gave_up": True}, "GaveUp"),
        ({"init_failed": True}, "Failed"),
        ({"stopping": True}, "Terminated"),  # over is over, whoever asked
    ]:
        args = {"stopping": False, "gave_up": False, "init_failed": False, **flags}
        assert phase_of(core, **args) == phase


def test_init_failure_is_failed() -> None:
    core = Supervisor(SupervisorFlags(), [ChildSpec("a")])
    core.init(0.0)
    core.handle(StartFailed("a", 1, crash(exit_code=1)), 0.1)
    assert phase_of(core, stopping=False, gave_up=False, init_failed=True) == "Failed"


# --- build_status ------------------------------------------------------------------------


def test_all_running_is_ready() -> None:
    core = running("a", "b")
    status = status_of(core, pids={"a": "ns.s.1", "b": "ns.t.1"})
    assert status["ready"] == "2/2"
    assert status["readyChildren"] == 2
    assert status["totalChildren"] == 2
    assert status["observedGeneration"] == 4
    assert [c["name"] for c in status["children"]] == ["a", "b"]  # start order
    assert status["children"][0] == {
        "name": "a",
        "state": "running",
        "incarnation": 1,
        "pid": "ns.s.1",
        "restarts": 0,
    }
    ready = conditions(status)["Ready"]
    assert ready["status"] == "True"
    assert ready["reason"] == "ChildrenRunning"
    assert ready["message"] == "2/2 children running"
    assert ready["observedGeneration"] == 4
    assert conditions(status)["GaveUp"]["status"] == "False"


def test_a_restart_counts_in_the_window_and_shows_the_last_exit() -> None:
    core = running("a", "b", strategy=Strategy.ONE_FOR_ONE, period=5.0)
    core.handle(ChildExited("a", 1, KILLED), 1.0)
    exits = {"a": exit_summary(KILLED)}
    status = status_of(core, now=1.5, child_exits=exits, phase="Restarting")
    assert status["restartsInWindow"] == 1
    assert status["restartHistory"] == [1.0]
    a = status["children"][0]
    assert a["state"] == "starting"
    assert a["incarnation"] == 2
    assert a["restarts"] == 1
    assert "pid" not in a  # not running: no pid to call
    assert a["lastExit"]["reason"] == "killed"
    assert status["ready"] == "1/2"
    assert conditions(status)["Ready"]["status"] == "False"
    assert conditions(status)["Ready"]["reason"] == "Restarting"
    # The window is inclusive (now - t <= period) and then the restart leaves it.
    assert status_of(core, now=6.0)["restartsInWindow"] == 1
    assert status_of(core, now=6.01)["restartsInWindow"] == 0
    assert status_of(core, now=6.01)["restartHistory"] == []


def test_a_transient_child_that_ended_cleanly_does_not_spoil_ready() -> None:
    core = Supervisor(
        SupervisorFlags(),
        [ChildSpec("a"), ChildSpec("t", restart=RestartType.TRANSIENT)],
    )
    core.init(0.0)
    core.handle(ChildStarted("a", 1), 0.0)
    core.handle(ChildStarted("t", 1), 0.0)
    core.handle(ChildExited("t", 1, SHUTDOWN), 1.0)
    status = status_of(core)
    assert status["ready"] == "1/2"
    assert conditions(status)["Ready"]["status"] == "True"


def test_gave_up_condition() -> None:
    core = running("a", intensity=0)
    core.handle(ChildExited("a", 1, KILLED), 1.0)
    message = "a exited (killed); reached max restart intensity 0 in 5s"
    status = status_of(core, phase="GaveUp", gave_up_message=message)
    gave_up = conditions(status)["GaveUp"]
    assert gave_up["status"] == "True"
    assert gave_up["reason"] == "ReachedMaxRestartIntensity"
    assert gave_up["message"] == message
    assert conditions(status)["Ready"]["status"] == "False"
    assert status["phase"] == "GaveUp"


def test_transition_time_is_kept_while_the_status_stays() -> None:
    core = running("a")
    old = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "ChildrenRunning",
                "message": "",
                "lastTransitionTime": "2020-01-01T00:00:00Z",
            },
            {
                "type": "GaveUp",
                "status": "True",
                "reason": "ReachedMaxRestartIntensity",
                "message": "",
                "lastTransitionTime": "2020-01-01T00:00:00Z",
            },
        ]
    }
    status = status_of(core, previous=old)
    assert conditions(status)["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    # GaveUp went from True to False: a new transition.
    assert conditions(status)["GaveUp"]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_extra_fields_are_kept_and_win() -> None:
    core = running("a")
    status = status_of(core, extra={"seq": 7, "coreSnapshot": "{}", "phase": "Terminated"})
    assert status["seq"] == 7
    assert status["coreSnapshot"] == "{}"
    assert status["phase"] == "Terminated"


@pytest.mark.parametrize("phase", ["Starting", "ShuttingDown", "Restarting"])
def test_not_ready_unless_running(phase: str) -> None:
    status = status_of(running("a"), phase=phase)
    assert conditions(status)["Ready"]["status"] == "False"
    assert conditions(status)["Ready"]["reason"] == phase
