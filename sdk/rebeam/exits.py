"""Exit reasons: one model for every backend.

An exit reason says why one incarnation of a child ended. It decides whether the child is
restarted (see :func:`rebeam.supervision.policy.should_restart`), it is what monitors and
links deliver, and it is what users read in events, ``rebeam tree`` and ``kubectl``.

OTP's reasons and ours::

    normal              exit code 0, or the actor returned ``stop``
    shutdown            stopped by its supervisor (SIGTERM, then grace)
    {shutdown, info}    the actor stopped itself with ``shutdown(info)``
    killed              SIGKILL, OOM-kill, brutal_kill
    crash               anything else: an exception (type, message, traceback),
                        a non-zero exit code, or a signal
    noconnection        the node or pod was lost; the process may still be alive
    noproc              (monitors and calls only) nothing was there to begin with

The mapping from how an OS process or a container really ended to one of these is written
once, here: :func:`from_process_end` and :func:`from_container_end`.

The wire form (events, status, messages) is JSON-like: a bare string for the reasons without
detail (``"normal"``, ``"shutdown"``, ``"killed"``, ``"noconnection"``, ``"noproc"``), and an
object otherwise: ``{"shutdown": info}`` or ``{"crash": {...details}}``.
"""

from __future__ import annotations

import enum
import signal as _signal
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from rebeam._limits import MAX_REASON_DEPTH, describe, exceeds_depth, loads_json
from rebeam.readiness import NOT_READY_EXCEPTION, WATCHDOG_EXCEPTION

JSONValue: TypeAlias = Any
"""A JSON-like value: None, bool, int, float, str, list, dict with str keys."""

__all__ = [
    "KILLED",
    "NOCONNECTION",
    "NOPROC",
    "NORMAL",
    "SHUTDOWN",
    "CrashDetails",
    "ExitKind",
    "ExitReason",
    "crash",
    "ended_before_ready",
    "from_container_end",
    "from_process_end",
    "not_ready_within",
    "shutdown_with",
    "wire_text",
]


class ExitKind(enum.StrEnum):
    NORMAL = "normal"
    SHUTDOWN = "shutdown"
    KILLED = "killed"
    CRASH = "crash"
    NOCONNECTION = "noconnection"
    NOPROC = "noproc"


@dataclass(frozen=True)
class CrashDetails:
    """What is known about an abnormal end. Every field is optional: a command child that
    exits 3 has only an exit code, an actor that raised has the exception."""

    exception_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    exit_code: int | None = None
    signal: str | None = None  # e.g. "SIGSEGV"

    def to_wire(self) -> dict[str, JSONValue]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @classmethod
    def from_wire(cls, data: dict[str, JSONValue]) -> CrashDetails:
        """Parse the wire form; raises ValueError naming the first field that is wrong."""
        known = cls.__dataclass_fields__
        for key, value in data.items():
            if key not in known:
                raise ValueError(f"unknown crash detail field {describe(key)}")
            # Each field is printed and compared later: only its documented type is accepted.
            wanted = int if key == "exit_code" else str
            if value is not None and (type(value) is not wanted):
                raise ValueError(f"crash detail {key} must be a {wanted.__name__} or null")
        return cls(**data)

    def summary(self) -> str:
        if self.exception_type:
            return f"{self.exception_type}: {self.message}" if self.message else self.exception_type
        if self.signal:
            return f"signal {self.signal}"
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return self.message or "crash"


