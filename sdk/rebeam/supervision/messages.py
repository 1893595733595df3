"""What goes into the supervision core and what comes out of it.

Events in — what a backend observed, or a request it received::

    ChildStarted / StartFailed / StartIgnored   the answer to a StartChild command
    ChildExited                                 an incarnation ended, with its real reason
    StartChildRequest, TerminateChildRequest,   the management API; each is answered
    RestartChildRequest, DeleteChildRequest     by exactly one Reply
    ShutdownRequest                             the parent asks this supervisor to stop

Commands out — what the backend must do, or may report::

    StartChild, StopChild                       start or stop one incarnation; the backend
                                                answers with the matching event
    Reply                                       the result of a management request
    Ready, InitFailed, Exited                   this supervisor's own lifecycle
    ChildRestarting, GaveUp, AutoShutdownBy     why something happened (events, logs, status)

Every event that concerns a child names the incarnation it is about. An event for an
incarnation that is no longer current is stale and ignored: that is how a death is handled
exactly once, whoever reports it and however late
(docs/semantics.md, "One death, one decision").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

from rebeam.exits import ExitReason
from rebeam.supervision.childspec import ChildSpec, Shutdown

__all__ = [
    "AutoShutdownBy",
    "ChildExited",
    "ChildRef",
    "ChildRestarting",
    "ChildStarted",
    "Command",
    "DeleteChildRequest",
    "Error",
    "Event",
    "Exited",
    "GaveUp",
    "InitFailed",
    "Ok",
    "Ready",
    "ReplaceChildRequest",
    "Reply",
    "RestartChildRequest",
    "ShutdownRequest",
    "StartChild",
    "StartChildRequest",
    "StartFailed",
    "StartIgnored",
    "StopChild",
    "TerminateChildRequest",
]


# --- events in -------------------------------------------------------------------------


@dataclass(frozen=True)
class _AboutIncarnation:
    """One incarnation of one child: what StartChild and StopChild command, and what every
    answer to them reports. A subclass that adds no field needs no decorator of its own: it
    inherits the generated methods, and a dataclass compares equal only to its own class."""

    child: str
    incarnation: int


class ChildStarted(_AboutIncarnation):
    """The incarnation runs."""


class StartIgnored(_AboutIncarnation):
    """The child's init chose not to run (OTP's ``ignore``)."""


@dataclass(frozen=True)
class _IncarnationEnded(_AboutIncarnation):
    reason: ExitReason


class StartFailed(_IncarnationEnded):
    """The incarnation did not start, for ``reason``."""


class ChildExited(_IncarnationEnded):
    """The incarnation ended, with its real reason."""


@dataclass(frozen=True)
class StartChildRequest:
    """``spec`` for a static supervisor; ``args`` (the extra arguments) for simple_one_for_one."""

    request_id: Any
    spec: ChildSpec | None = None
    args: Any = None


@dataclass(frozen=True)
class _ChildRequest:
    """A management request about one child, named by its id."""

    request_id: Any
    child: str


class TerminateChildRequest(_ChildRequest):
    """OTP's ``terminate_child``."""


class RestartChildRequest(_ChildRequest):
    """OTP's ``restart_child``."""


class DeleteChildRequest(_ChildRequest):
    """OTP's ``delete_child``."""


@dataclass(frozen=True)
class ReplaceChildRequest:
    """Give a static child a new spec (same id): a running incarnation is stopped with its
    old shutdown and started again under ``spec`` — OTP's ``terminate_child`` then
    ``restart_child`` with the new spec. A management action: never counted toward the
    restart intensity, and the strategy is not applied. A child that does not run (stopped,
    or waiting to retry a restart) just takes the new spec. Replies ``Ok(ChildRef)`` once
    restarted, ``Ok(None)`` when nothing ran, or ``Error``."""

    request_id: Any
    spec: ChildSpec


@dataclass(frozen=True)
class ShutdownRequest:
    """Stop every child in reverse start order, then exit with ``reason``."""

    reason: ExitReason


@dataclass(frozen=True)
class TryAgain:
    """Internal: retry a restart whose start failed (OTP's ``try_again_restart``). The core
    queues it behind whatever is already waiting, as OTP does with a message to itself."""

    child: str


Event: TypeAlias = (
    ChildStarted
    | StartFailed
    | StartIgnored
    | ChildExited
    | StartChildRequest
    | TerminateChildRequest
    | RestartChildRequest
    | DeleteChildRequest
    | ReplaceChildRequest
    | ShutdownRequest
    | TryAgain
)


# --- commands out ----------------------------------------------------------------------


@dataclass(frozen=True)
class StartChild(_AboutIncarnation):
    """Start incarnation ``incarnation`` of ``child``; answer with ChildStarted, StartFailed
    or StartIgnored for the same incarnation."""

    spec: ChildSpec


@dataclass(frozen=True)
class StopChild(_AboutIncarnation):
    """Stop this incarnation by ``shutdown`` (brutal_kill: SIGKILL at once; seconds: SIGTERM,
    then SIGKILL after that long; infinity: SIGTERM and wait). Answer with ChildExited."""

    shutdown: Shutdown


@dataclass(frozen=True)
class ChildRef:
    """What start_child and restart_child answer: the child and its new incarnation (OTP
    answers the pid; a backend makes the pid from these two)."""

    id: str
    incarnation: int

    def __str__(self) -> str:
        return f"{self.id}#{self.incarnation}"


@dataclass(frozen=True)
class Ok:
    value: Any = None


@dataclass(frozen=True)
class Error:
    """``reason`` is OTP's error term as a string ("not_found", "running", ...) or, for a
    child that failed to start, its ExitReason."""

    reason: Any


@dataclass(frozen=True)
class Reply:
    request_id: Any
    result: Ok | Error


@dataclass(frozen=True)
class Ready:
    """Init finished: every initial child was started (or ignored)."""


@dataclass(frozen=True)
class InitFailed:
    """A child failed to start during init; the ones already started have been stopped.
    OTP: ``{error, {shutdown, {failed_to_start_child, Id, Reason}}}``."""

    child: str
    reason: ExitReason


@dataclass(frozen=True)
class Exited:
    """This supervisor has stopped all its children and terminated with ``reason``."""

    reason: ExitReason


@dataclass(frozen=True)
class ChildRestarting:
    """``child`` exited with ``reason``; ``children`` are about to be restarted, in this order
    (one child for one_for_one; a group for one_for_all and rest_for_one)."""

    child: str
    reason: ExitReason | None  # None when retrying a failed restart
    children: tuple[str, ...]


@dataclass(frozen=True)
class GaveUp:
    """Restart intensity reached (OTP's ``reached_max_restart_intensity``): the supervisor
    stops all children and exits with reason shutdown — escalation to its parent."""

    child: str
    reason: ExitReason | None


@dataclass(frozen=True)
class AutoShutdownBy:
    """A significant child ended by itself and the supervisor shuts down
    (docs/semantics.md, "Significant children and auto_shutdown")."""

    child: str
    reason: ExitReason


Command: TypeAlias = (
    StartChild
    | StopChild
    | Reply
    | Ready
    | InitFailed
    | Exited
    | ChildRestarting
    | GaveUp
    | AutoShutdownBy
)
