"""driver.py against a fake world: the driver acts only through its effects (effects.Effects),
so a fake that keeps pods and objects in memory, and records every act in order, shows what
a pass does and in which order. The pods' lives are played by the test, and handed to the
driver as the watch would. The e2e tier (tests/e2e/operator) runs the same driver on a real
control plane."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from rebeam.exits import ExitReason, crash
from rebeam.pids import Pid
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import (
    ChildExited,
    ChildStarted,
    Error,
    Supervisor,
    TerminateChildRequest,
)
from rebeam_operator.driver import Driver
from rebeam_operator.hosts import ANN_DECIDED_SEQ, ANN_STOP, FINALIZER, Host, host_from_body
from rebeam_operator.kube import Conflict
from rebeam_operator.record import Record, parse, to_status
from rebeam_operator.settings import Settings
from rebeam_operator.timing import BACKOFF_CAP, BACKOFF_FIRST, Backoff, Result
from tests.operator.bodies import SLEEP, supervisor_body

Json = dict[str, Any]

PASS_LIMIT = 10  # passes a scenario may take before the test calls it stuck


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _merge(into: Json, patch: Json) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif value is None:
            into.pop(key, None)
        else:
            into[key] = copy.deepcopy(value)


class FakeEffects:
    """effects.Effects on an in-memory namespace: the driven object, its pods and objects.
    ``acts`` lists every act that changes the world, in order."""

    def __init__(self, owner: Json) -> None:
        self.owner = copy.deepcopy(owner)
        self.pods: dict[str, Json] = {}
        self.objects: dict[tuple[str, str], Json] = {}
        self.acts: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.emitted: list[tuple[str, str | None, int | None, ExitReason | None]] = []
        self.failing_writes = 0  # status writes still to fail
        self.orders_reach = True  # a kill order reaches the runtime
        self.written = asyncio.Event()  # a status write landed
        self._serial = 0

    def _next(self) -> str:
        self._serial += 1
        return str(1000 + self._serial)

    def _owned(self, body: Json, selector: str) -> bool:
        key, _, value = selector.partition("=")
        return bool((body["metadata"].get("labels") or {}).get(key) == value)

    def _check(self, host: Host) -> None:
        if host.resource_version != self.owner["metadata"]["resourceVersion"]:
            raise Conflict("the object changed")

    # -- telling ------------------------------------------------------------------------

    def emit(
        self, event: str, child: str | None, inc: int | None, pid: Pid | None, reason: Any = None
    ) -> None:
        self.emitted.append((event, child, inc, reason))

    async def post_event(self, involved: Json, event_type: str, reason: str, message: str) -> None:
        self.acts.append(f"event {reason}")
        self.events.append((event_type, reason, message))

    # -- pods -----------------------------------------------------------------------------

    async def get_pod(self, name: str) -> Json | None:
        return copy.deepcopy(self.pods.get(name))

    async def list_pods(self, selector: str) -> list[Json]:
        return [copy.deepcopy(p) for p in self.pods.values() if self._owned(p, selector)]

    async def create_pod(self, body: Json) -> Json | None:
        name = body["metadata"]["name"]
        self.acts.append(f"create pod {name}")
        if name in self.pods:
            return None
        pod = copy.deepcopy(body)
        pod["metadata"].update(uid=f"uid-{name}", resourceVersion=self._next())
        pod["metadata"]["creationTimestamp"] = _now()
        pod["status"] = {"phase": "Pending"}
        self.pods[name] = pod
        return copy.deepcopy(pod)

    async def delete_pod(self, name: str, grace: int, uid: str | None = None) -> None:
        self.acts.append(f"delete pod {name} grace {grace}")
        self.pods.pop(name, None)

    # -- objects --------------------------------------------------------------------------

    async def get_object(self, plural: str, name: str) -> Json | None:
        if name == self.owner["metadata"]["name"]:
            return copy.deepcopy(self.owner)
        return copy.deepcopy(self.objects.get((plural, name)))

    async def list_objects(self, plural: str, selector: str) -> list[Json]:
        return [
            copy.deepcopy(o)
            for (kind, _), o in self.objects.items()
            if kind == plural and self._owned(o, selector)
        ]

    async def create_object(self, plural: str, body: Json) -> Json | None:
        name = body["metadata"]["name"]
        self.acts.append(f"create {plural} {name}")
        if (plural, name) in self.objects:
            return None
        made = copy.deepcopy(body)
        made["metadata"].update(uid=f"uid-{name}", resourceVersion=self._next())
        self.objects[plural, name] = made
        return copy.deepcopy(made)

    async def patch_object(self, plural: str, name: str, patch: Json) -> Json:
        self.acts.append(f"patch {plural} {name}")
        _merge(self.objects[plural, name], patch)
        return copy.deepcopy(self.objects[plural, name])

    async def patch_if_present(self, plural: str, name: str, patch: Json) -> Json | None:
        if (plural, name) not in self.objects:
            return None
        return await self.patch_object(plural, name, patch)

    async def delete_object(self, plural: str, name: str) -> None:
        self.acts.append(f"delete {plural} {name}")
        self.objects.pop((plural, name), None)

    async def patch_status(self, plural: str, name: str, status: Json) -> None:
        if (plural, name) in self.objects:
            self.objects[plural, name]["status"] = copy.deepcopy(status)

    # -- the driven object ----------------------------------------------------------------

    async def replace_status(self, host: Host, status: Json) -> Json:
        if self.failing_writes:
            self.failing_writes -= 1
            raise RuntimeError("the API server is unreachable")
        self._check(host)
        self.acts.append(f"write status seq {status['seq']}")
        self.owner["status"] = copy.deepcopy(status)
        self.owner["metadata"]["resourceVersion"] = self._next()
        self.written.set()
        return copy.deepcopy(self.owner)

    async def set_finalizers(self, host: Host, finalizers: list[str]) -> Json:
        self._check(host)
        self.acts.append(f"finalizers {finalizers}")
        self.owner["metadata"]["finalizers"] = list(finalizers)
        self.owner["metadata"]["resourceVersion"] = self._next()
        return copy.deepcopy(self.owner)

    # -- NATS -----------------------------------------------------------------------------

    def claim(self, pid: Pid) -> None:
        self.acts.append(f"claim {pid.incarnation}")

    def ended(self, pid: Pid) -> None:
        self.acts.append(f"ended {pid.incarnation}")

    async def release(self, pid: Pid) -> None:
        self.acts.append(f"release {pid.incarnation}")

    async def order_kill(self, pid: Pid) -> bool:
        self.acts.append(f"order kill {pid.incarnation}")
        return self.orders_reach

    async def drop_lease(self, pid: Pid) -> None:
        self.acts.append(f"drop lease {pid.incarnation}")

    async def lease_alive(self, pid: Pid) -> bool | None:
        return None

    async def node_ready(self, node: str) -> bool:
        return True

    # -- what the test plays --------------------------------------------------------------

    def run_pod(self, name: str) -> Json:
        """The pod's container runs and passed its readiness probe."""
        return self._pod_state(name, "Running", {"running": {}}, ready=True)

    def end_pod(self, name: str, code: int) -> Json:
        state = {"terminated": {"exitCode": code, "reason": "Error" if code else "Completed"}}
        return self._pod_state(name, "Failed" if code else "Succeeded", state, ready=False)

    def _pod_state(self, name: str, phase: str, state: Json, *, ready: bool) -> Json:
        pod = self.pods[name]
        pod["spec"]["nodeName"] = "node-1"
        container = {"name": "actor", "state": state, "ready": ready}
        pod["status"] = {"phase": phase, "containerStatuses": [container]}
        pod["metadata"]["resourceVersion"] = self._next()
        return copy.deepcopy(pod)


