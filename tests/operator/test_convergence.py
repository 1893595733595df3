"""The operator's convergence plan (operator/rebeam_operator/convergence.py), pure: which core
requests an edited manifest turns into, on a core driven by the simulated backend."""

from __future__ import annotations

import json
from typing import Any

from rebeam.exits import SHUTDOWN
from rebeam.spec.models import Child, SupervisorSpec
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import (
    ChildExited,
    DeleteChildRequest,
    ReplaceChildRequest,
    StartChild,
    StartChildRequest,
    Supervisor,
    TerminateChildRequest,
)
from rebeam_operator.children import CODEC, manifest_child
from rebeam_operator.convergence import nested_spec_patch, plan
from tests.supervision.harness import Harness


def child(name: str, *cmd: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, **extra, "actor": {"command": list(cmd or ("sleep", "600"))}}


def spec(children: list[dict[str, Any]], **flags: Any) -> SupervisorSpec:
    return SupervisorSpec.model_validate({**flags, "children": children})


def running(s: SupervisorSpec) -> Harness:
    h = Harness(supervisor_flags(s), child_specs(s))
    h.init()
    return h


def test_nothing_changed_is_no_plan() -> None:
    s = spec([child("a")])
    assert plan(running(s).sup, s, spec([child("a")]), 2).applied is None


def test_removed_changed_added_become_terminate_delete_replace_start() -> None:
    old = spec([child("a"), child("b"), child("c")])
    new = spec([child("d"), child("c", "sleep", "601"), child("a")])
    h = running(old)
    p = plan(h.sup, old, new, 7)
    kinds = [(type(e).__name__, getattr(e, "child", None)) for e in p.events]
    assert kinds == [
        ("TerminateChildRequest", "b"),
        ("DeleteChildRequest", "b"),
        ("ReplaceChildRequest", None),
        ("StartChildRequest", None),
    ]
    assert isinstance(p.events[0], TerminateChildRequest)
    assert isinstance(p.events[1], DeleteChildRequest)
    replace, start = p.events[2], p.events[3]
    assert isinstance(replace, ReplaceChildRequest)
    assert replace.spec.id == "c"
    assert isinstance(start, StartChildRequest)
    assert start.spec is not None
    assert start.spec.id == "d"
    assert p.request_ids == [f"converge/7/{n}" for n in (1, 2, 3, 4)]
    # The kept children keep their order; added ones go to the end (OTP's start_child).
    assert p.applied is not None
    assert [c.name for c in p.applied.children] == ["a", "c", "d"]
    for event in p.events:
        h.send(event)
    assert h.sup.restart_history == ()
    assert [i.id for i in reversed(h.sup.which_children())] == ["a", "c", "d"]
    assert (h.incarnation("a"), h.incarnation("c"), h.incarnation("d")) == (1, 2, 1)
    replaced = manifest_child(h.sup, "c")
    assert replaced is not None
    assert replaced.actor is not None
    assert replaced.actor.command == ["sleep", "601"]


def test_once_applied_a_new_order_alone_is_no_plan() -> None:
    old = spec([child("a"), child("b")])
    new = spec([child("c"), child("b"), child("a")])
    h = running(old)
    first = plan(h.sup, old, new, 2)
    assert first.applied is not None
    assert [c.name for c in first.applied.children] == ["a", "b", "c"]
    assert plan(h.sup, first.applied, new, 2).applied is None  # converged: nothing more
    assert plan(h.sup, old, spec([child("b"), child("a")]), 3).applied is None


def test_flags_change_in_the_core_at_once() -> None:
    old = spec([child("a")], intensity=5)
    h = running(old)
    p = plan(h.sup, old, spec([child("a")], intensity=1, strategy="one_for_all"), 2)
    assert p.events == []
    assert p.applied is not None
    assert h.sup.flags.intensity == 1


def test_a_refused_generation_changes_nothing() -> None:
    old = spec([child("a")], intensity=5)
    h = running(old)
    new = SupervisorSpec.model_validate(
        {"strategy": "simple_one_for_one", "intensity": 1, "childTemplate": child("t")}
    )
    p = plan(h.sup, old, new, 2)
    assert p.applied is None
    assert "simple_one_for_one" in p.problems[0]
    assert h.sup.flags.intensity == 5


def test_a_nested_spec_is_patched_not_replaced() -> None:
    nested = {"name": "inner", "supervisor": {"children": [child("x")]}}
    old = spec([nested])
    new_nested = {"name": "inner", "supervisor": {"children": [child("x"), child("y")]}}
    new = spec([new_nested])
    assert plan(running(old).sup, old, new, 2).events == []
    obj = {"spec": {"children": [child("x")], "intensity": 3}}
    patch = nested_spec_patch(new.children[0], obj)
    assert patch is not None
    assert [c["name"] for c in patch["spec"]["children"]] == ["x", "y"]


def test_dynamic_children_are_the_template_under_their_own_name() -> None:
    s = SupervisorSpec.model_validate(
        {"strategy": "simple_one_for_one", "childTemplate": child("worker", "sleep")}
    )
    h = running(s)
    h.send(StartChildRequest("r", args=["5"]))
    made = manifest_child(h.sup, "worker-1")
    assert made is not None
    assert made.name == "worker-1"
    assert made.actor is not None
    assert made.actor.args == ["5"]


def test_specs_in_the_snapshot_go_through_the_codec() -> None:
    old = spec([child("a")])
    h = running(old)
    h.auto = False
    new = spec([child("a", "sleep", "7")])
    p = plan(h.sup, old, new, 2)
    for event in p.events:
        h.send(event)
    assert p.applied is not None
    data = json.loads(json.dumps(h.sup.snapshot(CODEC)))
    restored = Supervisor.restore(supervisor_flags(p.applied), child_specs(p.applied), data, CODEC)
    assert restored.outstanding() == h.sup.outstanding()
    # The new spec waited in the snapshot as JSON and comes back as the manifest's Child.
    restored.handle(ChildExited("a", 1, SHUTDOWN), 1.0)
    [start] = restored.outstanding()
    assert isinstance(start, StartChild)
    assert isinstance(start.spec.start, Child)
    assert start.spec.start.actor is not None
    assert start.spec.start.actor.command == ["sleep", "7"]
