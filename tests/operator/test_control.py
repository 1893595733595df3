"""control.py: the management API subscribes only once the trees that exist have been picked
up, so that a just-restarted operator never leaves a request unanswered (its caller would
wait out its whole timeout). A fake kube and world stand in for kopf's delivery here; the
e2e test_operator_dynamic.py restarts a real operator and asks at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from rebeam import _subjects
from rebeam._management_server import MAX_IN_PROGRESS
from rebeam._wakeups import Wakeups
from rebeam.pids import Pid
from rebeam_operator import control
from rebeam_operator.control import ControlServer
from rebeam_operator.settings import Settings

Json = dict[str, Any]


def obj(uid: str, owner_kind: str | None = None) -> Json:
    meta: Json = {"uid": uid, "name": uid}
    if owner_kind:
        meta["ownerReferences"] = [{"kind": owner_kind, "name": "x", "uid": "x"}]
    return {"metadata": meta}


class FakeKube:
    def __init__(self, objects: dict[str, list[Json]], fail: bool = False) -> None:
        self.objects = objects
        self.fail = fail
        self.asked: list[tuple[str, str | None]] = []

    async def list_objects(
        self, namespace: str | None, plural: str, selector: str = ""
    ) -> list[Json]:
        assert selector == ""  # every object, not one driver's
        self.asked.append((plural, namespace))
        if self.fail:
            raise RuntimeError("API server unreachable")
        return self.objects.get(plural, [])


@dataclass
class FakeWorld:
    """What ControlServer._caught_up reads of the world: kube, settings, and the uids seen."""

    kube: FakeKube
    settings: Settings
    seen: set[str] = field(default_factory=set)
    host_seen: asyncio.Event = field(default_factory=asyncio.Event)


def world(kube: FakeKube, namespaces: tuple[str, ...] = ()) -> Any:
    return FakeWorld(kube, Settings(namespaces=namespaces))


def see(w: FakeWorld, uid: str) -> None:
    w.seen.add(uid)
    w.host_seen.set()


async def test_waits_until_every_listed_tree_is_seen() -> None:
    kube = FakeKube({"supervisors": [obj("s1"), obj("s2")], "actors": [obj("a1")]})
    w = world(kube)
    waiting = asyncio.create_task(ControlServer(w)._caught_up())
    await asyncio.sleep(0.05)
    see(w, "s1")
    see(w, "a1")
    await asyncio.sleep(0.05)
    assert not waiting.done()  # s2 not picked up yet
    see(w, "s2")
    await asyncio.wait_for(waiting, 5)
    assert kube.asked == [("supervisors", None), ("actors", None)]  # cluster-wide


async def test_actor_slots_are_not_waited_for() -> None:
    """A Supervisor's slot Actors are never handed to the world: its driver writes them."""
    kube = FakeKube({"supervisors": [obj("s1")], "actors": [obj("slot", "Supervisor")]})
    w = world(kube)
    see(w, "s1")
    await asyncio.wait_for(ControlServer(w)._caught_up(), 5)


async def test_lists_only_the_namespaces_watched() -> None:
    kube = FakeKube({})
    await asyncio.wait_for(ControlServer(world(kube, ("a", "b")))._caught_up(), 5)
    assert kube.asked == [
        ("supervisors", "a"),
        ("actors", "a"),
        ("supervisors", "b"),
        ("actors", "b"),
    ]


async def test_gives_up_waiting_after_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "CATCH_UP_DEADLINE", 0.2)
    w = world(FakeKube({"supervisors": [obj("never")]}))
    await asyncio.wait_for(ControlServer(w)._caught_up(), 5)


async def test_answers_anyway_when_the_api_server_cannot_list() -> None:
    await asyncio.wait_for(ControlServer(world(FakeKube({}, fail=True)))._caught_up(), 5)


# --- requests while a supervisor is in its init ---------------------------------------------


@dataclass
class FakeHost:
    namespace: str = "ns"
    path: str = "app"


@dataclass
class FakeDriver:
    """What the tree request reads of a driver here: its namespace, and whether it starts."""

    starting: bool
    host: FakeHost = field(default_factory=FakeHost)


@dataclass
class Msg:
    subject: str
    reply: str = "_INBOX.test"
    data: bytes = b"{}"
    answers: list[Json] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def respond(self, data: bytes) -> None:
        self.answers.append(json.loads(data))
        self.answered.set()


@dataclass
class ServingWorld:
    drivers: dict[str, Any]
    passes: Wakeups = field(default_factory=Wakeups)


def serving(monkeypatch: pytest.MonkeyPatch, drivers: list[FakeDriver]) -> ControlServer:
    """A control server of a world of ``drivers``, where everyone may ask, and whose tree
    says which drivers were starting when it was read."""

    async def allowed(*_: Any) -> None:
        return None

    monkeypatch.setattr(ControlServer, "_allowed", allowed)
    monkeypatch.setattr(control, "tree", lambda ds: [d.starting for d in ds])
    return ControlServer(ServingWorld({str(i): d for i, d in enumerate(drivers)}))  # type: ignore[arg-type]


def tree_request() -> Msg:
    return Msg(_subjects.control("ns", "tree", Pid.for_client("ns")))


async def test_a_tree_request_waits_until_no_supervisor_is_in_its_init(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate, pool = FakeDriver(starting=True), FakeDriver(starting=False)
    server = serving(monkeypatch, [gate, pool])
    msg = tree_request()
    await server._accept(msg)
    server.world.passes.announce()  # a pass that ended no init
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(msg.answered.wait(), 0.2)
    assert msg.answers == []  # still waiting
    gate.starting = False
    server.world.passes.announce()
    await asyncio.wait_for(msg.answered.wait(), 5)
    assert msg.answers == [{"ok": [False, False]}]


async def test_a_waiting_request_holds_up_no_other(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most MAX_IN_PROGRESS wait; the next is answered busy at once."""
    server = serving(monkeypatch, [FakeDriver(starting=True)])
    waiting = [tree_request() for _ in range(MAX_IN_PROGRESS)]
    for msg in waiting:
        await server._accept(msg)
    flood = tree_request()
    await server._accept(flood)
    assert [a["code"] for a in flood.answers] == ["busy"]
    assert server.busy == 1
    server.cancel_in_progress()


async def test_a_tree_request_gives_up_after_the_reply_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(control, "REPLY_DEADLINE", 0.2)
    server = serving(monkeypatch, [FakeDriver(starting=True)])
    msg = tree_request()
    await server._accept(msg)
    await asyncio.wait_for(msg.answered.wait(), 5)
    assert [a["code"] for a in msg.answers] == ["timeout"]
