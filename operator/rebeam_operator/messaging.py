"""The operator's NATS side: lifecycle events out, names of dead incarnations released,
leases looked up to fence a pod on a lost node. On a secured server the operator first
starts its credential issuer (identity.py) and connects with its own backend credential.

NATS being away never stalls supervision: events are queued and published in order by one
task, releases and lease look-ups give up after a short deadline (names then expire with
their lease, and a pod whose lease cannot be read is not fenced yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from rebeam import _lease
from rebeam._loop import within
from rebeam._nats_fixes import connect as nats_connect
from rebeam.backends import order_kill
from rebeam.events import LifecycleEvent, publish, release_names_of
from rebeam.pids import Pid
from rebeam_operator.claims import Claims
from rebeam_operator.identity import Identity

__all__ = ["Messaging"]

log = logging.getLogger("rebeam.operator")

DEADLINE = 3.0
KILL_DEADLINE = 1.0  # a brutal_kill waits no longer for NATS before deleting the pod anyway


class Messaging:
    def __init__(self, url: str, *, tls_ca: str | None = None) -> None:
        self.url = url
        self.identity: Identity | None = None  # the credential issuer, on a secured server
        self.claims = Claims(self.connection)
        self.tls_ca = tls_ca  # the CA of a tls:// NATS (default $REBEAM_NATS_CA)
        self.nc: Any = None
        self._outbox: asyncio.Queue[tuple[str, LifecycleEvent]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._connector: asyncio.Task[None] | None = None
        self._leases: dict[str, Any] = {}
        self._connected = asyncio.Event()

    def start(self) -> None:
        self._connector = asyncio.create_task(self._connect())
        self._sender = asyncio.create_task(self._send())

    async def _connect(self) -> None:
        if self.identity is not None:
            await self.identity.start()
        token = self.identity.backend_token if self.identity is not None else None
        while self.nc is None:
            try:
                self.nc = await nats_connect(
                    self.url,
                    max_reconnect_attempts=-1,
                    connect_timeout=3,
                    name="rebeam-operator",
                    token=token,
                    tls_ca=self.tls_ca,
                )
                self._connected.set()
                log.info("connected to NATS at %s", self.url)
            except Exception as exc:
                log.warning("cannot reach NATS at %s (%s); retrying", self.url, exc)
                await asyncio.sleep(2)

    async def connected(self) -> None:
        await self._connected.wait()

    async def connection(self) -> Any:
        """The NATS connection, once there is one."""
        await self._connected.wait()
        return self.nc

    async def close(self) -> None:
        for task in (self._sender, self._connector):
            if task is not None:
                task.cancel()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await within(self.nc.drain(), DEADLINE)
        if self.identity is not None:
            await asyncio.to_thread(self.identity.stop)

    def emit(self, event: LifecycleEvent) -> None:
        self._outbox.put_nowait((event.namespace, event))

    async def _send(self) -> None:
        while True:
            namespace, event = await self._outbox.get()
            await self._connected.wait()
            try:
                await within(publish(self.nc, namespace, event), DEADLINE)
            except Exception as exc:
                log.warning("could not publish %s event: %s", event.event, exc)

    def ended(self, pid: Pid) -> None:
        """An incarnation is over: its slot claim is forgotten, and (secured) its
        credential refused and its connections closed."""
        self.claims.forget(pid)
        if self.identity is not None:
            self.identity.ended(pid)

    async def release(self, pid: Pid) -> None:
        if self.nc is None:
            return
        try:
            await within(release_names_of(self.nc, pid), DEADLINE)
        except Exception as exc:
            log.warning("could not release the names of %s: %s", pid, exc)

    async def order_kill(self, pid: Pid) -> bool:
        """Tell the runtime of ``pid`` to SIGKILL itself; False if the order could not be
        given (the pod is then only deleted with grace 0, SIGTERM first)."""
        if self.nc is None:
            return False
        try:
            await within(order_kill(self.nc, pid), KILL_DEADLINE)
        except Exception as exc:
            log.warning("could not order %s killed: %s", pid, exc)
            return False
        return True

    async def drop_lease(self, pid: Pid) -> None:
        """Delete the lease of an incarnation whose process is confirmed gone, so that the same
        pid can be taken again (early_starts.py: an unrecorded pod's pid is reused)."""
        if self.nc is None:
            return
        try:
            kv = await self._leases_of(pid.namespace)
            await within(kv.delete(pid.tokens), DEADLINE)
        except Exception as exc:
            log.warning("could not drop the lease of %s: %s", pid, exc)

    async def _leases_of(self, namespace: str) -> Any:
        kv = self._leases.get(namespace)
        if kv is None:
            kv = await within(_lease.open_leases(self.nc.jetstream(), namespace), DEADLINE)
            self._leases[namespace] = kv
        return kv

    async def lease_alive(self, pid: Pid) -> bool | None:
        """Whether the incarnation's runtime holds its lease; None when NATS cannot tell."""
        if self.nc is None:
            return None
        try:
            kv = await self._leases_of(pid.namespace)
            return await within(_lease.lease_alive(kv, pid), DEADLINE)
        except Exception as exc:
            log.warning("could not read the lease of %s: %s", pid, exc)
            return None
