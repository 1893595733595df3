"""What sending costs the sender, in instructions: ``python -m benchmarks.send_cost``.

The throughput benchmark's sender CPU per cast and the call's latency move with the machine's
load; an instruction count does not. One process connects to a real nats-server and sends:

* casts, in bursts, the event loop turning between bursts so that nats-py's flusher writes
  them, as in the throughput benchmark: ``Node.cast`` (``node``), the module-level
  ``rebeam.cast`` (``api``), or a raw nats-py publish of the same value, encoded for each
  message, on the same subject from a plain nats-py connection with the same credential
  (``raw``, the throughput benchmark's baseline). Nobody receives them (the target pid has
  no process): the receiver is measured by ``benchmarks.receive_cost``.
* calls, one after the other, to a real actor in a process of its own (the benchmarks'
  ``BenchActor``, which also answers the raw baseline, on a plain nats-py connection of its
  own, as in the call benchmark): ``Node.call`` (``node-call``), ``rebeam.call``
  (``api-call``), nats-py's ``request`` of the same value, encoded, and its answer decoded,
  on a plain nats-py connection (``raw-call``, the call benchmark's baseline: rebeam's own
  connections are read by rebeam._reader, and the baseline is what a nats-py program gets),
  and the least a caller on nats-py must do (``least-call``: encode, one PUB with a reply
  subject written at once, one future, the answer decoded where the frame is parsed; no
  timeout, no bookkeeping; on rebeam's connection). Only the caller is counted: the actor's
  work is in another process, and the wait for it is no instructions.

Each kind is run under ``valgrind --tool=callgrind`` twice, with a small and a large count;
the difference over the difference in messages is the cost of one, start-up and imports
cancelled out.

``--traced`` counts ``Node.call`` by a caller that traces (an SDK provider with its default
sampler, every span recorded by a ``SimpleSpanProcessor`` to an exporter that keeps
nothing) against the same call untraced: ``full`` counts everything, the SDK's span
included; ``path`` drops the spans put off for later (``Tracing.finish`` ends none), which
leaves what tracing adds before the request is written and after the reply, the SDK's span
taken out (the actor's side: ``benchmarks.receive_cost --traced``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the measured process needs none of it
    from benchmarks._harness import Backend
    from rebeam._node import Node
    from rebeam.pids import Pid

SMALL, LARGE = 4000, 12000
CALL_SMALL, CALL_LARGE = 1000, 3000
BURST = 1000  # casts between two turns of the loop
CASTS = ("raw", "node", "api")
CALLS = ("raw-call", "node-call", "api-call", "least-call")
KINDS = CASTS + CALLS
TRACED = ("off", "path", "full")
NAMESPACE = "bench"
PREFIX = "bench.raw.cost"  # the actor's raw subjects (benchmarks.bench_actor)
BODY = {"n": 1, "data": "x" * 32}  # the benchmarks' PAYLOAD


async def _send(kind: str, count: int, url: str, target: Pid, traced: str) -> None:
    """The measured process: send ``count`` messages of ``kind`` to ``target``; ``traced``:
    "off", or how much of a traced caller's work to keep (module docstring)."""
    from rebeam._api import set_default_node
    from rebeam._node import Node

    if traced != "off":
        from benchmarks.receive_cost import _trace_nowhere

        _trace_nowhere()
    pid = _pid(kind, count, traced)
    node = await Node.connect(
        url, namespace=NAMESPACE, pid=pid, lease=False, tracing=traced != "off"
    )
    tracing = node._tracing
    if traced == "path" and tracing is not None:
        tracing.finish = tracing._ending.clear  # type: ignore[method-assign]
    set_default_node(node)
    raw_nc = await _plain(url) if kind.startswith("raw") else node.nc
    if kind in CASTS:
        await _casts(node, raw_nc, kind, count, target)
    else:
        run = _caller(node, raw_nc, kind, target)
        for _ in range(count):
            await run()
    await raw_nc.flush()
    await node.nc.flush()
    os._exit(0)  # no teardown in the count


async def _plain(url: str) -> Any:
    """A plain nats-py connection with this process's credential: the raw kinds' own."""
    import nats

    from rebeam._connecting import credentials_from_environment

    credentials = credentials_from_environment()
    token = credentials() if callable(credentials) else credentials
    return await nats.connect(url, token=token)


