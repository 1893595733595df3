"""The auditor: once a second it asks every account for its balance and for what it debited
and credited, and writes the total it finds to ``audits.jsonl``.

The accounts cannot be read at one instant, but the total does not need that: money that
left one account and has not reached the other yet is in flight, and in flight is what was
debited less what was credited, summed over the accounts. Each account answers from one
state (a callback at a time), so balances plus in flight must equal the opening total at
every audit, whatever moved between the answers."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import rebeam
from bank.journal import Journal
from bank.witness import born

EVERY = 1.0


class Auditor(rebeam.Actor):
    async def init(self, args: dict[str, Any]) -> None:
        born(args["dir"], "auditor", self.pid)
        self.accounts: list[str] = args["accounts"]
        self.log = Journal(Path(args["dir"]) / "audits.jsonl")
        self.send_after(EVERY, "audit")

    async def handle_info(self, msg: Any) -> None:
        if msg == "audit":
            await self._audit()
            self.send_after(EVERY, "audit")

    async def _audit(self) -> None:
        answers = await asyncio.gather(
            *(rebeam.call(name, {"op": "audit"}, timeout=2.0) for name in self.accounts),
            return_exceptions=True,
        )
        states = [a for a in answers if isinstance(a, dict)]
        if len(states) < len(self.accounts):
            self.log.append({"t": time.time(), "complete": False})
            return
        held = sum(s["balance"] for s in states)
        in_flight = sum(s["debited"] for s in states) - sum(s["credited"] for s in states)
        self.log.append({
            "t": time.time(), "complete": True, "held": held, "in_flight": in_flight,
            "total": held + in_flight,
        })  # fmt: skip
