"""An account: a balance, and a journal of every decision it took, keyed by transfer id.

A transfer is a debit at the source and a credit at the destination, both idempotent:

* the debit arrives by call (the teller hears the outcome) or by durable cast; the account
  looks the id up in its journal first, so a retried or redelivered debit answers what the
  first one decided and moves nothing again;
* a debit that is applied writes the debit *and the credit it owes* to the journal in one
  record before anything else happens (an outbox), then sends the credit to the destination
  as a durable cast; once JetStream has it, a ``sent`` record follows. A new incarnation
  resends every credit without its ``sent`` record, so a kill between the two only sends it
  twice;
* the destination applies a credit once per id and ignores it after that.

So each message may arrive any number of times (at-least-once delivery, redelivery after a
kill, a teller's retry) and the money moves exactly once (docs/soak.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import rebeam
from bank import journal
from bank.witness import born

FLUSH_EVERY = 0.2  # seconds between attempts to send owed credits
SEND_TIMEOUT = 2.0  # a durable send waits for JetStream's ack at most this long


class Account(rebeam.Actor):
    mailbox_durable = True
    mailbox_max_messages = 2_000  # bounded: overload is refused, never queued without end

    async def init(self, args: dict[str, Any]) -> None:
        self.name: str = args["name"]
        directory = Path(args["dir"])
        born(args["dir"], self.name, self.pid)
        self.balance: int = args["initial"]
        self.decided: dict[str, str] = {}  # transfer id -> applied / declined (debits here)
        self.credited: set[str] = set()
        self.owed: dict[str, dict[str, Any]] = {}  # credits not yet handed to JetStream
        self.debited_total = 0
        self.credited_total = 0
        path = directory / f"{self.name}.jsonl"
        for record in journal.read(path):
            self._replay(record)
        self.journal = journal.Journal(path)
        self.peers: dict[str, rebeam.Pid] = {}
        self.flushing = False
        self.send_after(0, "flush")

    def _replay(self, record: dict[str, Any]) -> None:
        kind, tid = record["k"], record["id"]
        if kind == "debit":
            self.decided[tid] = "applied"
            self.balance -= record["amount"]
            self.debited_total += record["amount"]
            self.owed[tid] = record
        elif kind == "declined":
            self.decided[tid] = "declined"
        elif kind == "sent":
            self.owed.pop(tid, None)
        elif kind == "credit":
            self.credited.add(tid)
            self.balance += record["amount"]
            self.credited_total += record["amount"]

    def _record(self, record: dict[str, Any]) -> None:
        self.journal.append(record)  # on disk first: a kill after this keeps the decision
        self._replay(record)

    async def handle_call(self, msg: Any, from_: rebeam.From) -> Any:
        if msg.get("op") == "debit":
            return {"outcome": await self._debit(msg)}
        if msg.get("op") == "audit":
            return {
                "balance": self.balance,
                "debited": self.debited_total,
                "credited": self.credited_total,
                "owed": len(self.owed),
            }
        raise ValueError(f"unknown call {msg!r}")

    async def handle_cast(self, msg: Any) -> None:
        if msg.get("op") == "debit":
            await self._debit(msg)
        elif msg.get("op") == "credit" and msg["id"] not in self.credited:
            self._record(
                {"k": "credit", "id": msg["id"], "from": msg["from"], "amount": msg["amount"]}
            )

    async def handle_info(self, msg: Any) -> None:
        if msg == "flush":
            await self._flush()
            self.send_after(FLUSH_EVERY, "flush")

    async def _debit(self, msg: dict[str, Any]) -> str:
        tid = msg["id"]
        if tid in self.decided:
            return self.decided[tid]
        if msg["amount"] > self.balance:
            self._record({"k": "declined", "id": tid})
            return "declined"
        record = {"k": "debit", "id": tid, "to": msg["to"], "amount": msg["amount"]}
        self._record(record)
        await self._send_credit(record)
        return "applied"

    async def _flush(self) -> None:
        for record in list(self.owed.values()):
            if not await self._send_credit(record):
                return  # the destination or NATS is not there: the next flush tries again

    async def _send_credit(self, record: dict[str, Any]) -> bool:
        to = record["to"]
        credit = {"op": "credit", "id": record["id"], "from": self.name, "amount": record["amount"]}
        try:
            # Any pid of the destination's slot reaches whichever incarnation runs next, so
            # one found once serves for good; only the first lookup needs it registered.
            if to not in self.peers:
                found = await asyncio.wait_for(rebeam.whereis(to), SEND_TIMEOUT)
                if found is None:
                    return False
                self.peers[to] = found
            await asyncio.wait_for(rebeam.cast(self.peers[to], credit, durable=True), SEND_TIMEOUT)
        except Exception:  # rebeam's, nats-py's while the server restarts, a timeout: later
            return False
        if record["id"] in self.owed:
            self._record({"k": "sent", "id": record["id"]})
        return True

    async def terminate(self, reason: Any) -> None:
        with contextlib.suppress(OSError):
            self.journal.close()
