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
from typing import Any

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
from rebeam_operator import failpoints
from rebeam_operator.cache import Cache
from rebeam_operator.children import manifest_child
from rebeam_operator.effects import Effects
from rebeam_operator.hosts import ANN_INCARNATION, ANN_KILL, LABEL_HOST, Host
from rebeam_operator.record import Record

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


def note_timed_stops(record: Record, core: Supervisor, now: float) -> bool:
    """Remember when each timed stop of a child supervisor was decided (persisted with the
    decision, so before the ask is carried out). True if a new one was noted."""
    new = False
    for stop in _supervisor_stops(core):
        key = _key(stop.child, stop.incarnation)
        if _timed(stop.shutdown) and key not in record.stops_asked:
            record.stops_asked[key] = now
            new = True
    return new


def prune(record: Record, core: Supervisor) -> None:
    """Forget the asks of stops that are over (the child is no longer stopping)."""
    stopping = {
        _key(info.id, info.incarnation or 0)
        for info in core.which_children()
        if info.status is ChildStatus.STOPPING
    }
    for key in list(record.stops_asked):
        if key not in stopping:
            del record.stops_asked[key]


def deadline_of(record: Record, stop: StopChild) -> float | None:
    """When a stop turns into a kill: now for brutal_kill, never for infinity."""
    if stop.shutdown == BRUTAL_KILL:
        return 0.0
    if stop.shutdown == INFINITY:
        return None
    asked = record.stops_asked.get(_key(stop.child, stop.incarnation))
    return None if asked is None else asked + float(stop.shutdown)


def should_kill(record: Record, stop: StopChild, now: float) -> bool:
    deadline = deadline_of(record, stop)
    return deadline is not None and now >= deadline


def next_deadline(record: Record, core: Supervisor | None) -> float | None:
    """The nearest kill deadline still ahead (the driver wakes for it), if any."""
    if core is None:
        return None
    now = time.time()
    deadlines = [
        d
        for stop in _supervisor_stops(core)
        if (d := deadline_of(record, stop)) is not None and d > now
    ]
    return min(deadlines) if deadlines else None


async def kill(
    host: Host,
    cache: Cache,
    effects: Effects,
    log: logging.LoggerAdapter[logging.Logger],
    child: str,
    incarnation: int,
) -> None:
    """``exit(Child, kill)``: mark the child's incarnation killed, force-delete its subtree.
    Repeated on every pass until the child acknowledges (idempotent)."""
    name = host.child_supervisor(child)
    obj = cache.child_objects.get(name)
    if obj is None:
        return  # gone: observation reports its exit
    annotations = obj["metadata"].get("annotations") or {}
    if int(annotations.get(ANN_KILL, "0") or 0) < incarnation:
        log.warning("child supervisor %s#%s: killing its subtree", child, incarnation)
        patch = {"metadata": {"annotations": {ANN_KILL: str(incarnation)}}}
        patched = await effects.patch_object("supervisors", name, patch)
        cache.on_child_object(patched, deleted=False)
    await force_delete_subtree(effects, obj["metadata"]["uid"])
    failpoints.hit("subtree-killed")


async def force_delete_subtree(effects: Effects, root_uid: str) -> int:
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
        for pod in await effects.list_pods(selector):
            found += 1
            meta = pod["metadata"]
            await effects.delete_pod(meta["name"], 0, meta["uid"])
        for obj in await effects.list_objects("supervisors", selector):
            todo.append(obj["metadata"]["uid"])
    return found


# --- the killed child's side --------------------------------------------------------------


def is_killed(record: Record, host: Host) -> bool:
    """The parent killed the incarnation this driver runs."""
    return record.incarnation > 0 and host.kill_incarnation >= record.incarnation


async def play_dead(
    host: Host, core: Supervisor | None, record: Record, cache: Cache, effects: Effects
) -> bool:
    """One pass of a killed driver that has not acknowledged the kill: True once its whole
    subtree is gone and the acknowledgement is in ``record`` (for the driver to persist)."""
    dead = True
    for obj in await effects.list_objects("supervisors", f"{LABEL_HOST}={host.uid}"):
        dead = await _pass_kill_down(effects, obj) and dead
    if await force_delete_own(effects, host.uid):
        dead = False
    if not dead:
        return False
    if core is not None:
        await _report_killed_actors(host, core, cache, effects)
        drain(core, time.time())
    record.killed = record.incarnation
    record.exit_reason = KILLED.to_wire()
    record.outbox = []  # a killed process tells nothing more; its parent reports the exit
    record.dirty = True
    return True


async def _report_killed_actors(
    host: Host, core: Supervisor, cache: Cache, effects: Effects
) -> None:
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
        pid = cache.pid(host, info.id, info.incarnation)
        if pid is not None and not spec.actor.command:
            await effects.release(pid)
        event = "start_failed" if info.status is ChildStatus.STARTING else "exited"
        effects.emit(event, info.id, info.incarnation, pid, KILLED)


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


async def force_delete_own(effects: Effects, uid: str) -> bool:
    """Force-delete this driver's own pods; True while the API still lists any."""
    selector = f"{LABEL_HOST}={uid}"
    pods = await effects.list_pods(selector)
    for pod in pods:
        meta = pod["metadata"]
        await effects.delete_pod(meta["name"], 0, meta["uid"])
    return bool(pods) and bool(await effects.list_pods(selector))


async def _pass_kill_down(effects: Effects, obj: Json) -> bool:
    """Kill a child supervisor of a killed one; True once it acknowledged."""
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    incarnation = int(annotations.get(ANN_INCARNATION, "1") or 1)
    if int(annotations.get(ANN_KILL, "0") or 0) < incarnation:
        patch = {"metadata": {"annotations": {ANN_KILL: str(incarnation)}}}
        await effects.patch_object("supervisors", meta["name"], patch)
        return False
    acked = int((obj.get("status") or {}).get("killedIncarnation", 0))
    return acked >= incarnation
