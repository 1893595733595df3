"""The observer's HTML is escaped wherever a tree's text goes: exit reasons carry whatever
a crashed actor's exception said."""

from __future__ import annotations

from rebeam.exits import crash
from rebeam.observe import page

EVIL = "<img src=x onerror=alert(1)>"


def test_what_a_tree_says_is_escaped() -> None:
    reason = crash(exception_type="ValueError", message=EVIL, traceback="").to_wire()
    child = {"name": "a", "path": "s/a", "kind": "actor", "state": "running",
             "incarnation": 2, "pid": "ns.s-a.2", "os_pid": 5, "starts": 2,
             "last_exit": reason}  # fmt: skip
    roots = [{"path": "s", "strategy": "one_for_one", "state": "running", "restarts": 1,
              "children": [child]}]  # fmt: skip
    html = page.render_page(
        title=EVIL,
        roots=roots,
        stats={},
        timeline=[{"event": "exited", "supervisor": "s", "child": "a", "reason": reason}],
        directory={"names": [[EVIL, "ns.s-a.2"]], "groups": {EVIL: ["ns.s-a.2"]}},
        csrf='"><script>',
    )
    assert "<img" not in html
    assert "<script>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count('<script src="static/observer.js" defer></script>') == 1
