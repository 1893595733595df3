"""Step 4 of a driver's pass (driver.py): make the world match what the core decided, once
that is persisted. Every act here is idempotent, so a pass repeated after an operator restart
re-issues what was outstanding and doubles nothing: a pod's name is fixed per incarnation (a
second create is refused), a child Supervisor is asked through annotations that only grow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from rebeam.pids import Pid
from rebeam.spec.models import Child
from rebeam.supervision import BRUTAL_KILL, ChildStatus, StartChild, StopChild, Supervisor
from rebeam_operator import convergence, failpoints, slots, subtrees
from rebeam_operator.cache import Cache
from rebeam_operator.children import manifest_child
from rebeam_operator.effects import Effects
from rebeam_operator.hosts import (
    ANN_INCARNATION,
    ANN_PATH,
    ANN_STOP,
    GROUP,
    LABEL_CHILD,
    LABEL_HOST,
    LABEL_INCARNATION,
    LABEL_MANAGED,
    MANAGED_BY,
    VERSION,
    Host,
)
from rebeam_operator.observation import PodPhase, observe_pod
from rebeam_operator.pods import grace_seconds, pod_manifest
from rebeam_operator.record import Record
from rebeam_operator.settings import Settings

__all__ = ["CarryOut"]

Json = dict[str, Any]

_ALIVE = (ChildStatus.STARTING, ChildStatus.RUNNING, ChildStatus.STOPPING)
KILL_ORDER_WAIT = 1.0  # seconds a runtime told to kill itself has before its pod is deleted


@dataclass(frozen=True)
class CarryOut:
    """One pass's hands: what carrying out reads, and acts through."""

    host: Host
    core: Supervisor
    record: Record
    cache: Cache
    effects: Effects
    settings: Settings
    log: logging.LoggerAdapter[logging.Logger]

    async def commands(self) -> None:
        """Make the world match the core's outstanding starts and stops."""
        for command in self.core.outstanding():
            spec = manifest_child(self.core, command.child)
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

    def pending_actor_starts(self) -> list[tuple[Child, StartChild]]:
        """The core's outstanding actor starts whose pods are not created yet."""
        starts = []
        for command in self.core.outstanding():
            if not isinstance(command, StartChild):
                continue
            spec = manifest_child(self.core, command.child)
            if spec is None or spec.actor is None:
                continue
            if self.cache.may_create(self.host.pod_name(spec.name, command.incarnation)):
                starts.append((spec, command))
        return starts

    async def start_actor(self, spec: Child, inc: int, decided_seq: int | None = None) -> None:
        """Create the pod of incarnation ``inc``, for the decision persisted as status seq
        ``decided_seq`` (the last persisted one if not given; see early_starts.py)."""
        host, cache = self.host, self.cache
        name = host.pod_name(spec.name, inc)
        if not cache.may_create(name):
            return
        slot = await slots.ensure(host, cache, self.effects, spec)
        pid = Pid.for_incarnation(host.namespace, slot, inc)
        core_spec = self.core.child_spec(spec.name)
        assert core_spec is not None
        body = pod_manifest(
            host,
            spec,
            inc,
            pid,
            core_spec.shutdown_policy,
            slots.owner(host, cache.slots, spec),
            self.settings,
            decided_seq=self.record.seq if decided_seq is None else decided_seq,
        )
        # Its slot is claimed alongside the create: the pod's runtime is let into NATS only
        # once the claim is done (claims.py), so nothing waits for NATS here.
        self.effects.claim(pid)
        created = await self.effects.create_pod(body)
        if decided_seq is None:  # an early create counts once its decision is persisted
            failpoints.hit("pod-created")
        cache.created.add(name)
        if created is not None:
            cache.on_pod(created, deleted=False)
            self.log.info("created pod %s (%s)", name, pid)

    async def _stop_actor(self, spec: Child, inc: int, command: StopChild) -> None:
        name = self.host.pod_name(spec.name, inc)
        pod = self.cache.pods.get(name)
        if pod is None or "deletionTimestamp" in pod["metadata"]:
            return
        if observe_pod(pod, stop_requested=True).phase is PodPhase.ENDED:
            return
        grace = grace_seconds(command.shutdown)
        if (
            command.shutdown == BRUTAL_KILL
            and spec.actor is not None
            and not spec.actor.command
            and await self._ordered_killed(name, spec.name, inc)
        ):
            return
        # Past this moment the kubelet SIGKILLs it: a pod that vanishes later without an end
        # we saw was killed, not stopped cleanly (child_events.py).
        self.cache.kill_due.setdefault(name, time.time() + grace)
        await self.effects.delete_pod(name, grace, pod["metadata"]["uid"])
        failpoints.hit("pod-stopping")

    async def _ordered_killed(self, name: str, child: str, inc: int) -> bool:
        """brutal_kill of a Python actor: True while its runtime, told to SIGKILL itself, is
        given :data:`KILL_ORDER_WAIT` to do so (its pod's end wakes the driver). A grace-0
        deletion is SIGTERM then SIGKILL, and the SIGTERM would run the actor's terminate;
        it is only the fallback, for a runtime the order did not reach."""
        ordered = self.cache.kill_ordered.get(name)
        if ordered is None:
            pid = self.cache.pid(self.host, child, inc)
            if pid is None or not await self.effects.order_kill(pid):
                return False
            self.cache.kill_ordered[name] = time.monotonic()
            return True
        return time.monotonic() - ordered < KILL_ORDER_WAIT

    async def _start_supervisor(self, spec: Child, inc: int) -> None:
        name = self.host.child_supervisor(spec.name)
        obj = self.cache.child_objects.get(name)
        if obj is None:
            created = await self.effects.create_object("supervisors", self._nested(spec, inc))
            failpoints.hit("supervisor-asked")
            if created is not None:
                self.cache.on_child_object(created, deleted=False)
            return
        current = int((obj["metadata"].get("annotations") or {}).get(ANN_INCARNATION, "0"))
        if current < inc and "deletionTimestamp" not in obj["metadata"]:
            patch = {"metadata": {"annotations": {ANN_INCARNATION: str(inc)}}}
            patched = await self.effects.patch_object("supervisors", name, patch)
            failpoints.hit("supervisor-asked")
            self.cache.on_child_object(patched, deleted=False)

    def _nested(self, spec: Child, inc: int) -> Json:
        """The Supervisor object of a nested supervisor child, asked to run ``inc``."""
        host = self.host
        assert spec.supervisor is not None
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Supervisor",
            "metadata": {
                "name": host.child_supervisor(spec.name),
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

    async def _stop_supervisor(self, spec: Child, command: StopChild) -> None:
        inc = command.incarnation
        if subtrees.should_kill(self.record, command, time.time()):
            await subtrees.kill(self.host, self.cache, self.effects, self.log, spec.name, inc)
            return
        name = self.host.child_supervisor(spec.name)
        obj = self.cache.child_objects.get(name)
        if obj is None:
            return
        current = int((obj["metadata"].get("annotations") or {}).get(ANN_STOP, "0"))
        if current < inc:
            patch = {"metadata": {"annotations": {ANN_STOP: str(inc)}}}
            patched = await self.effects.patch_object("supervisors", name, patch)
            failpoints.hit("supervisor-asked")
            self.cache.on_child_object(patched, deleted=False)

    async def collect(self) -> None:
        """Delete the pods of incarnations the core is done with (their exits are persisted)."""
        current = self.core.incarnations
        present = {i.id for i in self.core.which_children()}
        alive = {i.id: i.incarnation for i in self.core.which_children() if i.status in _ALIVE}
        for name, pod in list(self.cache.pods.items()):
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
                await self.effects.delete_pod(name, 0, pod["metadata"]["uid"])
        self.cache.keep_only({self.host.pod_name(c, inc) for c, inc in current.items()})

    async def sync_nested(self) -> None:
        """A nested supervisor's own spec goes to its object; its driver converges it."""
        host, cache = self.host, self.cache
        for child in host.spec.children:
            obj = cache.child_objects.get(host.child_supervisor(child.name))
            if obj is None or "deletionTimestamp" in obj["metadata"]:
                continue
            patch = convergence.nested_spec_patch(child, obj)
            if patch is not None:
                name = obj["metadata"]["name"]
                patched = await self.effects.patch_object("supervisors", name, patch)
                cache.on_child_object(patched, deleted=False)
        # Children the core no longer has (removed from the manifest, dynamic ones ended):
        # their Actor slot objects and child Supervisor objects go too.
        await slots.delete_unused(host, self.core, cache, self.effects)
        present = {info.id for info in self.core.which_children()}
        for name, obj in list(cache.child_objects.items()):
            child_id = (obj["metadata"].get("labels") or {}).get(LABEL_CHILD, "")
            if child_id in present or "deletionTimestamp" in obj["metadata"]:
                continue
            phase = (obj.get("status") or {}).get("phase")
            if phase in ("Terminated", "GaveUp", "Failed") and not host.deleting:
                await self.effects.delete_object("supervisors", name)
