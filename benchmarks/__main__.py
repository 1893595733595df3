"""Run every benchmark and print one table of ratios: ``python -m benchmarks [--quick]``.

Measurements alternate between rebeam and its baseline in rounds, so that the other load on
a shared machine falls on both alike; each figure is the median of the rounds. Everything
runs on a secured server, as users run rebeam (benchmarks/_harness.py); the rows that say
"secured vs open" compare it with an open one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats

import rebeam
from benchmarks import bench_durable, bench_metrics, bench_security, bench_tracing
from benchmarks._harness import Actor, Backend, Processes
from benchmarks._measure import (
    PAYLOAD,
    Row,
    a_core_each,
    alternating_p50s,
    cast_rate,
    cpu_ns,
    p50_us,
    paired,
    print_table,
    time_each,
)
from rebeam import _loop
from rebeam._orphans import die_with_parent
from rebeam.auth.grants import Grant, Role
from rebeam.pids import Pid

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".cache" / "venv-bench"
RAY_VERSION = "2.60.0"
NAMESPACE = "bench"
RAY = "call p50 vs Ray actor call"
BENCH_ACTOR = "benchmarks.bench_actor:BenchActor"
RAW_GRANTS = "both with BACKEND grants: the raw subjects are no actor's"
PLAIN = "the raw arms on plain nats-py connections of their own at both ends"


async def bench_call(
    node: rebeam.Node, raw_nc: Any, pid: Pid, prefix: str, n: int, rounds: int
) -> list[Row]:
    """``raw_nc``: a plain nats-py connection with ``node``'s credential, for the raw arms
    (rebeam's own connections are read by rebeam._reader; the baseline is nats-py's)."""
    raw = rebeam._codec.encode(PAYLOAD)  # the same bytes a rebeam call carries as its body
    decode, encode = rebeam._codec.decode, rebeam._codec.encode

    async def raw_call(i: int) -> Any:
        # What a nats-py program does for a call: encode, request, decode the answer (and the
        # responder decodes the request and encodes its answer), as rebeam does.
        return decode((await raw_nc.request(f"{prefix}.call", encode(PAYLOAD), timeout=5)).data)

    async def raw_echo(i: int) -> Any:
        return await raw_nc.request(f"{prefix}.echo", raw, timeout=5)

    async def ours(i: int) -> Any:
        return await node.call(pid, PAYLOAD)

    for _ in range(300):  # warm every path
        await ours(0)
        await raw_call(0)
        await raw_echo(0)
    p50s: list[list[float]] = [[], [], []]
    for _ in range(rounds):
        this_round = await alternating_p50s(n, 50, [ours, raw_call, raw_echo])
        for out, p50 in zip(p50s, this_round, strict=True):
            out.append(p50)
    codec, echo = paired(p50s[0], p50s[1]), paired(p50s[0], p50s[2])
    how = f"{rounds} rounds x {n} calls, alternating in chunks of 50; median of the round ratios"
    return [
        Row(
            "call p50 vs raw request/reply",
            f"{codec.ours:.0f} us",
            f"{codec.theirs:.0f} us",
            codec.ratio,
            "<= 1.1x",
            codec.ratio <= 1.1,
            note=f"{how} ({codec.spread}), same two processes, {RAW_GRANTS}, {PLAIN}",
        ),
        Row(
            "  (for reference) vs raw bytes echo",
            f"{echo.ours:.0f} us",
            f"{echo.theirs:.0f} us",
            echo.ratio,
            "-",
            None,
            note="the raw responder echoes the bytes, nobody encodes or decodes",
        ),
    ]


async def bench_cast(
    node: rebeam.Node, raw_nc: Any, actor: Actor, prefix: str, n: int, rounds: int
) -> list[Row]:
    with a_core_each([actor.os_pid]) as pinning:
        return await _bench_cast(node, raw_nc, actor, prefix, n, rounds, pinning)


CAST_CHUNKS = 5  # each cast round: the three take turns, a fifth of the messages at a time


async def _bench_cast(
    node: rebeam.Node, raw_nc: Any, actor: Actor, prefix: str, n: int, rounds: int, pinning: str
) -> list[Row]:
    raw = rebeam._codec.encode(PAYLOAD)
    encode = rebeam._codec.encode

    async def ours(count: int) -> float:
        return await cast_rate(node, actor.pid, count)

    # A request on the cast subject ends a round, as the call does for rebeam's casts.
    # ``decoded``: what a nats-py program that casts values does, as rebeam does: the sender
    # encodes each one, the subscriber decodes it. Otherwise the same bytes, neither.
    async def theirs(count: int, subject: str = f"{prefix}.cast", decoded: bool = False) -> float:
        base = int((await raw_nc.request(f"{prefix}.count", b"", timeout=5)).data)
        publish = raw_nc.publish
        started = time.perf_counter()
        if decoded:
            for _ in range(count):
                await publish(subject, encode(PAYLOAD))
        else:
            for _ in range(count):
                await publish(subject, raw)
        handled = int((await raw_nc.request(subject, b"", timeout=60)).data) - 1  # the marker
        elapsed = time.perf_counter() - started
        if handled - base != count:
            raise RuntimeError(f"{count} messages published, {handled - base} handled")
        return count / elapsed

    async def decoded(count: int) -> float:
        return await theirs(count, f"{prefix}.cast-decoded", decoded=True)

    runs: dict[str, Callable[[int], Awaitable[float]]] = {
        "ours": ours,
        "bare": theirs,
        "decoded": decoded,
    }
    for run in runs.values():  # warm every path
        await run(n // CAST_CHUNKS)
    rates: dict[str, list[float]] = {kind: [] for kind in runs}
    receiver: dict[str, list[float]] = {kind: [] for kind in runs}  # ns per message
    sender: dict[str, list[float]] = {kind: [] for kind in runs}
    me = os.getpid()
    for i in range(rounds):
        # The three take turns in chunks, so that what else loads the machine during a
        # round falls on each alike; the one that goes first changes from round to round
        # (the first burst after a pause runs on caches the others did not warm).
        order = [*runs][i % 3 :] + [*runs][: i % 3]
        elapsed = dict.fromkeys(runs, 0.0)
        receiver_ns = dict.fromkeys(runs, 0)
        sender_ns = dict.fromkeys(runs, 0)
        for _ in range(CAST_CHUNKS):
            for kind in order:
                count = n // CAST_CHUNKS
                them, us = cpu_ns(actor.os_pid), cpu_ns(me)
                elapsed[kind] += count / await runs[kind](count)
                receiver_ns[kind] += cpu_ns(actor.os_pid) - them
                sender_ns[kind] += cpu_ns(me) - us
        for kind in runs:
            rates[kind].append(n / elapsed[kind])
            receiver[kind].append(receiver_ns[kind] / n)
            sender[kind].append(sender_ns[kind] / n)
    bare, versus = paired(rates["ours"], rates["bare"]), paired(rates["ours"], rates["decoded"])
    receiving = paired(receiver["ours"], receiver["decoded"])
    sending = paired(sender["ours"], sender["decoded"])
    return [
        Row(
            "cast throughput vs raw publish",
            f"{versus.ours:,.0f}/s",
            f"{versus.theirs:,.0f}/s",
            versus.ratio,
            ">= 0.9x",
            versus.ratio >= 0.9,
            note=(
                f"{rounds} rounds x {n} messages, counted as handled by the receiver; the raw "
                "sender encodes each value and the raw subscriber decodes it, as any real pair "
                f"does (rebeam must, to call handle_cast); {RAW_GRANTS}; {PLAIN}; in each "
                f"round the three kinds take turns in {CAST_CHUNKS} chunks; median of the round "
                f"ratios ({versus.spread}); {pinning}"
            ),
        ),
        Row(
            "  (for reference) vs raw, not decoding",
            f"{bare.ours:,.0f}/s",
            f"{bare.theirs:,.0f}/s",
            bare.ratio,
            "-",
            None,
            note=f"the same bytes published each time, only counted ({bare.spread})",
        ),
        Row(
            "  (for reference) receiver CPU per cast",
            f"{receiving.ours / 1000:.1f} us",
            f"{receiving.theirs / 1000:.1f} us",
            receiving.ratio,
            "-",
            None,
            note="CPU the receiving process spent per message (schedstat), rebeam vs the raw "
            f"subscriber that decodes ({receiving.spread})",
        ),
        Row(
            "  (for reference) sender CPU per cast",
            f"{sending.ours / 1000:.1f} us",
            f"{sending.theirs / 1000:.1f} us",
            sending.ratio,
            "-",
            None,
            note="CPU the sending process spent per message, rebeam vs the raw sender that "
            "encodes; the side whose CPU per message is nearer 1/throughput bounds the rate "
            f"({sending.spread})",
        ),
    ]


async def bench_whereis(node: rebeam.Node, n: int, rounds: int) -> list[Row]:
    await node.whereis("bench-target")  # starts the node's one name watcher
    cached = p50_us(await time_each(n * 5, lambda i: node.whereis("bench-target")))
    kv = await node.store.kv()
    key = "n.bench-target"
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(
            p50_us(await time_each(n // 4, lambda i: node.whereis("bench-target", cached=False)))
        )
        theirs.append(p50_us(await time_each(n // 4, lambda i: kv.get(key))))
    a, b = statistics.median(ours), statistics.median(theirs)
    return [
        Row(
            "whereis p50, cached",
            f"{cached:.1f} us",
            "20 us (absolute target)",
            cached / 20,
            "<= 20 us",
            cached <= 20,
        ),
        Row(
            "whereis p50, uncached vs raw KV get",
            f"{a:.0f} us",
            f"{b:.0f} us",
            a / b,
            "<= 1.3x",
            a / b <= 1.3,
            note="the tree owner's ADMIN connection, both",
        ),
    ]


def _rss_kib(os_pid: int) -> int:
    for line in Path(f"/proc/{os_pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def bench_rss(backend: Backend) -> Row:
    idle = await backend.actor("benchmarks.bench_actor:Idle", None, "rss-idle", namespace=NAMESPACE)
    # The bare client authenticates like an actor too: the same connection, minus rebeam.
    bare_pid = Pid.for_incarnation(NAMESPACE, "rss-bare", 1)
    credentials = backend.credential_file(Grant(Role.ACTOR, NAMESPACE, bare_pid, label="bare"))
    bare = backend.procs.spawn(
        [sys.executable, str(ROOT / "benchmarks" / "_bare.py"), backend.url],
        credentials,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert bare.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(bare.stdout.readline), 60)
    if not line.startswith(b"ready"):
        raise RuntimeError(f"the bare nats client did not connect ({bare.wait()})")
    await asyncio.sleep(2.0)  # both settle (the actor's lease refresh has run)
    a, b = _rss_kib(idle.os_pid), _rss_kib(bare.pid)
    return Row(
        "idle actor RSS vs bare nats client",
        f"{a / 1024:.1f} MiB",
        f"{b / 1024:.1f} MiB",
        a / b,
        "<= 1.3x",
        a / b <= 1.3,
    )


def _ensure_ray() -> Path | None:
    python = BENCH_VENV / "bin" / "python"
    ok = (
        python.exists()
        and subprocess.call([python, "-c", "import ray"], stderr=subprocess.DEVNULL) == 0
    )
    if not ok:
        print(f"setting up {BENCH_VENV} with ray=={RAY_VERSION} (once)...", file=sys.stderr)
        try:
            subprocess.check_call([sys.executable, "-m", "venv", str(BENCH_VENV)])
            subprocess.check_call([python, "-m", "pip", "install", "-q", f"ray=={RAY_VERSION}"])
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"cannot set up Ray: {exc}", file=sys.stderr)
            return None
    return python


async def bench_ray(node: rebeam.Node, pid: Pid, n: int, rounds: int) -> Row:
    """rebeam's call p50 (the tree owner's ADMIN client to an ACTOR actor, as users run it)
    and Ray's, in rounds that alternate, each side first every other round."""
    python = _ensure_ray()
    if python is None:
        return Row(RAY, "-", "n/a", None, "<= 0.4x", None, "Ray could not be installed")
    ray = await asyncio.create_subprocess_exec(
        python, str(ROOT / "benchmarks" / "_ray_call.py"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    stdin, stdout, stderr = ray.stdin, ray.stdout, ray.stderr
    assert stdin is not None
    assert stdout is not None
    assert stderr is not None

    async def ray_p50() -> float:
        stdin.write(f"{n}\n".encode())
        await stdin.drain()
        line = await asyncio.wait_for(stdout.readline(), 600)
        return float(json.loads(line)["p50_us"])

    async def ours_p50() -> float:
        return p50_us(await time_each(n, lambda i: node.call(pid, PAYLOAD)))

    try:
        ready = await asyncio.wait_for(stdout.readline(), 600)
        if ready.strip() != b"ready":
            err = (await stderr.read())[-300:].decode(errors="replace")
            return Row(RAY, "-", "failed", None, "<= 0.4x", None, err)
        for _ in range(300):  # as many warm-up calls as Ray's
            await node.call(pid, PAYLOAD)
        ours, theirs = [], []
        for i in range(rounds):
            if i % 2:
                ours.append(await ours_p50())
                theirs.append(await ray_p50())
            else:
                theirs.append(await ray_p50())
                ours.append(await ours_p50())
    finally:
        stdin.close()
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(ray.wait(), 60)
        if ray.returncode is None:
            ray.kill()
            await ray.wait()
    p = paired(ours, theirs)
    return Row(
        RAY,
        f"{p.ours:.0f} us",
        f"{p.theirs:.0f} us",
        p.ratio,
        "<= 0.4x",
        p.ratio <= 0.4,
        f"Ray 2.60, local; {rounds} rounds x {n} calls alternating with rebeam's (ADMIN "
        f"client, ACTOR actor); median of the round ratios ({p.spread})",
    )


async def run(
    quick: bool,
    with_ray: bool,
    with_durable: bool = True,
    with_tracing: bool = True,
    messaging_only: bool = False,
) -> list[Row]:
    n, rounds = (500, 3) if quick else (2000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        procs = Processes()
        secured: Backend | None = None
        try:
            secured = await Backend.start(
                Path(tmp) / "secured", (NAMESPACE, bench_durable.NAMESPACE), procs
            )
            raw_call, ray, raw_cast, registry = await _measure(secured, n, rounds, with_ray)
            if messaging_only:
                return [*raw_call, *ray, *raw_cast, *registry]
            costs = await bench_metrics.measure(secured, n, rounds * 2 - 1)
            durable = await bench_durable.measure(secured, n, rounds) if with_durable else []
            tracing = await bench_tracing.measure(secured, n, rounds) if with_tracing else []
        finally:
            procs.stop()  # the actors end while their server is still there
            if secured is not None:
                await secured.close()
        # Each round a fresh pair of servers and actors (see bench_security): more of them.
        security, _ = await bench_security.measure(
            Path(tmp) / "security", n, n * 25, 3 if quick else 9
        )
    return [
        *raw_call, *ray, security[0], *raw_cast, *security[1:], *registry, *costs,
        *(Row(**row) for row in durable), *tracing,
    ]  # fmt: skip


async def _measure(
    backend: Backend, n: int, rounds: int, with_ray: bool
) -> tuple[list[Row], list[Row], list[Row], list[Row]]:
    """The rows against raw nats-py and Ray, and the registry's and memory's, on one secured
    server."""
    prefix = f"bench.raw.{os.getpid()}"
    raw_actor = await backend.actor(
        BENCH_ACTOR, {"prefix": prefix}, "bench-1", namespace=NAMESPACE, role=Role.BACKEND,
        name="bench-target",
        # Throughput, not bounds, is measured here: room for a whole burst, as the raw
        # subscriber's nats-py default (512 Ki messages) has.
        extra=["--mailbox-max-messages", str(n * 50)],
        # A lease refreshed every 20 s, not 5: at load 25-30, a refresh whose answer queued
        # behind a burst of casts for more than its 5 s timeout had landed nonetheless, and
        # the next one (on the old revision) found the lease lost: the actor exited mid-run.
        env={"REBEAM_LEASE_TTL": "60"},
    )  # fmt: skip
    raw_grant = backend.client_credentials(NAMESPACE, Role.BACKEND)
    owner = backend.client_credentials(NAMESPACE)
    raw_nc = await nats.connect(backend.url, token=raw_grant, name="bench-raw-caller")
    try:
        async with (
            rebeam.connect(backend.url, namespace=NAMESPACE, credentials=raw_grant) as raw_node,
            rebeam.connect(backend.url, namespace=NAMESPACE, credentials=owner) as node,
        ):
            call = await bench_call(raw_node, raw_nc, raw_actor.pid, prefix, n, rounds)
            # Throughput swings most from run to run on a shared 2-core machine (three busy
            # processes on two cores): more and longer rounds than the rest.
            casts = await bench_cast(raw_node, raw_nc, raw_actor, prefix, n * 25, rounds * 2 - 1)
            registry = await bench_whereis(node, n, rounds)
            registry.append(await bench_rss(backend))
            ray = []
            if with_ray:
                actor = await backend.actor(BENCH_ACTOR, None, "bench-ray", namespace=NAMESPACE)
                ray.append(await bench_ray(node, actor.pid, n, rounds))
    finally:
        await raw_nc.close()
    return call, ray, casts, registry


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray comparison")
    parser.add_argument(
        "--no-durable", action="store_true", help="skip the durable-mailbox benchmark"
    )
    parser.add_argument(
        "--no-tracing", action="store_true", help="skip the tracing on-vs-off benchmark"
    )
    parser.add_argument(
        "--messaging",
        action="store_true",
        help="only the call, cast and Ray rows (and the registry's, measured alongside)",
    )
    ns = parser.parse_args()
    started = time.monotonic()
    rows = _loop.run(
        run(ns.quick, not ns.no_ray, not ns.no_durable, not ns.no_tracing, ns.messaging)
    )
    print_table(rows)
    elapsed = time.monotonic() - started
    print(
        f"({elapsed:.0f} s; python {sys.version.split()[0]}, {_loop.loop_name()} loop, "
        f"{os.cpu_count()} cpus)"
    )
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
