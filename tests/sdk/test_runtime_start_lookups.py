"""An actor's runtime reads its slot record and takes its lease on buckets its backend
created: it does not look them up first (a ``STREAM.INFO`` round trip ahead of each), and a
namespace nobody set up is still refused by name."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import nats
import pytest

import rebeam
from rebeam import _api, _current
from rebeam._lease import Lease
from rebeam.auth.grants import Grant, Role
from rebeam.backends import claim_slot
from rebeam.errors import NotPermitted
from rebeam.natsd import NatsServer
from rebeam.pids import Pid
from rebeam.runtime._main import parse_args, run


class Echo(rebeam.Actor):
    async def handle_call(self, msg: Any, from_: rebeam.From) -> Any:
        return msg


async def test_the_runtime_starts_without_looking_its_buckets_up(
    nats_server: NatsServer, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = Pid.for_incarnation(namespace, "quick", 1)
    backend = await nats.connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    lookups: list[str] = []

    async def looked_up(msg: Any) -> None:
        lookups.append(msg.subject)

    try:
        await claim_slot(backend, pid)  # what a backend does before the process runs
        await backend.subscribe("$JS.API.STREAM.INFO.>", cb=looked_up)
        await backend.flush()
        credential = tmp_path / "actor.cred"
        credential.write_text(nats_server.credentials(Grant(Role.ACTOR, namespace, pid)) or "")
        credential.chmod(0o600)
        owner = nats_server.admin_credentials(namespace)
        monkeypatch.setenv("REBEAM_CREDENTIALS_FILE", str(credential))
        monkeypatch.setattr(_current, "_default", _current._default)  # the runtime sets it
        monkeypatch.delenv("REBEAM_CREDENTIALS")
        ready_r, ready_w = os.pipe()
        argv = [f"{__name__}:Echo", "--nats", nats_server.url, "--pid", str(pid)]
        runtime = asyncio.create_task(run(parse_args([*argv, "--ready-fd", str(ready_w)])))
        loop = asyncio.get_running_loop()
        try:
            said = await asyncio.wait_for(loop.run_in_executor(None, os.read, ready_r, 100), 30)
        finally:
            os.close(ready_r)
        assert said.startswith(b"ready"), said
        await backend.flush()  # every request the runtime made before ready has reached us
        assert lookups == []
        async with rebeam.connect(
            nats_server.url, namespace=namespace, credentials=owner
        ) as caller:
            assert await caller.call(pid, "hello", timeout=30) == "hello"
        host: Any = _api.current_node().on_message.__self__  # type: ignore[attr-defined]
        host.request_stop()
        await asyncio.wait_for(runtime, 30)
    finally:
        await backend.close()


async def test_a_lease_in_a_namespace_nobody_set_up_is_refused_by_name(
    nats_server: NatsServer, namespace: str
) -> None:
    pid = Pid.for_incarnation("nowhere", "lost", 1)
    nc = await nats.connect(nats_server.url, token=nats_server.backend_credentials(namespace))
    try:
        with pytest.raises(NotPermitted, match="namespace 'nowhere' is not set up here"):
            await Lease(nc.jetstream(), pid).acquire(provisioned=True)
    finally:
        await nc.close()
