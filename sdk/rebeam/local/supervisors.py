"""One supervisor of a local tree: the supervision core, driven with real OS processes.

A :class:`SupervisorRunner` owns one :class:`rebeam.supervision.Supervisor`. It feeds the core
what happens to its children, one event at a time from a queue, and carries out what the core
commands: a child actor is a :class:`~rebeam.local.processes.ChildProcess`, a nested supervisor
is another runner in the same event loop. No restart rule lives here: this module only
observes and executes.

For every incarnation one task runs the whole life: spawn, wait for ready, report started,
wait for the end, release the dead pid's names, report exited. A restart does not wait for
the release: the core hears of a crash at once, and the next incarnation is claimed and
started while the dead one's names are released. It can take its name back at once all the
same (OTP's order), because a later incarnation of a slot takes a name over from an earlier
one (rebeam._registry), and the release deletes only what the dead pid still owns. The
``exited`` event, and every event after it, is told only once the names are released:
whoever hears of the end finds them free. A child stopped on request is reported to the
core once its names are released: whoever asked for the stop finds them free when answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rebeam import metrics_supervision
from rebeam._loop import within
from rebeam._registry import Store
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Issuer
from rebeam.backends import claim_slot
from rebeam.events import LifecycleEvent, release_names_of
from rebeam.exits import KILLED, SHUTDOWN, ExitReason, crash
from rebeam.local.adoption import Adoption
from rebeam.local.arrivals import Arrivals
from rebeam.local.lifecycle import Lifecycle
from rebeam.local.processes import ChildProcess, Identity, OutputSink, StartFailure
from rebeam.local.reaper import Reaper
from rebeam.local.zygote import Zygote
from rebeam.pids import Pid, escape_token
from rebeam.runtime._steps import mark
from rebeam.spec.models import Child, SupervisorSpec
from rebeam.spec.to_core import child_specs, supervisor_flags
from rebeam.supervision import (
    BRUTAL_KILL,
    INFINITY,
    AutoShutdownBy,
    ChildExited,
    ChildStarted,
    Command,
    Error,
    Event,
    GaveUp,
    Ok,
    Ready,
    Reply,
    ShutdownRequest,
    StartChild,
    StartFailed,
    StopChild,
    Supervisor,
)
from rebeam.supervision.notices import Notice, notice_of

log = logging.getLogger("rebeam.run")

__all__ = ["ChildRecord", "RunContext", "SupervisorRunner", "run_mark", "slot_of"]

RELEASE_TIMEOUT = 5.0


@dataclass
class ChildRecord:
    """What the view and ``rebeam tree`` show of one child, beyond the core's state."""

    path: str
    kind: str  # "actor" or "supervisor"
    pid: str | None = None
    os_pid: int | None = None
    incarnation: int | None = None
    starts: int = 0
    last_exit: Any = None  # the ExitReason wire form


@dataclass
class RunContext:
    """What every runner of one ``rebeam run`` shares."""

    namespace: str
    run_id: str
    nats_url: str
    workdir: Path
    lifecycle: Lifecycle
    reaper: Reaper | None = None
    nc: Any = None  # the controller's NATS connection, for releasing names
    python_path: tuple[str, ...] = ()
    output: OutputSink | None = None
    zygote: Zygote | None = None
    adoption: Adoption | None = None
    records: dict[str, ChildRecord] = field(default_factory=dict)
    issuer: Issuer | None = None  # issues each incarnation's credential
    nats_ca: str | None = None  # the CA file of a tls:// server, for the children
    arrivals: Arrivals = field(default_factory=Arrivals)  # a supervisor was created
    registry: Store | None = None  # on nc, opened once: slot claims and name releases
    # Per slot: the revision of the run's last claim of it (the next claim's expectation).
    slot_revisions: dict[str, int] = field(default_factory=dict)

    def store(self) -> Store | None:
        if self.registry is None and self.nc is not None:
            self.registry = Store(self.nc.jetstream(), self.namespace)
        return self.registry


def slot_of(run_id: str, path: str) -> str:
    """The slot of the child at ``path`` (``shop/storage/cache``) in the run ``run_id``."""
    # Names in a path are DNS labels, which never hold '_': joining with it keeps the slot
    # readable in subjects and pids (no escapes) and still unique per run.
    return "_".join([run_id, *path.split("/")])


