"""What sending a cast costs the sender, in instructions: ``python -m benchmarks.send_cost``.

The throughput benchmark's sender CPU per cast moves with the machine's load; an instruction
count does not. One process connects to a real nats-server and sends casts in bursts, the
event loop turning between bursts so that nats-py's flusher writes them, as in the
throughput benchmark: ``Node.cast`` (``node``), the module-level ``rebeam.cast`` (``api``),
or a raw nats-py publish of the same value, encoded for each message, on the same subject and
connection (``raw``, the throughput benchmark's baseline). Each is run under ``valgrind
--tool=callgrind`` twice, with ``SMALL`` and ``LARGE`` casts; the difference over the
difference in casts is the cost of one, start-up and imports cancelled out. Nobody receives
the casts (the target pid has no process): the receiver is measured by
``benchmarks.receive_cost``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: the measured process needs none of it
    from rebeam.natsd import NatsServer

SMALL, LARGE = 4000, 12000
BURST = 1000  # casts between two turns of the loop
KINDS = ("raw", "node", "api")


async def _send(kind: str, count: int, url: str) -> None:
    """The measured process: send ``count`` casts of ``kind``."""
    import rebeam
    from rebeam import _codec
    from rebeam._api import set_default_node
    from rebeam._node import Node
    from rebeam.pids import Pid

    body = {"n": 1, "data": "x" * 32}  # the throughput benchmark's PAYLOAD
    sender = Pid.for_incarnation("bench", f"sender-{kind}-{count}", 1)
    node = await Node.connect(url, namespace="bench", pid=sender, lease=False)
    target = Pid.for_incarnation("bench", "nobody", 1)
    set_default_node(node)
    subject = node._mailbox_of(target)
    publish, encode, cast = node.nc.publish, _codec.encode, node.cast
    for _ in range(count // BURST):
        if kind == "raw":
            for _ in range(BURST):
                await publish(subject, encode(body))
        elif kind == "node":
            for _ in range(BURST):
                await cast(target, body)
        else:
            for _ in range(BURST):
                await rebeam.cast(target, body)
        await asyncio.sleep(0)  # nats-py's flusher writes the burst
    await node.nc.flush()
    os._exit(0)  # no teardown in the count


def _instructions(kind: str, count: int, server: NatsServer, workdir: Path) -> int:
    from benchmarks._callgrind import instructions
    from rebeam.auth.grants import Grant, Role
    from rebeam.pids import Pid

    # A BACKEND grant: the raw publish and the cast go out on the same connection, which
    # may publish on any subject (the server's checks are not in what is counted).
    pid = Pid.for_incarnation("bench", f"sender-{kind}-{count}", 1)
    credential = server.credentials(Grant(Role.BACKEND, "bench", pid)) or ""
    args = ["--send", kind, str(count), server.url]
    return instructions("benchmarks.send_cost", args, credential, workdir)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.send_cost")
    parser.add_argument("--send", nargs=3, metavar=("KIND", "COUNT", "URL"), help="internal")
    parser.add_argument("--kinds", default=",".join(KINDS), help="of raw,node,api (all)")
    args = parser.parse_args()
    if args.send:
        kind, count, url = args.send
        from rebeam import _loop

        _loop.run(_send(kind, int(count), url))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts")
        return 0
    from rebeam.natsd import NatsServer, ServerOptions

    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer.start(Path(tmp) / "nats", ServerOptions(namespaces=("bench",))) as server,
    ):
        cost = dict.fromkeys(KINDS, float("nan"))
        for kind in args.kinds.split(","):
            small = _instructions(kind, SMALL, server, Path(tmp))
            large = _instructions(kind, LARGE, server, Path(tmp))
            cost[kind] = (large - small) / (LARGE - SMALL)
    print("instructions to send one cast (callgrind; bursts of casts, the loop turning between)")
    print(f"  raw nats-py publish, encoding it   : {cost['raw'] / 1000:6.1f} k")
    print(f"  rebeam Node.cast                   : {cost['node'] / 1000:6.1f} k")
    print(f"  rebeam.cast (the current node's)   : {cost['api'] / 1000:6.1f} k")
    print(f"  raw / Node.cast                    : {cost['raw'] / cost['node']:6.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
