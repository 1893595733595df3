"""The run's lifecycle events: an ``exited`` that waits for the dead pid's names to be
released holds every later event behind it, so the file (and NATS) keep the order in which
the supervisor decided them, and nobody hears of the end before the names are free."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rebeam.events import LifecycleEvent
from rebeam.local.lifecycle import Lifecycle


def event(kind: str, incarnation: int | None = None) -> LifecycleEvent:
    return LifecycleEvent(
        event=kind, namespace="t", supervisor="s", child="b", incarnation=incarnation
    )


def told(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["event"] for line in path.read_text().splitlines()]


async def test_events_after_a_waiting_one_wait_with_it_in_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lifecycle = Lifecycle("t", path)
    released: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    lifecycle.emit(event("exited", 1), after=released)
    lifecycle.emit(event("restarting"))
    assert told(path) == []  # the names are not released yet: nobody hears of the end
    released.set_result(None)
    await lifecycle.settled()
    lifecycle.emit(event("started", 2))
    assert told(path) == ["exited", "restarting", "started"]
    await lifecycle.close()


async def test_closing_tells_what_was_held(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lifecycle = Lifecycle("t", path)
    released = asyncio.ensure_future(asyncio.sleep(0.01))
    lifecycle.emit(event("exited", 1), after=released)
    await lifecycle.close()
    assert told(path) == ["exited"]
