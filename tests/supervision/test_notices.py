"""rebeam.supervision.notices: the one mapping from a core's commands to what they tell,
shared by rebeam run and the operator."""

from __future__ import annotations

from rebeam.exits import KILLED, NORMAL, SHUTDOWN, crash, shutdown_with
from rebeam.supervision import (
    AutoShutdownBy,
    ChildRestarting,
    Exited,
    GaveUp,
    InitFailed,
    Ready,
)
from rebeam.supervision.notices import Notice, notice_of, notices


def test_commands_that_only_ask_for_work_tell_nothing() -> None:
    assert notice_of(Ready()) is None
    assert notices([Ready()]) == []


def test_a_restart_names_the_children_restarted_in_order() -> None:
    notice = notice_of(ChildRestarting("a", KILLED, ("a", "b")))
    assert notice == Notice("restarting", "a", KILLED, children=("a", "b"))
    assert notice.to_json() == {
        "event": "restarting",
        "child": "a",
        "children": ["a", "b"],
        "reason": "killed",
    }
    retry = notice_of(ChildRestarting("a", None, ("a",)))
    assert retry is not None
    assert retry.to_json()["reason"] is None  # retrying a failed start: no exit to name


def test_an_init_failure_ends_the_supervisor_as_otp_says() -> None:
    reason = crash(exit_code=3)
    notice = notice_of(InitFailed("a", reason))
    assert notice is not None
    expected = shutdown_with({"failed_to_start_child": "a", "reason": reason.to_wire()})
    assert notice.exit_reason == expected
    assert notice.to_json() == {"event": "init_failed", "child": "a", "reason": reason.to_wire()}


def test_an_exit_is_the_supervisors_own_end() -> None:
    notice = notice_of(Exited(SHUTDOWN))
    assert notice == Notice("shutdown", None, SHUTDOWN, exit_reason=SHUTDOWN)
    assert notice.to_json() == {"event": "shutdown", "reason": "shutdown"}


def test_a_give_up_and_an_auto_shutdown_keep_the_child_and_its_reason() -> None:
    told = notices([GaveUp("a", KILLED), Ready(), AutoShutdownBy("job", NORMAL)])
    assert [n.to_json() for n in told] == [
        {"event": "gave_up", "child": "a", "reason": "killed"},
        {"event": "auto_shutdown", "child": "job", "reason": "normal"},
    ]
    assert all(n.exit_reason is None for n in told)  # the Exited that follows says how
