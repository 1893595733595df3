"""Orphans: what a child leaves behind when it ends is found, and stopped with it.

Stopping a child's process group does not reach a process that left the group — a daemon
(``setsid``, a double fork) — and such a process may hold the child's output pipe open for
good. Two things find it:

* every child's environment carries ``REBEAM_PID``, its incarnation's pid, and whatever it
  starts inherits it (unless it clears its environment). ``/proc/<pid>/environ`` therefore
  says whose a process is: when a child ends, every process still carrying its
  ``REBEAM_PID`` is killed (:func:`kill_marked`), and the reaper kills every process carrying
  the run's prefix of it when ``rebeam run`` ends, however it ends;
* ``rebeam run`` is a child subreaper (PR_SET_CHILD_SUBREAPER): an orphan anywhere below it
  is re-parented to it rather than to init. So orphans stay below ``rebeam run``, which reaps
  those that end and kills those still there when it ends — also the ones that cleared their
  environment.

Being a subreaper means reaping what nobody else will: on SIGCHLD, every zombie child that
``rebeam run`` did not start itself is reaped. The processes it did start are registered
(:meth:`Adoption.own`) in the same synchronous step that spawned them, and SIGCHLD is handled
by the event loop, so no exit status is ever taken from the ``Popen`` that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

__all__ = ["MARK", "Adoption", "become_subreaper", "kill_marked", "marked", "mid_exec"]

log = logging.getLogger("rebeam.run")

MARK = "REBEAM_PID"
"""The environment variable that says which incarnation a process belongs to."""

_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphans below this process its children; False where that is not possible."""
    if sys.platform != "linux":
        return False
    import ctypes

    return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1) == 0)


def marked(entry: str, *, prefix: bool = False, below: int | None = None) -> list[int]:
    """Every other process whose environment holds ``entry`` (``NAME=value``), or with
    ``prefix`` an entry that starts with it. Processes of other users cannot be read and are
    never found; zombies have no environment any more.

    ``below``: look only among that process's descendants. For ``rebeam run``, a subreaper,
    they are every process one of its children left behind (orphans are re-parented to it,
    not to init), and there are a few of them where the whole machine may have thousands,
    each an environment to read: a restart used to spend 100-500 ms reading them on a busy
    machine. Where the kernel cannot list children, every process is looked at."""
    needle = b"\0" + entry.encode() + (b"" if prefix else b"\0")
    me = os.getpid()
    candidates = _descendants(below) if below is not None else None
    if candidates is None:
        candidates = [int(name) for name in os.listdir("/proc") if name.isdigit()]
    found = []
    for pid in candidates:
        if pid == me:
            continue
        environ = _environ(pid)
        if environ is not None and needle in b"\0" + environ:
            found.append(pid)
    return found


# A process in the middle of an exec shows an empty environment, at two moments: after the
# kernel has put in its new memory and before it has set where the environment lies in it
# (``env_end`` is 0), and while it writes the environment's pointers (``env_end`` equals
# ``env_start``, as it does for good in a process whose environment is empty). A look at such
# a moment would miss a daemon that is just exec-ing (``setsid`` becoming ``sleep``), and
# nothing would look again: so an empty read is believed only once the process's environment
# bounds are the same before and after it and show a finished exec; until then it is read
# again, for at most this long. Writing the pointers takes microseconds, and a process that
# only looks like it (an empty environment, busy on a CPU) should not cost every look half a
# second: that moment is waited for only briefly.
_EXEC_WAIT = 0.5
_FILL_WAIT = 0.1
_PF_KTHREAD = 0x00200000


def _environ(pid: int) -> bytes | None:
    """``pid``'s environment block; None if it cannot be read (gone, another user's)."""
    begun = time.monotonic()
    while True:
        before = _exec_view(pid)
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = f.read()
        except OSError:
            return None
        if environ:
            return environ
        after = _exec_view(pid)
        # The exec may have begun or ended between the two looks: then they differ.
        settled = before == after and not _in_exec(after)
        wait = _EXEC_WAIT if after is not None and after[3] == 0 else _FILL_WAIT
        if settled or time.monotonic() - begun > wait:
            return environ
        time.sleep(0.001)