async def _casts(node: Node, raw_nc: Any, kind: str, count: int, target: Pid) -> None:
    import rebeam
    from rebeam import _codec

    subject = node._mailbox_of(target)
    publish, encode, cast = raw_nc.publish, _codec.encode, node.cast
    for _ in range(count // BURST):
        if kind == "raw":
            for _ in range(BURST):
                await publish(subject, encode(BODY))
        elif kind == "node":
            for _ in range(BURST):
                await cast(target, BODY)
        else:
            for _ in range(BURST):
                await rebeam.cast(target, BODY)
        await asyncio.sleep(0)  # nats-py's flusher writes the burst


def _caller(node: Node, raw_nc: Any, kind: str, target: Pid) -> Callable[[], Awaitable[Any]]:
    """One call of ``kind``, as a function of no arguments."""
    import rebeam
    from rebeam import _codec

    nc, encode, decode = raw_nc, _codec.encode, _codec.decode
    if kind == "node-call":
        return lambda: node.call(target, BODY)
    if kind == "api-call":
        return lambda: rebeam.call(target, BODY)
    if kind == "least-call":
        return _least_call(node, target)

    async def raw_call() -> Any:  # what the call benchmark's raw caller does
        return decode((await nc.request(f"{PREFIX}.call", encode(BODY), timeout=5)).data)

    return raw_call


def _least_call(node: Node, target: Pid) -> Callable[[], Awaitable[Any]]:
    """The floor: what a caller on nats-py cannot do without (an envelope encoded, a PUB with
    a reply subject written at once, a future its answer is decoded into in the read loop)."""
    from rebeam._envelope import CALL, unpack_reply
    from rebeam._fastpath import handle_inline, publish_now

    nc, subject = node.nc, node._mailbox_of(target)
    reply = f"{node._inbox}.least"
    waiting: list[asyncio.Future[Any]] = []

    def on_reply(subject: bytes, data: bytes, headers: Any) -> None:
        waiting.pop().set_result(unpack_reply(data))

    sub = node._subs[1]  # the reply inbox's subscription: its handler becomes the floor's
    handle_inline(nc, sub._id, on_reply)
    encode, call = node._envelope, int(CALL)  # the envelope a call carries

    def least() -> Awaitable[Any]:
        fut = asyncio.get_running_loop().create_future()
        waiting.append(fut)
        publish_now(nc, subject, encode(call, BODY), reply)
        return fut

    return least


def _pid(kind: str, count: int, traced: str = "off") -> Pid:
    """The measured process's pid: one of its own per run, since the server's issuer ties a
    pid to the first credential it let in."""
    from rebeam.pids import Pid

    name = f"sender-{kind}-{count}" + ("" if traced == "off" else f"-traced-{traced}")
    return Pid.for_incarnation(NAMESPACE, name, 1)


def _instructions(
    kind: str, count: int, backend: Backend, target: Pid, workdir: Path, traced: str = "off"
) -> int:
    from benchmarks._callgrind import instructions
    from rebeam.auth.grants import Grant, Role

    # A BACKEND grant: the raw messages and rebeam's go out on the same connection, which
    # may publish on any subject (the server's checks are not in what is counted).
    grant = Grant(Role.BACKEND, NAMESPACE, _pid(kind, count, traced))
    credential = backend.server.credentials(grant) or ""
    args = ["--send", kind, str(count), backend.url, str(target), traced]
    return instructions("benchmarks.send_cost", args, credential, workdir)


async def _measure(kinds: list[str], workdir: Path, traced: bool = False) -> dict[str, float]:
    from benchmarks._harness import Backend, Processes
    from rebeam.auth.grants import Role
    from rebeam.pids import Pid

    procs = Processes()
    backend = await Backend.start(workdir, (NAMESPACE,), procs)
    try:
        target = Pid.for_incarnation(NAMESPACE, "nobody", 1)  # casts: nobody is there
        if any(kind in CALLS for kind in kinds):
            actor = await backend.actor(
                "benchmarks.bench_actor:BenchActor", {"prefix": PREFIX}, "cost-actor",
                namespace=NAMESPACE, role=Role.BACKEND,
            )  # fmt: skip
            target = actor.pid
        cost = dict.fromkeys(KINDS, float("nan"))
        for kind in kinds:
            small, large = (SMALL, LARGE) if kind in CASTS else (CALL_SMALL, CALL_LARGE)
            for variant in TRACED if traced else ("off",):
                counted = [
                    await asyncio.to_thread(
                        _instructions, kind, n, backend, target, workdir, variant
                    )
                    for n in (small, large)
                ]
                cost[kind if not traced else variant] = (counted[1] - counted[0]) / (large - small)
        return cost
    finally:
        procs.stop()  # the actor ends while its server is still there
        await backend.close()


def _print(cost: dict[str, float]) -> None:
    def k(kind: str) -> str:
        return f"{cost[kind] / 1000:6.1f} k"

    print("instructions to send one cast (callgrind; bursts of casts, the loop turning between)")
    print(f"  raw nats-py publish, encoding it   : {k('raw')}")
    print(f"  rebeam Node.cast                   : {k('node')}")
    print(f"  rebeam.cast (the current node's)   : {k('api')}")
    print(f"  raw / Node.cast                    : {cost['raw'] / cost['node']:6.2f}x")
    print("instructions the caller spends on one call (callgrind; a real actor answers)")
    print(f"  raw nats-py request, en/decoding   : {k('raw-call')}")
    print(f"  rebeam Node.call                   : {k('node-call')}")
    print(f"  rebeam.call (the current node's)   : {k('api-call')}")
    print(f"  the least a caller must do         : {k('least-call')}")
    print(f"  raw / Node.call                    : {cost['raw-call'] / cost['node-call']:6.2f}x")


def _print_traced(cost: dict[str, float]) -> None:
    off, path, full = (cost[variant] / 1000 for variant in TRACED)
    print("instructions the caller spends on one Node.call (callgrind; a real actor answers)")
    print(f"  {'untraced':<38}: {off:6.1f} k")
    print(f"  {'traced, the spans put off dropped':<38}: {path:6.1f} k  (+{path - off:.1f} k)")
    print(f"  {'traced, everything':<38}: {full:6.1f} k  (+{full - off:.1f} k)")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.send_cost")
    parser.add_argument(
        "--send", nargs=5, metavar=("KIND", "COUNT", "URL", "TARGET", "TRACED"), help="internal"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"of {','.join(KINDS)} (all)")
    parser.add_argument(
        "--traced", action="store_true", help="Node.call by a caller that traces, against untraced"
    )
    args = parser.parse_args()
    from rebeam import _loop

    if args.send:
        from rebeam.pids import Pid

        kind, count, url, target, traced = args.send
        _loop.run(_send(kind, int(count), url, Pid.parse(target), traced))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.traced:
            _print_traced(_loop.run(_measure(["node-call"], Path(tmp), traced=True)))
        else:
            _print(_loop.run(_measure(args.kinds.split(","), Path(tmp))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
