"""Names: register, unregister and whereis for one node, with its name cache.

The cache is one JetStream KV watcher per node on ``n.>`` (never one per name: nats-server
2.15 allows 1000 consumers per stream), started by the first cached lookup. A stale entry
is harmless for calls: a call that meets noproc asks the registry again once. An entry that
does not decode, or whose key is not an escaped name, is absent from the cache (and
reported to the store's ``on_invalid``): it never stops the watcher.

The names are an object of their own (:class:`Naming`), composed into the node: it owns the
keys this node claimed, the name cache and its watcher, and is given what it needs of the
node (its pid, registry store and local scope, a way to run a task, and a way to run a
registry request that the server may refuse).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from rebeam._registry import Store, local_key, name_key
from rebeam._subjects import global_bucket, kv
from rebeam.errors import NotPermitted
from rebeam.pids import Pid, unescape_token

__all__ = ["Naming"]

log = logging.getLogger("rebeam.node")


class Naming:
    """One node's names: what it registered, and its cache of the global names."""

    def __init__(
        self,
        pid: Pid,
        store: Store,
        local_scope: str,
        *,
        spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]],
        permitted: Callable[[str, Awaitable[Any]], Awaitable[Any]],
    ) -> None:
        self.pid = pid
        self.store = store
        self.local_scope = local_scope
        self.namespace = pid.namespace
        self._spawn = spawn
        # Runs a JetStream request, raising NotPermitted at once if the server refuses its
        # subject (the node's ``permitted``).
        self._permitted = permitted
        self._owned: set[tuple[str, bool]] = set()
        self._names: dict[str, Pid] | None = None  # the name cache, once watching
        self._name_watch_task: asyncio.Task[None] | None = None

    @property
    def caching(self) -> bool:
        """Whether the name cache is live (a cached lookup may have been stale)."""
        return self._names is not None

    def close(self) -> None:
        """Stop the name cache's watcher."""
        if self._name_watch_task is not None:
            self._name_watch_task.cancel()

    async def register(self, name: str, *, scope: str | None = None, local: bool = False) -> None:
        """Register this process under ``name``: globally, or in a local scope
        (``local=True`` for the node's own scope). Raises AlreadyRegistered."""
        if local and scope is None:
            scope = self.local_scope
        if scope is None:
            subject = kv(global_bucket(self.namespace), name_key(name))
            try:
                await self._permitted(subject, self.store.register(name, self.pid, scope))
            except NotPermitted:
                raise NotPermitted(
                    f"{self.pid} may not register {name!r}: its manifest does not declare "
                    "that name (docs/security.md)"
                ) from None
        else:
            await self.store.register(name, self.pid, scope)
        if scope is None:
            self._owned.add((name_key(name), False))
            if self._names is not None:
                self._names[name] = self.pid
        else:
            self._owned.add((local_key(scope, name), True))

    async def unregister(self, name: str, *, scope: str | None = None, local: bool = False) -> None:
        """Remove this process's registration of ``name``: globally, or in a local scope
        (``local=True`` for the node's own scope)."""
        if local and scope is None:
            scope = self.local_scope
        await self.store.unregister(name, self.pid, scope)
        if scope is None:
            self._owned.discard((name_key(name), False))
            if self._names is not None and self._names.get(name) == self.pid:
                del self._names[name]
        else:
            self._owned.discard((local_key(scope, name), True))

    async def whereis(
        self, name: str, *, scope: str | None = None, local: bool = False, cached: bool = True
    ) -> Pid | None:
        """The pid registered as ``name``, or None.

        Global names are cached: the first cached lookup starts one KV watcher for this
        node (never one per name), and later lookups are a dict read. A stale cache is
        harmless: a call to the dead pid gets noproc and is retried once uncached.
        """
        if local and scope is None:
            scope = self.local_scope
        if scope is not None:
            return await self.store.whereis(name, scope)
        if cached:
            if self._names is not None:
                pid = self._names.get(name)
                if pid is not None:
                    return pid
            elif self._name_watch_task is None:
                ready = asyncio.get_running_loop().create_future()
                self._name_watch_task = self._spawn(self._watch_names(ready))
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await asyncio.shield(ready)
                if self._names is not None and name in self._names:
                    return self._names[name]
        return await self.store.whereis(name)

    async def _watch_names(self, ready: asyncio.Future[None]) -> None:
        kv = await self.store.kv()
        names: dict[str, Pid] = {}
        while True:
            try:
                watcher = await kv.watch("n.>")
                async for entry in watcher:
                    if entry is None:
                        self._names = names
                        if not ready.done():
                            ready.set_result(None)
                        continue
                    try:
                        name = _unescape_name(entry.key)
                    except (ValueError, IndexError):  # no claim() writes such a key
                        self.store.on_invalid(entry.key, "not an escaped name")
                        continue
                    owner = None
                    if entry.operation is None:
                        owner, _ = self.store.record_owner(entry.key, entry.value)
                    if owner is None:
                        names.pop(name, None)
                    else:
                        names[name] = owner
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a watcher broken by a reconnect: start again
                log.debug("%s: name watcher restarting: %s", self.pid, exc)
                self._names = None
                names = {}
                await asyncio.sleep(0.5)

    async def release_all(self) -> None:
        """Release every key this node claimed (on a clean exit)."""
        for key, local in list(self._owned):
            with contextlib.suppress(Exception):
                await self.store.release(key, self.pid, local=local)
        self._owned.clear()

    def owns(self, key: str, local: bool = False) -> None:
        """Count ``key`` among this node's claims, released on a clean exit."""
        self._owned.add((key, local))

    def disown(self, key: str, local: bool = False) -> None:
        """No longer count ``key`` among this node's claims."""
        self._owned.discard((key, local))


def _unescape_name(key: str) -> str:
    return unescape_token(key.split(".", 1)[1])
