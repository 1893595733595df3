"""The naming rule for dynamic children, which both backends share: ``<template>-<n>``, n from
1, never given twice while the tree runs (a restarted supervisor continues counting)."""

from __future__ import annotations

import pytest

from rebeam.supervision import (
    ChildRef,
    ChildSpec,
    Ok,
    StartChildRequest,
    Strategy,
    Supervisor,
    SupervisorFlags,
    TerminateChildRequest,
    dynamic_child_id,
    dynamic_serial,
)
from tests.supervision.harness import Harness

SIMPLE = SupervisorFlags(strategy=Strategy.SIMPLE_ONE_FOR_ONE)


def test_the_name_is_the_template_and_the_serial() -> None:
    assert dynamic_child_id("worker", 4) == "worker-4"
    assert dynamic_serial("worker", "worker-4") == 4
    assert dynamic_serial("worker", "worker-123") == 123


@pytest.mark.parametrize(
    "child_id",
    [
        "worker",
        "worker-",
        "4",
        "job-4",
        "worker-0",
        "worker-04",
        "worker-4a",
        "worker-²",
        "worker--4",
    ],
)
def test_anything_else_is_no_dynamic_child_of_that_template(child_id: str) -> None:
    assert dynamic_serial("worker", child_id) is None


def test_a_template_whose_name_ends_in_a_number_is_not_confused() -> None:
    # "db-2" as a template: its children are db-2-1, db-2-2; "db-2" itself is none of them.
    assert dynamic_child_id("db-2", 1) == "db-2-1"
    assert dynamic_serial("db-2", "db-2-1") == 1
    assert dynamic_serial("db-2", "db-2") is None


def test_start_child_names_children_after_the_template_counting_from_one() -> None:
    h = Harness(SIMPLE, [ChildSpec("worker")])
    h.init()
    for request in "ab":
        h.send(StartChildRequest(request))
    assert [c.id for c in h.sup.which_children()] == ["worker-1", "worker-2"]
    assert h.replies["b"] == Ok(ChildRef("worker-2", 1))


def test_a_restarted_supervisor_continues_counting() -> None:
    # A new incarnation of the supervisor is a new core that is given the old one's
    # incarnations (both backends do so): worker-1 and worker-2 never name another child.
    h = Harness(SIMPLE, [ChildSpec("worker")])
    h.init()
    for request in "ab":
        h.send(StartChildRequest(request))
    again = Harness(SIMPLE, [ChildSpec("worker")])
    again.sup = Supervisor(SIMPLE, [ChildSpec("worker")], incarnations=h.sup.incarnations)
    again.init()
    again.send(StartChildRequest("c"))
    assert [c.id for c in again.sup.which_children()] == ["worker-3"]
    # A child of the old incarnation is gone: terminating it again is no error.
    again.send(TerminateChildRequest("t", "worker-1"))
    assert again.replies["t"] == Ok()
