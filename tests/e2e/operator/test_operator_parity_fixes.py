"""Where the operator must tell what ``rebeam run`` tells: one ``exited`` per incarnation while
a sibling takes its shutdown time, ``killed`` for a child killed at the end of its shutdown
time, a spec that cannot be run refused at admission or reported on the object, and
``brutal_kill`` as a kill without a chance to clean up."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from kubernetes import client, watch
from operator_helpers import (
    Lifecycle,
    Objects,
    Operator,
    event_lines,
    sleeper,
    slow_stopper,
    supervisor,
    wait_armed,
)

pytestmark = pytest.mark.e2e

Json = dict[str, Any]


def _exits(events: list[Json]) -> Counter[tuple[str, int]]:
    return Counter(
        (e["child"], e["incarnation"]) for e in events if e["event"] in ("exited", "start_failed")
    )


def test_each_incarnation_is_told_exited_once_and_a_child_killed_at_its_deadline_killed(
    operator: Operator,
    objects: Objects,
    lifecycle: Lifecycle,
    kubelet: ProcessKubelet,
    namespace: str,
    tmp_path: Path,
) -> None:
    armed = tmp_path / "b-armed"
    children = [
        sleeper("a", shutdown="2s"),
        sleeper("c", shutdown="2s"),
        # b ignores SIGTERM for 30 s: its 3 s shutdown runs out and the kubelet kills it.
        slow_stopper("b", 30, armed, shutdown="3s"),
    ]
    objects.apply(supervisor("app", children, strategy="one_for_all", period="60s"))
    objects.wait_status("app", lambda s: s.get("ready") == "3/3", what="3/3 ready")
    wait_armed(armed)

    kubelet.kill_container(namespace, "app-a-1", "actor", signal.SIGKILL)
    # b is stopped first (newest first) and takes its 3 s; c crashes meanwhile, and its exit
    # waits in the core's mailbox while the driver passes every second.
    wait_for(
        lambda: "deletionTimestamp" in objects.pods().get("app-b-1", {}).get("metadata", {}),
        timeout=30,
        what="b being stopped",
    )
    kubelet.kill_container(namespace, "app-c-1", "actor", signal.SIGKILL)

    objects.wait_status(
        "app",
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == {"a": 2, "b": 2, "c": 2},
        timeout=90,
        what="every child running again",
    )
    lifecycle.wait("started c", count=2, timeout=30)
    lines = lifecycle.lines()
    assert "exited b killed" in lines, lines  # the kubelet's SIGKILL at the deadline
    assert "exited a killed" in lines, lines
    assert "exited c killed" in lines, lines
    assert _exits(lifecycle.events()) == {("a", 1): 1, ("b", 1): 1, ("c", 1): 1}, lines
    operator.check_running()


@pytest.mark.parametrize("period", [0, "0s", "0s0ms"])
def test_a_period_of_0_is_refused_at_admission(objects: Objects, period: object) -> None:
    with pytest.raises(client.ApiException) as refused:
        objects.apply(supervisor("app", [sleeper("a")], period=period))
    assert refused.value.status == 422
    assert "spec.period" in str(refused.value.body)


def test_a_spec_that_cannot_run_is_reported_on_the_object_once(
    operator: Operator, objects: Objects, lifecycle: Lifecycle
) -> None:
    # The CRD leaves a child's args untyped (a module's may be any JSON); a command's must be
    # strings, which only rebeam validate and the operator check.
    bad = {"name": "a", "actor": {"command": ["sleep"], "args": ["600", 1]}}
    objects.apply(supervisor("app", [bad]))
    sentence = "spec.children.0.actor.args: the args of a command must be a list of strings"

    def spec_valid(status: Json) -> Json | None:
        return next((c for c in status.get("conditions") or [] if c["type"] == "SpecValid"), None)

    status = objects.wait_status("app", spec_valid, what="the SpecValid condition")
    condition = spec_valid(status)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert condition["message"] == sentence
    assert status["phase"] == "Failed"
    wait_for(
        lambda: [e for e in objects.events("app") if e["reason"] == "InvalidSpec"],
        timeout=30,
        what="the InvalidSpec Event",
    )

    # Fixed by an edit, it runs; the refusal was told once meanwhile.
    fixed = {"name": "a", "actor": {"command": ["sleep"], "args": ["600"]}}
    objects.custom.patch_namespaced_custom_object(
        "rebeam.io",
        "v1alpha1",
        objects.namespace,
        "supervisors",
        "app",
        {"spec": {"children": [fixed]}},
    )
    status = objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="1/1 ready")
    assert (spec_valid(status) or {}).get("status") == "True"
    refusals = [e for e in objects.events("app") if e["reason"] == "InvalidSpec"]
    assert [(e["type"], e["message"]) for e in refusals] == [("Warning", sentence)]
    assert event_lines(lifecycle.events()) == ["started a"]
    operator.check_running()


def test_an_object_the_models_refuse_is_reported_on_itself_once(
    operator: Operator, objects: Objects
) -> None:
    # A NUL in a command passes the CRD (a string may hold one); no program can take it.
    bad = {"name": "a", "actor": {"command": ["sleep\u0000", "600"]}}
    objects.apply(supervisor("app", [bad]))

    def refused(status: Json) -> Json | None:
        return next((c for c in status.get("conditions") or [] if c["type"] == "SpecValid"), None)

    status = objects.wait_status("app", refused, what="the SpecValid condition")
    condition = refused(status)
    assert condition is not None
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert "must not contain a NUL character" in condition["message"]
    assert status["phase"] == "Failed"
    events = wait_for(
        lambda: [e for e in objects.events("app") if e["reason"] == "InvalidSpec"],
        timeout=30,
        what="the InvalidSpec Event",
    )
    assert events[0]["message"] == condition["message"]
    # Its own status write brought the object back to the operator: told once all the same.
    operator.stop()
    operator.start()  # and a restarted operator reads what was told from the object
    objects.custom.patch_namespaced_custom_object(
        "rebeam.io",
        "v1alpha1",
        objects.namespace,
        "supervisors",
        "app",
        {"metadata": {"labels": {"touched": "yes"}}},
    )
    wait_for(
        lambda: (objects.get("app") or {}).get("metadata", {}).get("labels"),
        timeout=30,
        what="the edit",
    )
    fixed = {"name": "a", "actor": {"command": ["sleep", "600"]}}
    objects.custom.patch_namespaced_custom_object(
        "rebeam.io",
        "v1alpha1",
        objects.namespace,
        "supervisors",
        "app",
        {"spec": {"children": [fixed]}},
    )
    status = objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="1/1 ready")
    assert (refused(status) or {}).get("status") == "True"
    assert len([e for e in objects.events("app") if e["reason"] == "InvalidSpec"]) == 1
    operator.check_running()


CAREFUL = '''
import pathlib
import signal

import rebeam


class Careful(rebeam.Actor):
    """Leaves a marker when it gets to clean up: in terminate, and at once on SIGTERM (a
    Python-level handler runs between two bytecodes; the runtime's own reaction to SIGTERM
    still runs, through asyncio's wakeup descriptor)."""

    async def init(self, args):
        self.marker = pathlib.Path(args["marker"])
        signal.signal(signal.SIGTERM, lambda *_: self.marker.write_text("SIGTERM"))

    async def terminate(self, reason):
        self.marker.write_text(str(reason))
'''


class PodLog:
    """Every state one pod had, from a watch: (deletion asked, container ended, exit code)."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.states: list[tuple[bool, bool, int | None]] = []
        self._closing = False
        self._watch = watch.Watch()
        core = client.CoreV1Api(cluster.api_client())
        self._thread = threading.Thread(target=self._run, args=(core, namespace, name))
        self._thread.start()

    def _run(self, core: client.CoreV1Api, namespace: str, name: str) -> None:
        try:
            for event in self._watch.stream(
                core.list_namespaced_pod,
                namespace,
                field_selector=f"metadata.name={name}",
                timeout_seconds=120,
            ):
                pod = event["object"]
                ended = None
                for container in pod.status.container_statuses or []:
                    if container.state and container.state.terminated:
                        ended = container.state.terminated.exit_code
                deleting = pod.metadata.deletion_timestamp is not None
                self.states.append((deleting, ended is not None, ended))
        except Exception:
            if not self._closing:  # stopping a watch may break its connection: that is fine
                raise

    def close(self) -> list[tuple[bool, bool, int | None]]:
        self._closing = True
        self._watch.stop()
        self._thread.join(5)
        return self.states


def test_brutal_kill_gives_an_actor_no_chance_to_clean_up(
    operator: Operator,
    objects: Objects,
    lifecycle: Lifecycle,
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
) -> None:
    (tmp_path / "careful.py").write_text(CAREFUL)
    x_pod = PodLog(cluster, namespace, "app-x-1")

    def careful(name: str, shutdown: str) -> Json:
        marker = str(tmp_path / f"{name}-cleaned-up")
        template = {
            "module": "careful:Careful",
            "args": {"marker": marker},
            "env": [{"name": "PYTHONPATH", "value": str(tmp_path)}],
        }
        return {"name": name, "shutdown": shutdown, "actor": template}

    # Stopped newest first: x (brutal_kill), then y, whose terminate shows that the marker
    # is written whenever an actor does get to clean up.
    objects.apply(supervisor("app", [careful("y", "10s"), careful("x", "brutal_kill")]))
    objects.wait_status("app", lambda s: s.get("ready") == "2/2", what="2/2 ready")
    objects.delete("app")
    wait_for(lambda: objects.get("app") is None, timeout=60, what="the Supervisor to be gone")
    lifecycle.wait("exited y shutdown", timeout=30)
    assert lifecycle.lines()[2:4] == ["exited x killed", "exited y shutdown"]
    assert (tmp_path / "y-cleaned-up").exists()
    assert not (tmp_path / "x-cleaned-up").exists()
    # Its runtime killed itself on the operator's order before any deletion (a grace-0
    # deletion is SIGTERM first: a kubelet gives even that at least 2 s before SIGKILL).
    states = x_pod.close()
    first_deleting = next(state for state in states if state[0])
    assert first_deleting[1:] == (True, 137), states
    operator.check_running()
