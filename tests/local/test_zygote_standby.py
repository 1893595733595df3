"""The zygote's standby: one child forked ahead of need, which the next start of a Python
actor takes over. Until then it has no identity: no NATS connection, no slot, no lease; it
is nobody's child in the tree (killed from outside, it is replaced, not reported), and it
dies with the zygote."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from rebeam.local.zygote import _fits, _hint_of
from tests.local.conftest import (
    COUNTER,
    Run,
    StartRun,
    alive,
    descendants,
    supervisor,
    wait_gone,
    wait_until,
)
from tests.local.test_surroundings_zygote import zygote_of

CHILDREN = "    - {name: counter, actor: {module: 'counting:Counter', register: counter}}\n"


def children_of(parent: int) -> set[int]:
    return {
        p
        for p in descendants(parent)
        if alive(p)
        and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(parent)
    }


def standby_of(zygote: int, running: set[int]) -> int:
    """The zygote's child that is not one of the ``running`` actors, once there is one."""
    found: list[int] = []

    def one() -> bool:
        found[:] = children_of(zygote) - running
        return len(found) == 1

    wait_until(one, what=f"a standby below the zygote {zygote}")
    return found[0]


def tcp_sockets_of(os_pid: int) -> set[str]:
    """The inodes of the TCP sockets ``os_pid`` has open (a NATS connection is one)."""
    tcp = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            tcp |= {line.split()[9] for line in list(f)[1:]}
    mine = set()
    for fd in os.listdir(f"/proc/{os_pid}/fd"):
        target = os.readlink(f"/proc/{os_pid}/fd/{fd}")
        if target.startswith("socket:["):
            mine.add(target[len("socket:[") : -1])
    return mine & tcp


def counter_run(
    rebeam_run: StartRun, tmp_path: Path, module: str = COUNTER
) -> tuple[Run, int, int]:
    """A run of one counter actor from ``module``, ready: the run, the actor's OS pid and
    its zygote's."""
    (tmp_path / "counting.py").write_text(module)
    run = rebeam_run(supervisor("app", CHILDREN))
    first = run.events.wait("started", "counter")["os_pid"]
    run.wait_ready()
    return run, first, zygote_of(run.process.pid)


def stopped_cleanly(run: Run) -> str:
    """Stop ``run`` with SIGTERM, check it ended well and said no traceback; its output."""
    run.signal(signal.SIGTERM)
    assert run.exit_code() == 0
    said = run.stdout() + run.stderr()
    assert "Traceback" not in said, said
    return said


def test_a_restart_takes_over_the_standby(rebeam_run: StartRun, tmp_path: Path) -> None:
    run, first, zygote = counter_run(rebeam_run, tmp_path)
    standby = standby_of(zygote, {first})
    assert not tcp_sockets_of(standby), "a standby has no NATS connection"
    assert b"REBEAM_PID" not in Path(f"/proc/{standby}/environ").read_bytes()

    os.kill(first, signal.SIGKILL)

    second = run.events.wait("started", "counter", incarnation=2)
    assert second["os_pid"] == standby
    called = run.rebeam("call", "counter", "{}")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"n": 1}
    # and another one stands by for the next restart
    assert standby_of(zygote, {standby}) not in (first, standby)

    stopped_cleanly(run)


def test_a_standby_killed_before_use_is_replaced_not_reported(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    run, first, zygote = counter_run(rebeam_run, tmp_path)
    standby = standby_of(zygote, {first})

    os.kill(standby, signal.SIGKILL)

    replacement = standby_of(zygote, {first, standby})
    assert replacement != standby
    # nothing of the tree ended: the actor is still its first incarnation, and answers
    called = run.rebeam("call", "counter", "{}")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"n": 1}
    assert not [e for e in run.events.poll() if e["event"] == "exited"]
    os.kill(first, signal.SIGKILL)
    assert run.events.wait("started", "counter", incarnation=2)["os_pid"] == replacement

    stopped_cleanly(run)


def test_the_standby_dies_with_the_zygote(rebeam_run: StartRun, tmp_path: Path) -> None:
    run, first, zygote = counter_run(rebeam_run, tmp_path)
    standby = standby_of(zygote, {first})

    os.kill(zygote, signal.SIGKILL)

    wait_gone([standby, first])
    run.events.wait("started", "counter", incarnation=2)
    run.signal(signal.SIGTERM)
    assert run.exit_code() == 0


# Its module notes each import (by the OS pid that imported it) and says so on its output.
NOTING = f"""\
import os, pathlib, sys
with open(pathlib.Path(__file__).with_name("imports"), "a") as log:
    log.write(f"{{os.getpid()}}\\n")
print("imported in", os.getpid(), flush=True)
{COUNTER}"""


def test_the_standby_has_imported_the_actor_s_module_before_use(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    imports = tmp_path / "imports"
    run, first, zygote = counter_run(rebeam_run, tmp_path, NOTING)

    def prepared() -> bool:  # a standby that has imported the module the last start ran
        standbys = children_of(zygote) - {first}
        noted = {int(p) for p in imports.read_text().split()} if imports.exists() else set()
        return len(standbys) == 1 and standbys <= noted

    wait_until(prepared, what="a standby that imported counting before it was used")
    standby = standby_of(zygote, {first})
    assert not tcp_sockets_of(standby), "a standby has no NATS connection"

    os.kill(first, signal.SIGKILL)

    assert run.events.wait("started", "counter", incarnation=2)["os_pid"] == standby
    called = run.rebeam("call", "counter", "{}")
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"n": 1}
    # imported once by the process that became the actor, and what it printed is its output
    assert imports.read_text().split().count(str(standby)) == 1
    said = stopped_cleanly(run)
    assert f"imported in {standby}" in said, said


def _start_of(incarnation: int, **changes: Any) -> dict[str, Any]:
    """A zygote start request, as rebeam run sends one for incarnation ``incarnation``."""
    env = {
        "PYTHONPATH": "/app",
        "REBEAM_NAME": "counter",
        "REBEAM_PID": f"ns.app.{incarnation}",
        "REBEAM_CREDENTIALS_FILE": f"/run/{incarnation}.cred",
        **changes.pop("env", {}),
    }
    argv = [changes.pop("target", "counting:Counter"), "--args", "null", "--ready-fd",
            "{ready_fd}", "--exit-record", f"/run/{incarnation}.json"]  # fmt: skip
    return {"argv": argv, "env": env, "cwd": changes.pop("cwd", "/app"), "output": True}


def test_a_prepared_standby_fits_only_a_start_like_the_one_it_prepared_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("REBEAM_LOOP", raising=False)
    hint = _hint_of(_start_of(1))
    assert hint is not None
    assert "REBEAM_PID" not in hint["env"]
    assert "REBEAM_CREDENTIALS_FILE" not in hint["env"]
    assert _fits(hint, _start_of(2))  # the next incarnation of the same child
    assert _fits(None, _start_of(2))  # a standby that imported nothing fits any start
    assert not _fits(hint, _start_of(2, target="other:Actor"))
    assert not _fits(hint, _start_of(2, cwd="/elsewhere"))
    assert not _fits(hint, _start_of(2, env={"SETTING": "changed"}))
    # its event loop was made as the zygote's environment says, not the start's
    assert not _fits(None, _start_of(2, env={"REBEAM_LOOP": "asyncio"}))
