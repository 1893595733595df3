"""The soak: start the bank under ``rebeam run``, let it settle, run each fault alone and then
all together (each followed by a quiet period to recover in), stop the tellers, wait for
every transfer in flight to land, stop the run by its pid, and check everything."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import rebeam
from tests.natscluster import NatsCluster
from tests.soak import faults, journal_files
from tests.soak.check import Findings, check
from tests.soak.manifest import Bank
from tests.soak.observer import Observer
from tests.soak.orphans import Orphan, orphans_of
from tests.soak.run import BankRun

FAULTS = ("kill", "hang", "nats", "overload")
CLUSTER_FAULTS = (*FAULTS, "partition")  # a partition needs servers to cut apart
START_DEADLINE = 90.0
DRAIN_DEADLINE = 90.0
STOP_DEADLINE = 60.0


class Running(Protocol):
    """What the phases need of a running bank, whatever runs it (``rebeam run``, the
    operator, Ray): its data directory, whether it ended by itself, its log's tail."""

    @property
    def data(self) -> Path: ...

    def ended(self) -> bool: ...

    def log(self) -> str: ...


@dataclass(frozen=True)
class Schedule:
    baseline: float = 20.0
    fault: float = 30.0  # each fault's phase
    after: float = 20.0  # the quiet phase after each, to recover in
    faults: tuple[str, ...] = FAULTS
    together: bool = True  # then every fault at once
    cluster: bool = False  # on a three-server NATS cluster instead of the run's own server


@dataclass
class Phase:
    name: str
    start: float
    end: float
    faults: tuple[str, ...] = ()


@dataclass
class Result:
    bank: Bank
    phases: list[Phase]
    findings: Findings
    observer: Observer
    log: faults.FaultLog
    acks: list[dict[str, Any]]
    orphans: list[Orphan]
    exit_code: int | None
    drained_in: float
    workdir: Path
    notes: list[str] = field(default_factory=list)
    backend: str = "rebeam run"  # what ran the bank, named in the report


# The faults a backend can inject, by name: each a coroutine that runs until cancelled.
Makers = dict[str, Callable[[], Coroutine[Any, Any, None]]]


def plan(schedule: Schedule) -> list[tuple[str, tuple[str, ...], float]]:
    steps: list[tuple[str, tuple[str, ...], float]] = [("baseline", (), schedule.baseline)]
    groups = [(f, (f,)) for f in schedule.faults]
    if schedule.together and len(schedule.faults) > 1:
        groups.append(("all", tuple(schedule.faults)))
    for name, group in groups:
        steps += [(name, group, schedule.fault), (f"after {name}", (), schedule.after)]
    return steps


async def soak(
    workdir: Path,
    bank: Bank | None = None,
    schedule: Schedule | None = None,
    rates: faults.Rates | None = None,
    seed: int = 1,
) -> Result:
    bank, schedule, rates = bank or Bank(), schedule or Schedule(), rates or faults.Rates()
    namespace = f"soak{abs(hash(str(workdir))) % 10**8}"
    cluster = None
    if schedule.cluster:  # the bank on a three-server cluster; "nats" kills one at a time
        cluster = NatsCluster(workdir / "cluster", namespace)
        cluster.start()
    try:
        return await _soak(workdir, bank, schedule, rates, seed, namespace, cluster)
    finally:
        if cluster is not None:
            cluster.stop()


async def _soak(
    workdir: Path,
    bank: Bank,
    schedule: Schedule,
    rates: faults.Rates,
    seed: int,
    namespace: str,
    cluster: NatsCluster | None,
) -> Result:
    external = None
    if cluster is not None:
        external = (cluster.url(0), cluster.issuer_file(workdir / "issuer.json"))
    run = BankRun.start(workdir, bank, namespace, external)
    observer = Observer(run.process.pid, run.data, run.events)
    try:
        info = run.wait_instance(time.monotonic() + START_DEADLINE)
        observer.start()
        # The harness measures; it is no process of the bank. Without a lease it cannot be
        # taken for dead when a nats-server restart loses the leases (docs/soak.md).
        async with rebeam.connect(
            info["nats_url"], namespace=namespace, credentials=info["credentials"], lease=False
        ) as node:
            await wait_flowing(run, bank, observer)
            phases, log = await _phases(run, bank, schedule, rates, observer, node, seed, cluster)
            drained_in, live_total = await drain(node, bank)
    finally:
        exit_code = run.stop(STOP_DEADLINE)
        observer.sample()
        observer.stop()
    orphans = orphans_of(observer)
    findings = check(bank, run.data, observer, live_total)
    return Result(
        bank, phases, findings, observer, log, acks_of(run, bank), orphans,
        exit_code, drained_in, workdir,
    )  # fmt: skip


