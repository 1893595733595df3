"""Ordered shutdown: reverse start order, each child's shutdown time, then SIGKILL."""

from __future__ import annotations

import signal
import time

from tests.local.conftest import SLEEPER, Run, StartRun, supervisor, wait_until

# Ignores SIGTERM (and so does its sleep: ignored signals are inherited), then says so by
# creating a file, since a command child counts as started as soon as it is spawned.
STUBBORN = "{command: [sh, -c, 'trap \"\" TERM; touch armed; sleep 300']}"


def wait_armed(run: Run) -> None:
    armed = run.events.path.parent / "armed"
    wait_until(armed.exists, what="the stubborn child's trap")


def test_sigterm_stops_children_in_reverse_start_order_and_exits_zero(rebeam_run: StartRun) -> None:
    children = "".join(f"    - {{name: {n}, actor: {SLEEPER}}}\n" for n in "abc")
    run = rebeam_run(supervisor("s", children))
    run.events.wait("started", "c")
    mark = len(run.events.poll())
    run.signal(signal.SIGTERM)
    assert run.exit_code() == 0
    assert run.events.lines(mark) == ["exited c#1", "exited b#1", "exited a#1", "shutdown s"]
    assert {e["reason"] for e in run.events.since(mark)} == {"shutdown"}


def test_a_child_that_ignores_sigterm_is_killed_after_its_shutdown_time(
    rebeam_run: StartRun,
) -> None:
    children = (
        f"    - {{name: polite, actor: {SLEEPER}}}\n"
        f"    - {{name: stubborn, shutdown: 1s, actor: {STUBBORN}}}\n"
    )
    run = rebeam_run(supervisor("s", children))
    run.events.wait("started", "stubborn")
    wait_armed(run)
    asked = time.monotonic()
    run.signal(signal.SIGTERM)
    exited = run.events.wait("exited", "stubborn")
    waited = time.monotonic() - asked
    assert exited["reason"] == "killed"
    assert waited >= 1.0  # it had its full shutdown time before SIGKILL
    assert run.events.wait("exited", "polite")["reason"] == "shutdown"  # stopped after it
    assert run.exit_code() == 0


def test_brutal_kill_is_sigkill_at_once(rebeam_run: StartRun) -> None:
    children = f"    - {{name: x, shutdown: brutal_kill, actor: {STUBBORN}}}\n"
    run = rebeam_run(supervisor("s", children))
    run.events.wait("started", "x")
    wait_armed(run)
    run.signal(signal.SIGINT)
    assert run.events.wait("exited", "x")["reason"] == "killed"
    assert run.exit_code() == 0
