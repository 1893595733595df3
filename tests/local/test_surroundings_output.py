"""A child's output can never stall supervision: a line too long is cut with a marker, and a
terminal (here: a pipe) that nobody reads blocks nothing but the lines themselves."""

from __future__ import annotations

import signal
import sys
import time

from rebeam.local.output import CUT_MARKER
from tests.local.conftest import StartRun, supervisor

# Prints a 1 MiB line (no newline until its end) and crashes; its next incarnation stays.
LONG_LINE = (
    "import os, sys, time\n"
    "if os.path.exists('printed'):\n"
    "    time.sleep(300)\n"
    "open('printed', 'w').close()\n"
    "sys.stdout.write('x' * (1 << 20) + '\\n')\n"
    "sys.stdout.flush()\n"
    "sys.exit(3)\n"
)

# Prints 4 MiB, more than every buffer between it and a reader that never comes, then stays.
FLOOD = (
    "import sys, time\n"
    "for _ in range(4096):\n"
    "    print('y' * 1023)\n"
    "sys.stdout.flush()\n"
    "time.sleep(300)\n"
)


def command(source: str) -> str:
    return f"{{command: [{sys.executable}, -c, {source!r}]}}".replace("\n", "\\n")


def test_a_line_longer_than_the_limit_is_cut_and_the_child_still_restarts(
    rebeam_run: StartRun,
) -> None:
    run = rebeam_run(supervisor("s", f"    - {{name: long, actor: {command(LONG_LINE)}}}\n"))
    exited = run.events.wait("exited", "long", incarnation=1)
    assert exited["reason"] == {"crash": {"exit_code": 3}}
    run.events.wait("started", "long", incarnation=2)

    stopped = run.rebeam("terminate-child", "s/long", timeout=15)
    assert stopped.returncode == 0, stopped.stderr
    run.signal(signal.SIGTERM)
    assert run.exit_code() == 0
    out, err = run.stdout(), run.stderr()
    (cut,) = [line for line in out.splitlines() if line.startswith("s/long | ")]
    assert cut.endswith(CUT_MARKER)
    assert len(cut) < 20_000
    assert "internal error" not in err, err
    assert "Traceback" not in err, err


def test_output_nobody_reads_does_not_stall_supervision(rebeam_run: StartRun) -> None:
    # rebeam_run's stdout is a pipe this test does not read until the end.
    run = rebeam_run(supervisor("s", f"    - {{name: flood, actor: {command(FLOOD)}}}\n"))
    run.events.wait("started", "flood")
    run.wait_ready()
    tree = run.rebeam("tree", timeout=15)  # the flood is under way or done: either way
    assert tree.returncode == 0, tree.stderr
    asked = time.monotonic()
    stopped = run.rebeam("terminate-child", "s/flood", timeout=15)
    assert stopped.returncode == 0, stopped.stderr
    assert time.monotonic() - asked < 10
    assert run.events.wait("exited", "flood")["reason"] == "shutdown"
    run.signal(signal.SIGTERM)
    assert run.exit_code() == 0
