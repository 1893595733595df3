"""Restart intensity and escalation through two levels: a nested supervisor is a Supervisor
object owned by its parent; when it gives up it exits shutdown, and its parent counts that as
its child's exit."""

from __future__ import annotations

import signal

import pytest
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import Objects, Operator, child_state, sleeper, supervisor

pytestmark = pytest.mark.e2e


def test_escalation_through_two_levels(
    operator: Operator, objects: Objects, kubelet: ProcessKubelet, namespace: str
) -> None:
    mid = {"strategy": "one_for_one", "intensity": 0, "period": "60s", "children": [sleeper("w")]}
    objects.apply(
        supervisor(
            "top",
            [sleeper("keep"), {"name": "mid", "supervisor": mid}],
            intensity=1,
            period="60s",
        )
    )
    objects.wait_status("top", lambda s: s.get("ready") == "2/2", what="top 2/2")
    child = objects.get("top-mid")
    assert child is not None
    assert child["metadata"]["ownerReferences"][0]["name"] == "top"
    assert child["metadata"]["annotations"]["rebeam.io/path"] == "top/mid"

    # mid may not restart at all (intensity 0): it gives up, top restarts it (1 of 1).
    kubelet.kill_container(namespace, "top-mid-w-1", "actor", signal.SIGKILL)
    status = objects.wait_status(
        "top",
        lambda s: child_state(s, "mid")["incarnation"] == 2 and s.get("ready") == "2/2",
        what="mid restarted by top",
    )
    assert status["restartsInWindow"] == 1
    assert child_state(status, "mid")["lastExit"]["reason"] == "shutdown"
    assert child_state(status, "keep")["incarnation"] == 1
    # The restarted mid continues its children's incarnations: w#2, never a second w#1.
    objects.wait_status("top-mid", lambda s: s.get("incarnations") == {"w": 2}, what="w#2")

    # Again: mid gives up again, and top's second restart in the window is one too many.
    kubelet.kill_container(namespace, "top-mid-w-2", "actor", signal.SIGKILL)
    status = objects.wait_status("top", lambda s: s.get("phase") == "GaveUp", what="top gave up")
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["GaveUp"]["status"] == "True"
    assert conditions["GaveUp"]["reason"] == "ReachedMaxRestartIntensity"
    assert "mid exited (shutdown)" in conditions["GaveUp"]["message"]
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["observedGeneration"] == objects.get("top")["metadata"]["generation"]
    assert objects.status("top-mid")["phase"] == "GaveUp"

    mid_events = [e for e in objects.events("top-mid") if e["reason"] == "GaveUp"]
    assert len(mid_events) == 2
    assert all("w exited (killed)" in e["message"] for e in mid_events)
    top_events = [(e["reason"], e["message"]) for e in objects.events("top")]
    # (Events carry whole seconds: the order within one second is not kept.)
    assert sorted(r for r, _ in top_events if r in ("Restarting", "GaveUp", "Exited")) == [
        "Exited",
        "GaveUp",
        "Restarting",
    ]
    assert any(m.startswith("mid exited (shutdown), restarting mid") for _, m in top_events)
    wait_for(lambda: not objects.running_pods(), timeout=30, what="every pod stopped")
    operator.check_running()
