"""The RSS baseline: a bare Python process that imports nats and connects, then idles.

On a secured server it authenticates as an actor does, with the token in the file named by
``REBEAM_CREDENTIALS_FILE``. It runs on the loop an actor runs on (uvloop if installed, unless
``REBEAM_LOOP=asyncio``), without importing rebeam for it: uvloop's memory is the loop's, not
rebeam's."""

import asyncio
import os
import sys
from collections.abc import Callable

import nats


def token() -> str | None:
    path = os.environ.get("REBEAM_CREDENTIALS_FILE")
    if not path:
        return None
    with open(path) as source:
        return source.read().strip()


async def main(token: str | None) -> None:
    nc = await nats.connect(sys.argv[1], token=token)
    print("ready", flush=True)
    await asyncio.sleep(3600)
    await nc.close()


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if os.environ.get("REBEAM_LOOP", "auto") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


with asyncio.Runner(loop_factory=loop_factory()) as runner:
    runner.run(main(token()))
