"""``rebeam tree`` against a cluster: the tree of one namespace, in the JSON shape
``rebeam run`` answers with (``rebeam.local.snapshot``), read from the drivers' cores."""

from __future__ import annotations

import time
from typing import Any

from rebeam.supervision import ChildStatus, SupervisorState
from rebeam_operator.status import start_order
from rebeam_operator.view import DriverView

__all__ = ["tree"]


def tree(drivers: list[DriverView]) -> list[dict[str, Any]]:
    """Every root: root Supervisors, and Actors applied on their own, each shown as
    ``rebeam run`` shows it, as its implicit one_for_one supervisor of one child."""
    by_path = {d.host.path: d for d in drivers if d.core is not None}
    roots = [d for path, d in by_path.items() if "/" not in path]
    return [_node(d, by_path) for d in sorted(roots, key=lambda d: d.host.path)]


def _node(driver: DriverView, by_path: dict[str, DriverView]) -> dict[str, Any]:
    core = driver.core
    assert core is not None
    spec = driver.host.spec
    terminated = core.state is SupervisorState.TERMINATED
    node: dict[str, Any] = {
        "path": driver.host.path,
        "kind": "supervisor",
        "strategy": spec.strategy.value,
        "state": "terminated" if terminated else "running",
        "restarts": core.restarts_in_window(time.time()),
        "intensity": spec.intensity,
        "period": spec.period,
        "children": [],
    }
    for info in start_order(core):
        path = f"{driver.host.path}/{info.id}"
        child: dict[str, Any] = {
            "name": info.id,
            "path": path,
            "kind": "supervisor" if info.type.value == "supervisor" else "actor",
            "state": info.status.value,
            "incarnation": info.incarnation,
            "pid": None,
            "os_pid": None,
            "starts": core.incarnations.get(info.id, 0),
            "last_exit": (driver.child_exits.get(info.id) or {}).get("reason"),
        }
        if info.status is not ChildStatus.UNDEFINED and info.incarnation:
            child["pod"] = driver.host.pod_name(info.id, info.incarnation)
        nested = by_path.get(path)
        if nested is not None and nested.core is not None:
            inner = _node(nested, by_path)
            child |= {k: v for k, v in inner.items() if k not in ("path", "state", "kind")}
            child["kind"] = "supervisor"
            child["name"] = info.id
        node["children"].append(child)
    return node
