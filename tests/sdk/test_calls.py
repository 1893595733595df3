"""call, cast and send between a client and real actor processes."""

from __future__ import annotations

import asyncio
import time

import pytest

import rebeam
from rebeam.exits import KILLED, NORMAL, ExitKind, shutdown_with

PROBE = "rebeam_test_actors:Probe"


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_call_round_trip_and_models(launcher, node):
    child = await launcher.start(PROBE)
    assert child.ready_line.strip() == f"ready {child.pid}"
    assert await node.call(child.pid, ["echo", {"a": [1, 2.5, None, True], "b": b"\x01"}]) == {
        "a": [1, 2.5, None, True],
        "b": b"\x01",
    }
    assert await node.call(child.pid, "pid") == child.pid
    from rebeam_test_actors import Order

    reply = await node.call(child.pid, ["order", {"sku": "x", "qty": 2}])
    assert reply == Order(sku="x", qty=4, note=b"\x00\xff")
    # Module-level API uses the current node.
    assert await rebeam.call(child.pid, "count") == 1


async def test_sync_callbacks(launcher, node):
    child = await launcher.start("rebeam_test_actors:SyncProbe")
    assert await node.call(child.pid, 7) == {"sync": 7}


async def test_noproc_is_immediate(launcher, node):
    child = await launcher.start(PROBE)
    await child.stop()
    started = time.monotonic()
    with pytest.raises(rebeam.NoProc):
        await node.call(child.pid, "echo")
    with pytest.raises(rebeam.NoProc):
        await node.call("nobody-has-this-name", "echo")
    assert time.monotonic() - started < 1.0
    await node.cast("nobody-has-this-name", "lost")  # a cast to nobody is silently lost
    with pytest.raises(rebeam.NoProc):
        await node.send("nobody-has-this-name", "x")  # a send to an unknown name is not


async def test_timeout_and_late_reply_dropped(launcher, node):
    child = await launcher.start(PROBE)
    with pytest.raises(rebeam.CallTimeout):
        await node.call(child.pid, ["sleep", 0.6], timeout=0.2)
    # The next call gets its own reply, never the late one.
    assert await node.call(child.pid, ["echo", "next"]) == "next"
    assert node.stats.late_replies == 1


async def test_remote_exception_crashes_callee(launcher, node):
    child = await launcher.start(PROBE)
    with pytest.raises(rebeam.RemoteError) as info:
        await node.call(child.pid, ["raise", "bad input"])
    assert info.value.exception_type == "ValueError"
    assert info.value.message == "bad input"
    assert "ValueError" in (info.value.traceback or "")
    reason = await child.wait()
    assert reason.kind is ExitKind.CRASH
    assert reason.details is not None
    assert reason.details.exception_type == "ValueError"
    assert child.proc.returncode == 1


async def test_callee_killed_during_call(launcher, node):
    child = await launcher.start(PROBE, {"report_to": str(node.pid)})
    call = asyncio.create_task(node.call(child.pid, ["sleep", 30]))
    assert await node.receive(timeout=10) == "sleeping"  # the call is being handled
    child.kill()
    with pytest.raises(rebeam.CalleeExited) as info:
        await asyncio.wait_for(call, 10)
    assert info.value.reason == KILLED


async def test_calling_self(launcher, node):
    child = await launcher.start(PROBE)
    assert (await node.call(child.pid, "call_self")).startswith("CallingSelf")
    with pytest.raises(rebeam.CallingSelf):
        await node.call(node.pid, "x")


async def test_stop_with_reason_and_shutdown_info(launcher, node):
    a = await launcher.start(PROBE)
    assert await node.call(a.pid, "stop") == "stopping"
    assert await a.wait() == NORMAL
    assert a.proc.returncode == 0
    b = await launcher.start(PROBE)
    assert await node.call(b.pid, ["shutdown", {"why": "done"}]) == "shutting down"
    assert await b.wait() == shutdown_with({"why": "done"})
    assert b.proc.returncode == 0


async def test_sigterm_runs_terminate_with_shutdown(launcher, node):
    child = await launcher.start(PROBE, {"report_to": str(node.pid)})
    reason = await child.stop()
    assert reason.kind is ExitKind.SHUTDOWN
    assert child.proc.returncode == 0
    assert await node.receive(timeout=5) == {"terminated": "shutdown"}


async def test_init_failure_is_a_failed_start(launcher):
    child = await launcher.start(PROBE, {"fail_init": True}, expect_ready=False)
    assert not child.ready
    reason = await child.wait()
    assert reason.kind is ExitKind.CRASH
    assert reason.details is not None
    assert reason.details.message == "init refused"
    assert child.proc.returncode == 1


async def test_cast_crash_and_send_after(launcher, node):
    child = await launcher.start(PROBE, {"report_to": str(node.pid)})
    assert await node.call(child.pid, ["send_after", 0.05]) == "ok"
    assert await node.receive(timeout=5) == "tick"
    assert await node.call(child.pid, "timers") == "ok"
    assert await node.receive(timeout=5) == "direct"  # the cancelled one never came first
    await node.cast(child.pid, "crash")
    reason = await child.wait()
    assert reason.details is not None
    assert reason.details.message == "crashed on cast"


async def test_deferred_reply(launcher, node):
    child = await launcher.start(PROBE)
    waiting = asyncio.create_task(node.call(child.pid, "defer"))
    async with asyncio.timeout(5):
        while not node.stats_snapshot()["calls_pending"]:  # noqa: ASYNC110 - the call is out
            await asyncio.sleep(0)
    assert await node.call(child.pid, ["release", {"late": True}]) == "released"
    assert await asyncio.wait_for(waiting, 5) == {"late": True}


async def test_runtime_without_nats_fails_to_start(tmp_path):
    import json
    import os
    import sys

    from rebeam.events import read_exit_record

    record = tmp_path / "exit.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "rebeam.runtime", "rebeam:Actor",
        "--nats", "nats://127.0.0.1:1", "--exit-record", str(record),
        env={**os.environ, "REBEAM_CONNECT_DEADLINE": "1"},
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert await asyncio.wait_for(proc.wait(), 30) == 1
    reason = read_exit_record(record)
    assert reason is not None
    assert reason.kind is ExitKind.CRASH
    assert "cannot connect" in json.dumps(reason.to_wire())
