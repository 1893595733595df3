"""Invariants of the supervision core over random event sequences (hypothesis).

A simulated backend holds the "processes": it answers start and stop commands late and in
any order the draw chooses, kills random children with random reasons, lets time pass, and
sends management requests. After every step it checks what users rely on:

* restarts inside any window never exceed the intensity before the supervisor gives up;
* children are stopped in reverse start order;
* no child is started while an incarnation of it is alive (never two live incarnations);
* temporary children are never restarted;
* a supervisor that terminated has no running children;
* every management request is answered exactly once;
* a twin restored from a JSON snapshot at random moments says exactly what the original says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rebeam.exits import KILLED, NORMAL, SHUTDOWN, ExitReason, crash, shutdown_with
from rebeam.supervision import (
    BRUTAL_KILL,
    AutoShutdown,
    ChildExited,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    Command,
    DeleteChildRequest,
    Event,
    Exited,
    GaveUp,
    InitFailed,
    Reply,
    RestartChildRequest,
    RestartType,
    ShutdownRequest,
    StartChild,
    StartChildRequest,
    StartFailed,
    StartIgnored,
    StopChild,
    Strategy,
    Supervisor,
    SupervisorFlags,
    SupervisorState,
    TerminateChildRequest,
)

REASONS: list[ExitReason] = [
    NORMAL,
    SHUTDOWN,
    shutdown_with("x"),
    KILLED,
    crash(exit_code=1),
]


@dataclass
class Sim:
    """The processes behind a supervisor, and the invariants over what it commands."""

    sup: Supervisor
    specs: dict[str, ChildSpec]
    flags: SupervisorFlags
    now: float = 0.0
    alive: dict[str, int] = field(default_factory=dict)  # child -> live incarnation
    outstanding: list[StartChild | StopChild] = field(default_factory=list)
    restart_times: list[float] = field(default_factory=list)
    start_order: list[str] = field(default_factory=list)
    ever_started: set[str] = field(default_factory=set)
    requests: set[Any] = field(default_factory=set)
    replied: set[Any] = field(default_factory=set)
    last_command: Command | None = None
    stop_run: list[str] = field(default_factory=list)
    # A twin that is snapshotted and restored from JSON now and then: it must say exactly
    # what the original says, whatever state it was restored in.
    twin: Supervisor | None = None
    specs_in_order: list[ChildSpec] = field(default_factory=list)

    def feed(self, commands: list[Command]) -> None:
        for command in commands:
            self.check(command)
            self.last_command = command

    def send(self, event: Event) -> None:
        commands = self.sup.handle(event, self.now)
        if self.twin is not None:
            assert self.twin.handle(event, self.now) == commands, "restored twin diverged"
        self.feed(commands)

    def restore_twin(self) -> None:
        assert self.twin is not None
        snapshot = json.loads(json.dumps(self.twin.snapshot()))
        self.twin = Supervisor.restore(self.flags, self.specs_in_order, snapshot)
        assert self.twin.outstanding() == self.sup.outstanding()
        assert self.twin.which_children() == self.sup.which_children()

    def check(self, command: Command) -> None:
        if isinstance(command, StartChild):
            child = command.child
            assert child not in self.alive, f"{child} started while {self.alive[child]} lives"
            spec = self.specs.get(child)
            if spec is not None and spec.restart is RestartType.TEMPORARY:
                assert child not in self.ever_started, f"temporary {child} restarted"
            self.ever_started.add(child)
            if child not in self.start_order:
                self.start_order.append(child)
            self.outstanding.append(command)
        if isinstance(command, StopChild):
            assert self.alive.get(command.child) == command.incarnation, "stop of a dead child"
            if self.flags.strategy is not Strategy.SIMPLE_ONE_FOR_ONE:
                if not isinstance(self.last_command, StopChild):
                    self.stop_run = []
                self.stop_run.append(command.child)
                positions = [self.start_order.index(c) for c in self.stop_run]
                assert positions == sorted(positions, reverse=True), (
                    f"stop order {self.stop_run} is not reverse start order {self.start_order}"
                )
            self.outstanding.append(command)
        if isinstance(command, ChildRestarting):
            self.restart_times.append(self.now)
            in_window = [t for t in self.restart_times if self.now - t <= self.flags.period]
            assert len(in_window) <= self.flags.intensity, "more restarts than the intensity"
        if isinstance(command, GaveUp):
            in_window = [t for t in self.restart_times if self.now - t <= self.flags.period]
            assert len(in_window) + 1 > self.flags.intensity, "gave up below the intensity"
        if isinstance(command, Exited | InitFailed):
            assert not self.alive, f"terminated with children still running: {self.alive}"
        if isinstance(command, Reply):
            assert command.request_id in self.requests, "reply to an unknown request"
            assert command.request_id not in self.replied, "request answered twice"
            self.replied.add(command.request_id)

    def answer(self, data: st.DataObject) -> None:
        command = self.outstanding.pop(data.draw(st.integers(0, len(self.outstanding) - 1)))
        if isinstance(command, StartChild):
            outcome = data.draw(st.sampled_from(["ok", "ok", "ok", "fail", "ignore", "die"]))
            if outcome == "ok":
                self.alive[command.child] = command.incarnation
                self.send(ChildStarted(command.child, command.incarnation))
            elif outcome == "ignore":
                self.send(StartIgnored(command.child, command.incarnation))
            elif outcome == "fail":
                self.send(StartFailed(command.child, command.incarnation, crash(exit_code=2)))
            else:
                self.send(ChildExited(command.child, command.incarnation, crash(exit_code=3)))
        else:
            del self.alive[command.child]
            reason = KILLED if command.shutdown == BRUTAL_KILL else SHUTDOWN
            self.send(ChildExited(command.child, command.incarnation, reason))

    def kill(self, data: st.DataObject) -> None:
        child = data.draw(st.sampled_from(sorted(self.alive)))
        incarnation = self.alive.pop(child)
        # A process being stopped that dies by itself answers the stop with its own reason.
        self.outstanding = [
            c for c in self.outstanding if not (isinstance(c, StopChild) and c.child == child)
        ]
        self.send(ChildExited(child, incarnation, data.draw(st.sampled_from(REASONS))))


RESTARTS = st.sampled_from(list(RestartType))


@st.composite
def supervisors(draw: st.DrawFn) -> tuple[SupervisorFlags, list[ChildSpec]]:
    strategy = draw(st.sampled_from(list(Strategy)))
    simple = strategy is Strategy.SIMPLE_ONE_FOR_ONE
    auto = AutoShutdown.NEVER if simple else draw(st.sampled_from(list(AutoShutdown)))
    flags = SupervisorFlags(
        strategy=strategy,
        intensity=draw(st.integers(0, 4)),
        period=draw(st.sampled_from([1.0, 5.0])),
        auto_shutdown=auto,
        max_children=draw(st.none() | st.integers(0, 4)) if simple else None,
    )
    count = 1 if simple else draw(st.integers(1, 5))
    specs = []
    for i in range(count):
        restart = draw(RESTARTS)
        significant = (
            auto is not AutoShutdown.NEVER
            and restart is not RestartType.PERMANENT
            and draw(st.booleans())
        )
        shutdown = draw(st.sampled_from([BRUTAL_KILL, 1.0, None]))
        specs.append(ChildSpec(f"c{i}", restart, shutdown, significant=significant))
    return flags, specs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=supervisors(), data=st.data())
def test_invariants_hold_over_random_event_sequences(
    tree: tuple[SupervisorFlags, list[ChildSpec]], data: st.DataObject
) -> None:
    flags, specs = tree
    sim = Sim(Supervisor(flags, specs), {s.id: s for s in specs}, flags)
    sim.twin, sim.specs_in_order = Supervisor(flags, specs), specs
    initial = sim.sup.init(sim.now)
    assert sim.twin.init(sim.now) == initial
    sim.feed(initial)
    serial = 0
    for _ in range(data.draw(st.integers(5, 60))):
        if sim.sup.state is SupervisorState.TERMINATED:
            break
        if data.draw(st.integers(0, 3)) == 0:
            sim.restore_twin()
        actions = ["time", "request"]
        if sim.outstanding:
            actions += ["answer"] * 4
        if sim.alive:
            actions += ["kill"] * 2
        action = data.draw(st.sampled_from(actions))
        if action == "answer":
            sim.answer(data)
        elif action == "kill":
            sim.kill(data)
        elif action == "time":
            sim.now += data.draw(st.sampled_from([0.1, 0.5, 2.0, 6.0]))
        else:
            serial += 1
            request = _random_request(data, serial, flags, specs)
            if not isinstance(request, ShutdownRequest):
                sim.requests.add(serial)
            sim.send(request)
    # Let everything outstanding finish, then stop the supervisor: nothing may be left.
    while sim.sup.state is not SupervisorState.TERMINATED:
        if sim.outstanding:
            sim.answer(data)
        else:
            sim.send(ShutdownRequest(SHUTDOWN))
    assert not sim.alive
    assert sim.replied == sim.requests


def _random_request(
    data: st.DataObject, rid: int, flags: SupervisorFlags, specs: list[ChildSpec]
) -> Event:
    if data.draw(st.integers(0, 30)) == 0:
        return ShutdownRequest(SHUTDOWN)
    kind = data.draw(st.sampled_from(["start", "terminate", "restart", "delete"]))
    known = [s.id for s in specs] + [str(i) for i in range(1, 5)] + [f"new{rid - 1}"]
    child = data.draw(st.sampled_from(known))
    if kind == "start":
        if flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            return StartChildRequest(rid)
        return StartChildRequest(rid, ChildSpec(f"new{rid}", data.draw(RESTARTS)))
    if kind == "terminate":
        return TerminateChildRequest(rid, child)
    if kind == "restart":
        return RestartChildRequest(rid, child)
    return DeleteChildRequest(rid, child)
