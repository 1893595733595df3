"""The observer's HTML, rendered on the server: the whole page for the first paint, and the
fragments the event stream sends (the tree's rows, a timeline line, names and groups), so
the page's script only puts them in place. Everything from the tree is escaped.

The tree is a list of small rows (a CSS grid each, no table: a table is laid out whole
before it is painted), in chunks of CHUNK rows that the browser skips laying out while they
are off screen (``content-visibility``): a tree of thousands of children paints as fast as a
screenful. Actions are not repeated on every row: a row is selected, and the bar above acts
on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from html import escape
from itertools import islice
from typing import Any, Final

from rebeam.exits import wire_text
from rebeam.observe.actorstats import ActorStats

__all__ = ["render_directory", "render_event", "render_page", "render_rows"]

COLUMNS: Final = (
    "child", "kind", "state", "inc", "restarts", "last exit", "os pid / pod",
    "mailbox", "msg/s", "latency",
)  # fmt: skip
CHUNK: Final = 50
MAX_DEPTH_CLASS: Final = 12  # indentation classes d0..d12; deeper rows indent as d12


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value))


def render_rows(roots: list[dict[str, Any]], stats: Mapping[str, ActorStats]) -> str:
    rows = _rows(roots, stats, 0)
    out = []
    while chunk := "".join(islice(rows, CHUNK)):
        out.append(f'<div class="chunk">{chunk}</div>')
    return "".join(out)


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
    supervisor = node.get("kind") == "supervisor" or "strategy" in node
    # A supervisor's restarts in its intensity window; a child's since the tree started.
    restarts = node.get("restarts") if supervisor else max(int(node.get("starts") or 0) - 1, 0)
    shown = stats.public() if stats is not None else {}
    latency = shown.get("latency_ms")
    state = _text(node.get("state"))
    # Where the incarnation runs: an OS process under rebeam run, a pod on a cluster (the
    # operator cannot know the pid inside a pod; rebeam run has no pods).
    where = node.get("os_pid") if node.get("os_pid") is not None else node.get("pod")
    cells = (
        f'<i class="d{min(depth, MAX_DEPTH_CLASS)}">{_text(node["name"] if is_child else path)}</i>'
        f"<i>{_text(node.get('strategy') if supervisor else node.get('kind'))}</i>"
        f'<i class="s-{state}">{state}</i>'
        f"<i>{_text(node.get('incarnation'))}</i><i>{_text(restarts)}</i>"
        f"<i>{_text(wire_text(node.get('last_exit')))}</i>"
        f'<i title="{_text(where)}">{_text(where)}</i>'
        f"<i>{_text(shown.get('mailbox'))}</i><i>{_text(shown.get('rate'))}</i>"
        f"<i>{'' if latency is None else f'{latency:g} ms'}</i>"
    )
    # What the action bar offers for the row: a dynamic child (of a simple_one_for_one
    # supervisor) cannot be restarted by name; only a running actor has a state summary.
    flags = "".join(
        f" data-{flag}" for flag, on in (("dyn", dynamic), ("pid", bool(node.get("pid")))) if on
    )
    kind = "r s" if supervisor else "r a" if is_child else "r"
    return f'<div class="{kind}" data-path="{escape(path)}"{flags}>{cells}</div>'


def render_event(event: dict[str, Any]) -> str:
    who = event.get("supervisor") or ""
    if event.get("child"):
        who = f"{who}/{event['child']}"
    if not who:
        who = event.get("pid") or ""
    if event.get("incarnation"):
        who = f"{who}#{event['incarnation']}"
    clock = str(event.get("time", ""))[11:23]
    reason = wire_text(event.get("reason"))
    name = _text(event.get("event"))
    line = f'<li class="e-{name}"><time>{_text(clock)}</time> {_text(who)} <b>{name}</b>'
    return line + (f": {_text(reason)}</li>" if reason else "</li>")


def render_directory(directory: Mapping[str, Any], places: Mapping[str, str] | None = None) -> str:
    """Names and groups; a pid the tree knows is shown as its child's place (``path#inc``),
    the pid on hover: on a cluster a pid's slot is an opaque id, not the child's path."""
    where = places or {}

    def who(pid: str) -> str:
        place = where.get(pid)
        return f'<span title="{_text(pid)}">{_text(place)}</span>' if place else _text(pid)

    names = "".join(
        f"<li><b>{_text(name)}</b> {who(pid)}</li>" for name, pid in directory.get("names", [])
    )
    groups = "".join(
        f"<li><b>{_text(group)}</b> {', '.join(who(pid) for pid in pids)}</li>"
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
    places: Mapping[str, str] | None = None,
) -> str:
    head = "".join(f"<i>{escape(c)}</i>" for c in COLUMNS)
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
<section id="tree-box">
<div id="actions"><span id="selected">select a child</span>
<button data-op="restart" disabled>restart</button>
<button data-op="terminate" disabled>terminate</button>
<button data-op="status" disabled>state</button>
<span id="notice" role="status"></span></div>
<pre id="status" hidden></pre>
<div id="tree"><div class="r head">{head}</div>
<div id="rows">{render_rows(roots, stats)}</div></div></section>
<aside><h2>Timeline</h2><ol id="timeline" reversed>{events}</ol>
<div id="directory">{render_directory(directory, places)}</div></aside>
</main></body></html>
"""
