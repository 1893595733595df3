"""Leases of a `rebeam run` tree across a restart of its private nats-server, and a real
expiry: a restarted server is no reason for any actor to stop (its lease outlived the
restart, in a file bucket), and a process that stops refreshing past its TTL is still
declared lost and restarted (docs/nats.md, "Leases across a server restart")."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

import pytest

import rebeam
from rebeam._lease import lease_alive, open_leases
from rebeam.exits import NOCONNECTION
from rebeam.pids import Pid
from tests.local.conftest import DEADLINE, Run, StartRun, alive, supervisor, wait_until

# A refresh every 10 s: the killed server's restart and every actor's reconnection must fit
# in the 20 s a lease has left at worst, on a busy machine too.
RESTART_TTL = "30"

COUNTERS = (
    "    - {name: counter, actor: {module: 'counting:Counter', register: counter}}\n"
    "    - {name: other, actor: {module: 'counting:Counter', register: other}}\n"
)
COUNTER = """\
import rebeam
class Counter(rebeam.Actor):
    async def init(self, args):
        self.n = 0
    async def handle_call(self, msg, from_):
        self.n += 1
        return {"n": self.n}
"""


def server_pid(run: Run, not_this: int | None = None) -> int:
    """The private nats-server's pid, from the instance file (once it names a new one)."""
    wait_until(
        lambda: run.instance().get("nats_pid") not in (None, not_this),
        what="the instance file to name a new nats-server",
    )
    pid = run.instance()["nats_pid"]
    assert isinstance(pid, int)
    return pid


def connect(run: Run) -> rebeam.connect:
    info = run.instance()
    return rebeam.connect(
        info["nats_url"], namespace=run.namespace, credentials=info["credentials"]
    )


async def pids_of(run: Run, *names: str) -> dict[str, Pid]:
    async with connect(run):
        found = {name: await rebeam.whereis(name, cached=False) for name in names}
    assert all(found.values()), found
    return {name: pid for name, pid in found.items() if pid is not None}


async def leases_refreshed(run: Run, pids: list[Pid]) -> None:
    """Until every one of ``pids`` has refreshed its lease on the running server: its live
    lease is read once, then seen at a later revision. A lease that is gone fails at once:
    its holder would stop at its next refresh."""
    deadline = time.monotonic() + DEADLINE
    async with connect(run) as node:
        # Just after its restart the server is taking back every actor's connection,
        # subscriptions and lease refresh at once; on a loaded 2-core machine its answer to
        # this JetStream request took longer than the client's 5 s default (at load 20). The
        # request is part of the wait for the refreshes, so it gets the same deadline.
        leases = await open_leases(node.nc.jetstream(timeout=DEADLINE), run.namespace)
        for pid in pids:
            assert await lease_alive(leases, pid), f"{pid}'s lease did not outlive the restart"
            first = await leases.get(pid.tokens)
            while (entry := await leases.get(pid.tokens)).revision == first.revision:
                assert time.monotonic() < deadline, f"{pid}'s lease was not refreshed"
                await asyncio.sleep(0.2)
            assert entry.value is not None, f"{pid}: {entry}"
            assert entry.operation is None, f"{pid}: {entry}"


def started(run: Run, child: str) -> list[int]:
    return [
        e["incarnation"]
        for e in run.events.poll()
        if e["event"] == "started" and e.get("child") == child
    ]


def test_a_nats_server_restart_restarts_no_actor(
    rebeam_run: StartRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REBEAM_LEASE_TTL", RESTART_TTL)
    (tmp_path / "counting.py").write_text(COUNTER)
    run = rebeam_run(supervisor("app", COUNTERS))
    run.events.wait("started", "other")
    run.wait_ready()
    assert json.loads(run.rebeam("call", "counter", "{}").stdout) == {"n": 1}
    pids = asyncio.run(pids_of(run, "counter", "other"))
    seen = len(run.events.poll())

    old = server_pid(run)
    os.kill(old, signal.SIGKILL)
    server_pid(run, not_this=old)
    assert not alive(old)

    # Each actor's next refresh, on the restarted server, is where a lost lease would have
    # stopped it: wait for that refresh, not for a while.
    asyncio.run(leases_refreshed(run, list(pids.values())))
    deadline = time.monotonic() + DEADLINE
    while (called := run.rebeam("call", "counter", "{}")).returncode != 0:
        assert time.monotonic() < deadline, called.stderr
    assert json.loads(called.stdout) == {"n": 2}  # the same incarnation, with its state
    assert asyncio.run(pids_of(run, "counter", "other")) == pids
    assert [e for e in run.events.since(seen) if e["event"] in ("exited", "started")] == []
    assert started(run, "counter") == started(run, "other") == [pids["counter"].incarnation]
    assert run.process.poll() is None


def test_a_process_stopped_past_its_lease_is_lost_and_restarted(
    rebeam_run: StartRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REBEAM_LEASE_TTL", "2")
    (tmp_path / "counting.py").write_text(COUNTER)
    run = rebeam_run(supervisor("app", COUNTERS))
    first = run.events.wait("started", "counter")
    run.events.wait("started", "other")
    run.wait_ready()
    pid = asyncio.run(pids_of(run, "counter"))["counter"]

    async def frozen_until_declared_lost() -> None:
        async with connect(run) as node:
            ref = await node.monitor(pid)
            os.kill(first["os_pid"], signal.SIGSTOP)  # a lost node, as far as NATS can tell
            try:
                down = await node.receive(timeout=DEADLINE)
            finally:
                os.kill(first["os_pid"], signal.SIGCONT)
            assert down == rebeam.Down(ref, pid, NOCONNECTION)

    asyncio.run(frozen_until_declared_lost())
    # Back, it finds its lease expired and stops being that pid; its supervisor restarts it.
    exited = run.events.wait("exited", "counter", incarnation=first["incarnation"])
    assert exited["reason"] == str(NOCONNECTION)
    run.events.wait("started", "counter", incarnation=first["incarnation"] + 1)
    assert started(run, "other") == [asyncio.run(pids_of(run, "other"))["other"].incarnation]
