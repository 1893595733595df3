"""The tree kept from events (what tree --watch and the observer share): an event changes
its child at once, an unknown child asks for a fresh tree, the timeline is bounded."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from rebeam.events import LifecycleEvent
from rebeam.observe.treestate import TreeFollower, TreeState, client_event
from rebeam.pids import Pid


def tree() -> list[dict[str, Any]]:
    child = {"name": "a", "path": "s/a", "kind": "actor", "state": "running", "incarnation": 1,
             "pid": "ns.s-a.1", "os_pid": 10, "pod": None, "starts": 1,
             "last_exit": None}  # fmt: skip
    return [{"path": "s", "kind": "supervisor", "restarts": 0, "children": [child]}]


def test_events_change_their_child_at_once() -> None:
    state = TreeState()
    state.replace(tree())
    before = state.version
    crash = {"kind": "killed"}
    assert state.apply(LifecycleEvent(event="exited", supervisor="s", child="a", reason=crash))
    assert state.node("s/a") == {**tree()[0]["children"][0], "state": "exited",
                                 "last_exit": crash, "os_pid": None}  # fmt: skip
    assert state.apply(LifecycleEvent(event="restarting", supervisor="s", child="a"))
    assert state.node("s")["restarts"] == 1  # type: ignore[index]
    started = LifecycleEvent(
        event="started", supervisor="s", child="a", incarnation=2, pid="ns.s-a.2", os_pid=11
    )
    assert state.apply(started)
    child = state.node("s/a")
    assert child is not None
    assert (child["state"], child["incarnation"], child["os_pid"], child["starts"]) == (
        "running", 2, 11, 2,
    )  # fmt: skip
    assert state.version == before + 3
    assert [e["event"] for e in state.timeline] == ["exited", "restarting", "started"]


def test_an_unknown_child_asks_for_a_fresh_tree_and_the_timeline_is_bounded() -> None:
    state = TreeState(timeline=3)
    state.replace(tree())
    assert not state.apply(LifecycleEvent(event="started", supervisor="s", child="new-1"))
    for _ in range(5):
        state.apply(LifecycleEvent(event="started", supervisor="s", child="a"))
    assert len(state.timeline) == 3
    assert [c["path"] for c in state.children()] == ["s/a"]


def test_client_exits_are_not_the_trees() -> None:
    assert client_event(LifecycleEvent(event="exited", pid="ns.client-abc.1"))
    assert not client_event(LifecycleEvent(event="exited", pid="ns.s-a.1", supervisor="s"))
    assert not client_event(LifecycleEvent(event="exited", pid="not a pid"))


class LosesItsCancellation(TreeFollower):
    """A refresh that drops a cancellation, as a NATS request can on Python 3.11."""

    async def refresh(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)


async def test_stop_ends_the_follower_even_when_a_cancellation_was_lost() -> None:
    follower = LosesItsCancellation(None, Pid.for_client("ns"), "ns", refresh_every=0.01)
    running = asyncio.get_running_loop().create_task(follower.run())
    follower.mark_stale()
    await asyncio.sleep(0.05)  # inside the refresh
    running.cancel()  # lost
    await asyncio.sleep(0.05)
    assert not running.done()
    await follower.stop()
    await asyncio.wait_for(running, 2)  # ended, not waiting for the next event forever


def test_a_new_incarnation_shows_no_old_pod() -> None:
    """On a cluster a child runs in a pod, and events do not name it: the pod of the
    incarnation that ended is not shown for the next one."""

    def on_a_pod() -> list[dict[str, Any]]:
        roots = tree()
        roots[0]["children"][0].update(os_pid=None, pod="s-a-1")
        return roots

    state = TreeState()
    state.replace(on_a_pod())
    state.apply(LifecycleEvent(event="exited", supervisor="s", child="a", reason="killed"))
    assert state.node("s/a")["pod"] is None  # type: ignore[index]
    state.replace(on_a_pod())
    started = LifecycleEvent(
        event="started", supervisor="s", child="a", incarnation=2, pid="ns.s-a.2"
    )
    state.apply(started)
    assert state.node("s/a")["pod"] is None  # type: ignore[index]
