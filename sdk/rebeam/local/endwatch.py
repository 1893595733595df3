"""Await the end of a process we started: its exit, not the end of its output.

asyncio's own subprocess ``wait()`` returns only once the process has exited *and* its pipes
have closed, so a child that left a daemon holding its stdout would never be seen to end.
Here the process itself is watched: a pidfd (Linux 5.3+) becomes readable when the process
exits, and the event loop is told; then it is reaped with :meth:`subprocess.Popen.wait`.
Without pidfds, a thread waits for the exit without reaping it (``waitid`` with ``WNOWAIT``),
so the reaping stays with the ``Popen`` either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
from typing import Any

__all__ = ["process_end"]


async def process_end(process: subprocess.Popen[Any]) -> int:
    """The process's return code once it has ended (negative: the signal that ended it)."""
    if process.returncode is not None:
        return process.returncode
    loop = asyncio.get_running_loop()
    ended: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ended.done():
            ended.set_result(None)

    try:
        fd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        fd = -1
    if fd >= 0:
        loop.add_reader(fd, wake)
        try:
            await ended
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    else:
        threading.Thread(target=_wait_unreaped, args=(process.pid, loop, wake), daemon=True).start()
        await ended
    return process.wait()


def _wait_unreaped(pid: int, loop: asyncio.AbstractEventLoop, wake: Any) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(wake)
