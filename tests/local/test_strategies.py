"""kill -9 of a child under each strategy: the right children restarted, in OTP's order."""

from __future__ import annotations

import signal

from tests.local.conftest import SLEEPER, Run, StartRun, kill_os_pid, supervisor

CHILDREN = "".join(f"    - {{name: {n}, actor: {SLEEPER}}}\n" for n in ("a", "b", "c", "d"))


def start_and_kill_b(rebeam_run: StartRun, strategy: str) -> tuple[Run, int]:
    run = rebeam_run(supervisor("s", CHILDREN, strategy=strategy))
    started = {n: run.events.wait("started", n) for n in "abcd"}
    mark = len(run.events.poll())
    kill_os_pid(started["b"]["os_pid"], signal.SIGKILL)
    return run, mark


def test_one_for_one_restarts_only_the_killed_child(rebeam_run: StartRun) -> None:
    run, mark = start_and_kill_b(rebeam_run, "one_for_one")
    run.events.wait("started", "b", incarnation=2)
    assert run.events.lines(mark) == ["exited b#1", "restarting b", "started b#2"]
    assert run.events.since(mark)[0]["reason"] == "killed"


def test_one_for_all_stops_the_rest_newest_first_then_starts_all_in_order(
    rebeam_run: StartRun,
) -> None:
    run, mark = start_and_kill_b(rebeam_run, "one_for_all")
    run.events.wait("started", "d", incarnation=2)
    assert run.events.lines(mark) == [
        "exited b#1",
        "restarting b",
        "exited d#1",
        "exited c#1",
        "exited a#1",
        "started a#2",
        "started b#2",
        "started c#2",
        "started d#2",
    ]
    bystanders = [e["reason"] for e in run.events.since(mark)[2:5]]
    assert bystanders == ["shutdown"] * 3


def test_rest_for_one_restarts_the_killed_child_and_those_after_it(rebeam_run: StartRun) -> None:
    run, mark = start_and_kill_b(rebeam_run, "rest_for_one")
    run.events.wait("started", "d", incarnation=2)
    assert run.events.lines(mark) == [
        "exited b#1",
        "restarting b",
        "exited d#1",
        "exited c#1",
        "started b#2",
        "started c#2",
        "started d#2",
    ]


def test_a_nested_supervisor_is_restarted_as_a_whole_by_one_for_all(rebeam_run: StartRun) -> None:
    children = (
        f"    - {{name: front, actor: {SLEEPER}}}\n"
        "    - name: storage\n"
        "      supervisor:\n"
        f"        children: [{{name: db, actor: {SLEEPER}}}, {{name: cache, actor: {SLEEPER}}}]\n"
    )
    run = rebeam_run(supervisor("shop", children, strategy="one_for_all"))
    front = run.events.wait("started", "front")
    run.events.wait("started", "storage")
    mark = len(run.events.poll())
    kill_os_pid(front["os_pid"])
    run.events.wait("started", "storage", incarnation=2)
    # The nested supervisor stops its own children in reverse, then exits shutdown.
    assert run.events.lines(mark) == [
        "exited front#1",
        "restarting front",
        "exited cache#1",
        "exited db#1",
        "shutdown shop/storage",
        "exited storage#1",
        "started front#2",
        "started db#2",
        "started cache#2",
        "started storage#2",
    ]
