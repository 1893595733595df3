"""Drives the demo, one step per message so that Down notices can arrive in between.

The demo must end the same way on an idle laptop and on a machine that is busy compiling:
its supervisor allows 3 restarts in 10 s, and every restart of any child counts. So the
driver asks for exactly one crash per run, however often it is itself restarted (it asks
only while the counter is still its first incarnation), and a slow answer is waited for
(retried until PATIENCE runs out), never turned into a crash of the driver.
"""

from __future__ import annotations

import asyncio
from typing import Any

import rebeam

PATIENCE = 30.0  # seconds a step may take on a very busy machine before the driver gives up
ATTEMPT = 2.0  # seconds per call attempt; a late reply is dropped and the call asked again


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
            print(await patient_call("greeter", {"hello": name}))
        for _ in range(3):
            count = await patient_call("counter", "incr")
        counter = await rebeam.whereis("counter", cached=False)
        if counter is not None and counter.incarnation > 1:
            # This driver is a restarted one, and the crash it asked for has happened.
            print(f"the counter already crashed once and is back as {counter}")
            self.stop()
            return
        print(f"counter is at {count}; asking it to crash")
        await rebeam.monitor("counter")
        await rebeam.cast("counter", "crash")

    async def after_restart(self) -> None:
        count = await patient_call("counter", "incr")
        pid = await rebeam.whereis("counter")
        print(f"counter is back as {pid}, counting from scratch: {count}")


async def patient_call(name: str, message: Any) -> Any:
    """``rebeam.call`` that waits out a restart (the name not registered yet) and a slow
    machine (no answer within ATTEMPT seconds), for PATIENCE seconds in all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        try:
            return await rebeam.call(name, message, timeout=ATTEMPT)
        except (rebeam.NoProc, rebeam.CallTimeout):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)  # a new incarnation is registering its name
