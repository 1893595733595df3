"""The registry on JetStream KV: names, user registries, process groups, and their release.

One bucket per namespace (``rebeam_<ns>``, file storage) holds everything that is unique or
shared across the namespace; local scopes live in ``rebeam_<ns>_local`` (memory storage, one
replica: cheaper, and lost with the server, as local names are lost with an Erlang node).
Keys (every part escaped into one token, see :func:`rebeam.pids.escape_token`)::

    n.<name>                              a global name          -> {pid}
    l.<scope>.<name>                      a name in a local scope -> {pid}
    m.<registry>                          a user registry's kind  -> {keys: unique|duplicate}
    u.<registry>.<key>                    a unique key            -> {pid, value}
    d.<registry>.<key>.<slot>.<inc>.<n>   one duplicate entry     -> {pid, value}
    o.<slot>.<inc>.<escaped key>          "this pid owns that key" (so death can release it)

Uniqueness comes from KV ``create`` (compare-and-set at the stream leader). A later
incarnation of the same slot may take over a name its predecessor still holds (the
predecessor is dead or fenced, and a restarted child must be able to take its name back at
once). Values are codec msgpack, so pids travel as pids.

Anyone who may write the bucket can put anything there. A record that does not decode as
``{pid, ...}`` belongs to nobody: a lookup treats it as absent, a claim takes it over, and
each one seen is counted (``registry_invalid``) and logged at a bounded rate; no watcher or
lookup ever fails on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

import nats.js.errors as jserr
from nats.js.api import KeyValueConfig, StorageType

from rebeam import _codec, _subjects
from rebeam._ratelog import RateLog
from rebeam._streams import create_bucket, lift_consumer_cap, provisioned_bucket
from rebeam._subjects import global_bucket, local_bucket
from rebeam.errors import AlreadyRegistered, CodecError, NotRegistered, RegistryMismatch
from rebeam.pids import Pid, escape_token, unescape_token

__all__ = ["Store", "release_names_of"]

log = logging.getLogger("rebeam.registry")

_dup_ids = itertools.count(1)
_OWNED_KINDS = ("n.", "l.", "u.", "d.")  # the keys an ``o.`` index entry may name
_ratelog = RateLog(log, "registry")  # for a Store without a node to count for it


def name_key(name: str) -> str:
    return f"n.{escape_token(name)}"


def local_key(scope: str, name: str) -> str:
    return f"l.{escape_token(scope)}.{escape_token(name)}"


def _owner_of(value: bytes | None) -> tuple[Pid | None, Any]:
    """``(pid, value)`` of an owner record, ``(None, None)`` for none; raises
    :class:`CodecError` for a record that is there but is not an owner record."""
    if not value:
        return None, None
    item = _codec.decode(value)
    if isinstance(item, dict) and isinstance(item.get("pid"), Pid):
        return item["pid"], item.get("value")
    raise CodecError("not a {pid, value} record")


def _warn_invalid(key: str, why: str) -> None:
    _ratelog.warning("ignored an invalid registry record", f"{key}: {why}")


class Store:
    """The registry buckets of one namespace, opened lazily on one JetStream context.

    ``on_invalid(key, why)`` hears of every record that does not decode (a node counts
    them in its stats); by default they are logged at a bounded rate."""

    def __init__(
        self,
        js: Any,
        namespace: str,
        *,
        on_invalid: Callable[[str, str], None] | None = None,
    ) -> None:
        self.js = js
        self.namespace = namespace
        self.on_invalid = on_invalid or _warn_invalid
        self._kv: dict[bool, Any] = {}
        self._lock = asyncio.Lock()

    def record_owner(self, key: str, value: bytes | None) -> tuple[Pid | None, Any]:
        """``(pid, value)`` of the record at ``key``; ``(None, None)`` if there is none or
        it does not decode (then reported to ``on_invalid``)."""
        try:
            return _owner_of(value)
        except CodecError as exc:
            self.on_invalid(key, str(exc))
            return None, None

    def assume_provisioned(self) -> None:
        """The global bucket is the backend's, created before this process ran: its handle
        is made without looking it up (see :func:`~rebeam._streams.provisioned_bucket`)."""
        if False not in self._kv:
            self._kv[False] = provisioned_bucket(self.js, global_bucket(self.namespace))

    async def kv(self, local: bool = False) -> Any:
        kv = self._kv.get(local)
        if kv is not None:
            return kv
        async with self._lock:
            if local not in self._kv:
                self._kv[local] = await self._open(local)
        return self._kv[local]

    async def _open(self, local: bool) -> Any:
        bucket = local_bucket(self.namespace) if local else global_bucket(self.namespace)
        try:
            return await self.js.key_value(bucket)
        except jserr.BucketNotFoundError:
            pass
        config = KeyValueConfig(
            bucket=bucket,
            history=1,  # nothing to resurrect (docs/nats.md, "Key-value history")
            storage=StorageType.MEMORY if local else StorageType.FILE,
        )
        try:
            kv = await create_bucket(self.js, config, self.namespace)
        except jserr.BadRequestError:
            return await self.js.key_value(bucket)  # another process created it first
        await lift_consumer_cap(self.js, _subjects.kv_stream(bucket))  # one name cache per process
        return kv

    async def _holds_lease(self, pid: Pid) -> bool:
        """Whether ``pid`` is still alive as far as leases tell (a lost node's pid is not,
        and its names are free to take)."""
        from rebeam._lease import lease_alive, open_leases

        try:
            return await lease_alive(await open_leases(self.js, self.namespace), pid)
        except jserr.Error:
            return True  # cannot tell: keep the owner

    # -- claiming and releasing one key --------------------------------------------------

    async def claim(self, key: str, pid: Pid, value: Any = None, *, local: bool = False) -> int:
        """Atomically make ``pid`` the owner of ``key``; raises AlreadyRegistered.

        The index entry that lets the owner's names be found and released is written
        alongside the claim, not after its answer (a restarted actor registers its name
        before init: one round trip less); an index entry whose claim failed is removed
        again."""
        kv = await self.kv(local)
        data = _codec.encode({"pid": pid, "value": value})
        own_key = f"o.{pid.tokens}.{escape_token(key)}"
        index = asyncio.ensure_future(kv.put(own_key, key.encode()))
        try:
            rev = await self._claim(kv, key, pid, data)
        except BaseException:
            with contextlib.suppress(Exception):
                await index
                await kv.delete(own_key)
            raise
        await index
        return rev

    async def _claim(self, kv: Any, key: str, pid: Pid, data: bytes) -> int:
        for _ in range(5):
            try:
                rev: int = await kv.create(key, data)
                break
            except jserr.KeyWrongLastSequenceError:
                try:
                    entry = await kv.get(key)
                except jserr.KeyNotFoundError:
                    continue  # deleted in between: try to create again
                owner, _ = self.record_owner(key, entry.value)
                # No owner: the record is invalid, and an invalid record holds nothing.
                if owner is None or pid.supersedes(owner) or not await self._holds_lease(owner):
                    try:
                        rev = await kv.update(key, data, last=entry.revision)
                        break
                    except jserr.KeyWrongLastSequenceError:
                        continue
                raise AlreadyRegistered(_display(key), owner) from None
        else:
            raise AlreadyRegistered(_display(key), None)
        return rev

    async def release(self, key: str, pid: Pid, *, local: bool = False) -> bool:
        """Delete ``key`` if ``pid`` owns it; True if it did."""
        kv = await self.kv(local)
        released = await self._delete_if_owned(kv, key, pid)
        with contextlib.suppress(jserr.Error):
            await kv.delete(f"o.{pid.tokens}.{escape_token(key)}")
        return released

    async def owner(self, key: str, *, local: bool = False) -> tuple[Pid | None, Any]:
        kv = await self.kv(local)
        try:
            entry = await kv.get(key)
        except jserr.KeyNotFoundError:
            return None, None
        return self.record_owner(key, entry.value)

    async def scan(self, prefix: str, *, local: bool = False) -> list[tuple[str, Pid, Any]]:
        """Every live ``(key, pid, value)`` under ``prefix`` (one ephemeral watcher)."""
        kv = await self.kv(local)
        return await self._scan(kv, prefix)

    # -- names ---------------------------------------------------------------------------

    async def register(self, name: str, pid: Pid, scope: str | None = None) -> None:
        if scope is None:
            await self.claim(name_key(name), pid)
        else:
            await self.claim(local_key(scope, name), pid, local=True)

    async def unregister(self, name: str, pid: Pid, scope: str | None = None) -> None:
        key = name_key(name) if scope is None else local_key(scope, name)
        if not await self.release(key, pid, local=scope is not None):
            raise NotRegistered(f"{name!r} is not registered to {pid}")

    async def whereis(self, name: str, scope: str | None = None) -> Pid | None:
        key = name_key(name) if scope is None else local_key(scope, name)
        pid, _ = await self.owner(key, local=scope is not None)
        return pid

    # -- user registries (Elixir's Registry) ---------------------------------------------

    async def declare(self, registry: str, keys: str) -> None:
        kv = await self.kv()
        key = f"m.{escape_token(registry)}"
        data = _codec.encode({"keys": keys})
        try:
            await kv.create(key, data)
        except jserr.KeyWrongLastSequenceError:
            entry = await kv.get(key)
            try:
                record = _codec.decode(entry.value)
            except CodecError as exc:
                record = None
                self.on_invalid(key, str(exc))
            found = record.get("keys") if isinstance(record, dict) else None
            if found != keys:
                shown = found if found in ("unique", "duplicate") else "invalid"
                raise RegistryMismatch(
                    f"registry {registry!r} exists with {shown} keys, not {keys}"
                ) from None

    async def reg_register(self, registry: str, keys: str, key: str, pid: Pid, value: Any) -> str:
        base = f"{escape_token(registry)}.{escape_token(key)}"
        if keys == "unique":
            full = f"u.{base}"
            await self.claim(full, pid, value)
        else:
            full = f"d.{base}.{pid.tokens}.{next(_dup_ids)}"
            await self.claim(full, pid, value)
        return full

    async def reg_unregister(self, registry: str, keys: str, key: str, pid: Pid) -> int:
        base = f"{escape_token(registry)}.{escape_token(key)}"
        if keys == "unique":
            return int(await self.release(f"u.{base}", pid))
        count = 0
        for full, _, _ in await self.scan(f"d.{base}.{pid.tokens}.>"):
            count += await self.release(full, pid)
        return count

    async def reg_lookup(self, registry: str, keys: str, key: str) -> list[tuple[Pid, Any]]:
        base = f"{escape_token(registry)}.{escape_token(key)}"
        if keys == "unique":
            pid, value = await self.owner(f"u.{base}")
            return [] if pid is None else [(pid, value)]
        return [(pid, value) for _, pid, value in await self.scan(f"d.{base}.>")]

    async def reg_keys(self, registry: str, keys: str, pid: Pid) -> list[str]:
        """The keys ``pid`` holds in a registry (duplicates repeated, as Elixir does)."""
        prefix = "u" if keys == "unique" else "d"
        reg = escape_token(registry)
        out = []
        for full, owner, _ in await self.scan(f"{prefix}.{reg}.>"):
            if owner == pid:
                try:
                    out.append(unescape_token(full.split(".")[2]))
                except (ValueError, IndexError):  # our own records never look like this
                    self.on_invalid(full, "not an escaped registry key")
        return out

    async def _delete_if_owned(self, kv: Any, key: str, pid: Pid) -> bool:
        for _ in range(3):
            try:
                entry = await kv.get(key)
            except jserr.KeyNotFoundError:
                return False
            owner, _ = self.record_owner(key, entry.value)
            if owner != pid:
                return False
            try:
                await kv.delete(key, last=entry.revision)
                return True
            except (jserr.KeyWrongLastSequenceError, jserr.BadRequestError):
                continue  # changed under us (nats-py raises BadRequest for a stale CAS delete)
        return False

    async def _scan(self, kv: Any, prefix: str) -> list[tuple[str, Pid, Any]]:
        watcher = await kv.watch(prefix, ignore_deletes=True)
        out: list[tuple[str, Pid, Any]] = []
        try:
            while True:
                entry = await watcher.updates(timeout=5.0)
                if entry is None:
                    break
                if entry.operation is not None or entry.value is None:
                    continue
                pid, value = self.record_owner(entry.key, entry.value)
                if pid is not None:
                    out.append((entry.key, pid, value))
        finally:
            await watcher.stop()
        return out


def _display(key: str) -> str:
    parts = key.split(".")
    try:
        return unescape_token(parts[-1]) if parts[0] in ("n", "l") else key
    except ValueError:
        return key


async def release_names_of(nc: Any, pid: Pid, *, store: Store | None = None) -> int:
    """Release every name, registry key and group membership ``pid`` holds.

    The observer of a process end calls this before it publishes ``exited`` (names are
    released before exit signals, as in OTP). Safe to call twice, and for a pid that held
    nothing; a key already taken over by a later incarnation is left alone. ``store``: the
    caller's, whose buckets are open already (one round trip less each).

    A restart waits for this, so the two buckets, and the keys in each, are released
    together."""
    store = store or Store(nc.jetstream(), pid.namespace)
    counts = await asyncio.gather(
        _release_in(nc, store, pid, local=False), _release_in(nc, store, pid, local=True)
    )
    return sum(counts)


async def _release_in(nc: Any, store: Store, pid: Pid, *, local: bool) -> int:
    bucket = local_bucket(pid.namespace) if local else global_bucket(pid.namespace)
    try:
        index = await _owned_keys(nc.jsm(), bucket, pid)
    except jserr.Error as exc:
        log.warning("cannot read the registry to release %s: %s", pid, exc)
        return 0
    if not index:
        return 0  # nothing held here: the bucket is not even opened
    try:
        kv = await store.kv(local)
    except jserr.Error as exc:
        log.warning("cannot open the registry to release %s: %s", pid, exc)
        return 0

    async def release(own_key: str, key: str | None) -> bool:
        released = False
        try:
            released = key is not None and await store._delete_if_owned(kv, key, pid)
        except jserr.Error as exc:  # a key nats-py refuses: the entry is still removed
            _warn_invalid(own_key, f"names {key!r}: {exc}")
        with contextlib.suppress(jserr.Error):
            await kv.delete(own_key)  # after the key: an index entry outlives what it names
        return released

    results = await asyncio.gather(*(release(own_key, key) for own_key, key in index))
    return sum(results)


async def _owned_keys(jsm: Any, bucket: str, pid: Pid) -> list[tuple[str, str | None]]:
    """The ``o.<pid>.*`` index entries of ``bucket``: ``(index key, owned key)`` pairs (the
    owned key None for an entry that names none, to be removed all the same).

    Read with ``STREAM.MSG.GET`` and ``next_by_subj``, one request per entry (plus one that
    finds none): no consumer is created. A KV watcher would be an ephemeral consumer, and a
    stream has at most 1000 of them (docs/nats.md, "Stream consumer limit"), which an
    operator releasing the names of many crashed incarnations at once did run into. The
    bucket keeps one revision per key, so each live index key is one message; deleted ones
    are markers without data.
    """
    stream, prefix = _subjects.kv_stream(bucket), _subjects.kv(bucket, "")
    found: list[tuple[str, str | None]] = []
    seq = 1
    while True:
        try:
            msg = await jsm.get_msg(stream, seq=seq, subject=f"{prefix}o.{pid.tokens}.>", next=True)
        except jserr.NotFoundError:
            return found  # no (further) entry, or no bucket at all: nothing more held
        headers = msg.headers or {}
        if msg.data and not headers.get("KV-Operation") and msg.subject:
            own_key = msg.subject[len(prefix) :]
            key = msg.data.decode(errors="replace")
            if key.startswith(_OWNED_KINDS):
                found.append((own_key, key))
            else:  # not written by claim(): do not follow it, but remove it
                _warn_invalid(own_key, "does not name a registry key")
                found.append((own_key, None))
        seq = int(msg.seq or seq) + 1