def make(children: list[Json]) -> tuple[Driver, FakeEffects]:
    fake = FakeEffects(supervisor_body({"children": children}))
    return Driver(Settings(), copy.deepcopy(fake.owner), fake), fake


def status(fake: FakeEffects) -> Json:
    written: Json = fake.owner.get("status") or {}
    return written


async def started(children: list[Json]) -> tuple[Driver, FakeEffects]:
    """A driver past its first two passes: finalizer added, incarnation 1 started."""
    driver, fake = make(children)
    await driver.seed()
    assert not (await driver.reconcile()).done
    assert fake.owner["metadata"]["finalizers"] == [FINALIZER]
    assert driver.wake.is_set()  # its own patch woke it: the next pass comes at once
    await driver.reconcile()
    return driver, fake


async def running(children: list[Json]) -> tuple[Driver, FakeEffects]:
    driver, fake = await started(children)
    for name in list(fake.pods):
        driver.on_pod(fake.run_pod(name), deleted=False)
    await driver.reconcile()
    assert status(fake)["phase"] == "Running"
    return driver, fake


# --- a pass ---------------------------------------------------------------------------------


async def test_a_new_incarnation_creates_its_pods_before_the_write_that_decides_them() -> None:
    _, fake = await started([{"name": "a", "actor": SLEEP}])
    assert fake.acts.index("create pod app-a-1") < fake.acts.index("write status seq 1")
    assert fake.pods["app-a-1"]["metadata"]["annotations"][ANN_DECIDED_SEQ] == "1"
    assert "create actors app-a" in fake.acts  # its pid slot, first
    written = status(fake)
    assert (written["phase"], written["supervisorIncarnation"], written["seq"]) == (
        "Starting",
        1,
        1,
    )


