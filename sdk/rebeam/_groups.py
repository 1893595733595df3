"""User registries (Elixir's ``Registry``) and process groups (OTP's ``pg``).

A :class:`Registry` is a named key space in the namespace's registry bucket, with
``unique`` or ``duplicate`` keys and a value per entry; it is usable for lookup, for
pub/sub (duplicate keys: every subscriber registers the topic) and for dispatch. A unique
registry also addresses processes: ``rebeam.Via(registry, key)`` wherever a pid is accepted.

Process groups are a duplicate registry per scope: ``join`` registers the group once more
(a process may join several times and must leave as often), ``members`` lists pids with
repeats, ``broadcast`` sends to each. Entries go when their owner leaves, and when it ends
(the observer of its end releases them, like names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from rebeam._current import current_node
from rebeam._node import Node
from rebeam.errors import NoProc
from rebeam.pids import Pid, escape_token

__all__ = ["Registry", "broadcast", "join", "leave", "members"]

Keys = Literal["unique", "duplicate"]


class Registry:
    """A user registry bound to a node::

    topics = await rebeam.Registry.open("topics", keys="duplicate")
    await topics.register("prices", {"since": 0})
    for pid, value in await topics.lookup("prices"): ...
    await topics.dispatch("prices", {"sku": "a", "price": 3})
    """

    def __init__(self, node: Node, name: str, keys: Keys) -> None:
        if keys not in ("unique", "duplicate"):
            raise ValueError("keys must be 'unique' or 'duplicate'")
        self.node = node
        self.name = name
        self.keys = keys

    @classmethod
    async def open(cls, name: str, keys: Keys = "unique", node: Node | None = None) -> Registry:
        """Open (declaring on first use) the registry ``name``; raises RegistryMismatch if
        it exists with the other kind of keys."""
        node = node or current_node()
        await node.store.declare(name, keys)
        return cls(node, name, keys)

    async def register(self, key: str, value: Any = None) -> None:
        """Register the calling process under ``key`` (AlreadyRegistered for a taken
        unique key)."""
        full = await self.node.store.reg_register(self.name, self.keys, key, self.node.pid, value)
        self.node.owns(full)

    async def unregister(self, key: str) -> None:
        """Remove the calling process's entries for ``key``; always succeeds."""
        await self.node.store.reg_unregister(self.name, self.keys, key, self.node.pid)

    async def lookup(self, key: str) -> list[tuple[Pid, Any]]:
        """``[(pid, value)]`` for ``key`` (at most one for a unique registry)."""
        return await self.node.store.reg_lookup(self.name, self.keys, key)

    async def keys_of(self, pid: Pid | None = None) -> list[str]:
        """The keys a process holds here (the caller by default)."""
        return await self.node.store.reg_keys(self.name, self.keys, pid or self.node.pid)

    async def dispatch(
        self,
        key: str,
        message: Any = None,
        fn: Callable[[list[tuple[Pid, Any]]], Awaitable[None]] | None = None,
    ) -> int:
        """Send ``message`` to every process under ``key`` (or call ``fn`` with the
        entries, in the caller, as Elixir's ``dispatch``). Returns the number of entries."""
        entries = await self.lookup(key)
        if fn is not None:
            await fn(entries)
        else:
            for pid, _ in entries:
                await self.node.send(pid, message)
        return len(entries)


def _pg(node: Node, scope: str) -> Registry:
    return Registry(node, f"pg:{scope}", "duplicate")


async def join(node: Node, group: str, scope: str = "pg") -> None:
    await _pg(node, scope).register(group)


async def leave(node: Node, group: str, scope: str = "pg") -> bool:
    """Leave once; False if this process was not a member (OTP's ``not_joined``)."""
    store = node.store
    base = f"d.{escape_token(f'pg:{scope}')}.{escape_token(group)}.{node.pid.tokens}.>"
    entries = await store.scan(base)
    if not entries:
        return False
    await store.release(entries[0][0], node.pid)
    node.disown(entries[0][0])
    return True


async def members(node: Node, group: str, scope: str = "pg") -> list[Pid]:
    return [pid for pid, _ in await _pg(node, scope).lookup(group)]


async def broadcast(node: Node, group: str, message: Any, scope: str = "pg") -> int:
    """Send to every member once (a member that joined twice gets it once)."""
    pids = list(dict.fromkeys(await members(node, group, scope)))
    for pid in pids:
        with contextlib.suppress(NoProc):
            await node.send(pid, message)
    return len(pids)
