"""One Supervisor object (or Actor applied on its own), driven like ``rebeam run`` drives a
supervisor: observe, feed the core, carry out its commands. No restart rule lives here.

One pass of the loop (:meth:`Driver.reconcile`), level-triggered — it looks at the world as it is,
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

The driver's state has three owners: its :class:`~rebeam_operator.record.Record` (what status
keeps), its :class:`~rebeam_operator.cache.Cache` (what the watches showed) and its
:class:`~rebeam_operator.effects.Effects` (every act on the world). The helper modules each
take the few of these they need; a pass returns when the next one is due
(:class:`~rebeam_operator.timing.Result`), and a failed pass backs off (timing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from rebeam import metrics_supervision
from rebeam._wakeups import Wakeups
from rebeam.exits import SHUTDOWN
from rebeam.pids import Pid
from rebeam.spec.models import Child
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import (
    Command,
    Error,
    Event,
    Ok,
    ShutdownRequest,
    Supervisor,
    SupervisorState,
)
from rebeam.supervision.notices import notices as notices_of
from rebeam_operator import (
    child_events,
    convergence,
    converging,
    early_starts,
    failpoints,
    metrics,
    notices,
    slots,
    subtrees,
)
from rebeam_operator.cache import Cache, pod_alive, version_of
from rebeam_operator.carry_out import CarryOut
from rebeam_operator.children import manifest_child
from rebeam_operator.effects import Effects, Services, WorldEffects
from rebeam_operator.hosts import FINALIZER, LABEL_CHILD, LABEL_HOST, Host, host_from_body
from rebeam_operator.kube import Conflict
from rebeam_operator.record import Record, parse, refused_status, restore_core, to_status
from rebeam_operator.requests import Requests
from rebeam_operator.settings import Settings
from rebeam_operator.timing import BUSY_TICK, DONE, MIN_TICK, Backoff, Result, requeue_after

__all__ = ["Driver"]

log = logging.getLogger("rebeam.operator")

Json = dict[str, Any]


class Driver:
    """The driver of one object (``body``); it acts on the world only through ``effects``."""

    def __init__(
        self, settings: Settings, body: Json, effects: Effects, passes: Wakeups | None = None
    ) -> None:
        self.settings = settings
        self.body = body
        self.host: Host = host_from_body(body)
        self._host_body = body  # the body self.host was read from
        self.log = logging.LoggerAdapter(log, {"object": f"{self.host.namespace}/{self.host.name}"})
        self.effects = effects
        self.deleted = False
        self.core: Supervisor | None = None
        self.record = Record()
        self.cache = Cache()
        self.requests = Requests()  # management requests (control.py) for the next pass
        self.wake = asyncio.Event()
        self.backoff = Backoff()
        self.refusals = Backoff()  # how long a spec that cannot be run waits to be looked at
        # Announced after each pass: a tree request waits for the inits to end (control.py).
        self.passes = passes if passes is not None else Wakeups()
        # Whether this replica may still act on the object (its shard held: keeper.py).
        self.may_act: Callable[[], bool] = lambda: True

    @classmethod
    def in_world(cls, services: Services, body: Json) -> Driver:
        """The driver of ``body`` in the operator's world. Raises InvalidObject."""
        effects = WorldEffects(services, host_from_body(body))
        return cls(services.settings, body, effects, services.passes)

    # --- what others see (view.py) ---------------------------------------------------------

    @property
    def starting(self) -> bool:
        core = self.core
        return (
            core is not None
            and core.state is SupervisorState.STARTING
            and not subtrees.is_killed(self.record, self.host)  # it stopped where it was
        )

    @property
    def child_exits(self) -> Mapping[str, Json]:
        return self.record.child_exits

    @property
    def pods(self) -> Mapping[str, Json]:
        return self.cache.pods

    def pid(self, child: str, incarnation: int) -> Pid | None:
        return self.cache.pid(self.host, child, incarnation)

    def child(self, child_id: str) -> Child | None:
        """The manifest child a core child runs now (see children.py)."""
        return manifest_child(self.core, child_id) if self.core is not None else None

    def ask(self, make: Callable[[str], Event]) -> asyncio.Future[Ok | Error]:
        future = self.requests.submit(make)
        self.wake.set()
        return future

    def withdraw(self, future: asyncio.Future[Ok | Error]) -> None:
        self.requests.drop(future)

    # --- inputs from the world (synchronous: store and wake) --------------------------------

    def update(self, body: Json, deleted: bool) -> None:
        if deleted:
            self.deleted = True
        else:
            self._take(body)
        self.wake.set()

    def _take(self, body: Json) -> None:
        """Keep ``body`` as the object unless a newer view is kept already. A write's response
        can be read after the watch event of a later change (a parent's ask, made while our
        status write was on its way): taking it would lose that change until the next one,
        and a stop asked of an idle child would never be seen."""
        if version_of(body) < version_of(self.body):
            return
        self.body = body
        try:
            # The spec of the body the host was read from is reused when this one's is equal.
            self.host = host_from_body(body, (self._host_body, self.host))
            self._host_body = body
        except ValueError as exc:
            self.log.warning("cannot read the object: %s", exc)

    def on_pod(self, body: Json, deleted: bool) -> None:
        metrics.pod_seen(body)
        self.cache.on_pod(body, deleted)
        self.wake.set()

    def on_child_object(self, body: Json, deleted: bool) -> None:
        self.cache.on_child_object(body, deleted)
        self.wake.set()

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        await self.seed()
        while not self.deleted:
            if not self.may_act():
                return  # the shard is not ours now; its next holder drives the object
            try:
                result = await metrics.timed_pass(self.reconcile(), Conflict)
            except Conflict:
                await self.reread()
                continue
            except Exception:
                delay = self.backoff.failed()
                self.log.exception("pass failed; retrying in %gs", delay)
                await asyncio.sleep(delay)  # events do not cut it short: no spinning
                continue
            finally:
                self.passes.announce()
            self.backoff.succeeded()
            if result.done:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(result.requeue_after):
                    await self.wake.wait()
            self.wake.clear()

    def _next(self) -> Result:
        """When the next pass is due, events aside (timing.py)."""
        resync = self.settings.resync_seconds
        if subtrees.is_killed(self.record, self.host):
            acked = self.record.killed >= self.record.incarnation
            return Result(requeue_after=resync if acked else BUSY_TICK)
        wait = requeue_after(
            self.core,
            busy=self.host.deleting,
            resync=resync,
            pods=self.cache.pods,
            pod_name=self.host.pod_name,
            now=time.time(),
        )
        deadline = subtrees.next_deadline(self.record, self.core)
        if deadline is not None:  # a child supervisor's shutdown time runs out
            wait = max(MIN_TICK, min(wait, deadline - time.time()))
        return Result(requeue_after=wait)

    async def seed(self) -> None:
        """List what this driver owns before trusting its caches (a watch may lag)."""
        selector = f"{LABEL_HOST}={self.host.uid}"
        for pod in await self.effects.list_pods(selector):
            self.cache.on_pod(pod, deleted=False)
        for obj in await self.effects.list_objects("supervisors", selector):
            self.cache.on_child_object(obj, deleted=False)
        for obj in await self.effects.list_objects("actors", selector):
            child = obj["metadata"]["labels"].get(LABEL_CHILD, "")
            self.cache.slots[child] = obj["metadata"]["uid"]
            self.cache.slot_specs[child] = obj.get("spec") or {}
        self._restore(self.host.status)

    async def reread(self) -> None:
        """After a Conflict: the object as stored, and the record too if someone else wrote it."""
        body = await self.effects.get_object(self.host.plural, self.host.name)
        if body is None:
            self.deleted = True
            return
        stored = body.get("status") or {}
        self.update(body, False)
        if int(stored.get("seq", 0)) != self.record.seq:
            # Someone else wrote our status (another operator?): carry on from what is stored.
            self.log.warning("status changed under us; restoring from it")
            self._restore(stored)
            self.requests.forget("the operator went back to its stored state: ask again")

    def _restore(self, status: Json) -> None:
        self.record = parse(status, self.host.spec)
        self.cache.early = set()  # their decision is not in what is restored: unrecorded
        self.core = None
        assert self.record.applied is not None
        try:
            self.core = restore_core(status, self.record.applied)
        except Exception as exc:
            self.log.error("cannot restore the supervisor's snapshot: %s", exc)

    # --- one pass ------------------------------------------------------------------------

    async def reconcile(self) -> Result:
        """Observe, decide, persist, act; what should happen next."""
        host, record, now = self.host, self.record, time.time()
        if FINALIZER not in host.finalizers and not host.deleting:
            await self._add_finalizer()
            return self._next()
        await early_starts.remove_unrecorded(
            self.cache, self.effects, record.seq, self.pid, self.log
        )
        commands: list[Command] = []
        changed = self._wants_new_incarnation()
        if changed:
            refused = convergence.refusal(host.spec)
            if refused is not None:
                return await self._refuse(refused)
            self.refusals.succeeded()
            commands += self._new_incarnation(now)
        if subtrees.is_killed(record, self.host):
            return await self._play_dead()
        core = self.core
        if core is not None:
            changed = await self._decide(core, commands, now) or changed
            changed = changed or self._status_outdated(core, now)
        if changed or record.dirty or record.outbox:
            await self._persist_decision(core, changed, now)
        self.requests.deliver()  # replied only once what they did is persisted
        if core is not None:
            await self._carry_out(core)
        finished = core is None or core.state is SupervisorState.TERMINATED
        if host.deleting and finished and not any(map(pod_alive, self.cache.pods.values())):
            await self._remove_finalizer()
            return DONE
        return self._next()

    async def _refuse(self, message: str) -> Result:
        """The object's spec cannot be run (``message`` says why): say so on the object once
        per distinct reason — the ``SpecValid`` condition, an ``InvalidSpec`` Event — and look
        again after a growing delay. An edit of the object wakes the driver at once."""
        record, host = self.record, self.host
        if record.invalid is None or record.invalid.get("message") != message:
            self.log.error("cannot run generation %s: %s", host.generation, message)
            record.invalid = {"generation": host.generation, "message": message}
            record.outbox.append({"event": "invalid_spec", "message": message})
            await self._persist_refusal()
        if record.outbox:  # also one persisted by an operator killed before it sent it
            for note in record.outbox:
                await notices.send(self.effects, self.body, note, record.gave_up)
            record.outbox = []
            await self._persist_refusal()
        return Result(requeue_after=self.refusals.failed())

    async def _persist_refusal(self) -> None:
        if self.core is not None:  # a new incarnation was asked of a supervisor that ran
            await self.persist(time.time())
            return
        status = refused_status(self.record, self.host)
        self._wrote(status, await self.effects.replace_status(self.host, status))

    def _wants_new_incarnation(self) -> bool:
        host, record = self.host, self.record
        if self.core is not None and host.incarnation <= record.incarnation:
            return False
        return not (
            host.deleting or (record.incarnation and host.incarnation <= record.incarnation)
        )

    def _new_incarnation(self, now: float) -> list[Command]:
        host = self.host
        previous = self.core.incarnations if self.core is not None else None
        written = self.record.written
        if previous is None and written and written.get("incarnations"):
            previous = dict(written["incarnations"])
        core = Supervisor(
            supervisor_flags(host.spec), child_specs(host.spec), incarnations=previous
        )
        self.core = core
        self.record.begin_incarnation(max(host.incarnation, 1), host.spec)
        self.log.info("starting incarnation %s", self.record.incarnation)
        return core.init(now)

    async def _decide(self, core: Supervisor, commands: list[Command], now: float) -> bool:
        """Feed the core what the object asks, what the children did, and the requests (an
        edited manifest, management requests); keep what its answers tell. ``commands``
        are the pass's so far; True if the core was fed anything."""
        host, record = self.host, self.record
        where = (host.namespace, host.path)  # the supervision metrics' labels
        changed = False
        wants_stop = record.stopping(host)
        if (
            wants_stop
            and core.state is not SupervisorState.TERMINATED
            and record.shutdown_fed < record.incarnation
        ):
            record.shutdown_fed = record.incarnation
            commands += metrics_supervision.handle(core, ShutdownRequest(SHUTDOWN), now, *where)
            changed = True
        for event in await child_events.observe(
            host, core, record, self.cache, self.effects, self.log, now
        ):
            commands += metrics_supervision.handle(core, event, time.time(), *where)
            changed = True
        if core.state is not SupervisorState.TERMINATED:
            converge = [] if wants_stop else converging.requests(record, core, host, self.log)
            for event in converge + self.requests.take():
                commands += metrics_supervision.handle(core, event, time.time(), *where)
                changed = True
        for notice in notices_of(commands):
            record.note(notice, intensity=core.flags.intensity, period=host.spec.period)
        converging.answered(record, commands, self.log)
        self.requests.answered(commands)
        if core.state is SupervisorState.TERMINATED:
            self.requests.ended()  # what it did not answer, it never will
        return subtrees.note_timed_stops(record, core, now) or changed

    def _status_outdated(self, core: Supervisor, now: float) -> bool:
        """Level-triggered status: a new generation, or restarts leaving the window."""
        written = self.record.written
        if written is None:
            return False
        generation = self.record.observed_generation(self.host.generation)
        window = core.restarts_in_window(now)
        return bool(
            written.get("observedGeneration") != generation
            or written.get("restartsInWindow", 0) != window
        )

    async def _persist_decision(self, core: Supervisor | None, changed: bool, now: float) -> None:
        if changed:
            failpoints.hit("decided")
        self.record.dirty = True
        if core is None:
            await self.persist(now)
        else:  # the pods it starts are created first (early_starts.py)
            names = await early_starts.create_ahead(self._hands(core), self.record.seq + 1)
            await self.persist(now)  # which empties the cache's early set
            for _ in names:
                failpoints.hit("pod-created")
        failpoints.hit("persisted")

    def _hands(self, core: Supervisor) -> CarryOut:
        return CarryOut(
            self.host, core, self.record, self.cache, self.effects, self.settings, self.log
        )

    async def _carry_out(self, core: Supervisor) -> None:
        # Replacement pods first: the notifications (an Event, a status write) would
        # otherwise sit between a crash and its restart.
        await self._hands(core).commands()
        if self.record.outbox:
            failpoints.hit("carried-out")
        if await self._notify():
            failpoints.hit("notified")
        hands = self._hands(core)  # the host as the last status write returned it
        await hands.collect()
        await slots.write(self.host, core, self.record.child_exits, self.cache, self.effects)
        await hands.sync_nested()

    async def _play_dead(self) -> Result:
        """A pass of a driver whose incarnation the parent killed (subtrees.py)."""
        record = self.record
        if record.killed < record.incarnation:
            core = self.core
            if not await subtrees.play_dead(self.host, core, record, self.cache, self.effects):
                return self._next()
            await self.persist(time.time())
            if core is not None:
                await slots.write(self.host, core, record.child_exits, self.cache, self.effects)
            self.log.warning("incarnation %s killed by the parent: pods gone", record.incarnation)
        if self.host.deleting:
            await self._remove_finalizer()
            return DONE
        return self._next()

    async def _notify(self) -> bool:
        """Send the notifications persisted with their decision; True if there were any."""
        record = self.record
        if not record.outbox:
            return False
        for note in record.outbox:
            await notices.send(self.effects, self.body, note, record.gave_up)
            failpoints.hit("notice-sent")
        record.outbox = []
        await self.persist(time.time())
        return True

    # --- persisting ----------------------------------------------------------------------

    async def persist(self, now: float) -> None:
        """Write the record and the core's state to status (resourceVersion-checked)."""
        core = self.core
        if core is None:
            return
        self.record.forget_fed(core)
        subtrees.prune(self.record, core)
        status = to_status(self.record, core, self.host, self.cache.pids(self.host, core), now)
        self._wrote(status, await self.effects.replace_status(self.host, status))

    def _wrote(self, status: Json, body: Json) -> None:
        """``status`` is written; ``body`` is the object as the write returned it."""
        self.record.seq += 1
        self.record.dirty = False
        self.cache.early.clear()  # every decision in memory is in status now, theirs too
        self.record.written = status
        self._take(body)

    # --- finalizer -----------------------------------------------------------------------

    async def _add_finalizer(self) -> None:
        patched = await self.effects.set_finalizers(self.host, [*self.host.finalizers, FINALIZER])
        self.update(patched, False)

    async def _remove_finalizer(self) -> None:
        rest = [f for f in self.host.finalizers if f != FINALIZER]
        if len(rest) == len(self.host.finalizers):
            return
        await self.effects.set_finalizers(self.host, rest)
        self.log.info("all children stopped: finalizer removed")