async def test_a_started_child_is_fed_once() -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    written = status(fake)
    assert (written["ready"], written["fed"]) == ("1/1", ["a#1#up"])
    assert [e[:3] for e in fake.emitted] == [("started", "a", 1)]
    acts = len(fake.acts)
    result = await driver.reconcile()
    assert len(fake.acts) == acts  # nothing new: no write, no act
    assert result == Result(requeue_after=Settings().resync_seconds)  # at rest: the resync


async def test_a_crash_is_restarted_then_told_and_the_old_pod_collected() -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    before = len(fake.acts)
    driver.on_pod(fake.end_pod("app-a-1", 1), deleted=False)
    await driver.reconcile()
    acts = fake.acts[before:]
    assert acts[:2] == ["ended 1", "claim 2"]  # a command has no names to release
    assert acts.index("create pod app-a-2") < acts.index("write status seq 3")
    assert acts.index("write status seq 3") < acts.index("event Restarting")
    assert acts.index("event Restarting") < acts.index("write status seq 4")  # outbox cleared
    assert "delete pod app-a-1 grace 0" in acts  # its exit is persisted: the pod goes
    assert fake.events == [
        ("Warning", "Restarting", "a exited (crash (exit code 1)), restarting a")
    ]
    reason = crash(exit_code=1)
    assert ("exited", "a", 1, reason) in fake.emitted
    assert ("restarting", "a", None, reason) in fake.emitted
    written = status(fake)
    assert written["childExits"]["a"]["reason"] == "crash"
    assert written["outbox"] == []
    assert written["incarnations"] == {"a": 2}


async def test_a_deleted_object_stops_its_children_then_lets_go() -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    fake.owner["metadata"]["deletionTimestamp"] = _now()
    driver.update(copy.deepcopy(fake.owner), deleted=False)
    for _ in range(PASS_LIMIT):
        result = await driver.reconcile()
        if result.done:
            break
        for name in {"app-a-1"} - set(fake.pods):  # the watch tells of deleted pods
            driver.on_pod({"metadata": {"name": name}}, deleted=True)
    assert result.done
    assert "delete pod app-a-1 grace 5" in fake.acts  # its shutdown, as the grace period
    assert fake.acts[-1] == "finalizers []"
    assert status(fake)["phase"] == "Terminated"


