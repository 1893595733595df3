"""One trace across five actor processes: a call and cast chain A -> B -> C -> D -> E, with
the right parent and child at every hop; and with tracing off, no span and no trace field.

Real nats-server, real actor processes (tests/conftest.py's launcher); this process records
its spans in memory, each actor process into a file of JSON lines (traced_actors).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

import rebeam
from rebeam import _codec
from tests.sdk.hostile_inputs import until
from tests.tracing.spanfiles import RELAY, actor_env, read_spans
from tests.tracing.traced_actors import record

pytestmark = pytest.mark.nats

# What each hop records, in causal order: (process, span name, span kind).
CHAIN = [
    ("test", "call", "CLIENT"),
    ("A", "handle_call", "SERVER"),
    ("A", "call", "CLIENT"),
    ("B", "handle_call", "SERVER"),
    ("B", "cast", "PRODUCER"),
    ("C", "handle_cast", "CONSUMER"),
    ("C", "call", "CLIENT"),
    ("D", "handle_call", "SERVER"),
    ("D", "cast", "PRODUCER"),
    ("E", "handle_cast", "CONSUMER"),
    ("E", "send", "PRODUCER"),
]
ACTORS = "ABCDE"
NEXT = {"test": "A", "A": "B", "B": "C", "C": "D", "D": "E", "E": "test"}  # who each sends to


async def start_chain(launcher, tmp_path: Path, *, tracing: bool) -> dict[str, Any]:
    children = {}
    for name in ACTORS:
        env = actor_env(tmp_path / f"spans-{name}.jsonl", tracing=tracing)
        children[name] = await launcher.start(RELAY, env=env)
    return children


def the_chain(children: dict[str, Any], report_to: rebeam.Pid) -> dict[str, Any]:
    """A calls B, B casts to C, C calls D, D casts to E, E sends "done" to ``report_to``."""
    hops = [["call", "B"], ["cast", "C"], ["call", "D"], ["cast", "E"]]
    return {
        "hops": [[how, children[to].pid] for how, to in hops],
        "report_to": report_to,
    }


async def raw_mailbox(node: rebeam.Node) -> asyncio.Queue[list[Any]]:
    """Every envelope that reaches ``node``'s mailbox, decoded as it came off the wire."""
    seen: asyncio.Queue[list[Any]] = asyncio.Queue()

    async def keep(msg: Any) -> None:
        seen.put_nowait(_codec.decode(msg.data))

    await node.nc.subscribe(node._subject, cb=keep)
    await node.nc.flush()
    return seen


async def test_a_chain_of_five_actors_is_one_trace(
    launcher, nats_server, namespace, tmp_path, memory_spans, monkeypatch
):
    monkeypatch.setenv("REBEAM_TRACING", "1")
    children = await start_chain(launcher, tmp_path, tracing=True)
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        wire = await raw_mailbox(node)
        with trace.get_tracer("test").start_as_current_span("test") as root:
            assert await node.call(children["A"].pid, the_chain(children, node.pid)) == "cast"
        assert await node.receive(timeout=20) == "done"
        done = await asyncio.wait_for(wire.get(), 20)
    assert len(done) == 4, "E's send carries its trace context"

    files = {name: tmp_path / f"spans-{name}.jsonl" for name in ACTORS}

    async def all_recorded() -> bool:
        return sum(len(read_spans(path)) for path in files.values()) >= len(CHAIN) - 1

    await until(all_recorded, "every actor's spans")
    spans = {"test": [record(s) for s in memory_spans.get_finished_spans()]}
    spans.update({name: read_spans(path) for name, path in files.items()})
    trace_id = f"{root.get_span_context().trace_id:032x}"
    parent = f"{root.get_span_context().span_id:016x}"
    pids = {name: str(child.pid) for name, child in children.items()} | {"test": str(node.pid)}
    sent = None  # the operation the previous hop sent
    for process, name, kind in CHAIN:
        (span,) = [s for s in spans[process] if s["parent_id"] == parent and s["name"] == name]
        assert span["kind"] == kind, (process, span)
        assert span["trace_id"] == trace_id, (process, span)
        assert span["status"] == "UNSET", span
        attributes = span["attributes"]
        assert attributes["messaging.system"] == "rebeam"
        if name.startswith("handle_"):
            assert attributes["messaging.destination.name"] == pids[process]
            assert attributes["messaging.operation.name"] == sent
            assert attributes["rebeam.actor.class"] == "Relay"
            assert attributes["rebeam.actor.path"] == children[process].pid.slot
        else:
            assert attributes["messaging.destination.name"] == pids[NEXT[process]]
            assert attributes["messaging.operation.name"] == name
            sent = name
        parent = span["span_id"]
    assert done[3][0].split("-")[2] == parent, "the send's context names E's send span"
    assert sum(len(s) for s in spans.values()) == len(CHAIN) + 1  # and the test's root


async def test_off_by_default_no_span_and_no_field(
    launcher, nats_server, namespace, tmp_path, memory_spans, monkeypatch
):
    # Tracer providers in every process, but REBEAM_TRACING is not set: nothing is traced.
    monkeypatch.delenv("REBEAM_TRACING", raising=False)
    children = await start_chain(launcher, tmp_path, tracing=False)
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        assert node._tracing is None
        wire = await raw_mailbox(node)
        with trace.get_tracer("test").start_as_current_span("test"):
            assert await node.call(children["A"].pid, the_chain(children, node.pid)) == "cast"
        assert await node.receive(timeout=20) == "done"
        done = await asyncio.wait_for(wire.get(), 20)
        for child in children.values():  # each has finished handling what came before
            assert await node.call(child.pid, "ping") == "ping"
    assert len(done) == 3, "no trace field on the wire"
    assert [s.name for s in memory_spans.get_finished_spans()] == ["test"]
    for name in ACTORS:
        assert read_spans(tmp_path / f"spans-{name}.jsonl") == []


async def test_a_failed_call_is_an_error_at_both_ends(
    launcher, nats_server, namespace, tmp_path, memory_spans, monkeypatch
):
    monkeypatch.setenv("REBEAM_TRACING", "1")
    spans_file = tmp_path / "spans.jsonl"
    child = await launcher.start(RELAY, env=actor_env(spans_file, tracing=True))
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        with pytest.raises(rebeam.RemoteError):
            await node.call(child.pid, "raise")
    await child.wait()
    (caller,) = [record(s) for s in memory_spans.get_finished_spans()]
    (handler,) = read_spans(spans_file)  # the process has ended: its spans are all written
    assert (caller["name"], caller["status"]) == ("call", "ERROR")
    assert (handler["name"], handler["status"]) == ("handle_call", "ERROR")
    assert handler["parent_id"] == caller["span_id"]
