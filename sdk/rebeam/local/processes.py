"""One incarnation of one child as an OS process: spawn, wait until ready, stop, observe the end.

A Python actor runs as ``python -m rebeam.runtime module:Class`` and says it is ready by
writing a line to a pipe (``--ready-fd``) once its ``init`` returned; before exiting it writes
its exit reason to a file (``--exit-record``) — the contract of docs/runtime-contract.md. A
``command`` child is any program: it is started once it has been spawned, as a container is,
unless its manifest has a ``readiness`` block. Then it is spawned through the readiness entry
(rebeam.readiness), which keeps that same contract for it: ``ready`` on the pipe once the
command is ready, then ``status`` lines, and a watchdog's verdict in the exit record.

Every child gets a process group of its own, so a stop reaches a shell's children too, and
the reaper (:mod:`rebeam.local.reaper`) can kill the whole group if ``rebeam run`` itself is
killed. PR_SET_PDEATHSIG is set as well, belt and braces, for the direct child.

A child's end is its process's exit (:mod:`rebeam.local.endwatch`), not the end of its
output: a daemon it left behind may hold the pipe. When it ends, what is left of its group is
killed, and so is every process that escaped the group but carries its ``REBEAM_PID``
(:mod:`rebeam.local.adoption`); then its output is read to the end, for a second at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rebeam.readiness
from rebeam._orphans import die_with_parent
from rebeam.events import read_exit_record
from rebeam.exits import (
    ExitReason,
    crash,
    ended_before_ready,
    from_process_end,
    not_ready_within,
)
from rebeam.local.adoption import MARK, Adoption, kill_marked
from rebeam.local.endwatch import process_end
from rebeam.local.output import ChildOutput
from rebeam.local.zygote import ForkedProcess, Zygote
from rebeam.pids import Pid
from rebeam.runtime._steps import mark
from rebeam.spec.models import ActorTemplate
from rebeam.spec.readiness import entry_arguments, uses_entry
from rebeam.spec.runtime_env import mailbox_env
from rebeam.supervision.childspec import BRUTAL_KILL, INFINITY, Shutdown

__all__ = ["ChildProcess", "Identity", "SpawnedProcess", "StartFailure"]

OUTPUT_GRACE = 1.0  # how long a dead child's output may take to reach its end


@dataclass(frozen=True)
class Identity:
    """Who the process is and where it reports."""

    pid: Pid
    supervisor: str  # the supervisor's path, e.g. "shop/storage"
    child: str
    nats_url: str
    workdir: Path  # for this incarnation's exit record
    python_path: tuple[str, ...] = ()  # where the user's actor modules are
    local_scope: str = "default"  # the run id: local names are unique per `rebeam run`
    credentials: str | None = None  # this incarnation's NATS credential (docs/security.md)
    nats_ca: str | None = None  # the CA file of a tls:// server (docs/security.md, "TLS")

    @property
    def path(self) -> str:
        return f"{self.supervisor}/{self.child}"


OutputSink = Callable[[str, str], None]
"""Hears each line a child prints: ``(child path, line)``."""


class StartFailure(Exception):
    """The process did not come up; ``reason`` says why (it is already stopped)."""

    def __init__(self, reason: ExitReason) -> None:
        super().__init__(str(reason))
        self.reason = reason


class SpawnedProcess:
    """A spawned child, with what :class:`ChildProcess` needs of it (as a forked one has)."""

    def __init__(self, popen: subprocess.Popen[bytes], output_fd: int | None) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.output_fd = output_fd
        self._end = asyncio.ensure_future(process_end(popen))

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._end)


@dataclass
class ChildProcess:
    identity: Identity
    template: ActorTemplate
    on_output: OutputSink | None = None  # None: the child writes to our stdout directly
    zygote: Zygote | None = None  # fork Python actors from it instead of spawning
    adoption: Adoption | None = None  # told of the processes we spawn (we reap them)
    process: SpawnedProcess | ForkedProcess | None = None
    stop_requested: bool = False
    status: str | None = None  # the last STATUS= of a command that speaks the notify protocol
    _exited: asyncio.Future[ExitReason] | None = field(default=None, repr=False)
    _output: ChildOutput | None = field(default=None, repr=False)
    _listener: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def os_pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def exit_record(self) -> Path:
        return self.identity.workdir / f"{self.identity.pid.tokens}.exit"

    @property
    def notify_dir(self) -> Path:
        return self.identity.workdir / f"{self.identity.pid.tokens}.notify"

    @property
    def says_ready(self) -> bool:
        """Whether the process writes ``ready`` on a pipe: a Python actor, or a command
        started through the readiness entry."""
        return bool(self.template.module) or uses_entry(self.template)

    async def start(self, timeout: float, on_spawn: Callable[[int], None] | None = None) -> None:
        """Spawn, and for a Python actor wait until its init returned (for a command with a
        readiness block: until it is ready). Raises StartFailure with the real reason if it
        dies, cannot be spawned, or takes longer than ``timeout``. ``on_spawn`` hears the OS
        pid (the process group) as soon as it exists."""
        if self.template.module and self.zygote is not None and self.zygote.alive:
            await self._fork(self.zygote, timeout, on_spawn)
            return
        read_fd, write_fd = os.pipe() if self.says_ready else (None, None)
        out_r, out_w = os.pipe() if self.on_output else (None, None)
        try:
            # Popen, not asyncio's subprocess: spawned and registered in one synchronous step
            # (adoption.py), and its end is its exit, not its pipes' (endwatch.py).
            popen = subprocess.Popen(  # noqa: ASYNC220
                self._argv(write_fd),
                env=self._env(),
                cwd=self.template.working_dir or None,
                stdin=subprocess.DEVNULL,
                stdout=out_w,  # None: ours
                stderr=out_w,
                pass_fds=(write_fd,) if write_fd is not None else (),
                start_new_session=True,  # its own process group: stops reach its children
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            for fd in (read_fd, out_r):
                if fd is not None:
                    os.close(fd)
            raise StartFailure(
                crash(exception_type=type(exc).__name__, message=f"cannot start: {exc}")
            ) from None
        finally:
            for fd in (write_fd, out_w):
                if fd is not None:
                    os.close(fd)  # the child holds its own copy
        if self.adoption is not None:
            self.adoption.own(popen.pid)  # in the step that spawned it: see adoption.py
        self.process = SpawnedProcess(popen, out_r)
        self._observe(on_spawn)
        if read_fd is None:
            return
        await self._await_ready(read_fd, timeout)

    def _observe(self, on_spawn: Callable[[int], None] | None) -> None:
        """From now on: its output is shown, and its end is seen."""
        assert self.process is not None
        if self.on_output is not None and self.process.output_fd is not None:
            path, sink = self.identity.path, self.on_output
            self._output = ChildOutput(self.process.output_fd, lambda line: sink(path, line))
        self._exited = asyncio.ensure_future(self._observe_end())
        if on_spawn is not None:
            on_spawn(self.process.pid)

    async def _fork(
        self, zygote: Zygote, timeout: float, on_spawn: Callable[[int], None] | None
    ) -> None:
        """The pre-forked path (see zygote.py): same contract, no interpreter start-up."""
        mark("fork", self.identity.pid.incarnation)
        try:
            process = await zygote.fork(
                self._runtime_args("{ready_fd}"),
                self._env(),
                self.template.working_dir,
                output=self.on_output is not None,
            )
        except OSError as exc:
            raise StartFailure(
                crash(exception_type=type(exc).__name__, message=f"cannot start: {exc}")
            ) from None
        self.process = process
        self._observe(on_spawn)
        mark("forked", self.identity.pid.incarnation)
        await self._await_ready(process.ready_fd, timeout)
        mark("ready heard", self.identity.pid.incarnation)

    async def _await_ready(self, read_fd: int, timeout: float) -> None:
        """Until ``ready`` on the pipe (which this takes over); then, for a command, the
        pipe's ``status`` lines are heard for as long as it runs."""
        assert self._exited is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        lines = _Lines(read_fd)
        ready = asyncio.ensure_future(self._ready_line(lines))
        waiting: set[asyncio.Future[Any]] = {ready, self._exited}
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ready in done and ready.result().startswith("ready"):
            if self.template.module:
                lines.close()  # the runtime says nothing more on it
            else:
                self._listen(lines)
            return
        ready.cancel()
        lines.close()
        if ready in done:
            # The pipe closed without a word: the runtime is exiting (init failed). Its
            # exit reason says why; give it the rest of the start time to finish.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await asyncio.shield(self._exited)
        if self._exited.done():
            raise StartFailure(self._before_ready(self._exited.result()))
        # Hung in init: a start that takes longer than startTimeout has failed.
        self.kill()
        await self._exited
        raise StartFailure(not_ready_within(timeout))

    def _before_ready(self, reason: ExitReason) -> ExitReason:
        """How a command that ended before it was ready failed its start, in words."""
        if self.template.module:
            return reason  # an actor's init failure says it itself
        # Mostly worded so already, from the entry's mark in the exit record; not when the
        # command ended just after the watcher cleared the mark, before ready was heard.
        return ended_before_ready(reason)

    async def _ready_line(self, lines: _Lines) -> str:
        """The line that says ready, or "" at the end; status lines before it are heard."""
        while line := await lines.next():
            if not self._heard(line):
                return line
        return ""

    def _heard(self, line: str) -> bool:
        """Whether ``line`` was a status line (the entry's, once the command says one)."""
        word, _, text = line.rstrip("\n").partition(" ")
        if word == "status":
            self.status = text
        elif word == "stopping":
            self.status = "stopping"
        else:
            return False
        return True

    def _listen(self, lines: _Lines) -> None:
        """The status lines of a ready command, until its pipe closes."""

        async def listen() -> None:
            try:
                while line := await lines.next():
                    self._heard(line)
            finally:
                lines.close()

        self._listener = asyncio.ensure_future(listen())

    async def wait(self) -> ExitReason:
        """The exit reason, once the process has ended."""
        assert self._exited is not None, "not started"
        return await asyncio.shield(self._exited)

    async def stop(self, shutdown: Shutdown) -> ExitReason:
        """OTP's shutdown: SIGKILL at once for brutal_kill; otherwise SIGTERM, then SIGKILL
        once ``shutdown`` seconds have passed (never, for infinity)."""
        self.stop_requested = True
        if shutdown == BRUTAL_KILL:
            self.kill()
            return await self.wait()
        self._signal(signal.SIGTERM)
        if shutdown == INFINITY:
            return await self.wait()
        assert isinstance(shutdown, int | float)
        try:
            async with asyncio.timeout(shutdown):
                return await self.wait()
        except TimeoutError:
            self.kill()
            return await self.wait()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)

    async def _observe_end(self) -> ExitReason:
        assert self.process is not None
        returncode = await self.process.wait()
        mark("end.seen", self.identity.pid.incarnation)
        if self.adoption is not None and isinstance(self.process, SpawnedProcess):
            self.adoption.disown(self.process.pid)
        # What is left of it goes with it: SIGKILL reaches the whole group, and then every
        # process that left the group but still carries this incarnation's mark.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        # Under a subreaper (rebeam run), whatever it left is below this process: only
        # those are looked at (adoption.marked).
        below = os.getpid() if self.adoption is not None and self.adoption.subreaper else None
        await asyncio.to_thread(kill_marked, f"{MARK}={self.identity.pid}", below=below)
        if self._output is not None:
            # Everything it printed is shown before its exit is reported; a pipe that
            # something we could not find still holds is closed on our side.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(OUTPUT_GRACE):
                    await asyncio.shield(self._output.closed)
            self._output.close()
        recorded = read_exit_record(self.exit_record) if self.says_ready else None
        with contextlib.suppress(OSError):
            self.exit_record.unlink()
        if uses_entry(self.template):
            shutil.rmtree(self.notify_dir, ignore_errors=True)
        mark("end.observed", self.identity.pid.incarnation)
        return from_process_end(returncode, stop_requested=self.stop_requested, recorded=recorded)

    def _argv(self, ready_fd: int | None) -> list[str]:
        template = self.template
        if template.command and ready_fd is not None:
            arguments = entry_arguments(
                template,
                ready_fd=str(ready_fd),
                exit_record=str(self.exit_record),
                notify_dir=str(self.notify_dir),
            )
            # Isolated (-I): the entry needs the standard library only, and nothing of the
            # user's environment may change how it runs.
            return [sys.executable, "-I", rebeam.readiness.__file__, *arguments]
        if template.command:
            return [*template.command, *(template.args or [])]
        assert ready_fd is not None
        return [sys.executable, "-m", "rebeam.runtime", *self._runtime_args(str(ready_fd))]

    def _runtime_args(self, ready_fd: str) -> list[str]:
        assert self.template.module is not None
        return [
            self.template.module,
            "--args",
            json.dumps(self.template.args),
            "--ready-fd",
            ready_fd,
            "--exit-record",
            str(self.exit_record),
        ]

    @property
    def credentials_file(self) -> Path:
        return self.identity.workdir / f"{self.identity.pid.tokens}.cred"

    def _write_credentials(self, token: str) -> Path:
        """The credential travels in a file only the run's user can read, named in the
        environment; the runtime deletes it once read, the run when the process ends."""
        path = self.credentials_file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        return path

    def _env(self) -> dict[str, str]:
        ident = self.identity
        env = dict(os.environ)
        # The user's modules are importable from beside the manifests and from where
        # `rebeam run` was started.
        inherited = filter(None, env.get("PYTHONPATH", "").split(os.pathsep))
        path = [*ident.python_path, os.getcwd(), *inherited]
        env |= {
            "PYTHONPATH": os.pathsep.join(path),
            "PYTHONUNBUFFERED": "1",
            "REBEAM_NATS_URL": ident.nats_url,
            "REBEAM_NAMESPACE": ident.pid.namespace,
            "REBEAM_SUPERVISOR": ident.supervisor,
            "REBEAM_CHILD": ident.child,
            # Names in the local scope are unique within one `rebeam run`, as OTP's plain
            # registered names are within one node.
            "REBEAM_LOCAL_SCOPE": ident.local_scope,
        }
        if self.template.register_as:
            env["REBEAM_NAME"] = self.template.register_as
        env.pop("REBEAM_CREDENTIALS", None)  # never the run's own, nor its user's
        if ident.credentials is not None:
            env["REBEAM_CREDENTIALS_FILE"] = str(self._write_credentials(ident.credentials))
        if ident.nats_ca is not None:
            env["REBEAM_NATS_CA"] = ident.nats_ca
        env |= mailbox_env(self.template)
        for var in self.template.env:
            if var.value is not None:
                env[var.name] = var.value
        # Last, so that nothing overrides it: whatever this child starts is found by it.
        env[MARK] = str(ident.pid)
        return env


class _Lines:
    """The lines of a ready pipe, read without blocking the loop; owns ``fd`` (closes it)."""

    _LIMIT = 1024  # a line longer than this is not one the entry or the runtime writes

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._reader = asyncio.StreamReader(limit=self._LIMIT)
        self._transport: asyncio.ReadTransport | None = None

    async def next(self) -> str:
        """The next line, or "" at the end (or for a line too long to be ours)."""
        if self._transport is None:
            assert self._fd is not None, "closed"
            loop = asyncio.get_running_loop()
            pipe = os.fdopen(self._fd, "rb", buffering=0)
            self._fd = None  # the transport owns it now
            self._transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(self._reader), pipe
            )
        try:
            return (await self._reader.readline()).decode(errors="replace")
        except ValueError:  # over the limit
            return ""

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        elif self._fd is not None:
            os.close(self._fd)
            self._fd = None
