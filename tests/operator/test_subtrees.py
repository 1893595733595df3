"""subtrees.py, its pure part: when a child supervisor's stop turns into a kill, from a real
core's outstanding StopChild and the moments the driver noted (and persisted)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest

from rebeam.exits import KILLED, SHUTDOWN
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import ChildExited, ChildStarted, ShutdownRequest, StopChild, Supervisor
from rebeam_operator import subtrees
from rebeam_operator.hosts import ANN_INCARNATION, ANN_KILL, Host, host_from_body
from rebeam_operator.record import Record
from tests.operator.bodies import SLEEP, supervisor_body

Json = dict[str, Any]


def mid(shutdown: str | None) -> Json:
    child: Json = {"name": "mid", "supervisor": {"children": [{"name": "w", "actor": SLEEP}]}}
    if shutdown is not None:
        child["shutdown"] = shutdown
    return child


@dataclass
class Tree:
    """What subtrees' pure functions look at of a driver: its host, core and record."""

    host: Host
    core: Supervisor
    record: Record


def driver_for(shutdown: str | None, annotations: dict[str, str] | None = None) -> Tree:
    """A driver's state with a core that has started a (actor) and mid (supervisor), running
    incarnation 1."""
    spec = {"children": [{"name": "a", "actor": SLEEP}, mid(shutdown)]}
    host = host_from_body(supervisor_body(spec, annotations=annotations))
    core = Supervisor(supervisor_flags(host.spec), child_specs(host.spec))
    core.init(0.0)
    core.handle(ChildStarted("a", 1), 0.0)
    core.handle(ChildStarted("mid", 1), 0.0)
    return Tree(host, core, Record(incarnation=1))


def stop_of(driver: Tree) -> StopChild:
    (stop,) = [c for c in driver.core.outstanding() if isinstance(c, StopChild)]
    assert isinstance(stop, StopChild)
    return stop


def test_a_timed_stop_is_noted_once_and_killed_at_its_deadline() -> None:
    driver = driver_for("2s")
    driver.core.handle(ShutdownRequest(SHUTDOWN), 10.0)  # reverse order: mid first
    stop = stop_of(driver)
    assert stop.child == "mid"
    assert subtrees.note_timed_stops(driver.record, driver.core, 10.0)
    assert driver.record.stops_asked == {"mid#1": 10.0}
    assert not subtrees.note_timed_stops(driver.record, driver.core, 11.0)  # the first ask counts
    assert driver.record.stops_asked == {"mid#1": 10.0}
    assert subtrees.deadline_of(driver.record, stop) == 12.0
    assert not subtrees.should_kill(driver.record, stop, 11.99)
    assert subtrees.should_kill(driver.record, stop, 12.0)


def test_brutal_kill_kills_at_once_and_notes_nothing() -> None:
    driver = driver_for("brutal_kill")
    driver.core.handle(ShutdownRequest(SHUTDOWN), 10.0)
    stop = stop_of(driver)
    assert not subtrees.note_timed_stops(driver.record, driver.core, 10.0)
    assert driver.record.stops_asked == {}
    assert subtrees.should_kill(driver.record, stop, 10.0)
    assert (
        subtrees.next_deadline(driver.record, driver.core) is None
    )  # nothing to wake for: it is killed now


@pytest.mark.parametrize("shutdown", ["infinity", None])  # None: a supervisor's default
def test_infinity_never_kills(shutdown: str | None) -> None:
    driver = driver_for(shutdown)
    driver.core.handle(ShutdownRequest(SHUTDOWN), 10.0)
    stop = stop_of(driver)
    assert not subtrees.note_timed_stops(driver.record, driver.core, 10.0)
    assert subtrees.deadline_of(driver.record, stop) is None
    assert not subtrees.should_kill(driver.record, stop, 1e12)


def test_a_timed_stop_not_yet_noted_is_not_killed() -> None:
    """After a restart of the operator the ask time comes from status; without one (never
    persisted) nothing is killed on a guess."""
    driver = driver_for("2s")
    driver.core.handle(ShutdownRequest(SHUTDOWN), 10.0)
    assert not subtrees.should_kill(driver.record, stop_of(driver), 1e12)


def test_next_deadline_is_ahead_only() -> None:
    driver = driver_for("30s")
    now = time.time()
    driver.core.handle(ShutdownRequest(SHUTDOWN), now)
    subtrees.note_timed_stops(driver.record, driver.core, now)
    assert subtrees.next_deadline(driver.record, driver.core) == pytest.approx(now + 30)
    driver.record.stops_asked["mid#1"] = now - 60  # passed: the kill is due, not a wake-up
    assert subtrees.next_deadline(driver.record, driver.core) is None


def test_actor_stops_are_not_supervisor_stops() -> None:
    driver = driver_for("2s")
    driver.core.handle(ShutdownRequest(SHUTDOWN), 10.0)
    driver.core.handle(ChildExited("mid", 1, KILLED), 11.0)  # next: stop a (an actor)
    assert stop_of(driver).child == "a"
    subtrees.prune(driver.record, driver.core)
    assert not subtrees.note_timed_stops(driver.record, driver.core, 11.0)
    assert driver.record.stops_asked == {}


def test_prune_keeps_only_stops_under_way() -> None:
    driver = driver_for("2s")
    driver.core.handle(ShutdownRequest(SHUTDOWN), 10.0)
    subtrees.note_timed_stops(driver.record, driver.core, 10.0)
    driver.record.stops_asked["gone#3"] = 1.0
    subtrees.prune(driver.record, driver.core)
    assert driver.record.stops_asked == {"mid#1": 10.0}
    driver.core.handle(ChildExited("mid", 1, SHUTDOWN), 11.0)
    subtrees.prune(driver.record, driver.core)
    assert driver.record.stops_asked == {}


def test_is_killed_compares_with_the_running_incarnation() -> None:
    driver = driver_for("2s", annotations={ANN_INCARNATION: "2", ANN_KILL: "2"})
    driver.record.incarnation = 2
    assert subtrees.is_killed(driver.record, driver.host)
    driver.record.incarnation = 3  # the parent asked for a new incarnation after the kill
    assert not subtrees.is_killed(driver.record, driver.host)
    driver.record.incarnation = 0  # not started: nothing to kill yet
    assert not subtrees.is_killed(driver.record, driver.host)


def test_drain_leaves_no_child_running() -> None:
    driver = driver_for("2s")
    core = driver.core
    subtrees.drain(core, 5.0)
    assert core.state.value == "terminated"
    assert all(i.status.value == "undefined" for i in core.which_children())
    assert core.incarnations == {"a": 1, "mid": 1}
    assert core.restart_history == ()  # a kill is no restart
    subtrees.drain(core, 6.0)  # idempotent


def test_drain_mid_restart_answers_the_start_it_waits_for() -> None:
    driver = driver_for("2s")
    core = driver.core
    core.handle(ChildExited("a", 1, KILLED), 5.0)  # one_for_one: a#2 is starting
    assert [type(c).__name__ for c in core.outstanding()] == ["StartChild"]
    subtrees.drain(core, 5.5)
    assert core.state.value == "terminated"
    assert all(i.status.value == "undefined" for i in core.which_children())
    assert not core.outstanding()
