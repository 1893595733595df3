"""What a driver's pass does not do again: the operator's CPU per pod at scale
(docs/operator.md, "Scale"). A pass at rest must not validate, dump or compare specs that did
not change since the last pass; an edit must still be seen at once."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from rebeam.pids import Pid
from rebeam_operator import convergence, slots
from rebeam_operator.hosts import host_from_body
from tests.operator.bodies import SLEEP, supervisor_body
from tests.operator.test_driver import running, status

Json = dict[str, Any]


def _counting(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[int]:
    calls = [0]
    real: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_an_unchanged_spec_is_taken_from_the_body_the_host_was_read_from() -> None:
    body = supervisor_body()
    host = host_from_body(body)
    later = copy.deepcopy(body)
    later["metadata"]["resourceVersion"] = "43"
    assert host_from_body(later, (body, host)).spec is host.spec
    assert host_from_body(later, (body, host)).resource_version == "43"
    edited = copy.deepcopy(later)
    edited["spec"]["intensity"] = 7
    read = host_from_body(edited, (body, host))
    assert read.spec is not host.spec
    assert read.spec.intensity == 7


async def test_a_pass_at_rest_compares_no_spec_again(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    await driver.reconcile()  # the comparisons of the specs as they are now, once
    same = _counting(monkeypatch, convergence, "same")
    slot_patch = _counting(monkeypatch, slots, "slot_spec_patch")
    pids = _counting(monkeypatch, Pid, "for_incarnation")
    spec = driver.host.spec
    # The object as a watch brings it again (a newer resourceVersion, the same spec).
    again = copy.deepcopy(fake.owner)
    driver.update(again, False)
    await driver.reconcile()
    await driver.reconcile()
    assert driver.host.spec is spec
    assert (same[0], slot_patch[0], pids[0]) == (0, 0, 0)


async def test_an_edit_is_still_compared_and_converged(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    await driver.reconcile()
    same = _counting(monkeypatch, convergence, "same")
    edited = copy.deepcopy(fake.owner)
    edited["spec"]["intensity"] = 9
    edited["metadata"]["generation"] += 1
    fake.owner = copy.deepcopy(edited)
    driver.update(edited, False)
    await driver.reconcile()
    assert same[0] == 1
    assert driver.record.applied is not None
    assert driver.record.applied.intensity == 9


async def test_a_status_write_dumps_the_applied_spec_once(monkeypatch: pytest.MonkeyPatch) -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    dump = _counting(monkeypatch, convergence, "dump")
    written = status(fake)["appliedSpec"]
    await driver.persist(0.0)
    await driver.persist(0.0)
    assert dump[0] == 0
    assert status(fake)["appliedSpec"] == written
