"""Restart intensity with real processes: a crash loop gives up; giving up escalates."""

from __future__ import annotations

from tests.local.conftest import SLEEPER, StartRun, supervisor

CRASHER = "{command: [sh, -c, 'exit 7']}"


def test_a_crash_loop_ends_in_give_up_and_a_nonzero_exit(rebeam_run: StartRun) -> None:
    children = f"    - {{name: ok, actor: {SLEEPER}}}\n    - {{name: bad, actor: {CRASHER}}}\n"
    run = rebeam_run(supervisor("loop", children, intensity=2, period="30s"))
    gave_up = run.events.wait("gave_up", "bad")
    assert gave_up["reason"] == {"crash": {"exit_code": 7}}
    assert run.exit_code() == 1
    assert "loop gave up: bad needed more than 2 restarts in 30s" in run.stderr()
    starts = [e for e in run.events.poll() if e["event"] == "started" and e["child"] == "bad"]
    assert len(starts) == 3  # the first start and two restarts; the third restart is refused
    assert run.events.lines()[-2:] == ["exited ok#1", "shutdown loop"]


def test_escalation_through_two_levels(rebeam_run: StartRun) -> None:
    # The inner supervisor gives up at once (intensity 0) and exits shutdown; the middle one
    # restarts it (permanent), once (intensity 1); the next give-up exceeds the middle's
    # intensity, so it gives up too; the root, intensity 0, gives up at once: rebeam run ends.
    children = (
        "    - name: middle\n"
        "      supervisor:\n"
        "        intensity: 1\n"
        "        period: 60s\n"
        "        children:\n"
        "          - name: inner\n"
        "            supervisor:\n"
        "              intensity: 0\n"
        f"              children: [{{name: w, actor: {CRASHER}}}]\n"
    )
    run = rebeam_run(supervisor("root", children, intensity=0))
    assert run.exit_code() == 1
    gave_up = [(e["supervisor"], e["child"]) for e in run.events.poll() if e["event"] == "gave_up"]
    assert gave_up == [
        ("root/middle/inner", "w"),
        ("root/middle/inner", "w"),
        ("root/middle", "inner"),
        ("root", "middle"),
    ]
    assert "root gave up: middle needed more than 0 restarts" in run.stderr()
