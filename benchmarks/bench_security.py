"""What security costs: calls and casts on a secured server against an open one.

Two setups of the same layout, each a caller (this process) -> its own nats-server -> one
BenchActor process: on the secured server the actor holds its ACTOR grant and the caller the
tree owner's ADMIN grant, as users run rebeam (docs/security.md); on the open server
(``secure=False``) nobody holds anything. The same payload, both warmed, and the
measurements alternate between them (calls in chunks of ``CHUNK``, casts in bursts), so that
the other load on a shared machine falls on both alike.

Each round starts a fresh pair of setups. Two *identical* open setups measured this way
differ by up to 8% in one run and not in the next (where the scheduler happens to put each
process and the server's threads): a difference one pair of processes carries for its whole
life, that interleaving cannot cancel and several pairs average out. Each row shows the
round whose ratio is the median of the rounds'.

What security adds lives in the server (the callout runs once per connection; each publish
is checked against the connection's permissions), so the casts also report each server's
CPU per message.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rebeam
from benchmarks._harness import Actor, Backend, Processes
from benchmarks._measure import PAYLOAD, Row, a_core_each, cast_rate, cpu_ns, time_each

NAMESPACE = "bench"
WARM_UP = 300
CHUNK = 50  # calls in a row to one setup before the other's turn
CAST_BURSTS = 5  # bursts of casts to each setup per round, alternating


@dataclass(frozen=True)
class Setup:
    """A caller's node, the actor it talks to, and the OS pid of their nats-server."""

    node: rebeam.Node
    actor: Actor
    server_os_pid: int


@dataclass
class Samples:
    call_p50_us: list[float] = field(default_factory=list)
    casts_per_s: list[float] = field(default_factory=list)
    server_ns_per_cast: list[float] = field(default_factory=list)
    total_ns_per_cast: list[float] = field(default_factory=list)  # sender, server, receiver


@contextlib.asynccontextmanager
async def _setup(workdir: Path, secure: bool, mailbox: int) -> AsyncIterator[Setup]:
    procs = Processes()
    backend: Backend | None = None
    try:
        backend = await Backend.start(workdir, (NAMESPACE,), procs, secure=secure)
        actor = await backend.actor(
            "benchmarks.bench_actor:BenchActor", None, "bench-1", namespace=NAMESPACE,
            extra=["--mailbox-max-messages", str(mailbox)],
        )  # fmt: skip
        credentials = backend.client_credentials(NAMESPACE)  # ADMIN; None when open
        async with rebeam.connect(
            backend.url, namespace=NAMESPACE, credentials=credentials
        ) as node:
            assert backend.server.pid is not None
            yield Setup(node, actor, backend.server.pid)
    finally:
        procs.stop()  # the actor ends while its server is still there
        if backend is not None:
            await backend.close()


