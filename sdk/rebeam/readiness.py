"""The readiness entry: run a command child, and say when it is ready (docs/readiness.md).

OTP starts a child synchronously: the supervisor waits until the child says it has started.
A Python actor says so once its ``init`` returned; a ``command`` child with a ``readiness``
block is started through this entry, on both backends, which says it for the command::

    python -I .../rebeam/readiness.py --ready-fd N --exit-record PATH [--notify-dir DIR] \\
        --check JSON [--quiet] -- command args...

(``rebeam run`` runs the file so; a pod runs ``python -m rebeam.readiness``.)

The entry prepares what the command needs (a notify socket, a readiness pipe), forks a
*watcher*, and then becomes the command with ``exec``. The command therefore keeps the pid,
the process group, the signals and the exit status the supervisor sees (in a pod it is
PID 1), and ``WATCHDOG_PID`` is its own pid, as systemd gives it. The watcher dies with the
command (PR_SET_PDEATHSIG), checks for readiness, writes ``ready`` on the ready pipe — the
same line the Python runtime writes — and then, while it lives, ``status <text>`` lines. With
a watchdog it keeps checking; a command that stops answering is SIGKILLed, after the watcher
wrote why to the exit record.

Until the command is ready its exit record holds a mark (:data:`NOT_READY_EXCEPTION`): the
entry writes it before the command runs, the watcher clears it just before it says ready. A
command that ends before then leaves the mark, and both backends read it from there (locally
the record file, in a pod the termination message): :mod:`rebeam.exits` turns it and the real
exit status into the same failed start.

Only the standard library is imported here: under ``rebeam run`` the entry runs as a script
in isolated mode, so its start costs no imports of rebeam's own.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["NOT_READY_EXCEPTION", "WATCHDOG_EXCEPTION", "check_argument", "main"]

WATCHDOG_EXCEPTION: Final = "Watchdog"
"""The exception_type of the crash a watchdog kill records (rebeam.exits keeps it over the
SIGKILL that follows)."""

NOT_READY_EXCEPTION: Final = "NotReady"
"""The exception_type of the mark the exit record holds until the command is ready (the mark
is that alone: ``{"crash": {"exception_type": "NotReady"}}``), and of the failed start that
rebeam.exits makes of it."""

MAX_DATAGRAM: Final = 4096  # a notify message; larger ones are refused
MAX_STATUS: Final = 200  # characters of STATUS= passed on
MAX_FD_LINE: Final = 4096  # bytes read looking for the first line on REBEAM_READY_FD
LOG_BURST: Final = 5  # refusal lines per LOG_WINDOW; the rest are counted and summed up
LOG_WINDOW: Final = 10.0
_PR_SET_PDEATHSIG: Final = 1


def check_argument(kind: str, settings: dict[str, Any], watchdog: float | None) -> str:
    """The ``--check`` value for one readiness block (as JSON, for the entry's command line)."""
    return json.dumps({"kind": kind, **settings, "watchdog": watchdog}, separators=(",", ":"))


# --- the checks -------------------------------------------------------------------------


def _log(text: str) -> None:
    # The watcher's stderr is the child's output: its lines are shown with the child's.
    with contextlib.suppress(OSError):
        sys.stderr.write(f"rebeam readiness: {text}\n")
        sys.stderr.flush()


def _tcp_ok(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=max(timeout, 0.05)):
            return True
    except OSError:
        return False


def _http_ok(port: int, path: str, timeout: float) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=max(timeout, 0.05))
    try:
        conn.request("GET", path, headers={"User-Agent": "rebeam-readiness"})
        return 200 <= conn.getresponse().status < 300
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


_unrunnable: set[str] = set()


class _Stop:
    """Set once the command is being stopped (its supervisor's SIGTERM reached the watcher, or
    the command sent STOPPING=1): a program that winds down may stop answering, and that is
    no watchdog's business; its stop has a deadline of its own (its shutdown time)."""

    requested = False


def _stop_requested(*_: object) -> None:
    _Stop.requested = True


def _exec_ok(command: list[str], timeout: float) -> bool:
    try:
        # What it prints is for its exit status only (a watchdog repeats it every interval);
        # what it says on stderr stays in the child's output, to find a broken check by.
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            timeout=max(timeout, 0.05),
        )
    except OSError as exc:
        if not _unrunnable:  # said once: it is tried again and again
            _log(f"cannot run the readiness check {command[0]}: {exc.strerror or exc}")
        _unrunnable.add(command[0])
        return False
    except subprocess.SubprocessError:
        return False
    return done.returncode == 0


def _probe(check: dict[str, Any]) -> Callable[[float], bool]:
    """A probe of a tcp, http or exec check: ``probe(timeout)`` is True if it answered."""
    kind = check["kind"]
    if kind == "tcp":
        return lambda timeout: _tcp_ok(check["port"], timeout)
    if kind == "http":
        return lambda timeout: _http_ok(check["port"], check["path"], timeout)
    return lambda timeout: _exec_ok(check["command"], timeout)


