"""Actors under ``rebeam run`` run on uvloop when it is installed (rebeam[fast]), and on
asyncio's loop with REBEAM_LOOP=asyncio in the run's environment; ``rebeam run`` itself
starts either way (it stays on asyncio's loop: it reaps children on SIGCHLD)."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest

from tests.local.conftest import DEADLINE, StartRun, supervisor

WHICH_LOOP = """
import asyncio
import rebeam

class WhichLoop(rebeam.Actor):
    async def handle_call(self, message, from_):
        return type(asyncio.get_running_loop()).__module__.split(".")[0]
"""


def _loop_of_the_actor(rebeam_run: StartRun, tmp_path: Path) -> str:
    (tmp_path / "whichloop.py").write_text(WHICH_LOOP)
    children = "    - {name: which, actor: {module: 'whichloop:WhichLoop', register: which}}\n"
    run = rebeam_run(supervisor("app", children))
    run.events.wait("started", "which", incarnation=1)
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = run.rebeam("call", "which", '"loop?"')
        if answer.returncode == 0 or time.monotonic() > deadline:
            break
    assert answer.returncode == 0, answer.stderr
    loop: str = json.loads(answer.stdout)
    return loop


@pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop (rebeam[fast]) is not installed"
)
def test_actors_run_on_uvloop_when_installed(
    rebeam_run: StartRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REBEAM_LOOP", raising=False)
    assert _loop_of_the_actor(rebeam_run, tmp_path) == "uvloop"


def test_rebeam_loop_asyncio_turns_it_off(
    rebeam_run: StartRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REBEAM_LOOP", "asyncio")
    assert os.environ["REBEAM_LOOP"] == "asyncio"  # the run and its actors inherit it
    assert _loop_of_the_actor(rebeam_run, tmp_path) == "asyncio"
