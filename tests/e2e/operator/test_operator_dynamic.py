"""simple_one_for_one and the management API on Kubernetes: the same ``rebeam start-child |
terminate-child | restart-child | tree`` as against ``rebeam run``, pointed at the cluster's
NATS and namespace; the operator answers. Dynamic children are pods named `<template>-<n>`
(docs/sdk.md, "Dynamic children") and live in the core's snapshot in status, so they survive
an operator restart."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import Objects, Operator, Watchdog, child_state, sleeper, supervisor

import rebeam

pytestmark = pytest.mark.e2e

REBEAM = str(Path(sys.executable).parent / "rebeam")


def cli(nats_url: str, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REBEAM, *args, "--nats-url", nats_url, "--namespace", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_child(nats_url: str, namespace: str, supervisor: str) -> str:
    """``rebeam start-child``, once the operator answers (it subscribes once NATS is reached);
    the new child's path and incarnation."""
    done = wait_for(
        lambda: (r := cli(nats_url, namespace, "start-child", supervisor)).returncode == 0 and r,
        timeout=30,
        what=f"start-child {supervisor} answered",
    )
    return str(done.stdout.strip())


def pool(name: str = "pool", **spec: object) -> dict[str, object]:
    body = supervisor(name, [], strategy="simple_one_for_one", intensity=3, period="60s", **spec)
    body["spec"]["childTemplate"] = sleeper("worker", shutdown="2s")  # type: ignore[index]
    return body


def test_dynamic_children_start_and_stop_through_the_cli(
    operator: Operator,
    objects: Objects,
    watchdog: Watchdog,
    nats_url: str,
    namespace: str,
) -> None:
    objects.apply(pool(maxChildren=2))
    objects.apply(supervisor("static", [sleeper("a")]))
    objects.wait_status("pool", lambda s: s.get("phase") == "Running", what="pool running")
    objects.wait_status("static", lambda s: s.get("ready") == "1/1", what="static ready")

    first = wait_for(
        lambda: (
            (r := cli(nats_url, namespace, "start-child", "pool", '{"job": 1}')).returncode == 0
            and r
        ),
        timeout=30,
        what="the operator answering start-child",
    )
    assert first.stdout.strip() == "pool/worker-1#1"
    # Replied once started, as OTP's start_child: the pod runs already.
    assert "pool-worker-1-1" in objects.running_pods()
    second = cli(nats_url, namespace, "start-child", "pool", '{"job": 2}')
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "pool/worker-2#1"

    refused = cli(nats_url, namespace, "start-child", "pool", "{}")
    assert refused.returncode == 1
    assert "pool has reached max_children (2)" in refused.stderr
    wrong = cli(nats_url, namespace, "start-child", "static")
    assert "static is not simple_one_for_one" in wrong.stderr
    unknown = cli(nats_url, namespace, "start-child", "nope")
    assert "no running supervisor at 'nope' (no_supervisor)" in unknown.stderr
    restart = cli(nats_url, namespace, "restart-child", "pool/worker-2")
    assert "simple_one_for_one" in restart.stderr

    # A static child through the same API: terminate, restart, by path.
    assert cli(nats_url, namespace, "terminate-child", "static/a").returncode == 0
    wait_for(lambda: "static-a-1" not in objects.pods(), timeout=30, what="static-a-1 gone")
    missing = cli(nats_url, namespace, "delete-child", "static/b")
    assert "static has no child 'b' (not_found)" in missing.stderr
    again = cli(nats_url, namespace, "restart-child", "static/a")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "static/a#2"
    busy = cli(nats_url, namespace, "delete-child", "static/a")
    assert "static/a is running: terminate it first (running)" in busy.stderr

    tree = cli(nats_url, namespace, "tree", "--json")
    assert tree.returncode == 0, tree.stderr
    roots = {node["path"]: node for node in json.loads(tree.stdout)}
    assert [c["name"] for c in roots["pool"]["children"]] == ["worker-1", "worker-2"]

    stopped = cli(nats_url, namespace, "terminate-child", "pool/worker-1")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(
        lambda: "pool-worker-1-1" not in objects.pods(), timeout=30, what="pool-worker-1-1 gone"
    )
    status = objects.wait_status(
        "pool",
        lambda s: [c["name"] for c in s.get("children") or []] == ["worker-2"],
        what="only worker-2",
    )
    assert status["restartsInWindow"] == 0
    # Its Actor slot object goes with it.
    wait_for(
        lambda: objects.get("pool-worker-1", "actors") is None, timeout=30, what="slot deleted"
    )
    assert (
        cli(nats_url, namespace, "terminate-child", "pool/worker-1").returncode == 0
    )  # idempotent
    gone = cli(nats_url, namespace, "terminate-child", "pool/worker-9")
    assert "pool has no child 'worker-9' (not_found)" in gone.stderr

    # The same from Python: rebeam.start_child works against the operator too.
    async def from_python() -> None:
        async with rebeam.connect(nats_url, namespace=namespace):
            assert await rebeam.start_child("pool", {"job": 3}) == "pool/worker-3#1"
            with pytest.raises(rebeam.SupervisorRefused, match="max_children"):
                await rebeam.start_child("pool")
            await rebeam.terminate_child("pool/worker-3")

    asyncio.run(from_python())
    wait_for(
        lambda: "pool-worker-3-1" not in objects.pods(), timeout=30, what="pool-worker-3-1 gone"
    )
    assert watchdog.close() == []
    operator.check_running()


