"""Snapshots: a backend that restarts in the middle of a plan carries on exactly."""

from __future__ import annotations

import json

import pytest

from rebeam.exits import SHUTDOWN
from rebeam.spec import load_text
from rebeam.spec.models import Child
from rebeam.spec.models import Supervisor as SupervisorResource
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import (
    ChildExited,
    ChildSpec,
    ChildStarted,
    SnapshotError,
    StartChild,
    StartChildRequest,
    StartCodec,
    StopChild,
    Strategy,
    Supervisor,
    SupervisorFlags,
)
from tests.supervision.harness import BOOM, Harness, children


def through_json(sup: Supervisor, flags: SupervisorFlags, specs: list[ChildSpec]) -> Supervisor:
    return Supervisor.restore(flags, specs, json.loads(json.dumps(sup.snapshot())))


def test_a_group_restart_interrupted_halfway_carries_on_after_restore() -> None:
    flags = SupervisorFlags(strategy=Strategy.ONE_FOR_ALL, intensity=1)
    specs = children("a", "b", "c")
    h = Harness(flags, specs)
    h.init()
    h.auto = False
    h.crash("a")  # one_for_all: stop c#1 is out, then b, then starts
    assert h.sup.outstanding() == [StopChild("c", 1, 5.0)]

    restored = through_json(h.sup, flags, specs)  # the operator died and came back
    assert restored.outstanding() == [StopChild("c", 1, 5.0)]  # it re-issues the stop
    assert restored.handle(ChildExited("c", 1, SHUTDOWN), 1.0) == [StopChild("b", 1, 5.0)]
    assert restored.restart_history == (0.0,)  # the restart is neither lost nor recounted
    restored.handle(ChildExited("b", 1, SHUTDOWN), 1.0)
    assert [c.child for c in restored.outstanding() if isinstance(c, StartChild)] == ["a"]


def test_incarnations_and_history_survive() -> None:
    flags = SupervisorFlags(intensity=1, period=5)
    specs = children("a")
    h = Harness(flags, specs)
    h.init()
    h.crash("a")
    restored = through_json(h.sup, flags, specs)
    assert restored.incarnations == {"a": 2}
    # The restart before the operator's restart still counts: one more gives up.
    out = restored.handle(ChildExited("a", 2, BOOM), 1.0)
    assert type(out[0]).__name__ == "GaveUp"


def test_dynamic_and_added_children_come_back_with_their_args() -> None:
    flags = SupervisorFlags(strategy=Strategy.SIMPLE_ONE_FOR_ONE)
    specs = [ChildSpec("t", args={"base": 1})]
    h = Harness(flags, specs)
    h.init()
    h.send(StartChildRequest("r", args={"n": 2}))
    restored = through_json(h.sup, flags, specs)
    out = restored.handle(ChildExited("t-1", 1, BOOM), 1.0)
    start = next(c for c in out if isinstance(c, StartChild))
    assert start.spec.args == {"base": 1, "n": 2}


def test_manifest_payloads_go_through_a_codec() -> None:
    text = (
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: s}\n"
        "spec:\n  children: [{name: a, actor: {module: 'm:A'}}]\n"
    )
    (resource,) = load_text(text).raise_for_problems()
    assert isinstance(resource, SupervisorResource)
    flags, specs = supervisor_flags(resource.spec), child_specs(resource.spec)
    codec = StartCodec(
        encode=lambda child: child.model_dump(by_alias=True, exclude_none=True) if child else None,
        decode=lambda data: Child.model_validate(data) if data else None,
    )
    sup = Supervisor(flags, specs)
    sup.init(0.0)
    sup.handle(ChildStarted("a", 1), 0.1)
    added = ChildSpec("b", start=specs[0].start.model_copy(update={"name": "b"}))
    sup.handle(StartChildRequest("r", added), 0.2)
    snapshot = json.loads(json.dumps(sup.snapshot(codec)))
    restored = Supervisor.restore(flags, specs, snapshot, codec)
    (start,) = restored.outstanding()
    assert isinstance(start, StartChild)
    assert start.spec.start == added.start


def test_an_unknown_version_is_refused() -> None:
    flags, specs = SupervisorFlags(), children("a")
    snapshot = Supervisor(flags, specs).snapshot()
    snapshot["version"] = 99
    with pytest.raises(SnapshotError, match="version 99"):
        Supervisor.restore(flags, specs, snapshot)
