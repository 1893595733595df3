"""What ``rebeam run`` shows: a live tree in a terminal, plain event lines otherwise.

The live view redraws the tree a few times a second from :func:`snapshot` — each child with
its state, pid, OS pid, incarnation and last exit, each supervisor with its restarts in the
current intensity window — and keeps the latest events under it. When output is not a
terminal (a pipe, a log file, CI) every event is one plain line instead.
"""

from __future__ import annotations

import sys
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rebeam.events import LifecycleEvent
from rebeam.exits import ExitReason
from rebeam.local.snapshot import snapshot

if TYPE_CHECKING:
    from rebeam.local.runner import LocalRun

__all__ = ["LiveView", "PlainLog", "describe_event", "render_tree"]

STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "restarting": "red",
    "undefined": "dim",
    "terminated": "dim",
}


def _reason(wire: Any) -> str:
    if wire is None:
        return ""
    try:
        return str(ExitReason.from_wire(wire))
    except ValueError:
        return str(wire)


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
    if event.incarnation:
        who = f"{who}#{event.incarnation}"
    line = f"{clock} {who} {event.event}"
    if event.reason is not None:
        line += f": {_reason(event.reason)}"
    if event.os_pid and event.event == "started":
        line += f" (os pid {event.os_pid})"
    return line


class PlainLog:
    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self.stream = stream

    def __call__(self, event: LifecycleEvent) -> None:
        print(describe_event(event), file=self.stream, flush=True)


def render_tree(nodes: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("child", "state", "incarnation", "os pid", "restarts", "last exit"):
        table.add_column(column, no_wrap=column != "last exit")

    def add(node: dict[str, Any], depth: int) -> None:
        indent = "  " * depth
        if node.get("kind") == "supervisor":
            window = f"{node['restarts']}/{node['intensity']} in {node['period']:g}s"
            name = node.get("name") or node["path"]
            table.add_row(
                Text.assemble((f"{indent}{name}", "bold"), (f" {node.get('strategy', '')}", "dim")),
                Text(node.get("state", ""), style=STATE_STYLE.get(node.get("state", ""), "")),
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
            Text(node["state"], style=STATE_STYLE.get(node["state"], "")),
            f"#{node['incarnation']}" if node.get("incarnation") else "",
            str(node.get("os_pid") or ""),
            str(restarts),
            _reason(node.get("last_exit")),
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
        tree = render_tree(snapshot(self.run)) if getattr(self.run, "roots", None) else Text("")
        events = Text("\n".join(self.recent), style="dim")
        return Group(tree, Text(""), events)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.__exit__(None, None, None)
