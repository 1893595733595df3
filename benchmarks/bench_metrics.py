"""What metrics cost (docs/observability.md): cast throughput and call p50 between the same
sender and the same receiver, with the receiver's metrics on (the default) and off (no
handler timings), switched by a call between turns, and the sender's own call timing switched
with them. The switch is what ``REBEAM_METRICS`` sets at a process's start, read at every
timing, so a process switched off at run time runs the code of one started off.

One receiver for both settings, not one process each: two receivers started alike (both on)
differed by up to 10% in cast throughput and CPU per cast, run after run, a process's own luck
(where its objects landed, its hash seed) that a 5% target cannot see through. Rounds
alternate off and on, the first of each pair swapping every round; each figure is the median
of its setting's rounds. The receiver's CPU per cast (schedstat) is the steadiest of the three
on a shared machine: other load slows a round down, it does not make the receiver work more."""

from __future__ import annotations

import rebeam
from benchmarks._harness import Backend
from benchmarks._measure import (
    PAYLOAD,
    Row,
    a_core_each,
    cast_rate,
    cpu_ns,
    p50_us,
    paired,
    time_each,
)
from benchmarks.bench_actor import METRICS_SWITCH
from rebeam import metrics
from rebeam.auth.grants import Role
from rebeam.pids import Pid

NAMESPACE = "bench"
TARGET = "benchmarks.bench_actor:BenchActor"
SETTINGS = ("off", "on")


CASTS = 8  # casts a round, per call of the round (n calls)
ROUNDS = 3  # rounds, per round asked for: many short rounds, the median of their ratios


async def measure(backend: Backend, n: int, rounds: int) -> list[Row]:
    """``rounds`` x :data:`ROUNDS` rounds, each ``n // 2`` calls and ``n // 2`` x
    :data:`CASTS` casts per setting."""
    n, rounds = n // 2, rounds * ROUNDS
    actor = await backend.actor(
        TARGET, None, "bench-metrics", namespace=NAMESPACE,
        extra=["--mailbox-max-messages", str(n * 50)], env={"REBEAM_METRICS": "on"},
    )  # fmt: skip
    casts: dict[str, list[float]] = {"off": [], "on": []}
    calls: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    owner = backend.client_credentials(NAMESPACE, Role.BACKEND)
    enabled = metrics.ENABLED
    async with rebeam.connect(backend.url, namespace=NAMESPACE, credentials=owner) as node:
        with a_core_each([actor.os_pid], "receiver") as pinning:
            try:
                for setting in SETTINGS:  # warm both
                    await _switch(node, actor.pid, setting)
                    await cast_rate(node, actor.pid, n)
                for round_ in range(rounds):
                    # Which goes first swaps every round: the second of a pair ran warmer.
                    for setting in SETTINGS if round_ % 2 else reversed(SETTINGS):
                        await _switch(node, actor.pid, setting)
                        before = cpu_ns(actor.os_pid)
                        casts[setting].append(await cast_rate(node, actor.pid, n * CASTS))
                        cpu[setting].append((cpu_ns(actor.os_pid) - before) / (n * CASTS))
                        timed = await time_each(n, lambda i: node.call(actor.pid, PAYLOAD))
                        calls[setting].append(p50_us(timed))
            finally:
                metrics.ENABLED = enabled
    cast, call = paired(casts["on"], casts["off"]), paired(calls["on"], calls["off"])
    receiver = paired(cpu["on"], cpu["off"])
    note = (
        f"{rounds} rounds, alternating, one receiver switched off and on by a call; median "
        f"of the round ratios"
    )
    return [
        Row(
            "cast throughput, metrics on vs off",
            f"{cast.ours:,.0f}/s",
            f"{cast.theirs:,.0f}/s",
            cast.ratio,
            ">= 0.95x",
            cast.ratio >= 0.95,
            note=f"{n * CASTS} casts a round; {note} ({cast.spread}); {pinning}",
        ),
        Row(
            "receiver CPU per cast, metrics on vs off",
            f"{receiver.ours / 1000:.1f} us",
            f"{receiver.theirs / 1000:.1f} us",
            receiver.ratio,
            "<= 1.05x",
            receiver.ratio <= 1.05,
            note=f"CPU the receiving process spent per cast (schedstat) ({receiver.spread})",
        ),
        Row(
            "call p50, metrics on vs off",
            f"{call.ours:.0f} us",
            f"{call.theirs:.0f} us",
            call.ratio,
            "<= 1.05x",
            call.ratio <= 1.05,
            note=f"{n} calls a round; {note} ({call.spread})",
        ),
    ]


async def _switch(node: rebeam.Node, receiver: Pid, setting: str) -> None:
    """Metrics on or off in this process (the sender's call timing) and in the receiver."""
    on = setting == "on"
    metrics.ENABLED = on
    if await node.call(receiver, [METRICS_SWITCH, on]) is not on:
        raise RuntimeError(f"the receiver did not switch its metrics {setting}")
