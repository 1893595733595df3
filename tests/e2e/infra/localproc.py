"""Container processes of the process kubelet, watched through a pidfd on the kubelet's loop.

asyncio's own subprocesses cost a thread each on Python 3.11 (its default child watcher blocks
one thread in ``waitpid`` per child): 2,000 pods were 2,000 threads in the test process. Here
a child's end is a pidfd becoming readable on the loop that started it, and the exit status is
reaped by its :class:`subprocess.Popen` (which keeps it from being reaped by anyone else).

A container is started through ``setpriv --pdeathsig KILL`` rather than a ``preexec_fn``: any
``preexec_fn`` makes Python fork the whole test process (page tables of hundreds of MiB, with
the GIL held) where it otherwise uses vfork. At 2,000 pods that fork was two fifths of the
kubelet thread's time; the death signal set by setpriv survives its exec of the command.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO

from .procs import die_with_parent

__all__ = ["LocalProcess", "spawn"]

_SETPRIV = shutil.which("setpriv")  # util-linux; without it, the slower preexec_fn


class LocalProcess:
    """A started child: ``pid``, ``returncode`` (None while it runs) and ``await wait()``."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid
        self._loop = asyncio.get_running_loop()
        self._ended: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(popen.pid)
        self._loop.add_reader(self._pidfd, self._on_exit)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def _on_exit(self) -> None:
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        code = self.popen.wait()  # the pidfd said it ended: this reaps without blocking
        if not self._ended.done():
            self._ended.set_result(code)

    async def wait(self) -> int:
        """The exit code (negative: killed by that signal), as asyncio's Process.wait."""
        # Shielded: several tasks may wait for one process, and cancelling one of them must
        # not cancel the others' wait.
        return await asyncio.shield(self._ended)


def spawn(
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdout: IO[bytes] | int = subprocess.DEVNULL,
) -> LocalProcess:
    """Start ``argv`` in a process group of its own (signals reach its children too) that the
    kernel kills when the kubelet's thread ends. Raises OSError if it cannot be started."""
    command, preexec = list(argv), die_with_parent
    if _SETPRIV is not None:
        # Found here, as Popen would (the env's PATH, a relative path from cwd): a command
        # that is not there stays an OSError (a StartError), not setpriv's exit status.
        program = os.path.join(cwd, command[0]) if "/" in command[0] else command[0]
        found = shutil.which(program, path=env.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(f"no executable {command[0]!r}")
        command, preexec = [_SETPRIV, "--pdeathsig", "KILL", "--", found, *command[1:]], None
    popen = subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=preexec,
    )
    return LocalProcess(popen)
