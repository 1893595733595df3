"""Dynamic children under ``rebeam run``: start_child's arguments reach the child's init, from
the CLI and from Python, combined with the template's as OTP combines them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import rebeam
from tests.local.conftest import StartRun

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
