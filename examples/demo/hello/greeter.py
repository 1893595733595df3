"""Answers ``{"hello": name}`` calls. Registered as ``greeter`` by its manifest."""

from __future__ import annotations

from typing import Any

import rebeam


class Greeter(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.greeted = 0

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        self.greeted += 1
        return f"Hello, {message['hello']}! (greeting #{self.greeted} from {self.pid})"
