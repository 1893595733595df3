"""The observer's HTML, rendered on the server: the whole page for the first paint, and the
fragments the event stream sends (the tree's rows, a timeline line, names and groups), so
the page's script only puts them in place. Everything from the tree is escaped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from html import escape
from typing import Any

from rebeam.exits import ExitReason
from rebeam.observe.actorstats import ActorStats

__all__ = ["render_directory", "render_event", "render_page", "render_rows"]

COLUMNS = (
    "child", "kind", "state", "inc", "restarts", "last exit", "os pid",
    "mailbox", "msg/s", "latency", "",
)  # fmt: skip


def _reason(wire: Any) -> str:
    if wire is None:
        return ""
    try:
        return str(ExitReason.from_wire(wire))
    except ValueError:
        return str(wire)


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value))


def render_rows(roots: list[dict[str, Any]], stats: Mapping[str, ActorStats]) -> str:
    return "".join(_rows(roots, stats, 0))


def _rows(
    nodes: list[Any], stats: Mapping[str, ActorStats], depth: int, dynamic: bool = False
) -> Iterator[str]:
    for node in nodes:
        if not isinstance(node, dict):
            continue
        yield _row(node, stats.get(str(node.get("path"))), depth, dynamic)
        below = node.get("strategy") == "simple_one_for_one"
        yield from _rows(node.get("children") or [], stats, depth + 1, below)


def _row(node: dict[str, Any], stats: ActorStats | None, depth: int, dynamic: bool) -> str:
    path = str(node.get("path", ""))
    is_child = "name" in node
    label = node["name"] if is_child else path
    supervisor = node.get("kind") == "supervisor" or "strategy" in node
    # A supervisor's restarts in its intensity window; a child's since the tree started.
    restarts = node.get("restarts") if supervisor else max(int(node.get("starts") or 0) - 1, 0)
    shown = stats.public() if stats is not None else {}
    latency = shown.get("latency_ms")
    cells = [
        f'<td class="name" style="padding-left:{depth * 1.2 + 0.3:.1f}em">{_text(label)}</td>',
        f"<td>{_text(node.get('strategy') if supervisor else node.get('kind'))}</td>",
        f'<td class="state s-{_text(node.get("state"))}">{_text(node.get("state"))}</td>',
        f'<td data-f="inc">{_text(node.get("incarnation"))}</td>',
        f"<td>{_text(restarts)}</td>",
        f'<td class="exit">{_text(_reason(node.get("last_exit")))}</td>',
        f"<td>{_text(node.get('os_pid'))}</td>",
        f'<td data-s="mailbox">{_text(shown.get("mailbox"))}</td>',
        f'<td data-s="rate">{_text(shown.get("rate"))}</td>',
        f'<td data-s="latency">{"" if latency is None else f"{latency:g} ms"}</td>',
        f"<td>{_actions(node, dynamic) if is_child else ''}</td>",
    ]
    kind = "sup" if supervisor else "actor"
    return f'<tr class="{kind}" data-path="{escape(path)}">{"".join(cells)}</tr>'


def _actions(node: dict[str, Any], dynamic: bool) -> str:
    # A dynamic child (of a simple_one_for_one supervisor) cannot be restarted by name.
    buttons = [] if dynamic else ['<button data-op="restart">restart</button>']
    if node.get("state") not in ("undefined", "terminated"):
        buttons.append('<button data-op="terminate">terminate</button>')
    if node.get("pid") and node.get("kind") != "supervisor":
        buttons.append('<button data-op="status">state</button>')
    return "".join(buttons)


def render_event(event: dict[str, Any]) -> str:
    who = event.get("supervisor") or ""
    if event.get("child"):
        who = f"{who}/{event['child']}"
    if not who:
        who = event.get("pid") or ""
    if event.get("incarnation"):
        who = f"{who}#{event['incarnation']}"
    clock = str(event.get("time", ""))[11:23]
    reason = _reason(event.get("reason"))
    name = _text(event.get("event"))
    line = f'<li class="e-{name}"><time>{_text(clock)}</time> {_text(who)} <b>{name}</b>'
    return line + (f": {_text(reason)}</li>" if reason else "</li>")


def render_directory(directory: Mapping[str, Any]) -> str:
    names = "".join(
        f"<li><b>{_text(name)}</b> {_text(pid)}</li>" for name, pid in directory.get("names", [])
    )
    groups = "".join(
        f"<li><b>{_text(group)}</b> {_text(', '.join(pids))}</li>"
        for group, pids in directory.get("groups", {}).items()
    )
    return (
        f"<h3>Registered names</h3><ul>{names or '<li>none</li>'}</ul>"
        f"<h3>Process groups</h3><ul>{groups or '<li>none</li>'}</ul>"
    )


def render_page(
    *,
    title: str,
    roots: list[dict[str, Any]],
    stats: Mapping[str, ActorStats],
    timeline: list[dict[str, Any]],
    directory: Mapping[str, Any],
    csrf: str,
) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in COLUMNS)
    events = "".join(render_event(e) for e in reversed(timeline))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="csrf" content="{escape(csrf)}">
<title>rebeam observe: {escape(title)}</title>
<link rel="stylesheet" href="static/observer.css">
<script src="static/observer.js" defer></script>
</head><body>
<header><h1>rebeam observe</h1><span>{escape(title)}</span>
<span id="conn" class="down">connecting</span></header>
<main>
<section id="tree-box"><table id="tree"><thead><tr>{head}</tr></thead>
<tbody id="rows">{render_rows(roots, stats)}</tbody></table>
<pre id="status" hidden></pre><p id="notice" role="status"></p></section>
<aside><h2>Timeline</h2><ol id="timeline" reversed>{events}</ol>
<div id="directory">{render_directory(directory)}</div></aside>
</main></body></html>
"""
