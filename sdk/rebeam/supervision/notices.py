"""What a supervisor's commands tell the people watching it: one mapping for every driver of
the core (``rebeam run`` and the Kubernetes operator), so both say the same thing of the same
decision.

A command that only asks for work (start, stop, reply, ready) tells nothing. The five that
tell something become a :class:`Notice`: a child being restarted, the supervisor giving up,
a child failing to start during init, the supervisor exiting, and a significant child
shutting the supervisor down. Each driver decides which of them it publishes and how; the
exit reason a notice implies (an init failure is ``{shutdown, {failed_to_start_child, ...}}``,
as OTP's ``start_link`` returns it) is decided here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from rebeam.exits import ExitReason, shutdown_with
from rebeam.supervision.messages import (
    AutoShutdownBy,
    ChildRestarting,
    Command,
    Exited,
    GaveUp,
    InitFailed,
)

__all__ = ["Notice", "NoticeKind", "notice_of", "notices"]

NoticeKind: TypeAlias = Literal["restarting", "gave_up", "init_failed", "shutdown", "auto_shutdown"]


@dataclass(frozen=True)
class Notice:
    kind: NoticeKind
    child: str | None = None
    reason: ExitReason | None = None  # what the child (or for shutdown, the supervisor) ended with
    children: tuple[str, ...] = ()  # restarting: the children restarted, in order
    exit_reason: ExitReason | None = None  # the supervisor's own exit, when the notice ends it

    def to_json(self) -> dict[str, object]:
        """The notice as JSON (an operator keeps it in status until it is sent)."""
        wire = self.reason.to_wire() if self.reason is not None else None
        if self.kind == "shutdown":
            return {"event": self.kind, "reason": wire}
        out: dict[str, object] = {"event": self.kind, "child": self.child}
        if self.kind == "restarting":
            out["children"] = list(self.children)
        out["reason"] = wire
        return out


def notice_of(command: Command) -> Notice | None:
    """The notice a command gives, or None for one that only asks for work."""
    if isinstance(command, ChildRestarting):
        return Notice("restarting", command.child, command.reason, children=command.children)
    if isinstance(command, GaveUp):
        return Notice("gave_up", command.child, command.reason)
    if isinstance(command, InitFailed):
        failure = shutdown_with(
            {"failed_to_start_child": command.child, "reason": command.reason.to_wire()}
        )
        return Notice("init_failed", command.child, command.reason, exit_reason=failure)
    if isinstance(command, Exited):
        return Notice("shutdown", None, command.reason, exit_reason=command.reason)
    if isinstance(command, AutoShutdownBy):
        return Notice("auto_shutdown", command.child, command.reason)
    return None


def notices(commands: Iterable[Command]) -> list[Notice]:
    """The notices of ``commands``, in their order."""
    return [n for n in map(notice_of, commands) if n is not None]
