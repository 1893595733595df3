"""Each incarnation writes down its OS pid as it starts: the harness's own record of which
process is which child, kept apart from rebeam's lifecycle events so that each checks the
other (a forked actor's /proc entry shows the zygote's command line, not the child's)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import rebeam
from bank.journal import Journal


def born(directory: str, path: str, pid: rebeam.Pid) -> None:
    journal = Journal(Path(directory) / "births.jsonl")
    try:
        journal.append({"path": path, "pid": str(pid), "os_pid": os.getpid(), "t": time.time()})
    finally:
        journal.close()
