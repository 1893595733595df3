"""A restarted child registers its name before its init runs (the runtime contract), so a
caller can reach it during init; as in OTP, the message waits until init has returned.

Handled during init, it met an actor without its state: the demo's restarted counter
crashed on the driver's first call (AttributeError), and the supervisor gave up."""

from __future__ import annotations

import time
from pathlib import Path

from tests.local.conftest import DEADLINE, StartRun, supervisor

SLOW_INIT = """
import asyncio
import rebeam

class SlowInit(rebeam.Actor):
    async def init(self, args):
        await asyncio.sleep(3)
        self.state = "initialised"

    async def handle_call(self, message, from_):
        return self.state
"""


def test_a_call_during_init_waits_for_init(rebeam_run: StartRun, tmp_path: Path) -> None:
    (tmp_path / "slowinit.py").write_text(SLOW_INIT)
    children = "    - {name: slow, actor: {module: 'slowinit:SlowInit', register: slow}}\n"
    run = rebeam_run(supervisor("app", children))
    run.wait_ready()
    deadline = time.monotonic() + DEADLINE
    while True:  # until the name is there (registered before init), then once more
        answer = run.rebeam("call", "slow", '"state?"')
        if "no process is registered" not in answer.stderr:
            break
        assert time.monotonic() < deadline, "slow never registered its name"
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == '"initialised"'
    assert not [e for e in run.events.poll() if e["event"] == "exited"], run.events.poll()
