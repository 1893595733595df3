"""``rebeam run``: whole supervision trees on one machine.

Order of things, and why:

1. become the subreaper of everything below us (orphans are re-parented to us: see
   adoption.py), then start the reaper, so nothing started afterwards can outlive us;
2. the zygote and the private nats-server (or ``--nats URL``), each in a process group of its
   own — a Ctrl-C typed in the terminal reaches the terminal's foreground group, and only
   ``rebeam run`` may act on it — then the controller's connection, the control subject for
   other terminals, and the instance file that lets them find us;
3. each root supervisor's init, in the order of the manifests (a start failure stops what
   started, in reverse);
4. then wait: for a root to end (given up, or auto-shutdown), for SIGINT/SIGTERM, which
   shut every tree down in order — a second one kills everything at once — or for the
   private nats-server to die more often than it may be restarted (natskeeper.py);
5. the end: one line saying why, exit code 0 for a clean end, 1 when a supervisor gave up, a
   tree could not start, the nats-server could not be kept up, or a second signal killed
   the children instead of stopping them in order.

A standalone ``Actor`` resource is supervised as the only child of an implicit one_for_one
supervisor of the same name, with the actor's restart and shutdown settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rebeam._nats_fixes import connect as nats_connect
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Issuer
from rebeam.backends import provision
from rebeam.exits import SHUTDOWN, ExitReason
from rebeam.local.adoption import MARK, Adoption
from rebeam.local.control import ControlServer
from rebeam.local.forest import Forest
from rebeam.local.instances import InstanceFile
from rebeam.local.lifecycle import Lifecycle
from rebeam.local.natskeeper import ServerKeeper
from rebeam.local.processes import OutputSink
from rebeam.local.reaper import Reaper
from rebeam.local.supervisors import RunContext, SupervisorRunner, run_mark
from rebeam.local.zygote import Zygote
from rebeam.metrics_scrape import Endpoint, Target
from rebeam.natsd import NatsServer, ServerOptions, read_issuer_secrets
from rebeam.runtime import _steps
from rebeam.spec.models import Actor, ActorTemplate, Resource, Supervisor, SupervisorSpec
from rebeam.supervision import ShutdownRequest, dynamic_serial

__all__ = ["LocalRun", "RunOptions", "local_problems", "roots_of"]

log = logging.getLogger("rebeam.run")


@dataclass(frozen=True)
class RunOptions:
    namespace: str = "default"
    nats_url: str | None = None
    events_file: Path | None = None
    python_path: tuple[str, ...] = ()  # the manifests' folders: actor modules live there
    output: OutputSink | None = None
    prefork: bool = True  # start Python actors by forking a pre-imported zygote
    # With nats_url: the secrets of that server's issuer (what its config was made with),
    # so that this run can give its processes credentials (docs/security.md).
    issuer_file: Path | None = None
    # With a tls:// nats_url: the CA its certificate is signed by (default $REBEAM_NATS_CA).
    nats_ca: Path | None = None
    # --metrics: the endpoint (bound already) that serves this run's metrics.
    metrics: Endpoint | None = None


def roots_of(resources: list[Resource]) -> list[tuple[str, SupervisorSpec]]:
    """The root supervisors to run, in manifest order; a lone Actor gets an implicit one."""
    roots = []
    for resource in resources:
        if isinstance(resource, Supervisor):
            roots.append((resource.metadata.name, resource.spec))
        else:
            roots.append(
                (resource.metadata.name, resource.spec.as_supervisor(resource.metadata.name))
            )
    return roots


def local_problems(resources: list[Resource]) -> list[str]:
    """What only Kubernetes can do, refused before anything starts."""
    found = []
    for resource in resources:
        templates: list[tuple[str, ActorTemplate]] = []
        if isinstance(resource, Actor):
            templates.append(("spec", resource.spec))
        else:
            stack: list[tuple[str, SupervisorSpec]] = [("spec", resource.spec)]
            while stack:
                path, spec = stack.pop()
                children = [*spec.children, *filter(None, [spec.child_template])]
                for i, child in enumerate(children):
                    in_list = i < len(spec.children)
                    where = f"{path}.children[{i}]" if in_list else f"{path}.childTemplate"
                    if child.actor is not None:
                        templates.append((f"{where}.actor", child.actor))
                    if child.supervisor is not None:
                        stack.append((f"{where}.supervisor", child.supervisor))
        for where, template in templates:
            for i, var in enumerate(template.env):
                if var.value_from is not None:
                    found.append(
                        f"{resource.ref}: {where}.env[{i}].valueFrom: only on Kubernetes; "
                        "rebeam run needs a value"
                    )
    return found


# The switch interval of rebeam run's threads (see LocalRun.run).
THREAD_SWITCH = 0.0005


class LocalRun:
    def __init__(self, resources: list[Resource], options: RunOptions) -> None:
        self.resources = resources
        self.options = options
        self.run_id = secrets.token_hex(4)
        self.forest = Forest()  # the root supervisors, reachable by path
        self.outcome = ""
        self._stop_requested: asyncio.Event | None = None
        self._signals = 0
        self._killed = ""  # the signal that killed every child at once, if one did
        self._killed_paths: list[str] = []  # the children that signal found running
        self._provisioning: asyncio.Future[None] | None = None

    async def run(self, on_context: object = None) -> int:
        # The credential issuer answers each NATS connection on a thread of this process
        # (auth/issuer.py): a restarted actor's connect waits for it, while this loop is busy
        # with the same restart (the old incarnation's names). A thread that wakes waits for
        # the running one to give up the GIL, at worst the switch interval (5 ms by default).
        sys.setswitchinterval(THREAD_SWITCH)
        held = self._surroundings()
        try:
            url = await self._bring_up_nats(held)
            await self._serve(held, url)
            if callable(on_context):
                on_context(self)
            return await self._supervise(held.keeper)
        finally:
            await self._tear_down(held)

    def _surroundings(self) -> _Held:
        """The work folder, and the two that make sure nothing we start outlives us."""
        workdir = Path(tempfile.mkdtemp(prefix="rebeam-run-"))
        # Orphans below us are ours to reap and to stop (adoption.py); the reaper takes the
        # rest down if we are killed. Each process we start is registered with both in the
        # step that starts it.
        adoption = Adoption()
        adoption.start()
        reaper = Reaper()
        adoption.own(reaper.pid)
        reaper.remove_at_exit(workdir)
        reaper.kill_marked_at_exit(f"{MARK}={run_mark(self.options.namespace, self.run_id)}")
        lifecycle = Lifecycle(self.options.namespace, self.options.events_file)
        return _Held(workdir, adoption, reaper, lifecycle)

    async def _bring_up_nats(self, held: _Held) -> str:
        """The zygote, the private nats-server (or the issuer of --nats), and the
        controller's own connection to it; the URL of that NATS."""
        if self.options.prefork:
            held.zygote = Zygote.start(on_spawn=held.spawned)
        namespace = self.options.namespace
        if self.options.nats_url:
            url = self.options.nats_url
            held.issuer = self._external_issuer(url)
        else:
            held.server = NatsServer.start(
                held.workdir / "nats", ServerOptions(namespaces=(namespace,)), on_spawn=held.spawned
            )
            url, held.issuer = held.server.url, held.server.issuer
        issuer = held.issuer
        if issuer is not None and _steps.ON:
            issuer.steps = _steps.mark  # the callout's part of a restart, noted with the rest
        backend = Grant(Role.BACKEND, namespace, label=f"rebeam run {self.run_id}")
        held.nc = await nats_connect(
            url,
            name=f"rebeam-run-{self.run_id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            token=issuer.issue(backend) if issuer else None,
            **held.connection.callbacks(url),
            tls_ca=self._nats_ca,
        )
        await provision(held.nc, namespace)
        return url

    async def _serve(self, held: _Held, url: str) -> None:
        """The run's context, the control subject for other terminals, the instance file
        that lets them find us, and the keeper of the private nats-server."""
        namespace, nc, server, issuer = self.options.namespace, held.nc, held.server, held.issuer
        self.ctx = RunContext(
            namespace=namespace,
            run_id=self.run_id,
            nats_url=url,
            workdir=held.workdir,
            lifecycle=held.lifecycle,
            reaper=held.reaper,
            nc=nc,
            python_path=self.options.python_path,
            output=self.options.output,
            zygote=held.zygote,
            adoption=held.adoption,
            issuer=issuer,
            nats_ca=self._nats_ca,
            arrivals=self.forest.arrivals,
        )
        held.lifecycle.attach(nc)
        held.control = ControlServer(namespace, self.forest, nc)
        await held.control.start()
        if self.options.metrics is not None:
            forest = self.forest
            self.options.metrics.attach(nc, lambda: [t for r in forest.roots for t in targets(r)])

        admin = issuer.issue(Grant(Role.ADMIN, namespace, label="owner")) if issuer else None

        def advertise() -> InstanceFile:
            return InstanceFile.write(
                namespace,
                url,
                self.run_id,
                nats_pid=server.pid if server is not None else None,
                credentials=admin,
                nats_ca=self._nats_ca,
            )

        def restarted() -> InstanceFile:
            # Memory buckets (leases, local scopes) did not survive the restart, and
            # only the backend may make them again.
            self._spawn_provision(nc, namespace)
            return advertise()

        held.instance = advertise()
        if server is not None:
            keeper = ServerKeeper(
                server, on_spawn=held.spawned, on_end=held.ended, on_restarted=restarted
            )
            held.keeper = asyncio.ensure_future(keeper.keep())

    async def _tear_down(self, held: _Held) -> None:
        """Whatever was started, stopped again: the newest first."""
        for runner in self.forest.roots:
            runner.kill()  # a no-op after an orderly shutdown; the last resort otherwise
        if self.options.metrics is not None:
            self.options.metrics.detach()
        if held.control is not None:
            await held.control.stop()
        await held.lifecycle.close()
        if held.instance is not None:
            held.instance.remove()
        held.connection.closing = True
        if held.nc is not None:
            with contextlib.suppress(Exception):
                await held.nc.close()
        if held.zygote is not None:
            await held.zygote.close()
            held.ended(held.zygote.pid)
        if held.server is None and held.issuer is not None:
            held.issuer.stop()  # an external server's issuer: ours to stop
        if held.keeper is not None:
            held.keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await held.keeper
        if held.server is not None and held.server.pid is not None:
            last = held.server.pid
            held.server.stop()
            held.ended(last)
        held.adoption.close()
        held.reaper.close()
        shutil.rmtree(held.workdir, ignore_errors=True)

    def serving(self) -> str:
        """Where other terminals reach this run: what ``rebeam run`` says once they can."""
        namespace = self.options.namespace
        return (
            f"rebeam: run {self.run_id} serves namespace {namespace!r} with NATS at "
            f"{self.ctx.nats_url}; from another terminal: rebeam tree -n {namespace} "
            "(rebeam runs lists every run)"
        )

    def _external_issuer(self, url: str) -> Issuer | None:
        """The issuer for a server this run did not start, from its secrets file."""
        if self.options.issuer_file is None:
            return None
        secrets = read_issuer_secrets(self.options.issuer_file)
        issuer = Issuer(url, secrets, primary=False, tls_ca=self._nats_ca)
        issuer.start()
        return issuer

    def _spawn_provision(self, nc: Any, namespace: str) -> None:
        async def again() -> None:
            for _ in range(60):
                try:
                    await provision(nc, namespace)
                    return
                except Exception as exc:  # still reconnecting: try again shortly
                    log.debug("provisioning after a server restart: %s", exc)
                    await asyncio.sleep(0.5)
            log.error("could not provision namespace %s after the server restarted", namespace)

        self._provisioning = asyncio.ensure_future(again())

    @property
    def _nats_ca(self) -> str | None:
        """--nats-ca as an absolute path: children and other terminals read it too."""
        ca = self.options.nats_ca
        return str(ca.resolve()) if ca is not None else None

    async def _supervise(self, keeper: asyncio.Task[str] | None) -> int:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            for name, spec in roots_of(self.resources):
                runner = SupervisorRunner(self.ctx, name, spec)
                self.forest.plant(runner)
                failure = await runner.start()
                if failure is not None:
                    self.forest.all_started()
                    self.outcome = f"{name} failed to start: {_start_failure(failure)}"
                    await self._shutdown_all()
                    return 1
            self.forest.all_started()
            roots = self.forest.roots
            ended = asyncio.ensure_future(
                asyncio.wait([r.done for r in roots], return_when=asyncio.FIRST_COMPLETED)
            )
            stop = asyncio.ensure_future(self._stop_requested.wait())
            waiting = {ended, stop} | ({keeper} if keeper is not None else set())
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            stop.cancel()
            finished = next((r for r in self.forest.roots if r.done.done()), None)
            if keeper is not None and keeper.done() and not self._stop_requested.is_set():
                self.outcome = _kept_up_until(keeper)
                await self._shutdown_all()
                return 1
            if finished is None:
                await self._shutdown_all()
                if self._killed_paths:
                    await self._settle()
                    self.outcome = _killed_by_signal(self._killed, self._killed_paths)
                    return 1
                self.outcome = "stopped; every child was shut down in order"
                return 0
            code = self._describe_end(finished)
            await self._shutdown_all()
            return code
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            log.warning("%s: shutting the tree down in order (again to kill at once)", name)
            assert self._stop_requested is not None
            self._stop_requested.set()
        else:
            log.warning("%s again: killing every child at once", name)
            self._killed = self._killed or name
            for runner in self.forest.roots:
                self._killed_paths += running_children(runner)
                runner.kill()

    async def _shutdown_all(self) -> None:
        """Stop the roots that still run, the last started first, each in order."""
        for runner in reversed(self.forest.roots):
            if not runner.done.done():
                runner.post(ShutdownRequest(SHUTDOWN))
                with contextlib.suppress(asyncio.CancelledError):
                    await runner.done

    async def _settle(self, timeout: float = 5.0) -> None:
        """After a kill: let each killed child's end be reported, for a while."""
        settling = asyncio.gather(*(runner.settled() for runner in self.forest.roots))
        try:
            async with asyncio.timeout(timeout):
                await settling
        except TimeoutError:
            log.warning("not every killed child was reported within %gs", timeout)

    def _describe_end(self, runner: SupervisorRunner) -> int:
        reason = runner.done.result()
        if runner.gave_up is not None:
            g = runner.gave_up
            last = f" (last exit: {g.reason})" if g.reason is not None else ""
            intensity, period = runner.spec.intensity, runner.spec.period
            self.outcome = (
                f"{runner.path} gave up: {g.child} needed more than "
                f"{intensity} restart{'s' if intensity != 1 else ''} in {period:g}s{last}"
            )
            return 1
        if runner.auto_shutdown is not None:
            a = runner.auto_shutdown
            self.outcome = (
                f"{runner.path} shut down: significant child {a.child} exited ({a.reason})"
            )
            return 0
        self.outcome = f"{runner.path} exited ({reason})"
        return 0 if reason.is_clean else 1


