"""The benchmarks' stand-in for a backend: a nats-server, credentials, slots, actor processes.

The benchmarks run rebeam as its users do, on a secured server (docs/security.md): every
connection is authenticated through the server's issuer and gets the least its grant allows.
Like ``rebeam run`` and the operator, the harness provisions each namespace and claims each
actor's slot over a BACKEND connection before the process starts, and hands the process its
credential in a file only its owner can read, named by ``REBEAM_CREDENTIALS_FILE``.

``Backend.start(..., secure=False)`` is an open server, for the rows that compare security
on with security off only: there the same steps run, with no credential anywhere.

Example::

    procs = Processes()
    backend = await Backend.start(workdir, ("bench",), procs)
    actor = await backend.actor("benchmarks.bench_actor:BenchActor", {}, "bench-1")
    async with rebeam.connect(backend.url, namespace="bench",
                              credentials=backend.client_credentials("bench")) as node:
        await node.call(actor.pid, "hello")
    await backend.close()
    procs.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats

from rebeam._orphans import die_with_parent
from rebeam.auth.grants import Grant, Role
from rebeam.backends import claim_slot, provision
from rebeam.natsd import NatsServer, ServerOptions
from rebeam.pids import Pid

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0  # a 2-core machine busy with other work starts a Python process slowly


def child_env(credentials: Path | None) -> dict[str, str]:
    """The environment of a process the benchmarks start: this checkout on the path, and
    the credential file it was given, never the caller's own credential."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("REBEAM_CREDENTIALS", None)
    env.pop("REBEAM_CREDENTIALS_FILE", None)
    if credentials is not None:
        env["REBEAM_CREDENTIALS_FILE"] = str(credentials)
    return env


def write_private(path: Path, text: str) -> Path:
    """A file only its owner can read (it holds a credential)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


class Processes:
    """Every process the benchmarks start, stopped by its own pid at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        self,
        argv: list[str],
        credentials: Path | None = None,
        env: dict[str, str] | None = None,
        **kw: Any,
    ) -> subprocess.Popen[bytes]:
        environment = {**child_env(credentials), **(env or {})}
        proc = subprocess.Popen(argv, env=environment, preexec_fn=die_with_parent, **kw)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass(frozen=True)
class Actor:
    pid: Pid
    os_pid: int


class Backend:
    """One nats-server, and what a backend does for the processes started on it."""

    def __init__(self, server: NatsServer, workdir: Path, procs: Processes) -> None:
        self.server = server
        self.workdir = workdir
        self.procs = procs
        self._connections: dict[str, Any] = {}
        self._files = 0

    @classmethod
    async def start(
        cls,
        workdir: Path,
        namespaces: tuple[str, ...],
        procs: Processes,
        *,
        secure: bool = True,
    ) -> Backend:
        server = NatsServer.start(  # (makes workdir too)
            workdir / "nats", ServerOptions(namespaces=namespaces, secure=secure)
        )
        backend = cls(server, workdir, procs)
        try:
            for namespace in namespaces:
                await backend.connection(namespace)
        except BaseException:
            await backend.close()
            raise
        return backend

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def secure(self) -> bool:
        return self.server.issuer is not None

    @property
    def kind(self) -> str:
        return "secured" if self.secure else "open"

    async def connection(self, namespace: str) -> Any:
        """The backend's own connection for ``namespace`` (BACKEND grant), which provisioned
        the namespace's buckets and streams: actors may not create them."""
        nc = self._connections.get(namespace)
        if nc is None:
            nc = await nats.connect(
                self.url,
                token=self.server.backend_credentials(namespace),
                name=f"bench-backend-{namespace}",
            )
            self._connections[namespace] = nc
            await provision(nc, namespace)
        return nc

    def client_credentials(self, namespace: str, role: Role = Role.ADMIN) -> str | None:
        """For ``rebeam.connect``: the tree owner's ADMIN grant (what a user's program has),
        or a BACKEND grant where a benchmark needs raw subjects on the same connection."""
        if role is Role.ADMIN:
            return self.server.admin_credentials(namespace)
        return self.server.credentials(Grant(role, namespace, label="bench"))

    def credential_file(self, grant: Grant) -> Path | None:
        """A new credential for ``grant`` in a 0600 file (None on an open server)."""
        token = self.server.credentials(grant)
        if token is None:
            return None
        self._files += 1
        return write_private(self.workdir / f"credential-{self._files}", token)

    async def actor(
        self,
        target: str,
        args: Any,
        slot: str,
        *,
        namespace: str,
        role: Role = Role.ACTOR,
        name: str | None = None,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Actor:
        """Start ``python -m rebeam.runtime target`` as incarnation 1 of ``slot``, as a
        backend does: claim the slot, hand the process its credential, wait until ready."""
        pid = Pid.for_incarnation(namespace, slot, 1)
        await claim_slot(await self.connection(namespace), pid)
        names = (name,) if name else ()
        credentials = self.credential_file(Grant(role, namespace, pid, names, label=slot))
        r, w = os.pipe()
        argv = [
            sys.executable, "-m", "rebeam.runtime", target, "--args", json.dumps(args),
            "--nats", self.url, "--pid", str(pid), "--ready-fd", str(w),
        ]  # fmt: skip
        if name:
            argv += ["--name", name]
        argv += extra or []
        try:
            proc = self.procs.spawn(argv, credentials, env, pass_fds=(w,), stdin=subprocess.DEVNULL)
        finally:
            os.close(w)
        with os.fdopen(r, "rb") as ready:
            try:
                line = await asyncio.wait_for(asyncio.to_thread(ready.readline), READY_TIMEOUT)
            except TimeoutError:
                proc.kill()  # closes the pipe: the reading thread returns
                line = b""
        if not line.startswith(b"ready"):
            raise RuntimeError(f"{target} did not start on the {self.kind} server ({proc.wait()})")
        return Actor(pid, proc.pid)

    async def close(self) -> None:
        for nc in self._connections.values():
            with contextlib.suppress(Exception):
                await nc.close()
        self._connections.clear()
        self.server.stop()
