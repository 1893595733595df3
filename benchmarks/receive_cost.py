"""What receiving a cast costs, in instructions: ``python -m benchmarks.receive_cost``.

Throughput on a shared 2-core machine swings from run to run (docs/sdk.md); an instruction
count does not. One process connects to a real nats-server, and nats-py's own parser is fed
ready-made MSG frames: casts to an actor's mailbox (its real callback), or payloads to a raw
nats-py subscriber that decodes them, as any real one does (the cast target's baseline).
Each is run under ``valgrind --tool=callgrind`` twice, with ``SMALL`` and ``LARGE`` messages;
the difference over the difference in messages is the cost of one message, start-up and
imports cancelled out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the measured process needs none of it
    from rebeam.natsd import NatsServer
    from rebeam.pids import Pid

SMALL, LARGE = 2000, 6000
FRAMES_PER_PARSE = 100


def _frames(sid: int, subject: str, payload: bytes) -> bytes:
    one = f"MSG {subject} {sid} {len(payload)}\r\n".encode() + payload + b"\r\n"
    return one * FRAMES_PER_PARSE


async def _receive(kind: str, count: int, url: str) -> None:
    """The measured process: receive ``count`` messages of ``kind`` ("rebeam" or "raw")."""
    import rebeam
    from rebeam import _codec, _subjects
    from rebeam._actor import Host
    from rebeam._envelope import CAST, pack_mailbox
    from rebeam._node import Node
    from rebeam.pids import Pid

    handled = [0]

    class Counter(rebeam.Actor):
        async def handle_cast(self, message: object) -> None:
            handled[0] += 1

    pid = _pid(kind, count)
    node = await Node.connect(
        url, namespace="bench", pid=pid, is_client=False, start=False, lease=False,
        mailbox_max_messages=10**6, mailbox_max_bytes=10**9,
    )  # fmt: skip
    Host(node, Counter())
    await node.start(lease=False)
    node.delivering.set()

    async def raw(msg: Any) -> None:
        handled[0] += 1
        _codec.decode(msg.data)

    body = {"n": 1, "data": "x" * 32}
    if kind == "rebeam":
        sender = Pid.parse("bench.client-0123456789abcdef.1")
        payload = pack_mailbox(CAST, body)
        # The subject names the sender, as the server lets only that sender publish it.
        chunk = _frames(node._subs[0]._id, _subjects.mailbox(pid, sender), payload)
    else:
        sub = await node.nc.subscribe(
            "raw.cast", cb=raw, pending_msgs_limit=10**6, pending_bytes_limit=10**9
        )
        chunk = _frames(sub._id, "raw.cast", _codec.encode(body))
    for _ in range(count // FRAMES_PER_PARSE):
        await node.nc._ps.parse(chunk)
        await asyncio.sleep(0)  # let the subscription's task drain what was parsed
    # Every message was parsed: each is handled or refused (counted) within this loop's
    # turns, so a refusal ends it at once instead of waiting for what never comes.
    while handled[0] + _refused(node) < count:  # noqa: ASYNC110 - yielding is the point
        await asyncio.sleep(0)
    if handled[0] < count:
        print(f"{count - handled[0]} of {count} refused: {node.stats}", file=sys.stderr)
        os._exit(1)
    os._exit(0)  # no teardown in the count


def _pid(kind: str, count: int) -> Pid:
    """The measured process's pid: one of its own per run, since the server's issuer ties a
    pid to the first credential it let in."""
    from rebeam.pids import Pid

    return Pid.for_incarnation("bench", f"receiver-{kind}-{count}", 1)


def _refused(node: Any) -> int:
    stats = node.stats
    return int(
        stats.forged
        + stats.malformed
        + stats.misaddressed
        + stats.oversized
        + stats.mailbox_refused
    )


def _instructions(kind: str, count: int, server: NatsServer, workdir: Path) -> int:
    from benchmarks._callgrind import instructions
    from rebeam.auth.grants import Grant, Role

    # The receiver connects as an actor does, with a credential of its own; the raw
    # subscriber's subject is no actor's, so it gets a BACKEND grant. (The server is not in
    # what is counted: the frames are fed to the client's parser.)
    pid = _pid(kind, count)
    grant = Grant(Role.ACTOR if kind == "rebeam" else Role.BACKEND, "bench", pid)
    args = ["--receive", kind, str(count), server.url]
    return instructions("benchmarks.receive_cost", args, server.credentials(grant) or "", workdir)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.receive_cost")
    parser.add_argument("--receive", nargs=3, metavar=("KIND", "COUNT", "URL"), help="internal")
    args = parser.parse_args()
    if args.receive:
        kind, count, url = args.receive
        asyncio.run(_receive(kind, int(count), url))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts")
        return 0
    from rebeam.natsd import NatsServer, ServerOptions

    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer.start(Path(tmp) / "nats", ServerOptions(namespaces=("bench",))) as server,
    ):
        cost = {}
        for kind in ("raw", "rebeam"):
            small = _instructions(kind, SMALL, server, Path(tmp))
            large = _instructions(kind, LARGE, server, Path(tmp))
            cost[kind] = (large - small) / (LARGE - SMALL)
    print("instructions to receive one cast (callgrind; nats-py's parser fed MSG frames)")
    print(f"  raw nats-py subscriber, decoding it   : {cost['raw'] / 1000:6.1f} k")
    print(f"  rebeam actor, async handle_cast       : {cost['rebeam'] / 1000:6.1f} k")
    print(f"  raw / rebeam                          : {cost['raw'] / cost['rebeam']:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
