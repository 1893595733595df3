"""Stopping a nested supervisor the way OTP does: ``exit(Child, shutdown)``, wait up to its
``shutdown`` time, then ``exit(Child, kill)`` (docs/semantics.md, "Shutdown").

On Kubernetes a child supervisor is a ``Supervisor`` object driven by its own driver, and its
"process" is the whole subtree of pods below it. The parent:

1. **asks** it to stop: the annotation ``rebeam.io/stop-incarnation`` (driver.py); for a finite
   ``shutdown`` the moment of the ask is kept in the parent's status (``stopsAsked``), written
   with the decision to stop, before the annotation — so the deadline survives an operator
   restart and is never extended by one;
2. if the child has not reported ``Terminated`` by the deadline — or at once for
   ``brutal_kill`` — **kills** it: the annotation ``rebeam.io/kill-incarnation``, then every pod
   of the subtree force-deleted (grace 0), found through the ``rebeam.io/host-uid`` labels of
   the child and of every Supervisor below it;
3. waits for the child's "DOWN": the killed child's driver acknowledges in its status
   (``killedIncarnation``, phase ``Terminated``, exit reason ``killed``) once its pods are gone
   and every supervisor below it acknowledged the same; the parent feeds that to its core as the
   child's exit with reason ``killed`` and proceeds with its plan.

A killed driver (:func:`play_dead`) carries out nothing of its core any more: it passes the kill
down, force-deletes its own pods and, once the API shows none left, tells its core every child
ended ``killed`` (:func:`drain`, for a status that shows no child running) and acknowledges.
Its passes are sequential, so once it has acknowledged, no create of it can still be in flight:
the subtree stays empty until the parent asks for a new incarnation, which starts a fresh core
that continues the incarnation numbers (no pid is reused).

OTP warns that a finite shutdown of a supervisor child can orphan grandchildren; here the
force-deletion goes through the whole subtree, so nothing is orphaned.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from rebeam.exits import KILLED
from rebeam.supervision import (
    BRUTAL_KILL,
    INFINITY,
    ChildExited,
    ChildStatus,
    Shutdown,
    ShutdownRequest,
    StartChild,
    StartFailed,
    StopChild,
    Supervisor,
    SupervisorState,
)
from rebeam_operator import failpoints, slots
from rebeam_operator.children import manifest_child
from rebeam_operator.hosts import ANN_INCARNATION, ANN_KILL, LABEL_HOST

if TYPE_CHECKING:
    from rebeam_operator.driver import Driver
    from rebeam_operator.kube import Kube

__all__ = [
    "deadline_of",
    "drain",
    "is_killed",
    "kill",
    "next_deadline",
    "note_timed_stops",
    "play_dead",
    "prune",
    "should_kill",
]

log = logging.getLogger("rebeam.operator")

Json = dict[str, Any]


def _key(child: str, incarnation: int) -> str:
    return f"{child}#{incarnation}"


def _timed(shutdown: Shutdown) -> bool:
    return shutdown not in (BRUTAL_KILL, INFINITY)


def _supervisor_stops(core: Supervisor) -> list[StopChild]:
    stops = []
    for command in core.outstanding():
        if isinstance(command, StopChild):
            # The spec the core runs the child under (a child removed from the manifest, or
            # being replaced, still stops under it), not the manifest's.
            spec = manifest_child(core, command.child)
            if spec is not None and spec.supervisor is not None:
                stops.append(command)
    return stops


# --- the parent's side --------------------------------------------------------------------


def note_timed_stops(driver: Driver, core: Supervisor, now: float) -> bool:
    """Remember when each timed stop of a child supervisor was decided (persisted with the
    decision, so before the ask is carried out). True if a new one was noted."""
    new = False
    for stop in _supervisor_stops(core):
        key = _key(stop.child, stop.incarnation)
        if _timed(stop.shutdown) and key not in driver.stops_asked:
            driver.stops_asked[key] = now
            new = True
    return new


def prune(driver: Driver, core: Supervisor) -> None:
    """Forget the asks of stops that are over (the child is no longer stopping)."""
    stopping = {
        _key(info.id, info.incarnation or 0)
        for info in core.which_children()
        if info.status is ChildStatus.STOPPING
    }
    for key in list(driver.stops_asked):
        if key not in stopping:
            del driver.stops_asked[key]


def deadline_of(driver: Driver, stop: StopChild) -> float | None:
    """When a stop turns into a kill: now for brutal_kill, never for infinity."""
    if stop.shutdown == BRUTAL_KILL:
        return 0.0
    if stop.shutdown == INFINITY:
        return None
    asked = driver.stops_asked.get(_key(stop.child, stop.incarnation))
    return None if asked is None else asked + float(stop.shutdown)


def should_kill(driver: Driver, stop: StopChild, now: float) -> bool:
    deadline = deadline_of(driver, stop)
    return deadline is not None and now >= deadline


def next_deadline(driver: Driver) -> float | None:
    """The nearest kill deadline still ahead (the driver wakes for it), if any."""
    core = driver.core
    if core is None:
        return None
    now = time.time()
    deadlines = [
        d
        for stop in _supervisor_stops(core)
        if (d := deadline_of(driver, stop)) is not None and d > now
    ]
    return min(deadlines) if deadlines else None


async def kill(driver: Driver, child: str, incarnation: int) -> None:
    """``exit(Child, kill)``: mark the child's incarnation killed, force-delete its subtree.
    Repeated on every pass until the child acknowledges (idempotent)."""
    kube, host = driver.world.kube, driver.host
    name = host.child_supervisor(child)
    obj = driver.child_objects.get(name)
    if obj is None:
        return  # gone: observation reports its exit
    annotations = obj["metadata"].get("annotations") or {}
    if int(annotations.get(ANN_KILL, "0") or 0) < incarnation:
        driver.log.warning("child supervisor %s#%s: killing its subtree", child, incarnation)
        patched = await kube.patch_object(
            host.namespace,
            "supervisors",
            name,
            {"metadata": {"annotations": {ANN_KILL: str(incarnation)}}},
        )
        driver.on_child_object(patched, deleted=False)
    await force_delete_subtree(kube, host.namespace, obj["metadata"]["uid"])
    failpoints.hit("subtree-killed")


async def force_delete_subtree(kube: Kube, namespace: str, root_uid: str) -> int:
    """Force-delete (grace 0) every pod of the Supervisor ``root_uid`` and of every Supervisor
    below it. Returns how many pods were still there."""
    found = 0
    todo, seen = [root_uid], set()
    while todo:
        uid = todo.pop()
        if uid in seen:
            continue
        seen.add(uid)
        selector = f"{LABEL_HOST}={uid}"
        for pod in await kube.list_pods(namespace, selector):
            found += 1
            meta = pod["metadata"]
            await kube.delete_pod(namespace, meta["name"], 0, meta["uid"])
        for obj in await kube.list_objects(namespace, "supervisors", selector):
            todo.append(obj["metadata"]["uid"])
    return found


# --- the killed child's side --------------------------------------------------------------


def is_killed(driver: Driver) -> bool:
    """The parent killed the incarnation this driver runs."""
    return driver.incarnation > 0 and driver.host.kill_incarnation >= driver.incarnation


async def play_dead(driver: Driver) -> bool:
    """One pass of a killed driver. True when the driver is finished (deleted)."""
    kube, host = driver.world.kube, driver.host
    if driver.killed < driver.incarnation:
        dead = True
        below = await kube.list_objects(host.namespace, "supervisors", f"{LABEL_HOST}={host.uid}")
        for obj in below:
            dead = await _pass_kill_down(kube, host.namespace, obj) and dead
        if await force_delete_subtree_own(kube, host.namespace, host.uid):
            dead = False
        if not dead:
            return False
        if driver.core is not None:
            await _report_killed_actors(driver, driver.core)
            drain(driver.core, time.time())
        driver.killed = driver.incarnation
        driver.exit_reason = KILLED.to_wire()
        driver.outbox = []  # a killed process tells nothing more; its parent reports the exit
        driver.dirty = True
        await driver.persist(time.time())
        if driver.core is not None:
            await slots.write(driver, driver.core)
        driver.log.warning("incarnation %s killed by the parent: pods gone", driver.incarnation)
    if host.deleting:
        await driver._remove_finalizer()
        return True
    return False


async def _report_killed_actors(driver: Driver, core: Supervisor) -> None:
    """What the kill did to each live actor child, as ``rebeam run`` reports it: its names
    released, then ``exited`` (``start_failed`` while it was starting) with reason ``killed``,
    so monitors of it get DOWN at once rather than when its lease runs out. Nested
    supervisors report their own actors as they play dead; a killed supervisor child is
    reported by nobody, as in ``rebeam run``. Sent again if the operator dies before the
    acknowledgement is persisted (lifecycle events are at least once)."""
    for info in core.which_children():
        if info.status not in (ChildStatus.STARTING, ChildStatus.RUNNING, ChildStatus.STOPPING):
            continue
        spec = manifest_child(core, info.id)
        if spec is None or spec.actor is None or not info.incarnation:
            continue
        pid = driver._pid(info.id, info.incarnation)
        if pid is not None and not spec.actor.command:
            await driver.world.messaging.release(pid)
        event = "start_failed" if info.status is ChildStatus.STARTING else "exited"
        driver._emit(event, info.id, info.incarnation, pid, KILLED)


def _terminated(core: Supervisor) -> bool:
    return core.state is SupervisorState.TERMINATED


def drain(core: Supervisor, now: float, *, limit: int = 1000) -> None:
    """Tell a killed supervisor's core what the kill did, so its status shows no child running:
    it shuts down, and every start or stop it waits for is answered ``killed`` (the pods are
    gone already). What it answers — notices, a give-up — is dropped: a killed process says
    nothing more. Idempotent: a core that has terminated is left alone."""
    if core.state is SupervisorState.NEW or _terminated(core):
        return
    core.handle(ShutdownRequest(KILLED), now)
    for _ in range(limit):
        pending = core.outstanding()
        if _terminated(core) or not pending:
            return
        for command in pending:
            if isinstance(command, StartChild):
                core.handle(StartFailed(command.child, command.incarnation, KILLED), now)
            else:
                core.handle(ChildExited(command.child, command.incarnation, KILLED), now)


async def force_delete_subtree_own(kube: Kube, namespace: str, uid: str) -> bool:
    """Force-delete this driver's own pods; True while the API still lists any."""
    selector = f"{LABEL_HOST}={uid}"
    pods = await kube.list_pods(namespace, selector)
    for pod in pods:
        meta = pod["metadata"]
        await kube.delete_pod(namespace, meta["name"], 0, meta["uid"])
    return bool(pods) and bool(await kube.list_pods(namespace, selector))


async def _pass_kill_down(kube: Kube, namespace: str, obj: Json) -> bool:
    """Kill a child supervisor of a killed one; True once it acknowledged."""
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    incarnation = int(annotations.get(ANN_INCARNATION, "1") or 1)
    if int(annotations.get(ANN_KILL, "0") or 0) < incarnation:
        await kube.patch_object(
            namespace,
            "supervisors",
            meta["name"],
            {"metadata": {"annotations": {ANN_KILL: str(incarnation)}}},
        )
        return False
    acked = int((obj.get("status") or {}).get("killedIncarnation", 0))
    return acked >= incarnation
