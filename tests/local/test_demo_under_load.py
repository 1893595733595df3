"""``make demo`` ends the same way on a busy machine: one crash asked for, one restart, exit 0.

Its supervisor allows 3 restarts in 10 s and every child's restart counts. On a busy machine
the driver's first call could reach the restarted counter while its init was still running
(its name is registered before init), and crash it; the driver crashed on that error (or on
its 1 s patience running out), and each restarted driver asked for another crash, until the
supervisor gave up. Now no message is handled before init returns, the driver waits out slow
answers, and it asks for one crash per run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.conftest import DEADLINE, REBEAM

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo"
LAST_LINE = "rebeam: hello shut down: significant child driver exited (normal)"

# The demo's counter, slow to answer its first call after a restart: what a busy machine
# does to a freshly started process (longer than the old driver's 1 s patience).
SLOW_COUNTER = """
import asyncio
from hello.counter import Counter

class SlowCounter(Counter):
    async def handle_call(self, message, from_):
        if self.pid.incarnation > 1 and not getattr(self, "was_slow", False):
            self.was_slow = True
            await asyncio.sleep(1.5)
        return await super().handle_call(message, from_)
"""


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """A busy loop per core, for the length of the test, each stopped by its pid."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.send_signal(signal.SIGKILL)
            loop.wait()


def run_demo(tmp_path: Path, manifest: Path, n: int) -> list[dict[str, object]]:
    events = tmp_path / f"events{n}.jsonl"
    result = subprocess.run(
        [REBEAM, "run", str(manifest), "--plain", "--namespace", f"t{os.getpid()}-demo{n}",
         "--events", str(events)],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"),
                 PYTHONPATH=str(DEMO)),
        cwd=tmp_path,
        check=False,
    )  # fmt: skip
    found = [json.loads(line) for line in events.read_text().splitlines()]
    story = "\n".join([result.stdout, result.stderr, *map(json.dumps, found)])
    assert result.returncode == 0, story
    assert result.stderr.splitlines()[-1] == LAST_LINE, story
    ends = [(e.get("child"), e.get("incarnation")) for e in found if e["event"] == "exited"]
    assert len(ends) == len(set(ends)), f"an incarnation exited twice:\n{story}"
    assert crashes_of(found, "counter") == 1, f"the counter did not crash exactly once:\n{story}"
    assert crashes_of(found, "driver") == 0, f"the driver crashed:\n{story}"
    return found


def crashes_of(events: list[dict[str, object]], child: str) -> int:
    return sum(
        1
        for e in events
        if e["event"] == "exited" and e.get("child") == child and "crash" in str(e["reason"])
    )


def test_the_demo_ends_the_same_way_five_times_with_the_cpu_busy(
    busy_cpu: None, tmp_path: Path
) -> None:
    for n in range(5):
        run_demo(tmp_path, DEMO / "app.yaml", n)  # asserts one counter crash, no driver crash


def test_a_counter_slow_to_answer_after_its_restart_is_waited_for(tmp_path: Path) -> None:
    (tmp_path / "slowcounter.py").write_text(SLOW_COUNTER)
    manifest = tmp_path / "app.yaml"
    manifest.write_text(
        (DEMO / "app.yaml").read_text().replace("hello.counter:Counter", "slowcounter:SlowCounter")
    )
    run_demo(tmp_path, manifest, 0)  # the crash asked for once, not once per driver