def run_mark(namespace: str, run_id: str) -> str:
    """What every pid of the run's children starts with (see :func:`slot_of`)."""
    return f"{namespace}.{escape_token(run_id)}_"


def _now() -> float:
    return time.monotonic()


class SupervisorRunner:
    def __init__(
        self,
        ctx: RunContext,
        path: str,
        spec: SupervisorSpec,
        on_exit: Callable[[ExitReason], None] | None = None,
        incarnations: dict[str, int] | None = None,
    ) -> None:
        self.ctx = ctx
        self.path = path
        self.spec = spec
        self.core = Supervisor(supervisor_flags(spec), child_specs(spec), incarnations=incarnations)
        self.on_exit = on_exit
        self.gave_up: GaveUp | None = None
        self.auto_shutdown: AutoShutdownBy | None = None
        self.children: dict[str, ChildProcess | SupervisorRunner] = {}
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._ready: asyncio.Future[ExitReason | None] = asyncio.Future()
        self.done: asyncio.Future[ExitReason] = asyncio.Future()
        self._replies: dict[int, asyncio.Future[Ok | Error]] = {}
        self._next_request = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._killed = False

    # --- what the rest of `rebeam run` calls ---------------------------------------------

    async def start(self) -> ExitReason | None:
        """Run init: None once every child is up, else why it failed (all stopped again)."""
        self._loop_task = asyncio.create_task(self._loop())
        self._execute(metrics_supervision.init(self.core, _now(), self.ctx.namespace, self.path))
        # Reachable from now on: a request that waited for this supervisor to appear is
        # posted to its core, which keeps it until init is done.
        self.ctx.arrivals.announce()
        return await self._ready

    @property
    def starting(self) -> bool:
        """In init: its children are being started."""
        return not self._ready.done()

    def post(self, event: Event) -> None:
        if not self._killed and not self.done.done():
            self._events.put_nowait(event)

    async def request(self, make: Callable[[int], Event]) -> Ok | Error:
        """A management request (start_child, terminate_child, ...), answered by the core;
        during init, once init is done (the core keeps it until then)."""
        if self._killed or self.done.done():
            return Error("noproc")  # nobody would answer: an ended process, as in OTP
        self._next_request += 1
        rid = self._next_request
        reply: asyncio.Future[Ok | Error] = asyncio.Future()
        self._replies[rid] = reply
        self.post(make(rid))
        return await reply

    def kill(self) -> None:
        """Brutal end of the whole subtree (a shutdown that timed out, a second Ctrl-C):
        SIGKILL every process below, without ordering."""
        self._killed = True
        for child in self.children.values():
            if isinstance(child, SupervisorRunner):
                child.kill()
            else:
                child.kill()
        if self._loop_task:
            self._loop_task.cancel()
        if not self.done.done():
            self.done.set_result(KILLED)
        if not self._ready.done():
            self._ready.set_result(KILLED)

    async def settled(self) -> None:
        """Until every task of the subtree has ended: after :meth:`kill`, each killed
        child's end has then been reported (its ``exited`` event written)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        for child in list(self.children.values()):
            if isinstance(child, SupervisorRunner):
                await child.settled()

    # --- the loop ------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self.done.done():
            event = await self._events.get()
            self._execute(
                metrics_supervision.handle(self.core, event, _now(), self.ctx.namespace, self.path)
            )

    def _execute(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, StartChild):
                self._spawn(self._start(command))
            elif isinstance(command, StopChild):
                self._spawn(self._stop(command))
            elif isinstance(command, Reply):
                reply = self._replies.pop(command.request_id, None)
                if reply and not reply.done():
                    reply.set_result(command.result)
            elif isinstance(command, Ready):
                self._ready.set_result(None)
            elif isinstance(command, GaveUp):
                self.gave_up = command  # how the run ended, said when it is over
            elif isinstance(command, AutoShutdownBy):
                self.auto_shutdown = command
            notice = notice_of(command)
            if notice is not None:
                self._tell(notice)

    def _tell(self, notice: Notice) -> None:
        """Publish what a command tells (rebeam.supervision.notices), and end the run on an
        exit: an init failure is said by the caller of start, not as a shutdown event."""
        if notice.kind == "init_failed":
            assert notice.exit_reason is not None
            self._finish(notice.exit_reason, report=False)
            self._ready.set_result(notice.exit_reason)
        elif notice.kind == "shutdown":
            assert notice.exit_reason is not None
            self._emit("shutdown", reason=notice.reason)
            self._finish(notice.exit_reason, report=True)
        elif notice.kind in ("restarting", "gave_up"):
            self._emit(notice.kind, child=notice.child, reason=notice.reason)

    def _finish(self, reason: ExitReason, *, report: bool) -> None:
        for reply in self._replies.values():
            if not reply.done():
                reply.set_result(Error("noproc"))
        if not self.done.done():
            self.done.set_result(reason)
        if report and self.on_exit is not None:
            self.on_exit(reason)

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)

    # --- starting and stopping children -------------------------------------------------

    async def _start(self, command: StartChild) -> None:
        child: Child = command.spec.start
        if child.supervisor is not None:
            await self._start_supervisor(command, child)
        else:
            await self._run_actor(command, child)

    async def _run_actor(self, command: StartChild, child: Child) -> None:
        assert child.actor is not None
        name = command.child
        path = f"{self.path}/{name}"
        slot = slot_of(self.ctx.run_id, path)
        pid = Pid.for_incarnation(self.ctx.namespace, slot, command.incarnation)
        mark("start", pid.incarnation)
        credentials = self._credentials_for(pid, child.actor.register_as)
        mark("credential", pid.incarnation)
        identity = self._identity(pid, name, credentials)
        # The core's spec carries the arguments this child runs with: for a dynamic child,
        # the template's combined with start_child's (the template alone lacks the latter).
        actor = child.actor.model_copy(update={"args": command.spec.args})
        process = ChildProcess(
            identity,
            actor,
            on_output=self.ctx.output,
            zygote=self.ctx.zygote,
            adoption=self.ctx.adoption,
        )
        self.children[command.child] = process
        record = self._record(path, "actor")
        try:
            await self._claim(pid)
            mark("claimed", pid.incarnation)
            await process.start(child.start_timeout, on_spawn=self._watch)
        except StartFailure as failure:
            self._revoke(credentials, process)
            await self._release(pid)
            self._forget(process)
            self._emit("start_failed", name, command.incarnation, pid, process, failure.reason)
            record.last_exit = failure.reason.to_wire()
            self.post(StartFailed(command.child, command.incarnation, failure.reason))
            return
        record.pid, record.os_pid, record.incarnation = (
            str(pid),
            process.os_pid,
            command.incarnation,
        )
        record.starts += 1
        self._emit("started", name, command.incarnation, pid, process)
        self.post(ChildStarted(command.child, command.incarnation))
        reason = await process.wait()
        self._forget(process)
        self._revoke(credentials, process)
        released = asyncio.ensure_future(self._release(pid))
        record.last_exit = reason.to_wire()
        record.os_pid = None
        self._emit("exited", name, command.incarnation, pid, process, reason, after=released)
        if not process.stop_requested:
            # A crash: the core may restart it at once (see the module's docstring).
            self.post(ChildExited(command.child, command.incarnation, reason))
        await released
        mark("end.released", pid.incarnation)
        if process.stop_requested:
            self.post(ChildExited(command.child, command.incarnation, reason))

    def _identity(self, pid: Pid, name: str, credentials: str | None) -> Identity:
        """Who the incarnation ``pid`` of child ``name`` is, and where it runs."""
        return Identity(
            pid,
            self.path,
            name,
            self.ctx.nats_url,
            self.ctx.workdir,
            self.ctx.python_path,
            local_scope=self.ctx.run_id,
            credentials=credentials,
            nats_ca=self.ctx.nats_ca,
        )

    async def _start_supervisor(self, command: StartChild, child: Child) -> None:
        assert child.supervisor is not None
        name = command.child
        path = f"{self.path}/{name}"
        record = self._record(path, "supervisor")

        def exited(reason: ExitReason) -> None:
            record.last_exit = reason.to_wire()
            self._emit("exited", name, command.incarnation, reason=reason)
            self.post(ChildExited(command.child, command.incarnation, reason))

        # A restarted nested supervisor continues its children's incarnation numbers, so
        # that no pid is ever used twice (and db#2 reads as the second db).
        previous = self.children.get(command.child)
        incarnations = (
            previous.core.incarnations if isinstance(previous, SupervisorRunner) else None
        )
        runner = SupervisorRunner(
            self.ctx, path, child.supervisor, on_exit=exited, incarnations=incarnations
        )
        self.children[command.child] = runner
        failure = await runner.start()
        if failure is None:
            record.incarnation = command.incarnation
            record.starts += 1
            self._emit("started", name, command.incarnation)
            self.post(ChildStarted(command.child, command.incarnation))
        else:
            record.last_exit = failure.to_wire()
            self._emit("start_failed", name, command.incarnation, reason=failure)
            self.post(StartFailed(command.child, command.incarnation, failure))

    async def _stop(self, command: StopChild) -> None:
        child = self.children.get(command.child)
        if isinstance(child, ChildProcess):
            await child.stop(command.shutdown)  # its life task reports the exit
            return
        if child is None:
            return
        if command.shutdown == BRUTAL_KILL:
            child.kill()
        else:
            child.post(ShutdownRequest(SHUTDOWN))
            timeout = None if command.shutdown == INFINITY else float(command.shutdown)
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.shield(child.done)
                return  # its on_exit reported the exit
            except TimeoutError:
                child.kill()
        # Killed: the subtree reports nothing more itself; say it here.
        self._emit("exited", command.child, command.incarnation, reason=KILLED)
        self.post(ChildExited(command.child, command.incarnation, KILLED))

    # --- small helpers -------------------------------------------------------------------

    def _watch(self, os_pid: int) -> None:
        if self.ctx.reaper:
            self.ctx.reaper.watch(os_pid)

    def _forget(self, process: ChildProcess) -> None:
        if self.ctx.reaper and process.os_pid:
            self.ctx.reaper.forget(process.os_pid)

    def _credentials_for(self, pid: Pid, name: str | None) -> str | None:
        """A credential for one incarnation: it may claim the name its manifest declares."""
        if self.ctx.issuer is None:
            return None
        names = (name,) if name else ()
        grant = Grant(Role.ACTOR, pid.namespace, pid, names=names, label=str(pid))
        return self.ctx.issuer.issue(grant)

    def _revoke(self, credentials: str | None, process: ChildProcess) -> None:
        """The incarnation ended: its credential is useless from now on."""
        if credentials is not None and self.ctx.issuer is not None:
            self.ctx.issuer.revoke(credentials)
        with contextlib.suppress(OSError):
            process.credentials_file.unlink()

    async def _claim(self, pid: Pid) -> None:
        """Record the incarnation as its slot's latest before it runs (only a backend may)."""
        if self.ctx.nc is None:
            return
        revisions = self.ctx.slot_revisions
        try:
            claim = claim_slot(
                self.ctx.nc, pid, store=self.ctx.store(), last=revisions.get(pid.slot)
            )
            revisions[pid.slot] = await within(claim, RELEASE_TIMEOUT)
        except Exception as exc:
            reason = crash(exception_type=type(exc).__name__, message=f"cannot start: {exc}")
            raise StartFailure(reason) from None

    async def _release(self, pid: Pid) -> None:
        """Release a dead pid's names; a registry that cannot be reached must not stall
        supervision (the names then expire with their lease)."""
        if self.ctx.nc is None:
            return
        try:
            release = release_names_of(self.ctx.nc, pid, store=self.ctx.store())
            await within(release, RELEASE_TIMEOUT)
        except Exception as exc:
            log.warning("could not release the names of %s: %s", pid, exc)

    def _record(self, path: str, kind: str) -> ChildRecord:
        record = self.ctx.records.get(path)
        if record is None:
            record = self.ctx.records[path] = ChildRecord(path, kind)
        return record

    def _emit(
        self,
        event: str,
        child: str | None = None,
        incarnation: int | None = None,
        pid: Pid | None = None,
        process: ChildProcess | None = None,
        reason: ExitReason | None = None,
        after: asyncio.Future[Any] | None = None,
    ) -> None:
        self.ctx.lifecycle.emit(
            LifecycleEvent(
                event=event,
                namespace=self.ctx.namespace,
                supervisor=self.path,
                child=child,
                incarnation=incarnation,
                pid=str(pid) if pid else None,
                os_pid=process.os_pid if process else None,
                reason=reason.to_wire() if reason is not None else None,
            ),
            after,
        )


def _log_crash(task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("internal error in the local supervisor: %r", exc, exc_info=exc)