def test_dynamic_children_survive_an_operator_restart(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    watchdog: Watchdog,
    nats_url: str,
    namespace: str,
) -> None:
    objects.apply(pool())
    objects.wait_status("pool", lambda s: s.get("phase") == "Running", what="pool running")
    for n in (1, 2):
        reply = start_child(nats_url, namespace, "pool")
        assert reply == f"pool/worker-{n}#1"
    uids = {name: pod["metadata"]["uid"] for name, pod in objects.pods().items()}
    assert set(uids) == {"pool-worker-1-1", "pool-worker-2-1"}

    operator.kill()
    operator.start()
    # Asked at once, the restarted operator is either not letting connections in yet (it is
    # NATS's credential issuer: the CLI's connect fails within its 3 s), not subscribed yet
    # ("no responders", at once), or answers: never silent until the caller's 30 s timeout.
    while True:
        began = time.monotonic()
        shown = cli(nats_url, namespace, "tree", "--json")
        assert time.monotonic() - began < 20, f"a request waited {time.monotonic() - began:.0f}s"
        if shown.returncode == 0:
            break
        assert (
            "no rebeam run or operator answers" in shown.stderr
            or "no answer within 3s" in shown.stderr
        ), shown.stderr
    names = [c["name"] for c in json.loads(shown.stdout)[0]["children"]]
    assert names == ["worker-1", "worker-2"]
    # The restored core still has both children; their pods are the same ones.
    objects.wait_status("pool", lambda s: s.get("ready") == "2/2", what="2/2 after restart")
    kubelet.kill_container(namespace, "pool-worker-2-1", "actor", signal.SIGKILL)
    status = objects.wait_status(
        "pool",
        lambda s: s.get("incarnations", {}).get("worker-2") == 2 and s.get("ready") == "2/2",
        what="dynamic child 2 restarted from the template",
    )
    assert status["restartsInWindow"] == 1
    assert objects.pods()["pool-worker-1-1"]["metadata"]["uid"] == uids["pool-worker-1-1"]
    third = start_child(nats_url, namespace, "pool")
    assert third == "pool/worker-3#1"  # numbers are never used twice
    wait_for(
        lambda: (
            set(objects.running_pods()) == {"pool-worker-1-1", "pool-worker-2-2", "pool-worker-3-1"}
        ),
        timeout=30,
        what="pods of 1, 2 (second incarnation) and 3",
    )
    assert watchdog.close() == []
    operator.check_running()


def team_pool(name: str = "teams") -> dict[str, object]:
    """A simple_one_for_one whose template is itself a supervisor (of one sleeper, w)."""
    body = supervisor(name, [], strategy="simple_one_for_one", intensity=5, period="600s")
    body["spec"]["childTemplate"] = {  # type: ignore[index]
        "name": "team",
        "shutdown": "5s",
        "supervisor": {"intensity": 1, "period": "600s", "children": [sleeper("w")]},
    }
    return body


def test_dynamic_children_may_be_supervisors(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    watchdog: Watchdog,
    nats_url: str,
    namespace: str,
) -> None:
    """Each dynamic child is a Supervisor object of its own, named `<template>-<n>`; it gives
    up and is restarted by its parent as any nested supervisor, survives an operator restart,
    and terminate-child stops its whole subtree."""
    objects.apply(team_pool())
    objects.wait_status("teams", lambda s: s.get("phase") == "Running", what="teams running")
    for n in (1, 2):
        reply = start_child(nats_url, namespace, "teams")
        assert reply == f"teams/team-{n}#1"
        # Replied once started: the team's own child runs already.
        assert f"teams-team-{n}-w-1" in objects.running_pods()
    assert objects.status("teams-team-1")["path"] == "teams/team-1"

    # Team 1's w crashes twice within its intensity of 1: team 1 gives up (exit shutdown),
    # and teams, its parent, restarts it as a permanent child: a second incarnation of team 1.
    kubelet.kill_container(namespace, "teams-team-1-w-1", "actor", signal.SIGKILL)
    objects.wait_status(
        "teams-team-1",
        lambda s: s.get("ready") == "1/1" and s.get("incarnations") == {"w": 2},
        what="w restarted",
    )
    kubelet.kill_container(namespace, "teams-team-1-w-2", "actor", signal.SIGKILL)
    status = objects.wait_status(
        "teams",
        lambda s: s.get("incarnations", {}).get("team-1") == 2 and s.get("ready") == "2/2",
        what="team 1 restarted by its parent",
    )
    assert status["restartsInWindow"] == 1
    assert child_state(status, "team-1")["lastExit"]["reason"] == "shutdown"
    wait_for(
        lambda: "teams-team-1-w-3" in objects.running_pods(), timeout=30, what="team 1's new w"
    )

    operator.kill()
    operator.start()
    objects.wait_status("teams", lambda s: s.get("ready") == "2/2", what="2/2 after restart")
    third = start_child(nats_url, namespace, "teams")
    assert third == "teams/team-3#1"

    stopped = cli(nats_url, namespace, "terminate-child", "teams/team-1")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(
        lambda: objects.get("teams-team-1") is None, timeout=30, what="team 1's object deleted"
    )
    wait_for(
        lambda: set(objects.running_pods()) == {"teams-team-2-w-1", "teams-team-3-w-1"},
        timeout=30,
        what="only the pods of teams 2 and 3",
    )
    status = objects.wait_status(
        "teams",
        lambda s: [c["name"] for c in s.get("children") or []] == ["team-2", "team-3"],
        what="team-2, team-3",
    )
    assert status["restartsInWindow"] == 1  # a termination is not a restart
    assert watchdog.close() == []
    operator.check_running()
