"""The observer's HTML is escaped wherever a tree's text goes: exit reasons carry whatever
a crashed actor's exception said."""

from __future__ import annotations

from typing import Any

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


def test_a_child_shows_its_os_pid_locally_and_its_pod_on_a_cluster() -> None:
    def child(name: str, os_pid: int | None, pod: str | None) -> dict[str, Any]:
        return {"name": name, "path": f"s/{name}", "kind": "actor", "state": "running",
                "incarnation": 1, "pid": f"ns.s-{name}.1", "os_pid": os_pid, "pod": pod,
                "starts": 1, "last_exit": None}  # fmt: skip

    roots = [{"path": "s", "strategy": "one_for_one", "state": "running", "restarts": 0,
              "children": [child("local", 4242, None), child("pod", None, "s-pod-1")]}]  # fmt: skip
    html = page.render_rows(roots, {})
    assert '<i title="4242">4242</i>' in html
    assert '<i title="s-pod-1">s-pod-1</i>' in html  # a long pod name, whole on hover


def test_names_and_groups_show_the_place_of_a_pid_the_tree_knows() -> None:
    directory = {
        "names": [["counter", "ns.0f3a.2"], ["stray", "ns.client-9.1"]],
        "groups": {"pg/workers": ["ns.0f3a.2", "ns.77b1.1"]},
    }
    html = page.render_directory(directory, {"ns.0f3a.2": "shop/counter#2"})
    assert '<b>counter</b> <span title="ns.0f3a.2">shop/counter#2</span>' in html
    assert "<b>stray</b> ns.client-9.1" in html  # no child of the tree: its pid
    assert '<span title="ns.0f3a.2">shop/counter#2</span>, ns.77b1.1' in html
