"""The instance file of a ``rebeam run`` that was killed: the next command notices, says so
in one line, and removes it."""

from __future__ import annotations

import signal

from tests.local.conftest import SLEEPER, StartRun, supervisor


def test_a_command_after_a_sigkilled_run_says_it_is_gone_and_removes_its_file(
    rebeam_run: StartRun,
) -> None:
    run = rebeam_run(supervisor("s", f"    - {{name: a, actor: {SLEEPER}}}\n"))
    run.events.wait("started", "a")
    instance = run.instance_file()
    pid = run.process.pid
    run.signal(signal.SIGKILL)
    run.process.wait()
    assert instance.exists()  # nothing of a killed process's own cleanup ran

    result = run.rebeam("tree", timeout=15)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"rebeam: the rebeam run for namespace {run.namespace!r} (pid {pid}) is no longer "
        "running; removed its stale instance file"
    ]
    assert not instance.exists()

    again = run.rebeam("tree", timeout=15)
    assert again.returncode == 1
    assert "no rebeam run is running for namespace" in again.stderr
