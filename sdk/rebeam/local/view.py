"""What ``rebeam run`` shows: a live tree in a terminal, plain event lines otherwise.

The live view redraws the tree a few times a second from :func:`snapshot` — each child with
its state, pid, OS pid, incarnation and last exit, each supervisor with its restarts in the
current intensity window — and keeps the latest events under it. When output is not a
terminal (a pipe, a log file, CI) every event is one plain line instead.

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
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rebeam.events import LifecycleEvent
from rebeam.exits import ExitReason
from rebeam.local.snapshot import snapshot

if TYPE_CHECKING:
    from rebeam.local.runner import LocalRun

__all__ = ["LiveView", "Outlet", "PlainLog", "describe_event", "render_tree", "state_word"]

STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "restarting": "red",
    "terminated": "dim",
    "not started": "dim",
}


def _reason(wire: Any) -> str:
    if wire is None:
        return ""
    try:
        return str(ExitReason.from_wire(wire))
    except ValueError:
        return str(wire)


def _last_column(node: dict[str, Any]) -> str:
    """A child's last exit, after what it last said of itself (a notify STATUS=), if any."""
    reason = _reason(node.get("last_exit"))
    status = node.get("status")
    if not status:
        return reason
    return f"status: {status}" + (f"; last exit: {reason}" if reason else "")


def describe_event(event: LifecycleEvent) -> str:
    """One line for one event, e.g. ``12:00:01.250 pipeline/writer#2 exited: killed``."""
    try:
        clock = datetime.fromisoformat(event.time.replace("Z", "+00:00")).strftime("%H:%M:%S.%f")
        clock = clock[:-3]
    except ValueError:
        clock = event.time
    who = event.supervisor or ""
    if event.child:
        who = f"{who}/{event.child}"
    if not who and event.pid:  # a connected program, outside any tree: its pid says it all
        who = event.pid
    elif event.incarnation:
        who = f"{who}#{event.incarnation}"
    line = f"{clock} {who} {event.event}"
    if event.reason is not None:
        line += f": {_reason(event.reason)}"
    if event.os_pid and event.event == "started":
        line += f" (os pid {event.os_pid})"
    return line


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


# The narrow columns and their widths: "not started", "#1234", an OS pid of up to 7 digits,
# a supervisor's "10/10 in 60s".
_NARROW = (("state", 11), ("inc", 5), ("os pid", 7), ("restarts", 12))
_FIXED = sum(size for _, size in _NARROW) + len(_NARROW) + 1  # one space between columns
_MIN_FREE = 12


def _period(seconds: float) -> str:
    """``30s``, ``5m``, ``1h``: a supervisor's intensity window, short."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g}{unit}"
    return f"{seconds:g}s"


def _labels(nodes: list[dict[str, Any]], depth: int) -> list[str]:
    """The first column's text of every row, indented by depth."""
    found = []
    for node in nodes:
        name = node.get("name") or node.get("path", "")
        strategy = f" {node['strategy']}" if node.get("kind") == "supervisor" else ""
        found.append(f"{'  ' * depth}{name}{strategy}")
        found += _labels(node.get("children", []), depth + 1)
    return found


def state_word(node: dict[str, Any]) -> str:
    """The state a person reads: the core's ``undefined`` (no process) is ``terminated`` for a
    child that ran (its last exit says how it ended) and ``not started`` for one that never
    did."""
    state = str(node.get("state", ""))
    if state != "undefined":
        return state
    return "terminated" if node.get("starts") or node.get("last_exit") else "not started"


def render_tree(nodes: list[dict[str, Any]], width: int = 80) -> Table:
    """The tree as a table ``width`` columns wide at most (80 fits any terminal): every cell
    stays on one line, and what does not fit (a deep or long name, a long exit reason) ends
    in an ellipsis rather than wrapping; ``rebeam tree --json`` has every value in full."""
    names = [len(label) for label in _labels(nodes, 0)]
    free = max(width - _FIXED, 2 * _MIN_FREE)  # for the child names and the last exits
    name_width = max(_MIN_FREE, min(max(names, default=0), free * 45 // 100))
    table = Table(box=None, pad_edge=False, header_style="bold", collapse_padding=True)
    table.add_column("child", width=name_width, no_wrap=True, overflow="ellipsis")
    for header, size in _NARROW:
        justify: Literal["left", "right"] = "right" if header in ("inc", "os pid") else "left"
        table.add_column(header, width=size, no_wrap=True, overflow="ellipsis", justify=justify)
    table.add_column("last exit", width=free - name_width, no_wrap=True, overflow="ellipsis")

    def add(node: dict[str, Any], depth: int) -> None:
        indent = "  " * depth
        state = state_word(node)
        if node.get("kind") == "supervisor":
            window = f"{node['restarts']}/{node['intensity']} in {_period(node['period'])}"
            name = node.get("name") or node["path"]
            table.add_row(
                Text.assemble((f"{indent}{name}", "bold"), (f" {node.get('strategy', '')}", "dim")),
                Text(state, style=STATE_STYLE.get(state, "")),
                "",
                "",
                window,
                _reason(node.get("last_exit")),
            )
            for child in node.get("children", []):
                add(child, depth + 1)
            return
        restarts = max(node.get("starts", 0) - 1, 0)
        table.add_row(
            f"{indent}{node['name']}",
            Text(state, style=STATE_STYLE.get(state, "")),
            f"#{node['incarnation']}" if node.get("incarnation") else "",
            str(node.get("os_pid") or ""),
            str(restarts),
            _last_column(node),
        )

    for node in nodes:
        add(node, 0)
    return table


class LiveView:
    """A rich Live display of the running tree and its latest events."""

    def __init__(self, run: LocalRun, console: Console | None = None) -> None:
        self.run = run
        self.console = console or Console()
        self.recent: deque[str] = deque(maxlen=8)
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.get_renderable = self._render  # type: ignore[method-assign]

    def __call__(self, event: LifecycleEvent) -> None:
        self.recent.append(describe_event(event))

    def _render(self) -> Group:
        running = getattr(self.run, "roots", None)
        tree = render_tree(snapshot(self.run), self.console.width) if running else Text("")
        events = Text("\n".join(self.recent), style="dim")
        return Group(tree, Text(""), events)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)
