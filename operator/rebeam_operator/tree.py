"""``rebeam tree`` against a cluster: the tree of one namespace, in the one JSON shape
both backends answer with (``rebeam._management_protocol``), read from the drivers' cores."""

from __future__ import annotations

import time
from typing import Any

from rebeam._management_protocol import tree_child, tree_supervisor
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
    node = tree_supervisor(
        path=driver.host.path,
        strategy=spec.strategy.value,
        state="terminated" if core.state is SupervisorState.TERMINATED else "running",
        restarts=core.restarts_in_window(time.time()),
        intensity=spec.intensity,
        period=spec.period,
    )
    for info in start_order(core):
        path = f"{driver.host.path}/{info.id}"
        incarnation = info.incarnation or 0
        live = info.status is not ChildStatus.UNDEFINED and incarnation > 0
        # The operator issues each incarnation's pid: shown as rebeam run shows its own.
        pid = driver.pid(info.id, incarnation) if live else None
        nested = by_path.get(path)
        is_supervisor = info.type.value == "supervisor"
        child = tree_child(
            name=info.id,
            path=path,
            kind="supervisor" if is_supervisor else "actor",
            state=info.status.value,
            incarnation=info.incarnation,
            pid=str(pid) if pid is not None else None,
            os_pid=None,  # a pod's processes are the kubelet's
            # A nested supervisor is a Supervisor object with pods below it, none of its own.
            pod=driver.host.pod_name(info.id, incarnation) if live and not is_supervisor else None,
            starts=core.incarnations.get(info.id, 0),
            last_exit=(driver.child_exits.get(info.id) or {}).get("reason"),
            supervisor=_node(nested, by_path) if nested and nested.core else None,
        )
        node["children"].append(child)
    return node