async def wait_flowing(
    run: Running, bank: Bank, observer: Observer, within: float = START_DEADLINE
) -> None:
    """Until every child has a process and every teller has had a transfer acknowledged."""
    children = [*bank.account_names(), *bank.teller_names(), "auditor"]
    deadline = time.monotonic() + within
    while True:
        missing = [c for c in children if observer.current(c) is None]
        missing += [
            t for t in bank.teller_names()
            if not (run.data / f"{t}.acks.jsonl").exists()
            or not (run.data / f"{t}.acks.jsonl").stat().st_size
        ]  # fmt: skip
        if not missing:
            return
        if run.ended() or time.monotonic() > deadline:
            raise RuntimeError(f"the bank did not start: waiting for {missing}\n{run.log()}")
        await asyncio.sleep(0.1)


async def _phases(
    run: BankRun,
    bank: Bank,
    schedule: Schedule,
    rates: faults.Rates,
    observer: Observer,
    node: rebeam.Node,
    seed: int,
    cluster: NatsCluster | None,
) -> tuple[list[Phase], faults.FaultLog]:
    rng = random.Random(seed)
    log = faults.FaultLog()
    targets = [*bank.account_names(), *bank.teller_names(), "auditor"]

    async def set_rate(rate: float) -> None:
        for teller in bank.teller_names():
            await node.cast(teller, {"rate": rate})

    makers: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "kill": lambda: faults.kill_storm(observer, targets, rates, log, rng),
        "hang": lambda: faults.hangs(observer, targets, rates, log, rng),
        "nats": lambda: (
            faults.rolling_kills(cluster, rates, log)
            if cluster is not None
            else faults.nats_kills(run.nats_pid, rates, log)
        ),
        "overload": lambda: faults.overload(set_rate, bank.rate, rates, log),
    }
    if cluster is not None:
        makers["partition"] = lambda: faults.partitions(cluster, rates, log)
    return await run_phases(schedule, makers, run), log


async def run_phases(schedule: Schedule, makers: Makers, run: Running) -> list[Phase]:
    """Each phase of the schedule in turn: its faults (``makers`` by name) run for the
    phase's length, then are cancelled."""
    phases = []
    for name, group, seconds in plan(schedule):
        start = time.time()
        tasks = [asyncio.create_task(makers[f]()) for f in group]
        try:
            await phase_for(seconds, run)
        finally:
            await cancel(tasks)
        phases.append(Phase(name, start, time.time(), group))
    return phases


async def phase_for(seconds: float, run: Running) -> None:
    """The phase's length: the schedule, not a wait for anything; the run must stay up."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if run.ended():
            raise RuntimeError(f"the bank ended during the soak:\n{run.log()}")
        await asyncio.sleep(min(0.2, max(0.0, end - time.monotonic())))


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def drain(node: rebeam.Node, bank: Bank) -> tuple[float, int | None]:
    """Pause the tellers, then wait until nothing is in flight: no teller transfer pending,
    no credit owed, every debit credited. Returns how long that took and the accounts' own
    total then; on timeout, the error names what was still in flight at the last look."""
    started = time.monotonic()
    deadline = started + DRAIN_DEADLINE
    last = "no teller and account answered"
    while time.monotonic() < deadline:
        for teller in bank.teller_names():  # again each round: a restarted teller runs again
            with contextlib.suppress(Exception):
                await node.cast(teller, {"pause": True})
        try:
            tellers = await _ask(node, bank.teller_names(), "status")
            accounts = await _ask(node, bank.account_names(), {"op": "audit"})
        except Exception as exc:  # a restarting actor: ask again next round
            last = f"a status call failed: {exc!r}"
        else:
            busy = _in_flight(bank, tellers, accounts)
            if not busy:
                return time.monotonic() - started, sum(a["balance"] for a in accounts)
            last = "; ".join(busy)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the bank did not drain within {DRAIN_DEADLINE:g}s: {last}")


def _in_flight(bank: Bank, tellers: list[Any], accounts: list[Any]) -> list[str]:
    """What keeps the bank from being quiet, by name (empty: quiet)."""
    busy = [
        f"{name} paused={t['paused']} in_flight={t['in_flight']}"
        for name, t in zip(bank.teller_names(), tellers, strict=True)
        if not t["paused"] or t["in_flight"] != 0
    ]
    busy += [
        f"{name} owed={a['owed']}"
        for name, a in zip(bank.account_names(), accounts, strict=True)
        if a["owed"] != 0
    ]
    debited = sum(a["debited"] for a in accounts)
    credited = sum(a["credited"] for a in accounts)
    if debited != credited:
        busy.append(f"debited {debited} != credited {credited}")
    return busy


async def _ask(node: rebeam.Node, names: list[str], msg: Any) -> list[dict[str, Any]]:
    calls: list[Awaitable[Any]] = [node.call(name, msg, timeout=2.0) for name in names]
    return list(await asyncio.gather(*calls))


def acks_of(run: Running, bank: Bank) -> list[dict[str, Any]]:
    acks = []
    scratch = Findings(bank.total)  # damage was counted once already, by the checker
    for teller in bank.teller_names():
        acks += list(journal_files.records(run.data / f"{teller}.acks.jsonl", scratch))
    return acks
