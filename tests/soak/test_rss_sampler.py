"""The soak's memory samples come at the set interval (RSS_EVERY) for every process of the
run, also while the soak's own process is too busy to look: here its GIL is held for
seconds on end by one long call, as the test kubelet and the control plane's clients hold it
in the Kubernetes soak."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.soak import procs
from tests.soak.observer import RSS_EVERY, Observer

HELD = 2.5  # seconds the GIL is held at a time: five sampling intervals
LATE = 3 * RSS_EVERY  # the most two samples of a process may be apart on a busy machine
# Popen returns once the child's execve has closed its close-on-exec pipe, which the kernel
# does before it sets up the new program's arguments: for a moment after, the child's
# /proc cmdline reads empty (35 of 200 tries here). The family is told only once each
# child's arguments can be read, or a marker test would race the exec.
FAMILY = (
    "import subprocess, sys, time\n"
    "kids = [subprocess.Popen(['sleep', arg]) for arg in sys.argv[1:]]\n"
    "deadline = time.monotonic() + 30\n"
    "for kid in kids:\n"
    "    while not open(f'/proc/{kid.pid}/cmdline', 'rb').read():\n"
    "        assert time.monotonic() < deadline, f'{kid.pid} never showed its arguments'\n"
    "        time.sleep(0.001)\n"
    "print(' '.join(str(k.pid) for k in kids), flush=True)\n"
    "time.sleep(120)\n"
)


@contextlib.contextmanager
def family(*sleeps: str) -> Iterator[tuple[int, list[int]]]:
    """A root process and its children, ``sleep`` of each of ``sleeps``: the root's pid and
    theirs; each killed by its pid at the end."""
    root = subprocess.Popen(
        [sys.executable, "-c", FAMILY, *sleeps], stdout=subprocess.PIPE, text=True
    )
    try:
        assert root.stdout is not None
        kids = [int(p) for p in root.stdout.readline().split()]
        try:
            yield root.pid, kids
        finally:
            for os_pid in kids:
                if procs.alive(os_pid):
                    os.kill(os_pid, signal.SIGKILL)
    finally:
        root.kill()
        root.wait()


def hold_the_gil(seconds: float) -> None:
    """One call into C that does not let go of the GIL for about ``seconds`` (scaled from a
    short one timed now): no other thread of this process runs meanwhile."""
    start = time.monotonic()
    sum(range(10**6))
    per_million = max(time.monotonic() - start, 1e-4)
    sum(range(int(seconds / per_million * 10**6)))


def test_every_process_is_sampled_at_the_interval_while_the_gil_is_held(
    tmp_path: Path,
) -> None:
    with family("120", "120", "120") as (root, kids):
        observer = Observer(run_pid=root, data=tmp_path, events=tmp_path / "events.jsonl")
        try:
            observer.start()
            began = time.time()
            for _ in range(2):
                hold_the_gil(HELD)
                time.sleep(0.2)  # the observer's thread may run a moment
            ended = time.time()
            observer.sample()
        finally:
            observer.stop()
    assert observer.failure is None
    for os_pid in [root, *kids]:
        times = sorted(t for t, _, p, _ in observer.rss if p == os_pid)
        assert times, f"process {os_pid} was never sampled"
        assert times[0] <= began + LATE, f"process {os_pid}: first sampled late"
        assert times[-1] >= ended - LATE, f"process {os_pid}: last sampled early"
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps) <= LATE, f"process {os_pid}: samples {max(gaps):.2f}s apart"
    assert {label for _, label, p, _ in observer.rss if p == root} == {"rebeam run"}
    assert {label for _, label, p, _ in observer.rss if p in kids} == {"other"}


def test_a_marker_picks_the_family_among_the_root_s_children() -> None:
    """As on Kubernetes: the pods' runtimes among the harness's other children."""
    with family("120", "121") as (root, kids):
        assert sorted(procs.family(root)) == sorted(kids)
        assert procs.family(root, "121") == [kids[1]]
