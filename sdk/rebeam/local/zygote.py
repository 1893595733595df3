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
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

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
            await asyncio.wait_for(process_end(self._process), 5)
        except TimeoutError:
            self._process.kill()
            self._process.wait()


# --- the zygote process ----------------------------------------------------------------


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    # Everything an actor imports before it can do anything; the user's modules come later.
    from rebeam._loop import preload
    from rebeam.runtime._main import prepare

    preload()
    prepare()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rebeam run's to handle
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while True:
        readable, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
            _report_exits(sock)
        if sock.fileno() in readable:
            data = sock.recv(_MAX_MESSAGE)
            if not data:
                return 0  # rebeam run is gone: so are we
            _fork(sock, json.loads(data), (wake_r, wake_w))


def _report_exits(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        report = {"exit": pid, "code": os.waitstatus_to_exitcode(status)}
        sock.send(json.dumps(report).encode())


def _fork(sock: socket.socket, request: dict[str, Any], wake: tuple[int, int]) -> None:
    ready_r, ready_w = os.pipe()
    out_r, out_w = os.pipe() if request["output"] else (-1, -1)
    try:
        pid = os.fork()
    except OSError as exc:
        sock.send(json.dumps({"error": str(exc)}).encode())
        return
    if pid == 0:  # the child: never returns
        _become_actor(request, sock, ready_r, ready_w, out_r, out_w, wake)
    os.close(ready_w)
    fds = [ready_r]
    if out_r != -1:
        os.close(out_w)
        fds.append(out_r)
    socket.send_fds(sock, [json.dumps({"pid": pid}).encode()], fds)
    for fd in fds:
        os.close(fd)


def _become_actor(
    request: dict[str, Any],
    sock: socket.socket,
    ready_r: int,
    ready_w: int,
    out_r: int,
    out_w: int,
    wake: tuple[int, int],
) -> None:
    code = 1
    try:
        os.setsid()  # a process group of its own, as a spawned child has
        die_with_parent()  # the zygote
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        sock.close()
        for fd in (ready_r, out_r, *wake):
            if fd != -1:
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        if out_w != -1:
            os.dup2(out_w, 1)
            os.dup2(out_w, 2)
            os.close(out_w)
        if request["cwd"]:
            os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[0:0] = extra
        argv = [arg.replace("{ready_fd}", str(ready_w)) for arg in request["argv"]]
        sys.argv = ["rebeam.runtime", *argv]
        from rebeam.runtime._main import main as runtime_main

        code = runtime_main(argv)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
