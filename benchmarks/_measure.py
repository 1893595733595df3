"""What every benchmark shares: the table's rows, timing, CPU accounting and CPU pinning."""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rebeam
from rebeam.pids import Pid

# What every call and cast of the benchmarks carries, rebeam's and the baselines' alike.
PAYLOAD = {"n": 1, "data": "x" * 32}


@dataclass
class Row:
    metric: str
    rebeam: str
    baseline: str
    ratio: float | None
    target: str
    ok: bool | None
    note: str = ""


def print_table(rows: list[Row]) -> None:
    headers = ["metric", "rebeam", "baseline", "ratio", "target", "met"]
    table = [
        [
            r.metric,
            r.rebeam,
            r.baseline,
            "-" if r.ratio is None else f"{r.ratio:.2f}x",
            r.target,
            "-" if r.ok is None else ("yes" if r.ok else "NO"),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    print(" | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in table:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    for r in rows:
        if r.note:
            print(f"  {r.metric}: {r.note}")


@dataclass
class Paired:
    """Rounds of ours and a baseline measured side by side: each side's median, and the median
    of the rounds' own ratios. A ratio of medians would pair a quiet round of one side with a
    busy round of the other; the machine's load changes between rounds, not within one."""

    ours: float
    theirs: float
    ratio: float
    spread: str


def paired(ours: list[float], theirs: list[float]) -> Paired:
    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    spread = f"round ratios {min(ratios):.2f}-{max(ratios):.2f}x"
    return Paired(
        statistics.median(ours), statistics.median(theirs), statistics.median(ratios), spread
    )


async def alternating_p50s(
    n: int, chunk: int, ops: list[Callable[[int], Awaitable[Any]]]
) -> list[float]:
    """The p50 (us) of n timed calls of each op, the ops taking turns in chunks: what the
    machine's other load does during the round falls on every op alike."""
    samples: list[list[int]] = [[] for _ in ops]
    for _ in range(0, n, chunk):
        for op, out in zip(ops, samples, strict=True):
            out.extend(await time_each(chunk, op))
    return [p50_us(out) for out in samples]


def p50_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


async def time_each(n: int, op: Callable[[int], Awaitable[Any]]) -> list[int]:
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        await op(i)
        samples.append(time.perf_counter_ns() - started)
    return samples


def cpu_ns(os_pid: int) -> int:
    """CPU time a process has used, in nanoseconds, from every thread's schedstat: a finer
    clock than utime's ticks, and one other load on the machine does not inflate."""
    total = 0
    for task in Path(f"/proc/{os_pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


@contextlib.contextmanager
def a_core_each(receivers: list[int], what: str = "receiver") -> Iterator[str]:
    """The sender (this process) on one CPU, the receivers on the other, whatever is not
    named (nats-server) where it can run; restored after. Three busy processes left to the
    scheduler on two cores gave round ratios from 0.49x to 1.04x within one run. (Several
    receivers take turns, never busy at once.) Yields what was done, for the table's note."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        yield "not pinned (one CPU)"
        return
    mine = os.sched_getaffinity(0)
    theirs = {pid: os.sched_getaffinity(pid) for pid in receivers}
    os.sched_setaffinity(0, {cpus[0]})
    for pid in receivers:
        os.sched_setaffinity(pid, {cpus[1]})
    try:
        yield f"sender on CPU {cpus[0]}, {what} on CPU {cpus[1]}"
    finally:
        os.sched_setaffinity(0, mine)
        for pid, cpus_before in theirs.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, cpus_before)


async def cast_rate(node: rebeam.Node, pid: Pid, n: int) -> float:
    """Casts per second from ``node`` to the BenchActor ``pid``, counted as handled by it.

    The round ends with one call queued behind its casts on the same subscription: its
    answer means all were handled (ordered per sender), with no polling in the receiver
    competing with the messages measured."""
    base = await node.call(pid, "casts")
    refused = (await node.stats_of(pid))["refused_silently"]
    started = time.perf_counter()
    for _ in range(n):
        await node.cast(pid, PAYLOAD)
    handled = await node.call(pid, "casts", timeout=60)
    elapsed = time.perf_counter() - started
    # A refused cast (mailbox full) would never be counted as handled: count it too.
    refused = (await node.stats_of(pid))["refused_silently"] - refused
    if handled - base + refused != n:
        raise RuntimeError(f"{n} casts sent, {handled - base} handled, {refused} refused")
    return n / elapsed
