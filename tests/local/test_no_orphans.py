"""No orphans, ever: rebeam run killed with SIGKILL takes every child, every grandchild and
its private nats-server with it."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

from tests.local.conftest import (
    SLEEPER,
    Run,
    StartRun,
    alive,
    descendants,
    supervisor,
    wait_gone,
    wait_until,
)


def test_sigkill_of_rebeam_run_leaves_no_process_behind(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    (tmp_path / "idle.py").write_text("import rebeam\nclass Idle(rebeam.Actor):\n    pass\n")
    children = (
        "    - {name: py, actor: {module: 'idle:Idle'}}\n"  # forked from the zygote
        f"    - {{name: a, actor: {SLEEPER}}}\n"
        # a shell with a child of its own: only a process-group kill reaches the grandchild
        "    - {name: family, actor: {command: [sh, -c, 'sleep 300 & sleep 300; wait']}}\n"
        "    - name: sub\n"
        "      supervisor:\n"
        f"        children: [{{name: b, actor: {SLEEPER}}}]\n"
    )
    run = rebeam_run(supervisor("s", children))
    run.events.wait("started", "sub")
    everything = descendants(run.process.pid)
    # the nats-server, the reaper, the zygote and its child, four sleeps and a shell at least
    assert len(everything) >= 9, everything
    scratch = [p for p in Path(tempfile.gettempdir()).glob("rebeam-run-*") if _owned_by(p, run)]
    assert len(scratch) == 1
    run.signal(signal.SIGKILL)
    run.process.wait()
    wait_gone(everything)
    assert not any(alive(p) for p in everything)
    wait_until(lambda: not any(p.exists() for p in scratch), what="the scratch folder to go")


def _owned_by(folder: Path, run: Run) -> bool:
    """Whether the private nats-server of ``run`` keeps its store in ``folder``."""
    return any(
        str(folder) in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
        for p in descendants(run.process.pid)
        if Path(f"/proc/{p}/cmdline").exists()
    )
