"""Bounded mailboxes (docs/sdk.md): limits, refusals the sender hears of, and an overload run.

Real actor processes and a real nats-server. Waits are on conditions with deadlines; the only
sleeps pace the producers of the overload test (they are the load, not a wait).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import rebeam
from rebeam._requests import RECEIPT, _pause_when_full, _Retry

SLOW = "rebeam_test_actors:Slow"


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Wait for ``check`` to hold, polling with a deadline."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the deadline")
        await asyncio.sleep(0.02)


def rss(os_pid: int) -> int:
    for line in Path(f"/proc/{os_pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_limits_come_from_flags_env_class_and_defaults(launcher, node):
    default = await launcher.start(SLOW)
    by_class = await launcher.start("rebeam_test_actors:SmallMailbox")
    by_env_and_flag = await launcher.start(
        "rebeam_test_actors:SmallMailbox",
        env={"REBEAM_MAILBOX_MAX_MESSAGES": "123", "REBEAM_MAILBOX_MAX_BYTES": "4096"},
        extra=["--mailbox-max-bytes", "8192"],  # the flag wins over the env
    )
    got = {
        "default": await rebeam.stats(default.pid),
        "class": await node.stats_of(by_class.pid),
        "env": await node.stats_of(by_env_and_flag.pid),
    }
    limits = {k: (v["mailbox_max_messages"], v["mailbox_max_bytes"]) for k, v in got.items()}
    assert limits == {
        "default": (10_000, 16 * 1024 * 1024),
        "class": (77, 65_536),
        "env": (123, 8192),
    }
    own = await rebeam.stats()
    assert own["mailbox_max_messages"] == 10_000
    await default.stop()
    with pytest.raises(rebeam.NoProc):
        await rebeam.stats(default.pid)


async def test_full_mailbox_refuses_calls_at_once_and_casts_wait_or_fail(launcher, node):
    child = await launcher.start(SLOW, extra=["--mailbox-max-messages", "5"])
    blocked = asyncio.create_task(node.call(child.pid, ["block", 4.0], timeout=30))

    async def taken() -> bool:
        s = await node.stats_of(child.pid)
        return s["received"] == 1 and s["mailbox_pending"] == 0

    await until(taken)  # the actor is inside the blocking call: nothing leaves its mailbox
    for i in range(8):
        await node.cast(child.pid, ["p", i])  # 5 fit, 3 are refused (and counted)
    started = time.monotonic()
    with pytest.raises(rebeam.MailboxFull) as info:
        await node.call(child.pid, ["c", 0], timeout=30)
    assert time.monotonic() - started < 1.0  # at once, not after the timeout
    assert isinstance(info.value, rebeam.Refused)
    assert "full" in str(info.value)
    started = time.monotonic()
    with pytest.raises(rebeam.MailboxFull):
        await node.cast(child.pid, ["w", 0], wait=1.0)  # no room within 1 s
    # It gives up a little early (0.1 s, or twice a refusal's round trip on a busy machine)
    # rather than let a refusal come after the deadline and read as a timeout.
    assert 0.5 < time.monotonic() - started < 3.0
    with pytest.raises(rebeam.MailboxFull):
        await node.send(child.pid, ["w", 1], wait=0.1)
    # Waiting long enough: room is made when the block ends, and the receipt comes.
    await node.cast(child.pid, ["w", 2], wait=30)
    assert await blocked == "unblocked"
    stats = await node.stats_of(child.pid)
    assert stats["refused_silently"] == 3
    assert stats["mailbox_refused"] >= 3 + 1 + 2
    assert await node.call(child.pid, "counts") == {"p": 5, "w": 1}
    # A receipt to a dead pid: NoProc, where a plain cast is silent.
    await child.stop()
    with pytest.raises(rebeam.NoProc):
        await node.cast(child.pid, "x", wait=1)
    await node.cast(child.pid, "x")


async def test_overload_memory_stays_flat_and_every_message_is_accounted(launcher, node):
    """~10x what the consumer handles, for a bounded time, from three kinds of producer:
    plain casts (refusals counted at the receiver), calls (refused at once) and casts that wait
    for room (backpressure). accepted = delivered + refused, none unaccounted."""
    delay, flood_for, payload = 0.005, 3.0, b"x" * 4096
    child = await launcher.start(
        SLOW,
        {"delay": delay},
        extra=["--mailbox-max-messages", "100", "--mailbox-max-bytes", str(1024 * 1024)],
    )
    for i in range(50):  # warm up the consumer's allocations before the baseline
        await node.call(child.pid, ["warm", i, payload])
    baseline = rss(child.os_pid)
    samples: list[int] = []
    sent = {"p": 0, "c": 0, "w": 0}
    calls_ok = calls_full = waits_ok = 0
    unexpected: list[BaseException] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + flood_for

    async def plain() -> None:  # 2000/s: 10x a 5 ms handler
        while loop.time() < end:
            for _ in range(20):
                await node.cast(child.pid, ["p", sent["p"], payload])
                sent["p"] += 1
            await asyncio.sleep(0.01)

    async def caller() -> None:
        nonlocal calls_ok, calls_full
        while loop.time() < end:
            sent["c"] += 1
            try:
                await node.call(child.pid, ["c", sent["c"], payload], timeout=60)
                calls_ok += 1
            except rebeam.MailboxFull:
                calls_full += 1
                await asyncio.sleep(0.01)  # a caller's own back-off
            except Exception as exc:
                unexpected.append(exc)

    async def waiter() -> None:
        nonlocal waits_ok
        while loop.time() < end:
            sent["w"] += 1
            try:
                await node.cast(child.pid, ["w", sent["w"], payload], wait=60)
                waits_ok += 1
            except Exception as exc:
                unexpected.append(exc)

    async def sample() -> None:
        while loop.time() < end + 1:
            samples.append(rss(child.os_pid))
            await asyncio.sleep(0.05)

    await asyncio.gather(plain(), sample(), *(caller() for _ in range(4)), waiter(), waiter())

    async def drained() -> bool:
        return (await node.stats_of(child.pid))["mailbox_pending"] == 0

    await until(drained)
    stats = await node.stats_of(child.pid)
    counts = await node.call(child.pid, "counts")
    peak = max(samples)
    print(
        f"\noverload: sent {sent}, handled {counts}, refused silently "
        f"{stats['refused_silently']}, calls ok {calls_ok} / full {calls_full}, "
        f"waited casts {waits_ok}, mailbox_refused {stats['mailbox_refused']}; "
        f"RSS baseline {baseline / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB"
    )
    assert unexpected == []
    assert child.proc.returncode is None  # nothing crashed
    assert stats["refused_silently"] > 0  # it was overloaded
    answered = stats["mailbox_refused"] - stats["refused_silently"]
    assert answered >= calls_full
    assert answered > 0  # senders that wait for an answer were pushed back (calls or waits)
    # Every message is accounted for:
    assert sent["p"] == counts.get("p", 0) + stats["refused_silently"]
    assert sent["c"] == calls_ok + calls_full
    assert counts.get("c", 0) == calls_ok
    assert sent["w"] == waits_ok == counts.get("w", 0)
    assert stats["mailbox_refused"] >= stats["refused_silently"] + calls_full
    # 100 queued 4 KiB messages are < 1 MiB: anything unbounded would add ~25 MB here.
    assert peak - baseline < 12 * 2**20, (baseline, peak)


async def test_a_client_mailbox_is_bounded_too(nats_server, namespace):
    # A client's bounds are given at connect.
    async with (
        rebeam.connect(nats_server.url, namespace=namespace, mailbox_max_messages=3) as receiver,
        rebeam.connect(nats_server.url, namespace=namespace) as sender,
    ):
        for i in range(3):
            await sender.cast(receiver.pid, i, wait=5)  # receipts: they are in
        with pytest.raises(rebeam.MailboxFull):
            await sender.send(receiver.pid, "one too many", wait=0.2)
        await sender.cast(receiver.pid, "silently refused")
        await until(
            lambda: _true(receiver.stats.refused_silently == 1),
        )
        assert [await receiver.receive(timeout=5) for _ in range(3)] == [0, 1, 2]


async def _true(value: bool) -> bool:
    return value


def test_a_retry_after_full_needs_twice_the_slowest_refusal_left() -> None:
    """On a machine so busy that a refusal takes 150 ms to come back, a retry with 250 ms
    left would likely be answered after the deadline: the request gives up with the clear
    "full" instead; with 350 ms left it tries again."""
    full = rebeam.MailboxFull("full")
    retry = _Retry()
    assert _pause_when_full(full, RECEIPT, 0.25, retry) == retry.backoff  # quick refusals so far
    retry.answered_in(0.15)
    assert _pause_when_full(full, RECEIPT, 0.25, retry) is None
    assert _pause_when_full(full, RECEIPT, 0.35, retry) == retry.backoff
