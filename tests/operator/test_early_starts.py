"""Which pods a driver takes for unrecorded: created for a status write that never landed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rebeam.pids import Pid
from rebeam_operator.early_starts import _pid_of, decided_seq, unrecorded

Json = dict[str, Any]


def pod(name: str, seq: str | None) -> Json:
    annotations = {} if seq is None else {"rebeam.io/decided-seq": seq}
    return {"metadata": {"name": name, "annotations": annotations}}


def test_decided_seq_reads_the_annotation() -> None:
    assert decided_seq(pod("a", "12")) == 12


def test_pods_from_before_the_annotation_count_as_recorded() -> None:
    assert decided_seq(pod("a", None)) == 0
    assert decided_seq({"metadata": {"name": "a"}}) == 0
    assert decided_seq(pod("a", "garbage")) == 0


def test_a_pod_above_the_persisted_seq_is_unrecorded() -> None:
    pods = {"x-1": pod("x-1", "4"), "x-2": pod("x-2", "5"), "y-1": pod("y-1", "6")}
    assert unrecorded(pods, persisted_seq=4, pending=set()) == ["x-2", "y-1"]


def test_a_pending_early_create_is_not_unrecorded() -> None:
    """Its own create whose status write is still on its way (or failed and is retried)."""
    pods = {"x-2": pod("x-2", "5")}
    assert unrecorded(pods, persisted_seq=4, pending={"x-2"}) == []


def test_nothing_is_unrecorded_once_the_write_landed() -> None:
    pods = {"x-1": pod("x-1", "4"), "x-2": pod("x-2", "5")}
    assert unrecorded(pods, persisted_seq=5, pending=set()) == []


def pid_rule(child: str, incarnation: int) -> Pid | None:
    """The driver's pid of a child's incarnation (its slot is made up here)."""
    return Pid.for_incarnation("ns", f"slot-of-{child}", incarnation)


LOG = logging.LoggerAdapter(logging.getLogger("rebeam.operator"), {"object": "ns/app"})


def labelled(pid: str | None) -> Json:
    body = pod("x-2", "5")
    body["metadata"]["labels"] = {"rebeam.io/child": "x", "rebeam.io/incarnation": "2"}
    if pid is not None:
        body["metadata"]["annotations"]["rebeam.io/pid"] = pid
    return body


def test_an_unrecorded_pods_pid_is_its_annotation() -> None:
    assert _pid_of(labelled("ns.abc.2"), pid_rule, LOG) == Pid.parse("ns.abc.2")


def test_a_mangled_pid_annotation_falls_back_to_the_labels(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bad input on a pod must not wedge the driver's passes: it says so and carries on."""
    caplog.set_level(logging.WARNING, "rebeam.operator")
    assert _pid_of(labelled("not a pid"), pid_rule, LOG) == Pid.for_incarnation(
        "ns", "slot-of-x", 2
    )
    assert "malformed pid" in caplog.records[0].getMessage()
    assert _pid_of(labelled(None), pid_rule, LOG) == Pid.for_incarnation("ns", "slot-of-x", 2)
