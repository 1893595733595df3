"""What ``rebeam run`` shows: a live tree in a terminal, plain event lines otherwise.

The live view redraws the tree a few times a second from :func:`snapshot`, drawn as
``rebeam tree`` draws it (``rebeam.observe.console``) — each child with its state, pid, OS
pid, incarnation and last exit, each supervisor with its restarts in the current intensity
window — and keeps the latest events under it. When output is not a terminal (a pipe, a log
file, CI) every event is one plain line instead.

Nothing here writes from the event loop: lines go through an :class:`Outlet`, whose thread
does the writing, so a terminal that does not keep up (a slow one, one paused with Ctrl-S, a
pipe nobody reads) never stalls supervision. Its queue is bounded; what does not fit is
dropped, counted, and the count is reported once the writer catches up.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from rebeam.local.snapshot import snapshot
from rebeam.observe.console import describe_event, render_tree

if TYPE_CHECKING:
    from rebeam.events import LifecycleEvent
    from rebeam.local.forest import Forest

__all__ = ["LiveView", "Outlet", "PlainLog", "fd_writer"]


class Outlet:
    """Writes done by a thread of its own; at most ``limit`` characters wait to be written."""

    def __init__(self, report: Callable[[str], None], limit: int = 1 << 20) -> None:
        self._report = report  # how the outlet says it dropped lines (from its thread)
        self._limit = limit
        self._queue: deque[tuple[str, Callable[[str], None]]] = deque()
        self._queued = 0
        self._dropped = 0
        self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._write, name="rebeam-output", daemon=True)
        self._thread.start()

    def put(self, text: str, write: Callable[[str], None]) -> None:
        """Have ``write(text)`` called by the writer; never blocks."""
        with self._ready:
            if self._closed or self._queued + len(text) > self._limit:
                self._dropped += 1
                return
            self._queue.append((text, write))
            self._queued += len(text)
            self._ready.notify()

    def close(self, timeout: float = 2.0) -> None:
        """Let the writer finish what is queued, for at most ``timeout`` seconds."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)

    def _write(self) -> None:
        broken = False
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                text, write = self._queue.popleft()
                self._queued -= len(text)
                dropped = self._dropped if not self._queue else 0
                self._dropped -= dropped
            if broken:
                continue  # nobody reads any more: drain without writing
            try:
                write(text)
                if dropped:
                    plural = "s" if dropped != 1 else ""
                    self._report(
                        f"rebeam: {dropped} line{plural} of output dropped: "
                        "the terminal did not keep up"
                    )
            except (BrokenPipeError, OSError, ValueError):
                broken = True


def fd_writer(stream: TextIO) -> Callable[[str], None]:
    """Writes lines to ``stream``'s file descriptor (a copy of it), bypassing its buffer: a
    write that a full pipe blocks then holds no lock the interpreter needs to exit."""
    fd = os.dup(stream.fileno())

    def write(line: str) -> None:
        data = (line + "\n").encode(errors="replace")
        while data:
            data = data[os.write(fd, data) :]

    return write


class PlainLog:
    """Each event as one line, through ``outlet``, by ``write``."""

    def __init__(self, outlet: Outlet, write: Callable[[str], None]) -> None:
        self.outlet = outlet
        self.write = write

    def __call__(self, event: LifecycleEvent) -> None:
        self.outlet.put(describe_event(event), self.write)


class LiveView:
    """A rich Live display of the running tree and its latest events."""

    def __init__(self, forest: Forest, console: Console | None = None) -> None:
        self.forest = forest
        self.console = console or Console()
        self.recent: deque[str] = deque(maxlen=8)
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.get_renderable = self._render  # type: ignore[method-assign]

    def __call__(self, event: LifecycleEvent) -> None:
        self.recent.append(describe_event(event))

    def _render(self) -> Group:
        roots = self.forest.roots
        tree = render_tree(snapshot(roots), self.console.width) if roots else Text("")
        events = Text("\n".join(self.recent), style="dim")
        return Group(tree, Text(""), events)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)
