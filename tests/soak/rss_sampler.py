"""The soak's memory sampler, a process of its own: every INTERVAL seconds it reads the RSS
of each process of a family from /proc and appends it to a JSON-lines file. In the soak's
own process it would share the GIL with whatever else runs there (on Kubernetes, the test
kubelet and the control plane's clients), and a sample is due whether or not they let go.

    python -m tests.soak.rss_sampler ROOT INTERVAL OUT [--with-root] [--marker TEXT]

The family is :func:`tests.soak.procs.family` of ROOT (and ROOT itself with --with-root).
The first line says the sampler runs (``{"interval": ...}``); then, for each process the
first time it is seen (a reused pid again), ``{"pid": ..., "argv": [...]}``, and at every
round ``{"t": <unix time>, "pid": ..., "rss": <bytes>}``. Lines are written whole and at
once, so a reader never waits for the sampler to end, and a SIGTERM loses nothing read.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TextIO

from tests.soak import procs


def sample_once(
    out: TextIO, root: int, with_root: bool, marker: str | None, known: dict[int, int | None]
) -> None:
    now = time.time()
    for os_pid in [*([root] if with_root else []), *procs.family(root, marker)]:
        size = procs.rss_bytes(os_pid)
        if not size or not procs.alive(os_pid):  # 0: exiting, its memory gone already
            continue
        born = procs.start_time(os_pid)
        if known.get(os_pid, -1) != born:
            known[os_pid] = born
            out.write(json.dumps({"pid": os_pid, "argv": procs.command(os_pid)}) + "\n")
        out.write(json.dumps({"t": now, "pid": os_pid, "rss": size}) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.soak.rss_sampler")
    parser.add_argument("root", type=int)
    parser.add_argument("interval", type=float)
    parser.add_argument("out")
    parser.add_argument("--with-root", action="store_true")
    parser.add_argument("--marker")
    args = parser.parse_args(argv)
    known: dict[int, int | None] = {}
    with open(args.out, "a", buffering=1) as out:  # line-buffered: each line written whole
        out.write(json.dumps({"interval": args.interval}) + "\n")
        due = time.monotonic()
        while True:
            sample_once(out, args.root, args.with_root, args.marker, known)
            due += args.interval
            late = time.monotonic() - due
            if late > 0:  # a round missed (the machine was busy): the next one now
                due += args.interval * (late // args.interval + 1)
            time.sleep(max(0.0, due - time.monotonic()))


if __name__ == "__main__":
    main()
