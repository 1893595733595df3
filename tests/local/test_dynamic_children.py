"""The management API under ``rebeam run``: start_child's arguments reach the child's init,
from the CLI and from Python, combined with the template's as OTP combines them; and requests
made while a tree is starting wait for it rather than fail."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import nats
import pytest

import rebeam
from rebeam import _subjects
from tests.local.conftest import DEADLINE, StartRun, supervisor

# Writes the arguments its init was given to <out>/<tag>.json (the tag comes from start_child).
RECORDER = """\
import json
from pathlib import Path
import rebeam
class Recorder(rebeam.Actor):
    async def init(self, args):
        out = Path(args["out"])
        (out / f"{args['tag']}.tmp").write_text(json.dumps(args))
        (out / f"{args['tag']}.tmp").replace(out / f"{args['tag']}.json")
"""


def jobs(out: Path) -> str:
    return (
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: jobs}\n"
        "spec:\n  strategy: simple_one_for_one\n"
        "  childTemplate:\n    name: job\n"
        f"    actor: {{module: 'recording:Recorder', args: {{out: '{out}', tag: none}}}}\n"
    )


def test_start_child_args_reach_init(rebeam_run: StartRun, tmp_path: Path) -> None:
    (tmp_path / "recording.py").write_text(RECORDER)
    out = tmp_path / "out"
    out.mkdir()
    run = rebeam_run(jobs(out))
    run.wait_ready()

    started = run.rebeam("start-child", "jobs", '{"tag": "cli", "url": "http://x"}')
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == "jobs/job-1#1"
    # Replied once init returned: what it was given is on disk already.
    assert json.loads((out / "cli.json").read_text()) == {
        "out": str(out),
        "tag": "cli",
        "url": "http://x",
    }

    info = run.instance()

    async def from_python() -> str:
        async with rebeam.connect(
            info["nats_url"], namespace=run.namespace, credentials=info["credentials"]
        ):
            return await rebeam.start_child("jobs", {"tag": "sdk", "n": 2})

    assert asyncio.run(from_python()) == "jobs/job-2#1"
    assert json.loads((out / "sdk.json").read_text()) == {"out": str(out), "tag": "sdk", "n": 2}


# Its init connects to the test's socket and returns once the test sends a byte: a start
# the test ends when it chooses.
GATE = """\
import asyncio
import rebeam
class Gate(rebeam.Actor):
    async def init(self, args):
        reader, writer = await asyncio.open_unix_connection(args["socket"])
        await reader.read(1)
        writer.close()
"""


def test_requests_during_a_slow_start_wait_for_it(rebeam_run: StartRun, tmp_path: Path) -> None:
    # app starts pool, then gate, whose init waits for the test, then later. Meanwhile a tree
    # request waits for the start to end (OTP's which_children waits out an init), a
    # start_child to pool, which runs already, is answered at once (app is reachable while it
    # starts), and one to later, not created yet, waits for later to be up.
    (tmp_path / "gating.py").write_text(GATE)
    gate = socket.socket(socket.AF_UNIX)
    gate.bind(str(tmp_path / "gate.sock"))
    gate.listen()
    gate.settimeout(DEADLINE)
    children = (
        "    - name: pool\n"
        "      supervisor:\n"
        "        strategy: simple_one_for_one\n"
        "        childTemplate: {name: job, actor: {command: [sleep], args: ['300']}}\n"
        "    - name: gate\n"
        "      startTimeout: 120\n"
        f"      actor: {{module: 'gating:Gate', args: {{socket: '{tmp_path / 'gate.sock'}'}}}}\n"
        "    - name: later\n"
        "      supervisor:\n"
        "        strategy: simple_one_for_one\n"
        "        childTemplate: {name: job, actor: {command: [sleep], args: ['300']}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    info = run.instance()
    waiting, _ = gate.accept()  # gate is in its init
    gate.close()

    async def meanwhile() -> tuple[str, Any]:
        async with rebeam.connect(
            info["nats_url"], namespace=run.namespace, credentials=info["credentials"]
        ) as node:
            inbox = node.nc.new_inbox()
            replies = await node.nc.subscribe(inbox, max_msgs=1)
            tree = _subjects.control(run.namespace, "tree", node.pid)
            await node.nc.publish(tree, b"{}", reply=inbox)
            await node.nc.flush()
            later = asyncio.ensure_future(rebeam.start_child("app/later", ["2"]))
            # Sent after the tree request on the same connection: once this is answered, the
            # tree request has reached the run too, and waits.
            started = await rebeam.start_child("app/pool", ["1"])
            with pytest.raises(nats.errors.TimeoutError):
                await replies.next_msg(timeout=0)
            assert not later.done()
            waiting.sendall(b"!")  # gate's init returns
            answer = await replies.next_msg(timeout=DEADLINE)
            assert await later == "app/later/job-1#1"
            return started, json.loads(answer.data)

    with waiting:
        started, tree = asyncio.run(meanwhile())
    assert started == "app/pool/job-1#1"
    (app,) = tree["ok"]
    assert app["state"] == "running"
    assert [(c["name"], c["state"]) for c in app["children"]] == [
        ("pool", "running"),
        ("gate", "running"),
        ("later", "running"),
    ]
