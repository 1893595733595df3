"""notices.py: each persisted notice becomes the Kubernetes Event and the NATS lifecycle event
that ``rebeam run`` would publish for it."""

from __future__ import annotations

from typing import Any

import pytest

from rebeam.exits import KILLED, SHUTDOWN, ExitReason, crash
from rebeam.pids import Pid
from rebeam_operator import notices

Json = dict[str, Any]


class FakeTeller:
    """The two acts notices.send takes (notices.Teller): it records them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []
        self.emitted: list[tuple[str, str | None, int | None, Pid | None, ExitReason | None]] = []

    def emit(
        self,
        event: str,
        child: str | None,
        inc: int | None,
        pid: Pid | None,
        reason: ExitReason | None = None,
    ) -> None:
        self.emitted.append((event, child, inc, pid, reason))

    async def post_event(self, involved: Json, event_type: str, reason: str, message: str) -> None:
        assert involved == BODY
        self.events.append((event_type, reason, message))


BODY: Json = {"metadata": {"name": "app"}}


async def send(note: Json, gave_up: str | None = None) -> FakeTeller:
    told = FakeTeller()
    await notices.send(told, BODY, note, gave_up)
    return told


async def test_restarting_after_an_exit() -> None:
    note = {"event": "restarting", "child": "a", "children": ["a", "b"], "reason": "killed"}
    told = await send(note)
    assert told.events == [("Warning", "Restarting", "a exited (killed), restarting a, b")]
    assert told.emitted == [("restarting", "a", None, None, KILLED)]


async def test_restarting_a_failed_start() -> None:
    note = {"event": "restarting", "child": "a", "children": ["a"], "reason": None}
    told = await send(note)
    assert told.events == [
        ("Warning", "Restarting", "retrying the failed start of a: restarting a")
    ]
    assert told.emitted == [("restarting", "a", None, None, None)]


async def test_gave_up_uses_the_drivers_message() -> None:
    note = {"event": "gave_up", "child": "a", "reason": "killed"}
    told = await send(note, gave_up="a exited (killed); reached max")
    assert told.events == [("Warning", "GaveUp", "a exited (killed); reached max")]
    assert told.emitted == [("gave_up", "a", None, None, KILLED)]
    told = await send(note)
    assert told.events == [("Warning", "GaveUp", "a exited (killed); gave up")]


async def test_init_failed() -> None:
    reason = crash(exit_code=3)
    note = {"event": "init_failed", "child": "a", "reason": reason.to_wire()}
    told = await send(note)
    assert told.events == [
        (
            "Warning",
            "StartFailed",
            "a failed to start (crash (exit code 3)); the children already started were stopped",
        )
    ]
    assert told.emitted == []  # the child's own start_failed was published when observed


async def test_shutdown() -> None:
    told = await send({"event": "shutdown", "reason": "shutdown"})
    assert told.events == [("Normal", "Exited", "exited (shutdown)")]
    assert told.emitted == [("shutdown", None, None, None, SHUTDOWN)]


async def test_auto_shutdown() -> None:
    told = await send({"event": "auto_shutdown", "child": "job", "reason": "normal"})
    assert told.events == [
        ("Normal", "AutoShutdown", "significant child job exited (normal): shutting down")
    ]
    assert told.emitted == []  # rebeam run publishes only the shutdown that follows


async def test_an_unknown_notice_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A persisted notice of a kind this operator does not know (another version wrote it)
    must not fail every pass: it is logged and dropped, never silently."""
    told = await send({"event": "exploded", "reason": None})
    assert told.events == []
    assert told.emitted == []
    assert "unknown kind 'exploded'" in caplog.text
