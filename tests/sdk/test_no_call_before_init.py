"""No message is handled before ``init`` has returned, also in the moments between the
mailbox's subscription and ``init``'s start.

The runtime subscribes the mailbox, then reads its slot record and registers its name (round
trips to the server), then runs ``init``. A call that arrived in between — by the name, as
soon as its registration was visible at the server and before this process had read the
server's reply — was handled by an actor without its state (the soak's accounts crashed with
AttributeError). The turn is now taken before the mailbox is subscribed. The slot record's
read is held open here, so the call lands in that gap every time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import pytest

import rebeam
from rebeam import _api, _current
from rebeam._node import Node
from rebeam.auth.grants import Grant, Role
from rebeam.backends import claim_slot
from rebeam.natsd import NatsServer
from rebeam.pids import Pid
from rebeam.runtime._main import parse_args, run


class Stateful(rebeam.Actor):
    async def init(self, args: Any) -> None:
        self.state = "initialised"

    async def handle_call(self, msg: Any, from_: rebeam.From) -> Any:
        return getattr(self, "state", "handled before init")


async def test_a_call_before_init_starts_waits_for_init(
    nats_server: NatsServer, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = Pid.for_incarnation(namespace, "early", 1)
    nc = await nats.connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:
        await claim_slot(nc, pid)  # what a backend does before the process runs
    finally:
        await nc.close()
    credential = tmp_path / "actor.cred"
    credential.write_text(nats_server.credentials(Grant(Role.ACTOR, namespace, pid)) or "")
    credential.chmod(0o600)
    owner = nats_server.admin_credentials(namespace)
    monkeypatch.setenv("REBEAM_CREDENTIALS_FILE", str(credential))
    # The runtime makes its node this process's default node, as an actor process's; put the
    # default back when the test ends, or later tests of this process would find it.
    monkeypatch.setattr(_current, "_default", _current._default)
    monkeypatch.delenv("REBEAM_CREDENTIALS")

    reached, gate = asyncio.Event(), asyncio.Event()
    read_slot = Node.superseded_by

    async def held(self: Node) -> Pid | None:
        reached.set()
        await gate.wait()
        return await read_slot(self)

    monkeypatch.setattr(Node, "superseded_by", held)
    ns = parse_args([f"{__name__}:Stateful", "--nats", nats_server.url, "--pid", str(pid)])
    runtime = asyncio.create_task(run(ns))
    await asyncio.wait_for(reached.wait(), 30)  # subscribed; init has not started
    host: Any = _api.current_node().on_message.__self__  # type: ignore[attr-defined]
    async with rebeam.connect(nats_server.url, namespace=namespace, credentials=owner) as caller:
        call = asyncio.create_task(caller.call(pid, "state?", timeout=30))
        # Until the call was handled (the bug) or waits for the actor's turn (the fix).
        async with asyncio.timeout(30):
            while not (call.done() or host._turn_waiters):  # noqa: ASYNC110 - no event for it
                await asyncio.sleep(0.01)
        gate.set()
        assert await call == "initialised"
    host.request_stop()
    await asyncio.wait_for(runtime, 30)
