"""access.py with a fake API server: RBAC decides a management request, and a refusal names
the missing right (the e2e tier asks a real API server: test_attacks_operator.py)."""

from __future__ import annotations

from dataclasses import dataclass

from rebeam.auth.grants import Grant, Role
from rebeam.pids import Pid
from rebeam_operator import access
from tests.operator.test_identity import NS, FakeDriver, FakeKube, pod


class Bound:
    """An issuer that let every pid in under one grant (access.Binder)."""

    def __init__(self, grant: Grant | None) -> None:
        self.grant = grant

    def bound(self, pid: Pid) -> Grant | None:
        return self.grant


@dataclass
class World:
    """What access.refusal is handed: the issuer's bindings and the API server's reviews."""

    identity: Bound | None
    kube: FakeKube


def world_with(grant: Grant | None, allowed: bool) -> World:
    kube = FakeKube()
    kube.allowed = allowed
    return World(Bound(grant), kube)


async def refusal(
    world: World, me: Pid, operation: str, target: FakeDriver | None, path: str
) -> str | None:
    return await access.refusal(world.identity, world.kube, me, operation, target, path)


async def test_rbac_decides_a_management_request_and_names_the_missing_right() -> None:
    me = Pid.for_client(NS)
    alice = Grant(Role.ADMIN, NS, me, label="alice", extra={"user": {"username": "alice"}})
    target = FakeDriver(pod())
    allowed = world_with(alice, True)
    assert await refusal(allowed, me, "restart-child", target, "shop/bank") is None
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
    why = await refusal(denied, me, "restart-child", None, "ghost/bank")
    assert why == f"user alice may not patch supervisors/ghost in namespace {NS}"
    why = await refusal(denied, me, "tree", None, "")
    assert why == f"user alice may not get supervisors in namespace {NS}"
    unknown = await refusal(world_with(None, True), me, "tree", None, "")
    assert unknown is not None
    assert "unknown to this operator" in unknown
    open_world = World(None, FakeKube())
    assert await refusal(open_world, me, "tree", None, "") is None
