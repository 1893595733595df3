"""One Supervisor object (or Actor applied on its own), driven like ``rebeam run`` drives a
supervisor: observe, feed the core, carry out its commands. No restart rule lives here.

One pass of the loop (:meth:`Driver._pass`), level-triggered — it looks at the world as it is,
whatever woke it:

1. what the object asks: deleted (finalizer) or stopped by the parent → ``ShutdownRequest``;
   a new incarnation asked by the parent → a fresh core that continues the incarnations;
2. what the children did (``child_events.py``): each live incarnation's pod (or child
   Supervisor object) is read into ``ChildStarted`` / ``StartFailed`` / ``ChildExited``; a
   start that overran its ``startTimeout`` is a ``StartFailed``; a pod on a lost node is
   fenced first;
3. the core's answer, **persisted before it is carried out**: the snapshot, the events fed
   and the notifications due go into status with a resourceVersion-checked PUT. The one
   exception: the pods it starts are created just before that write (``early_starts.py``
   says why, and what a crash in between leaves);
4. then carried out, idempotently: create the pods of starting incarnations (a 409 means it
   exists), delete the pods of stopping ones with their shutdown as grace period, post the
   notifications (Kubernetes Events, NATS lifecycle events), remove pods of incarnations
   the core is done with, and at last the finalizer.

Killed between 2 and 3, the operator observes the same pods again and feeds the same events
to the same restored core: the restart is decided once. Killed between 3 and 4, it restores a
core whose commands are outstanding and re-issues them: nothing is lost, and the fixed pod
name of each incarnation keeps a second process of it from ever being created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from rebeam.events import LifecycleEvent
from rebeam.exits import SHUTDOWN, ExitReason, shutdown_with
from rebeam.pids import Pid
from rebeam.spec.models import Child, SupervisorSpec
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import (
    AutoShutdownBy,
    ChildRestarting,
    ChildStatus,
    Command,
    Error,
    Event,
    Exited,
    GaveUp,
    InitFailed,
    Reply,
    ShutdownRequest,
    StartChild,
    StopChild,
    Supervisor,
    SupervisorState,
)
from rebeam_operator import (
    child_events,
    convergence,
    early_starts,
    failpoints,
    notices,
    slots,
    subtrees,
)
from rebeam_operator.child_events import created_at
from rebeam_operator.children import CODEC, manifest_child
from rebeam_operator.control import Requests
from rebeam_operator.hosts import (
    ANN_INCARNATION,
    ANN_PATH,
    ANN_STOP,
    FINALIZER,
    GROUP,
    LABEL_CHILD,
    LABEL_HOST,
    LABEL_INCARNATION,
    LABEL_MANAGED,
    MANAGED_BY,
    VERSION,
    Host,
    host_from_body,
)
from rebeam_operator.kube import Conflict
from rebeam_operator.observation import PodPhase, disrupted, observe_pod
from rebeam_operator.pods import grace_seconds, pod_manifest
from rebeam_operator.status import build_status, phase_of

if TYPE_CHECKING:
    from rebeam_operator.world import World

__all__ = ["Driver"]

log = logging.getLogger("rebeam.operator")

Json = dict[str, Any]

BUSY_TICK = 1.0
MIN_TICK = 0.05


class Driver:
    def __init__(self, world: World, body: Json) -> None:
        self.world = world
        self.body = body
        self.host: Host = host_from_body(body)
        self.log = logging.LoggerAdapter(log, {"object": f"{self.host.namespace}/{self.host.name}"})
        self.deleted = False
        self.pods: dict[str, Json] = {}
        self.gone: set[str] = set()  # pods we saw deleted
        self.child_objects: dict[str, Json] = {}
        self.slots: dict[str, str] = {}  # actor child -> its Actor object's uid (the pid slot)
        self.created: set[str] = set()  # pods created by this driver since it started
        self.fenced: set[str] = set()
        self.disrupted: set[str] = set()  # pods Kubernetes took away (observation.disrupted)
        self.lease_checked: dict[str, float] = {}
        self.wake = asyncio.Event()
        self.core: Supervisor | None = None
        self.seq = 0
        self.fed: set[str] = set()
        self.outbox: list[Json] = []
        self.child_exits: dict[str, Json] = {}
        self.incarnation = 0
        self.shutdown_fed = 0
        self.gave_up: str | None = None
        self.init_failed: Json | None = None
        self.exit_reason: Any = None
        self.written: Json | None = None
        self.slot_status: dict[str, Json] = {}
        self.slot_specs: dict[str, Json] = {}  # actor child -> its slot object's spec
        self.dirty = False  # the core moved on and status does not say so yet
        self.requests = Requests()  # management requests (control.py) for the next pass
        self.applied: SupervisorSpec | None = None  # the spec the core was given
        self.converging: list[str] = []  # convergence requests not answered yet
        self.converged_generation = 0
        self.converge_problem: Json | None = None  # a refused generation and why
        self.stops_asked: dict[str, float] = {}  # child#incarnation -> when its stop was decided
        self.killed = 0  # the incarnation the parent killed, once acknowledged (subtrees.py)
        self.early: set[str] = set()  # pods created ahead of the status write (early_starts.py)
        self.unrecorded: dict[str, Json] = {}  # pods of decisions never persisted, being removed

    # --- inputs from the world (synchronous: store and wake) --------------------------------

    def update(self, body: Json, deleted: bool) -> None:
        if deleted:
            self.deleted = True
        else:
            self.body = body
            try:
                self.host = host_from_body(body)
            except ValueError as exc:
                self.log.warning("cannot read the object: %s", exc)
        self.wake.set()

    def on_pod(self, body: Json, deleted: bool) -> None:
        name = body["metadata"]["name"]
        if deleted:
            self.pods.pop(name, None)
            if name not in self.unrecorded:  # an unrecorded pod's name is used again
                self.gone.add(name)
            if disrupted(body):  # its end is reported from this, its last state
                self.disrupted.add(name)
        elif name not in self.gone:
            old = self.pods.get(name)
            if old is None or int(old["metadata"]["resourceVersion"]) <= int(
                body["metadata"]["resourceVersion"]
            ):
                self.pods[name] = body
        self.wake.set()

    def on_child_object(self, body: Json, deleted: bool) -> None:
        name = body["metadata"]["name"]
        if deleted:
            self.child_objects.pop(name, None)
        else:
            self.child_objects[name] = body
        self.wake.set()

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        await self._seed()
        while not self.deleted:
            try:
                done = await self._pass()
            except Conflict:
                await self._reread()
                continue
            except Exception:
                self.log.exception("pass failed; retrying")
                await asyncio.sleep(2)
                continue
            if done:
                return
            tick = self._tick(time.time())
            deadline = subtrees.next_deadline(self)
            if deadline is not None:  # a child supervisor's shutdown time runs out
                tick = max(0.05, min(tick, deadline - time.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), tick)
            self.wake.clear()

    def _tick(self, now: float) -> float:
        """How long to wait for an event before the next pass: a second while a plan, a stop
        or a deletion is under way; while children only start, until the first of their
        startTimeouts runs out (their pods' events wake the driver sooner); otherwise the
        resync period. A driver per Supervisor polling every second while its children
        started one by one was most of the operator's CPU at 2,000 pods."""
        resync = self.world.settings.resync_seconds
        core = self.core
        if subtrees.is_killed(self):
            return BUSY_TICK if self.killed < self.incarnation else resync
        if core is None or core.busy or self.host.deleting:
            return BUSY_TICK
        tick = resync
        for info in core.which_children():
            if info.status is ChildStatus.STOPPING:
                return BUSY_TICK
            if info.status is ChildStatus.STARTING:
                tick = min(tick, self._start_deadline(info.id, info.incarnation or 0) - now)
        return max(tick, MIN_TICK)

    def _start_deadline(self, child: str, incarnation: int) -> float:
        """When a starting child's startTimeout runs out (from its pod's creation), or a
        second from now while its pod is not seen yet."""
        spec = self._child(child)
        pod = self.pods.get(self.host.pod_name(child, incarnation))
        created = created_at(pod) if pod is not None else None
        if spec is None or created is None:
            return time.time() + BUSY_TICK
        return created + spec.start_timeout

    async def _seed(self) -> None:
        """List what this driver owns before trusting its caches (a watch may lag)."""
        kube, host = self.world.kube, self.host
        selector = f"{LABEL_HOST}={host.uid}"
        for pod in await kube.list_pods(host.namespace, selector):
            self.on_pod(pod, deleted=False)
        for obj in await kube.list_objects(host.namespace, "supervisors", selector):
            self.on_child_object(obj, deleted=False)
        for obj in await kube.list_objects(host.namespace, "actors", selector):
            child = obj["metadata"]["labels"].get(LABEL_CHILD, "")
            self.slots[child] = obj["metadata"]["uid"]
            self.slot_specs[child] = obj.get("spec") or {}
        self._restore(self.host.status)

    async def _reread(self) -> None:
        body = await self.world.kube.get_object(
            self.host.namespace, self.host.plural, self.host.name
        )
        if body is None:
            self.deleted = True
            return
        stored = body.get("status") or {}
        self.update(body, False)
        if int(stored.get("seq", 0)) != self.seq:
            # Someone else wrote our status (another operator?): carry on from what is stored.
            self.log.warning("status changed under us; restoring from it")
            self._restore(stored)
            self.requests.forget("the operator went back to its stored state: ask again")

    # --- restore -------------------------------------------------------------------------

    def _flags_specs(self) -> tuple[Any, Any]:
        return supervisor_flags(self.host.spec), child_specs(self.host.spec)

    def _restore(self, status: Json) -> None:
        self.seq = int(status.get("seq", 0))
        self.early = set()  # their decision is not in what is restored: they are unrecorded
        self.dirty = False
        self.fed = set(status.get("fed") or [])
        self.outbox = list(status.get("outbox") or [])
        self.child_exits = dict(status.get("childExits") or {})
        self.incarnation = int(status.get("supervisorIncarnation", 0))
        self.shutdown_fed = int(status.get("shutdownFed", 0))
        self.gave_up = status.get("gaveUpMessage")
        self.init_failed = status.get("initFailed")
        self.exit_reason = status.get("exitReason")
        self.stops_asked = dict(status.get("stopsAsked") or {})
        self.killed = int(status.get("killedIncarnation", 0))
        self.written = status
        snapshot = status.get("coreSnapshot")
        self.applied = convergence.applied_spec(status, self.host.spec)
        self.converging = list(status.get("convergePending") or [])
        self.converged_generation = int(status.get("observedGeneration") or 0)
        self.converge_problem = status.get("convergeProblem")
        flags, specs = supervisor_flags(self.applied), child_specs(self.applied)
        self.core = None
        if snapshot:
            try:
                self.core = Supervisor.restore(flags, specs, json.loads(snapshot), CODEC)
            except Exception as exc:
                self.log.error("cannot restore the supervisor's snapshot: %s", exc)

    # --- one pass ------------------------------------------------------------------------

    async def _pass(self) -> bool:
        """Observe, decide, persist, act. True when this driver is finished."""
        host = self.host
        now = time.time()
        commands: list[Command] = []
        changed = False
        if FINALIZER not in host.finalizers and not host.deleting:
            await self._add_finalizer()
            return False
        await early_starts.remove_unrecorded(self)
        if self.core is None or host.incarnation > self.incarnation:
            if host.deleting or (self.incarnation and host.incarnation <= self.incarnation):
                pass
            else:
                commands += self._new_incarnation(now)
                changed = True
        if subtrees.is_killed(self):
            return await subtrees.play_dead(self)
        core = self.core
        if core is not None:
            wants_stop = host.deleting or (
                host.stop_incarnation and host.stop_incarnation >= self.incarnation
            )
            if (
                wants_stop
                and core.state is not SupervisorState.TERMINATED
                and self.shutdown_fed < self.incarnation
            ):
                self.shutdown_fed = self.incarnation
                commands += core.handle(ShutdownRequest(SHUTDOWN), now)
                changed = True
            for event in await child_events.observe(self, core, now):
                commands += core.handle(event, time.time())
                changed = True
            if core.state is SupervisorState.TERMINATED:
                self.requests.forget(f"{host.path} is not running")
            else:
                converge = [] if wants_stop else self._converge(core)
                for event in converge + self.requests.take():
                    commands += core.handle(event, time.time())
                    changed = True
            self._note(commands)
            self._converge_answered(commands)
            self.requests.answered(commands)
            changed = subtrees.note_timed_stops(self, core, now) or changed
        if core is not None and self.written is not None and not changed:
            # Level-triggered status: a new generation, or restarts leaving the window.
            window = core.restarts_in_window(now)
            if self.written.get("observedGeneration") != self._observed_generation() or (
                self.written.get("restartsInWindow", 0) != window
            ):
                changed = True
        if changed or self.dirty or self.outbox:
            if changed:
                failpoints.hit("decided")
            self.dirty = True
            if core is None:
                await self.persist(now)
            else:  # the pods it starts are created first
                await early_starts.create_then_persist(self, core, now)
            failpoints.hit("persisted")
        self.requests.deliver()  # replied only once what they did is persisted
        if core is not None:
            # Replacement pods first: the notifications (an Event, a status write) would
            # otherwise sit between a crash and its restart.
            await self._carry_out(core)
            if self.outbox:
                failpoints.hit("carried-out")
            if await self._notify():
                failpoints.hit("notified")
            await self._collect(core)
            await slots.write(self, core)
            await self._sync_nested(core)
        finished = core is None or core.state is SupervisorState.TERMINATED
        if host.deleting and finished and not any(map(self._pod_alive, self.pods.values())):
            await self._remove_finalizer()
            return True
        return False

    def _new_incarnation(self, now: float) -> list[Command]:
        flags, specs = self._flags_specs()
        previous = self.core.incarnations if self.core is not None else None
        if previous is None and self.written and self.written.get("incarnations"):
            previous = dict(self.written["incarnations"])
        self.core = Supervisor(flags, specs, incarnations=previous)
        self.applied = self.host.spec
        self.converging = []
        self.converge_problem = None
        self.incarnation = max(self.host.incarnation, 1)
        self.fed = set()
        self.gave_up = None
        self.init_failed = None
        self.exit_reason = None
        self.log.info("starting incarnation %s", self.incarnation)
        return self.core.init(now)

    # --- an edited manifest (convergence.py) ----------------------------------------------

    def _converge(self, core: Supervisor) -> list[Event]:
        host = self.host
        refused: Json = self.converge_problem or {}
        if refused.get("generation") == host.generation:
            return []  # refused as a whole; a new edit is looked at again
        applied = self.applied or host.spec
        plan = convergence.plan(core, applied, host.spec, host.generation)
        if plan.problems:
            message = "; ".join(plan.problems)
            self.converge_problem = {"generation": host.generation, "message": message}
            self.log.warning("generation %s not applied: %s", host.generation, message)
            note = f"generation {host.generation} not applied: {message}"
            self.outbox.append({"event": "spec_refused", "message": note})
            self.dirty = True
            return []
        if plan.applied is None:
            return []
        self.applied = plan.applied
        self.converge_problem = None
        self.converging += plan.request_ids
        self.outbox.append({"event": "spec_changed", "message": plan.describe(host.generation)})
        self.dirty = True
        self.log.info("converging to generation %s: %d requests", host.generation, len(plan.events))
        return plan.events

    def _converge_answered(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Reply) and str(command.request_id) in self.converging:
                self.converging.remove(str(command.request_id))
                if isinstance(command.result, Error):
                    self.log.warning(
                        "convergence step %s: %s", command.request_id, command.result.reason
                    )

    def _observed_generation(self) -> int:
        """A generation is observed once every change it asked for is carried out."""
        if not self.converging:
            self.converged_generation = self.host.generation
        return self.converged_generation

    async def _sync_nested(self, core: Supervisor) -> None:
        """A nested supervisor's own spec goes to its object; its driver converges it."""
        for child in self.host.spec.children:
            obj = self.child_objects.get(self.host.child_supervisor(child.name))
            if obj is None or "deletionTimestamp" in obj["metadata"]:
                continue
            patch = convergence.nested_spec_patch(child, obj)
            if patch is not None:
                patched = await self.world.kube.patch_object(
                    self.host.namespace, "supervisors", obj["metadata"]["name"], patch
                )
                self.on_child_object(patched, deleted=False)
        # Children the core no longer has (removed from the manifest, dynamic ones ended):
        # their Actor slot objects and child Supervisor objects go too.
        await slots.delete_unused(self, core)
        present = {info.id for info in core.which_children()}
        for name, obj in list(self.child_objects.items()):
            child = (obj["metadata"].get("labels") or {}).get(LABEL_CHILD, "")
            if child in present or "deletionTimestamp" in obj["metadata"]:
                continue
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Terminated", "GaveUp", "Failed") and not self.host.deleting:
                await self.world.kube.delete_object(self.host.namespace, "supervisors", name)

    def _gone_for_good(self, child: str) -> bool:
        """No pod of the child is still alive (its last incarnation has ended)."""
        for pod in self.pods.values():
            labels = pod["metadata"].get("labels") or {}
            if labels.get(LABEL_CHILD) == child and self._pod_alive(pod):
                return False
        return True

    # --- observing -----------------------------------------------------------------------

    def _child(self, child_id: str) -> Child | None:
        """The manifest child a core child runs now (see children.py)."""
        return manifest_child(self.core, child_id) if self.core is not None else None

    def _key(self, child: str, incarnation: int, kind: str) -> str:
        return f"{child}#{incarnation}#{kind}"

    def _pid(self, child: str, incarnation: int) -> Pid | None:
        slot = self.host.uid if self.host.standalone_actor else self.slots.get(child)
        if slot is None or incarnation < 1:
            return None
        return Pid.for_incarnation(self.host.namespace, slot, incarnation)

    # --- notifications -------------------------------------------------------------------

    def _note(self, commands: list[Command]) -> None:
        """Remember what the commands tell (persisted with the snapshot, then sent)."""
        for command in commands:
            if isinstance(command, ChildRestarting):
                self.outbox.append(
                    {
                        "event": "restarting",
                        "child": command.child,
                        "children": list(command.children),
                        "reason": command.reason.to_wire() if command.reason else None,
                    }
                )
            elif isinstance(command, GaveUp):
                reason = command.reason
                self.gave_up = (
                    f"{command.child} exited ({reason}); reached max restart intensity "
                    f"{self.core.flags.intensity if self.core else '?'} in "
                    f"{self.host.spec.period:g}s: all children stopped, exiting shutdown"
                )
                self.outbox.append(
                    {
                        "event": "gave_up",
                        "child": command.child,
                        "reason": reason.to_wire() if reason else None,
                    }
                )
            elif isinstance(command, InitFailed):
                failure = shutdown_with(
                    {"failed_to_start_child": command.child, "reason": command.reason.to_wire()}
                )
                self.init_failed = {"child": command.child, "reason": command.reason.to_wire()}
                self.exit_reason = failure.to_wire()
                self.outbox.append(
                    {
                        "event": "init_failed",
                        "child": command.child,
                        "reason": command.reason.to_wire(),
                    }
                )
            elif isinstance(command, Exited):
                self.exit_reason = command.reason.to_wire()
                self.outbox.append({"event": "shutdown", "reason": command.reason.to_wire()})
            elif isinstance(command, AutoShutdownBy):
                self.outbox.append(
                    {
                        "event": "auto_shutdown",
                        "child": command.child,
                        "reason": command.reason.to_wire(),
                    }
                )

    async def _notify(self) -> bool:
        """Send the notifications persisted with their decision; True if there were any."""
        if not self.outbox:
            return False
        for note in self.outbox:
            await notices.send(self, note)
            failpoints.hit("notice-sent")
        self.outbox = []
        await self.persist(time.time())
        return True

    def _emit(
        self,
        event: str,
        child: str | None,
        inc: int | None,
        pid: Pid | None,
        reason: ExitReason | None = None,
    ) -> None:
        self.world.messaging.emit(
            LifecycleEvent(
                event=event,  # type: ignore[arg-type,unused-ignore]
                namespace=self.host.namespace,
                supervisor=self.host.path,
                child=child,
                incarnation=inc,
                pid=str(pid) if pid else None,
                reason=reason.to_wire() if reason is not None else None,
            )
        )

    # --- persisting ----------------------------------------------------------------------

    async def persist(self, now: float) -> None:
        core = self.core
        if core is None:
            return
        live = {
            self._key(i.id, i.incarnation or 0, k)
            for i in core.which_children()
            for k in ("up", "end")
        }
        self.fed &= live
        seq = self.seq + 1
        pids = {}
        for info in core.which_children():
            pid = self._pid(info.id, info.incarnation or 0)
            if pid is not None:
                pids[info.id] = str(pid)
        stopping = self.host.deleting or bool(
            self.host.stop_incarnation and self.host.stop_incarnation >= self.incarnation
        )
        phase = phase_of(
            core,
            stopping=stopping,
            gave_up=self.gave_up is not None,
            init_failed=self.init_failed is not None,
        )
        if self.converging and phase in ("Running", "Restarting"):
            phase = "Converging"
        if self.killed and self.killed >= self.incarnation:
            phase = "Terminated"  # killed by the parent: the core stopped where it was
        subtrees.prune(self, core)
        extra: Json = {
            "coreSnapshot": json.dumps(core.snapshot(CODEC), separators=(",", ":")),
            "seq": seq,
            "fed": sorted(self.fed),
            "outbox": self.outbox,
            "supervisorIncarnation": self.incarnation,
            "shutdownFed": self.shutdown_fed,
            "childExits": self.child_exits,
            "path": self.host.path,
            "appliedSpec": json.dumps(convergence.dump(self.applied or self.host.spec)),
            "convergePending": self.converging,
            "stopsAsked": self.stops_asked,
            "killedIncarnation": self.killed,
        }
        for key, value in (
            ("gaveUpMessage", self.gave_up),
            ("initFailed", self.init_failed),
            ("exitReason", self.exit_reason),
            ("convergeProblem", self.converge_problem),
        ):
            if value is not None:
                extra[key] = value
        status = build_status(
            core,
            now=now,
            generation=self._observed_generation(),
            previous=self.written or {},
            pids=pids,
            child_exits=self.child_exits,
            phase=phase,
            gave_up_message=self.gave_up,
            extra=extra,
        )
        status["conditions"].append(
            convergence.converged_condition(
                self.written or {},
                generation=self.host.generation,
                pending=len(self.converging),
                problem=self.converge_problem,
            )
        )
        if self.host.standalone_actor:
            status.update(_actor_fields(core, self.host, pids, self.child_exits))
        body = await self.world.kube.replace_status(
            self.host.namespace,
            self.host.plural,
            self.host.name,
            self.host.resource_version,
            status,
            self.host.kind,
        )
        self.seq = seq
        self.dirty = False
        self.early.clear()  # every decision in memory is in status now, theirs too
        self.written = status
        self.body = body
        self.host = host_from_body(body)

    # --- carrying out --------------------------------------------------------------------

    async def _carry_out(self, core: Supervisor) -> None:
        """Make the world match the core's outstanding starts and stops (idempotent)."""
        for command in core.outstanding():
            spec = self._child(command.child)
            if spec is None:
                continue
            if isinstance(command, StartChild):
                if spec.supervisor is not None:
                    await self._start_supervisor(spec, command.incarnation)
                else:
                    await self.start_actor(spec, command.incarnation)
            elif isinstance(command, StopChild):
                if spec.supervisor is not None:
                    await self._stop_supervisor(spec, command)
                else:
                    await self._stop_actor(spec, command.incarnation, command)

    def pending_actor_starts(self, core: Supervisor) -> list[tuple[Child, StartChild]]:
        """The core's outstanding actor starts whose pods are not created yet."""
        starts = []
        for command in core.outstanding():
            if not isinstance(command, StartChild):
                continue
            spec = self._child(command.child)
            if spec is None or spec.actor is None:
                continue
            if self._may_create(self.host.pod_name(spec.name, command.incarnation)):
                starts.append((spec, command))
        return starts

    def _may_create(self, name: str) -> bool:
        return not (
            name in self.pods
            or name in self.created
            or name in self.gone
            or name in self.unrecorded
        )

    async def start_actor(self, spec: Child, inc: int, decided_seq: int | None = None) -> None:
        """Create the pod of incarnation ``inc``, for the decision persisted as status seq
        ``decided_seq`` (the last persisted one if not given; see early_starts.py)."""
        name = self.host.pod_name(spec.name, inc)
        if not self._may_create(name):
            return
        slot = await slots.ensure(self, spec)
        pid = Pid.for_incarnation(self.host.namespace, slot, inc)
        core_spec = self.core.child_spec(spec.name) if self.core else None
        assert core_spec is not None
        body = pod_manifest(
            self.host,
            spec,
            inc,
            pid,
            core_spec.shutdown_policy,
            slots.owner(self, spec),
            self.world.settings,
            decided_seq=self.seq if decided_seq is None else decided_seq,
        )
        # Its slot is claimed alongside the create: the pod's runtime is let into NATS only
        # once the claim is done (claims.py), so nothing waits for NATS here.
        self.world.messaging.claims.begin(pid)
        created = await self.world.kube.create_pod(body)
        if decided_seq is None:  # an early create counts once its decision is persisted
            failpoints.hit("pod-created")
        self.created.add(name)
        if created is not None:
            self.on_pod(created, deleted=False)
            self.log.info("created pod %s (%s)", name, pid)

    async def _stop_actor(self, spec: Child, inc: int, command: StopChild) -> None:
        name = self.host.pod_name(spec.name, inc)
        pod = self.pods.get(name)
        if pod is None or "deletionTimestamp" in pod["metadata"]:
            return
        if observe_pod(pod, stop_requested=True).phase is PodPhase.ENDED:
            return
        await self.world.kube.delete_pod(
            self.host.namespace, name, grace_seconds(command.shutdown), pod["metadata"]["uid"]
        )
        failpoints.hit("pod-stopping")

    async def _start_supervisor(self, spec: Child, inc: int) -> None:
        kube, host = self.world.kube, self.host
        name = host.child_supervisor(spec.name)
        obj = self.child_objects.get(name)
        assert spec.supervisor is not None
        if obj is None:
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Supervisor",
                "metadata": {
                    "name": name,
                    "namespace": host.namespace,
                    "labels": {
                        LABEL_MANAGED: MANAGED_BY,
                        LABEL_HOST: host.uid,
                        LABEL_CHILD: spec.name,
                    },
                    "annotations": {
                        ANN_PATH: f"{host.path}/{spec.name}",
                        ANN_INCARNATION: str(inc),
                    },
                    "ownerReferences": [host.owner_reference()],
                },
                "spec": spec.supervisor.model_dump(mode="json", by_alias=True, exclude_none=True),
            }
            created = await kube.create_object(host.namespace, "supervisors", body)
            failpoints.hit("supervisor-asked")
            if created is not None:
                self.on_child_object(created, deleted=False)
            return
        current = int((obj["metadata"].get("annotations") or {}).get(ANN_INCARNATION, "0"))
        if current < inc and "deletionTimestamp" not in obj["metadata"]:
            patched = await kube.patch_object(
                host.namespace,
                "supervisors",
                name,
                {"metadata": {"annotations": {ANN_INCARNATION: str(inc)}}},
            )
            failpoints.hit("supervisor-asked")
            self.on_child_object(patched, deleted=False)

    async def _stop_supervisor(self, spec: Child, command: StopChild) -> None:
        inc = command.incarnation
        if subtrees.should_kill(self, command, time.time()):
            await subtrees.kill(self, spec.name, inc)
            return
        name = self.host.child_supervisor(spec.name)
        obj = self.child_objects.get(name)
        if obj is None:
            return
        current = int((obj["metadata"].get("annotations") or {}).get(ANN_STOP, "0"))
        if current < inc:
            patched = await self.world.kube.patch_object(
                self.host.namespace,
                "supervisors",
                name,
                {"metadata": {"annotations": {ANN_STOP: str(inc)}}},
            )
            failpoints.hit("supervisor-asked")
            self.on_child_object(patched, deleted=False)

    async def _collect(self, core: Supervisor) -> None:
        """Delete the pods of incarnations the core is done with (their exits are persisted)."""
        current = core.incarnations
        present = {i.id for i in core.which_children()}
        alive = {
            i.id: i.incarnation
            for i in core.which_children()
            if i.status in (ChildStatus.STARTING, ChildStatus.RUNNING, ChildStatus.STOPPING)
        }
        for name, pod in list(self.pods.items()):
            labels = pod["metadata"].get("labels") or {}
            child = labels.get(LABEL_CHILD, "")
            inc = int(labels.get(LABEL_INCARNATION, "0"))
            if "deletionTimestamp" in pod["metadata"] or alive.get(child) == inc:
                continue
            ended = observe_pod(pod, stop_requested=True).phase is PodPhase.ENDED
            removed = ended and child not in present  # deleted or ended for good (dynamic)
            if (
                inc < current.get(child, 0)
                or removed
                or (ended and child not in alive and self.host.deleting)
            ):
                if not ended:
                    self.log.warning("pod %s outlived its incarnation: deleting it", name)
                await self.world.kube.delete_pod(
                    self.host.namespace, name, 0, pod["metadata"]["uid"]
                )
        # What we remember of a pod name is only looked up for a child's latest incarnation:
        # forget the rest, or a long-lived tree's restarts would pile the names up.
        latest = {self.host.pod_name(child, inc) for child, inc in current.items()}
        for names in (self.gone, self.created, self.fenced, self.disrupted):
            names &= latest
        self.lease_checked = {k: v for k, v in self.lease_checked.items() if k in latest}

    # --- finalizer -----------------------------------------------------------------------

    async def _add_finalizer(self) -> None:
        patched = await self.world.kube.patch_object(
            self.host.namespace,
            self.host.plural,
            self.host.name,
            {
                "metadata": {
                    "finalizers": [*self.host.finalizers, FINALIZER],
                    "resourceVersion": self.host.resource_version,
                }
            },
        )
        self.update(patched, False)

    async def _remove_finalizer(self) -> None:
        rest = [f for f in self.host.finalizers if f != FINALIZER]
        if len(rest) == len(self.host.finalizers):
            return
        await self.world.kube.patch_object(
            self.host.namespace,
            self.host.plural,
            self.host.name,
            {"metadata": {"finalizers": rest, "resourceVersion": self.host.resource_version}},
        )
        self.log.info("all children stopped: finalizer removed")

    def _pod_alive(self, pod: Json) -> bool:
        return observe_pod(pod, stop_requested=True).phase is not PodPhase.ENDED


def core_child(host: Host, child_id: str) -> Child | None:
    for child in host.spec.children:
        if child.name == child_id:
            return child
    return None


def _actor_fields(
    core: Supervisor, host: Host, pids: dict[str, str], exits: dict[str, Json]
) -> Json:
    info = core.child(host.name)
    inc = core.incarnations.get(host.name, 0)
    fields: Json = {
        "incarnation": inc,
        "pod": host.pod_name(host.name, inc) if inc else None,
        "pid": pids.get(host.name),
        "restarts": max(0, inc - 1),
    }
    if info is not None:
        fields["childState"] = info.status.value
    if host.name in exits:
        fields["lastExit"] = exits[host.name]
    return {k: v for k, v in fields.items() if v is not None}
