"""A restart overlaps the release of the dead incarnation's names with the next one's start:
still, whoever reads the ``exited`` event finds the name free (or taken by the next
incarnation), and the restarted child takes its name back and answers through it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import rebeam
from tests.local.conftest import COUNTER, DEADLINE, Run, StartRun, kill_os_pid, supervisor


async def _exited_then_whereis(
    run: Run, info: dict[str, Any], first: dict[str, Any]
) -> tuple[rebeam.Pid | None, Any]:
    async with rebeam.connect(
        info["nats_url"], namespace=run.namespace, credentials=info["credentials"]
    ) as node:
        assert str(await node.whereis("counter", cached=False)) == first["pid"]
        kill_os_pid(first["os_pid"])
        deadline = time.monotonic() + DEADLINE
        # Read the events file as fast as it can change: the release takes milliseconds.
        while not any(
            e["event"] == "exited" and e.get("incarnation") == 1 for e in run.events.poll()
        ):
            assert time.monotonic() < deadline, "no exited event"
            await asyncio.sleep(0.001)
        right_after = await node.whereis("counter", cached=False)
        run.events.wait("started", "counter", incarnation=2)
        answer = await node.call("counter", {"add": 1}, 10)
        return right_after, answer


def test_the_name_is_free_when_exited_is_told_and_taken_back(
    rebeam_run: StartRun, tmp_path: Path
) -> None:
    (tmp_path / "counting.py").write_text(COUNTER)
    actor = "{module: 'counting:Counter', register: counter}"
    run = rebeam_run(supervisor("s", f"    - {{name: counter, actor: {actor}}}\n"))
    run.wait_ready()
    first = run.events.wait("started", "counter")
    right_after, answer = asyncio.run(_exited_then_whereis(run, run.instance(), first))
    assert right_after is None or str(right_after) != first["pid"]
    assert answer == {"n": 1}  # the new incarnation, with fresh state, under the same name
