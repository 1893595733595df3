"""The messages rebeam itself puts in a mailbox, and the handles it gives back.

``Down`` and ``Exit`` arrive through ``handle_info`` (or ``node.receive()`` in a client), the
way OTP delivers ``{'DOWN', Ref, process, Pid, Reason}`` and ``{'EXIT', Pid, Reason}``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from rebeam.exits import ExitReason
from rebeam.pids import Pid

__all__ = ["Down", "Exit", "From", "MonitorRef"]

_refs = itertools.count(1)


@dataclass(frozen=True, slots=True)
class MonitorRef:
    """What :func:`rebeam.monitor` returns; pass it to :func:`rebeam.demonitor`."""

    id: int = field(default_factory=lambda: next(_refs))


@dataclass(frozen=True, slots=True)
class Down:
    """A monitored process ended (or never existed: reason ``noproc``)."""

    ref: MonitorRef
    pid: Pid | None
    reason: ExitReason
    name: str | None = None  # set when the monitor was taken on a name


@dataclass(frozen=True, slots=True)
class Exit:
    """A linked process ended, delivered as a message because this process traps exits."""

    pid: Pid
    reason: ExitReason


@dataclass(frozen=True, slots=True)
class From:
    """Who is waiting for a call's reply: pass it to ``Actor.reply`` for a deferred reply."""

    sender: str | None  # the caller's pid, as the envelope carried it
    reply_to: str

    @property
    def pid(self) -> Pid | None:
        """The caller's pid (parsed on demand: most calls never ask)."""
        try:
            return Pid.parse(self.sender) if self.sender else None
        except ValueError:
            return None
