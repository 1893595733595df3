"""Lifecycle events: what happened to which incarnation, on ``rebeam.<ns>.events.…``.

Whoever observes a process start or end publishes the event: the local supervisor, the
operator, a test launcher. Monitors and links are built on ``exited``: a node that monitors
or links a pid subscribes to ``rebeam.<ns>.events.exited.<slot>.<incarnation>``.

The order an observer must keep when a process ends (OTP's: names are released before the
exit and down signals are sent, so a restarted child can take its name back at once)::

    reason = exits.from_process_end(returncode, stop_requested=..., recorded=read_record(path))
    await release_names_of(nc, pid)
    await publish(nc, pid.namespace, LifecycleEvent.exited(pid, reason, ...))

Payloads are JSON (the same lines ``rebeam run --events FILE`` writes).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pydantic

from rebeam import _subjects
from rebeam._limits import MAX_JSON_BYTES, read_bounded
from rebeam._ratelog import RateLog
from rebeam._registry import release_names_of
from rebeam.exits import ExitReason
from rebeam.pids import Pid

__all__ = [
    "EventName",
    "LifecycleEvent",
    "publish",
    "read_exit_record",
    "release_names_of",
    "subject_for",
]

log = logging.getLogger("rebeam.events")
_ratelog = RateLog(log, "exit records")

EventName = Literal["started", "exited", "restarting", "start_failed", "gave_up", "shutdown"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LifecycleEvent(pydantic.BaseModel):
    """One lifecycle event. ``reason`` is the :class:`ExitReason` wire form."""

    event: EventName
    time: str = pydantic.Field(default_factory=_now)
    namespace: str = "default"
    supervisor: str | None = None
    child: str | None = None
    incarnation: int | None = None
    pid: str | None = None
    os_pid: int | None = None
    reason: Any = None

    @classmethod
    def exited(cls, pid: Pid, reason: ExitReason, **fields: Any) -> LifecycleEvent:
        return cls(
            event="exited",
            namespace=pid.namespace,
            incarnation=pid.incarnation,
            pid=str(pid),
            reason=reason.to_wire(),
            **fields,
        )

    @property
    def exit_reason(self) -> ExitReason | None:
        return None if self.reason is None else ExitReason.from_wire(self.reason)

    @property
    def pid_value(self) -> Pid | None:
        return None if self.pid is None else Pid.parse(self.pid)


def subject_for(namespace: str, event: LifecycleEvent) -> str:
    return _subjects.events(namespace, event.event, event.pid_value)


async def publish(nc: Any, namespace: str, event: LifecycleEvent) -> None:
    """Publish one event (Core NATS, at-most-once) and flush it to the server."""
    await nc.publish(subject_for(namespace, event), event.model_dump_json().encode())
    await nc.flush()


def read_exit_record(path: str | Path) -> ExitReason | None:
    """Read what a runtime recorded with ``--exit-record``; None if nothing usable is there
    (a SIGKILLed process writes nothing). The process wrote the file, so it is outside
    input: one that is too large, too deep or not an exit reason is logged (at a bounded
    rate) and taken as no record, and the exit code decides."""
    try:
        data = read_bounded(path, MAX_JSON_BYTES)
        if not data.strip():
            return None
        return ExitReason.from_json(data)
    except OSError:
        return None
    except ValueError as exc:  # TooLarge among them
        _ratelog.warning("ignored an unusable exit record", f"{path}: {exc}")
        return None