def mid_exec(pid: int) -> bool:
    """Whether ``pid`` may be in an exec, between its new memory and a filled-in environment:
    ``env_end`` (the 51st field of ``/proc/<pid>/stat``) is 0 for a live user process only
    then, and equals ``env_start`` while the kernel writes the environment (a zombie and a
    kernel thread show 0 for good, and are not). A process whose environment is empty shows
    them equal for good: it is taken for one in an exec only while it is running or waiting
    uninterruptibly, as the kernel in an exec is; asleep or stopped, it is not."""
    return _in_exec(_exec_view(pid))


# What /proc/<pid>/stat says of an exec: (state, flags, env_start, env_end); None if unread.
_ExecView = tuple[str, int, int, int]


def _exec_view(pid: int) -> _ExecView | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is the 3rd field (state); the 9th (flags), 50th and 51st follow from it.
        return fields[0], int(fields[6]), int(fields[47]), int(fields[48])
    except (OSError, IndexError, ValueError):
        return None


def _in_exec(view: _ExecView | None) -> bool:
    if view is None:
        return False
    state, flags, env_start, env_end = view
    if state in ("Z", "X") or flags & _PF_KTHREAD:
        return False
    return env_end == 0 or (env_end == env_start and state in ("R", "D"))


def _descendants(root: int) -> list[int] | None:
    """Every descendant of ``root`` (from each thread's ``/proc/<pid>/task/<tid>/children``),
    or None where the kernel does not list children. A process forked while we look may be
    missed: :func:`kill_marked` looks again while it finds any, as with a full scan."""
    if not os.path.exists(f"/proc/{root}/task/{root}/children"):
        return None
    found: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # ended while we looked
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children = [int(child) for child in f.read().split()]
            except (OSError, ValueError):
                continue
            found.extend(children)
            pending.extend(children)
    return found


def kill_marked(
    entry: str, *, prefix: bool = False, rounds: int = 5, below: int | None = None
) -> int:
    """SIGKILL every process :func:`marked` finds (among ``below``'s descendants, if given),
    and the process group of each that leads one; again while new ones appear (one may fork
    while we look). Returns how many."""
    killed = 0
    for _ in range(rounds):
        found = marked(entry, prefix=prefix, below=below)
        if not found:
            break
        for pid in found:
            _kill(pid)
        killed += len(found)
    return killed


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:  # a daemon leads a group of its own: take it all
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)


def _children() -> list[tuple[int, bool]]:
    """This process's children: (pid, is a zombie)."""
    me = os.getpid()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(me):
            found.append((int(name), fields[0] == "Z"))
    return found


class Adoption:
    """``rebeam run`` as the subreaper of everything below it."""

    def __init__(self) -> None:
        self.subreaper = become_subreaper()
        self._owned: set[int] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Reap orphans as they end (call from the event loop, in the main thread)."""
        if not self.subreaper:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)

    def own(self, pid: int) -> None:
        """A process this run started and will reap itself."""
        self._owned.add(pid)

    def disown(self, pid: int) -> None:
        """Reaped by its owner: the pid may be a stranger's next."""
        self._owned.discard(pid)

    def reap(self) -> None:
        """Reap every zombie child that no ``Popen`` of ours owns."""
        try:
            waitable = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if waitable is None:  # no child has ended: nothing to look for
            return
        for pid, zombie in _children():
            if zombie and pid not in self._owned:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def close(self, grace: float = 2.0) -> None:
        """The end of the run: kill the orphans still here, and reap them."""
        if self._loop is not None:
            self._loop.remove_signal_handler(signal.SIGCHLD)
            self._loop = None
        if not self.subreaper:
            return
        strays = [pid for pid, _ in _children() if pid not in self._owned]
        for pid in strays:
            _kill(pid)
        if strays:
            log.debug("killed %d orphan(s) left below rebeam run", len(strays))
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.reap()
            if not any(pid not in self._owned for pid, _ in _children()):
                return
            # An orphan's own orphans are re-parented to us as it dies: look once more.
            for pid, zombie in _children():
                if not zombie and pid not in self._owned:
                    _kill(pid)
            time.sleep(0.01)
