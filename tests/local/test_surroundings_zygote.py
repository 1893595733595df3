"""The zygote (the process Python actors are forked from) killed under a running tree: its
actors went with it, their supervisor hears so and restarts them, and the tree carries on."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from tests.local.conftest import COUNTER, StartRun, descendants, supervisor


def zygote_of(root: int) -> int:
    """The zygote: a child of ``root`` (the actors forked from it share its command line)."""
    (found,) = [
        p
        for p in descendants(root)
        if b"rebeam.local.zygote" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(root)
    ]
    return found


def test_a_killed_zygote_s_actors_are_restarted(rebeam_run: StartRun, tmp_path: Path) -> None:
    (tmp_path / "counting.py").write_text(COUNTER)
    children = "    - {name: counter, actor: {module: 'counting:Counter', register: counter}}\n"
    run = rebeam_run(supervisor("app", children))
    first = run.events.wait("started", "counter")
    run.wait_ready()

    os.kill(zygote_of(run.process.pid), signal.SIGKILL)

    exited = run.events.wait("exited", "counter", incarnation=1)
    assert exited["reason"] == "killed"
    second = run.events.wait("started", "counter", incarnation=2)
    assert second["os_pid"] != first["os_pid"]
    called = run.rebeam("call", "counter", "{}")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"n": 1}

    run.signal(signal.SIGTERM)
    assert run.exit_code() == 0
    assert run.events.wait("exited", "counter", incarnation=2)["reason"] == "shutdown"
    out, err = run.stdout(), run.stderr()
    assert "Traceback" not in out + err, out + err
