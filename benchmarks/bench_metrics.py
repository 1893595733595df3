"""What metrics cost (docs/observability.md): cast throughput and call p50 between the same
sender and two receivers that differ only in ``REBEAM_METRICS`` (on: the default; off: no
handler timings), the sender's own call timing switched with them. Rounds alternate off
and on, so the machine's other load falls on both alike; each figure is the median. The
receiver's CPU per cast (schedstat) is the steadiest of the three on a shared machine: other
load slows a round down, it does not make the receiver work more."""

from __future__ import annotations

import statistics

import rebeam
from benchmarks._harness import Backend
from benchmarks._measure import PAYLOAD, Row, a_core_each, cast_rate, cpu_ns, p50_us, time_each
from rebeam import metrics
from rebeam.auth.grants import Role

NAMESPACE = "bench"
TARGET = "benchmarks.bench_actor:BenchActor"


async def measure(backend: Backend, n: int, rounds: int) -> list[Row]:
    actors = {}
    for setting in ("off", "on"):
        actors[setting] = await backend.actor(
            TARGET, None, f"bench-metrics-{setting}", namespace=NAMESPACE,
            extra=["--mailbox-max-messages", str(n * 50)], env={"REBEAM_METRICS": setting},
        )  # fmt: skip
    casts: dict[str, list[float]] = {"off": [], "on": []}
    calls: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    owner = backend.client_credentials(NAMESPACE, Role.BACKEND)
    enabled = metrics.ENABLED
    async with rebeam.connect(backend.url, namespace=NAMESPACE, credentials=owner) as node:
        with a_core_each([a.os_pid for a in actors.values()], "receivers") as pinning:
            for setting, actor in actors.items():  # warm both
                metrics.ENABLED = setting == "on"
                await cast_rate(node, actor.pid, n)
            try:
                for round_ in range(rounds):
                    # Which goes first swaps every round: the second of a pair ran warmer.
                    pair = list(actors.items())
                    for setting, actor in pair if round_ % 2 else reversed(pair):
                        metrics.ENABLED = setting == "on"
                        before = cpu_ns(actor.os_pid)
                        casts[setting].append(await cast_rate(node, actor.pid, n * 25))
                        cpu[setting].append((cpu_ns(actor.os_pid) - before) / (n * 25))
                        timed = await time_each(n, lambda i, a=actor: node.call(a.pid, PAYLOAD))
                        calls[setting].append(p50_us(timed))
            finally:
                metrics.ENABLED = enabled
    cast_off, cast_on = statistics.median(casts["off"]), statistics.median(casts["on"])
    call_off, call_on = statistics.median(calls["off"]), statistics.median(calls["on"])
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    note = f"{rounds} rounds, alternating; {pinning}"
    return [
        Row(
            "cast throughput, metrics on vs off",
            f"{cast_on:,.0f}/s",
            f"{cast_off:,.0f}/s",
            cast_on / cast_off,
            ">= 0.95x",
            cast_on / cast_off >= 0.95,
            note=f"{n * 25} casts a round; {note}",
        ),
        Row(
            "receiver CPU per cast, metrics on vs off",
            f"{cpu_on / 1000:.1f} us",
            f"{cpu_off / 1000:.1f} us",
            cpu_on / cpu_off,
            "<= 1.05x",
            cpu_on / cpu_off <= 1.05,
            note="CPU the receiving process spent per cast (schedstat)",
        ),
        Row(
            "call p50, metrics on vs off",
            f"{call_on:.0f} us",
            f"{call_off:.0f} us",
            call_on / call_off,
            "<= 1.05x",
            call_on / call_off <= 1.05,
            note=f"{n} calls a round; {note}",
        ),
    ]
