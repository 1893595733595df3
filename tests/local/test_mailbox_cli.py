"""``rebeam mailbox ls|parked|replay`` (docs/sdk.md, "Durable mailboxes") against a real
secured nats-server and real actor processes: the CLI as a user runs it, with the owner's
credential, and an actor's credential that may not do the same.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nats
import pytest

import rebeam
from rebeam import _durable_stream, _subjects
from rebeam.auth.grants import Grant, Role
from rebeam.pids import Pid

REBEAM = str(Path(sys.executable).parent / "rebeam")
DURABLE = "rebeam_test_actors:DurableProbe"
PROBE = "rebeam_test_actors:Probe"


def cli(nats_server: Any, namespace: str, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [REBEAM, "mailbox", *args, "--namespace", namespace, "--nats", nats_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},  # the owner's credential: REBEAM_CREDENTIALS
        check=False,
    )


async def parked_count(node: rebeam.Node, pid: Pid) -> int:
    js = node.nc.jetstream()
    info = await js.stream_info(
        _durable_stream.stream_name(pid.namespace),
        subjects_filter=_durable_stream.parked_subject(pid),
    )
    return sum((info.state.subjects or {}).values())


async def until_parked(node: rebeam.Node, pid: Pid, count: int) -> None:
    deadline = time.monotonic() + 30
    while await parked_count(node, pid) < count:
        assert time.monotonic() < deadline, "not parked"
        await asyncio.sleep(0.05)


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def test_list_show_and_replay_parked_messages(launcher, node, nats_server, tmp_path):
    ns = launcher.namespace
    args = {"report_to": str(node.pid)}
    extra = ["--mailbox-max-deliver", "1"]
    first = await launcher.start(DURABLE, args, slot="mb", extra=extra)
    await node.cast(first.pid, "poison", durable=True)
    assert "poisoned" in str(await first.wait())
    second = await launcher.start(DURABLE, args, slot="mb", incarnation=2, extra=extra)
    # Hostile: bytes that are no envelope at all, in the queue as this client.
    js = node.nc.jetstream()
    await js.publish(_subjects.durable_queue(first.pid, node.pid), b"\xc1\xff not msgpack")
    await until_parked(node, first.pid, 2)
    await second.stop()

    listed = await asyncio.to_thread(cli, nats_server, ns, "ls")
    assert listed.returncode == 0, listed.stderr
    row = next(line.split() for line in listed.stdout.splitlines() if line.startswith("mb "))
    assert row[:5] == ["mb", "0", "0", "0", "2"]  # waiting, unacked, redelivered, parked

    shown = await asyncio.to_thread(cli, nats_server, ns, "parked", "mb")
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr
    assert f'cast from {node.pid}: "poison"' in shown.stdout
    assert "delivered too many times (after 2 deliveries)" in shown.stdout
    assert "not a valid envelope" in shown.stdout
    assert "\\xc1\\xff not msgpack" in shown.stdout
    lines = shown.stdout.splitlines()
    seqs = [int(line.split()[1].rstrip(":")) for line in lines if line.startswith("seq ")]
    assert len(seqs) == 2

    # The garbage cannot be replayed (no sender to replay it as): refused, nothing done.
    refused = await asyncio.to_thread(cli, nats_server, ns, "replay", "mb", str(seqs[1]))
    assert refused.returncode == 2
    assert "not a valid envelope" in refused.stderr
    assert "Traceback" not in refused.stderr

    # An actor's credential may not read the parked messages nor replay them.
    actor = Pid.for_incarnation(ns, "other", 1)
    credential = tmp_path / "actor-cred"
    credential.write_text(nats_server.credentials(Grant(Role.ACTOR, ns, actor)) or "")
    denied = await asyncio.to_thread(
        cli, nats_server, ns, "replay", "mb", "--all", "--credentials-file", str(credential)
    )
    assert denied.returncode == 1, denied.stdout
    assert "Traceback" not in denied.stderr
    assert await parked_count(node, first.pid) == 2

    # The next incarnation is one that does not crash on it: the replay reaches it, as a
    # cast from its original sender.
    third = await launcher.start(PROBE, {}, slot="mb", incarnation=3, extra=["--mailbox-durable"])
    replayed = await asyncio.to_thread(cli, nats_server, ns, "replay", "mb", str(seqs[0]))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == f"replayed {seqs[0]}"
    deadline = time.monotonic() + 30
    while await node.call(third.pid, "casts") != ["poison"]:
        assert time.monotonic() < deadline, "the replayed message did not arrive"
        await asyncio.sleep(0.05)
    assert await parked_count(node, first.pid) == 1  # the garbage stays parked
    await third.stop()


async def test_an_actor_cannot_write_into_another_mailbox_as_another_sender(launcher, nats_server):
    """What a replay does, publish as the original sender, is the owner's alone."""
    ns = launcher.namespace
    me = Pid.for_incarnation(ns, "me", 1)
    victim = Pid.for_incarnation(ns, "victim", 1)
    someone = Pid.for_incarnation(ns, "someone", 1)
    token = nats_server.credentials(Grant(Role.ACTOR, ns, me))
    nc = await nats.connect(nats_server.url, token=token, name=str(me))
    try:
        js = nc.jetstream(timeout=1.0)
        subject = _subjects.durable_queue(victim, someone)
        with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
            await js.publish(subject, b"forged", timeout=1.0)
        with pytest.raises((nats.errors.TimeoutError, nats.errors.Error)):
            await js.delete_msg(_durable_stream.stream_name(ns), 1)
    finally:
        await nc.close()
    async with rebeam.connect(nats_server.url, namespace=ns) as owner:
        info = await owner.nc.jetstream().stream_info(
            _durable_stream.stream_name(ns), subjects_filter=_subjects.durable_queue_filter(victim)
        )
        assert not info.state.subjects
