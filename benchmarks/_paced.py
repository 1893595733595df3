"""Casts at a fixed offered rate, below what the receiver can take: the receiver's CPU per
cast then depends on the code it runs, not on how many casts each of its wake-ups happened to
find waiting (at saturation that varies from burst to burst, and with it the cost per cast;
docs/observability.md, "What it costs")."""

from __future__ import annotations

import asyncio
import time

import rebeam
from benchmarks._measure import PAYLOAD
from rebeam.pids import Pid

TICK = 0.001  # seconds between the sender's turns: each turn sends what is due by then


async def paced_casts(node: rebeam.Node, pid: Pid, rate: float, casts: int) -> float:
    """``casts`` casts to the BenchActor ``pid`` at ``rate`` a second, then one call queued
    behind them (ordered per sender), whose answer, the actor's count, says every cast was
    handled: none left in the mailbox. Returns the seconds from the last cast sent to that
    answer: more than a few milliseconds, and the receiver fell behind. Raises if a cast is
    missing."""
    base = await node.call(pid, "casts")
    sent = 0
    started = time.perf_counter()
    while sent < casts:
        # What is due by now: a sender the machine delayed catches up, it does not fall behind.
        due = min(casts, int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            await node.cast(pid, PAYLOAD)
            sent += 1
        if sent < casts:
            await asyncio.sleep(TICK)
    last = time.perf_counter()
    handled = await node.call(pid, "casts", timeout=60)
    done = time.perf_counter()
    if handled - base != casts:
        raise RuntimeError(f"{casts} casts sent at {rate:,.0f}/s, {handled - base} handled")
    return done - last
