"""Hostile values at every decoder: deeply nested msgpack extensions (which overflowed the C
stack of any process decoding them), deep JSON, records that are not records. Each is
refused and counted; no process dies of it and each answers calls afterwards.

Real actor processes (the launcher), a real nats-server; checks that decode in this process
run in a fresh interpreter (``run_isolated``), so a crash fails the test instead of pytest.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.sdk.hostile_inputs import (
    EXT_EXIT,
    deep_json,
    envelope,
    message,
    nested_ext,
    owner_record,
    packed,
    run_isolated,
    until,
)

import rebeam
from rebeam import _codec, _subjects
from rebeam._durable_batch import durable_address
from rebeam._envelope import CALL, CAST
from rebeam._registry import Store
from rebeam.events import read_exit_record
from rebeam.pids import Pid

PROBE = "rebeam_test_actors:Probe"
DURABLE = "rebeam_test_actors:DurableProbe"
ROOT = Path(__file__).resolve().parents[2]
LEVELS = 200  # 722 bytes as a bare value: enough to overflow an 8 MiB stack


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


def isolated(code: str) -> str:
    """Run ``code`` in a fresh interpreter from the repository root; its stdout."""
    done = run_isolated(f"import sys; sys.path.insert(0, {str(ROOT)!r})\n{code}")
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_nested_extensions_are_refused_by_every_decoder_in_process() -> None:
    out = isolated(f"""
from rebeam import _codec, _envelope, _registry
from rebeam.errors import CodecError
from rebeam.pids import Pid
from tests.sdk.hostile_inputs import envelope, message, nested_ext, owner_record, packed
pid = Pid.for_incarnation("ns", "victim", 1)
for code in (2, 3):
    bomb = nested_ext({LEVELS}, code)
    for name, decode, data in [
        ("codec", _codec.decode, packed(bomb)),
        ("envelope", _envelope.unpack_mailbox, message(2, bomb)),
        ("durable envelope", _envelope.unpack_fields, envelope(2, pid, "ns.x.1", bomb)),
        ("reply", _envelope.unpack_reply, packed([0, bomb])),
        ("registry", _registry._owner_of, owner_record(pid, bomb)),
    ]:
        try:
            decode(data)
        except CodecError as exc:
            print(name, code, exc)
        else:
            print(name, code, "DECODED")
""")
    lines = out.splitlines()
    assert len(lines) == 10, out
    assert all("nested too deeply" in line for line in lines), out


async def test_a_nested_message_does_not_kill_the_actor(launcher, node):
    child = await launcher.start(PROBE)
    subject = _subjects.mailbox(child.pid, node.pid)
    bomb = nested_ext(LEVELS)
    cast = message(CAST, bomb)
    assert len(cast) < 1000
    await node.nc.publish(subject, cast)
    # A call is refused with the reason, on the inbox it came with.
    reply = await node.nc.request(subject, message(CALL, bomb), 5)
    status, error = rebeam._envelope.unpack_reply(reply.data)
    assert status == 1
    assert "nested too deeply" in error["message"]
    assert await node.call(child.pid, ["echo", "alive"]) == "alive"
    assert (await node.stats_of(child.pid))["malformed"] == 2
    assert child.proc.returncode is None


async def test_a_nested_call_reply_is_a_codec_error_for_the_caller(launcher, node):
    caller = await launcher.start(PROBE)
    fake = Pid.for_incarnation(launcher.namespace, "fake-callee", 1)

    async def answer(msg):  # a "callee" that answers every call with the bomb
        await msg.respond(packed([0, nested_ext(LEVELS, EXT_EXIT)]))

    # Only a backend may stand in for a pid it did not start.
    await launcher.nc.subscribe(_subjects.mailbox_subscription(fake), cb=answer)
    await launcher.nc.flush()
    got = await node.call(caller.pid, ["try_call", [str(fake), "hello"]])
    assert got == {"error": "CodecError"}
    assert await node.call(caller.pid, ["echo", "alive"]) == "alive"
    assert (await node.stats_of(caller.pid))["malformed_replies"] == 1


async def test_nested_registry_values_are_absent_for_a_name_cache(launcher, node):
    holder = await launcher.start(PROBE, {"register": ["good"]}, names=("good",))
    kv = await node.store.kv()
    fake = Pid.for_incarnation(launcher.namespace, "fake-owner", 1)
    await kv.put("n.victim", owner_record(fake, nested_ext(LEVELS)))
    asker = await launcher.start(PROBE)
    # try_call resolves through the asker's name cache: one KV watcher over every name.
    assert await node.call(asker.pid, ["try_call", ["good", ["echo", 1]]]) == {"ok": 1}
    assert await node.call(asker.pid, ["try_call", ["victim", ["echo", 2]]]) == {"error": "NoProc"}
    assert (await node.stats_of(asker.pid))["registry_invalid"] >= 1
    assert holder.proc.returncode is None
    assert asker.proc.returncode is None


async def test_a_nested_slot_record_does_not_stop_a_start(launcher, node):
    slot = "bombed-slot"
    # Slot records are the backend's to write: only its credential can plant the bomb.
    kv = await Store(launcher.nc.jetstream(), launcher.namespace).kv()
    token = Pid.for_incarnation(launcher.namespace, slot, 1).slot_token
    await kv.put(f"s.{token}", packed({"pid": nested_ext(LEVELS)}))
    child = await launcher.start(PROBE, slot=slot)  # claims the slot: overwrites the record
    assert await node.call(child.pid, ["echo", "alive"]) == "alive"
    record = await kv.get(f"s.{token}")
    assert _codec.decode(record.value)["pid"] == child.pid


def test_nested_registry_records_are_refused_on_every_lookup(nats_server, namespace) -> None:
    # names (cached and not), unique keys, groups, and an owner index that a release follows
    out = isolated(f"""
