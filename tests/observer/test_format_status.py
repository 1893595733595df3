"""An actor's state summary (format_status) and its handler counters, over the stats
request the observer polls: bounded, and a failing or missing callback gives a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest

import rebeam
from rebeam._stats import STATUS_MAX_VALUE_CHARS, bounded_status
from rebeam.observe.actorstats import status_of

HERE = str(Path(__file__).parent)


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_format_status_summarizes_public_state_bounded(launcher, node):
    child = await launcher.start("observed_actors:Summarized", env={"PYTHONPATH": HERE})
    for n in range(1, 33):
        assert await node.call(child.pid, "slow") == n
    summary = await status_of(node.nc, str(child.pid))
    assert isinstance(summary, dict)
    assert summary["count"] == 32
    assert "secret" not in summary  # the actor chose to hide it
    assert "_private" not in summary  # private attributes are never given to it
    assert len(summary["blob"]) == STATUS_MAX_VALUE_CHARS  # cut, not refused
    counters = await node.stats_of(child.pid)
    assert counters["handler_samples"] == 32  # every call is timed (the metrics' timings)
    assert counters["handler_ns"] >= 32 * 20_000_000  # each slept 20 ms
    assert "status" not in counters  # only when asked for


async def test_a_failing_or_missing_format_status_gives_a_sentence(launcher, node):
    bad = await launcher.start("observed_actors:BadStatus", env={"PYTHONPATH": HERE})
    plain = await launcher.start("observed_actors:Plain", env={"PYTHONPATH": HERE})
    assert await status_of(node.nc, str(bad.pid)) == "format_status raised KeyError: 'nope'"
    assert await status_of(node.nc, str(plain.pid)) == "Plain defines no format_status"
    assert await node.call(plain.pid, "still here") == "still here"
    assert bad.proc.returncode is None  # a failing callback is a sentence, not a crash
    assert "handler_samples" in await node.stats_of(bad.pid)
    await bad.stop()
    assert "is not running" in str(await status_of(node.nc, str(bad.pid)))


def test_bounded_status_keeps_what_is_plain_and_cuts_the_rest() -> None:
    class Loud:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    many = {f"k{i}": i for i in range(80)}
    out = bounded_status(many)
    assert isinstance(out, dict)
    assert len(out) == 51
    assert out["..."] == "30 more items not shown"
    assert bounded_status({"x": Loud(), "f": float("nan")}) == {
        "x": "<Loud: repr raised RuntimeError>",
        "f": "nan",
    }
    assert bounded_status(Loud()) == "<Loud: repr raised RuntimeError>"
    assert len(str(bounded_status("y" * 10_000))) == 4000
