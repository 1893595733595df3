"""A JSON-like picture of a running tree: what ``rebeam tree`` prints and the live view shows."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rebeam.local.supervisors import SupervisorRunner
from rebeam.supervision import ChildStatus

if TYPE_CHECKING:
    from rebeam.local.runner import LocalRun

__all__ = ["snapshot"]


def snapshot(run: LocalRun) -> list[dict[str, Any]]:
    return [_supervisor(root) for root in run.roots]


def _supervisor(runner: SupervisorRunner) -> dict[str, Any]:
    now = time.monotonic()
    spec = runner.spec
    node: dict[str, Any] = {
        "path": runner.path,
        "kind": "supervisor",
        "strategy": spec.strategy.value,
        "state": _state(runner),
        "restarts": runner.core.restarts_in_window(now),
        "intensity": spec.intensity,
        "period": spec.period,
        "children": [],
    }
    # which_children is OTP's order (newest first); people read a tree in start order.
    for info in reversed(runner.core.which_children()):
        path = f"{runner.path}/{info.id}"
        record = runner.ctx.records.get(path)
        live = info.status is not ChildStatus.UNDEFINED
        child: dict[str, Any] = {
            "name": info.id,
            "path": path,
            "kind": record.kind if record else "actor",
            "state": info.status.value,
            "incarnation": info.incarnation,
            "pid": record.pid if record and live else None,
            "os_pid": record.os_pid if record and live else None,
            "starts": record.starts if record else 0,
            "last_exit": record.last_exit if record else None,
        }
        nested = runner.children.get(info.id)
        if isinstance(nested, SupervisorRunner):
            child |= {k: v for k, v in _supervisor(nested).items() if k not in ("path", "state")}
        node["children"].append(child)
    return node


def _state(runner: SupervisorRunner) -> str:
    if runner.done.done():
        return "terminated"
    return "starting" if runner.starting else "running"
