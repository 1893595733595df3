"""A child that leaves a daemon behind: its end is its process's exit (not its pipes'), and
what escaped its process group is stopped with it — also when ``rebeam run`` is SIGKILLed.

The daemon is ``setsid sleep <unique number>``: a session of its own, so no stop of the
child's process group reaches it, and it holds the child's output pipe. The unique number
finds it in /proc (and lets teardown kill a leftover by its own pid).
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.conftest import (
    StartRun,
    kill_leftovers,
    processes_with_arg,
    supervisor,
    wait_until,
)


@pytest.fixture
def daemon_arg() -> Iterator[str]:
    arg = f"300.{random.randrange(10**8):08d}{os.getpid()}"
    yield arg
    kill_leftovers(arg)


def leaver(arg: str) -> str:
    """Leaves a daemon behind at every start; the first incarnation then exits 3, the next
    ones stay (so there is one restart to see)."""
    script = f"setsid sleep {arg} & if [ -e once ]; then exec sleep 300; fi; touch once; exit 3"
    return f"{{command: [sh, -c, '{script}']}}"


def test_a_child_that_leaves_a_daemon_is_restarted_and_its_daemon_stopped(
    rebeam_run: StartRun, daemon_arg: str
) -> None:
    run = rebeam_run(supervisor("s", f"    - {{name: leaver, actor: {leaver(daemon_arg)}}}\n"))
    exited = run.events.wait("exited", "leaver", incarnation=1)
    assert exited["reason"] == {"crash": {"exit_code": 3}}
    run.events.wait("started", "leaver", incarnation=2)
    # The first incarnation's daemon went with it; the second's is there.
    wait_until(lambda: len(processes_with_arg(daemon_arg)) == 1, what="one daemon left")

    tree = run.rebeam("tree", "--json")
    assert tree.returncode == 0, tree.stderr
    assert '"state": "running"' in tree.stdout

    run.signal(signal.SIGINT)
    assert run.exit_code() == 0
    assert run.events.wait("exited", "leaver", incarnation=2)["reason"] == "shutdown"
    wait_until(lambda: not processes_with_arg(daemon_arg), what="no daemon left")


def test_daemons_go_when_rebeam_run_is_sigkilled(rebeam_run: StartRun, daemon_arg: str) -> None:
    run = rebeam_run(supervisor("s", f"    - {{name: leaver, actor: {leaver(daemon_arg)}}}\n"))
    run.events.wait("started", "leaver", incarnation=2)
    wait_until(lambda: len(processes_with_arg(daemon_arg)) == 1, what="the daemon to start")

    run.signal(signal.SIGKILL)
    run.process.wait()
    wait_until(lambda: not processes_with_arg(daemon_arg), what="no daemon left")


def test_a_python_actor_s_daemon_goes_with_it(
    rebeam_run: StartRun, daemon_arg: str, tmp_path: Path
) -> None:
    # Forked from the zygote: its daemon is re-parented past the zygote, to rebeam run.
    (tmp_path / "spawner.py").write_text(
        "import subprocess\n"
        "import rebeam\n"
        "class Spawner(rebeam.Actor):\n"
        "    async def init(self, args):\n"
        f"        subprocess.Popen(['setsid', 'sleep', '{daemon_arg}'])\n"
    )
    children = "    - {name: py, actor: {module: 'spawner:Spawner'}}\n"
    run = rebeam_run(supervisor("s", children))
    run.events.wait("started", "py")
    wait_until(lambda: len(processes_with_arg(daemon_arg)) == 1, what="the daemon to start")

    stopped = run.rebeam("terminate-child", "s/py")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not processes_with_arg(daemon_arg), what="no daemon left")
