"""Processes of a run still alive after it ended, and what each one is.

A pid alone says nothing once the run is gone: the failure has to say which child (or
server, or helper) the process was, what it runs, where it hangs in the process table (its
parent, its group and session, whether it is stopped) and, on Kubernetes, which pod it was
a container of. All of it is read when the orphan is found, while it is still there."""

from __future__ import annotations

import time
from dataclasses import dataclass

from tests.soak import procs
from tests.soak.observer import Observer

STATES = {
    "R": "running",
    "S": "sleeping",
    "D": "in an uninterruptible wait",
    "T": "stopped (SIGSTOP)",
    "t": "stopped by a tracer",
    "Z": "a zombie",
    "I": "idle",
}
ARGV_SHOWN = 300  # characters of a command line in the report


@dataclass(frozen=True)
class Orphan:
    pid: int
    label: str  # what the observer calls it: a child's path, nats-server, zygote, other
    argv: list[str]
    state: str
    ppid: int | None
    parent: str  # what the parent is, as the observer tells it
    pgid: int | None
    sid: int | None
    where: str  # more the observer knows: on Kubernetes, the pod and whether it is the run's
    age: float | None  # seconds it had run when found: did it start before the run?

    def describe(self) -> str:
        group = "?" if self.pgid is None else str(self.pgid)
        if self.pgid == self.pid:
            group += " (its own)"
        command = " ".join(self.argv)
        if len(command) > ARGV_SHOWN:
            command = command[:ARGV_SHOWN] + "..."
        parts = [
            f"pid {self.pid} `{self.label}`: {STATES.get(self.state, self.state)}"
            + ("" if self.age is None else f", running for {self.age:.1f}s"),
            f"parent {self.ppid} ({self.parent})",
            f"group {group}, session {self.sid}",
            *([self.where] if self.where else []),
            f"argv: {command or '(none: gone or a kernel thread)'}",
        ]
        return "; ".join(parts)


def orphans_of(observer: Observer, timeout: float = 20.0) -> list[Orphan]:
    """Processes of the run still alive after it ended (waited for briefly: the kernel reaps
    a process group's members as their parent dies, not all at once), each described."""
    deadline = time.monotonic() + timeout
    while True:
        left = [
            p for p, born in observer.seen.items() if procs.alive(p) and procs.start_time(p) == born
        ]
        if not left or time.monotonic() > deadline:
            return [describe(observer, p) for p in left]
        time.sleep(0.05)


def describe(observer: Observer, os_pid: int) -> Orphan:
    stat = procs.stat(os_pid)
    ppid = stat.ppid if stat is not None else None
    return Orphan(
        pid=os_pid,
        label=observer.label(os_pid),
        argv=procs.command(os_pid) or observer.command(os_pid),
        state=stat.state if stat is not None else "gone",
        ppid=ppid,
        parent=observer.parent(ppid) if ppid is not None else "unknown",
        pgid=stat.pgid if stat is not None else None,
        sid=stat.sid if stat is not None else None,
        where=observer.where(os_pid),
        age=procs.age(os_pid),
    )