class AskedDuringAWrite(FakeEffects):
    """The parent asks the object to stop while one of its status writes is on its way: the
    ask lands after the write, and its watch event is read before the write's response."""

    def __init__(self, owner: Json) -> None:
        super().__init__(owner)
        self.driver: Driver | None = None
        self.ask: Json | None = None  # the parent's patch, made at the next status write

    async def replace_status(self, host: Host, status: Json) -> Json:
        response = await super().replace_status(host, status)
        if self.ask is not None and self.driver is not None:
            _merge(self.owner, self.ask)
            self.owner["metadata"]["resourceVersion"] = self._next()
            self.ask = None
            self.driver.update(copy.deepcopy(self.owner), deleted=False)
        return response


async def test_a_stop_asked_while_a_status_write_is_on_its_way_is_not_lost() -> None:
    fake = AskedDuringAWrite(supervisor_body({"children": [{"name": "a", "actor": SLEEP}]}))
    driver = Driver(Settings(), copy.deepcopy(fake.owner), fake)
    fake.driver = driver
    await driver.seed()
    await driver.reconcile()
    await driver.reconcile()
    fake.ask = {"metadata": {"annotations": {ANN_STOP: "1"}}}
    driver.on_pod(fake.run_pod("app-a-1"), deleted=False)
    await driver.reconcile()  # writes "started": the ask lands meanwhile
    assert fake.ask is None
    assert driver.host.stop_incarnation == 1  # the write's older response did not hide it
    await driver.reconcile()
    assert "delete pod app-a-1 grace 5" in fake.acts


async def test_a_status_someone_else_wrote_is_restored_from() -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    fake.owner["status"] = {**status(fake), "seq": 99, "childExits": {"a": {"reason": "x"}}}
    fake.owner["metadata"]["resourceVersion"] = "1"  # our next write is refused
    driver.on_pod(fake.end_pod("app-a-1", 1), deleted=False)
    with pytest.raises(Conflict):
        await driver.reconcile()
    await driver.reread()
    assert driver.record.seq == 99  # it carries on from what is stored


# --- the loop -------------------------------------------------------------------------------


def test_failed_passes_back_off_exponentially_up_to_a_cap() -> None:
    backoff = Backoff()
    delays = [backoff.failed() for _ in range(9)]
    assert delays[0] == BACKOFF_FIRST
    assert delays[1:4] == [BACKOFF_FIRST * 2, BACKOFF_FIRST * 4, BACKOFF_FIRST * 8]
    assert delays[-1] == BACKOFF_CAP
    assert all(later >= earlier for earlier, later in itertools.pairwise(delays))
    backoff.succeeded()
    assert backoff.failed() == BACKOFF_FIRST


