"""What the children did, as core events: step 2 of a driver's pass (driver.py).

Each live incarnation is read from what the world shows of it — its pod (observation.py says
what a pod means), or for a nested supervisor its Supervisor object's status — into
``ChildStarted``, ``StartFailed`` or ``ChildExited``, each fed to the core once (the driver's
``fed`` keys, persisted with the snapshot). Looking only finds what happened (:class:`_Seen`);
what is found is reported — the lifecycle event sent, and before an exit the names of the
incarnation's pid released, so that its successor can register them at once — only when its
key is not fed yet. The core may hold an exit in its mailbox for several passes (a sibling's
long shutdown): the child still shows as live meanwhile and is looked at again, but its
``exited`` goes out once per incarnation, as monitors and links need, also after an operator
restart (the keys are in status). A start that overran its ``startTimeout`` is a
``StartFailed``; a pod that still looks alive on a lost node is fenced first
(:func:`_maybe_fence`).

It reads the driver's cache and record and acts through its effects, nothing else of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from rebeam.exits import KILLED, NOCONNECTION, SHUTDOWN, ExitReason
from rebeam.pids import Pid
from rebeam.spec.models import Child
from rebeam.spec.readiness import uses_entry
from rebeam.supervision import (
    BRUTAL_KILL,
    ChildExited,
    ChildStarted,
    ChildStatus,
    Event,
    StartFailed,
    Supervisor,
)
from rebeam_operator.cache import Cache
from rebeam_operator.children import manifest_child
from rebeam_operator.effects import Effects
from rebeam_operator.hosts import Host
from rebeam_operator.observation import (
    PodPhase,
    created_at,
    observe_pod,
    start_timeout_reason,
    vanished_reason,
)
from rebeam_operator.record import Record, fed_key
from rebeam_operator.status import exit_summary

__all__ = ["observe"]

Json = dict[str, Any]


def _pod_ready(pod: Json) -> bool:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


@dataclass(frozen=True)
class _Seen:
    """What looking found of one incarnation: it started (``up``) or it ended (``end``,
    ``starting`` if it never started)."""

    kind: Literal["up", "end"]
    reason: ExitReason | None = None
    starting: bool = False


_UP = _Seen("up")


def _end(reason: ExitReason, status: ChildStatus) -> _Seen:
    return _Seen("end", reason, starting=status is ChildStatus.STARTING)


@dataclass(frozen=True)
class _Looking:
    """What observing reads and acts through (one driver's)."""

    host: Host
    core: Supervisor
    record: Record
    cache: Cache
    effects: Effects
    log: logging.LoggerAdapter[logging.Logger]

    def child(self, child_id: str) -> Child | None:
        return manifest_child(self.core, child_id)

    def pid(self, child: str, incarnation: int) -> Pid | None:
        return self.cache.pid(self.host, child, incarnation)


async def observe(
    host: Host,
    core: Supervisor,
    record: Record,
    cache: Cache,
    effects: Effects,
    log: logging.LoggerAdapter[logging.Logger],
    now: float,
) -> list[Event]:
    """The events of the live children not fed to the core yet (noted in ``record.fed``),
    each reported as it is fed."""
    look = _Looking(host, core, record, cache, effects, log)
    events: list[Event] = []
    for info in core.which_children():
        if info.status not in (ChildStatus.STARTING, ChildStatus.RUNNING, ChildStatus.STOPPING):
            continue
        inc = info.incarnation or 0
        spec = look.child(info.id)
        if spec is None or fed_key(info.id, inc, "end") in record.fed:
            continue  # its end waits in the core's mailbox: nothing more to learn of it
        status = info.status
        if status is ChildStatus.STARTING and fed_key(info.id, inc, "up") in record.fed:
            status = ChildStatus.RUNNING  # its start waits in the mailbox: it did start
        if spec.supervisor is not None:
            found = await _observe_child_supervisor(look, info.id, inc, status)
        else:
            found = await _observe_actor(look, spec, info.id, inc, status, now)
        for seen in found:
            key = fed_key(info.id, inc, seen.kind)
            if key not in record.fed:
                record.fed.add(key)
                events.append(await _report(look, info.id, inc, seen))
    return events


async def _report(look: _Looking, child: str, inc: int, seen: _Seen) -> Event:
    """Tell what was seen (once: the caller feeds it) and make the core's event."""
    pid = look.pid(child, inc)
    if seen.kind == "up":
        look.effects.emit("started", child, inc, pid)
        return ChildStarted(child, inc)
    assert seen.reason is not None
    return await _ended(look, child, inc, pid, seen.reason, starting=seen.starting)


async def _observe_actor(
    look: _Looking, spec: Child, child: str, inc: int, status: ChildStatus, now: float
) -> list[_Seen]:
    name = look.host.pod_name(child, inc)
    if name in look.cache.unrecorded:
        return []  # an earlier life's pod of this name is being removed first
    pod = look.cache.pods.get(name)
    stopping = status is ChildStatus.STOPPING
    brutal = spec.shutdown == BRUTAL_KILL
    if pod is None:
        if (
            status is ChildStatus.STARTING
            and name not in look.cache.created
            and name not in look.cache.gone
        ):
            return []  # not created yet: carry_out.py creates it
        pod = await look.effects.get_pod(name)
        if pod is not None:
            look.cache.on_pod(pod, deleted=False)
            return []
        last = look.cache.last_seen.get(name)
        if last is None or observe_pod(last, stop_requested=stopping).phase is not PodPhase.ENDED:
            due = look.cache.kill_due.get(name)
            reason = vanished_reason(
                stop_requested=stopping,
                brutal=brutal or (due is not None and now >= due),  # killed at the deadline
                node_lost=name in look.cache.fenced,
                disrupted=name in look.cache.disrupted,
            )
            return [_end(reason, status)]
        pod = last  # its last state before the deletion says how it ended
    view = observe_pod(pod, stop_requested=stopping)
    if view.phase is PodPhase.ENDED:
        assert view.reason is not None
        reason = KILLED if stopping and brutal and not view.reason.is_clean else view.reason
        assert spec.actor is not None
        if status is ChildStatus.STARTING and _started_once_spawned(spec) and view.ran:
            # A command is started once it runs: one that ended before we looked did
            # start, and then ended (a quick job), as rebeam run would see it.
            return [_UP, _end(reason, ChildStatus.RUNNING)]
        return [_end(reason, status)]
    if status is ChildStatus.STARTING:
        assert spec.actor is not None
        if view.phase is PodPhase.RUNNING and (view.ready or _started_once_spawned(spec)):
            return [_UP]
        created = created_at(pod) or now
        if now - created > spec.start_timeout:
            await look.effects.delete_pod(name, 0)
            reason = start_timeout_reason(spec.start_timeout, view)  # and why, if it says
            return [_end(reason, status)]
        return []
    if (view.node and not view.deleting) or (view.node and stopping):
        return await _maybe_fence(look, child, inc, pod, status, name)
    return []


def _started_once_spawned(spec: Child) -> bool:
    """A command without readiness is started once it runs; any other child once its pod is
    Ready (a Python actor's init returned, a command's readiness said so: docs/readiness.md)."""
    return spec.actor is not None and bool(spec.actor.command) and not uses_entry(spec.actor)


async def _maybe_fence(
    look: _Looking, child: str, inc: int, pod: Json, status: ChildStatus, name: str
) -> list[_Seen]:
    """A pod that still looks alive on a node that is not Ready is replaced only once its
    incarnation is fenced: its runtime's lease has expired (the runtime stops without it,
    and a later incarnation supersedes it in the slot record), then the pod is
    force-deleted and its exit reported as noconnection."""
    pid = look.pid(child, inc)
    if _pod_ready(pod) or pid is None:
        return []
    spec = look.child(child)
    if spec is None or spec.actor is None or spec.actor.command:
        return []  # a command holds no lease: wait until its pod is confirmed gone
    node = pod["spec"].get("nodeName")
    if not node or await look.effects.node_ready(node):
        return []
    last = look.cache.lease_checked.get(name, 0.0)
    if time.monotonic() - last < 1.0:
        return []
    look.cache.lease_checked[name] = time.monotonic()
    alive = await look.effects.lease_alive(pid)
    if alive is not False:
        return []
    look.log.warning("pod %s on lost node %s: lease expired, force-deleting", name, node)
    await look.effects.delete_pod(name, 0)
    look.cache.fenced.add(name)
    return [_end(NOCONNECTION, status)]


async def _ended(
    look: _Looking,
    child: str,
    inc: int,
    pid: Pid | None,
    reason: ExitReason,
    *,
    starting: bool,
) -> Event:
    """Close what the incarnation has open on NATS, release the names of an actor's pid,
    keep how it ended for status, say it on NATS, and make the core's event: a child that
    was still starting failed to start."""
    spec = look.child(child)
    if pid is not None:
        look.effects.ended(pid)
    if pid is not None and spec is not None and spec.actor and not spec.actor.command:
        # A command has no runtime, so no names; a program in it that used
        # rebeam.connect is its own observer and releases its own.
        await look.effects.release(pid)
    look.record.child_exits[child] = exit_summary(reason)
    if starting:
        look.effects.emit("start_failed", child, inc, pid, reason)
        return StartFailed(child, inc, reason)
    look.effects.emit("exited", child, inc, pid, reason)
    return ChildExited(child, inc, reason)


async def _observe_child_supervisor(
    look: _Looking, child: str, inc: int, status: ChildStatus
) -> list[_Seen]:
    obj = look.cache.child_objects.get(look.host.child_supervisor(child))
    if obj is None:
        if status is ChildStatus.STARTING:
            return []
        return [_end(SHUTDOWN, status)]
    st = obj.get("status") or {}
    if int(st.get("supervisorIncarnation", 0)) != inc:
        return []
    phase = st.get("phase")
    if status is ChildStatus.STARTING and phase in ("Running", "Restarting"):
        return [_UP]
    if phase in ("Terminated", "GaveUp", "Failed"):
        if st.get("outbox"):
            # Its driver has decided its end but not told it yet: its own lifecycle event
            # (``shutdown``, ``gave_up``) comes first, as the child ends before its parent
            # can see it end. Clearing the outbox is a status write: the watch wakes us.
            return []
        return [_end(ExitReason.from_wire(st.get("exitReason") or "shutdown"), status)]
    return []
