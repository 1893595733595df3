"""One actor process's metrics: real runtime processes (the launcher), a real nats-server.
Counters move for a call, a cast and a refusal; the caller times its call; the runtime serves
them on REBEAM_METRICS_PORT in the Prometheus format."""

from __future__ import annotations

import socket
from typing import Any

import pytest

import rebeam
from rebeam import _subjects, metrics
from rebeam._envelope import CAST
from tests.metrics.conftest import names, of_export, scrape, scrape_process, value
from tests.sdk.hostile_inputs import message, until

PROBE = "rebeam_test_actors:Probe"


@pytest.fixture
async def node(nats_server: Any, namespace: str) -> Any:
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_a_call_a_cast_and_a_refusal_move_the_actors_counters(launcher: Any, node: Any):
    child = await launcher.start(PROBE)
    where = {"child": "child1", "namespace": launcher.namespace}
    before = of_export(metrics.export())
    assert await node.call(child.pid, ["echo", "hi"]) == "hi"
    await node.cast(child.pid, ["note", 1])
    await node.nc.publish(_subjects.mailbox(child.pid, node.pid), b"\xc1 not msgpack")
    cast = message(CAST, "x" * 10)
    await node.nc.publish(_subjects.mailbox(child.pid, node.pid), cast[:-3])  # cut short

    async def counted() -> bool:
        seen = await scrape_process(node.nc, child.pid)
        return value(seen, "rebeam_messages_received_total", kind="cast") >= 1 and (
            value(seen, "rebeam_messages_refused_total", reason="malformed") >= 2
        )

    await until(counted, "the cast and the refusals counted")
    seen = await scrape_process(node.nc, child.pid)
    assert value(seen, "rebeam_messages_received_total", kind="call", **where) == 1
    assert value(seen, "rebeam_messages_received_total", kind="cast", **where) == 1
    assert value(seen, "rebeam_messages_sent_total", kind="reply", **where) == 1
    assert value(seen, "rebeam_messages_refused_total", reason="malformed", **where) == 2
    assert value(seen, "rebeam_handler_seconds_count", kind="call", **where) == 1
    assert value(seen, "rebeam_handler_seconds_bucket", kind="call", le="+Inf", **where) == 1
    assert value(seen, "rebeam_mailbox_depth", **where) == 0
    # No series is labelled with a pid or an incarnation.
    assert all(str(child.pid) not in str(labels) for _, labels in seen)
    # The caller (this process) counted its call, its cast, and timed the call.
    after = of_export(metrics.export())
    mine = {"namespace": launcher.namespace, "child": ""}
    for name, extra in [
        ("rebeam_messages_sent_total", {"kind": "call"}),
        ("rebeam_messages_sent_total", {"kind": "cast"}),
        ("rebeam_call_seconds_count", {}),
    ]:
        assert value(after, name, **mine, **extra) - value(before, name, **mine, **extra) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_runtime_serves_its_metrics_on_its_metrics_port(launcher: Any, node: Any):
    port = free_port()
    child = await launcher.start(PROBE, extra=["--metrics-port", str(port)])
    assert await node.call(child.pid, ["echo", 1]) == 1
    seen = scrape(f"http://127.0.0.1:{port}/metrics")
    assert value(seen, "rebeam_messages_received_total", kind="call", child="child1") == 1
    assert {"rebeam_mailbox_depth", "rebeam_handler_seconds_bucket"} <= names(seen)
    assert "process_cpu_seconds_total" in names(seen)  # the process collector, for a pod


async def test_a_bad_metrics_port_is_refused_with_its_reason(launcher: Any):
    child = await launcher.start(PROBE, extra=["--metrics-port", "70000"], expect_ready=False)
    await child.wait()
    assert "must be a port number (1-65535), not '70000'" in child.stderr()
