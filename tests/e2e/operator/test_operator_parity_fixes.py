"""Where the operator must tell what ``rebeam run`` tells: one ``exited`` per incarnation while
a sibling takes its shutdown time, ``killed`` for a child killed at the end of its shutdown
time, a spec that cannot be run refused at admission or reported on the object, and
``brutal_kill`` as a kill without a chance to clean up."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client
from operator_helpers import (
    Lifecycle,
    Objects,
    Operator,
    event_lines,
    sleeper,
    slow_stopper,
    supervisor,
    wait_armed,
)

pytestmark = pytest.mark.e2e

Json = dict[str, Any]


def _exits(events: list[Json]) -> Counter[tuple[str, int]]:
    return Counter(
        (e["child"], e["incarnation"]) for e in events if e["event"] in ("exited", "start_failed")
    )


def test_each_incarnation_is_told_exited_once_and_a_child_killed_at_its_deadline_killed(
    operator: Operator,
    objects: Objects,
    lifecycle: Lifecycle,
    kubelet: ProcessKubelet,
    namespace: str,
    tmp_path: Path,
) -> None:
    armed = tmp_path / "b-armed"
    children = [
        sleeper("a", shutdown="2s"),
        sleeper("c", shutdown="2s"),
        # b ignores SIGTERM for 30 s: its 3 s shutdown runs out and the kubelet kills it.
        slow_stopper("b", 30, armed, shutdown="3s"),
    ]
    objects.apply(supervisor("app", children, strategy="one_for_all", period="60s"))
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    wait_armed(armed)

    kubelet.kill_container(namespace, "app-a-1", "actor", signal.SIGKILL)
    # b is stopped first (newest first) and takes its 3 s; c crashes meanwhile, and its exit
    # waits in the core's mailbox while the driver passes every second.
    wait_for(
        lambda: "deletionTimestamp" in objects.pods().get("app-b-1", {}).get("metadata", {}),
        timeout=30,
        what="b being stopped",
    )
    kubelet.kill_container(namespace, "app-c-1", "actor", signal.SIGKILL)

    objects.wait_status(
        "app",
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == {"a": 2, "b": 2, "c": 2},
        timeout=90,
        what="every child running again",
    )
    lifecycle.wait("started c", count=2, timeout=30)
    lines = lifecycle.lines()
    assert "exited b killed" in lines, lines  # the kubelet's SIGKILL at the deadline
    assert "exited a killed" in lines, lines
    assert "exited c killed" in lines, lines
    assert _exits(lifecycle.events()) == {("a", 1): 1, ("b", 1): 1, ("c", 1): 1}, lines
    operator.check_running()


@pytest.mark.parametrize("period", [0, "0s", "0s0ms"])
def test_a_period_of_0_is_refused_at_admission(objects: Objects, period: object) -> None:
    with pytest.raises(client.ApiException) as refused:
        objects.apply(supervisor("app", [sleeper("a")], period=period))
    assert refused.value.status == 422
    assert "spec.period" in str(refused.value.body)


def test_a_spec_that_cannot_run_is_reported_on_the_object_once(
    operator: Operator, objects: Objects, lifecycle: Lifecycle
) -> None:
    # The CRD leaves a child's args untyped (a module's may be any JSON); a command's must be
    # strings, which only rebeam validate and the operator check.
    bad = {"name": "a", "actor": {"command": ["sleep"], "args": ["600", 1]}}
    objects.apply(supervisor("app", [bad]))
    sentence = "spec.children.0.actor.args: the args of a command must be a list of strings"

    def spec_valid(status: Json) -> Json | None:
        return next((c for c in status.get("conditions") or [] if c["type"] == "SpecValid"), None)

    status = objects.wait_status("app", spec_valid, what="the SpecValid condition")
    condition = spec_valid(status)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert condition["message"] == sentence
    assert status["phase"] == "Failed"
    wait_for(
        lambda: [e for e in objects.events("app") if e["reason"] == "InvalidSpec"],
        timeout=30,
        what="the InvalidSpec Event",
    )

    # Fixed by an edit, it runs; the refusal was told once meanwhile.
    fixed = {"name": "a", "actor": {"command": ["sleep"], "args": ["600"]}}
    objects.custom.patch_namespaced_custom_object(
        "rebeam.io",
        "v1alpha1",
        objects.namespace,
        "supervisors",
        "app",
        {"spec": {"children": [fixed]}},
    )
    status = objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="1/1 ready")
    assert (spec_valid(status) or {}).get("status") == "True"
    refusals = [e for e in objects.events("app") if e["reason"] == "InvalidSpec"]
    assert [(e["type"], e["message"]) for e in refusals] == [("Warning", sentence)]
    assert event_lines(lifecycle.events()) == ["started a"]
    operator.check_running()
