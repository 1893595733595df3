"""Finding what a child left behind among rebeam run's descendants only (adoption.marked
with ``below``): a marked process anywhere below is found, however deep and whichever
session it is in; a marked process elsewhere is not looked at."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from rebeam.local.adoption import MARK, kill_marked, marked, mid_exec

pytestmark = pytest.mark.skipif(
    not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"),
    reason="the kernel does not list children",
)

# A shell that starts a marked `sleep` in a session of its own (as a daemon would), prints
# its pid, and waits: the sleep is this test's grandchild.
DAEMON = "setsid sleep 60 & echo $!; wait"
# The same, but the shell exits at once: the sleep is orphaned and re-parented away from us
# (this test process is no subreaper), like a process started by some other service.
ESCAPED = "setsid sleep 60 </dev/null >/dev/null 2>&1 & echo $!"


@pytest.fixture
def entry() -> str:
    return f"{MARK}=test.{uuid.uuid4().hex}.1"


@pytest.fixture
def started() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    for pid in pids:  # each by its own pid
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


def _spawn(script: str, entry: str, started: list[int]) -> tuple[subprocess.Popen[bytes], int]:
    name, value = entry.split("=", 1)
    shell = subprocess.Popen(
        ["sh", "-c", script], env={**os.environ, name: value}, stdout=subprocess.PIPE
    )
    started.append(shell.pid)
    assert shell.stdout is not None
    sleeper = int(shell.stdout.readline())
    started.append(sleeper)
    return shell, sleeper


def _wait_gone(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except FileNotFoundError:
            return
        time.sleep(0.01)
    raise AssertionError(f"{pid} is still alive")


def test_a_marked_grandchild_in_another_session_is_found_below_us(
    entry: str, started: list[int]
) -> None:
    shell, sleeper = _spawn(DAEMON, entry, started)
    assert set(marked(entry, below=os.getpid())) == {shell.pid, sleeper}
    assert kill_marked(entry, below=os.getpid()) >= 2
    _wait_gone(sleeper, time.monotonic() + 10)
    shell.wait(10)


def test_a_daemon_looked_at_while_it_execs_is_found(started: list[int]) -> None:
    # The look comes as the daemon execs, twice (`setsid`, then `sleep`): its environment
    # reads empty at moments of each, and an empty read believed too soon misses it (a
    # quarter of the looks did, before an empty read had to be confirmed).
    for _ in range(40):
        entry = f"{MARK}=test.{uuid.uuid4().hex}.1"
        shell, sleeper = _spawn(DAEMON, entry, started)
        assert set(marked(entry, below=os.getpid())) == {shell.pid, sleeper}
        os.kill(sleeper, signal.SIGKILL)
        shell.wait(10)
        started.clear()


def test_a_marked_process_elsewhere_is_not_looked_at(entry: str, started: list[int]) -> None:
    shell, sleeper = _spawn(ESCAPED, entry, started)
    shell.wait(10)
    assert sleeper in marked(entry)  # the whole machine: found
    assert marked(entry, below=os.getpid()) == []  # below us: not there


def test_a_process_with_an_empty_environment_is_not_taken_for_one_mid_exec(
    started: list[int],
) -> None:
    # An empty environment is read again only while the process is between an exec's new
    # memory and its environment (a daemon just exec-ing would be missed otherwise): one
    # started with no environment at all, and a zombie, are not, and are read at once.
    empty = subprocess.Popen(["sleep", "60"], env={})
    started.append(empty.pid)
    zombie = subprocess.Popen(["true"])
    _wait_zombie(zombie.pid, time.monotonic() + 30)
    try:
        assert not mid_exec(os.getpid())
        assert not mid_exec(zombie.pid)
        _wait_exec_done(empty.pid, time.monotonic() + 30)
        assert not mid_exec(empty.pid)
        begun = time.monotonic()
        assert marked(f"{MARK}=nothing", below=os.getpid()) == []
        assert time.monotonic() - begun < 0.4  # no 0.5 s waits on either
    finally:
        zombie.wait()


def _wait_zombie(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not end")


def _wait_exec_done(pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if f.read().startswith(b"sleep"):
                return
        time.sleep(0.01)
    raise AssertionError(f"{pid} did not exec sleep")
