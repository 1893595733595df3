"""The runner's scrape takes actors' answers as untrusted input: malformed, oversized or
silent processes are refused and counted, never merged, never a traceback. A real
nats-server; the "actors" here are the test answering on their stats subjects."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import nats
import pytest

from rebeam import _subjects
from rebeam._envelope import pack_reply
from rebeam.metrics_scrape import MAX_ANSWER_BYTES, MAX_SAMPLES, Endpoint, Target, parse_address
from rebeam.pids import Pid
from tests.metrics.conftest import scrape, value


@pytest.fixture
async def backend(nats_server: Any, namespace: str) -> AsyncIterator[Any]:
    nc = await nats.connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:
        yield nc
    finally:
        await nc.close()


def family(rows: list[Any], name: str = "rebeam_x", kind: str = "counter") -> list[Any]:
    return [name, kind, "help", rows]


GOOD = [family([["rebeam_x_total", {"kind": "call", "child": "liar"}, 2.0]])]
HOSTILE = {
    "not_a_list": pack_reply({"a": 1}),
    "an_error": msgpack.packb([1, {"error": "x"}]),
    "not_msgpack": b"\xc1\xc1",
    "foreign_family": pack_reply([family([["process_x", {}, 1.0]], name="process_x")]),
    "sample_of_another_family": pack_reply([family([["rebeam_y_total", {}, 1.0]])]),
    "label_not_text": pack_reply([family([["rebeam_x_total", {"a": 1}, 1.0]])]),
    "value_not_number": pack_reply([family([["rebeam_x_total", {}, "1"]])]),
    "unknown_type": pack_reply([family([], kind="bogus")]),
    "too_many_samples": pack_reply(
        [family([["rebeam_x_total", {"n": str(i)}, 1.0] for i in range(MAX_SAMPLES + 1)])]
    ),
    "oversized": pack_reply([family([["rebeam_x_total", {"pad": "x" * MAX_ANSWER_BYTES}, 1]])]),
}


async def answer(nc: Any, pid: Pid, data: bytes) -> None:
    async def reply(msg: Any) -> None:
        await nc.publish(msg.reply, data)

    await nc.subscribe(_subjects.stats(pid), cb=reply)


async def test_bad_answers_and_silence_are_refused_and_counted(
    backend: Any, namespace: str
) -> None:
    targets = [Target(Pid.for_incarnation(namespace, "good", 1), "app", "good")]
    await answer(backend, targets[0].pid, pack_reply(GOOD))
    for n, data in enumerate(HOSTILE.values()):
        pid = Pid.for_incarnation(namespace, f"bad{n}", 1)
        await answer(backend, pid, data)
        targets.append(Target(pid, "app", f"bad{n}"))
    targets.append(Target(Pid.for_incarnation(namespace, "nobody", 1), "app", "gone"))
    await backend.flush()
    endpoint = Endpoint("127.0.0.1", 0)
    try:
        endpoint.attach(backend, lambda: targets)
        seen = await asyncio.get_running_loop().run_in_executor(None, scrape, endpoint.url)
    finally:
        endpoint.close()
    assert value(seen, "rebeam_scrape_answered") == 1
    assert value(seen, "rebeam_scrape_unanswered_total") == 1
    assert value(seen, "rebeam_scrape_refused_total", reason="oversized") == 1
    assert value(seen, "rebeam_scrape_refused_total", reason="malformed") == len(HOSTILE) - 1
    # The good answer is merged under the runner's labels, not the ones it claimed.
    assert value(seen, "rebeam_x_total", child="good", supervisor="app", kind="call") == 2
    assert value(seen, "rebeam_x_total", child="liar") == 0
    assert not any(name.startswith("process_x") for name, _ in seen)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:9100", ("::1", 9100)),
        ("0", ("127.0.0.1", 0)),
    ],
)
def test_metrics_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("host:http", "--metrics wants [HOST:]PORT, not 'host:http'"),
        ("", "--metrics wants [HOST:]PORT, not ''"),
        ("70000", "--metrics: 70000 is no port number (0-65535)"),
        ("-1", "--metrics: -1 is no port number (0-65535)"),
    ],
)
def test_bad_metrics_addresses_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(problem)}$"):
        parse_address(text)
