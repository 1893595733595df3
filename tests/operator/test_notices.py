"""notices.py: each persisted notice becomes the Kubernetes Event and the NATS lifecycle event
that ``rebeam run`` would publish for it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from rebeam.exits import KILLED, SHUTDOWN, crash
from rebeam_operator import notices

Json = dict[str, Any]


class FakeKube:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    async def post_event(self, involved: Json, event_type: str, reason: str, message: str) -> None:
        assert involved == {"metadata": {"name": "app"}}
        self.events.append((event_type, reason, message))


class FakeDriver:
    """The two things notices.send uses of a driver: its world's kube and _emit."""

    def __init__(self, gave_up: str | None = None) -> None:
        self.kube = FakeKube()
        self.world = SimpleNamespace(kube=self.kube)
        self.body: Json = {"metadata": {"name": "app"}}
        self.gave_up = gave_up
        self.emitted: list[tuple[Any, ...]] = []

    def _emit(self, event: str, child: Any, inc: Any, pid: Any, reason: Any = None) -> None:
        self.emitted.append((event, child, inc, pid, reason))


async def send(note: Json, driver: FakeDriver | None = None) -> FakeDriver:
    driver = driver or FakeDriver()
    await notices.send(driver, note)  # type: ignore[arg-type]
    return driver


async def test_restarting_after_an_exit() -> None:
    note = {"event": "restarting", "child": "a", "children": ["a", "b"], "reason": "killed"}
    driver = await send(note)
    assert driver.kube.events == [("Warning", "Restarting", "a exited (killed), restarting a, b")]
    assert driver.emitted == [("restarting", "a", None, None, KILLED)]


async def test_restarting_a_failed_start() -> None:
    note = {"event": "restarting", "child": "a", "children": ["a"], "reason": None}
    driver = await send(note)
    assert driver.kube.events == [
        ("Warning", "Restarting", "retrying the failed start of a: restarting a")
    ]
    assert driver.emitted == [("restarting", "a", None, None, None)]


async def test_gave_up_uses_the_drivers_message() -> None:
    note = {"event": "gave_up", "child": "a", "reason": "killed"}
    driver = await send(note, FakeDriver(gave_up="a exited (killed); reached max"))
    assert driver.kube.events == [("Warning", "GaveUp", "a exited (killed); reached max")]
    assert driver.emitted == [("gave_up", "a", None, None, KILLED)]
    driver = await send(note)
    assert driver.kube.events == [("Warning", "GaveUp", "a exited (killed); gave up")]


async def test_init_failed() -> None:
    reason = crash(exit_code=3)
    note = {"event": "init_failed", "child": "a", "reason": reason.to_wire()}
    driver = await send(note)
    assert driver.kube.events == [
        (
            "Warning",
            "StartFailed",
            "a failed to start (crash (exit code 3)); the children already started were stopped",
        )
    ]
    assert driver.emitted == []  # the child's own start_failed was published when observed


async def test_shutdown() -> None:
    driver = await send({"event": "shutdown", "reason": "shutdown"})
    assert driver.kube.events == [("Normal", "Exited", "exited (shutdown)")]
    assert driver.emitted == [("shutdown", None, None, None, SHUTDOWN)]


async def test_auto_shutdown() -> None:
    driver = await send({"event": "auto_shutdown", "child": "job", "reason": "normal"})
    assert driver.kube.events == [
        ("Normal", "AutoShutdown", "significant child job exited (normal): shutting down")
    ]
    assert driver.emitted == []  # rebeam run publishes only the shutdown that follows


async def test_an_unknown_notice_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    """A persisted notice of a kind this operator does not know (another version wrote it)
    must not fail every pass: it is logged and dropped, never silently."""
    driver = await send({"event": "exploded", "reason": None})
    assert driver.kube.events == []
    assert driver.emitted == []
    assert "unknown kind 'exploded'" in caplog.text
