"""Pre-forked actor processes: restarts without paying for Python's start-up and imports.

A Python actor's restart is dominated by interpreter start-up and imports (nats-py pulls in
aiohttp, rebeam pulls in pydantic): hundreds of milliseconds before the actor can even
connect. The zygote is one process, started with ``rebeam run``, that has done all of that
once and then waits. Each start of a Python actor is a ``fork()`` of it: the child already
has the imports, and then does everything an incarnation does fresh — it connects to NATS,
imports the user's module, runs ``init`` — so each incarnation's state is new and its
isolation is a real process's.

What is shared is only what was imported before the fork (rebeam, nats-py, msgpack,
pydantic), with no connection, no event loop and no thread running. The user's modules are
imported in the child, after the fork.

The standby: the zygote keeps one child forked ahead of need, already detached (its own
session, dies with the zygote, stdin closed), that has done what needs no identity: its event
loop is made and running, waiting on a socket pair of its own, and the module of the actor
the last start ran is imported, in that start's directory and environment (without its pid
and credential file); what the import printed is kept and becomes the actor's first output,
if it is used. The next start hands it the request and the write ends of its pipes instead
of forking, which takes the fork, the loop and the import off the restart's path. A start
of another module, directory or environment (or event loop) does not fit it: it is killed
unused and the start is forked as before. So a module's import runs once in each standby,
used or not. It is one per zygote (so one per ``rebeam run``). Until it is handed a request
it has no identity, so it holds no credential, no NATS connection, no slot and no lease.
Killed from outside before use, it was nobody's child yet: it is replaced, and no end is
reported. The next one is forked once the actor that took the last one is ready, not during
its start (see ``_REFILL_AFTER``); a start that finds none is forked as before.

Protocol, over a SOCK_SEQPACKET socket pair (one message per request or report):

* ``rebeam run`` sends ``{"argv", "env", "cwd", "path", "output"}``;
* the zygote forks and answers ``{"pid"}`` with the read ends of the child's ready pipe and
  (if ``output``) its stdout/stderr pipe attached as file descriptors;
* when a child ends, the zygote reports ``{"exit": pid, "code": returncode}`` (negative for a
  signal, as :mod:`subprocess` says it).

The zygote runs in a session of its own, as each child does (a process group for stops and
the reaper): a Ctrl-C typed in the terminal is for ``rebeam run`` alone. A child dies with the
zygote, which dies with ``rebeam run``. If the zygote dies (its socket closes), each child
forked from it has ended by SIGKILL, and is reported so — its supervisor restarts it as
usual — and Python actors are spawned as fresh interpreters from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from rebeam import _loop
from rebeam._orphans import die_with_parent
from rebeam.local.endwatch import process_end

__all__ = ["ForkedProcess", "Zygote", "main"]

log = logging.getLogger("rebeam.run")

_MAX_MESSAGE = 1 << 20


class ForkedProcess:
    """What :class:`~rebeam.local.processes.ChildProcess` needs of a started process."""

    def __init__(self, pid: int, ready_fd: int, output_fd: int | None) -> None:
        self.pid = pid
        self.ready_fd = ready_fd
        self.output_fd = output_fd  # the read end of its stdout and stderr, if asked for
        self.returncode: int | None = None
        self._exit: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def _ended(self, code: int) -> None:
        self.returncode = code
        if not self._exit.done():
            self._exit.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)


class Zygote:
    """The ``rebeam run`` side: start the zygote, ask it for children, hear of their ends."""

    def __init__(self, process: subprocess.Popen[bytes], sock: socket.socket) -> None:
        self._process = process
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._forks: asyncio.Queue[tuple[dict[str, Any], list[int]]] = asyncio.Queue()
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._gone = False
        self._lock = asyncio.Lock()
        # Reports are read in the loop, when the socket is readable: a reader thread would
        # first have to win the GIL from a busy loop (up to the interpreter's switch
        # interval, 5 ms), and a restart starts with one of these reports.
        self._loop.add_reader(sock.fileno(), self._read_report)

    @classmethod
    def start(cls, on_spawn: Callable[[int], None] | None = None) -> Zygote:
        """Start the zygote (from the event loop); ``on_spawn`` hears its pid at once."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "rebeam.local.zygote", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                # A process group of its own: a Ctrl-C typed in the terminal is for rebeam run.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        finally:
            theirs.close()
        if on_spawn is not None:
            on_spawn(process.pid)
        return cls(process, ours)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        return not self._gone and self._process.poll() is None

    async def fork(
        self, argv: list[str], env: dict[str, str], cwd: str | None, output: bool
    ) -> ForkedProcess:
        request = {"argv": argv, "env": env, "cwd": cwd, "output": output}
        async with self._lock:  # one fork at a time: answers come back in order
            if self._gone:
                raise OSError("the zygote is gone")
            # A blocking send of a few KiB on a local socket pair: it never waits in practice,
            # and the socket stays blocking for the reader thread.
            self._sock.send(json.dumps(request).encode())
            reply, fds = await self._forks.get()
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise OSError(reply["error"])
        child = ForkedProcess(reply["pid"], fds[0], fds[1] if output else None)
        self._children[child.pid] = child
        if child.pid in self._early_exits:
            child._ended(self._early_exits.pop(child.pid))
        return child

    def _read_report(self) -> None:
        """One report and its fds (the socket is readable: this never waits)."""
        try:
            data, fds, _, _ = socket.recv_fds(self._sock, _MAX_MESSAGE, 2, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        if not data:
            self._loop.remove_reader(self._sock.fileno())
            self._lost()
            return
        self._report(json.loads(data), list(fds))

    def _lost(self) -> None:
        """The zygote is gone (killed, or closed at the end). Its children went with it —
        each dies with its parent, by SIGKILL — so that is how each of them ended."""
        if not self._gone and self._children:
            log.warning(
                "the zygote (pid %d) is gone, and the actors forked from it; Python actors "
                "start as fresh interpreters from now on",
                self._process.pid,
            )
        self._gone = True
        for child in self._children.values():
            child._ended(-signal.SIGKILL)
        self._children.clear()
        self._forks.put_nowait(({"error": "the zygote is gone"}, []))  # for a fork under way

    def _report(self, report: dict[str, Any], fds: list[int]) -> None:
        if "exit" in report:
            child = self._children.pop(report["exit"], None)
            if child is None:
                self._early_exits[report["exit"]] = report["code"]
            else:
                child._ended(report["code"])
        else:
            self._forks.put_nowait((report, fds))

    async def close(self) -> None:
        if self._sock.fileno() != -1:
            self._loop.remove_reader(self._sock.fileno())
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._gone = True  # closed, not lost: nothing to warn of
        self._lost()  # what still runs was forked from it, and ends with it
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self._process.terminate()
        try:
            async with asyncio.timeout(5):
                await process_end(self._process)
        except TimeoutError:
            self._process.kill()
            self._process.wait()


# --- the zygote process ----------------------------------------------------------------

# When the zygote forks the next standby after a hand-over: a moment after the actor that
# took the last one said ready (or ended), not while it starts: on a busy machine the fork
# and the new standby's first steps would take a core from it, and then from the first call
# it answers. At the latest a second after the hand-over, for an init that takes long. A
# start that comes before then is forked as it would be without a standby.
_REFILL_AFTER = 0.05
_REFILL_AT_LATEST = 1.0
# After a standby died unused (killed from outside: nothing of ours ends it), before trying
# again: a standby that keeps dying must not become a fork loop.
_REFILL_AFTER_LOSS = 1.0


class _Standby:
    """A child forked ahead of need: detached as an actor is (a session of its own, dies with
    the zygote), and waiting on ``chan`` for the identity it is to run as. Until then it has
    no pid of rebeam's, no credential, no NATS connection, no slot and no lease."""

    def __init__(self, pid: int, chan: socket.socket, hint: dict[str, Any] | None) -> None:
        self.pid = pid
        self.chan = chan
        self.hint = hint  # the start it imported the actor's module for, if any


class _Server:
    """The zygote's loop: forks (or hands its standby) on request, reports ends."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        self.standby: _Standby | None = None
        self.refill_at: float | None = time.monotonic()  # the first standby at once
        self.unused: set[int] = set()  # standbys that died before use, not yet reaped
        # A copy of the read end of the ready pipe of the actor that took the last standby
        # over: readable once it wrote ready or closed it (it ended). Never read from.
        self.starting: int | None = None
        # What the next standby prepares for: the last start it took (see _hint_of).
        self.hint: dict[str, Any] | None = None
        try:
            _loop.loop_factory()
        except _loop.LoopChoiceError:  # each start says so; a standby could not even wait
            self.refill_at = None

    def serve(self) -> int:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rebeam run's to handle
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        try:
            while True:
                waits = [self.sock.fileno(), self.wake_r]
                if self.starting is not None:
                    waits.append(self.starting)
                readable, _, _ = select.select(waits, [], [], self._until_refill())
                if self.starting is not None and self.starting in readable:
                    self._started()
                if self.wake_r in readable:
                    os.read(self.wake_r, 4096)
                    self._report_exits()
                if self.sock.fileno() in readable:
                    data = self.sock.recv(_MAX_MESSAGE)
                    if not data:
                        return 0  # rebeam run is gone: so are we
                    self._start(json.loads(data))
                if self.standby is None and self._until_refill() == 0:
                    self._refill()
        finally:
            self._retire()

    def _started(self) -> None:
        """The actor that took the last standby over is ready, or gone."""
        assert self.starting is not None
        os.close(self.starting)
        self.starting = None
        if self.refill_at is not None:
            self.refill_at = min(self.refill_at, time.monotonic() + _REFILL_AFTER)

    def _until_refill(self) -> float | None:
        if self.standby is not None or self.refill_at is None:
            return None
        return max(0.0, self.refill_at - time.monotonic())

    def _refill(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError as exc:
            ours.close()
            theirs.close()
            log.warning("cannot fork a standby: %s", exc)
            self.refill_at = time.monotonic() + _REFILL_AFTER_LOSS
            return
        if pid == 0:  # the standby: never returns
            closing = [self.wake_r, self.wake_w, self._starting()]
            _stand_by(theirs, [self.sock, ours], closing, self.hint)
        theirs.close()
        self.standby = _Standby(pid, ours, self.hint)
        self.refill_at = None

    def _starting(self) -> int:
        return -1 if self.starting is None else self.starting

    def _retire(self) -> None:
        """The zygote ends: so does its standby (by its pid), which nobody else knows of."""
        if self.starting is not None:
            os.close(self.starting)
            self.starting = None
        if self.standby is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.standby.pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.standby.pid, 0)
            self.standby.chan.close()
            self.standby = None

    def _report_exits(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.standby is not None and pid == self.standby.pid:
                # Killed from outside before it was used: it was nobody's child yet.
                self.standby.chan.close()
                self.standby = None
                self.refill_at = time.monotonic() + _REFILL_AFTER_LOSS
                continue
            if pid in self.unused:
                self.unused.discard(pid)
                continue
            report = {"exit": pid, "code": os.waitstatus_to_exitcode(status)}
            self.sock.send(json.dumps(report).encode())

    def _start(self, request: dict[str, Any]) -> None:
        ready_r, ready_w = os.pipe()
        out_r, out_w = os.pipe() if request["output"] else (-1, -1)
        ends = [fd for fd in (ready_w, out_w) if fd != -1]
        pid = self._hand_over(request, ends)
        self.hint = _hint_of(request)  # the next standby prepares for a start like this one
        if pid is not None:
            if self.starting is not None:
                os.close(self.starting)
            self.starting = os.dup(ready_r)
        else:
            try:
                pid = os.fork()
            except OSError as exc:
                for fd in (ready_r, ready_w, out_r, out_w):
                    if fd != -1:
                        os.close(fd)
                self.sock.send(json.dumps({"error": str(exc)}).encode())
                return
            if pid == 0:  # the child: never returns
                closing = [ready_r, out_r, self.wake_r, self.wake_w, self._starting()]
                _become_actor(request, [self.sock], closing, ready_w, out_w)
        for fd in ends:
            os.close(fd)
        fds = [fd for fd in (ready_r, out_r) if fd != -1]
        socket.send_fds(self.sock, [json.dumps({"pid": pid}).encode()], fds)
        for fd in fds:
            os.close(fd)

    def _hand_over(self, request: dict[str, Any], ends: list[int]) -> int | None:
        """The standby's pid once it has the request and the write ends of its pipes; None
        if there is no standby, or it died before it could take them."""
        standby, self.standby = self.standby, None
        if standby is None:
            return None
        self.refill_at = time.monotonic() + _REFILL_AT_LATEST
        if not _fits(standby.hint, request):
            # Prepared for another start (its module imported with other surroundings):
            # it is of no use, and ends unused.
            with contextlib.suppress(ProcessLookupError):
                os.kill(standby.pid, signal.SIGKILL)
            self.unused.add(standby.pid)
            standby.chan.close()
            return None
        try:
            socket.send_fds(standby.chan, [json.dumps(request).encode()], ends)
        except OSError:  # it is gone, and will be reaped as one that was never used
            self.unused.add(standby.pid)
            return None
        finally:
            standby.chan.close()
        return standby.pid


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    # Everything an actor imports before it can do anything; the user's modules come later.
    from rebeam._loop import preload
    from rebeam.runtime._main import prepare

    preload()
    prepare()
    return _Server(sock).serve()


def _detach(sockets: list[socket.socket], fds: list[int]) -> None:
    """In a child just forked: on its own, as a spawned actor would be, with none of the
    zygote's ends open."""
    parent = os.getppid()
    os.setsid()  # a process group of its own, as a spawned child has
    die_with_parent()  # the zygote
    if os.getppid() != parent:  # it died before the line above: nobody would kill us
        os._exit(1)
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGINT, signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    for sock in sockets:
        sock.close()
    for fd in fds:
        if fd != -1:
            os.close(fd)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def _stand_by(
    chan: socket.socket,
    sockets: list[socket.socket],
    fds: list[int],
    hint: dict[str, Any] | None,
) -> None:
    """The standby: detached at once, then everything that needs no identity (its event
    loop made and running, the actor's module imported if ``hint`` says which), then it
    waits in that loop for the request that makes it an actor."""
    code = 1
    try:
        _detach(sockets, fds)
        code = _loop.run(_standing_by(chan, hint))
    except BaseException:
        traceback.print_exc()
    finally:
        _end(code)


async def _standing_by(chan: socket.socket, hint: dict[str, Any] | None) -> int:
    prepared = _Prepared(hint)
    loop = asyncio.get_running_loop()
    handed: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not handed.done():
            handed.set_result(None)

    loop.add_reader(chan.fileno(), readable)
    try:
        await handed
    finally:
        loop.remove_reader(chan.fileno())
    data, ends, _, _ = socket.recv_fds(chan, _MAX_MESSAGE, 2)  # readable: never waits
    chan.close()
    if not data:  # the zygote is gone before it needed us
        return 0
    request = json.loads(data)
    ready_w, out_w = ends[0], ends[1] if request["output"] else -1
    argv = _take_on(request, ready_w, out_w, prepared.path)
    prepared.replay()
    from rebeam.runtime._main import main_in_loop

    return await main_in_loop(argv)


# In a start's environment, what differs from one incarnation of a child to the next: a
# standby prepared without them fits the next start of the same child.
_PER_INCARNATION = ("REBEAM_PID", "REBEAM_CREDENTIALS_FILE")


def _hint_of(request: dict[str, Any]) -> dict[str, Any] | None:
    """What a standby may prepare for a start like ``request``: its actor's module, and the
    directory and environment (without the identity) it is imported in."""
    argv = request["argv"]
    module = argv[0].partition(":")[0] if argv else ""
    if not module:
        return None
    env = {k: v for k, v in request["env"].items() if k not in _PER_INCARNATION}
    return {"module": module, "cwd": request["cwd"], "env": env}


def _fits(hint: dict[str, Any] | None, request: dict[str, Any]) -> bool:
    """Whether a standby prepared for ``hint`` can take ``request`` as if it had been forked
    for it: its loop is the one the request's environment picks, and what it imported was
    imported in the request's surroundings."""
    if request["env"].get("REBEAM_LOOP") != os.environ.get("REBEAM_LOOP"):
        return False
    return hint is None or hint == _hint_of(request)


class _Prepared:
    """What a standby did before it had an identity: the actor's module imported, where and
    as the start it was hinted at would have, with what the import printed kept (in memory)
    for the actor's output, to be shown only if the standby is used."""

    def __init__(self, hint: dict[str, Any] | None) -> None:
        self.path = list(sys.path)  # before any of the hint's
        self._printed = -1
        if hint is None:
            return
        self._printed = os.memfd_create("standby-output")
        self._saved = (os.dup(1), os.dup(2))
        _flush()
        os.dup2(self._printed, 1)
        os.dup2(self._printed, 2)
        try:
            if hint["cwd"]:
                os.chdir(hint["cwd"])
            os.environ.clear()
            os.environ.update(hint["env"])
            sys.path[0:0] = _python_path(hint["env"])
            importlib.import_module(hint["module"])
        except Exception:  # the actor's own start imports it again, and says why it fails
            pass
        finally:
            _flush()

    def replay(self) -> None:
        """Once the actor's output is in place: what the import printed, first in it."""
        if self._printed == -1:
            return
        saved_out, saved_err = self._saved
        for fd, saved in ((1, saved_out), (2, saved_err)):
            if os.fstat(fd).st_ino == os.fstat(self._printed).st_ino:  # no output of its own
                os.dup2(saved, fd)
            os.close(saved)
        os.lseek(self._printed, 0, os.SEEK_SET)
        while chunk := os.read(self._printed, 1 << 16):
            os.write(2, chunk)
        os.close(self._printed)


def _become_actor(
    request: dict[str, Any],
    sockets: list[socket.socket],
    fds: list[int],
    ready_w: int,
    out_w: int,
) -> None:
    code = 1
    try:
        _detach(sockets, fds)
        argv = _take_on(request, ready_w, out_w, list(sys.path))
        from rebeam.runtime._main import main as runtime_main

        code = runtime_main(argv)
    except BaseException:
        traceback.print_exc()
    finally:
        _end(code)


def _take_on(request: dict[str, Any], ready_w: int, out_w: int, path: list[str]) -> list[str]:
    """Take on the surroundings of the actor ``request`` describes (its output, directory,
    environment, module path on top of ``path``); the runtime's arguments."""
    if out_w != -1:
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.close(out_w)
    if request["cwd"]:
        os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.path[:] = [*_python_path(request["env"]), *path]
    argv = [arg.replace("{ready_fd}", str(ready_w)) for arg in request["argv"]]
    sys.argv = ["rebeam.runtime", *argv]
    return argv


def _python_path(env: dict[str, str]) -> list[str]:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _flush() -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()


def _end(code: int) -> None:
    _flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