def running_children(runner: SupervisorRunner) -> list[str]:
    """The paths of the child processes below ``runner`` that have not ended yet."""
    found = []
    for child in runner.children.values():
        if isinstance(child, SupervisorRunner):
            found += running_children(child)
        elif child.process is not None and child.process.returncode is None:
            found.append(child.identity.path)
    return found


def targets(runner: SupervisorRunner) -> list[Target]:
    """The live Python actors below ``runner``, each with the labels of its series: a dynamic
    child's are its template's, so a pool that starts children for ever has one series per
    template, not one per child ever started."""
    template = runner.spec.child_template
    found = []
    for name, child in runner.children.items():
        if isinstance(child, SupervisorRunner):
            found += targets(child)
        elif child.template.module and child.process and child.process.returncode is None:
            # Only a Python actor (the rebeam runtime) answers a scrape; a command does not.
            dynamic = template is not None and dynamic_serial(template.name, name) is not None
            label = template.name if dynamic and template is not None else name
            found.append(Target(child.identity.pid, runner.path, label))
    return found


def _killed_by_signal(signal_name: str, paths: list[str]) -> str:
    """What a second signal really did: which children it killed (the others, if any,
    had been shut down in order before it came)."""
    shown = ", ".join(paths[:_LISTED])
    more = f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else ""
    return f"stopped by a second {signal_name}: killed at once (SIGKILL): {shown}{more}"


