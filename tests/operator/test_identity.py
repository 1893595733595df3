"""identity.py with a fake API server: which tokens become which grants, and what an actor
pod must match to get its pid's credential (the e2e tier runs the same against a real API
server: test_attacks_operator.py)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from rebeam.auth.grants import Grant, Role
from rebeam.pids import Pid
from rebeam.spec.models import Child
from rebeam.supervision import Error, Event, Ok, Supervisor
from rebeam_operator.hosts import host_from_body
from rebeam_operator.identity import Identity
from rebeam_operator.settings import Settings
from tests.operator.bodies import supervisor_body

Json = dict[str, Any]

NS = "team-a"
PID = Pid.for_incarnation(NS, "slot-uid", 3)
POD_UID = "pod-uid-1"


def jwt_with(aud: str) -> str:
    """A token shaped like a ServiceAccount JWT (only its audience is read, unverified)."""
    body = base64.urlsafe_b64encode(json.dumps({"aud": [aud]}).encode()).decode().rstrip("=")
    return f"head.{body}.sig"


ACTOR_TOKEN = jwt_with("rebeam-nats")
PERSON_TOKEN = jwt_with("https://kubernetes.default.svc")


class FakeKube:
    def __init__(self) -> None:
        self.reviews: dict[str, Json] = {
            ACTOR_TOKEN: {
                "authenticated": True,
                "audiences": ["rebeam-nats"],
                "user": {
                    "username": f"system:serviceaccount:{NS}:default",
                    "extra": {
                        "authentication.kubernetes.io/pod-name": ["shop-bank-3"],
                        "authentication.kubernetes.io/pod-uid": [POD_UID],
                    },
                },
            },
            PERSON_TOKEN: {"authenticated": True, "user": {"username": "alice", "groups": ["g"]}},
        }
        self.review_calls = 0
        self.allowed = True
        self.access_asked: list[Json] = []

    async def review_token(self, token: str, audiences: list[str] | None) -> Json:
        self.review_calls += 1
        return self.reviews.get(token, {"authenticated": False, "error": "invalid bearer token"})

    async def get_pod(self, namespace: str, name: str) -> Json | None:
        return None

    async def review_access(self, user: Json, attributes: Json) -> Json:
        self.access_asked.append(attributes)
        return {"allowed": self.allowed}


def pod(**changes: Any) -> Json:
    meta: Json = {
        "name": "shop-bank-3",
        "uid": POD_UID,
        "labels": {
            "app.kubernetes.io/managed-by": "rebeam-operator",
            "rebeam.io/host-uid": "host-uid",
            "rebeam.io/child": "bank",
            "rebeam.io/incarnation": "3",
        },
        "annotations": {"rebeam.io/pid": str(PID)},
    }
    meta.update(changes.pop("metadata", {}))
    return {"metadata": meta, "status": {"phase": "Running", **changes}}


class FakeDriver:
    """A driver as identity.py sees it (view.DriverView): the Supervisor ``shop`` whose child
    ``bank`` registers as ``bank``, with one pod."""

    def __init__(self, body: Json) -> None:
        self.host = host_from_body(supervisor_body(name="shop", uid="host-uid", namespace=NS))
        self.core: Supervisor | None = None
        self.child_exits: dict[str, Json] = {}
        self.pods = {body["metadata"]["name"]: body}

    def pid(self, child: str, incarnation: int) -> Pid | None:
        return Pid.for_incarnation(NS, "slot-uid", incarnation)

    def child(self, child_id: str) -> Child | None:
        actor = {"command": ["sleep", "600"], "register": "bank"}
        return Child.model_validate({"name": child_id, "actor": actor})

    def ask(self, make: Callable[[str], Event]) -> asyncio.Future[Ok | Error]:
        raise AssertionError("identity asks no driver for anything")

    def withdraw(self, future: asyncio.Future[Ok | Error]) -> None:
        raise AssertionError("identity asks no driver for anything")


class Claims:
    def __init__(self) -> None:
        self.waited: list[Pid] = []

    async def wait(self, pid: Pid, timeout: float) -> None:
        self.waited.append(pid)


def identity(body: Json | None = None, namespaces: tuple[str, ...] = (NS,)) -> Identity:
    kube = FakeKube()
    made = Identity(Settings(namespaces=namespaces), kube, Claims())  # type: ignore[arg-type]
    made.drivers = {"host-uid": FakeDriver(body or pod())}
    return made


async def test_an_actor_pod_token_is_its_incarnation_with_its_declared_name() -> None:
    made = identity()
    grant = await made.resolve(ACTOR_TOKEN, {})
    assert grant == Grant(Role.ACTOR, NS, PID, names=("bank",), label="shop/bank#3")
    assert made.claims.waited == [PID]  # type: ignore[attr-defined]
    await made.resolve(ACTOR_TOKEN, {})
    assert made.kube.review_calls == 1  # type: ignore[attr-defined]  # cached by hash


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (pod(metadata={"uid": "another"}), "is gone"),
        (pod(phase="Failed"), "has ended"),
        (
            pod(metadata={"annotations": {"rebeam.io/pid": f"{NS}.other-slot.3"}}),
            "is not the pod of",
        ),
        (
            pod(metadata={"labels": {**pod()["metadata"]["labels"], "rebeam.io/incarnation": "4"}}),
            "is not the pod of",
        ),
        (
            pod(metadata={"labels": {**pod()["metadata"]["labels"], "rebeam.io/host-uid": "x"}}),
            "not an actor pod of this operator",
        ),
    ],
)
async def test_an_actor_pod_that_does_not_match_is_refused_by_name(body: Json, why: str) -> None:
    with pytest.raises(PermissionError, match=why):
        await identity(body).resolve(ACTOR_TOKEN, {})


async def test_an_ended_incarnation_is_refused() -> None:
    made = identity()
    made.ended(PID)
    with pytest.raises(PermissionError, match="has ended"):
        await made.resolve(ACTOR_TOKEN, {})


async def test_a_person_is_an_admin_of_a_namespace_the_operator_runs() -> None:
    made = identity()
    me = Pid.for_client(NS)
    grant = await made.resolve(PERSON_TOKEN, {"name": str(me)})
    assert grant is not None
    assert (grant.role, grant.namespace, grant.label) == (
        Role.ADMIN,
        NS,
        "alice",
    )
    assert grant.extra["user"]["groups"] == ["g"]
    with pytest.raises(PermissionError, match="not run by this operator"):
        await made.resolve(PERSON_TOKEN, {"name": str(Pid.for_client("elsewhere"))})
    # '_' would reach another namespace's buckets in the shared account.
    with pytest.raises(PermissionError, match="not a Kubernetes namespace"):
        await identity(namespaces=()).resolve(PERSON_TOKEN, {"name": "team-a_local.client-x.1"})
    with pytest.raises(PermissionError, match="not a valid Kubernetes token"):
        await made.resolve("forged", {"name": str(me)})
