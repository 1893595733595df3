"""A teller: moves money between random accounts at a set rate, half the transfers by call
and half by durable cast, each through the accounts' registered names, and writes every
acknowledged transfer to its log.

Acknowledged means: by call, the source account answered the debit's outcome; by durable
cast, JetStream stored the debit (the account will decide it, at least once). A failed
attempt is retried with the same transfer id, so a retry can never move money twice; a
transfer still unacknowledged at its deadline is given up and not logged (it may or may not
have happened, and either is allowed). The rate can be changed while it runs
(``{"rate": r}`` by cast): the soak's overload phase.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import rebeam
from bank.journal import Journal
from bank.witness import born

DEADLINE = 10.0  # seconds a transfer is retried before it is given up
CALL_TIMEOUT = 2.0
BACKOFF = (0.05, 0.1, 0.2, 0.4)


class Teller(rebeam.Actor):
    async def init(self, args: dict[str, Any]) -> None:
        self.name: str = args["name"]
        born(args["dir"], self.name, self.pid)
        self.accounts: list[str] = args["accounts"]
        self.rate: float = args["rate"]
        self.max_in_flight: int = args.get("max_in_flight", 64)
        self.log = Journal(Path(args["dir"]) / f"{self.name}.acks.jsonl")
        self.random = random.Random(f"{self.name}.{self.pid.incarnation}")
        self.seq = 0
        self.in_flight: set[asyncio.Task[None]] = set()
        self.paused = False
        self.send_after(0, "tick")

    async def handle_cast(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        if isinstance(msg.get("rate"), int | float) and msg["rate"] > 0:
            self.rate = float(msg["rate"])
        if msg.get("pause") is True:  # the soak's end: no new transfers, the last ones finish
            self.paused = True

    async def handle_call(self, msg: Any, from_: rebeam.From) -> Any:
        if msg == "status":
            return {"in_flight": len(self.in_flight), "paused": self.paused}
        raise ValueError(f"unknown call {msg!r}")

    async def handle_info(self, msg: Any) -> None:
        if msg != "tick" or self.paused:
            return
        if len(self.in_flight) < self.max_in_flight:
            task = asyncio.create_task(self._transfer())
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
        self.send_after(1.0 / self.rate, "tick")

    async def _transfer(self) -> None:
        self.seq += 1
        source, destination = self.random.sample(self.accounts, 2)
        transfer = {
            "op": "debit",
            "id": f"{self.name}.{self.pid.incarnation}.{self.seq}",
            "to": destination,
            "amount": self.random.randint(1, 10),
        }
        via = "call" if self.seq % 2 else "cast"
        started = time.time()
        outcome = await self._attempt(source, transfer, via, started + DEADLINE)
        if outcome is not None:
            self.log.append({
                "id": transfer["id"], "from": source, "to": destination,
                "amount": transfer["amount"], "via": via, "outcome": outcome,
                "t0": started, "t1": time.time(),
            })  # fmt: skip

    async def _attempt(
        self, source: str, transfer: dict[str, Any], via: str, deadline: float
    ) -> str | None:
        for attempt in range(1_000):
            try:
                if via == "call":
                    reply = await rebeam.call(source, transfer, timeout=CALL_TIMEOUT)
                    return str(reply["outcome"])
                await asyncio.wait_for(rebeam.cast(source, transfer, durable=True), CALL_TIMEOUT)
                return "stored"
            except Exception:  # any failure: the same id again, which cannot move money twice
                pause = BACKOFF[min(attempt, len(BACKOFF) - 1)]
                if time.time() + pause > deadline:
                    return None
                await asyncio.sleep(pause)
        return None

    async def terminate(self, reason: Any) -> None:
        for task in self.in_flight:
            task.cancel()
