"""Actors the SDK tests run in real processes (imported by ``python -m rebeam.runtime``).

``Probe`` does what its calls ask and reports what it receives to ``report_to`` (a client
pid) so a test can wait on real events instead of sleeping.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pydantic

import rebeam
from rebeam.exits import ExitReason


@rebeam.message
class Order(pydantic.BaseModel):
    sku: str
    qty: int
    note: bytes = b""


def _wire(msg: Any) -> Any:
    if isinstance(msg, rebeam.Down):
        return {"down": str(msg.pid) if msg.pid else None, "reason": msg.reason.to_wire()}
    if isinstance(msg, rebeam.Exit):
        return {"exit": str(msg.pid), "reason": msg.reason.to_wire()}
    return msg


class Probe(rebeam.Actor):
    async def init(self, args: Any) -> None:
        args = args or {}
        self.casts: list[Any] = []
        self.infos: list[Any] = []
        self.count = 0
        self.report_to = rebeam.Pid.parse(args["report_to"]) if args.get("report_to") else None
        if args.get("fail_init"):
            raise RuntimeError("init refused")
        if args.get("trap_exit"):
            self.trap_exit = True
        for name in args.get("register", []):
            await rebeam.register(name)
        for group in args.get("join", []):
            await rebeam.join(group)

    async def _report(self, item: Any) -> None:
        if self.report_to is not None:
            await rebeam.send(self.report_to, item)

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        op, arg = (message[0], message[1]) if isinstance(message, list) else (message, None)
        if op == "echo":
            return arg
        if op == "defer":  # reply later, from another callback
            self.deferred = from_
            return rebeam.NOREPLY
        if op == "release":
            await self.reply(self.deferred, arg)
            return "released"
        if op == "pid":
            return self.pid
        if op == "count":
            self.count += 1
            return self.count
        if op == "casts":
            return self.casts
        if op == "infos":
            return [_wire(m) for m in self.infos]
        if op == "sleep":
            await self._report("sleeping")
            await asyncio.sleep(arg)
            return "slept"
        if op == "raise":
            raise ValueError(arg or "boom")
        if op == "stop":
            self.stop()
            return "stopping"
        if op == "shutdown":
            self.shutdown(arg)
            return "shutting down"
        if op == "call":  # call another process: [target, message]
            return await rebeam.call(arg[0], arg[1], timeout=arg[2] if len(arg) > 2 else 5.0)
        if op == "call_self":
            try:
                await rebeam.call(self.pid, "echo")
            except rebeam.CallingSelf as exc:
                return f"CallingSelf: {exc}"
            return "no error"
        if op == "monitor":
            await rebeam.monitor(rebeam.Pid.parse(arg) if "." in arg else arg)
            return "ok"
        if op == "link":
            await rebeam.link(rebeam.Pid.parse(arg))
            return "ok"
        if op == "unlink":
            await rebeam.unlink(rebeam.Pid.parse(arg))
            return "ok"
        if op == "trap_exit":
            self.trap_exit = bool(arg)
            return "ok"
        if op == "send_after":
            self.send_after(arg, "tick")
            return "ok"
        if op == "timers":  # one cancelled timer, then one sent straight to report_to
            self.send_after(0.05, "cancelled").cancel()
            self.send_after(0.1, "direct", dest=self.report_to)
            return "ok"
        if op == "try_call":  # [target pid or name, message]: the outcome, never a crash
            target = rebeam.Pid.parse(arg[0]) if arg[0].count(".") == 2 else arg[0]
            try:
                return {"ok": await rebeam.call(target, arg[1], timeout=5.0)}
            except Exception as exc:
                return {"error": type(exc).__name__}
        if op == "order":
            return Order(sku=arg["sku"], qty=arg["qty"] * 2, note=b"\x00\xff")
        if op == "os_pid":
            return os.getpid()
        if op == "stats":
            s = self.node.stats
            return {
                "malformed": s.malformed,
                "oversized": s.oversized,
                "misaddressed": s.misaddressed,
            }
        return ["unknown", op]  # never crash on fuzzed input: the fuzz test sends garbage

    async def handle_cast(self, message: Any) -> None:
        self.casts.append(message)
        if message == "crash":
            raise RuntimeError("crashed on cast")

    async def handle_info(self, message: Any) -> None:
        self.infos.append(message)
        await self._report(_wire(message))

    async def terminate(self, reason: ExitReason) -> None:
        await self._report({"terminated": reason.to_wire()})


class SyncProbe(rebeam.Actor):
    """Plain (non-async) callbacks work too."""

    def handle_call(self, message: Any, from_: rebeam.From) -> Any:  # type: ignore[override]
        return {"sync": message}


class Slow(rebeam.Actor):
    """Takes ``delay`` seconds per message and counts what it handled, per tag: the consumer
    of the overload tests. Messages are ``[tag, seq]``; ``"counts"`` answers at once."""

    async def init(self, args: Any) -> None:
        self.delay = float((args or {}).get("delay", 0.005))
        self.counts: dict[str, int] = {}

    async def _handle(self, message: Any) -> None:
        await asyncio.sleep(self.delay)
        tag = message[0] if isinstance(message, list) else str(message)
        self.counts[tag] = self.counts.get(tag, 0) + 1

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        if message == "counts":
            return self.counts
        if isinstance(message, list) and message[0] == "block":  # hold the actor
            await asyncio.sleep(message[1])
            return "unblocked"
        await self._handle(message)
        return "ok"

    async def handle_cast(self, message: Any) -> None:
        await self._handle(message)

    async def handle_info(self, message: Any) -> None:
        await self._handle(message)


class SmallMailbox(Slow):
    """Bounds set in code, on the class."""

    mailbox_max_messages = 77
    mailbox_max_bytes = 65_536


class DurableProbe(rebeam.Actor):
    """A durable mailbox: reports every cast ``[sender, seq]`` it handles to ``report_to``;
    ``"poison"`` crashes it every time."""

    mailbox_durable = True

    async def init(self, args: Any) -> None:
        self.report_to = rebeam.Pid.parse(args["report_to"])

    async def handle_cast(self, message: Any) -> None:
        if message == "poison":
            raise RuntimeError("poisoned")
        if isinstance(message, list) and message[0] == "slow":  # report the start, then work
            await rebeam.send(self.report_to, {"started": message, "by": str(self.pid)})
            await asyncio.sleep(message[1])
        await rebeam.send(self.report_to, {"got": message, "by": str(self.pid)})

    async def handle_info(self, message: Any) -> None:  # durable sends
        await rebeam.send(self.report_to, {"got": message, "by": str(self.pid), "info": True})

    async def handle_call(self, message: Any, from_: rebeam.From) -> Any:
        return message
