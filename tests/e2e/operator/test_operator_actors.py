"""Python actors in pods: they find and call each other by registered name over NATS, a
crash is restarted and the restarted actor takes its name back; an Actor applied on its own
is supervised too; a wrong manifest never reaches the operator."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client
from operator_helpers import (
    DEMO,
    GROUP,
    VERSION,
    Lifecycle,
    Objects,
    Operator,
    child_state,
    supervisor,
)

pytestmark = pytest.mark.e2e

REBEAM = str(Path(sys.executable).parent / "rebeam")


def test_actors_call_each_other_by_name(
    operator: Operator, objects: Objects, lifecycle: Lifecycle
) -> None:
    """The README's demo as it is, on the cluster: the driver calls greeter and counter by
    name, crashes counter, monitors it (the operator's exited event), calls the restarted
    counter by name again and ends normally, which shuts the tree down (autoShutdown)."""
    manifest: dict[str, Any] = yaml.safe_load((DEMO / "app.yaml").read_text())
    for child in manifest["spec"]["children"]:
        child["actor"]["env"] = [{"name": "PYTHONPATH", "value": str(DEMO)}]

    objects.apply(manifest)

    status = objects.wait_status(
        "hello", lambda s: s.get("phase") == "Terminated", what="the demo to finish", timeout=90
    )
    counter = child_state(status, "counter")
    assert counter["restarts"] == 1
    assert counter["lastExit"]["reason"] == "shutdown"  # stopped by the auto shutdown
    assert child_state(status, "driver")["lastExit"]["reason"] == "normal"
    # The supervisor's own shutdown event is sent once its status says Terminated: wait for it.
    lifecycle.wait("shutdown shutdown")
    lines = lifecycle.lines()
    assert lines.index("exited counter crash") < lines.index("restarting counter crash")
    assert "exited driver normal" in lines
    # The reason came through the pod's termination message, exception and all.
    crashed = next(
        e for e in lifecycle.events() if e["event"] == "exited" and e["child"] == "counter"
    )
    assert crashed["reason"]["crash"]["exception_type"] == "RuntimeError"
    assert "on purpose" in crashed["reason"]["crash"]["message"]
    assert lines[-1] == "shutdown shutdown"
    assert status["restartsInWindow"] == 1


def test_an_actor_applied_on_its_own_is_supervised(
    operator: Operator, objects: Objects, kubelet: ProcessKubelet, namespace: str, nats_url: str
) -> None:
    objects.apply(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Actor",
            "metadata": {"name": "solo"},
            "spec": {"command": ["sleep", "600"], "shutdown": "brutal_kill"},
        }
    )
    objects.wait_status(
        "solo", lambda s: s.get("ready") == "1/1", plural="actors", what="solo running"
    )
    kubelet.kill_container(namespace, "solo-1", "actor", signal.SIGKILL)
    status = objects.wait_status(
        "solo",
        lambda s: s.get("incarnation") == 2 and s.get("ready") == "1/1",
        plural="actors",
        what="solo restarted",
    )
    assert status["pod"] == "solo-2"
    assert status["restarts"] == 1
    assert status["lastExit"]["reason"] == "killed"
    # rebeam tree shows it as rebeam run does: its implicit supervisor, of one child.
    shown = subprocess.run(
        [REBEAM, "tree", "--json", "--nats-url", nats_url, "--namespace", namespace],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    (root,) = json.loads(shown.stdout)
    assert (root["path"], root["strategy"]) == ("solo", "one_for_one")
    (child,) = root["children"]
    assert (child["name"], child["incarnation"], child["pod"]) == ("solo", 2, "solo-2")
    assert child["last_exit"] == "killed"
    objects.delete("solo", "actors")
    wait_for(lambda: not objects.pods(), timeout=30, what="solo's pods gone")


def test_a_wrong_manifest_is_refused_before_the_operator_sees_it(
    operator: Operator, objects: Objects
) -> None:
    wrong = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Supervisor",
        "metadata": {"name": "wrong"},
        "spec": {
            "autoShutdown": "any_significant",
            "children": [{"name": "a", "significant": True, "actor": {"command": ["true"]}}],
        },
    }
    with pytest.raises(client.ApiException) as refused:
        objects.apply(wrong)
    assert refused.value.status == 422
    message = json.loads(refused.value.body)["message"]
    assert "spec.children[0]" in message
    assert "significant" in message
    assert objects.get("wrong") is None
    assert not objects.pods()
    operator.check_running()


def test_a_quick_job_is_started_then_ended_not_failed(
    operator: Operator, objects: Objects, lifecycle: Lifecycle
) -> None:
    """A command that is done before the operator looks still started (as under rebeam run):
    a transient one that exits 0 is not restarted and does not fail its supervisor."""
    job = {"name": "job", "restart": "transient", "actor": {"command": ["true"]}}
    objects.apply(supervisor("jobs", [job]))
    status = objects.wait_status(
        "jobs",
        lambda s: child_state(s, "job").get("lastExit", {}).get("reason") == "normal",
        what="the job done",
    )
    assert status["phase"] == "Running"
    assert child_state(status, "job")["state"] == "undefined"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert lifecycle.lines() == ["started job", "exited job normal"]
