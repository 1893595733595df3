"""Shared fixtures: a real nats-server, and a launcher of real actor processes.

The launcher stands in for a supervisor (the real local backend is built on the same
contract, docs/runtime-contract.md): it starts ``python -m rebeam.runtime`` with
``--ready-fd`` and ``--exit-record``, waits for the ready line, and when a process ends it
computes the reason with ``exits.from_process_end``, releases the pid's names and publishes
``exited``. Every process it starts dies with the test: stopped by its own pid at teardown,
and PR_SET_PDEATHSIG kills it if the test runner itself dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, settings

from rebeam.auth.grants import Grant, Role
from rebeam.backends import claim_slot, provision
from rebeam.errors import Refused
from rebeam.events import LifecycleEvent, publish, read_exit_record, release_names_of
from rebeam.exits import ExitReason, from_process_end
from rebeam.natsd import NatsServer, ServerOptions
from rebeam.pids import Pid
from tests.natscluster import NatsCluster

# Hypothesis judges by the wall clock twice: each example has a 200 ms deadline, and the
# too_slow health check fails a test whose examples take long to generate. The properties
# tested here are about values, not speed, and on a loaded 2-core machine the same example
# takes ten times as long: both failed correct code (a codec round trip at load 20). Speed
# is measured by the benchmarks, on their own.
settings.register_profile("rebeam", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("rebeam")

ACTORS_DIR = Path(__file__).parent / "sdk"
READY_TIMEOUT = 30.0


def _die_with_parent() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphans if pytest dies


@pytest.fixture
def nats_server(
    tmp_path: Path, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NatsServer]:
    """A secured server for the test's namespace, provisioned as a backend would, with the
    test acting as the tree's owner: ``rebeam.connect`` in the test picks up the owner's
    credential from ``REBEAM_CREDENTIALS``. Monitoring is on: tests read /subsz."""
    server = NatsServer.start(
        tmp_path / "nats", ServerOptions(namespaces=(namespace,), monitoring=True)
    )
    try:
        asyncio.run(_provision(server, namespace))
        monkeypatch.setenv("REBEAM_CREDENTIALS", server.admin_credentials(namespace) or "")
        yield server
    finally:
        server.stop()


async def _provision(server: NatsServer, namespace: str) -> None:
    nc = await nats.connect(server.url, token=server.backend_credentials(namespace))
    try:
        await provision(nc, namespace)
    finally:
        await nc.close()


@dataclass
class Child:
    pid: Pid
    proc: asyncio.subprocess.Process
    record: Path
    ended: asyncio.Future[ExitReason]
    ready: bool = False
    ready_line: str = ""
    stop_requested: bool = False
    log: Path = field(default_factory=Path)

    @property
    def os_pid(self) -> int:
        return self.proc.pid

    async def wait(self, timeout: float = 20.0) -> ExitReason:
        return await asyncio.wait_for(asyncio.shield(self.ended), timeout)

    def kill(self) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 20.0) -> ExitReason:
        self.stop_requested = True
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        return await self.wait(timeout)

    def stderr(self) -> str:
        try:
            return self.log.read_text()
        except OSError:
            return ""


class Launcher:
    def __init__(
        self, url: str, namespace: str, workdir: Path, nc: Any, server: NatsServer
    ) -> None:
        self.server = server
        self.url = url
        self.namespace = namespace
        self.workdir = workdir
        self.nc = nc
        self.children: list[Child] = []
        self._count = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(
        self,
        target: str,
        args: Any = None,
        *,
        slot: str | None = None,
        incarnation: int = 1,
        name: str | None = None,
        expect_ready: bool = True,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        names: tuple[str, ...] = (),
    ) -> Child:
        """Start an actor process as a backend would; ``names`` are the global names it may
        claim besides ``name`` (what its manifest would declare)."""
        self._count += 1
        slot = slot or f"test-{os.getpid()}-{self._count}"
        pid = Pid.for_incarnation(self.namespace, slot, incarnation)
        # What a backend does before a process runs: its slot record, and its credential.
        with contextlib.suppress(Refused):  # a stale launch: the runtime's start shows it
            await claim_slot(self.nc, pid)
        declared = ((name,) if name else ()) + names
        grant = Grant(Role.ACTOR, self.namespace, pid, names=declared)
        credentials = self.workdir / f"cred-{self._count}"
        credentials.write_text(self.server.credentials(grant) or "")
        credentials.chmod(0o600)
        record = self.workdir / f"exit-{self._count}.json"
        log = self.workdir / f"child-{self._count}.log"
        read_fd, write_fd = os.pipe()
        argv = [
            sys.executable, "-m", "rebeam.runtime", target,
            "--args", json.dumps(args),
            "--nats", self.url,
            "--pid", str(pid),
            "--ready-fd", str(write_fd),
            "--exit-record", str(record),
            "--child", f"child{self._count}",
        ]  # fmt: skip
        if name:
            argv += ["--name", name]
        argv += extra or []
        env = {**os.environ, **(env or {}), "REBEAM_CREDENTIALS_FILE": str(credentials)}
        env.pop("REBEAM_CREDENTIALS", None)  # the test's own (owner) credential
        env["PYTHONPATH"] = os.pathsep.join([str(ACTORS_DIR), env.get("PYTHONPATH", "")])
        with open(log, "wb") as errfile:  # noqa: ASYNC230 - a local file, instantly
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=errfile,
                stderr=errfile,
                pass_fds=(write_fd,),
                env=env,
                preexec_fn=_die_with_parent,
            )
        os.close(write_fd)
        child = Child(pid, proc, record, asyncio.get_running_loop().create_future(), log=log)
        self.children.append(child)
        loop = asyncio.get_running_loop()
        try:
            line = await asyncio.wait_for(
                loop.run_in_executor(None, os.read, read_fd, 200), READY_TIMEOUT
            )
        finally:
            os.close(read_fd)
        child.ready_line = line.decode()
        child.ready = line.startswith(b"ready")
        self._tasks.append(loop.create_task(self._observe(child)))
        if expect_ready and not child.ready:
            reason = await child.wait()
            raise AssertionError(f"{target} did not start: {reason}\n{child.stderr()}")
        return child

    async def _observe(self, child: Child) -> None:
        returncode = await child.proc.wait()
        reason = from_process_end(
            returncode,
            stop_requested=child.stop_requested,
            recorded=read_exit_record(child.record),
        )
        details = reason.details
        if (
            not child.ready
            and details
            and any(
                why in (details.message or "")
                for why in ("another process is running as", "its pid is in use")
            )
        ):
            # A duplicate launch of a live pid: its names and exit belong to the process
            # still running as that pid (runtime-contract.md section 6).
            child.ended.set_result(reason)
            return
        # Names first, then the event: OTP releases names before exit signals go out.
        with contextlib.suppress(Exception):
            await release_names_of(self.nc, child.pid)
        event = LifecycleEvent.exited(child.pid, reason, os_pid=child.proc.pid)
        with contextlib.suppress(Exception):
            await publish(self.nc, self.namespace, event)
            # Out before the test hears of the end: a watch it sets up next must not see it.
            await self.nc.flush(timeout=5)
        if not child.ended.done():
            child.ended.set_result(reason)

    async def close(self) -> None:
        for child in self.children:
            child.kill()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 10)


@pytest.fixture
async def nats_cluster(tmp_path: Path, namespace: str) -> AsyncIterator[NatsCluster]:
    """Three secured nats-servers routed to each other, formed (tests/natscluster.py)."""
    cluster = NatsCluster(tmp_path / "cluster", namespace)
    try:
        cluster.start()
        await cluster.set_up()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    # One namespace per test: nothing a test leaves in the registry reaches another.
    return "t" + format(abs(hash(request.node.nodeid)) % 10**10, "d")


@pytest.fixture
async def launcher(
    nats_server: NatsServer, namespace: str, tmp_path: Path
) -> AsyncIterator[Launcher]:
    nc = await nats.connect(
        nats_server.url,
        token=nats_server.backend_credentials(namespace),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )
    launcher = Launcher(nats_server.url, namespace, tmp_path, nc, nats_server)
    try:
        yield launcher
    finally:
        await launcher.close()
        with contextlib.suppress(Exception):
            await nc.close()
