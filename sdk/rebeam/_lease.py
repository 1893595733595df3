"""Leases: how the rest of the namespace learns that a process was lost with its node.

A process that ends on a living machine is observed by its supervisor, which publishes
``exited``. A process whose node (or pod, or network) is lost is observed by nobody; its
lease says so instead. Every node holds one key in ``rebeam_<ns>_leases``::

    <slot token>.<incarnation>     created with a per-message TTL

and refreshes it every TTL/3 with a compare-and-set publish that renews the TTL (nats-py
2.16 has no ``update`` with a TTL, so it is a raw publish with
``Nats-Expected-Last-Subject-Sequence``; docs/nats.md, "Per-message TTL"). When the
refreshes stop, the server removes the value and leaves a ``MaxAge`` limit marker, which a
lease watcher sees as a PURGE:

* monitors and links of that pid get DOWN / exit signals with ``noconnection``;
* a name held by a pid without a lease is free: :meth:`Store.claim` takes it over;
* a node that finds its own lease gone (it was partitioned, or stopped, for longer than the
  TTL) has been declared dead by everyone else, and stops with ``noconnection``; so does a
  node that has not had a refresh confirmed for a whole TTL, even if it never hears so.

A clean close deletes the key (a DEL, not a PURGE): the ``exited`` event carries the reason.
One watcher per node at most, started only by a node that monitors or links (never one per
actor: nats-server 2.15 caps a stream at 1000 consumers by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import nats.js.errors as jserr
from nats.js.api import KeyValueConfig, StorageType

from rebeam import _subjects
from rebeam._streams import create_bucket, lift_consumer_cap, not_set_up, provisioned_bucket
from rebeam._subjects import leases_bucket
from rebeam.errors import Refused
from rebeam.pids import Pid, unescape_token

__all__ = ["DEFAULT_TTL", "Lease", "lease_alive", "open_leases"]

log = logging.getLogger("rebeam.lease")

DEFAULT_TTL = float(os.environ.get("REBEAM_LEASE_TTL", "15"))
_MARKER_TTL = 60  # how long watchers can still see that a lease expired
_EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"


async def open_leases(js: Any, namespace: str) -> Any:
    try:
        return await js.key_value(leases_bucket(namespace))
    except jserr.BucketNotFoundError:
        pass
    config = KeyValueConfig(
        bucket=leases_bucket(namespace),
        history=1,
        # File storage: a server restarted on its store (the keeper of ``rebeam run``, a
        # cluster server coming back) still holds every lease, its revision and every expiry
        # marker, so a lease is lost only by expiring (docs/nats.md, "Leases across a server
        # restart"). In memory, a restart lost them all and each node's next refresh took its
        # missing key for "declared dead" and stopped, though nobody had been told so.
        storage=StorageType.FILE,
        limit_marker_ttl=_MARKER_TTL,
    )
    try:
        kv = await create_bucket(js, config, namespace)
    except jserr.KeyValueLimitMarkerTTLNotSupportedError:
        # A server without limit markers (API level 0): leases still expire and free names,
        # but watchers cannot see the expiry, so lost nodes give no noconnection DOWN.
        log.warning("nats-server has no KV limit markers: lease expiry is not observable")
        config.limit_marker_ttl = None
        kv = await js.create_key_value(config)
    except jserr.BadRequestError:
        return await js.key_value(leases_bucket(namespace))
    stream = _subjects.kv_stream(leases_bucket(namespace))
    await lift_consumer_cap(js, stream)  # one lease watcher per process
    return kv


async def lease_alive(kv: Any, pid: Pid) -> bool:
    """Whether ``pid`` holds a live lease."""
    try:
        entry = await kv.get(pid.tokens)
    except jserr.KeyNotFoundError:
        return False
    # nats-py 2.16 returns an empty entry while a limit marker stands
    # (docs/nats.md, "Limit markers").
    return entry.value is not None and entry.operation is None


class Lease:
    """This node's lease: create, refresh, drop."""

    def __init__(self, js: Any, pid: Pid, ttl: float = DEFAULT_TTL) -> None:
        self.js = js
        self.pid = pid
        self.ttl = max(1, int(ttl))  # the server takes whole seconds, at least one
        self.kv: Any = None
        self.revision = 0
        self.on_lost: Callable[[], None] | None = None
        self._task: asyncio.Task[None] | None = None
        # When the server last confirmed the lease (monotonic): it expires there at most
        # one TTL after the write that answer confirmed, which was sent before it came.
        self._confirmed = 0.0

    async def acquire(self, *, provisioned: bool = False) -> None:
        """Take the lease; Refused if it is held. ``provisioned``: the bucket is the
        backend's to create, and is not looked up first (one round trip less: an actor's
        runtime, started by its backend)."""
        bucket = leases_bucket(self.pid.namespace)
        if provisioned:
            self.kv = provisioned_bucket(self.js, bucket)
        else:
            self.kv = await open_leases(self.js, self.pid.namespace)
        try:
            self.revision = await self.kv.create(self.pid.tokens, b"1", msg_ttl=self.ttl)
        except jserr.KeyWrongLastSequenceError:
            raise Refused(
                f"another process is running as {self.pid} (it holds the lease)"
            ) from None
        except jserr.NoStreamResponseError:
            raise not_set_up(self.pid.namespace, bucket) from None
        self._confirmed = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def _refresh_loop(self) -> None:
        subject = _subjects.kv(leases_bucket(self.pid.namespace), self.pid.tokens)
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                ack = await self.js.publish(
                    subject,
                    b"1",
                    headers={_EXPECTED_LAST: str(self.revision)},
                    msg_ttl=self.ttl,
                    timeout=max(1.0, self.ttl / 3),
                )
                self.revision = ack.seq
                self._confirmed = time.monotonic()
            except jserr.APIError as exc:
                if await self._landed_after_all():
                    continue
                # Wrong last sequence: the lease expired (we were gone longer than the TTL)
                # and everyone has been told this pid is dead. Stop being it.
                self._lost(str(exc))
                return
            except Exception as exc:  # disconnected: try again at the next tick
                log.debug("%s: lease refresh failed: %s", self.pid, exc)
                if time.monotonic() - self._confirmed < self.ttl:
                    continue
                # A whole TTL without a confirmed refresh: expired, unless a refresh landed
                # though its answer never came, which only a read of the key can show.
                if not await self._landed_after_all(unsure=False):
                    self._lost(f"no refresh confirmed for {self.ttl}s: {exc!r}")
                    return

    def _lost(self, why: str) -> None:
        """The lease has expired: everyone has been told this pid is dead. Stop being it.

        Also when no refresh got through for a whole TTL (docs/runtime-contract.md, section 7):
        the server removed the key by then, whether or not this process can reach it to
        hear so. A node cut off for good (a connection that never comes back) would
        otherwise live on, deaf, under a pid and names the rest of the namespace has freed,
        and its supervisor, seeing it alive, would never restart it."""
        log.error("%s lost its lease (%s)", self.pid, why)
        if self.on_lost is not None:
            self.on_lost()

    async def _landed_after_all(self, *, unsure: bool = True) -> bool:
        """Whether the key moved on because a refresh of ours landed though its answer
        never came (it timed out behind other traffic on a busy machine): the key is live,
        at a later revision, and only this process writes it. Adopts that revision. A
        marker or no key at all is an expired lease; ``unsure`` is the answer when the key
        cannot be read now (True: the next tick asks again)."""
        try:
            entry = await self.kv.get(self.pid.tokens)
        except jserr.KeyNotFoundError:
            return False
        except Exception as exc:
            log.debug("%s: reading its lease failed: %s", self.pid, exc)
            return unsure
        if entry.value is None or entry.operation is not None or entry.revision <= self.revision:
            return False
        self.revision = entry.revision
        return True

    async def release(self, *, delete: bool = True) -> None:
        """Stop refreshing; with ``delete``, delete the key (a clean end, not an expiry)."""
        if self._task is not None:
            self._task.cancel()
        if delete and self.kv is not None and self.revision:  # never one we did not get
            with contextlib.suppress(Exception):
                await self.kv.delete(self.pid.tokens)


