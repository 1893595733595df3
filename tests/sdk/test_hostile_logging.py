"""Refusals are counted one by one and logged at a bounded rate: a flood of bad messages used
to write a warning line per message. A real actor process, whose stderr the launcher keeps."""

from __future__ import annotations

import asyncio
import logging

import pytest
from tests.sdk.hostile_inputs import message, until

import rebeam
from rebeam import _subjects
from rebeam._envelope import CALL
from rebeam._ratelog import RateLog

PROBE = "rebeam_test_actors:Probe"
FLOOD = 1000
BURST = 5  # the runtime's lines per reason and interval (rebeam._ratelog.DEFAULT_BURST)


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_a_flood_of_refused_messages_is_counted_and_logged_at_a_bounded_rate(launcher, node):
    child = await launcher.start(PROBE)
    subject = _subjects.mailbox(child.pid, node.pid)
    bad_reply = "$JS.API.STREAM.LIST"
    for i in range(FLOOD):
        await node.nc.publish(subject, b"\xc1" + i.to_bytes(4, "big"))  # never valid msgpack
        call = message(CALL, "count")
        await node.nc.publish(subject, call, reply=bad_reply)
    await node.nc.flush()

    async def all_malformed_counted() -> bool:
        return (await node.stats_of(child.pid))["malformed"] == FLOOD

    await until(all_malformed_counted, f"{FLOOD} malformed messages to be counted", timeout=60)
    # The mailbox is in order: this call comes after every refused one, none of them handled.
    assert await node.call(child.pid, "count") == 1
    assert (await node.stats_of(child.pid))["reply_refused"] == FLOOD
    lines = [line for line in child.stderr().splitlines() if "refused" in line]
    # Per reason: BURST lines in the first interval (the summary of the rest comes at its
    # end, 10 s later, and at most one per interval after that).
    assert len(lines) <= 2 * (BURST + 1), "\n".join(lines)
    assert any("malformed" in line for line in lines)
    assert any("reply subject" in line for line in lines)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def a_logger() -> tuple[logging.Logger, Records]:
    logger = logging.getLogger("tests.ratelog")
    logger.propagate = False
    records = Records()
    logger.handlers[:] = [records]
    return logger, records


def test_burst_then_one_summary_per_reason_and_interval() -> None:
    logger, records = a_logger()
    now = [0.0]
    ratelog = RateLog(logger, "p", burst=2, interval=10.0, clock=lambda: now[0])
    for i in range(5):
        ratelog.warning("refused a thing", f"#{i}")
    ratelog.warning("refused another thing", "x" * 1000)
    assert records.lines[:2] == ["p: refused a thing: #0", "p: refused a thing: #1"]
    assert len(records.lines) == 3
    assert len(records.lines[2]) < 250  # the detail is cut: it may quote the input
    now[0] = 10.0  # the next interval: its first refusal first says what was left out
    ratelog.warning("refused a thing", "#5")
    assert records.lines[3:] == [
        "p: refused a thing: ... and 3 more in 10s",
        "p: refused a thing: #5",
    ]


async def test_the_summary_comes_at_the_end_of_the_interval_without_more_refusals() -> None:
    logger, records = a_logger()
    ratelog = RateLog(logger, "p", burst=1, interval=0.05)
    for _ in range(4):
        ratelog.error("parked a message")
    deadline = asyncio.get_running_loop().time() + 10
    while len(records.lines) < 2:
        assert asyncio.get_running_loop().time() < deadline, records.lines
        await asyncio.sleep(0.01)
    assert records.lines == ["p: parked a message", "p: parked a message: ... and 3 more in 0.05s"]
