"""Actors the observer tests start (on PYTHONPATH of their processes)."""

from __future__ import annotations

import asyncio
from typing import Any

import rebeam


class Summarized(rebeam.Actor):
    """Counts calls; its format_status shows the count and hides the secret."""

    async def init(self, args: Any) -> None:
        self.count = 0
        self.secret = "hunter2"
        self.blob = "x" * 100_000
        self._private = "never shown"

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        if message == "slow":
            await asyncio.sleep(0.02)
        self.count += 1
        return self.count

    def format_status(self, state: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in state.items() if k != "secret"}


class BadStatus(rebeam.Actor):
    """A format_status that raises."""

    def format_status(self, state: dict[str, Any]) -> dict[str, Any]:
        raise KeyError("nope")


class Plain(rebeam.Actor):
    """No format_status at all."""

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return message


class Worker(Summarized):
    """A Summarized that joins the process group ``workers``."""

    async def init(self, args: Any) -> None:
        await super().init(args)
        await rebeam.join("workers")
