"""Exit reasons: the one mapping from how a process or container ended
(docs/semantics.md, "Exit reasons"), and the wire form events, status and messages carry."""

from __future__ import annotations

import signal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rebeam.exits import (
    KILLED,
    NOCONNECTION,
    NOPROC,
    NORMAL,
    SHUTDOWN,
    CrashDetails,
    ExitKind,
    ExitReason,
    crash,
    from_container_end,
    from_process_end,
    shutdown_with,
)

BOOM = crash(exception_type="ValueError", message="boom", traceback="Traceback ...")
# The readiness entry's record until its command is ready (docs/readiness.md).
MARK = ExitReason.from_wire({"crash": {"exception_type": "NotReady"}})


def not_ready(summary: str, **details: object) -> ExitReason:
    return crash(
        exception_type="NotReady", message=f"exited before it was ready ({summary})", **details
    )


@pytest.mark.parametrize(
    ("returncode", "stop_requested", "recorded", "expected"),
    [
        (0, False, None, NORMAL),  # exit code 0
        (0, False, NORMAL, NORMAL),  # the actor returned stop
        (-signal.SIGTERM, True, None, SHUTDOWN),  # stopped by its supervisor
        (0, True, None, SHUTDOWN),  # ... and exited 0 on SIGTERM
        (143, True, None, SHUTDOWN),  # ... through a shell
        (-signal.SIGTERM, False, None, SHUTDOWN),  # SIGTERM from outside is shutdown too
        (0, False, shutdown_with({"why": "done"}), shutdown_with({"why": "done"})),
        (-signal.SIGKILL, False, None, KILLED),  # kill -9, OOM
        (-signal.SIGKILL, True, None, KILLED),  # brutal_kill, or a shutdown timeout
        (-signal.SIGKILL, False, BOOM, KILLED),  # SIGKILL wins over a stale record
        (1, False, BOOM, BOOM),  # an exception: the runtime's record says which
        (3, False, None, crash(exit_code=3)),  # a command's non-zero exit
        (-signal.SIGSEGV, False, None, crash(signal="SIGSEGV")),
        (143, False, None, crash(exit_code=143)),  # a shell's code without our stop request
        # A command that ended before it was ready left the entry's mark: a failed start.
        (3, False, MARK, not_ready("exit code 3", exit_code=3)),
        (0, False, MARK, not_ready("exit code 0", exit_code=0)),  # exit 0 is no start either
        (-signal.SIGSEGV, False, MARK, not_ready("signal SIGSEGV", signal="SIGSEGV")),
        (-signal.SIGKILL, False, MARK, KILLED),  # a kill, a stop stay what they are
        (-signal.SIGTERM, True, MARK, SHUTDOWN),
        (0, True, MARK, SHUTDOWN),
        # A record that only looks like the mark is the runtime's own.
        (1, False, not_ready("exit code 1", exit_code=1), not_ready("exit code 1", exit_code=1)),
    ],
)
def test_process_end_mapping(
    returncode: int, stop_requested: bool, recorded: ExitReason | None, expected: ExitReason
) -> None:
    assert from_process_end(returncode, stop_requested=stop_requested, recorded=recorded) == (
        expected
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"exit_code": 137, "reason": "OOMKilled"}, KILLED),
        ({"exit_code": 137, "reason": "Error"}, KILLED),
        ({"exit_code": 143, "reason": "Error", "stop_requested": True}, SHUTDOWN),
        ({"exit_code": 0, "reason": "Completed"}, NORMAL),
        ({"exit_code": 2, "reason": "Error"}, crash(exit_code=2)),
        ({"exit_code": 1, "reason": "Error", "recorded": BOOM}, BOOM),
        ({"exit_code": 0, "signal": signal.SIGKILL}, KILLED),
        # The mark is the termination message: the same failed start as rebeam run's.
        (
            {"exit_code": 3, "reason": "Error", "recorded": MARK},
            not_ready("exit code 3", exit_code=3),
        ),
        (
            {"exit_code": 0, "reason": "Completed", "recorded": MARK},
            not_ready("exit code 0", exit_code=0),
        ),
        ({"exit_code": 137, "reason": "Error", "recorded": MARK}, KILLED),
    ],
)
def test_container_end_mapping(kwargs: dict[str, object], expected: ExitReason) -> None:
    exit_code = kwargs.pop("exit_code")
    assert from_container_end(exit_code, **kwargs) == expected  # type: ignore[arg-type]


def test_clean_and_normal() -> None:
    assert [r.is_clean for r in (NORMAL, SHUTDOWN, shutdown_with(1), KILLED, BOOM)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert NORMAL.is_normal
    assert not SHUTDOWN.is_normal


def test_wire_forms_are_json_like_and_readable() -> None:
    assert NORMAL.to_wire() == "normal"
    assert shutdown_with({"a": 1}).to_wire() == {"shutdown": {"a": 1}}
    assert crash(exit_code=3).to_wire() == {"crash": {"exit_code": 3}}
    assert str(BOOM) == "crash (ValueError: boom)"
    assert str(crash(signal="SIGSEGV")) == "crash (signal SIGSEGV)"
    assert str(shutdown_with("bye")) == "{shutdown, 'bye'}"


@pytest.mark.parametrize(
    "bad",
    ["sideways", {"crash": 3}, {"crash": {"colour": "red"}}, {"a": 1, "b": 2}, 7, None, []],
)
def test_malformed_wire_forms_are_refused_with_a_clear_error(bad: object) -> None:
    with pytest.raises(ValueError, match=r"exit reason|crash|unknown"):
        ExitReason.from_wire(bad)


REASONS = st.one_of(
    st.sampled_from([NORMAL, SHUTDOWN, KILLED, NOCONNECTION, NOPROC]),
    st.builds(shutdown_with, st.one_of(st.text(), st.integers(), st.none().map(lambda _: "x"))),
    st.builds(
        lambda d: ExitReason(ExitKind.CRASH, details=d),
        st.builds(
            CrashDetails,
            exception_type=st.none() | st.text(max_size=20),
            message=st.none() | st.text(max_size=50),
            exit_code=st.none() | st.integers(0, 255),
            signal=st.none() | st.sampled_from(["SIGSEGV", "SIGABRT"]),
        ),
    ),
)


@given(REASONS)
def test_wire_round_trip(reason: ExitReason) -> None:
    assert ExitReason.from_wire(reason.to_wire()) == reason
