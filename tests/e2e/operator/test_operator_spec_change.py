"""An edited manifest applied to a running tree (what ``kubectl apply`` does): flags at once
with the history kept; a removed child terminated and deleted; a changed child terminated and
started again under its new spec; an added child started at the end — none of it a restart
(no intensity counted, no strategy applied: the untouched children keep their very pods),
also when the operator is killed half-way; observedGeneration and Converged say when done."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import (
    GROUP,
    VERSION,
    Objects,
    Operator,
    Watchdog,
    child_state,
    sleeper,
    slow_stopper,
    supervisor,
    wait_armed,
)

pytestmark = pytest.mark.e2e

Json = dict[str, Any]


def edit(objects: Objects, name: str, change: Any, plural: str = "supervisors") -> int:
    """Read, change the spec, write back (as kubectl apply would); the new generation."""
    body = objects.get(name, plural)
    assert body is not None
    change(body["spec"])
    result = objects.custom.replace_namespaced_custom_object(
        GROUP, VERSION, objects.namespace, plural, name, body
    )
    return int(result["metadata"]["generation"])


def converged(generation: int, ready: str) -> Any:
    def check(s: Json) -> bool:
        conditions = {c["type"]: c for c in s.get("conditions") or []}
        done = conditions.get("Converged", {})
        return bool(
            s.get("observedGeneration") == generation
            and done.get("status") == "True"
            and done.get("observedGeneration") == generation
            and s.get("ready") == ready
            and s.get("phase") == "Running"
        )

    return check


def uids(objects: Objects) -> dict[str, str]:
    return {name: pod["metadata"]["uid"] for name, pod in objects.pods().items()}


def test_added_removed_and_changed_children_converge_without_a_restart(
    operator: Operator, objects: Objects, watchdog: Watchdog
) -> None:
    # one_for_all with intensity 0: a single restart, or the strategy applied, would show.
    children = [sleeper(n, shutdown="2s") for n in "abc"]
    objects.apply(supervisor("app", children, strategy="one_for_all", intensity=0, period="60s"))
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    before = uids(objects)

    def change(spec: Json) -> None:
        spec["children"] = [
            sleeper("a", shutdown="2s"),
            sleeper("d", shutdown="2s"),  # added (goes to the end of the start order)
            {"name": "c", "shutdown": "2s", "actor": {"command": ["sleep", "601"]}},  # changed
        ]  # b removed

    generation = edit(objects, "app", change)
    status = objects.wait_status(
        "app", converged(generation, "3/3"), what=f"generation {generation} converged"
    )
    assert [c["name"] for c in status["children"]] == ["a", "c", "d"]
    assert status["incarnations"]["c"] == 2
    assert child_state(status, "a")["incarnation"] == 1
    assert status["restartsInWindow"] == 0
    assert {c["type"]: c["status"] for c in status["conditions"]}["GaveUp"] == "False"
    wait_for(
        lambda: set(objects.pods()) == {"app-a-1", "app-c-2", "app-d-1"},
        timeout=30,
        what="the pods of a, c#2 and d only",
    )
    assert objects.pods()["app-a-1"]["metadata"]["uid"] == before["app-a-1"]  # untouched
    assert "601" in " ".join(objects.pods()["app-c-2"]["spec"]["containers"][0]["command"])
    wait_for(lambda: objects.get("app-b", "actors") is None, timeout=30, what="b's slot gone")
    # c's Actor slot object shows the spec c runs now.
    wait_for(
        lambda: (
            (objects.get("app-c", "actors") or {}).get("spec", {}).get("command")
            == ["sleep", "601"]
        ),
        timeout=30,
        what="c's slot object showing its new command",
    )
    events = objects.events("app")
    assert not [e for e in events if e["reason"] in ("Restarting", "GaveUp")]
    changed = [e["message"] for e in events if e["reason"] == "SpecChanged"]
    assert changed == [f"generation {generation}: removing b; replacing c; adding d"]
    assert watchdog.close() == []
    operator.check_running()


def test_new_flags_take_effect_at_once_and_keep_the_history(
    operator: Operator, objects: Objects, kubelet: ProcessKubelet, namespace: str
) -> None:
    children = [sleeper("a"), sleeper("b")]
    objects.apply(supervisor("app", children, intensity=5, period="300s"))
    objects.wait_status("app", lambda s: s.get("ready") == "2/2", what="2/2 ready")
    kubelet.kill_container(namespace, "app-a-1", "actor", signal.SIGKILL)
    objects.wait_status(
        "app",
        lambda s: s.get("ready") == "2/2" and s.get("incarnations") == {"a": 2, "b": 1},
        what="a restarted once",
    )
    before = uids(objects)

    def lower(spec: Json) -> None:
        spec["intensity"] = 1
        spec["strategy"] = "one_for_all"

    generation = edit(objects, "app", lower)
    status = objects.wait_status("app", converged(generation, "2/2"), what="new flags")
    assert status["restartsInWindow"] == 1  # the history is kept
    assert uids(objects) == before  # flags restart nothing
    kubelet.kill_container(namespace, "app-b-1", "actor", signal.SIGKILL)
    status = objects.wait_status(
        "app", lambda s: s.get("phase") == "GaveUp", what="the second restart gives up"
    )
    assert "intensity 1" in status["gaveUpMessage"]
    operator.check_running()


def test_the_operator_killed_mid_convergence_carries_on(
    operator: Operator, objects: Objects, watchdog: Watchdog, tmp_path: Path
) -> None:
    armed = tmp_path / "b-armed"
    children = [sleeper("a"), slow_stopper("b", 3, armed, shutdown="20s"), sleeper("c")]
    objects.apply(supervisor("app", children, strategy="rest_for_one", intensity=0))
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    wait_armed(armed)
    before = uids(objects)

    def change(spec: Json) -> None:
        spec["children"][1] = slow_stopper("b", 3, None, shutdown="21s")

    generation = edit(objects, "app", change)
    objects.wait_status(
        "app", lambda s: child_state(s, "b")["state"] == "stopping", what="b stopping"
    )
    operator.kill()
    operator.start()
    status = objects.wait_status(
        "app", converged(generation, "3/3"), what="converged after the operator's restart"
    )
    assert status["incarnations"] == {"a": 1, "b": 2, "c": 1}  # b replaced exactly once
    assert status["restartsInWindow"] == 0
    wait_for(
        lambda: set(objects.pods()) == {"app-a-1", "app-b-2", "app-c-1"},
        timeout=30,
        what="b's old pod gone",
    )
    now = uids(objects)
    assert (now["app-a-1"], now["app-c-1"]) == (before["app-a-1"], before["app-c-1"])
    assert watchdog.close() == []
    operator.check_running()


def test_a_nested_supervisors_spec_is_converged_by_its_own_driver(
    operator: Operator, objects: Objects
) -> None:
    inner = {"name": "inner", "supervisor": {"children": [sleeper("x")]}}
    objects.apply(supervisor("app", [sleeper("a"), inner]))
    objects.wait_status("app", lambda s: s.get("ready") == "2/2", what="2/2 ready")
    objects.wait_status("app-inner", lambda s: s.get("ready") == "1/1", what="inner 1/1")
    before = uids(objects)

    def change(spec: Json) -> None:
        spec["children"][1]["supervisor"]["children"].append(sleeper("y"))

    generation = edit(objects, "app", change)
    objects.wait_status("app", converged(generation, "2/2"), what="the parent converged")
    status = objects.wait_status(
        "app-inner", lambda s: s.get("ready") == "2/2", what="y started by inner's driver"
    )
    assert status["incarnations"] == {"x": 1, "y": 1}
    assert objects.status("app")["incarnations"] == {"a": 1, "inner": 1}  # not restarted
    now = uids(objects)
    assert all(now[name] == uid for name, uid in before.items())
    operator.check_running()

    # A nested supervisor removed from the manifest: stopped, then its object deleted.
    def remove(spec: Json) -> None:
        spec["children"] = spec["children"][:1]

    generation = edit(objects, "app", remove)
    objects.wait_status("app", converged(generation, "1/1"), what="inner removed")
    wait_for(lambda: objects.get("app-inner") is None, timeout=60, what="app-inner deleted")
    wait_for(lambda: set(objects.pods()) == {"app-a-1"}, timeout=30, what="only a's pod left")
    assert objects.status("app")["restartsInWindow"] == 0
    operator.check_running()


def test_an_actor_applied_on_its_own_takes_its_new_spec(
    operator: Operator, objects: Objects, watchdog: Watchdog
) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Actor",
        "metadata": {"name": "solo"},
        "spec": {"command": ["sleep", "600"], "shutdown": "2s"},
    }
    objects.apply(body)
    objects.wait_status("solo", lambda s: s.get("ready") == "1/1", plural="actors", what="up")

    def change(spec: Json) -> None:
        spec["command"] = ["sleep", "602"]

    generation = edit(objects, "solo", change, "actors")
    status = objects.wait_status(
        "solo", converged(generation, "1/1"), plural="actors", what="solo converged"
    )
    assert status["incarnation"] == 2
    assert status["restartsInWindow"] == 0
    wait_for(lambda: set(objects.pods()) == {"solo-2"}, timeout=30, what="only solo-2")
    assert "602" in " ".join(objects.pods()["solo-2"]["spec"]["containers"][0]["command"])
    assert watchdog.close() == []
    operator.check_running()


def test_a_change_the_core_refuses_is_refused_as_a_whole(
    operator: Operator, objects: Objects
) -> None:
    objects.apply(supervisor("app", [sleeper("a")], intensity=5))
    objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="1/1 ready")
    before = uids(objects)

    def to_simple(spec: Json) -> None:
        spec["strategy"] = "simple_one_for_one"
        spec["intensity"] = 1
        spec["children"] = []
        spec["childTemplate"] = sleeper("w")

    generation = edit(objects, "app", to_simple)

    def refused(s: Json) -> bool:
        conditions = {c["type"]: c for c in s.get("conditions") or []}
        done = conditions.get("Converged", {})
        return done.get("reason") == "SpecRefused" and done.get("observedGeneration") == generation

    status = objects.wait_status("app", refused, what="the edit refused")
    message = {c["type"]: c for c in status["conditions"]}["Converged"]["message"]
    assert "simple_one_for_one" in message
    assert status["ready"] == "1/1"
    assert uids(objects) == before
    wait_for(
        lambda: [e for e in objects.events("app") if e["reason"] == "SpecRefused"],
        timeout=30,
        what="a SpecRefused event",
    )
    operator.check_running()
