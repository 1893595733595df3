"""Which pods a driver takes for unrecorded: created for a status write that never landed."""

from __future__ import annotations

from typing import Any

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


class _Log:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warning(self, message: str, *args: object) -> None:
        self.warnings.append(message % args)


class _Driver:
    """What _pid_of needs of a driver: its log and its pid rule."""

    def __init__(self) -> None:
        self.log = _Log()

    def _pid(self, child: str, incarnation: int) -> Pid | None:
        return Pid.for_incarnation("ns", f"slot-of-{child}", incarnation)


def labelled(pid: str | None) -> Json:
    body = pod("x-2", "5")
    body["metadata"]["labels"] = {"rebeam.io/child": "x", "rebeam.io/incarnation": "2"}
    if pid is not None:
        body["metadata"]["annotations"]["rebeam.io/pid"] = pid
    return body


def test_an_unrecorded_pods_pid_is_its_annotation() -> None:
    driver: Any = _Driver()
    assert _pid_of(driver, labelled("ns.abc.2")) == Pid.parse("ns.abc.2")


def test_a_mangled_pid_annotation_falls_back_to_the_labels() -> None:
    """Bad input on a pod must not wedge the driver's passes: it says so and carries on."""
    driver: Any = _Driver()
    assert _pid_of(driver, labelled("not a pid")) == Pid.for_incarnation("ns", "slot-of-x", 2)
    assert "malformed pid" in driver.log.warnings[0]
    assert _pid_of(driver, labelled(None)) == Pid.for_incarnation("ns", "slot-of-x", 2)
