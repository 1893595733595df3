"""hosts.py: reading a Supervisor or Actor body — identity, names, the annotations a parent
writes, an Actor applied on its own as a supervisor, and bodies that cannot be driven."""

from __future__ import annotations

from typing import Any

import pytest

from rebeam.spec.models import Strategy
from rebeam.supervision import RestartType
from rebeam_operator.hosts import (
    ANN_INCARNATION,
    ANN_KILL,
    ANN_PATH,
    ANN_STOP,
    FINALIZER,
    InvalidObject,
    host_from_body,
)
from tests.operator.bodies import actor_body, supervisor_body

Json = dict[str, Any]


def test_supervisor_identity_and_names() -> None:
    host = host_from_body(supervisor_body(finalizers=[FINALIZER]))
    assert host.kind == "Supervisor"
    assert host.plural == "supervisors"
    assert not host.standalone_actor
    assert (host.namespace, host.name, host.uid) == ("ns", "app", "uid-app")
    assert host.generation == 3
    assert host.resource_version == "42"
    assert host.path == "app"  # a root's path is its name
    assert host.incarnation == 1
    assert host.stop_incarnation == 0
    assert host.kill_incarnation == 0
    assert not host.deleting
    assert host.finalizers == (FINALIZER,)
    assert not host.owned_by_supervisor
    assert host.pod_name("a", 3) == "app-a-3"
    assert host.slot_object("a") == "app-a"
    assert host.child_supervisor("mid") == "app-mid"
    assert host.owner_reference() == {
        "apiVersion": "rebeam.io/v1alpha1",
        "kind": "Supervisor",
        "name": "app",
        "uid": "uid-app",
        "controller": True,
        "blockOwnerDeletion": True,
    }


def test_a_nested_supervisor_reads_what_its_parent_asks() -> None:
    owner = {"apiVersion": "rebeam.io/v1alpha1", "kind": "Supervisor", "name": "app", "uid": "p"}
    body = supervisor_body(
        name="app-mid",
        annotations={ANN_PATH: "app/mid", ANN_INCARNATION: "4", ANN_STOP: "3", ANN_KILL: "2"},
        owners=[owner],
        deletionTimestamp="2026-01-01T00:00:00Z",
    )
    body["status"] = {"seq": 9}
    host = host_from_body(body)
    assert host.path == "app/mid"
    assert host.incarnation == 4
    assert host.stop_incarnation == 3
    assert host.kill_incarnation == 2
    assert host.owned_by_supervisor
    assert host.deleting
    assert host.status == {"seq": 9}


def test_an_owner_of_another_kind_is_not_a_parent() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "Supervisor", "name": "x", "uid": "y"}
    assert not host_from_body(supervisor_body(owners=[owner])).owned_by_supervisor


def test_spec_is_read_into_the_models() -> None:
    spec = {
        "strategy": "rest_for_one",
        "intensity": 7,
        "period": "1m",
        "children": [{"name": "a", "shutdown": "brutal_kill", "actor": {"command": ["x"]}}],
    }
    host = host_from_body(supervisor_body(spec))
    assert host.spec.strategy is Strategy.REST_FOR_ONE
    assert host.spec.intensity == 7
    assert host.spec.period == 60.0
    assert host.spec.children[0].shutdown == "brutal_kill"


def test_standalone_actor_is_the_only_child_of_an_implicit_supervisor() -> None:
    body = actor_body(
        {
            "module": "pkg.mod:Thing",
            "register": "thing",
            "restart": "transient",
            "shutdown": "30s",
            "startTimeout": "2m",
        }
    )
    host = host_from_body(body)
    assert host.kind == "Actor"
    assert host.plural == "actors"
    assert host.standalone_actor
    assert host.spec.strategy is Strategy.ONE_FOR_ONE
    assert host.spec.intensity == 3  # the defaults: 3 restarts in 5 s
    assert host.spec.period == 5.0
    (child,) = host.spec.children
    assert child.name == "solo"
    assert child.restart is RestartType.TRANSIENT
    assert child.shutdown == 30.0
    assert child.start_timeout == 120.0
    assert child.actor is not None
    assert child.actor.module == "pkg.mod:Thing"
    assert child.actor.register_as == "thing"
    assert host.pod_name("solo", 2) == "solo-2"  # <actor>-<incarnation>
    assert host.slot_object("solo") == "solo"  # its own slot


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({**supervisor_body(), "kind": "Pod"}, "kind must be Supervisor or Actor"),
        ({"kind": "Supervisor", "spec": {}}, "metadata.name, metadata.namespace, metadata.uid"),
        (supervisor_body(uid=""), "metadata.uid missing"),
        (supervisor_body(annotations={ANN_INCARNATION: "two"}), "rebeam.io/incarnation: 'two'"),
        (supervisor_body(annotations={ANN_STOP: "-1"}), "rebeam.io/stop-incarnation: '-1'"),
        (supervisor_body(annotations={ANN_KILL: ""}), "rebeam.io/kill-incarnation: ''"),
        (supervisor_body({"strategy": "one_for_none"}), "spec.strategy:"),
        (
            supervisor_body({"children": [{"name": "a", "actor": {"command": ["x"]}, "x": 1}]}),
            "spec.children.0.x:",
        ),
        (actor_body({"module": "no colon"}), "spec.module:"),
        (actor_body({"module": "a:B", "restart": "sometimes"}), "spec.restart:"),
    ],
)
def test_bodies_that_cannot_be_driven_are_refused_clearly(body: Json, says: str) -> None:
    with pytest.raises(InvalidObject) as refused:
        host_from_body(body)
    assert says in str(refused.value)
    kind = body.get("kind")
    assert str(refused.value).startswith(f"{kind}/")
    assert isinstance(refused.value, ValueError)  # the driver's update() keeps its old host
