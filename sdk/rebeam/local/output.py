"""A child's output (stdout and stderr on one pipe), read as lines without ever blocking.

The pipe is read in the event loop as data arrives, at most 64 KiB per wake-up, so a child
that prints a flood does not starve supervision. Memory is bounded: a line longer than
:data:`MAX_LINE` bytes is cut there, shown with :data:`CUT_MARKER`, and the rest of it (up to
its newline) is skipped. The sink must not block either (``rebeam run`` queues lines for a
writer thread: see :mod:`rebeam.local.view`).

A pipe can outlive its child: a process that escaped the child's group may hold it open.
:meth:`ChildOutput.close` stops reading whatever is still open, so no reader waits forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

__all__ = ["CUT_MARKER", "MAX_LINE", "ChildOutput"]

MAX_LINE = 16 * 1024
CUT_MARKER = f" [rebeam: line cut at {MAX_LINE // 1024} KiB; the rest of it is not shown]"
_READ = 64 * 1024


class ChildOutput:
    """Reads ``fd`` (which it owns and closes) and hands each line to ``on_line``."""

    def __init__(self, fd: int, on_line: Callable[[str], None]) -> None:
        self._fd = fd
        self._on_line = on_line
        self._partial = bytearray()
        self._skipping = False  # inside a line that was cut: drop bytes up to its newline
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        start = 0
        while start < len(data):
            newline = data.find(b"\n", start)
            end = len(data) if newline < 0 else newline
            if self._skipping:
                if newline >= 0:
                    self._skipping = False
            else:
                room = MAX_LINE - len(self._partial)
                piece = data[start:end]
                self._partial += piece[:room]
                if len(piece) > room or (newline < 0 and len(self._partial) >= MAX_LINE):
                    self._emit(cut=True)
                    self._skipping = newline < 0
                elif newline >= 0:
                    self._emit(cut=False)
            start = end + 1

    def _emit(self, *, cut: bool) -> None:
        line = self._partial.decode(errors="replace").rstrip("\r")
        self._partial.clear()
        self._on_line(line + CUT_MARKER if cut else line)

    def close(self) -> None:
        """Stop reading: show what is left of an unfinished line, close the pipe."""
        if self.closed.done():
            return
        if self._partial:
            self._emit(cut=False)
        self._loop.remove_reader(self._fd)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self.closed.set_result(None)
