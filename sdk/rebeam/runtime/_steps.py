"""Timestamps of a restart's steps, to see where its time goes (docs/sdk.md, "Performance",
where a restart's time went; ``python -m benchmarks.bench_restart --steps``).

Off unless ``REBEAM_RESTART_STEPS`` names a file; then each step appends one line,
``<monotonic ns> <process CPU ns> <OS pid> <incarnation> <step>``. CLOCK_MONOTONIC is one
clock for every process of a Linux machine, so the lines that ``rebeam run`` and the actor
write line up; the CPU time (a forked child's starts at zero) tells the work a step did from
its wait for a busy machine's cores. Off, a step costs one comparison; on, one small append
(atomic under O_APPEND).
"""

from __future__ import annotations

import os
import time

__all__ = ["ON", "mark"]

_PATH = os.environ.get("REBEAM_RESTART_STEPS") or None
ON = _PATH is not None


def mark(step: str, incarnation: int, at_ns: int | None = None) -> None:
    """Note that ``incarnation``'s ``step`` happened now, or at ``at_ns`` (a monotonic time
    taken before the incarnation was known), when steps are recorded."""
    if _PATH is None:
        return
    fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        now = time.monotonic_ns() if at_ns is None else at_ns
        line = f"{now} {time.process_time_ns()} {os.getpid()} {incarnation} {step}"
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)
