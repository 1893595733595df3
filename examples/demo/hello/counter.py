"""Counts calls; a ``"crash"`` cast makes it raise — let it crash, its supervisor restarts it
with fresh state."""

from __future__ import annotations

from typing import Any

import rebeam


class Counter(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.count = 0

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        self.count += 1
        return self.count

    async def handle_cast(self, message: Any) -> None:
        if message == "crash":
            raise RuntimeError("crashing on purpose, as the driver asked")
