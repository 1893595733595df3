"""Turns text into rows and has the writer store them (the writer is found by name, so a
restarted writer is found again)."""

from __future__ import annotations

from typing import Any

import rebeam


class Parser(rebeam.Actor):
    """Registered as ``parser`` by its manifest."""

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        rows = [line.strip() for line in message["text"].splitlines() if line.strip()]
        return await rebeam.call("writer", {"rows": rows})
