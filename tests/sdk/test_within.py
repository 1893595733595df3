"""``rebeam._loop.within``: a deadline that never loses a cancellation of its caller
(docs/architecture.md, "How the code is kept livable").

On Python 3.11, ``asyncio.wait_for`` answered a cancellation that came as the awaited work
ended, in the same turn of the loop, with that work's result: the cancelled task went on.
Each test makes the two come together deterministically (the loop runs its ready callbacks
in order; no timing involved) and fails with ``wait_for`` in place of ``within``. The last
one does it on a product path: a child's stop in ``rebeam run``, with a real process.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest

from rebeam._loop import within
from rebeam.local.processes import ChildProcess, Identity
from rebeam.pids import Pid
from rebeam.spec.models import ActorTemplate


async def test_a_loop_cancelled_as_its_wait_ends_ends() -> None:
    """A task that waits for wake-ups in a loop (a durable pull, a driver, a fence) and is
    cancelled as one comes: with wait_for it took the wake-up, lost the cancellation and
    waited again, for ever; whoever cancelled it and waited for its end hung."""
    wake = asyncio.Event()
    woken = 0

    async def loop() -> None:
        nonlocal woken
        while True:
            await within(wake.wait(), 60)
            wake.clear()
            woken += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)  # one turn: the task is now waiting for a wake-up
    wake.set()  # the wait ends in the next turn...
    asyncio.get_running_loop().call_soon(task.cancel)  # ...and the cancellation comes in it
    done, _ = await asyncio.wait({task}, timeout=10)
    assert task in done, "the cancelled loop went on"
    assert task.cancelled()
    assert woken <= 1


async def test_a_cancellation_the_awaited_code_swallows_is_raised() -> None:
    """As nats-py's drain does: it catches CancelledError and goes on closing."""
    never = asyncio.Event()
    swallowed = asyncio.Event()

    async def stubborn() -> str:
        try:
            await never.wait()
        except asyncio.CancelledError:
            swallowed.set()
        return "done anyway"

    task = asyncio.create_task(within(stubborn(), 30))
    await asyncio.sleep(0)  # one turn: stubborn is now waiting
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert swallowed.is_set()


async def test_the_deadline_cancels_the_awaited_task_and_raises_timeout() -> None:
    never = asyncio.Event()
    awaited = asyncio.create_task(never.wait())
    with pytest.raises(TimeoutError):
        await within(awaited, 0.01)
    assert awaited.cancelled()  # as wait_for did
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


async def test_work_that_ends_anyway_at_the_deadline_gives_its_result() -> None:
    """The deadline's own cancellation, swallowed, is not the caller's: no error."""
    never = asyncio.Event()

    async def stubborn() -> str:
        with contextlib.suppress(asyncio.CancelledError):
            await never.wait()
        return "closed"

    assert await within(stubborn(), 0.01) == "closed"
    assert await within(asyncio.sleep(0, "no limit"), None) == "no limit"


async def test_a_stop_cancelled_as_its_process_ends_stays_cancelled(tmp_path: Path) -> None:
    """``rebeam run`` stops a child (SIGTERM, then the wait for its end); the task of that
    stop is cancelled just as the end is seen (the next turn, before the task runs again).
    With wait_for the stop returned the exit reason: cancelled, it went on as if not."""
    identity = Identity(
        Pid.for_incarnation("waitfor", "stopped", 1),
        "root",
        "stopped",
        nats_url="nats://127.0.0.1:1",  # never used: the child is a plain command
        workdir=tmp_path,
    )
    command = [sys.executable, "-c", "import time; time.sleep(120)"]
    child = ChildProcess(identity, ActorTemplate(command=command))
    await child.start(30)
    assert child._exited is not None
    assert child.os_pid is not None
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[object]] = []
    # Registered before the stop waits: it runs first once the end is seen, and puts the
    # cancellation in the turn where the stop's wait is answered.
    child._exited.add_done_callback(lambda _: loop.call_soon(stopping[0].cancel))
    stopping.append(asyncio.create_task(child.stop(60)))
    try:
        async with asyncio.timeout(30):
            with pytest.raises(asyncio.CancelledError):
                await stopping[0]
    finally:
        child.kill()
        await child.wait()
