"""Deleting a Supervisor (its finalizer) shuts its children down in reverse start order, one
at a time, each with its shutdown as the pod's grace period."""

from __future__ import annotations

from pathlib import Path

import pytest
from infra.procs import wait_for
from operator_helpers import (
    Lifecycle,
    Objects,
    Operator,
    sleeper,
    slow_stopper,
    supervisor,
    wait_armed,
)

pytestmark = pytest.mark.e2e


def test_delete_stops_children_in_reverse_start_order(
    operator: Operator, objects: Objects, lifecycle: Lifecycle, tmp_path: Path
) -> None:
    armed = tmp_path / "c-armed"
    children = [
        sleeper("a", shutdown="10s"),
        sleeper("b", shutdown="brutal_kill"),
        slow_stopper("c", 2, armed, shutdown="10s"),  # takes 2 s: b must wait for it
    ]
    objects.apply(supervisor("app", children))
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    wait_armed(armed)
    pods = objects.pods()
    assert pods["app-a-1"]["spec"]["terminationGracePeriodSeconds"] == 10
    assert pods["app-b-1"]["spec"]["terminationGracePeriodSeconds"] == 0
    assert pods["app-a-1"]["spec"]["restartPolicy"] == "Never"
    assert pods["app-a-1"]["metadata"]["ownerReferences"][0]["kind"] == "Actor"
    assert pods["app-a-1"]["metadata"]["labels"]["rebeam.io/incarnation"] == "1"
    slot = objects.get("app-a", "actors")
    assert slot is not None
    assert slot["status"]["pod"] == "app-a-1"

    objects.delete("app")

    wait_for(lambda: objects.get("app") is None, timeout=60, what="the Supervisor to be gone")
    # The last NATS events may still be on their way when the object goes: wait for them.
    lifecycle.wait("shutdown shutdown", timeout=30)
    assert lifecycle.lines()[3:] == [
        "exited c shutdown",
        "exited b killed",  # brutal_kill: grace 0, SIGKILL
        "exited a shutdown",
        "shutdown shutdown",
    ]
    wait_for(lambda: not objects.pods(), timeout=60, what="every pod gone")
    operator.check_running()
