"""Addresses: what ``send``, ``cast``, ``call``, ``monitor`` and ``link`` accept.

* a :class:`~rebeam.pids.Pid`;
* a ``str``: a name in the global registry (OTP's ``{global, Name}``);
* :class:`Name` ``(name, scope)``: a name in a local scope (unique on one node or one
  ``rebeam run``; OTP's plain registered names);
* :class:`Via` ``(registry, key)``: a unique key of a user registry (OTP's ``{via, Mod, Name}``
  with Elixir's Registry).
"""

from __future__ import annotations

from dataclasses import dataclass

from rebeam.pids import Pid

__all__ = ["Address", "Name", "Via"]


@dataclass(frozen=True, slots=True)
class Name:
    """A name in a local scope; ``scope=None`` means the node's own local scope."""

    name: str
    scope: str | None = None


@dataclass(frozen=True, slots=True)
class Via:
    """The process registered under ``key`` in the unique user registry ``registry``."""

    registry: str
    key: str


Address = Pid | str | Name | Via
