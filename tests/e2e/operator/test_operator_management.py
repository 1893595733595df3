"""The management API answers the same on both backends: the same requests against the same
manifest under ``rebeam run`` and on the cluster get the same exit code and the same line
(sentence and code), and ``rebeam tree --json`` has one shape, a running child's pid included.
The local side alone, code by code: tests/local/test_management_errors.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.procs import wait_for
from operator_helpers import Objects, Operator, Watchdog, sleeper, supervisor

# About 30 CLI processes against both backends: each starts a Python interpreter, which on a
# busy 2-core machine takes seconds (the default 120 s ran out at load 14).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REBEAM = str(Path(sys.executable).parent / "rebeam")

MANIFEST = supervisor(
    "app",
    [
        sleeper("idle"),
        {
            "name": "jobs",
            "supervisor": {
                "strategy": "simple_one_for_one",
                "maxChildren": 1,
                "childTemplate": {
                    "name": "worker",
                    "actor": {"command": ["sleep"], "args": ["600"]},
                },
            },
        },
    ],
)

# Every refusal a client can provoke against this tree, in order, with the code it gets;
# None: the command succeeds (its output names the child each backend's way).
STEPS: list[tuple[list[str], str | None]] = [
    (["start-child", ""], "bad_request"),
    (["terminate-child", "idle"], "bad_request"),
    (["start-child", "nope"], "no_supervisor"),
    (["delete-child", "nope/x"], "no_supervisor"),
    (["start-child", "app"], "not_simple_one_for_one"),
    (["start-child", "app/jobs", '{"not": "a list"}'], "bad_args"),
    (["start-child", "app/jobs"], None),
    (["start-child", "app/jobs"], "max_children"),
    (["restart-child", "app/jobs/worker-1"], "simple_one_for_one"),
    (["terminate-child", "app/ghost"], "not_found"),
    (["restart-child", "app/idle"], "running"),
    (["delete-child", "app/idle"], "running"),
]

Answer = tuple[int, str]  # exit code, stderr


def ask(
    command: list[str], target: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REBEAM, *command, *target],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def answers(target: list[str], env: dict[str, str]) -> tuple[list[Answer], Any]:
    """Each step's exit code and error line, then the tree as JSON."""
    got = []
    for command, code in STEPS:
        result = ask(command, target, env)
        if code is None:
            assert result.returncode == 0, result.stderr
        else:
            assert result.stderr.endswith(f" ({code})\n"), result.stderr
        got.append((result.returncode, result.stderr))
    tree = ask(["tree", "--json"], target, env)
    assert tree.returncode == 0, tree.stderr
    return got, json.loads(tree.stdout)


def local_answers(tmp_path: Path) -> tuple[list[Answer], Any]:
    manifest = tmp_path / "app.yaml"
    manifest.write_text(yaml.safe_dump(MANIFEST))
    namespace = f"mgmt{os.getpid()}"
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path / "state"))
    for cluster_only in ("REBEAM_CREDENTIALS", "REBEAM_NATS_URL"):
        env.pop(cluster_only, None)  # the run's own NATS and owner credential, from its file
    process = subprocess.Popen(
        [REBEAM, "run", str(manifest), "--plain", "--namespace", namespace],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    try:
        target = ["--namespace", namespace]
        wait_for(
            lambda: tree_up(ask(["tree", "--json"], target, env)),
            timeout=60,
            what="app running under rebeam run",
        )
        got = answers(target, env)
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        return got
    finally:
        if process.poll() is None:  # the test failed before the run was stopped
            process.kill()
            process.wait()


def tree_up(tree: subprocess.CompletedProcess[str]) -> bool:
    """Whether the tree answered has app's two children running (jobs, a supervisor, starts
    after idle). A run answers as soon as it is up, maybe before its tree has a root."""
    if tree.returncode != 0:
        return False
    roots = json.loads(tree.stdout)
    states = [(c["name"], c["state"]) for root in roots for c in root["children"]]
    return states == [("idle", "running"), ("jobs", "running")]


def shape(node: Any) -> Any:
    """What the tree's shape is made of: every key, with the type of its value, children
    compared by position. A value one backend cannot know is null there: a process's OS pid
    on the cluster, a pod locally."""
    if isinstance(node, list):
        return [shape(n) for n in node]
    out = {}
    for key, value in node.items():
        if key in ("os_pid", "pod"):
            continue
        out[key] = shape(value) if key == "children" else type(value).__name__
    return out


def test_both_backends_answer_alike(
    operator: Operator,
    objects: Objects,
    watchdog: Watchdog,
    nats_url: str,
    namespace: str,
    tmp_path: Path,
) -> None:
    local, local_tree = local_answers(tmp_path)

    objects.apply(MANIFEST)
    objects.wait_status("app", lambda s: s.get("ready") == "2/2", what="app ready")
    target = ["--nats-url", nats_url, "--namespace", namespace]
    env = dict(os.environ)
    wait_for(
        lambda: tree_up(ask(["tree", "--json"], target, env)),
        timeout=60,
        what="the operator answering with app running",
    )
    cluster, cluster_tree = answers(target, env)

    assert cluster == local
    assert shape(cluster_tree) == shape(local_tree)
    for tree in (local_tree, cluster_tree):
        (root,) = tree
        idle, jobs = root["children"]
        assert (idle["path"], idle["state"], jobs["path"]) == ("app/idle", "running", "app/jobs")
        (worker,) = jobs["children"]
        for child in (idle, worker):
            # Each running actor's pid: <namespace>.<slot>.<incarnation>.
            assert isinstance(child["pid"], str), child
            assert child["pid"].endswith(".1"), child
    assert watchdog.close() == []
    operator.check_running()
