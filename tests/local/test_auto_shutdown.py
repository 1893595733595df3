"""Significant children end the tree (autoShutdown), and rebeam run with it."""

from __future__ import annotations

from tests.local.conftest import SLEEPER, StartRun, supervisor


def test_any_significant_child_ending_normally_ends_the_run_with_exit_zero(
    rebeam_run: StartRun,
) -> None:
    children = (
        f"    - {{name: worker, actor: {SLEEPER}}}\n"
        "    - {name: job, restart: transient, significant: true,"
        " actor: {command: [sh, -c, 'exit 0']}}\n"
    )
    run = rebeam_run(supervisor("batch", children, autoShutdown="any_significant"))
    assert run.exit_code() == 0
    assert "batch shut down: significant child job exited (normal)" in run.stderr()
    assert run.events.lines()[-3:] == ["exited job#1", "exited worker#1", "shutdown batch"]


def test_all_significant_waits_for_every_significant_child(rebeam_run: StartRun) -> None:
    quick = "{command: [sh, -c, 'exit 0']}"
    slow = "{command: [sh, -c, 'while [ ! -e go ]; do sleep 0.05; done']}"
    children = (
        f"    - {{name: quick, restart: temporary, significant: true, actor: {quick}}}\n"
        f"    - {{name: slow, restart: temporary, significant: true, actor: {slow}}}\n"
    )
    run = rebeam_run(supervisor("all", children, autoShutdown="all_significant"))
    run.events.wait("exited", "quick")
    assert run.process.poll() is None  # slow is still there: the tree stays up
    (run.events.path.parent / "go").touch()
    assert run.exit_code() == 0
