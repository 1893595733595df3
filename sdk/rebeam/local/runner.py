"""``rebeam run``: whole supervision trees on one machine.

Order of things, and why:

1. the reaper first, so nothing started afterwards can outlive us;
2. the private nats-server (or ``--nats URL``), the controller's connection to it, the
   control subject for other terminals, and the instance file that lets them find us;
3. each root supervisor's init, in the order of the manifests (a start failure stops what
   started, in reverse);
4. then wait: for a root to end (given up, or auto-shutdown) or for SIGINT/SIGTERM, which
   shut every tree down in order — a second Ctrl-C kills everything at once;
5. the end: one line saying why, exit code 0 for a clean end, 1 when a supervisor gave up or
   a tree could not start.

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
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rebeam._nats_fixes import connect as nats_connect
from rebeam.auth.grants import Grant, Role
from rebeam.auth.issuer import Issuer
from rebeam.backends import provision
from rebeam.exits import SHUTDOWN, ExitReason
from rebeam.local.control import ControlServer, InstanceFile
from rebeam.local.lifecycle import Lifecycle
from rebeam.local.processes import OutputSink
from rebeam.local.reaper import Reaper
from rebeam.local.supervisors import RunContext, SupervisorRunner
from rebeam.local.zygote import Zygote
from rebeam.natsd import NatsServer, read_issuer_secrets
from rebeam.spec.models import Actor, ActorTemplate, Resource, Supervisor, SupervisorSpec
from rebeam.supervision import ShutdownRequest

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


class LocalRun:
    def __init__(self, resources: list[Resource], options: RunOptions) -> None:
        self.resources = resources
        self.options = options
        self.run_id = secrets.token_hex(4)
        self.roots: list[SupervisorRunner] = []
        self.outcome = ""
        self._stop_requested: asyncio.Event | None = None
        self._signals = 0

    async def run(self, on_context: object = None) -> int:
        workdir = Path(tempfile.mkdtemp(prefix="rebeam-run-"))
        reaper = Reaper()
        reaper.remove_at_exit(workdir)
        server: NatsServer | None = None
        issuer: Issuer | None = None
        nc = None
        lifecycle = Lifecycle(self.options.namespace, self.options.events_file)
        control: ControlServer | None = None
        instance: InstanceFile | None = None
        zygote: Zygote | None = None
        try:
            if self.options.prefork:
                zygote = await Zygote.start()
            if self.options.nats_url:
                url = self.options.nats_url
                issuer = self._external_issuer(url)
            else:
                server = NatsServer.start(workdir / "nats", namespaces=(self.options.namespace,))
                url, issuer = server.url, server.issuer
            namespace = self.options.namespace
            backend = Grant(Role.BACKEND, namespace, label=f"rebeam run {self.run_id}")
            nc = await nats_connect(
                url,
                name=f"rebeam-run-{self.run_id}",
                max_reconnect_attempts=-1,
                token=issuer.issue(backend) if issuer else None,
                tls_ca=self._nats_ca,
            )
            await provision(nc, namespace)
            self.ctx = RunContext(
                namespace=self.options.namespace,
                run_id=self.run_id,
                nats_url=url,
                workdir=workdir,
                lifecycle=lifecycle,
                reaper=reaper,
                nc=nc,
                python_path=self.options.python_path,
                output=self.options.output,
                zygote=zygote,
                issuer=issuer,
                nats_ca=self._nats_ca,
            )
            lifecycle.attach(nc)
            control = ControlServer(self, nc)
            await control.start()
            admin = issuer.issue(Grant(Role.ADMIN, namespace, label="owner")) if issuer else None
            instance = InstanceFile.write(
                namespace, url, self.run_id, credentials=admin, nats_ca=self._nats_ca
            )
            if callable(on_context):
                on_context(self)
            return await self._supervise()
        finally:
            for runner in self.roots:
                runner.kill()  # a no-op after an orderly shutdown; the last resort otherwise
            if control is not None:
                await control.stop()
            await lifecycle.close()
            if instance is not None:
                instance.remove()
            if nc is not None:
                with contextlib.suppress(Exception):
                    await nc.close()
            if zygote is not None:
                await zygote.close()
            if server is not None:
                server.stop()
            elif issuer is not None:  # also when the run failed before it had a context
                issuer.stop()
            reaper.close()
            shutil.rmtree(workdir, ignore_errors=True)

    def _external_issuer(self, url: str) -> Issuer | None:
        """The issuer for a server this run did not start, from its secrets file."""
        if self.options.issuer_file is None:
            return None
        secrets = read_issuer_secrets(self.options.issuer_file)
        issuer = Issuer(url, secrets, primary=False, tls_ca=self._nats_ca)
        issuer.start()
        return issuer

    @property
    def _nats_ca(self) -> str | None:
        """--nats-ca as an absolute path: children and other terminals read it too."""
        ca = self.options.nats_ca
        return str(ca.resolve()) if ca is not None else None

    async def _supervise(self) -> int:
        loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            for name, spec in roots_of(self.resources):
                runner = SupervisorRunner(self.ctx, name, spec)
                failure = await runner.start()
                if failure is not None:
                    self.outcome = f"{name} failed to start: {_start_failure(failure)}"
                    await self._shutdown_all()
                    return 1
                self.roots.append(runner)
            ended = asyncio.ensure_future(
                asyncio.wait([r.done for r in self.roots], return_when=asyncio.FIRST_COMPLETED)
            )
            stop = asyncio.ensure_future(self._stop_requested.wait())
            await asyncio.wait({ended, stop}, return_when=asyncio.FIRST_COMPLETED)
            ended.cancel()
            stop.cancel()
            finished = next((r for r in self.roots if r.done.done()), None)
            if finished is None:
                self.outcome = "stopped; every child was shut down in order"
                await self._shutdown_all()
                return 0
            code = self._describe_end(finished)
            await self._shutdown_all()
            return code
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.warning(
                "%s: shutting the tree down in order (again to kill at once)",
                signal.Signals(signum).name,
            )
            assert self._stop_requested is not None
            self._stop_requested.set()
        else:
            for runner in self.roots:
                runner.kill()

    async def _shutdown_all(self) -> None:
        """Stop the roots that still run, the last started first, each in order."""
        for runner in reversed(self.roots):
            if not runner.done.done():
                runner.post(ShutdownRequest(SHUTDOWN))
                with contextlib.suppress(asyncio.CancelledError):
                    await runner.done

    def _describe_end(self, runner: SupervisorRunner) -> int:
        reason = runner.done.result()
        if runner.gave_up is not None:
            g = runner.gave_up
            last = f" (last exit: {g.reason})" if g.reason is not None else ""
            intensity, period = runner.spec.intensity, runner.spec.period
            self.outcome = (
                f"{runner.path} gave up: {runner.child_name(g.child)} needed more than "
                f"{intensity} restart{'s' if intensity != 1 else ''} in {period:g}s{last}"
            )
            return 1
        if runner.auto_shutdown is not None:
            a = runner.auto_shutdown
            self.outcome = (
                f"{runner.path} shut down: significant child {runner.child_name(a.child)} "
                f"exited ({a.reason})"
            )
            return 0
        self.outcome = f"{runner.path} exited ({reason})"
        return 0 if reason.is_clean else 1

    def supervisor_at(self, path: str) -> SupervisorRunner | None:
        """The running supervisor at ``path`` (``shop`` or ``shop/storage``)."""
        parts = path.strip("/").split("/")
        runner = next((r for r in self.roots if r.path == parts[0]), None)
        for part in parts[1:]:
            child = runner.children.get(runner.child_id(part)) if runner else None
            runner = child if isinstance(child, SupervisorRunner) else None
        return runner

    def parent_of(self, path: str) -> tuple[SupervisorRunner, str] | None:
        """The supervisor of the child at ``path``, and the child's id in it."""
        parent, _, name = path.strip("/").rpartition("/")
        runner = self.supervisor_at(parent) if parent else None
        return (runner, runner.child_id(name)) if runner else None


def _start_failure(reason: ExitReason) -> str:
    info = reason.info if isinstance(reason.info, dict) else {}
    if "failed_to_start_child" in info:
        inner = ExitReason.from_wire(info["reason"])
        return f"child {info['failed_to_start_child']}: {_start_failure(inner)}"
    return str(reason)
