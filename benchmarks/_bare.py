"""The RSS baseline: a bare Python process that imports nats and connects, then idles.

On a secured server it authenticates as an actor does, with the token in the file named by
``REBEAM_CREDENTIALS_FILE``."""

import asyncio
import os
import sys

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


asyncio.run(main(token()))