async def test_the_loop_retries_a_failed_pass_after_its_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    driver, fake = make([{"name": "a", "actor": SLEEP}])
    driver.backoff = Backoff(first=0.01, cap=0.01)
    fake.failing_writes = 2
    task = asyncio.create_task(driver.run())
    try:
        await asyncio.wait_for(fake.written.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert status(fake)["seq"] == 1  # the third try wrote it
    failures = [r for r in caplog.records if r.getMessage().startswith("pass failed")]
    assert [r.getMessage() for r in failures] == ["pass failed; retrying in 0.01s"] * 2
    assert all(r.levelno == logging.ERROR for r in failures)


# --- the record -----------------------------------------------------------------------------


def test_the_record_reads_back_from_the_status_it_builds() -> None:
    host = host_from_body(supervisor_body({"children": [{"name": "a", "actor": SLEEP}]}))
    core = Supervisor(supervisor_flags(host.spec), child_specs(host.spec))
    core.init(0.0)
    core.handle(ChildStarted("a", 1), 0.0)
    core.handle(ChildExited("a", 1, crash(exit_code=1)), 1.0)
    record = Record(
        seq=4,
        fed={"a#1#up", "a#1#end"},
        outbox=[{"event": "shutdown", "reason": "shutdown"}],
        child_exits={"a": {"reason": "crash"}},
        incarnation=2,
        shutdown_fed=1,
        stops_asked={"b#1": 3.0},
        killed=2,
        applied=host.spec,
        converging=["converge/3/1"],
        converge_problem={"generation": 2, "message": "no"},
    )
    built = to_status(record, core, host, {"a": "ns.slot.2"}, 2.0)
    back = parse(built, host.spec)
    assert back.seq == 5  # the write after the record's last
    for field in ("outbox", "child_exits", "incarnation", "shutdown_fed", "stops_asked"):
        assert getattr(back, field) == getattr(record, field), field
    assert (back.killed, back.applied, back.converging) == (2, host.spec, ["converge/3/1"])
    assert back.converge_problem == record.converge_problem
    assert back.fed == record.fed
    assert built["phase"] == "Terminated"  # killed by its parent


# --- what the children did, told once --------------------------------------------------------


async def _one_for_all_running() -> tuple[Driver, FakeEffects]:
    """a, c and b running under one_for_all (started in that order, so stopped b first);
    b takes its 3 s shutdown when stopped."""
    children = [
        {"name": "a", "actor": SLEEP},
        {"name": "c", "actor": SLEEP},
        {"name": "b", "actor": SLEEP, "shutdown": "3s"},
    ]
    fake = FakeEffects(supervisor_body({"strategy": "one_for_all", "children": children}))
    driver = Driver(Settings(), copy.deepcopy(fake.owner), fake)
    await driver.seed()
    for _ in range(PASS_LIMIT):  # children start one at a time
        await driver.reconcile()
        for name, pod in list(fake.pods.items()):
            if pod["status"]["phase"] == "Pending":
                driver.on_pod(fake.run_pod(name), deleted=False)
        if status(fake).get("phase") == "Running":
            break
    assert status(fake)["phase"] == "Running"
    return driver, fake


def _told(fake: FakeEffects, event: str, child: str, inc: int) -> int:
    return sum(1 for e in fake.emitted if e[:3] == (event, child, inc))


async def test_an_exit_is_told_once_while_a_sibling_takes_its_shutdown_time() -> None:
    driver, fake = await _one_for_all_running()
    driver.on_pod(fake.end_pod("app-a-1", 1), deleted=False)
    await driver.reconcile()  # a crashed: b is stopped first, and takes its 3 s
    assert "delete pod app-b-1 grace 3" in fake.acts
    ended = fake.end_pod("app-c-1", 1)  # c crashes meanwhile: its exit waits in the mailbox
    driver.on_pod(ended, deleted=False)
    for _ in range(4):
        await driver.reconcile()
    assert _told(fake, "exited", "c", 1) == 1
    # A restarted operator reads what was told from status and tells it no more.
    again = Driver(Settings(), copy.deepcopy(fake.owner), fake)
    await again.seed()
    for _ in range(2):
        await again.reconcile()
    assert _told(fake, "exited", "c", 1) == 1
    assert _told(fake, "exited", "a", 1) == 1


async def test_a_failed_start_is_told_as_start_failed_only() -> None:
    driver, fake = await started([{"name": "a", "actor": SLEEP, "startTimeout": "1s"}])
    pod = fake.pods["app-a-1"]
    pod["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z"  # long past its timeout
    driver.on_pod(copy.deepcopy(pod), deleted=False)
    for _ in range(3):
        await driver.reconcile()
        driver.on_pod({"metadata": {"name": "app-a-1"}}, deleted=True)
    assert _told(fake, "start_failed", "a", 1) == 1
    assert _told(fake, "exited", "a", 1) == 0


async def test_a_pod_killed_at_the_end_of_its_shutdown_time_ended_killed() -> None:
    driver, fake = await _one_for_all_running()
    driver.on_pod(fake.end_pod("app-a-1", 1), deleted=False)
    await driver.reconcile()  # a crashed: b is stopped with its 3 s
    assert "delete pod app-b-1 grace 3" in fake.acts
    # The kubelet SIGKILLed b at the end of its grace period, said so, then deleted it; the
    # next pass comes only after the deletion.
    fake.pods["app-b-1"] = copy.deepcopy(driver.cache.pods["app-b-1"])
    killed = fake.end_pod("app-b-1", 137)
    driver.on_pod(killed, deleted=False)
    del fake.pods["app-b-1"]
    driver.on_pod({"metadata": {"name": "app-b-1"}}, deleted=True)
    await driver.reconcile()
    assert ("exited", "b", 1, ExitReason.from_wire("killed")) in fake.emitted


async def test_a_pod_gone_after_its_kill_was_due_ended_killed() -> None:
    driver, fake = await _one_for_all_running()
    driver.on_pod(fake.end_pod("app-a-1", 1), deleted=False)
    await driver.reconcile()
    driver.cache.kill_due["app-b-1"] = 0.0  # its grace period ran out long ago
    driver.on_pod({"metadata": {"name": "app-b-1"}}, deleted=True)  # no end seen
    await driver.reconcile()
    assert ("exited", "b", 1, ExitReason.from_wire("killed")) in fake.emitted


# --- a spec that cannot be run --------------------------------------------------------------


def _conditions(fake: FakeEffects) -> dict[str, Json]:
    return {c["type"]: c for c in status(fake).get("conditions") or []}


async def test_a_spec_the_core_refuses_is_told_once_on_the_object_and_backs_off() -> None:
    # period 0 passes an older CRD (and an object stored under one); the core refuses it.
    fake = FakeEffects(supervisor_body({"period": 0, "children": [{"name": "a", "actor": SLEEP}]}))
    driver = Driver(Settings(), copy.deepcopy(fake.owner), fake)
    await driver.seed()
    waits = [(await driver.reconcile()).requeue_after for _ in range(5)]
    sentence = "spec.period: period must be more than 0"
    valid = _conditions(fake)["SpecValid"]
    assert (valid["status"], valid["reason"], valid["message"]) == (
        "False",
        "InvalidSpec",
        sentence,
    )
    assert status(fake)["phase"] == "Failed"
    assert fake.events == [("Warning", "InvalidSpec", sentence)]
    assert not fake.pods
    assert waits[1:] == sorted(waits[1:])  # it backs off
    assert waits[-1] > waits[1]
    # A restarted operator reads that it was told.
    again = Driver(Settings(), copy.deepcopy(fake.owner), fake)
    await again.seed()
    await again.reconcile()
    assert len(fake.events) == 1
    # Fixed by an edit: it runs, and the condition says the spec is valid now.
    fake.owner["spec"]["period"] = "5s"
    fake.owner["metadata"]["generation"] = 4
    again.update(copy.deepcopy(fake.owner), deleted=False)
    await again.reconcile()
    assert "app-a-1" in fake.pods
    assert _conditions(fake)["SpecValid"]["status"] == "True"


async def test_each_distinct_reason_a_spec_cannot_run_is_told() -> None:
    command = {"command": ["sleep"], "args": ["600", 1]}  # the CRD leaves args untyped
    fake = FakeEffects(supervisor_body({"children": [{"name": "a", "actor": command}]}))
    driver = Driver(Settings(), copy.deepcopy(fake.owner), fake)
    await driver.seed()
    for _ in range(3):
        await driver.reconcile()
    fake.owner["spec"]["period"] = 0
    driver.update(copy.deepcopy(fake.owner), deleted=False)
    for _ in range(3):
        await driver.reconcile()
    assert [e[2] for e in fake.events] == [
        "spec.children.0.actor.args: the args of a command must be a list of strings",
        "spec.period: period must be more than 0; "
        "spec.children.0.actor.args: the args of a command must be a list of strings",
    ]


# --- brutal_kill ------------------------------------------------------------------------------


async def test_a_brutal_kill_orders_the_runtime_killed_and_does_not_sigterm_it() -> None:
    actor = {"module": "pkg.mod:Thing"}
    driver, fake = await running([{"name": "a", "actor": actor, "shutdown": "brutal_kill"}])
    fake.owner["metadata"]["deletionTimestamp"] = _now()
    driver.update(copy.deepcopy(fake.owner), deleted=False)
    await driver.reconcile()
    assert "order kill 1" in fake.acts
    assert not [a for a in fake.acts if a.startswith("delete pod")]  # no SIGTERM
    driver.on_pod(fake.end_pod("app-a-1", 137), deleted=False)  # it SIGKILLed itself
    await driver.reconcile()
    assert ("exited", "a", 1, ExitReason.from_wire("killed")) in fake.emitted


@pytest.mark.parametrize("actor", [{"module": "pkg.mod:Thing"}, SLEEP])
async def test_a_brutal_kill_no_order_reaches_is_a_grace_0_deletion(actor: Json) -> None:
    # A runtime that is not connected misses the order; a command has no runtime to order.
    driver, fake = await running([{"name": "a", "actor": actor, "shutdown": "brutal_kill"}])
    fake.orders_reach = False
    fake.owner["metadata"]["deletionTimestamp"] = _now()
    driver.update(copy.deepcopy(fake.owner), deleted=False)
    await driver.reconcile()
    assert "delete pod app-a-1 grace 0" in fake.acts
    assert ("order kill 1" in fake.acts) is (actor is not SLEEP)


# --- a nested supervisor --------------------------------------------------------------------


def _sub_status(fake: FakeEffects, driver: Driver, **status: Any) -> None:
    """The child Supervisor object's driver wrote ``status``; the watch shows it."""
    [sub] = [o for (plural, _), o in fake.objects.items() if plural == "supervisors"]
    sub["status"] = {"supervisorIncarnation": 1, **status}
    sub["metadata"]["resourceVersion"] = fake._next()
    driver.on_child_object(copy.deepcopy(sub), deleted=False)


async def test_a_child_supervisors_exit_is_told_only_after_its_own_end_was() -> None:
    sub = {"name": "sub", "supervisor": {"children": [{"name": "x", "actor": SLEEP}]}}
    driver, fake = await started([sub])
    _sub_status(fake, driver, phase="Running")
    await driver.reconcile()
    assert _told(fake, "started", "sub", 1) == 1
    # Its driver has persisted its end, and not yet published its own shutdown event.
    shutdown = {"event": "shutdown", "reason": "shutdown"}
    _sub_status(fake, driver, phase="Terminated", exitReason="shutdown", outbox=[shutdown])
    await driver.reconcile()
    assert _told(fake, "exited", "sub", 1) == 0
    _sub_status(fake, driver, phase="Terminated", exitReason="shutdown", outbox=[])  # told
    await driver.reconcile()
    assert _told(fake, "exited", "sub", 1) == 1


# --- management requests ----------------------------------------------------------------------


async def test_a_request_to_a_supervisor_that_has_ended_is_answered_noproc() -> None:
    driver, fake = await running([{"name": "a", "actor": SLEEP}])
    fake.owner["metadata"].setdefault("annotations", {})[ANN_STOP] = "1"  # its parent stops it
    driver.update(copy.deepcopy(fake.owner), deleted=False)
    for _ in range(PASS_LIMIT):
        await driver.reconcile()
        if status(fake)["phase"] == "Terminated":
            break
        for name in {"app-a-1"} - set(fake.pods):  # the watch tells of deleted pods
            driver.on_pod({"metadata": {"name": name}}, deleted=True)
    assert status(fake)["phase"] == "Terminated"
    asked = driver.ask(lambda rid: TerminateChildRequest(rid, "a"))
    await driver.reconcile()
    assert asked.done()
    assert asked.result() == Error("noproc")  # at once, as OTP's call to an ended process
