"""The reaper: no process outlives ``rebeam run``, even when it is killed with SIGKILL.

A killed process runs no cleanup, so the cleanup has to live elsewhere. ``rebeam run`` starts
this small process first, in a session of its own, and tells it over a pipe about every process
group it creates (``+<pgid>``: each child, the private nats-server, the zygote) and retires
(``-<pgid>``), about its scratch folder (``dir <path>``), and about the mark its children carry
(``mark <prefix>``: an environment entry, see :mod:`rebeam.local.adoption`). When the pipe
closes — ``rebeam run`` ended, however it ended — the reaper SIGKILLs every group still on its
list and every process carrying the mark, removes the folder if it is still there, and exits.

PR_SET_PDEATHSIG on each child covers the direct children; the reaper also covers what they
started: a shell's children, because it kills whole process groups, and a daemon that left
its group, because it still carries the mark.

Run as ``python -m rebeam.local.reaper`` with the pipe on stdin.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from rebeam.local.adoption import kill_marked

__all__ = ["Reaper", "main"]


class Reaper:
    """The ``rebeam run`` side: start the reaper and keep it informed."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "rebeam.local.reaper"],
            stdin=subprocess.PIPE,
            start_new_session=True,  # not in our group: it must survive our death
        )

    @property
    def pid(self) -> int:
        return self._process.pid

    def watch(self, pgid: int) -> None:
        self._say(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self._say(f"-{pgid}")

    def remove_at_exit(self, folder: Path) -> None:
        self._say(f"dir {folder}")

    def kill_marked_at_exit(self, prefix: str) -> None:
        """Kill every process with an environment entry starting with ``prefix``."""
        self._say(f"mark {prefix}")

    def _say(self, line: str) -> None:
        stdin = self._process.stdin
        if stdin is None or stdin.closed:
            return
        with contextlib.suppress(BrokenPipeError, OSError):
            stdin.write(f"{line}\n".encode())
            stdin.flush()

    def close(self) -> None:
        """A normal end: everything has been stopped already; let the reaper go."""
        if self._process.stdin and not self._process.stdin.closed:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)


def main() -> int:
    # Ctrl-C in the terminal reaches the whole foreground group; we are in our own session,
    # but be explicit: only the closing pipe ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    folders: list[str] = []
    marks: list[str] = []
    for raw in sys.stdin.buffer:
        line = raw.strip().decode(errors="replace")
        with contextlib.suppress(ValueError):
            if line.startswith("dir "):
                folders.append(line[4:])
            elif line.startswith("mark "):
                marks.append(line[5:])
            elif line.startswith("+"):
                groups.add(int(line[1:]))
            elif line.startswith("-"):
                groups.discard(int(line[1:]))
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for mark in marks:
        kill_marked(mark, prefix=True)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