import asyncio
import rebeam
from rebeam import _codec
from rebeam._registry import release_names_of
from rebeam.pids import Pid, escape_token
from tests.sdk.hostile_inputs import nested_ext, owner_record

async def main():
    async with rebeam.connect({nats_server.url!r}, namespace={namespace!r}) as node:
        kv = await node.store.kv()
        dead = Pid.for_incarnation({namespace!r}, "dead", 1)
        bomb = owner_record(dead, nested_ext({LEVELS}))
        await rebeam.Registry.open("reg", keys="unique")
        await rebeam.join("grp")
        await kv.put("n.victim", bomb)
        await kv.put("u.reg.key", bomb)
        await kv.put(f"d.{{escape_token('pg:pg')}}.grp.dead.1.1", bomb)
        await kv.put("m.bad", bomb)
        await kv.put(f"o.{{dead.tokens}}.{{escape_token('n.victim')}}", b"n.victim")
        await kv.put(f"o.{{dead.tokens}}.junk", b"\\xff\\xfe$JS.API.STREAM.DELETE.x")
        print("cached", await node.whereis("victim"))
        print("uncached", await node.whereis("victim", cached=False))
        print("unique", await (await rebeam.Registry.open("reg")).lookup("key"))
        print("group", await rebeam.members("grp") == [node.pid])
        try:
            await rebeam.Registry.open("bad", keys="unique")
        except rebeam.RegistryMismatch as exc:
            print("declared", exc)
        print("released", await release_names_of(node.nc, dead))
        print("invalid", node.stats.registry_invalid)

asyncio.run(main())
""")
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert (lines["cached"], lines["uncached"]) == ("None", "None"), out
    assert (lines["unique"], lines["group"]) == ("[]", "True"), out
    assert "invalid keys" in lines["declared"], out
    assert lines["released"] == "0", out
    assert int(lines["invalid"]) >= 5, out


async def test_a_nested_durable_message_is_parked(launcher, node):
    child = await launcher.start(DURABLE, {"report_to": str(node.pid)})
    js = node.nc.jetstream()
    bomb = envelope(CAST, durable_address(child.pid), str(node.pid), nested_ext(LEVELS))
    await js.publish(_subjects.durable_queue(child.pid, node.pid), bomb)

    async def parked() -> bool:
        return (await node.stats_of(child.pid))["parked"] == 1

    await until(parked, "the bomb to be parked")
    await node.cast(child.pid, "after", durable=True)
    assert await node.receive(timeout=20) == {"got": "after", "by": str(child.pid)}
    assert (await node.stats_of(child.pid))["malformed"] == 1


async def test_deep_exit_events_are_ignored_and_counted(launcher, node):
    watcher = await launcher.start(PROBE, {"report_to": str(node.pid)})
    target = await launcher.start(PROBE)
    assert await node.call(watcher.pid, ["monitor", str(target.pid)]) == "ok"
    subject = _subjects.events_of(target.pid)
    deep_info = json.loads(deep_json(600))  # deeper than msgpack will pack again
    forged = {"event": "exited", "pid": str(target.pid), "reason": {"shutdown": deep_info}}
    for payload in (json.dumps(forged).encode(), deep_json(100_000).encode(), b"\xff"):
        await launcher.nc.publish(subject, payload)  # events are the backend's to publish

    async def counted() -> bool:
        return (await node.stats_of(watcher.pid))["malformed_events"] == 3

    await until(counted, "the three events to be refused")
    target.kill()  # the monitor still works
    down = await node.receive(timeout=10)
    assert down == {"down": str(target.pid), "reason": "killed"}
    assert await node.call(watcher.pid, ["echo", "alive"]) == "alive"


@pytest.mark.parametrize(
    "content",
    [deep_json(100_000), '{"shutdown": ' + deep_json(50) + "}", "[1", "x" * (2 << 20), "\xff"],
    ids=["deep", "deep-info", "truncated", "huge", "not-utf8"],
)
def test_an_unusable_exit_record_is_no_record(tmp_path, content) -> None:
    path = tmp_path / "record.json"
    path.write_bytes(content.encode("latin-1"))
    assert read_exit_record(path) is None
