"""What every backend does for the processes it starts, and nobody else may do.

A backend (``rebeam run``, the Kubernetes operator, the tests' launcher) is the only party
allowed to write the records that decide who an actor is (docs/security.md, "Who may say
what"; docs/runtime-contract.md):

* :func:`provision` makes a namespace's buckets and streams before any actor needs them
  (actors may read and watch them, never create, purge or delete them);
* :func:`claim_slot` records a new incarnation as its slot's latest *before* the process
  starts, and tells older live incarnations of the slot to stop (fencing). An actor cannot
  write its own slot record: a stolen credential could otherwise poison its slot with a huge
  incarnation and make every later restart fail.

Example::

    await provision(nc, "shop")
    await claim_slot(nc, pid)          # raises Refused for a stale launch
    ...                                # then start the process with its credential
"""

from __future__ import annotations

import contextlib
from typing import Any

import nats.js.errors as jserr

from rebeam import _codec, _durable_stream, _lease, _subjects
from rebeam._registry import Store
from rebeam.errors import Refused
from rebeam.pids import Pid

__all__ = ["claim_slot", "order_kill", "provision", "slot_key"]

_ATTEMPTS = 5


def slot_key(pid: Pid) -> str:
    """The registry key of ``pid``'s slot record: ``{"pid": <latest incarnation>}``."""
    return f"s.{pid.slot_token}"


async def provision(nc: Any, namespace: str) -> None:
    """Create the namespace's registry buckets, lease bucket and durable-mailbox stream
    where they do not exist yet (idempotent)."""
    js = nc.jetstream()
    store = Store(js, namespace)
    await store.kv()
    await store.kv(local=True)
    await _lease.open_leases(js, namespace)
    await _durable_stream.ensure_stream(js, namespace)


async def claim_slot(
    nc: Any,
    pid: Pid,
    *,
    again: bool = False,
    store: Store | None = None,
    last: int | None = None,
) -> int:
    """Record ``pid`` as its slot's latest incarnation; raise :class:`Refused` if the same
    or a later one already started (a stale launch). Then fence the older ones. Returns
    the record's revision.

    ``again``: this launch may have been claimed already (a backend that restarted and
    cannot know whether its claim was written): finding ``pid`` itself is then success.
    ``store``: the caller's, whose bucket is open already (one round trip less).
    ``last``: the revision the caller's claim of an earlier incarnation of this slot
    returned. While the record is still that one, nobody else has claimed the slot since,
    and it is replaced without being read first (a restart: one round trip less)."""
    store = store or Store(nc.jetstream(), pid.namespace)
    kv = await store.kv()
    key = slot_key(pid)
    data = _codec.encode({"pid": pid})
    revision: int | None = None
    if last is not None:
        with contextlib.suppress(jserr.KeyWrongLastSequenceError):
            revision = await kv.update(key, data, last=last)
    if revision is None:
        revision = await _claim_record(kv, store, key, pid, data, again)
    await nc.publish(_subjects.fence(pid), str(pid.incarnation).encode())
    await nc.flush()
    return revision


async def _claim_record(kv: Any, store: Store, key: str, pid: Pid, data: bytes, again: bool) -> int:
    """Read the slot's record and replace it, unless it names ``pid`` or a later one."""
    for _ in range(_ATTEMPTS):
        try:
            entry = await kv.get(key)
        except jserr.KeyNotFoundError:
            try:
                created: int = await kv.create(key, data)
                return created
            except jserr.KeyWrongLastSequenceError:
                continue
        # A record that does not decode is nobody's: it is overwritten.
        current, _ = store.record_owner(key, entry.value)
        if again and current == pid:
            return int(entry.revision)
        if current is not None and (current == pid or current.supersedes(pid)):
            raise Refused(f"{pid} is superseded: {current} of this slot already started")
        try:
            updated: int = await kv.update(key, data, last=entry.revision)
            return updated
        except jserr.KeyWrongLastSequenceError:
            continue
    raise Refused(f"could not record {pid} as its slot's latest: too much contention")


async def order_kill(nc: Any, pid: Pid) -> None:
    """Tell ``pid``'s runtime to SIGKILL itself at once (``brutal_kill``: OTP's
    ``exit(Child, kill)``, no ``terminate``, no SIGTERM handler), flushed to the server. The
    backend still removes the process its own way after this: an order reaches only a
    runtime that is connected."""
    await nc.publish(_subjects.fence(pid), _subjects.KILL_ORDER + str(pid.incarnation).encode())
    await nc.flush()
