"""The faults the soak injects, each an asyncio task that runs until it is cancelled, at a
configured rate: SIGKILL storms, SIGSTOP/SIGCONT hangs, nats-server kills (the run's keeper
restarts it), overload (the tellers at ten times their rate). Every signal goes to one pid
the observer knows to be a process of this run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.natscluster import NatsCluster
from tests.soak.observer import Observer
from tests.soak.partition import Partition


@dataclass(frozen=True)
class Rates:
    kills_per_s: float = 2.0
    stops_per_s: float = 0.5
    stop_for: float = 1.5  # seconds a stopped process stays stopped
    nats_every: float = 15.0  # the keeper allows 3 restarts within 30 s
    overload: float = 10.0  # times the tellers' rate
    server_down: float = 3.0  # seconds a cluster's killed server stays down
    partition_for: float = 5.0  # seconds a cluster's server stays cut off


@dataclass
class FaultLog:
    """What was done when: (time, fault, target)."""

    entries: list[tuple[float, str, str]] = field(default_factory=list)

    def add(self, fault: str, target: str) -> None:
        self.entries.append((time.time(), fault, target))


def _signal(os_pid: int, signum: int) -> bool:
    try:
        os.kill(os_pid, signum)
    except ProcessLookupError:
        return False
    return True


async def kill_storm(
    observer: Observer, children: list[str], rates: Rates, log: FaultLog, rng: random.Random
) -> None:
    while True:
        await asyncio.sleep(rng.expovariate(rates.kills_per_s))
        path = rng.choice(children)
        os_pid = observer.current(path)
        if os_pid is not None and _signal(os_pid, signal.SIGKILL):
            log.add("kill", f"{path} ({os_pid})")


async def hangs(
    observer: Observer, children: list[str], rates: Rates, log: FaultLog, rng: random.Random
) -> None:
    stopped: set[int] = set()
    try:
        while True:
            await asyncio.sleep(rng.expovariate(rates.stops_per_s))
            path = rng.choice(children)
            os_pid = observer.current(path)
            if os_pid is None or not _signal(os_pid, signal.SIGSTOP):
                continue
            stopped.add(os_pid)
            log.add("stop", f"{path} ({os_pid})")
            asyncio.get_running_loop().call_later(rates.stop_for, _resume, os_pid, stopped)
    finally:
        for os_pid in list(stopped):  # nothing stays stopped past its phase
            _resume(os_pid, stopped)


def _resume(os_pid: int, stopped: set[int]) -> None:
    if os_pid in stopped:
        stopped.discard(os_pid)
        _signal(os_pid, signal.SIGCONT)


async def nats_kills(nats_pid: Callable[[], int | None], rates: Rates, log: FaultLog) -> None:
    while True:
        os_pid = nats_pid()
        if os_pid is not None and _signal(os_pid, signal.SIGKILL):
            log.add("nats", str(os_pid))
        await asyncio.sleep(rates.nats_every)


async def rolling_kills(cluster: NatsCluster, rates: Rates, log: FaultLog) -> None:
    """One server of the cluster at a time: SIGKILL, down a while, back on its ports with
    its store; then the next one."""
    turn = 0
    while True:
        i = turn % cluster.size
        log.add("nats", f"s{i} ({cluster.kill(i)})")
        try:
            await asyncio.sleep(rates.server_down)
        finally:
            cluster.restart(i)  # also when the phase ends while it is down
        turn += 1
        await asyncio.sleep(rates.nats_every)


async def partitions(cluster: NatsCluster, rates: Rates, log: FaultLog) -> None:
    """One server of the cluster at a time cut off from its clients and the other servers
    (tests/soak/partition.py), then healed; then the next one."""
    partition = Partition()
    turn = 0
    try:
        while True:
            i = turn % cluster.size
            partition.isolate(cluster, i)
            log.add("partition", f"s{i}")
            await asyncio.sleep(rates.partition_for)
            partition.heal()
            turn += 1
            await asyncio.sleep(rates.nats_every)
    finally:
        partition.heal()


async def overload(
    set_rate: Callable[[float], Awaitable[None]], base: float, rates: Rates, log: FaultLog
) -> None:
    log.add("overload", f"{base * rates.overload:g}/s per teller")
    try:
        while True:  # again each second: a teller restarted meanwhile starts at its base rate
            with contextlib.suppress(Exception):
                await set_rate(base * rates.overload)
            await asyncio.sleep(1.0)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(set_rate(base))