def _probe_until(probe: Callable[[float], bool], deadline: float | None) -> bool:
    """Probe until it answers (True) or the deadline passes (False). The pause between
    tries grows from 50ms to 1s: quick to see a fast start, cheap for a slow one."""
    pause = 0.05
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return False
        if _Stop.requested:
            return True  # being stopped: nothing more to ask
        if probe(min(left, 5.0) if left is not None else 5.0):
            return True
        left = None if deadline is None else deadline - time.monotonic()
        time.sleep(pause if left is None else max(0.0, min(pause, left)))
        pause = min(pause * 2, 1.0)


class _Refusals:
    """Counts refused notify datagrams, and logs them at a bounded rate."""

    def __init__(self) -> None:
        self.count = 0
        self._window_start = time.monotonic()
        self._in_window = 0

    def refuse(self, why: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._window_start >= LOG_WINDOW:
            left_out = self._in_window - LOG_BURST
            if left_out > 0:
                _log(f"{left_out} more notify messages refused ({self.count} in all)")
            self._window_start, self._in_window = now, 0
        self._in_window += 1
        if self._in_window <= LOG_BURST:
            _log(f"notify message refused: {why} ({self.count} refused in all)")


class _Host:
    """The ready pipe: what the supervisor hears from the watcher. ``quiet``: the ready line
    only (in a pod it is a file a probe reads, and status lines would only make it grow)."""

    def __init__(self, fd: int, exit_record: str, *, quiet: bool = False) -> None:
        self.fd = fd
        self.exit_record = exit_record
        self.quiet = quiet

    def ready(self) -> None:
        """Clear the not-ready mark, then say ready: an end from now on is the command's own
        (in that order, so that a supervisor told ready never reads the mark)."""
        with contextlib.suppress(OSError):
            # Emptied, not removed: in a pod the record is the termination-message file,
            # which the kubelet made and may have mounted there.
            open(self.exit_record, "w").close()
        self.say("ready")

    def say(self, line: str) -> None:
        if self.quiet and line != "ready":
            return
        with contextlib.suppress(OSError):  # the supervisor is gone: nobody to tell
            os.write(self.fd, (line + "\n").encode(errors="replace"))


class _Notify:
    """The notify socket's side of the watcher: READY=1, STATUS=, STOPPING=1, WATCHDOG=1."""

    def __init__(self, sock: socket.socket, host: _Host) -> None:
        self.sock = sock
        self.host = host
        self.refusals = _Refusals()
        self.ready = False
        self.pinged = False
        self.triggered = False

    def receive(self, until: float | None) -> None:
        """Handle the datagrams that arrive before ``until`` (one wait at most)."""
        wait = None if until is None else max(0.0, until - time.monotonic())
        readable, _, _ = select.select([self.sock], [], [], wait)
        if not readable:
            return
        data, _, flags, _ = self.sock.recvmsg(MAX_DATAGRAM)
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            self.refusals.refuse(f"larger than {MAX_DATAGRAM} bytes, or carrying descriptors")
            return
        try:
            text = data.decode()
        except UnicodeDecodeError:
            self.refusals.refuse("not UTF-8 text")
            return
        for line in text.split("\n"):
            if line:
                self._assignment(line)

    def _assignment(self, line: str) -> None:
        key, eq, value = line.partition("=")
        if not eq:
            self.refusals.refuse(f"not KEY=VALUE: {line[:40]!r}")
        elif key == "READY" and value == "1":
            self.ready = True
        elif key == "STATUS":
            printable = "".join(c if c.isprintable() else " " for c in value[:MAX_STATUS])
            self.host.say(f"status {printable}")
        elif key == "STOPPING" and value == "1":
            _Stop.requested = True
            self.host.say("stopping")
        elif key == "WATCHDOG" and value == "1":
            self.pinged = True
        elif key == "WATCHDOG" and value == "trigger":
            self.triggered = True
        # Anything else (MAINPID, RELOADING, ERRNO, ...) systemd knows and we need not.


# --- the watcher ------------------------------------------------------------------------


def _fd_ready(fd: int) -> bool:
    """True once a whole line arrived on the readiness pipe; False if it closed first."""
    seen = b""
    while len(seen) <= MAX_FD_LINE:
        chunk = os.read(fd, 512)
        if not chunk:
            return False
        seen += chunk
        if b"\n" in seen:
            return True
    return True  # a long line is still a line: it said something


def _watchdog_kill(command_pid: int, interval: float, exit_record: str) -> None:
    reason = {
        "crash": {
            "exception_type": WATCHDOG_EXCEPTION,
            "message": f"did not answer its watchdog within {interval:g}s",
        }
    }
    with contextlib.suppress(OSError), open(exit_record, "w") as out:
        json.dump(reason, out)
    with contextlib.suppress(ProcessLookupError):
        os.kill(command_pid, signal.SIGKILL)


def _watch(
    check: dict[str, Any],
    command_pid: int,
    host: _Host,
    exit_record: str,
    notify: socket.socket | None,
    fd: int | None,
) -> None:
    """Wait until ready and say so; then, with a watchdog, keep checking."""
    interval = check.get("watchdog")
    if check["kind"] == "fd":
        assert fd is not None
        if _fd_ready(fd):
            host.ready()
            # Keep reading what else it writes: a write to a pipe nobody reads would kill it
            # with SIGPIPE.
            while os.read(fd, 4096):
                pass
        return  # closed without a line: the supervisor's startTimeout decides
    if check["kind"] == "notify":
        assert notify is not None
        _watch_notify(_Notify(notify, host), command_pid, interval, exit_record)
        return
    probe = _probe(check)
    _probe_until(probe, None)  # the supervisor's startTimeout bounds this wait
    if _Stop.requested:
        return  # stopped while starting: it never was ready
    host.ready()
    while interval:
        time.sleep(interval)
        answered = _Stop.requested or _probe_until(probe, time.monotonic() + interval)
        if _Stop.requested:
            return
        if not answered:
            _watchdog_kill(command_pid, interval, exit_record)
            return


def _watch_notify(
    notify: _Notify, command_pid: int, interval: float | None, exit_record: str
) -> None:
    while not notify.ready:
        notify.receive(None)
    notify.host.ready()
    deadline = time.monotonic() + interval if interval else None
    while True:  # STATUS and STOPPING are passed on for as long as the command runs
        notify.receive(deadline)
        if notify.pinged and interval:
            notify.pinged = False
            deadline = time.monotonic() + interval
        if not interval or _Stop.requested:
            continue  # no watchdog (any more): WATCHDOG= means nothing
        if notify.triggered or (deadline is not None and time.monotonic() >= deadline):
            _watchdog_kill(command_pid, interval, exit_record)
            return


def _become_watcher(
    check: dict[str, Any],
    command_pid: int,
    host: _Host,
    exit_record: str,
    notify: socket.socket | None,
    fd: int | None,
) -> None:
    code = 0
    try:
        if sys.platform == "linux":
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != command_pid:
            return  # the command ended before the line above: nothing to watch
        # The command's stops are for the command: the watcher ends with it (above), and
        # only stops watching.
        signal.signal(signal.SIGTERM, _stop_requested)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _watch(check, command_pid, host, exit_record, notify, fd)
    except BaseException as exc:
        _log(f"the readiness watcher failed: {exc!r}")
        code = 1
    finally:
        os._exit(code)


# --- the entry ------------------------------------------------------------------------


def _prepare_notify(
    directory: str | None, env: dict[str, str], interval: float | None
) -> socket.socket:
    """A datagram socket in a directory only this user can enter (0700): nobody else can
    say the command is ready."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="rebeam-notify-")  # made 0700
    else:
        shutil.rmtree(directory, ignore_errors=True)  # left by an incarnation that was killed
        os.mkdir(directory, 0o700)
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env["NOTIFY_SOCKET"] = path
    if interval:
        env["WATCHDOG_USEC"] = str(round(interval * 1_000_000))
        env["WATCHDOG_PID"] = str(os.getpid())  # after exec, the command's own pid
    return sock


def _record(path: str, reason: dict[str, Any]) -> None:
    with contextlib.suppress(OSError), open(path, "w") as out:
        json.dump(reason, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rebeam-readiness", description=__doc__)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--exit-record", required=True)
    parser.add_argument(
        "--notify-dir", help="where to make the notify socket (default: a new temporary folder)"
    )
    parser.add_argument("--check", type=json.loads, required=True)
    parser.add_argument("--quiet", action="store_true", help="write the ready line only")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    check: dict[str, Any] = args.check
    env = dict(os.environ)
    os.set_inheritable(args.ready_fd, False)  # the command must not hold the ready pipe
    notify: socket.socket | None = None
    fd_read: int | None = None
    fd_write = -1
    if check["kind"] == "notify":
        notify = _prepare_notify(args.notify_dir, env, check.get("watchdog"))
    elif check["kind"] == "fd":
        fd_read, fd_write = os.pipe()
        os.set_inheritable(fd_write, True)
        env["REBEAM_READY_FD"] = str(fd_write)
    # Before the watcher exists, so that it can only clear the mark after this wrote it.
    _record(args.exit_record, {"crash": {"exception_type": NOT_READY_EXCEPTION}})
    command_pid = os.getpid()
    if os.fork() == 0:
        if check["kind"] == "fd":
            os.close(fd_write)  # so that the command closing its end is seen
        host = _Host(args.ready_fd, args.exit_record, quiet=args.quiet)
        _become_watcher(check, command_pid, host, args.exit_record, notify, fd_read)
    os.close(args.ready_fd)
    if fd_read is not None:
        os.close(fd_read)
    if notify is not None:
        notify.close()  # the watcher holds it
    # Python ignores these; a program expects them as the system sets them.
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        message = f"cannot start {command[0]}: {exc.strerror or exc}"
        crash = {"exception_type": type(exc).__name__, "message": message}
        _record(args.exit_record, {"crash": crash})
        _log(message)
    return 127


if __name__ == "__main__":
    sys.exit(main())
