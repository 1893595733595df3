"""Per-actor mailbox depth, message rate and handler latency, polled from the observer's
server: one stats request per running actor per round, a bounded number at a time, and a
round at most every ``every`` seconds (longer for large trees), never from the browser.

Rates and latencies come from two snapshots of the counters a process keeps
(``rebeam._stats``): messages received per second between them, and the mean time its
callbacks took for the messages sampled between them (one in 16, ``rebeam._actor``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import nats

from rebeam import _subjects
from rebeam._envelope import unpack_reply
from rebeam._stats import STATUS_REQUEST
from rebeam.errors import CodecError
from rebeam.pids import Pid

__all__ = ["ActorStats", "StatsPoller", "status_of"]

EVERY: Final = 2.0
PER_SECOND: Final = 500  # stats requests at most, however many actors: a modest load
CONCURRENCY: Final = 32
TIMEOUT: Final = 1.0
MAX_SILENT: Final = 100_000  # pids remembered as not answering stats


@dataclass
class ActorStats:
    """What the page shows for one actor; None: not known yet (one snapshot only)."""

    mailbox: int
    received: int
    refused: int
    rate: float | None = None  # messages received per second
    latency_ms: float | None = None  # mean handler time over the last interval
    samples: int = 0
    handler_ns: int = 0
    at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "rate": None if self.rate is None else round(self.rate, 1),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 3),
            "refused": self.refused,
        }


Targets = Callable[[], list[tuple[str, str]]]
"""``[(path, pid)]`` of the actors to poll now."""


class StatsPoller:
    def __init__(self, nc: Any, targets: Targets, *, every: float = EVERY) -> None:
        self.nc = nc
        self.targets = targets
        self.every = every
        self.latest: dict[str, ActorStats] = {}
        self.changed = asyncio.Event()
        self.failures = 0  # requests that got no usable answer (an actor just ended, say)
        # Pids nobody answers stats for (a command child, not a Python actor): not asked
        # again, so a tree of such children costs one request each, not one per round.
        self._silent: set[str] = set()

    async def run(self) -> None:
        while True:
            targets = self.targets()
            started = time.monotonic()
            await self.poll(targets)
            pause = max(self.every, len(targets) / PER_SECOND) - (time.monotonic() - started)
            await asyncio.sleep(max(pause, 0.1))

    async def poll(self, targets: list[tuple[str, str]]) -> None:
        """One round: every target once, CONCURRENCY at a time."""
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(path: str, pid: str) -> tuple[str, str, dict[str, Any] | None]:
            async with gate:
                return path, pid, await self._ask(pid)

        asked = [(path, pid) for path, pid in targets if pid not in self._silent]
        answers = await asyncio.gather(*(one(path, pid) for path, pid in asked))
        latest: dict[str, ActorStats] = {}
        for path, _pid, counters in answers:
            if counters is not None:
                latest[path] = _step(self.latest.get(path), counters)
        self.latest = latest
        self.changed.set()

    async def _ask(self, pid: str) -> dict[str, Any] | None:
        try:
            msg = await self.nc.request(_subjects.stats(Pid.parse(pid)), b"", timeout=TIMEOUT)
            status, counters = unpack_reply(msg.data)
        except nats.errors.NoRespondersError:
            if len(self._silent) < MAX_SILENT:
                self._silent.add(pid)
            return None
        except (ValueError, CodecError, nats.errors.Error):
            self.failures += 1
            return None
        return counters if status == 0 and isinstance(counters, dict) else None


def _int(counters: dict[str, Any], key: str) -> int:
    value = counters.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _step(before: ActorStats | None, counters: dict[str, Any]) -> ActorStats:
    now = time.monotonic()
    after = ActorStats(
        mailbox=_int(counters, "mailbox_pending") + _int(counters, "local_pending"),
        received=_int(counters, "received"),
        refused=_int(counters, "mailbox_refused"),
        samples=_int(counters, "handler_samples"),
        handler_ns=_int(counters, "handler_ns"),
        at=now,
    )
    # A restarted actor's counters start again from zero: no rate across that.
    if before is not None and now > before.at and after.received >= before.received:
        after.rate = (after.received - before.received) / (now - before.at)
        samples = after.samples - before.samples
        if samples > 0:
            after.latency_ms = (after.handler_ns - before.handler_ns) / samples / 1e6
        elif before.latency_ms is not None:
            after.latency_ms = before.latency_ms  # idle: the last measure still says most
    return after


async def status_of(nc: Any, pid: str, *, running: bool = False) -> dict[str, Any] | str:
    """An actor's state summary (its ``format_status``), or a sentence saying why none.
    ``running``: the tree says the child runs, so nobody answering means it is no Python
    actor (a command child, in a pod of its own on a cluster), not that it ended."""
    try:
        msg = await nc.request(_subjects.stats(Pid.parse(pid)), STATUS_REQUEST, timeout=2.0)
        status, payload = unpack_reply(msg.data)
    except nats.errors.NoRespondersError:
        if running:
            return f"{pid} answers no state requests: a command child has no state summary"
        return f"{pid} is not running"
    except nats.errors.TimeoutError:
        return f"no answer from {pid} within 2s"
    except (ValueError, CodecError, nats.errors.Error) as exc:
        return f"no usable answer from {pid}: {exc}"
    if status != 0 or not isinstance(payload, dict):
        return f"no usable answer from {pid}"
    summary = payload.get("status")
    if summary is None:
        return f"{pid} is not an actor (no state summary)"
    return summary if isinstance(summary, dict | str) else str(summary)
