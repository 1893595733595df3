"""A simulated backend for the supervision core: no processes, no clock, no sleeping.

It plays the part of ``rebeam run`` or the operator: it answers StartChild with
ChildStarted (or with a scripted failure), StopChild with ChildExited, and records every
command as a short line of text so tests read like the OTP test suite::

    h = Harness(SupervisorFlags(strategy=Strategy.ONE_FOR_ALL), children("a", "b", "c"))
    h.init()
    h.crash("b")
    assert h.trace(since=mark) == ["restarting b: a b c", "stop c#1", "stop a#1",
                                   "start a#2", "start b#2", "start c#2"]
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from rebeam.exits import KILLED, SHUTDOWN, ExitReason, crash
from rebeam.supervision import (
    BRUTAL_KILL,
    AutoShutdownBy,
    ChildExited,
    ChildRestarting,
    ChildSpec,
    ChildStarted,
    ChildStatus,
    Command,
    Error,
    Event,
    Exited,
    GaveUp,
    InitFailed,
    Ok,
    Ready,
    Reply,
    StartChild,
    StartFailed,
    StartIgnored,
    StopChild,
    Supervisor,
    SupervisorFlags,
)

BOOM = crash(exception_type="RuntimeError", message="boom")
IGNORE = "ignore"


def children(*ids: str, **overrides: Any) -> list[ChildSpec]:
    return [ChildSpec(i, **overrides) for i in ids]


class Harness:
    def __init__(
        self, flags: SupervisorFlags, specs: list[ChildSpec], *, auto: bool = True
    ) -> None:
        self.sup = Supervisor(flags, specs)
        self.now = 0.0
        self.auto = auto
        self.lines: list[str] = []
        self.commands: list[Command] = []
        self.replies: dict[Any, Ok | Error] = {}
        # Scripted answers for the next starts of a child: an ExitReason (failure) or IGNORE.
        self.start_outcomes: dict[str, deque[ExitReason | str]] = defaultdict(deque)
        # Exit reason the simulated process reports when stopped (default: by its shutdown).
        self.stop_reasons: dict[str, ExitReason] = {}
        self.unanswered: list[StartChild | StopChild] = []
        self._queue: deque[Event] = deque()

    # --- driving -------------------------------------------------------------------------

    def init(self) -> list[str]:
        return self._pump(self.sup.init(self.now))

    def send(self, event: Event) -> list[str]:
        return self._pump(self.sup.handle(event, self.now))

    def crash(self, child: str, reason: ExitReason = BOOM) -> list[str]:
        inc = self.incarnation(child)
        assert inc is not None, f"{child} is not running"
        return self.send(ChildExited(child, inc, reason))

    def exit(self, child: str, reason: ExitReason) -> list[str]:
        return self.crash(child, reason)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def fail_next_start(self, child: str, reason: ExitReason = BOOM, times: int = 1) -> None:
        self.start_outcomes[child].extend([reason] * times)

    def ignore_next_start(self, child: str) -> None:
        self.start_outcomes[child].append(IGNORE)

    def answer(self, command: StartChild | StopChild, event: Event) -> list[str]:
        """In manual mode: answer one outstanding command with ``event``."""
        self.unanswered.remove(command)
        return self.send(event)

    # --- looking ---------------------------------------------------------------------------

    def incarnation(self, child: str) -> int | None:
        info = self.sup.child(child)
        return info.incarnation if info else None

    def status(self, child: str) -> ChildStatus | None:
        info = self.sup.child(child)
        return info.status if info else None

    def mark(self) -> int:
        return len(self.lines)

    def trace(self, since: int = 0) -> list[str]:
        return self.lines[since:]

    def started(self, since: int = 0) -> list[str]:
        return [line for line in self.lines[since:] if line.startswith("start ")]

    def stopped(self, since: int = 0) -> list[str]:
        return [line for line in self.lines[since:] if line.startswith("stop ")]

    @property
    def terminated_with(self) -> ExitReason | None:
        for command in reversed(self.commands):
            if isinstance(command, Exited):
                return command.reason
        return None

    # --- the simulated backend -----------------------------------------------------------

    def _pump(self, commands: list[Command]) -> list[str]:
        first = len(self.lines)
        self._record(commands)
        while self._queue:
            self._record(self.sup.handle(self._queue.popleft(), self.now))
        return self.lines[first:]

    def _record(self, commands: list[Command]) -> None:
        for command in commands:
            self.commands.append(command)
            self.lines.append(describe(command))
            if isinstance(command, Reply):
                self.replies[command.request_id] = command.result
            if isinstance(command, StartChild | StopChild):
                if self.auto:
                    self._queue.append(self._answer_for(command))
                else:
                    self.unanswered.append(command)

    def _answer_for(self, command: StartChild | StopChild) -> Event:
        if isinstance(command, StartChild):
            outcomes = self.start_outcomes[command.child]
            outcome = outcomes.popleft() if outcomes else None
            if outcome == IGNORE:
                return StartIgnored(command.child, command.incarnation)
            if isinstance(outcome, ExitReason):
                return StartFailed(command.child, command.incarnation, outcome)
            return ChildStarted(command.child, command.incarnation)
        reason = self.stop_reasons.get(command.child)
        if reason is None:
            reason = KILLED if command.shutdown == BRUTAL_KILL else SHUTDOWN
        return ChildExited(command.child, command.incarnation, reason)


def describe(command: Command) -> str:
    """One short line per command, for readable assertions."""
    if isinstance(command, StartChild):
        return f"start {command.child}#{command.incarnation}"
    if isinstance(command, StopChild):
        return f"stop {command.child}#{command.incarnation}"
    if isinstance(command, ChildRestarting):
        return f"restarting {command.child}: {' '.join(command.children)}"
    if isinstance(command, GaveUp):
        return f"gave_up {command.child}"
    if isinstance(command, AutoShutdownBy):
        return f"auto_shutdown {command.child}"
    if isinstance(command, Ready):
        return "ready"
    if isinstance(command, InitFailed):
        return f"init_failed {command.child}"
    if isinstance(command, Exited):
        return f"exit {command.reason}"
    if isinstance(command, Reply):
        result = command.result
        shown = f"ok {result.value}" if isinstance(result, Ok) else f"error {result.reason}"
        return f"reply {command.request_id}: {shown}"
    raise AssertionError(f"unknown command {command!r}")