@dataclass(frozen=True)
class ExitReason:
    """Why one incarnation ended. Build with the module constants or :func:`shutdown_with`
    and :func:`crash`; compare with ``==``."""

    kind: ExitKind
    info: JSONValue = None  # only for {shutdown, info}
    details: CrashDetails | None = field(default=None)

    @property
    def is_clean(self) -> bool:
        """``normal``, ``shutdown`` and ``{shutdown, _}``: the exits a transient child is not
        restarted for, and that are not logged as errors."""
        return self.kind in (ExitKind.NORMAL, ExitKind.SHUTDOWN)

    @property
    def is_normal(self) -> bool:
        """Only ``normal``: the one reason a non-trapping linked process ignores."""
        return self.kind is ExitKind.NORMAL

    def to_wire(self) -> JSONValue:
        if self.kind is ExitKind.SHUTDOWN and self.info is not None:
            return {"shutdown": self.info}
        if self.kind is ExitKind.CRASH:
            return {"crash": (self.details or CrashDetails()).to_wire()}
        return self.kind.value

    @classmethod
    def from_wire(cls, data: JSONValue) -> ExitReason:
        """Parse the wire form; raises ValueError naming what is wrong (and nothing else,
        whatever ``data`` is)."""
        if isinstance(data, str):
            try:
                kind = ExitKind(data)
            except ValueError:
                raise ValueError(f"unknown exit reason {describe(data)}") from None
            return cls(kind)
        if isinstance(data, dict) and len(data) == 1:
            ((key, value),) = data.items()
            if key == "shutdown":
                return shutdown_with(value)
            if key == "crash":
                if not isinstance(value, dict):
                    raise ValueError("crash details must be an object")
                return cls(ExitKind.CRASH, details=CrashDetails.from_wire(value))
        raise ValueError(f"malformed exit reason: {describe(data)}")

    @classmethod
    def from_json(cls, text: str | bytes) -> ExitReason:
        """Parse the wire form as JSON text (an exit record, a termination message);
        raises ValueError for anything else, too large (1 MiB) or too deep included."""
        return cls.from_wire(loads_json(text, what="an exit reason"))

    def __str__(self) -> str:
        if self.kind is ExitKind.SHUTDOWN and self.info is not None:
            return f"{{shutdown, {self.info!r}}}"
        if self.kind is ExitKind.CRASH:
            return f"crash ({(self.details or CrashDetails()).summary()})"
        return self.kind.value


def wire_text(wire: JSONValue) -> str:
    """An exit reason as it came over the wire, to show a person: its text, what arrived if
    it does not parse (shown as it is, not refused: a view must not hide it), "" if none."""
    if wire is None:
        return ""
    try:
        return str(ExitReason.from_wire(wire))
    except ValueError:
        return str(wire)


NORMAL = ExitReason(ExitKind.NORMAL)
SHUTDOWN = ExitReason(ExitKind.SHUTDOWN)
KILLED = ExitReason(ExitKind.KILLED)
NOCONNECTION = ExitReason(ExitKind.NOCONNECTION)
NOPROC = ExitReason(ExitKind.NOPROC)


def shutdown_with(info: JSONValue) -> ExitReason:
    """``{shutdown, info}``: a clean stop the actor asked for, with a note. ``info`` nests
    at most ``MAX_REASON_DEPTH`` lists and dicts deep (ValueError): every receiver of the
    reason refuses a deeper one, so it is refused where it is made."""
    if exceeds_depth(info, MAX_REASON_DEPTH):
        raise ValueError(f"shutdown info nests more than {MAX_REASON_DEPTH} levels")
    return ExitReason(ExitKind.SHUTDOWN, info=info)


def crash(**details: Any) -> ExitReason:
    """An abnormal exit; keyword arguments are :class:`CrashDetails` fields."""
    return ExitReason(ExitKind.CRASH, details=CrashDetails(**details))


