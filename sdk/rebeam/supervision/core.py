"""The supervisor: OTP's ``supervisor.erl`` as a pure state machine.

Why was this child restarted? The answer is in this file, and only here: both the local
runtime (``rebeam run``) and the Kubernetes operator feed a :class:`Supervisor` the events
they observe and carry out the commands it returns. It does no I/O and reads no clock; the
caller passes ``now`` (seconds on a monotonic clock, or wall-clock seconds for a backend that
must survive its own restarts).

How it works. OTP's supervisor is one process that handles one message at a time and blocks
while it starts or stops children: a restart of three children under one_for_all stops them
one by one, waits for each, then starts them one by one, and only then looks at its mailbox
again. We keep that shape exactly, because OTP's guarantees follow from it:

* ``self._mailbox`` holds events that arrived while a plan was running, in arrival order.
* ``self._steps`` is the plan under way: a queue of small steps (start this child, stop that
  one, reply, exit). A start or stop step emits one command and then waits for the answer
  about *that incarnation*; every other event goes to the mailbox.
* When the plan is done, the next event is taken from the mailbox, and so on.

A child that dies on its own while it is waiting to be stopped by a group restart is not
restarted twice: when the stop step comes to it, its death is taken out of the mailbox and
counts as the stop (OTP's ``unlink_flush``). An event about an incarnation that is no longer
current is stale and ignored, so a death is handled exactly once.

The rules are cited next to the code that implements them by their heading in
docs/semantics.md, for example ``(docs/semantics.md, "Intensity")``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from rebeam.exits import SHUTDOWN, ExitReason
from rebeam.supervision.childspec import (
    ChildSpec,
    ChildType,
    RestartType,
    Strategy,
    SupervisorFlags,
    child_spec_problems,
    flags_problems,
)
from rebeam.supervision.dynamic import dynamic_child_id, dynamic_serial
from rebeam.supervision.intensity import RestartIntensity
from rebeam.supervision.messages import (
    AutoShutdownBy,
    ChildExited,
    ChildRef,
    ChildRestarting,
    ChildStarted,
    Command,
    DeleteChildRequest,
    Error,
    Event,
    Exited,
    GaveUp,
    InitFailed,
    Ok,
    Ready,
    ReplaceChildRequest,
    Reply,
    RestartChildRequest,
    ShutdownRequest,
    StartChild,
    StartChildRequest,
    StartFailed,
    StartIgnored,
    StopChild,
    TerminateChildRequest,
    TryAgain,
)
from rebeam.supervision.policy import should_restart, triggers_auto_shutdown
from rebeam.supervision.snapshots import (
    SNAPSHOT_VERSION,
    SnapshotError,
    StartCodec,
    command_from_json,
    command_to_json,
    event_from_json,
    event_to_json,
    spec_from_json,
    spec_to_json,
)

__all__ = [
    "ChildCounts",
    "ChildInfo",
    "ChildStatus",
    "Supervisor",
    "SupervisorSpecError",
    "SupervisorState",
    "combine_args",
]


class SupervisorSpecError(ValueError):
    """Flags or child specs that OTP would refuse at ``start_link``."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class ChildStatus(enum.StrEnum):
    RUNNING = "running"
    STARTING = "starting"  # a StartChild is out; not yet answered
    STOPPING = "stopping"  # a StopChild is out; not yet answered
    RESTARTING = "restarting"  # a restart's start failed; its retry is queued
    UNDEFINED = "undefined"  # no process: stopped, ignored, or a transient that ended cleanly


_ALIVE = (ChildStatus.RUNNING, ChildStatus.STARTING, ChildStatus.STOPPING)


class SupervisorState(enum.StrEnum):
    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    TERMINATED = "terminated"


