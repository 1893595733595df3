"""When NATS goes away: the private nats-server is restarted (within a budget); a run on a
NATS of its own that is gone stays quiet, and commands against it fail fast in one line.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from rebeam.natsd import NatsServer, ServerOptions
from tests.local.conftest import COUNTER, SLEEPER, Run, StartRun, alive, supervisor, wait_until

FAST = 8.0  # what "within a few seconds" means for a command that cannot reach NATS


def instance(run: Run) -> dict[str, object]:
    return run.instance()


def server_pid(run: Run, not_this: int | None = None) -> int:
    """The private nats-server's pid, from the instance file (once it names a new one)."""
    wait_until(
        lambda: instance(run).get("nats_pid") not in (None, not_this),
        what="the instance file to name a new nats-server",
    )
    pid = instance(run)["nats_pid"]
    assert isinstance(pid, int)
    return pid


def no_traceback(run: Run) -> None:
    run.signal(signal.SIGTERM)
    run.exit_code()
    out, err = run.stdout(), run.stderr()
    assert "Traceback" not in out + err, out + err


def test_a_killed_private_nats_server_is_restarted_and_the_tree_carries_on(
    rebeam_run: StartRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What is tested is the keeper, not the lease: on a busy machine, the restart and the
    # reconnection can take longer than the default lease TTL (15 s), after which an actor is
    # declared lost and stops with noconnection, as it must (docs/architecture.md on leases).
    monkeypatch.setenv("REBEAM_LEASE_TTL", "120")
    (tmp_path / "counting.py").write_text(COUNTER)
    children = (
        "    - {name: counter, actor: {module: 'counting:Counter', register: counter}}\n"
        f"    - {{name: idle, actor: {SLEEPER}}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    run.events.wait("started", "idle")
    run.wait_ready()
    assert run.rebeam("call", "counter", "{}").returncode == 0

    old = server_pid(run)
    os.kill(old, signal.SIGKILL)
    new = server_pid(run, not_this=old)
    assert not alive(old)  # reaped: no zombie left

    deadline = time.monotonic() + 30
    while (called := run.rebeam("call", "counter", "{}")).returncode != 0:
        assert time.monotonic() < deadline, called.stderr
    assert json.loads(called.stdout) == {"n": 2}  # the same incarnation: it never went down
    # rebeam run reconnects on its own schedule, not the actor's: its answers come back too.
    while (tree := run.rebeam("tree", "--json")).returncode != 0:
        assert time.monotonic() < deadline + 30, tree.stderr
    assert alive(new)
    assert run.process.poll() is None
    no_traceback(run)


def test_a_private_nats_server_that_keeps_dying_ends_the_tree(
    rebeam_run: StartRun,
) -> None:
    run = rebeam_run(supervisor("app", f"    - {{name: idle, actor: {SLEEPER}}}\n"))
    run.events.wait("started", "idle")
    run.wait_ready()
    pid = server_pid(run)
    for _ in range(3):  # the budget: three restarts
        os.kill(pid, signal.SIGKILL)
        pid = server_pid(run, not_this=pid)
    os.kill(pid, signal.SIGKILL)

    assert run.exit_code() == 1
    assert run.events.wait("exited", "idle")["reason"] == "shutdown"
    err = run.stderr()
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("rebeam: the private nats-server"), last
    assert "4 times within 30s" in last, last


REFUSED = "connection refused (is the server running?)"


def test_commands_against_a_run_whose_nats_is_gone_fail_fast(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    # A run on a NATS of its own (--nats): when that server goes, nobody restarts it.
    server = NatsServer.start(tmp_path / "nats", ServerOptions(namespaces=("gone",)))
    try:
        run = rebeam_run(
            supervisor("app", f"    - {{name: idle, actor: {SLEEPER}}}\n"),
            "--nats",
            server.url,
            "--issuer",
            str(tmp_path / "nats" / "issuer.json"),
            namespace="gone",
        )
        run.events.wait("started", "idle")
        run.wait_ready()
    finally:
        server.stop()
    for command in (("tree",), ("terminate-child", "app/idle"), ("call", "x", "{}")):
        asked = time.monotonic()
        result = run.rebeam(*command, timeout=FAST + 5)
        assert time.monotonic() - asked < FAST
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"rebeam: cannot reach NATS at {server.url}: {REFUSED}"
        ], result.stderr
    no_traceback(run)
