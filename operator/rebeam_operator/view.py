"""What the rest of the operator may see of a driver: the management API (control.py,
tree.py, access.py) and the credential issuer (identity.py) read a driver through this view,
and hand it requests; they never reach into its state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from rebeam.pids import Pid
from rebeam.spec.models import Child
from rebeam.supervision import Error, Event, Ok, Supervisor
from rebeam_operator.hosts import Host

__all__ = ["DriverView"]

Json = dict[str, Any]


class DriverView(Protocol):
    @property
    def host(self) -> Host:
        """The object driven, as last read."""

    @property
    def core(self) -> Supervisor | None:
        """The supervision core, None before the first incarnation starts."""

    @property
    def starting(self) -> bool:
        """Its supervisor is in its init (a tree request waits for that to end)."""

    @property
    def child_exits(self) -> Mapping[str, Json]:
        """How each child last ended (status's ``childExits``)."""

    @property
    def pods(self) -> Mapping[str, Json]:
        """The driver's pods, by name, as the watch last showed them."""

    def pid(self, child: str, incarnation: int) -> Pid | None:
        """The pid of a child's incarnation, None while its slot is not known."""

    def child(self, child_id: str) -> Child | None:
        """The manifest child a core child runs now."""

    def ask(self, make: Callable[[str], Event]) -> asyncio.Future[Ok | Error]:
        """Queue a management request (made from its request id) for the next pass; the
        future is answered once its outcome is persisted."""

    def withdraw(self, future: asyncio.Future[Ok | Error]) -> None:
        """The caller stopped waiting for a request's answer."""