def _signal_name(signum: int) -> str:
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def from_process_end(
    returncode: int,
    *,
    stop_requested: bool = False,
    recorded: ExitReason | None = None,
) -> ExitReason:
    """The exit reason of an OS process, from how it really ended.

    Args:
        returncode: as :mod:`subprocess` reports it: the exit code, or ``-N`` for signal N.
        stop_requested: whether its supervisor had asked it to stop (SIGTERM).
        recorded: what the rebeam runtime wrote down before exiting, if anything (the
            exception an actor raised, or the ``{shutdown, info}`` it stopped with).

    The rules, in order:

    * SIGKILL is ``killed``, whoever sent it: brutal_kill, a shutdown timeout, the OOM
      killer or ``kill -9`` all look the same and OTP calls them all ``killed``. The one
      exception is a readiness watchdog's kill, which records why (docs/readiness.md).
    * What the runtime recorded wins next: it knows the exception or the shutdown info.
    * SIGTERM is ``shutdown``, also when it came from outside: OTP treats an external
      ``exit(Pid, shutdown)`` as ``shutdown``, and a container runtime stopping a pod does
      exactly this. A process that exits 0 or 143 (a shell's SIGTERM) after its
      supervisor asked it to stop is ``shutdown`` as well.
    * Exit code 0 is ``normal``.
    * Anything else is a crash carrying the exit code or the signal name.

    A command started through the readiness entry that ended before it was ready left the
    entry's not-ready mark as its record: its reason by these rules is then worded as a failed
    start (:func:`ended_before_ready`).
    """
    if recorded is not None and _is_not_ready_mark(recorded):
        return ended_before_ready(from_process_end(returncode, stop_requested=stop_requested))
    if returncode == -_signal.SIGKILL:
        # A watchdog's kill says why it killed (rebeam.readiness): that is kept, unless the
        # supervisor was stopping it anyway.
        watchdog = recorded is not None and _is_watchdog(recorded) and not stop_requested
        return recorded if watchdog and recorded is not None else KILLED
    if recorded is not None:
        return recorded
    if returncode == -_signal.SIGTERM:
        return SHUTDOWN
    if stop_requested and returncode in (0, 128 + _signal.SIGTERM):
        return SHUTDOWN
    if returncode == 0:
        return NORMAL
    if returncode < 0:
        return crash(signal=_signal_name(-returncode))
    return crash(exit_code=returncode)


def ended_before_ready(reason: ExitReason) -> ExitReason:
    """How a command that ended with ``reason`` before it was ready failed its start, in
    words: ``NotReady: exited before it was ready (exit code 3)``. Exit code 0 is no start
    either. A kill or a stop stays what it is, and so does a crash that says why itself (the
    entry could not run the program)."""
    if reason.kind is ExitKind.NORMAL:
        reason = crash(exit_code=0)
    details = reason.details
    if reason.kind is not ExitKind.CRASH or details is None or details.exception_type:
        return reason
    return crash(
        exception_type=NOT_READY_EXCEPTION,
        message=f"exited before it was ready ({details.summary()})",
        exit_code=details.exit_code,
        signal=details.signal,
    )


def not_ready_within(seconds: float) -> ExitReason:
    """The failed start of a child that was not ready (an actor's init had not returned, a
    command's readiness had not passed) within its ``startTimeout``."""
    message = f"not ready within startTimeout {seconds:g}s"  # the field's name: what to change
    return crash(exception_type="StartTimeout", message=message)


def _is_not_ready_mark(recorded: ExitReason) -> bool:
    """The readiness entry's mark alone (docs/readiness.md, "How it works")."""
    return recorded.details == CrashDetails(exception_type=NOT_READY_EXCEPTION)


def _is_watchdog(recorded: ExitReason) -> bool:
    details = recorded.details
    return details is not None and details.exception_type == WATCHDOG_EXCEPTION


def from_container_end(
    exit_code: int,
    *,
    reason: str | None = None,
    signal: int | None = None,
    stop_requested: bool = False,
    recorded: ExitReason | None = None,
) -> ExitReason:
    """The exit reason of a container, from its terminated state in a pod's status.

    Kubernetes reports signals as ``exitCode`` 128+N (and sometimes ``signal``), and an
    OOM kill as reason ``OOMKilled``. Everything else follows :func:`from_process_end`.
    """
    if reason == "OOMKilled":
        return KILLED
    if signal:
        return from_process_end(-signal, stop_requested=stop_requested, recorded=recorded)
    if exit_code > 128 and exit_code - 128 in (_signal.SIGKILL, _signal.SIGTERM):
        return from_process_end(
            -(exit_code - 128), stop_requested=stop_requested, recorded=recorded
        )
    return from_process_end(exit_code, stop_requested=stop_requested, recorded=recorded)
