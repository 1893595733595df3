"""Pids: the name of one incarnation of one process.

A pid is ``(namespace, slot, incarnation)``:

* ``namespace`` isolates applications sharing one NATS (a Kubernetes namespace, or the name a
  ``rebeam run`` was given);
* ``slot`` names the place the process lives in, unique forever: the backend supplies it. The
  local backend uses ``<run id>/<supervisor path>/<child>`` (the run id is new for every
  ``rebeam run`` invocation), the operator uses the ``Actor`` object's UID, and a program that
  called :func:`rebeam.connect` gets ``client-<random>``;
* ``incarnation`` counts the starts of that slot: 1, 2, 3, ... Each restart of a child is a new
  incarnation, hence a new pid, so pids are never reused.

On the wire and in NATS subjects a pid is three subject tokens, ``<namespace>.<slot>.<n>``
(see :attr:`Pid.tokens`); the slot is escaped so that it is one token made of
``[A-Za-z0-9_-]`` and ``=XX`` hex escapes only: safe in a NATS subject and in a JetStream KV
key. Mailboxes are ``rebeam.<namespace>.pid.<slot token>.<incarnation>``: a message to a
superseded incarnation can never reach its successor.

Example::

    pid = Pid.for_incarnation("shop", "run-1f3a/pipeline/writer", 2)
    str(pid)                  # 'shop.run-1f3a=2Fpipeline=2Fwriter.2'
    Pid.parse(str(pid)) == pid
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

__all__ = ["Pid", "escape_token", "unescape_token", "validate_namespace"]

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_NAMESPACE = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
_TOKEN = re.compile(r"^(?:[A-Za-z0-9_-]|=[0-9A-F]{2})+$")


def escape_token(text: str) -> str:
    """Escape any text into one NATS subject token that is also a valid KV key part.

    Safe characters stay; every other UTF-8 byte becomes ``=XX``. Reversible, and
    ``escape_token(a) == escape_token(b)`` only when ``a == b``.
    """
    if not text:
        raise ValueError("an empty string cannot be a subject token")
    if all(c in _SAFE for c in text):
        return text  # the common case, kept cheap
    out: list[str] = []
    for c in text:
        if c in _SAFE:
            out.append(c)
        else:
            out.extend(f"={b:02X}" for b in c.encode())
    return "".join(out)


def unescape_token(token: str) -> str:
    """The inverse of :func:`escape_token`; raises ValueError for a malformed token."""
    if not _TOKEN.fullmatch(token):  # '$' alone would let a final newline through
        raise ValueError(f"malformed token {token!r}")
    if "=" not in token:
        return token
    raw = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "=":
            raw.append(int(token[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(token[i].encode())
            i += 1
    return raw.decode()


def validate_namespace(namespace: str) -> str:
    """Namespaces are DNS-label-like (as Kubernetes namespaces are), so they are subject
    tokens and bucket-name parts as they are."""
    if not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            f"invalid namespace {namespace!r}: use lowercase letters, digits, '-' and '_' "
            "(at most 63, starting and ending with a letter or digit)"
        )
    return namespace


@dataclass(frozen=True, slots=True)
class Pid:
    """One incarnation of one process. Hashable, comparable with ``==``; build it with
    :meth:`for_incarnation`, :meth:`for_client` or :meth:`parse`."""

    namespace: str
    slot: str
    incarnation: int
    # The string form, computed once: pids are hashed and printed on every message sent.
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_namespace(self.namespace)
        if not self.slot:
            raise ValueError("a pid needs a slot")
        if self.incarnation < 1:
            raise ValueError(f"incarnations count from 1, got {self.incarnation}")
        text = f"{self.namespace}.{escape_token(self.slot)}.{self.incarnation}"
        object.__setattr__(self, "_text", text)

    def __hash__(self) -> int:
        return hash(self._text)  # a str caches its hash; the generated tuple hash does not

    @classmethod
    def for_incarnation(cls, namespace: str, slot: str, incarnation: int) -> Pid:
        """The pid of the ``incarnation``-th start of ``slot``: what a backend calls."""
        return cls(namespace, slot, int(incarnation))

    @classmethod
    def for_client(cls, namespace: str) -> Pid:
        """A fresh pid for a program that is not a supervised child (``rebeam.connect``)."""
        return cls(namespace, f"client-{secrets.token_hex(8)}", 1)

    @classmethod
    def parse(cls, text: str) -> Pid:
        """Parse the string form ``<namespace>.<slot token>.<incarnation>``."""
        parts = text.split(".")
        if len(parts) != 3 or not parts[2].isdigit():
            raise ValueError(f"malformed pid {text!r}: expected <namespace>.<slot>.<incarnation>")
        return cls(parts[0], unescape_token(parts[1]), int(parts[2]))

    @property
    def slot_token(self) -> str:
        return self._text.split(".")[1]

    @property
    def tokens(self) -> str:
        """``<slot token>.<incarnation>``: the pid's part of subjects and KV keys."""
        return self._text.split(".", 1)[1]

    def supersedes(self, other: Pid) -> bool:
        """Whether this is a later incarnation of the same slot as ``other``."""
        return (
            self.namespace == other.namespace
            and self.slot == other.slot
            and self.incarnation > other.incarnation
        )

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"<Pid {self}>"
