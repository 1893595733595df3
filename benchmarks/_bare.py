"""The RSS baseline: a bare Python process that imports nats and connects, then idles."""

import asyncio
import sys

import nats


async def main() -> None:
    nc = await nats.connect(sys.argv[1])
    print("ready", flush=True)
    await asyncio.sleep(3600)
    await nc.close()


asyncio.run(main())
