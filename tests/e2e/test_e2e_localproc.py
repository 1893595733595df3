"""How the process kubelet starts a container (infra/localproc.py): through setpriv, so that
Python need not fork the whole test process, yet with what a preexec_fn gave — the kernel
kills the container when the thread that started it ends, and a command that is not there
is an OSError (a StartError), not an exit status."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from infra.localproc import spawn
from infra.procs import wait_for

pytestmark = [pytest.mark.e2e]


def _reaped(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # reaped already (by its Popen's cleanup)
        return True


def test_a_container_dies_with_the_thread_that_started_it(tmp_path: Path) -> None:
    started: dict[str, int] = {}

    async def start() -> None:
        pid = spawn(["sleep", "600"], cwd=str(tmp_path), env=dict(os.environ)).pid
        started["pid"] = pid
        # The thread ends only once setpriv has exec'd sleep, after setting the death
        # signal: a thread that ended before that would have nobody to signal the child
        # (as in the kubelet, whose threads outlive their containers' starts).
        deadline = time.monotonic() + 30
        while not _execed(pid, b"sleep"):
            assert time.monotonic() < deadline, f"setpriv (pid {pid}) did not exec sleep"
            await asyncio.sleep(0.01)

    thread = threading.Thread(target=asyncio.run, args=(start(),))
    thread.start()
    thread.join()
    pid = started["pid"]
    try:
        wait_for(lambda: _reaped(pid), timeout=10, what=f"sleep (pid {pid}) killed with its thread")
    finally:
        if not _reaped(pid):
            os.kill(pid, signal.SIGKILL)  # stopped by its own pid, whatever the test found
            os.waitpid(pid, 0)


def _execed(pid: int, program: bytes) -> bool:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return os.path.basename(f.read().split(b"\0", 1)[0]) == program


def test_a_command_that_is_not_there_is_an_os_error(tmp_path: Path) -> None:
    async def start() -> None:
        spawn(["no-such-program-of-rebeam"], cwd=str(tmp_path), env=dict(os.environ))

    with pytest.raises(OSError, match="no-such-program-of-rebeam"):
        asyncio.run(start())


def test_a_relative_command_is_found_from_the_working_directory(tmp_path: Path) -> None:
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\nexit 3\n")
    script.chmod(0o755)

    async def run() -> int:
        return await spawn(["./hello.sh"], cwd=str(tmp_path), env=dict(os.environ)).wait()

    assert asyncio.run(run()) == 3
