"""Changing a running supervisor's spec (what a ``kubectl apply`` of an edited manifest asks):
new flags in force at once with the history kept, and replace_child — terminate_child plus
restart_child under a new spec, a management action that counts no restart and applies no
strategy. Pure: the simulated backend of harness.py."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rebeam.exits import SHUTDOWN
from rebeam.supervision import (
    ChildExited,
    ChildRef,
    ChildSpec,
    ChildStarted,
    ChildStatus,
    Error,
    Ok,
    ReplaceChildRequest,
    RestartType,
    StartChildRequest,
    StopChild,
    Strategy,
    Supervisor,
    SupervisorFlags,
    SupervisorSpecError,
    TerminateChildRequest,
)
from tests.supervision.harness import BOOM, Harness, children


def test_new_flags_take_effect_at_once_and_keep_the_history() -> None:
    h = Harness(SupervisorFlags(intensity=3, period=60), children("a", "b"))
    h.init()
    h.crash("a")
    assert h.sup.restart_history == (0.0,)
    h.sup.change_flags(SupervisorFlags(intensity=1, period=60))
    assert h.sup.restart_history == (0.0,)
    m = h.mark()
    h.crash("b")  # the second restart in the window: over the new limit of 1
    assert h.trace(m)[0] == "gave_up b"
    assert h.terminated_with == SHUTDOWN


def test_a_new_strategy_applies_to_the_next_restart() -> None:
    h = Harness(SupervisorFlags(), children("a", "b", "c"))
    h.init()
    h.sup.change_flags(SupervisorFlags(strategy=Strategy.REST_FOR_ONE))
    m = h.mark()
    h.crash("b")
    assert h.trace(m) == ["restarting b: b c", "stop c#1", "start b#2", "start c#2"]


def test_simple_one_for_one_cannot_be_switched_on_or_off() -> None:
    h = Harness(SupervisorFlags(), children("a"))
    h.init()
    with pytest.raises(SupervisorSpecError, match="simple_one_for_one"):
        h.sup.change_flags(SupervisorFlags(strategy=Strategy.SIMPLE_ONE_FOR_ONE))
    with pytest.raises(SupervisorSpecError, match="intensity"):
        h.sup.change_flags(SupervisorFlags(intensity=-1))
    assert h.sup.flags == SupervisorFlags()


def test_replace_child_stops_then_starts_only_that_child_and_counts_nothing() -> None:
    h = Harness(SupervisorFlags(strategy=Strategy.ONE_FOR_ALL, intensity=0), children("a", "b"))
    h.init()
    new = ChildSpec("a", shutdown=9, args=["v2"])
    m = h.mark()
    h.send(ReplaceChildRequest("r", new))
    # one_for_all is not applied and intensity 0 is not reached: not a restart.
    assert h.trace(m) == ["stop a#1", "start a#2", "reply r: ok a#2"]
    assert h.commands[-3] == StopChild("a", 1, 5.0)  # stopped with its old shutdown
    assert h.sup.child_spec("a") == new
    assert h.sup.restart_history == ()
    assert h.replies["r"] == Ok(ChildRef("a", 2))
    assert h.incarnation("b") == 1


def test_replace_child_keeps_a_stopped_child_stopped() -> None:
    h = Harness(SupervisorFlags(), children("a", "b"))
    h.init()
    h.send(TerminateChildRequest("t", "a"))
    m = h.mark()
    h.send(ReplaceChildRequest("r", ChildSpec("a", restart=RestartType.TRANSIENT)))
    assert h.trace(m) == ["reply r: ok None"]
    assert h.status("a") is ChildStatus.UNDEFINED
    assert h.sup.child_spec("a") == ChildSpec("a", restart=RestartType.TRANSIENT)


def test_replace_child_errors() -> None:
    h = Harness(SupervisorFlags(), children("a"))
    h.init()
    h.send(ReplaceChildRequest("x", ChildSpec("zz")))
    h.send(ReplaceChildRequest("y", ChildSpec("a", significant=True)))
    assert h.replies["x"] == Error("not_found")
    result = h.replies["y"]
    assert isinstance(result, Error)
    assert "significant" in str(result.reason)
    s = Harness(SupervisorFlags(strategy=Strategy.SIMPLE_ONE_FOR_ONE), children("t"))
    s.init()
    s.send(ReplaceChildRequest("z", ChildSpec("1")))
    assert s.replies["z"] == Error("simple_one_for_one")


def test_a_failed_start_under_the_new_spec_leaves_the_child_stopped() -> None:
    h = Harness(SupervisorFlags(), children("a"))
    h.init()
    h.fail_next_start("a")
    h.send(ReplaceChildRequest("r", ChildSpec("a", args=[2])))
    assert h.replies["r"] == Error(BOOM)
    assert h.status("a") is ChildStatus.UNDEFINED
    assert h.sup.restart_history == ()


def test_a_crash_during_the_replacement_waits_its_turn() -> None:
    # The other child's crash arrives while a is being replaced: handled after, once.
    h = Harness(SupervisorFlags(), children("a", "b"))
    h.init()
    h.auto = False
    h.send(ReplaceChildRequest("r", ChildSpec("a", args=[2])))
    h.send(ChildExited("b", 1, BOOM))
    h.answer(h.unanswered[0], ChildExited("a", 1, SHUTDOWN))
    assert h.trace()[-1] == "start a#2"
    h.answer(h.unanswered[0], h._answer_for(h.unanswered[0]))
    assert h.trace()[-3:] == ["reply r: ok a#2", "restarting b: b", "start b#2"]
    assert h.sup.restart_history == (0.0,)


def test_a_replacement_interrupted_halfway_carries_on_after_restore() -> None:
    flags = SupervisorFlags()
    specs = children("a", "b")
    h = Harness(flags, specs)
    h.init()
    h.auto = False
    new = dataclasses.replace(specs[0], args={"v": 2})
    h.send(ReplaceChildRequest("r", new))
    assert h.sup.outstanding() == [StopChild("a", 1, 5.0)]
    restored = Supervisor.restore(flags, specs, json.loads(json.dumps(h.sup.snapshot())))
    assert restored.outstanding() == [StopChild("a", 1, 5.0)]
    restored.handle(ChildExited("a", 1, SHUTDOWN), 1.0)
    [start] = restored.outstanding()
    assert (start.child, start.incarnation) == ("a", 2)
    assert restored.child_spec("a") == new
    again = Supervisor.restore(flags, specs, json.loads(json.dumps(restored.snapshot())))
    assert again.child_spec("a") == new  # the new spec is in the snapshot, not the manifest


def test_a_queued_replacement_survives_a_restore() -> None:
    flags = SupervisorFlags()
    specs = children("a", "b")
    h = Harness(flags, specs)
    h.init()
    h.auto = False
    h.crash("a")  # start a#2 out
    h.send(ReplaceChildRequest("r", ChildSpec("b", args=[3])))  # waits in the mailbox
    restored = Supervisor.restore(flags, specs, json.loads(json.dumps(h.sup.snapshot())))
    out = restored.handle(ChildStarted("a", 2), 1.0)
    assert [type(c).__name__ for c in out] == ["StopChild"]
    assert out[0] == StopChild("b", 1, 5.0)


def test_a_new_template_serves_new_children_and_restarts_keeping_their_args() -> None:
    template = ChildSpec("t", args=[1])
    h = Harness(SupervisorFlags(strategy=Strategy.SIMPLE_ONE_FOR_ONE), [template])
    h.init()
    h.send(StartChildRequest("s", args=[2]))
    h.sup.change_template(ChildSpec("t", shutdown=7, args=[9]))
    assert h.incarnation("t-1") == 1  # not restarted
    spec = h.sup.child_spec("t-1")
    assert spec is not None
    assert (spec.shutdown, spec.args) == (7, [1, 2])
    h.send(StartChildRequest("s2", args=[3]))
    spec2 = h.sup.child_spec("t-2")
    assert spec2 is not None
    assert (spec2.shutdown, spec2.args) == (7, [9, 3])
    with pytest.raises(SupervisorSpecError):
        Harness(SupervisorFlags(), children("a")).sup.change_template(template)
