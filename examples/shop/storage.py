"""The storage subtree of examples/nested.yaml: a pool and a cache, restarted together
(one_for_all). Each answers a call with what it holds; their manifest registers their
names (``db-pool``, ``cache``)."""

from __future__ import annotations

from typing import Any

import rebeam


class Pool(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.size = args.get("size", 1)

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return {"connections": self.size}


class Cache(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.entries: dict[str, Any] = {}

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        if "put" in message:
            self.entries[message["put"]] = message.get("value")
        return self.entries.get(message.get("get", message.get("put")))