async def _calls(setups: list[Setup], n: int) -> list[float]:
    """Each setup's call p50 in microseconds, its calls alternating with the others'."""
    for setup in setups:
        for _ in range(WARM_UP):
            await setup.node.call(setup.actor.pid, PAYLOAD)
    samples: list[list[int]] = [[] for _ in setups]
    for _ in range(n // CHUNK):
        for setup, out in zip(setups, samples, strict=True):
            out += await time_each(CHUNK, _caller(setup))
    return [statistics.median(out) / 1000 for out in samples]


def _caller(setup: Setup) -> Callable[[int], Awaitable[Any]]:
    return lambda i: setup.node.call(setup.actor.pid, PAYLOAD)


async def _casts(setups: list[Setup], n: int, into: list[Samples]) -> None:
    """Each setup's casts per second, and the CPU its server and all three processes spent
    per cast, in bursts of ``n`` alternating with the other's."""
    for setup in setups:
        await cast_rate(setup.node, setup.actor.pid, n)
    rates: list[list[float]] = [[] for _ in setups]
    server: list[list[float]] = [[] for _ in setups]
    total: list[list[float]] = [[] for _ in setups]
    for _ in range(CAST_BURSTS):
        for i, setup in enumerate(setups):
            involved = (setup.server_os_pid, setup.actor.os_pid, os.getpid())
            before = [cpu_ns(pid) for pid in involved]
            rates[i].append(await cast_rate(setup.node, setup.actor.pid, n))
            spent = [cpu_ns(pid) - start for pid, start in zip(involved, before, strict=True)]
            server[i].append(spent[0] / n)
            total[i].append(sum(spent) / n)
    med = statistics.median
    for samples, r, c, t in zip(into, rates, server, total, strict=True):
        samples.casts_per_s.append(med(r))
        samples.server_ns_per_cast.append(med(c))
        samples.total_ns_per_cast.append(med(t))


async def measure(workdir: Path, calls: int, casts: int, rounds: int) -> tuple[list[Row], float]:
    """The rows, and the secured call p50 (a call as users make it) in microseconds."""
    secured, open_ = Samples(), Samples()
    pinning = ""
    for r in range(rounds):
        async with (
            _setup(workdir / f"secured-{r}", True, casts * 2) as a,
            _setup(workdir / f"open-{r}", False, casts * 2) as b,
        ):
            for samples, p50 in zip((secured, open_), await _calls([a, b], calls), strict=True):
                samples.call_p50_us.append(p50)
            with a_core_each([a.actor.os_pid, b.actor.os_pid], "receivers") as pinning:
                await _casts([a, b], casts // CAST_BURSTS, [secured, open_])
    rows = _rows(secured, open_, calls, casts, rounds, pinning)
    return rows, _median_round(secured.call_p50_us, open_.call_p50_us)[0]


def _median_round(a: list[float], b: list[float]) -> tuple[float, float, float, str]:
    """The round whose ratio is the median (the lower one of an even count): its two figures
    and its ratio, and the spread of all rounds' ratios. Figures from one round, not the
    medians of each side: rounds run seconds apart, under other load, on fresh processes."""
    rounds = sorted(zip(a, b, strict=True), key=lambda ab: ab[0] / ab[1])
    x, y = rounds[(len(rounds) - 1) // 2]
    lo, hi = rounds[0][0] / rounds[0][1], rounds[-1][0] / rounds[-1][1]
    return x, y, x / y, f"round ratios {lo:.2f}-{hi:.2f}x"


def _rows(
    secured: Samples, open_: Samples, calls: int, casts: int, rounds: int, pinning: str
) -> list[Row]:
    layout = "ADMIN caller -> ACTOR actor, against the same processes on an open server"
    fresh = f"{rounds} rounds, each a fresh pair of setups"
    median = "figures and ratio of the median round"
    call_a, call_b, call, call_spread = _median_round(secured.call_p50_us, open_.call_p50_us)
    cast_a, cast_b, cast, cast_spread = _median_round(secured.casts_per_s, open_.casts_per_s)
    srv_a, srv_b, srv, _ = _median_round(secured.server_ns_per_cast, open_.server_ns_per_cast)
    all_a, all_b, all_, _ = _median_round(secured.total_ns_per_cast, open_.total_ns_per_cast)
    return [
        Row(
            "call p50, secured vs open",
            f"{call_a:.0f} us",
            f"{call_b:.0f} us",
            call,
            "<= 1.05x",
            call <= 1.05,
            note=(
                f"{fresh}, x {calls} calls alternating in chunks of {CHUNK}; {layout}; "
                f"{median}, {call_spread}"
            ),
        ),
        Row(
            "cast throughput, secured vs open",
            f"{cast_a:,.0f}/s",
            f"{cast_b:,.0f}/s",
            cast,
            ">= 0.95x",
            cast >= 0.95,
            note=(
                f"{fresh}, x {CAST_BURSTS} alternating bursts of {casts // CAST_BURSTS} "
                f"casts, counted as handled by the receiver; {layout}; {median}, "
                f"{cast_spread}; {pinning}"
            ),
        ),
        Row(
            "  (for reference) nats-server CPU per cast",
            f"{srv_a / 1000:.2f} us",
            f"{srv_b / 1000:.2f} us",
            srv,
            "-",
            None,
            note="CPU each nats-server spent per cast (schedstat): where security's checks run",
        ),
        Row(
            "  (for reference) CPU per cast, all three",
            f"{all_a / 1000:.1f} us",
            f"{all_b / 1000:.1f} us",
            all_,
            "-",
            None,
            note="sender + nats-server + receiver (schedstat): what other load does not move",
        ),
    ]
