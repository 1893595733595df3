"""Ctrl-C typed into a real terminal: only ``rebeam run`` hears it, and it stops the tree in
order; a second Ctrl-C kills everything at once, and the last line says so.

A terminal sends SIGINT to its whole foreground process group, not to one pid: so these tests
run ``rebeam run`` as the session leader of a pseudo-terminal and type ``\\x03`` into it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local.conftest import (
    DEADLINE,
    REBEAM,
    EventLog,
    Terminal,
    descendants,
    in_terminal,
    supervisor,
    wait_gone,
    wait_until,
)

IDLE = "import rebeam\nclass Idle(rebeam.Actor):\n    pass\n"

# Asks to be told of SIGTERM and stays: the ordered shutdown waits for it.
DAWDLER = (
    '{command: [sh, -c, \'trap "touch asked" TERM; touch armed; '
    "while :; do sleep 300 & wait $!; done']}"
)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        terminal.stop()


def start(terminals: list[Terminal], tmp_path: Path, children: str) -> tuple[Terminal, EventLog]:
    (tmp_path / "idle.py").write_text(IDLE)
    manifest = tmp_path / "app.yaml"
    manifest.write_text(supervisor("app", children))
    events = EventLog(tmp_path / "events.jsonl")
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    # No --plain: in a terminal, rebeam run shows its live view, as it does for people.
    argv = [REBEAM, "run", str(manifest), "--namespace", f"t{os.getpid()}-ctrl-c",
            "--events", str(events.path)]  # fmt: skip
    terminal = in_terminal(argv, env, tmp_path)
    terminals.append(terminal)
    return terminal, events


def test_ctrl_c_in_a_terminal_shuts_every_actor_down_in_order(
    terminals: list[Terminal], tmp_path: Path
) -> None:
    children = (
        "    - {name: forked, actor: {module: 'idle:Idle', register: forked}}\n"
        "    - {name: sleeper, actor: {command: [sleep, '300']}}\n"
        "    - {name: last, actor: {module: 'idle:Idle'}}\n"
    )
    terminal, events = start(terminals, tmp_path, children)
    events.wait("started", "last")
    everything = descendants(terminal.process.pid)

    terminal.type(b"\x03")

    assert terminal.process.wait(DEADLINE) == 0, terminal.output()
    exits = {e["child"]: e["reason"] for e in events.poll() if e["event"] == "exited"}
    assert exits == {"forked": "shutdown", "sleeper": "shutdown", "last": "shutdown"}, exits
    assert events.poll()[-1]["event"] == "shutdown"
    wait_until(lambda: "every child was shut down in order" in terminal.output())
    assert "Traceback" not in terminal.output()
    wait_gone(everything)


def test_a_second_ctrl_c_kills_at_once_and_the_last_line_says_so(
    terminals: list[Terminal], tmp_path: Path
) -> None:
    children = (
        "    - {name: forked, actor: {module: 'idle:Idle'}}\n"
        f"    - {{name: dawdler, shutdown: 60s, actor: {DAWDLER}}}\n"
    )
    terminal, events = start(terminals, tmp_path, children)
    events.wait("started", "dawdler")
    wait_until((tmp_path / "armed").exists, what="the dawdler's trap")
    everything = descendants(terminal.process.pid)

    terminal.type(b"\x03")
    wait_until((tmp_path / "asked").exists, what="the ordered shutdown to reach the dawdler")
    terminal.type(b"\x03")

    assert terminal.process.wait(DEADLINE) == 1, terminal.output()
    wait_gone(everything)
    wait_until(lambda: "killed" in terminal.output().rsplit("rebeam:", 1)[-1])
    last = terminal.output().rsplit("rebeam:", 1)[-1]
    assert "in order" not in last, last
    assert "second" in last, last  # it says why: the second Ctrl-C
    assert "Traceback" not in terminal.output()
    reasons = {e.get("child"): e["reason"] for e in events.poll() if e["event"] == "exited"}
    assert reasons["dawdler"] == "killed", json.dumps(events.poll())
