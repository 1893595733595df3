"""Every error rebeam raises, in one hierarchy.

::

    RebeamError
    ├── NotConnected             no node: call rebeam.connect() or run inside an actor
    ├── CodecError               a value cannot be encoded, or bytes cannot be decoded
    │   └── MessageTooLarge      the encoded message exceeds the size limit (at the sender)
    ├── CallError                a call (or a send to a name) did not get an answer
    │   ├── CallTimeout          no reply within the timeout (also a TimeoutError); the
    │   │                        callee may still have handled the request
    │   ├── NoProc               nobody holds the destination: dead pid, unregistered name
    │   ├── CallingSelf          a process called itself (it would deadlock)
    │   ├── Refused              the callee refused the message, without dying: malformed,
    │   │   │                    addressed to a superseded incarnation, a client node
    │   │   └── MailboxFull      the receiver's mailbox is at its limit (messages or bytes):
    │   │                        a call fails at once; a cast or send that asked to wait
    │   │                        for room raises it when its deadline passed
    │   └── CalleeExited         the callee ended during the call; ``.reason`` says why
    │       └── RemoteError      ... because handle_call raised: ``.exception_type``,
    │                            ``.message``, ``.traceback`` of the remote exception
    ├── RegistryError            the registry refused an operation
    │   ├── AlreadyRegistered    the name or unique key is held: ``.owner`` is its pid
    │   ├── NotRegistered        unregister of a name this process does not hold
    │   └── RegistryMismatch     a registry opened with different key semantics
    ├── NotPermitted             the server refused what this process has no right to do
    │                            (docs/security.md): a name its manifest does not declare
    ├── TlsError                 no trusted TLS connection to NATS: the server's certificate
    │                            is not signed by the CA given, or names another host; a
    │                            tls:// server that speaks no TLS; an unusable CA file (also a
    │                            ConnectionError)
    └── SupervisorError          start_child, terminate_child, ... did not succeed
        ├── NoSupervisor         nothing (no rebeam run, no operator) serves the namespace
        └── SupervisorRefused    the supervisor said no: max_children, no such child, ...

A ``call`` raises only :class:`CallError` subclasses (and :class:`CodecError` for a message
it cannot encode), so ``except rebeam.CallError`` catches every way a call can fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rebeam.exits import ExitReason

if TYPE_CHECKING:
    from rebeam.pids import Pid

__all__ = [
    "AlreadyRegistered",
    "CallError",
    "CallTimeout",
    "CalleeExited",
    "CallingSelf",
    "CodecError",
    "MailboxFull",
    "MessageTooLarge",
    "NoProc",
    "NoSupervisor",
    "NotConnected",
    "NotPermitted",
    "NotRegistered",
    "RebeamError",
    "Refused",
    "RegistryError",
    "RegistryMismatch",
    "RemoteError",
    "SupervisorError",
    "SupervisorRefused",
    "TlsError",
]


class RebeamError(Exception):
    """The root of every rebeam error."""


class NotConnected(RebeamError):
    """There is no current node: use ``async with rebeam.connect(url)`` or run in an actor."""


class CodecError(RebeamError):
    """A value cannot be encoded (an unregistered type), or bytes are not a valid message."""


class MessageTooLarge(CodecError):
    """The encoded message is larger than the limit; refused before it was sent."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class CallError(RebeamError):
    """A call did not get a reply. Subclasses say why."""


class CallTimeout(CallError, TimeoutError):
    """No reply within the timeout. The callee may still handle the request; a late reply is
    dropped, never delivered anywhere."""


class NoProc(CallError):
    """Nobody holds the destination: the pid is dead or the name is not registered."""


class CallingSelf(CallError):
    """A process called itself; in OTP this is ``calling_self``."""


class Refused(CallError):
    """The callee refused the message and keeps running."""


class MailboxFull(Refused):
    """The receiver's mailbox is full (its message or byte limit): the message was refused and
    will never be delivered. Nothing was handled; retrying later is safe."""


class CalleeExited(CallError):
    """The callee ended before it replied. ``reason`` is its real exit reason."""

    def __init__(self, reason: ExitReason, pid: Pid | None = None) -> None:
        super().__init__(f"the callee {pid or ''} exited: {reason}".replace("  ", " "))
        self.reason = reason
        self.pid = pid


class RemoteError(CalleeExited):
    """``handle_call`` raised: the callee crashed (let it crash) and this carries the remote
    exception's type, message and short traceback."""

    def __init__(self, reason: ExitReason, pid: Pid | None = None) -> None:
        super().__init__(reason, pid)
        details = reason.details
        self.exception_type: str = (details.exception_type if details else None) or "Exception"
        self.message: str = (details.message if details else None) or ""
        self.traceback: str | None = details.traceback if details else None
        self.args = (f"{self.exception_type}: {self.message} (raised in {pid or 'the callee'})",)


class RegistryError(RebeamError):
    """The registry refused an operation."""


class AlreadyRegistered(RegistryError):
    """The name (or unique key) is held by another process, or this one already holds it."""

    def __init__(self, name: str, owner: Pid | None) -> None:
        super().__init__(f"{name!r} is already registered to {owner}")
        self.name = name
        self.owner = owner


class NotRegistered(RegistryError):
    """The name is not registered to this process."""


class RegistryMismatch(RegistryError):
    """A user registry exists with other key semantics (unique versus duplicate)."""


class NotPermitted(RebeamError):
    """NATS refused an operation this process's credential does not allow, such as
    registering a name its manifest does not declare (docs/security.md, "Who may say what")."""


class TlsError(RebeamError, ConnectionError):
    """No trusted TLS connection to NATS could be made (docs/security.md, "TLS"): the message
    names the URL, what went wrong and which CA was used."""


class SupervisorError(RebeamError):
    """A management request (start_child, terminate_child, ...) did not succeed."""


class NoSupervisor(SupervisorError):
    """Nothing answers management requests for the namespace."""


class SupervisorRefused(SupervisorError):
    """The supervisor said no (max_children reached, no such child, ...): ``code`` is the
    management protocol's error code (``max_children``, ``not_found``, ...; docs/sdk.md,
    "Management errors"), ``sentence`` what it means, in the backend's words."""

    def __init__(self, message: str, code: str = "refused", sentence: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.sentence = sentence or message
