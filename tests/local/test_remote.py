"""From another terminal: rebeam tree, call, terminate-child, restart-child, start-child."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

import rebeam
from tests.local.conftest import COUNTER, SLEEPER, StartRun, supervisor


def test_tree_call_terminate_and_restart(rebeam_run: StartRun, tmp_path: Path) -> None:
    (tmp_path / "counting.py").write_text(COUNTER)
    children = (
        "    - {name: counter, actor: {module: 'counting:Counter', register: counter}}\n"
        f"    - {{name: idle, actor: {SLEEPER}}}\n"
    )
    run = rebeam_run(supervisor("app", children))
    run.events.wait("started", "idle")

    tree = run.rebeam("tree", "--json")
    assert tree.returncode == 0, tree.stderr
    (root,) = json.loads(tree.stdout)
    assert [(c["name"], c["state"], c["incarnation"]) for c in root["children"]] == [
        ("counter", "running", 1),
        ("idle", "running", 1),
    ]

    called = run.rebeam("call", "counter", '{"add": 5}')
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout) == {"n": 5}

    stopped = run.rebeam("terminate-child", "app/idle")
    assert stopped.returncode == 0, stopped.stderr
    assert run.events.wait("exited", "idle")["reason"] == "shutdown"
    restarted = run.rebeam("restart-child", "app/idle")
    assert restarted.stdout.strip() == "app/idle#2"
    again = run.rebeam("restart-child", "app/idle")
    assert again.returncode == 1
    assert "running" in again.stderr


def test_errors_are_one_clear_line(rebeam_run: StartRun) -> None:
    run = rebeam_run(supervisor("app", f"    - {{name: idle, actor: {SLEEPER}}}\n"))
    run.events.wait("started", "idle")
    unknown = run.rebeam("call", "nobody", "{}")
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = run.rebeam("terminate-child", "app/ghost")
    assert missing.returncode == 1
    assert "not_found" in missing.stderr
    bad_json = run.rebeam("call", "idle", "{nope")
    assert bad_json.returncode == 2
    assert "not valid JSON" in bad_json.stderr


def test_no_running_instance_is_a_clear_error(rebeam_run: StartRun) -> None:
    run = rebeam_run(supervisor("app", f"    - {{name: idle, actor: {SLEEPER}}}\n"))
    run.events.wait("started", "idle")
    result = run.rebeam("tree", "--namespace", "nothing-here")
    assert result.returncode == 1
    assert "no rebeam run is running for namespace 'nothing-here'" in result.stderr


def test_dynamic_children_of_simple_one_for_one(rebeam_run: StartRun) -> None:
    manifest = (
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: jobs}\n"
        "spec:\n  strategy: simple_one_for_one\n  maxChildren: 2\n"
        "  childTemplate: {name: job, actor: {command: [sleep], args: ['300']}}\n"
    )
    run = rebeam_run(manifest)
    run.wait_ready()  # nothing starts with the tree: wait until it answers
    first = run.rebeam("start-child", "jobs")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "jobs/job-1#1"
    second = run.rebeam("start-child", "jobs")
    assert second.stdout.strip() == "jobs/job-2#1"
    third = run.rebeam("start-child", "jobs")
    assert third.returncode == 1
    assert "max_children" in third.stderr
    job = run.events.wait("started", "job-1")
    os.kill(job["os_pid"], signal.SIGKILL)
    assert run.events.wait("started", "job-1", incarnation=2)


def test_start_child_from_python(rebeam_run: StartRun) -> None:
    # rebeam.start_child sends the control request the CLI sends: the same call works
    # against the operator (tests/e2e/operator/test_operator_dynamic.py).
    manifest = (
        "apiVersion: rebeam.io/v1alpha1\nkind: Supervisor\nmetadata: {name: jobs}\n"
        "spec:\n  strategy: simple_one_for_one\n  maxChildren: 1\n"
        "  childTemplate: {name: job, actor: {command: [sleep], args: ['300']}}\n"
    )
    run = rebeam_run(manifest)
    run.wait_ready()
    info = run.instance()
    url = info["nats_url"]

    async def main() -> None:
        # The owner's credential, from the instance file only its owner can read (rebeam.connect
        # finds it by itself where XDG_STATE_HOME is the run's; this test's is not).
        async with rebeam.connect(url, namespace=run.namespace, credentials=info["credentials"]):
            assert await rebeam.start_child("jobs", ["1"]) == "jobs/job-1#1"
            with pytest.raises(rebeam.SupervisorRefused, match="max_children"):
                await rebeam.start_child("jobs")
            await rebeam.terminate_child("jobs/job-1")

    asyncio.run(main())
    assert run.events.wait("exited", "job-1")

    async def stranger() -> None:
        await rebeam.connect(url, namespace=run.namespace, credentials="rbm_guessed")

    with pytest.raises(rebeam.NotPermitted, match="refused"):
        asyncio.run(stranger())
