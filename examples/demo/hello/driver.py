"""Drives the demo, one step per message so that Down notices can arrive in between."""

from __future__ import annotations

import asyncio
from typing import Any

import rebeam

RETRY_FOR = 10.0  # seconds to wait for the restarted counter to register again


class Driver(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.visitors = args["visitors"]
        self.send_after(0, "go")  # start once init has returned and the tree is up

    async def handle_info(self, message: Any) -> None:
        if message == "go":
            await self.talk()
        elif isinstance(message, rebeam.Down):
            print(f"counter went down ({message.reason}); waiting for its supervisor")
            await self.after_restart()
            self.stop()  # normal exit: significant, so the tree shuts down

    async def talk(self) -> None:
        greeter = await rebeam.whereis("greeter")
        print(f"found greeter at {greeter} through the registry")
        for name in self.visitors:
            print(await rebeam.call("greeter", {"hello": name}))
        for _ in range(3):
            count = await rebeam.call("counter", "incr")
        print(f"counter is at {count}; asking it to crash")
        await rebeam.monitor("counter")
        await rebeam.cast("counter", "crash")

    async def after_restart(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_FOR
        while True:
            try:
                count = await rebeam.call("counter", "incr", timeout=1.0)
                break
            except rebeam.NoProc:
                if loop.time() > deadline:
                    raise
                await asyncio.sleep(0.05)  # the new incarnation is registering its name
        pid = await rebeam.whereis("counter")
        print(f"counter is back as {pid}, counting from scratch: {count}")
