"""Links and monitors are bounded per process, and a link from a pid that is not there is
dropped: ``link`` signals from thousands of made-up pids used to leave a subscription each,
in the actor and on the server, forever. Real actor processes, a real nats-server whose
monitoring endpoint counts the subscriptions."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from tests.sdk.hostile_inputs import message, until

import rebeam
from rebeam import _subjects
from rebeam._envelope import LINK
from rebeam.exits import KILLED
from rebeam.pids import Pid

PROBE = "rebeam_test_actors:Probe"
FAKES = 2000
LIMIT = 50


@pytest.fixture
async def node(nats_server, namespace):
    async with rebeam.connect(nats_server.url, namespace=namespace) as node:
        yield node


async def subscriptions_of(monitor_url: str, pid: Pid) -> list[str]:
    """The subjects the server holds subscribed for ``pid``'s connection (named after the
    pid). Only the process's own: JetStream's consumers have subscriptions of their own on
    the server, and a lease watcher's consumer may be replaced at any time on a busy
    machine (docs/nats.md, "Lease watchers")."""

    def read() -> list[str]:
        url = f"{monitor_url}/connz?subs=1&limit=100000"
        with urllib.request.urlopen(url, timeout=5) as answer:
            connections = json.load(answer).get("connections") or []
        for connection in connections:
            if connection.get("name") == str(pid):
                return sorted(connection.get("subscriptions_list") or [])
        raise AssertionError(f"no connection of {pid} on the server")

    return await asyncio.to_thread(read)


async def test_links_from_pids_that_are_not_there_are_bounded_and_released(
    launcher, node, nats_server
):
    child = await launcher.start(PROBE, env={"REBEAM_MAX_LINKS": str(LIMIT)})
    peer = await launcher.start(PROBE)
    # What a first watch costs once (the lease watcher, a request inbox), and the test's own
    # subscriptions (its watch of the child, its request inbox), before the count starts.
    assert await node.call(child.pid, ["monitor", str(peer.pid)]) == "ok"
    await node.stats_of(child.pid)

    # The lease watcher the monitor started subscribes from a task of its own, after monitor
    # returned: its delivery inbox (the one inbox without a wildcard) must be in the count
    # before it starts, or it lands in the middle of it as one subscription too many.
    async def lease_watcher_subscribed() -> bool:
        subjects = await subscriptions_of(nats_server.monitor_url, child.pid)
        return any(s.startswith("_INBOX") and not s.endswith(".*") for s in subjects)

    await until(lease_watcher_subscribed, "the child's lease watcher to subscribe")
    before = await subscriptions_of(nats_server.monitor_url, child.pid)
    baseline = len(before)
    for i in range(FAKES):
        # Made-up senders of this namespace (a subject cannot name another): none exists.
        fake = Pid.for_incarnation(launcher.namespace, f"fake-{i}", 1)
        # Only a backend could send as a pid that is not its own: the worst case.
        await launcher.nc.publish(_subjects.mailbox(child.pid, fake), message(LINK, None))
    await launcher.nc.flush()

    async def all_handled() -> bool:
        # The bound holds all along: at most LIMIT watches at a time.
        subscriptions = len(await subscriptions_of(nats_server.monitor_url, child.pid))
        assert subscriptions <= baseline + LIMIT, f"{subscriptions} subs, {baseline} before"
        stats = await node.stats_of(child.pid)
        handled = ("links_refused", "links_dropped")
        return sum(stats.get(counter, 0) for counter in handled) == FAKES

    await until(all_handled, f"{FAKES} links to be refused or dropped", timeout=60)
    stats = await node.stats_of(child.pid)
    assert stats["links_dropped"] >= 1

    async def released() -> bool:
        stats = await node.stats_of(child.pid)
        subscriptions = len(await subscriptions_of(nats_server.monitor_url, child.pid))
        return stats["links"] == 0 and stats["watches"] == 1 and subscriptions <= baseline

    # As long as the handling above may take: the last pings may still be out on a busy machine.
    try:
        await until(released, "every link and its subscription to be released", timeout=60)
    except AssertionError as exc:
        now = await subscriptions_of(nats_server.monitor_url, child.pid)
        added = sorted(set(now) - set(before))
        raise AssertionError(f"{exc}: {await node.stats_of(child.pid)}; new: {added}") from None

    # A real link still works: its end kills the actor, which does not trap exits.
    assert await node.call(peer.pid, ["link", str(child.pid)]) == "ok"
    assert (await node.stats_of(child.pid))["links"] == 1
    peer.kill()
    assert await child.wait() == KILLED


async def test_monitors_and_links_of_a_node_are_bounded(launcher, nats_server, namespace):
    targets = [await launcher.start(PROBE) for _ in range(3)]
    async with rebeam.connect(
        nats_server.url, namespace=namespace, max_links=2, max_monitors=2
    ) as node:
        first = await node.monitor(targets[0].pid)
        await node.monitor(targets[0].pid)
        with pytest.raises(rebeam.Refused, match="max_monitors"):
            await node.monitor(targets[1].pid)
        assert node.demonitor(first)
        await node.monitor(targets[1].pid)  # room again
        await node.link(targets[0].pid)
        await node.link(targets[1].pid)
        await node.link(targets[1].pid)  # linked already: no second link
        with pytest.raises(rebeam.Refused, match="max_links"):
            await node.link(targets[2].pid)
        await node.unlink(targets[0].pid)
        await node.link(targets[2].pid)
        stats = await node.stats_of()
        assert (stats["links"], stats["monitors"]) == (2, 2)


def test_limits_from_the_environment(monkeypatch) -> None:
    from rebeam._watching import DEFAULT_MAX_LINKS, limit_from_env

    monkeypatch.delenv("REBEAM_MAX_LINKS", raising=False)
    assert limit_from_env("MAX_LINKS", DEFAULT_MAX_LINKS) == 1000
    monkeypatch.setenv("REBEAM_MAX_LINKS", "7")
    assert limit_from_env("MAX_LINKS", DEFAULT_MAX_LINKS) == 7
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("REBEAM_MAX_LINKS", bad)
        with pytest.raises(ValueError, match="REBEAM_MAX_LINKS must be a positive integer"):
            limit_from_env("MAX_LINKS", DEFAULT_MAX_LINKS)
