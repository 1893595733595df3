"""A running tree and its lifecycle events as a terminal shows them.

``rebeam tree`` (also ``--watch``) draws a tree as a table, ``rebeam events`` prints each
event as one line, and ``rebeam run``'s live view and plain log do both. The tree is the
JSON-like picture both backends answer a ``tree`` request with (``rebeam._management_protocol``),
so this module knows nothing of how a tree runs; the browser's view of the same picture is
``rebeam.observe.page``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from rich.table import Table
from rich.text import Text

from rebeam.exits import wire_text

if TYPE_CHECKING:
    from rebeam.events import LifecycleEvent

__all__ = ["describe_event", "render_tree", "state_word"]

STATE_STYLE = {
    "running": "green",
    "starting": "yellow",
    "stopping": "yellow",
    "restarting": "red",
    "terminated": "dim",
    "not started": "dim",
}


def _last_column(node: dict[str, Any]) -> str:
    """A child's last exit, after what it last said of itself (a notify STATUS=), if any."""
    reason = wire_text(node.get("last_exit"))
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
        line += f": {wire_text(event.reason)}"
    if event.os_pid and event.event == "started":
        line += f" (os pid {event.os_pid})"
    return line


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
                wire_text(node.get("last_exit")),
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
