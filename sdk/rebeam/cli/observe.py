"""``rebeam observe``: a web page showing a running tree live (docs/observability.md,
"Observer"), served on 127.0.0.1 to whoever has the token it prints."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from rebeam.cli._common import FAILURES, admin_connect, nats_url
from rebeam.observe.treestate import NoTree

__all__ = ["run_observe"]


def run_observe(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        print(f"rebeam: --port {args.port} is no TCP port (0-65535)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_serve(args))
    except (*FAILURES, NoTree) as exc:
        print(f"rebeam: {exc}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace) -> int:
    from rebeam.observe.server import Observer  # aiohttp: only this command needs it

    url = nats_url(args)
    nc, pid = await admin_connect(args)
    nc.options["allow_reconnect"] = True  # a NATS restart is waited out, as `events` does
    observer = Observer(nc, pid, args.namespace, title=f"namespace {args.namespace} ({url})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await observer.start(args.host, args.port)
        except OSError as exc:
            print(
                f"rebeam: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
            )
            return 1
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(
            f"rebeam observe: namespace {args.namespace} at "
            f"http://{shown}:{observer.port}/?token={observer.token}",
            flush=True,
        )
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            print(
                f"rebeam: listening on {args.host}: anyone who can reach it and has the "
                "token can restart children; HTTP is not encrypted",
                file=sys.stderr,
            )
        await stop.wait()
        return 0
    finally:
        await observer.stop()
        await nc.close()
