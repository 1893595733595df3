"""A JSON-like picture of a running tree: what ``rebeam tree`` prints and the live view shows,
in the shape the operator answers with too (``rebeam._management_protocol``)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from rebeam._management_protocol import tree_child, tree_supervisor
from rebeam.local.processes import ChildProcess
from rebeam.local.supervisors import SupervisorRunner
from rebeam.supervision import ChildStatus

__all__ = ["snapshot"]


def snapshot(roots: Iterable[SupervisorRunner]) -> list[dict[str, Any]]:
    """Each root supervisor with everything below it, in the order given (start order)."""
    return [_supervisor(root) for root in roots]


def _supervisor(runner: SupervisorRunner) -> dict[str, Any]:
    spec = runner.spec
    node = tree_supervisor(
        path=runner.path,
        strategy=spec.strategy.value,
        state=_state(runner),
        restarts=runner.core.restarts_in_window(time.monotonic()),
        intensity=spec.intensity,
        period=spec.period,
    )
    # which_children is OTP's order (newest first); people read a tree in start order.
    for info in reversed(runner.core.which_children()):
        path = f"{runner.path}/{info.id}"
        record = runner.ctx.records.get(path)
        live = record is not None and info.status is not ChildStatus.UNDEFINED
        nested = runner.children.get(info.id)
        child = tree_child(
            name=info.id,
            path=path,
            kind=record.kind if record else "actor",
            state=info.status.value,
            incarnation=info.incarnation,
            pid=record.pid if record and live else None,
            os_pid=record.os_pid if record and live else None,
            pod=None,  # Kubernetes only
            starts=record.starts if record else 0,
            last_exit=record.last_exit if record else None,
            supervisor=_supervisor(nested) if isinstance(nested, SupervisorRunner) else None,
        )
        if isinstance(nested, ChildProcess) and live and nested.status is not None:
            child["status"] = nested.status  # what a notify-speaking command last said
        node["children"].append(child)
    return node


def _state(runner: SupervisorRunner) -> str:
    if runner.done.done():
        return "terminated"
    return "starting" if runner.starting else "running"