_LISTED = 8  # children named in a line; the rest are counted


def _kept_up_until(keeper: asyncio.Task[str]) -> str:
    """Why the private nats-server could not be kept up (the keeper's last word)."""
    if keeper.cancelled():
        return "the private nats-server is gone"
    error = keeper.exception()
    if error is not None:
        return f"the private nats-server could not be kept up: {error}"
    return keeper.result()


@dataclass
class _Held:
    """What one ``rebeam run`` holds while it runs, each piece once it has been started:
    what its tear-down has to stop."""

    workdir: Path
    adoption: Adoption
    reaper: Reaper
    lifecycle: Lifecycle
    connection: _ConnectionLog = field(default_factory=lambda: _ConnectionLog())
    zygote: Zygote | None = None
    server: NatsServer | None = None
    issuer: Issuer | None = None
    nc: Any = None
    control: ControlServer | None = None
    instance: InstanceFile | None = None
    keeper: asyncio.Task[str] | None = None

    def spawned(self, pid: int) -> None:
        """A helper started, in a process group of its own: ours to reap and to stop."""
        self.adoption.own(pid)
        self.reaper.watch(pid)

    def ended(self, pid: int) -> None:
        self.adoption.disown(pid)
        self.reaper.forget(pid)


class _ConnectionLog:
    """One line when the controller loses NATS and one when it is back; nats-py's own error
    reports (a traceback per failed reconnect attempt) only at debug level."""

    def __init__(self) -> None:
        self.closing = False

    def callbacks(self, url: str) -> dict[str, Any]:
        async def error_cb(exc: Exception) -> None:
            log.debug("NATS at %s: %s", url, exc)

        async def disconnected_cb() -> None:
            if not self.closing:
                log.warning("lost the connection to NATS at %s; reconnecting", url)

        async def reconnected_cb() -> None:
            log.warning("reconnected to NATS at %s", url)

        return {
            "error_cb": error_cb,
            "disconnected_cb": disconnected_cb,
            "reconnected_cb": reconnected_cb,
        }


def _start_failure(reason: ExitReason) -> str:
    info = reason.info if isinstance(reason.info, dict) else {}
    if "failed_to_start_child" in info:
        inner = ExitReason.from_wire(info["reason"])
        return f"child {info['failed_to_start_child']}: {_start_failure(inner)}"
    return str(reason)