# How long the server keeps a watcher's consumer that nobody listens to. nats-py replaces
# the consumer of a watch whose heartbeats it missed (a busy or paused process) without
# deleting the old one, which the server then keeps for this long, with its subscriptions
# (docs/nats.md, "Lease watchers"). Short, since a consumer is never idle while its watcher
# listens, and a watcher that comes back to find it gone makes a new one.
WATCHER_IDLE_LIMIT = 30.0


async def watch_expiries(js: Any, namespace: str, on_expired: Callable[[Pid], None]) -> None:
    """Call ``on_expired(pid)`` for every lease that expires from now on (runs until
    cancelled; restarts its watcher after a failure)."""
    while True:
        watcher = None
        try:
            kv = await open_leases(js, namespace)
            watcher = await kv.watch(">", inactive_threshold=WATCHER_IDLE_LIMIT)
            async for entry in watcher:
                if entry is None or entry.operation != "PURGE":
                    continue
                slot, _, incarnation = entry.key.rpartition(".")
                try:
                    pid = Pid(namespace, unescape_token(slot), int(incarnation))
                except ValueError:
                    continue
                on_expired(pid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("lease watcher restarting: %s", exc)
            await asyncio.sleep(0.5)
        finally:
            if watcher is not None:  # the next watcher must not leave this one subscribed
                with contextlib.suppress(Exception):
                    await watcher.stop()
