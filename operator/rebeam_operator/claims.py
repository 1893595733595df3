"""Slot claims: each incarnation recorded as its slot's latest before it may speak.

Only a backend may write slot records and fences (``rebeam.backends``). The operator claims
the slot of every incarnation it starts, in the background, as it creates the pod: a claim
waits for NATS, and NATS being away must never stall supervision. What makes the order safe
is the credential: the resolver lets an actor pod connect only once its claim is done
(:meth:`Claims.wait`), so no actor runs, and no pod becomes Ready, before its incarnation is
the slot's latest and the older ones were told to stop.

A claim is made with ``again=True``: after an operator restart it cannot know whether its
earlier claim of the same incarnation was written, and finding its own pid is success.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from rebeam._loop import within
from rebeam.backends import claim_slot, provision
from rebeam.errors import Refused
from rebeam.pids import Pid

__all__ = ["Claims"]

log = logging.getLogger("rebeam.operator")

ATTEMPT_DEADLINE = 3.0
RETRY = 1.0
MAX_CLAIMS = 65536  # incarnations remembered; the oldest (long since connected) go first


class Claims:
    def __init__(self, connection: Callable[[], Awaitable[Any]]) -> None:
        self._connection = connection  # waits for, then gives, the operator's NATS connection
        self._claims: OrderedDict[Pid, asyncio.Task[None]] = OrderedDict()
        self._provisioned: dict[str, asyncio.Task[None]] = {}

    def begin(self, pid: Pid) -> None:
        """Claim ``pid``'s slot (once; in the background)."""
        if pid in self._claims:
            return
        task = asyncio.get_running_loop().create_task(self._claim(pid), name=f"claim {pid}")
        task.add_done_callback(_quiet)
        self._claims[pid] = task
        while len(self._claims) > MAX_CLAIMS:
            _, old = self._claims.popitem(last=False)
            old.cancel()

    async def wait(self, pid: Pid, timeout: float) -> None:
        """Return once ``pid``'s slot is claimed (claiming it now if nobody asked yet);
        raise :class:`Refused` for a stale incarnation, TimeoutError after ``timeout``."""
        self.begin(pid)
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._claims[pid])

    def forget(self, pid: Pid) -> None:
        """The incarnation is over."""
        task = self._claims.pop(pid, None)
        if task is not None and not task.done():
            task.cancel()

    async def _claim(self, pid: Pid) -> None:
        while True:
            nc = await self._connection()
            try:
                await self._provision(nc, pid.namespace)
                await within(claim_slot(nc, pid, again=True), ATTEMPT_DEADLINE)
                return
            except Refused:
                log.warning("%s is not its slot's latest incarnation: its pod may not connect", pid)
                raise
            except Exception as exc:
                log.info("claiming the slot of %s: %s; retrying", pid, exc)
                await asyncio.sleep(RETRY)

    async def _provision(self, nc: Any, namespace: str) -> None:
        """The namespace's buckets and streams, made once per operator run."""
        task = self._provisioned.get(namespace)
        if task is None or (task.done() and (task.cancelled() or task.exception())):
            task = asyncio.get_running_loop().create_task(
                within(provision(nc, namespace), ATTEMPT_DEADLINE)
            )
            task.add_done_callback(_quiet)
            self._provisioned[namespace] = task
        await asyncio.shield(task)


def _quiet(task: asyncio.Task[Any]) -> None:
    """Failures are raised to whoever waits; an unawaited one is not worth a traceback."""
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.exception()
