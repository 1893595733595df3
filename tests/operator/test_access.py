"""access.py with a fake API server: RBAC decides a management request, and a refusal names
the missing right (the e2e tier asks a real API server: test_attacks_operator.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from rebeam.auth.grants import Grant, Role
from rebeam.pids import Pid
from rebeam_operator import access
from tests.operator.test_identity import NS, FakeDriver, FakeKube, pod


def world_with(grant: Grant | None, allowed: bool) -> Any:
    kube = FakeKube()
    kube.allowed = allowed
    bound = SimpleNamespace(bound=lambda pid: grant)
    return SimpleNamespace(kube=kube, messaging=SimpleNamespace(identity=bound))


async def test_rbac_decides_a_management_request_and_names_the_missing_right() -> None:
    me = Pid.for_client(NS)
    alice = Grant(Role.ADMIN, NS, me, label="alice", extra={"user": {"username": "alice"}})
    target = FakeDriver(pod())
    allowed = world_with(alice, True)
    assert await access.refusal(allowed, me, "restart-child", target, "shop/bank") is None  # type: ignore[arg-type]
    assert allowed.kube.access_asked == [
        {
            "namespace": NS,
            "group": "rebeam.io",
            "verb": "patch",
            "resource": "supervisors",
            "name": "shop",
        }
    ]
    denied = world_with(alice, False)
    why = await access.refusal(denied, me, "restart-child", None, "ghost/bank")
    assert why == f"user alice may not patch supervisors/ghost in namespace {NS}"
    why = await access.refusal(denied, me, "tree", None, "")
    assert why == f"user alice may not get supervisors in namespace {NS}"
    unknown = await access.refusal(world_with(None, True), me, "tree", None, "")
    assert unknown is not None
    assert "unknown to this operator" in unknown
    open_world = SimpleNamespace(messaging=SimpleNamespace(identity=None))
    assert await access.refusal(open_world, me, "tree", None, "") is None  # type: ignore[arg-type]