@dataclass(frozen=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`."""

    id: str
    status: ChildStatus
    incarnation: int | None  # the live incarnation, if any
    type: ChildType
    restart: RestartType


@dataclass(frozen=True)
class ChildCounts:
    """:meth:`Supervisor.count_children`, as OTP's ``count_children``."""

    specs: int
    active: int
    supervisors: int
    workers: int


@dataclass
class _Child:
    spec: ChildSpec
    status: ChildStatus = ChildStatus.UNDEFINED
    incarnation: int = 0  # the current (or last) incarnation; 0 before the first start


# --- plan steps ------------------------------------------------------------------------


class _StartMode(enum.Enum):
    INIT = "init"  # initial start: the first failure aborts init
    RESTART = "restart"  # a restart: a failure becomes 'restarting' plus a retry
    START_REQUEST = "start_request"  # start_child: a failure discards the spec
    RESTART_REQUEST = "restart_request"  # restart_child: a failure leaves it undefined


@dataclass(frozen=True)
class _Start:
    child: str
    mode: _StartMode
    request_id: Any = None


@dataclass(frozen=True)
class _Stop:
    """Stop one child; ``remove`` drops its spec afterwards (temporary children)."""

    child: str
    remove: bool = False


@dataclass(frozen=True)
class _StopAll:
    """Stop children all at once (simple_one_for_one's parallel shutdown)."""

    children: tuple[str, ...]


@dataclass(frozen=True)
class _Swap:
    """Give a (stopped) child its new spec: the middle step of replace_child."""

    spec: ChildSpec


@dataclass(frozen=True)
class _Emit:
    command: Ready | Reply | InitFailed  # the only commands a plan emits as steps of its own


@dataclass(frozen=True)
class _Exit:
    """Terminate; ``reason`` None means no Exited command (init failed: InitFailed says it)."""

    reason: ExitReason | None


_Step: TypeAlias = _Start | _Stop | _StopAll | _Swap | _Emit | _Exit
_IDENTITY = StartCodec()
_StartAnswer: TypeAlias = ChildStarted | StartFailed | StartIgnored | ChildExited


def _step_to_json(step: _Step, codec: StartCodec) -> dict[str, Any]:
    if isinstance(step, _Start):
        return {
            "kind": "start",
            "child": step.child,
            "mode": step.mode.value,
            "id": step.request_id,
        }
    if isinstance(step, _Stop):
        return {"kind": "stop", "child": step.child, "remove": step.remove}
    if isinstance(step, _StopAll):
        return {"kind": "stop_all", "children": list(step.children)}
    if isinstance(step, _Swap):
        return {"kind": "swap", "spec": spec_to_json(step.spec, codec)}
    if isinstance(step, _Emit):
        assert isinstance(step.command, Ready | Reply | InitFailed)
        return {"kind": "emit", "command": command_to_json(step.command)}
    return {"kind": "exit", "reason": step.reason.to_wire() if step.reason else None}


def _step_from_json(data: dict[str, Any], codec: StartCodec) -> _Step:
    kind = data["kind"]
    if kind == "start":
        return _Start(data["child"], _StartMode(data["mode"]), data["id"])
    if kind == "stop":
        return _Stop(data["child"], data["remove"])
    if kind == "stop_all":
        return _StopAll(tuple(data["children"]))
    if kind == "swap":
        return _Swap(spec_from_json(data["spec"], codec))
    if kind == "emit":
        return _Emit(command_from_json(data["command"]))
    if kind == "exit":
        reason = data["reason"]
        return _Exit(ExitReason.from_wire(reason) if reason is not None else None)
    raise SnapshotError(f"unknown plan step {kind!r}")


def combine_args(template_args: Any, extra: Any) -> Any:
    """A simple_one_for_one child's arguments: the template's combined with start_child's.

    Lists are concatenated (Erlang appends ``ExtraArgs``: ``A ++ ExtraArgs``); mappings are
    merged, start_child's keys winning; either side may be absent.
    """
    if extra is None:
        return template_args
    if template_args is None:
        return extra
    if isinstance(template_args, list) and isinstance(extra, list):
        return [*template_args, *extra]
    if isinstance(template_args, dict) and isinstance(extra, dict):
        return {**template_args, **extra}
    raise TypeError(
        f"cannot combine the template's args ({type(template_args).__name__}) with "
        f"start_child's ({type(extra).__name__}): both must be lists or both mappings"
    )


class Supervisor:
    """One supervisor's state and decisions.

    Example — one_for_one, a crash, a restart::

        sup = Supervisor(SupervisorFlags(), [ChildSpec("a"), ChildSpec("b")])
        sup.init(now=0.0)                                  # [StartChild('a', 1, ...)]
        sup.handle(ChildStarted("a", 1), now=0.1)          # [StartChild('b', 1, ...)]
        sup.handle(ChildStarted("b", 1), now=0.2)          # [Ready()]
        sup.handle(ChildExited("a", 1, crash()), now=3.0)  # [ChildRestarting(...),
                                                           #  StartChild('a', 2, ...)]

    Args:
        flags: strategy, intensity, period, auto_shutdown, max_children.
        children: static children in start order; for simple_one_for_one, exactly one: the
            template every dynamic child is made from.
        restart_history: restart times kept by a backend across its own restarts.
        incarnations: the last incarnation number of each child, likewise, so that an
            incarnation number (and so a pid) is never used twice.
    """

    def __init__(
        self,
        flags: SupervisorFlags,
        children: Sequence[ChildSpec],
        *,
        restart_history: Iterable[float] = (),
        incarnations: dict[str, int] | None = None,
    ) -> None:
        problems = flags_problems(flags)
        for spec in children:
            problems += child_spec_problems(spec, flags)
        ids = [spec.id for spec in children]
        problems += [
            f"duplicate child name {i}" for i in sorted({i for i in ids if ids.count(i) > 1})
        ]
        self._simple = flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE
        if self._simple and len(children) != 1:
            problems.append(
                "simple_one_for_one needs exactly one child spec (the template), "
                f"got {len(children)}"
            )
        if problems:
            raise SupervisorSpecError(problems)

        self.flags = flags
        self._intensity = RestartIntensity(flags.intensity, flags.period, restart_history)
        self._template: ChildSpec | None = children[0] if self._simple else None
        self._children: dict[str, _Child] = {}
        self._order: list[str] = []  # start order; OTP keeps the reverse, same thing
        self._static_specs = {spec.id: spec for spec in children}
        self._static_ids = [spec.id for spec in children] if not self._simple else []
        if not self._simple:
            for spec in children:
                self._add(spec)
        self._incarnations: dict[str, int] = dict(incarnations or {})
        self._dynamic_serial = max(
            (s for i in self._incarnations if (s := self._serial_of(i)) is not None), default=0
        )
        self._mailbox: deque[Event] = deque()
        self._steps: deque[_Step] = deque()
        self._awaiting: _Start | _Stop | _StopAll | None = None
        self._stops_pending: set[tuple[str, int]] = set()
        self._out: list[Command] = []
        self._now = 0.0
        self.state = SupervisorState.NEW

    # --- the two entry points ------------------------------------------------------------

    def init(self, now: float) -> list[Command]:
        """Start the static children left to right, each after the previous one is up
        (docs/semantics.md, "Start order"). Ends with Ready, or with InitFailed after
        stopping what had started."""
        if self.state is not SupervisorState.NEW:
            raise RuntimeError(f"init() called on a supervisor that is {self.state}")
        self.state = SupervisorState.STARTING
        self._steps.extend(_Start(child, _StartMode.INIT) for child in self._order)
        self._steps.append(_Emit(Ready()))
        return self._run(now)

    def handle(self, event: Event, now: float) -> list[Command]:
        """Take one event; return what the backend must do now, in order."""
        if self.state is SupervisorState.TERMINATED:
            return []
        self._now = now
        if not self._answers_awaited(event):
            self._mailbox.append(event)
        return self._run(now)

    # --- queries (pure reads of the current state) ---------------------------------------

    def which_children(self) -> list[ChildInfo]:
        """Most recently started first for static supervisors (docs/semantics.md, "Start order")."""
        ids = self._order if self._simple else list(reversed(self._order))
        return [self._info(self._children[i]) for i in ids]

    def child(self, child_id: str) -> ChildInfo | None:
        c = self._children.get(child_id)
        return self._info(c) if c else None

    def count_children(self) -> ChildCounts:
        stored = list(self._children.values())
        if self._simple:
            assert self._template is not None
            active = sum(1 for c in stored if c.status is not ChildStatus.RESTARTING)
            is_sup = self._template.type is ChildType.SUPERVISOR
            return ChildCounts(
                specs=1,
                active=active,
                supervisors=len(stored) if is_sup else 0,
                workers=0 if is_sup else len(stored),
            )
        sups = sum(1 for c in stored if c.spec.type is ChildType.SUPERVISOR)
        return ChildCounts(
            specs=len(stored),
            active=sum(1 for c in stored if c.status is ChildStatus.RUNNING),
            supervisors=sups,
            workers=len(stored) - sups,
        )

    def child_spec(self, child_id: str) -> ChildSpec | None:
        """The spec a child runs under now (for a dynamic child: made from the template)."""
        c = self._children.get(child_id)
        return c.spec if c else None

    def change_flags(self, flags: SupervisorFlags) -> None:
        """New strategy, intensity, period, auto_shutdown or max_children, in force at once
        (OTP's ``code_change`` of a supervisor): the restart history is kept and judged by the
        new limits at the next restart. simple_one_for_one cannot be switched on or off on a
        running supervisor: its children are of another kind. Raises SupervisorSpecError."""
        problems = flags_problems(flags)
        simple = flags.strategy is Strategy.SIMPLE_ONE_FOR_ONE
        if simple != self._simple:
            problems.append(
                f"cannot change strategy from {self.flags.strategy} to {flags.strategy} on a "
                "running supervisor: simple_one_for_one children are of another kind"
            )
        for c in self._children.values():
            problems += child_spec_problems(c.spec, flags)
        if problems:
            raise SupervisorSpecError(problems)
        self.flags = flags
        self._intensity = RestartIntensity(flags.intensity, flags.period, self._intensity.history)

    def _serial_of(self, child_id: str) -> int | None:
        """The serial number of a dynamic child's id; None for any other id."""
        if self._template is None:
            return None
        return dynamic_serial(self._template.id, child_id)

    def change_template(self, template: ChildSpec) -> None:
        """simple_one_for_one: a new template for the children started from now on and for
        the restarts of the running ones (a dynamic child keeps only its arguments, as in
        OTP, where a restart calls the template's start function). Running children are
        not touched. Raises SupervisorSpecError."""
        if not self._simple:
            raise SupervisorSpecError(["only simple_one_for_one has a child template"])
        problems = child_spec_problems(template, self.flags)
        if problems:
            raise SupervisorSpecError(problems)
        self._template = template
        for c in self._children.values():
            c.spec = dataclasses.replace(template, id=c.spec.id, args=c.spec.args)

    @property
    def restart_history(self) -> tuple[float, ...]:
        return self._intensity.history

    @property
    def incarnations(self) -> dict[str, int]:
        return dict(self._incarnations)

    def restarts_in_window(self, now: float) -> int:
        return self._intensity.in_window(now)

    def outstanding(self) -> list[StartChild | StopChild]:
        """Commands issued and not answered yet. After :meth:`restore`, a backend issues
        them again (idempotently: the start or stop may have happened already)."""
        awaiting = self._awaiting
        if isinstance(awaiting, _Start):
            c = self._children[awaiting.child]
            return [StartChild(c.spec.id, c.incarnation, c.spec)]
        if isinstance(awaiting, _Stop):
            c = self._children[awaiting.child]
            return [StopChild(c.spec.id, c.incarnation, c.spec.shutdown_policy)]
        if isinstance(awaiting, _StopAll):
            return [
                StopChild(child, inc, self._children[child].spec.shutdown_policy)
                for child, inc in sorted(self._stops_pending)
            ]
        return []

    # --- persistence (see snapshots.py) --------------------------------------------------

    def snapshot(self, codec: StartCodec = _IDENTITY) -> dict[str, Any]:
        """Everything needed to carry on after the backend restarts, as JSON-like data."""
        static = set(self._static_ids)
        children = []
        for child_id in self._order:
            c = self._children[child_id]
            entry: dict[str, Any] = {"id": child_id, "status": c.status.value, "inc": c.incarnation}
            if self._simple:
                entry["args"] = c.spec.args  # made from the template
            elif child_id not in static or c.spec is not self._static_specs[child_id]:
                entry["spec"] = spec_to_json(c.spec, codec)  # added by start_child
            children.append(entry)
        return {
            "version": SNAPSHOT_VERSION,
            "state": self.state.value,
            "restart_history": list(self._intensity.history),
            "incarnations": dict(self._incarnations),
            "dynamic_serial": self._dynamic_serial,
            "children": children,
            "mailbox": [event_to_json(e, codec) for e in self._mailbox],
            "steps": [_step_to_json(s, codec) for s in self._steps],
            "awaiting": _step_to_json(self._awaiting, codec) if self._awaiting else None,
            "stops_pending": sorted([list(p) for p in self._stops_pending]),
        }

    @classmethod
    def restore(
        cls,
        flags: SupervisorFlags,
        children: Sequence[ChildSpec],
        snapshot: dict[str, Any],
        codec: StartCodec = _IDENTITY,
    ) -> Supervisor:
        """A supervisor in the state ``snapshot`` recorded. ``children`` are the same static
        specs it was constructed with (they come from the manifest, not the snapshot)."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise SnapshotError(f"cannot restore snapshot version {snapshot.get('version')!r}")
        sup = cls(
            flags,
            children,
            restart_history=snapshot["restart_history"],
            incarnations=snapshot["incarnations"],
        )
        sup.state = SupervisorState(snapshot["state"])
        sup._dynamic_serial = snapshot["dynamic_serial"]
        sup._children.clear()
        sup._order.clear()
        for entry in snapshot["children"]:
            if sup._simple:
                assert sup._template is not None
                spec = dataclasses.replace(sup._template, id=entry["id"], args=entry["args"])
            elif "spec" in entry:
                spec = spec_from_json(entry["spec"], codec)
            else:
                spec = sup._static_specs[entry["id"]]
            sup._add(spec)
            c = sup._children[spec.id]
            c.status, c.incarnation = ChildStatus(entry["status"]), entry["inc"]
        sup._mailbox.extend(event_from_json(e, codec) for e in snapshot["mailbox"])
        sup._steps.extend(_step_from_json(s, codec) for s in snapshot["steps"])
        awaiting = snapshot["awaiting"]
        sup._awaiting = _step_from_json(awaiting, codec) if awaiting else None  # type: ignore[assignment]
        sup._stops_pending = {(child, inc) for child, inc in snapshot["stops_pending"]}
        return sup

    @property
    def busy(self) -> bool:
        """True while a plan is under way (a restart, a shutdown, a request)."""
        return self._awaiting is not None or bool(self._steps)

    # --- the engine ----------------------------------------------------------------------

    def _run(self, now: float) -> list[Command]:
        self._now = now
        while self._awaiting is None and self.state is not SupervisorState.TERMINATED:
            if self._steps:
                self._execute(self._steps.popleft())
            elif self._mailbox:
                self._dispatch(self._mailbox.popleft())
            else:
                break
        out, self._out = self._out, []
        return out

    def _answers_awaited(self, event: Event) -> bool:
        """If ``event`` answers the step we are waiting on, complete it and say so."""
        awaiting = self._awaiting
        if isinstance(awaiting, _Start):
            c = self._children.get(awaiting.child)
            if c is None or not isinstance(
                event, ChildStarted | StartFailed | StartIgnored | ChildExited
            ):
                return False
            if (event.child, event.incarnation) != (awaiting.child, c.incarnation):
                return False
            self._awaiting = None
            self._start_answered(awaiting, c, event)
            return True
        if isinstance(awaiting, _Stop):
            c = self._children.get(awaiting.child)
            if c is None or not isinstance(event, ChildExited):
                return False
            if (event.child, event.incarnation) != (awaiting.child, c.incarnation):
                return False
            self._awaiting = None
            self._stopped(c, awaiting.remove)
            return True
        if isinstance(awaiting, _StopAll) and isinstance(event, ChildExited):
            key = (event.child, event.incarnation)
            if key not in self._stops_pending:
                return False
            self._stops_pending.discard(key)
            self._stopped(self._children[event.child], remove=True)
            if not self._stops_pending:
                self._awaiting = None
            return True
        return False

    def _execute(self, step: _Step) -> None:
        if isinstance(step, _Start):
            self._begin_start(step)
        elif isinstance(step, _Stop):
            c = self._children.get(step.child)
            if c is not None and self._begin_stop(c):
                self._awaiting = step
            elif c is not None:
                self._stopped(c, step.remove)
        elif isinstance(step, _StopAll):
            for child_id in step.children:
                child = self._children.get(child_id)
                if child is not None and self._begin_stop(child):
                    self._stops_pending.add((child_id, child.incarnation))
                elif child is not None:
                    self._stopped(child, remove=True)
            if self._stops_pending:
                self._awaiting = step
        elif isinstance(step, _Swap):
            c = self._children.get(step.spec.id)
            if c is not None:
                c.spec = step.spec
        elif isinstance(step, _Emit):
            if isinstance(step.command, Ready):
                self.state = SupervisorState.RUNNING
            self._out.append(step.command)
        else:
            self._terminate(step.reason)

    def _begin_start(self, step: _Start) -> None:
        c = self._children[step.child]
        c.incarnation = self._incarnations[step.child] = self._incarnations.get(step.child, 0) + 1
        c.status = ChildStatus.STARTING
        self._out.append(StartChild(step.child, c.incarnation, c.spec))
        self._awaiting = step

    def _begin_stop(self, c: _Child) -> bool:
        """Ask the backend to stop a running child; False if there is nothing to stop."""
        if c.status is not ChildStatus.RUNNING or self._absorb_exit(c):
            return False
        c.status = ChildStatus.STOPPING
        self._out.append(StopChild(c.spec.id, c.incarnation, c.spec.shutdown_policy))
        return True

    def _absorb_exit(self, c: _Child) -> bool:
        """A child we are about to stop may already be dead, its exit still in the mailbox.
        Take that exit as the stop, so it is not handled again as a crash
        (docs/semantics.md, "Shutdown", "Deaths during a group restart")."""
        for event in self._mailbox:
            if (
                isinstance(event, ChildExited)
                and event.child == c.spec.id
                and event.incarnation == c.incarnation
            ):
                self._mailbox.remove(event)
                return True
        return False

    def _stopped(self, c: _Child, remove: bool) -> None:
        if remove or self._simple:
            self._remove(c.spec.id)
        else:
            c.status = ChildStatus.UNDEFINED

    def _terminate(self, reason: ExitReason | None) -> None:
        self.state = SupervisorState.TERMINATED
        self._steps.clear()
        if reason is not None:
            self._out.append(Exited(reason))
        # Requests still waiting would otherwise never be answered: OTP's callers get noproc.
        for event in self._mailbox:
            if isinstance(
                event,
                StartChildRequest
                | TerminateChildRequest
                | RestartChildRequest
                | DeleteChildRequest
                | ReplaceChildRequest,
            ):
                self._out.append(Reply(event.request_id, Error("noproc")))
        self._mailbox.clear()

    # --- answers to starts ---------------------------------------------------------------

    def _start_answered(
        self,
        step: _Start,
        c: _Child,
        event: ChildStarted | StartFailed | StartIgnored | ChildExited,
    ) -> None:
        if isinstance(event, ChildStarted):
            c.status = ChildStatus.RUNNING
            if step.mode in (_StartMode.START_REQUEST, _StartMode.RESTART_REQUEST):
                self._reply(step.request_id, Ok(ChildRef(c.spec.id, c.incarnation)))
        elif isinstance(event, StartIgnored):
            self._start_ignored(step, c)
        else:
            # A process that dies before it is up failed to start, whatever it says.
            self._start_failed(step, c, event.reason)

    def _start_ignored(self, step: _Start, c: _Child) -> None:
        """An *ignore*: a static child is kept with no pid; a temporary or dynamic one is
        dropped (docs/semantics.md, "Start failures at init", "Dynamic children")."""
        if self._simple or c.spec.restart is RestartType.TEMPORARY:
            if step.mode is not _StartMode.RESTART_REQUEST:
                self._remove(c.spec.id)
            else:
                c.status = ChildStatus.UNDEFINED
        else:
            c.status = ChildStatus.UNDEFINED
        if step.mode in (_StartMode.START_REQUEST, _StartMode.RESTART_REQUEST):
            self._reply(step.request_id, Ok(None))

    def _start_failed(self, step: _Start, c: _Child, reason: ExitReason) -> None:
        child_id = c.spec.id
        if step.mode is _StartMode.INIT:
            # (docs/semantics.md, "Start failures at init"): stop what started, in reverse,
            # start nothing more, fail.
            c.status = ChildStatus.UNDEFINED
            self._steps.clear()
            self._steps.extend(_Stop(i) for i in reversed(self._order) if i != child_id)
            self._steps.append(_Emit(InitFailed(child_id, reason)))
            self._steps.append(_Exit(None))
        elif step.mode is _StartMode.RESTART:
            # (docs/semantics.md, "Start failures during a restart"): the child is
            # 'restarting', the rest of the group waits (undefined), and a retry is queued
            # behind what is already in the mailbox.
            c.status = ChildStatus.RESTARTING
            self._steps = deque(s for s in self._steps if not isinstance(s, _Start))
            self._mailbox.append(TryAgain(child_id))
        elif step.mode is _StartMode.START_REQUEST:
            self._remove(child_id)  # start_child: the spec is discarded
            self._reply(step.request_id, Error(reason))
        else:
            c.status = ChildStatus.UNDEFINED
            self._reply(step.request_id, Error(reason))

    # --- events taken from the mailbox ---------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, ChildExited):
            c = self._children.get(event.child)
            if c and c.incarnation == event.incarnation and c.status is ChildStatus.RUNNING:
                self._child_exited(c, event.reason)
            # Otherwise stale: that incarnation was already handled or replaced.
        elif isinstance(event, TryAgain):
            c = self._children.get(event.child)
            # terminate_child may have set it undefined meanwhile; then nothing to retry.
            if c and c.status is ChildStatus.RESTARTING:
                self._restart(c, None)
        elif isinstance(event, StartChildRequest):
            self._request_start(event)
        elif isinstance(event, TerminateChildRequest):
            self._request_terminate(event)
        elif isinstance(event, RestartChildRequest):
            self._request_restart(event)
        elif isinstance(event, DeleteChildRequest):
            self._request_delete(event)
        elif isinstance(event, ReplaceChildRequest):
            self._request_replace(event)
        elif isinstance(event, ShutdownRequest):
            self._plan_exit(event.reason)
        # ChildStarted / StartFailed / StartIgnored nobody waits for: stale answers.

    def _child_exited(self, c: _Child, reason: ExitReason) -> None:
        """Restart by the table (docs/semantics.md, "Restart types"), else forget (temporary,
        dynamic) or keep undefined."""
        if should_restart(c.spec.restart, reason):
            self._restart(c, reason)
            return
        if self._simple or c.spec.restart is RestartType.TEMPORARY:
            self._remove(c.spec.id)
        else:
            c.status = ChildStatus.UNDEFINED
        if c.spec.significant:
            self._maybe_auto_shutdown(c.spec.id, reason)

    def _restart(self, c: _Child, reason: ExitReason | None) -> None:
        """One restart decision: counted once (docs/semantics.md, "Intensity"), then the
        strategy's plan (docs/semantics.md, "Strategies")."""
        child_id = c.spec.id
        if not self._intensity.add_restart(self._now):
            c.status = ChildStatus.UNDEFINED
            self._out.append(GaveUp(child_id, reason))
            self._plan_exit(SHUTDOWN)
            return
        strategy = self.flags.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            group = self._order
        elif strategy is Strategy.REST_FOR_ONE:
            group = self._order[self._order.index(child_id) :]
        else:
            group = [child_id]
        # Bystanders are stopped newest first; temporary ones are removed, not restarted.
        c.status = ChildStatus.UNDEFINED
        bystanders = [i for i in reversed(group) if i != child_id]
        to_start = [i for i in group if i == child_id or not self._is_temporary(i)]
        self._out.append(ChildRestarting(child_id, reason, tuple(to_start)))
        self._steps.extend(_Stop(i, remove=self._is_temporary(i)) for i in bystanders)
        self._steps.extend(_Start(i, _StartMode.RESTART) for i in to_start)

    def _maybe_auto_shutdown(self, child_id: str, reason: ExitReason) -> None:
        left = sum(
            1
            for c in self._children.values()
            if c.spec.significant and (c.status in _ALIVE or c.status is ChildStatus.RESTARTING)
        )
        if triggers_auto_shutdown(self.flags.auto_shutdown, significant_children_left=left):
            self._out.append(AutoShutdownBy(child_id, reason))
            self._plan_exit(SHUTDOWN)

    def _plan_exit(self, reason: ExitReason) -> None:
        """Stop every child — newest first, one at a time; all at once for
        simple_one_for_one — then exit (docs/semantics.md, "Order of stops")."""
        if self._simple:
            self._steps.append(_StopAll(tuple(self._order)))
        else:
            self._steps.extend(
                _Stop(i, remove=self._is_temporary(i)) for i in reversed(self._order)
            )
        self._steps.append(_Exit(reason))

    # --- the management API (docs/semantics.md, "Management API") ------------------------

    def _request_start(self, req: StartChildRequest) -> None:
        if self._simple:
            template = self._template
            assert template is not None
            limit = self.flags.max_children
            if limit is not None and len(self._children) >= limit:
                self._reply(req.request_id, Error("max_children"))
                return
            try:
                args = combine_args(template.args, req.args)
            except TypeError as exc:
                self._reply(req.request_id, Error(f"bad_args: {exc}"))
                return
            self._dynamic_serial += 1
            child_id = dynamic_child_id(template.id, self._dynamic_serial)
            spec = dataclasses.replace(template, id=child_id, args=args)
        else:
            if req.spec is None:
                self._reply(req.request_id, Error("missing child spec"))
                return
            spec = req.spec
            problems = child_spec_problems(spec, self.flags)
            if problems:
                self._reply(req.request_id, Error("invalid child spec: " + "; ".join(problems)))
                return
            existing = self._children.get(spec.id)
            if existing is not None:
                if existing.status in _ALIVE:
                    self._reply(req.request_id, Error(("already_started", existing.incarnation)))
                else:
                    self._reply(req.request_id, Error("already_present"))
                return
        self._add(spec)
        self._steps.append(_Start(spec.id, _StartMode.START_REQUEST, req.request_id))

    def _request_terminate(self, req: TerminateChildRequest) -> None:
        c = self._children.get(req.child)
        if c is None:
            # simple_one_for_one: a child that was ours and is gone is already terminated.
            serial = self._serial_of(req.child)
            known = serial is not None and serial <= self._dynamic_serial
            self._reply(req.request_id, Ok() if known else Error("not_found"))
            return
        remove = self._simple or self._is_temporary(req.child)
        if c.status is ChildStatus.RUNNING:
            # A stop step, never a restart or an auto-shutdown
            # (docs/semantics.md, "terminate_child").
            self._steps.append(_Stop(req.child, remove=remove))
            self._steps.append(_Emit(Reply(req.request_id, Ok())))
            return
        self._stopped(c, remove)  # restarting: the queued retry now finds nothing to do
        self._reply(req.request_id, Ok())

    def _request_restart(self, req: RestartChildRequest) -> None:
        error = self._not_undefined(req.child)
        if error:
            self._reply(req.request_id, Error(error))
            return
        self._steps.append(_Start(req.child, _StartMode.RESTART_REQUEST, req.request_id))

    def _request_delete(self, req: DeleteChildRequest) -> None:
        error = self._not_undefined(req.child)
        if error:
            self._reply(req.request_id, Error(error))
            return
        self._remove(req.child)
        self._reply(req.request_id, Ok())

    def _request_replace(self, req: ReplaceChildRequest) -> None:
        """terminate_child + restart_child under a new spec: a management action, so no
        restart is counted and the strategy is not applied (the other children are not
        touched). Stop before start: never two live incarnations of the child."""
        if self._simple:
            self._reply(req.request_id, Error("simple_one_for_one"))
            return
        c = self._children.get(req.spec.id)
        if c is None:
            self._reply(req.request_id, Error("not_found"))
            return
        problems = child_spec_problems(req.spec, self.flags)
        if problems:
            self._reply(req.request_id, Error("invalid child spec: " + "; ".join(problems)))
            return
        if c.status is not ChildStatus.RUNNING:
            # Nothing runs (stopped, or a restart's retry queued: it will use the new spec).
            c.spec = req.spec
            self._reply(req.request_id, Ok(None))
            return
        self._steps.append(_Stop(req.spec.id))
        self._steps.append(_Swap(req.spec))
        self._steps.append(_Start(req.spec.id, _StartMode.RESTART_REQUEST, req.request_id))

    def _not_undefined(self, child_id: str) -> str | None:
        """Why restart_child/delete_child cannot act on this child, if they cannot."""
        if self._simple:
            return "simple_one_for_one"
        c = self._children.get(child_id)
        if c is None:
            return "not_found"
        if c.status is ChildStatus.RESTARTING:
            return "restarting"
        if c.status is not ChildStatus.UNDEFINED:
            return "running"
        return None

    # --- small helpers -------------------------------------------------------------------

    def _add(self, spec: ChildSpec) -> None:
        self._children[spec.id] = _Child(spec)
        self._order.append(spec.id)

    def _remove(self, child_id: str) -> None:
        if self._children.pop(child_id, None) is not None:
            self._order.remove(child_id)

    def _is_temporary(self, child_id: str) -> bool:
        c = self._children.get(child_id)
        return c is not None and c.spec.restart is RestartType.TEMPORARY

    def _reply(self, request_id: Any, result: Ok | Error) -> None:
        self._out.append(Reply(request_id, result))

    @staticmethod
    def _info(c: _Child) -> ChildInfo:
        live = c.status in _ALIVE
        return ChildInfo(
            id=c.spec.id,
            status=c.status,
            incarnation=c.incarnation if live else None,
            type=c.spec.type,
            restart=c.spec.restart,
        )
