"""The operator killed at every step of a pass where a crash matters, during a crash scenario
of a tree of three children (two actors and a nested supervisor), then started again.

Each case arms one failpoint (operator/rebeam_operator/failpoints.py) in the running operator
through the file named by ``REBEAM_OPERATOR_FAILPOINT_FILE``, over a tree at rest (no point is
reached at rest), kills a child, waits for the operator to SIGKILL itself at that point,
disarms, starts the operator again and requires: the restart happened exactly once (restart
history, incarnations), the pods left are one live incarnation per child, no two incarnations
of one child were ever live at once (a watch of every pod event of the whole module), and the
Events show the restart.

One namespace, one NATS and one operator (restarted once per case, by the case) serve every
case; each case deletes its tree at the end, so every operator restart finds one tree to
restore. (Arming through the file saves an operator start per case: importing kopf and the
Kubernetes client is most of a case's time on a loaded machine.)
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet
from infra.procs import wait_for
from operator_helpers import Objects, Operator, child_state, sleeper, supervisor
from timeline import PodTimeline

pytestmark = pytest.mark.e2e

FAILPOINT_FILE = "REBEAM_OPERATOR_FAILPOINT_FILE"


@dataclass(frozen=True)
class Scenario:
    strategy: str
    victim: str  # the child whose container is SIGKILLed
    incarnations: dict[str, int]  # of the root's children once the restart is done

    @property
    def short(self) -> str:
        return {"one_for_all": "ofa", "rest_for_one": "rfo", "one_for_one": "ofo"}[self.strategy]


ONE_FOR_ALL = Scenario("one_for_all", "a", {"a": 2, "b": 2, "c": 2})
REST_FOR_ONE = Scenario("rest_for_one", "b", {"a": 1, "b": 2, "c": 2})
# A group restart stops before it starts, so its first pass notifies before any create; a
# one_for_one restart creates the replacement in the deciding pass: after creating, before
# notifying.
ONE_FOR_ONE = Scenario("one_for_one", "a", {"a": 2, "b": 1, "c": 1})

# Every point where a crash matters, reached during the scenario (the n-th time where a group
# restart passes it more than once: between stops, between starts).
POINTS = [
    "decided",
    "persisted",
    "carried-out",
    "notice-sent",
    "notified",
    "pod-stopping:1",
    "pod-created:1",
    "pod-created:2",
    "supervisor-asked:1",
    "supervisor-asked:2",
]


@pytest.fixture(scope="module")
def shared_namespace(cluster: Cluster) -> Iterator[str]:
    name = cluster.create_namespace("failpoints")
    yield name
    cluster.delete_namespace(name)


class ArmableOperator(Operator):
    """An operator that reads its failpoint from ``spec`` (empty: none armed)."""

    def __init__(
        self, spec: Path, kubeconfig: Path, namespace: str, nats: E2ENats, workdir: Path
    ) -> None:
        super().__init__(kubeconfig, namespace, nats, workdir)
        self.spec = spec
        spec.write_text("")

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        super().start({FAILPOINT_FILE: str(self.spec), **(extra_env or {})})

    def arm(self, point: str) -> None:
        self.spec.write_text(point)

    def disarm(self) -> None:
        self.spec.write_text("")


@pytest.fixture(scope="module")
def shared_operator(
    cluster: Cluster,
    crds: list[str],
    shared_namespace: str,
    nats: E2ENats,
    operator_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ArmableOperator]:
    workdir = tmp_path_factory.mktemp("failpoints")
    process = ArmableOperator(
        workdir / "failpoint", operator_kubeconfig, shared_namespace, nats, workdir
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def timeline(cluster: Cluster, shared_namespace: str) -> Iterator[PodTimeline]:
    pods = PodTimeline(cluster, shared_namespace)
    yield pods
    pods.close()


def tree(name: str, strategy: str) -> dict[str, object]:
    nested = {"intensity": 5, "period": "600s", "children": [sleeper("w")]}
    return supervisor(
        name,
        [sleeper("a"), sleeper("b"), {"name": "c", "supervisor": nested}],
        strategy=strategy,
        intensity=5,
        period="600s",
    )


CASES = [
    pytest.param(point, scenario, id=f"{point}-{scenario.strategy}")
    for point in POINTS
    for scenario in (ONE_FOR_ALL, REST_FOR_ONE)
] + [
    pytest.param(point, ONE_FOR_ONE, id=f"{point}-one_for_one")
    for point in ("pod-created:1", "carried-out")
]
# A pass's new pods are created before its status write (early_starts.py): killed with the
# creates landed and the write not issued, the restarted operator finds pods no stored
# decision asks for, removes them and decides the restart afresh. The n-th early create: the
# victim's replacement, then (one_for_all) its sibling's, (rest_for_one) the nested w's.
CASES += [
    pytest.param(f"created-unpersisted:{n}", scenario, id=f"created-unpersisted-{n}-{label}")
    for n, scenario, label in (
        (1, ONE_FOR_ONE, "one_for_one"),
        (1, ONE_FOR_ALL, "one_for_all"),
        (2, ONE_FOR_ALL, "one_for_all"),
        (1, REST_FOR_ONE, "rest_for_one"),
        (2, REST_FOR_ONE, "rest_for_one"),
    )
]


@pytest.mark.parametrize(("point", "scenario"), CASES)
def test_operator_killed_at_failpoint(
    point: str,
    scenario: Scenario,
    cluster: Cluster,
    shared_operator: ArmableOperator,
    shared_namespace: str,
    timeline: PodTimeline,
) -> None:
    kubelet = cluster.kubelet
    if kubelet is None:
        pytest.skip("needs the process kubelet's fault switches")
    objects = Objects(cluster, shared_namespace)
    operator = shared_operator
    operator.disarm()
    if operator.popen is None or operator.popen.poll() is not None:
        operator.start()  # an earlier case failed before it restarted the operator
    name = f"{scenario.short}-{point.replace(':', '-')}"
    objects.apply(tree(name, scenario.strategy))
    objects.wait_status(name, lambda s: s.get("ready") == "3/3", what=f"{name} 3/3 ready")

    # At rest, the tree reaches no failpoint: the first hit is the scenario's.
    operator.arm(point)
    kill_victim(kubelet, shared_namespace, f"{name}-{scenario.victim}-1")
    code = operator.wait_exit(60)
    assert code == -signal.SIGKILL, operator.log_tail()
    assert f'"failpoint": "{point.split(":")[0]}"' in operator.log_tail(400)

    operator.disarm()
    operator.start()
    status = objects.wait_status(
        name,
        lambda s: s.get("ready") == "3/3" and s.get("incarnations") == scenario.incarnations,
        what=f"{name}: the restart finished ({scenario.incarnations})",
        timeout=90,
    )
    assert len(status["restartHistory"]) == 1, status["restartHistory"]
    assert status["restartsInWindow"] == 1
    if point.startswith("created-unpersisted"):  # the early pod was found and removed
        assert "was never persisted: deleting it" in operator.log_tail(400)
    assert child_state(status, scenario.victim)["lastExit"]["reason"] == "killed"
    nested = objects.status(f"{name}-c")
    c = scenario.incarnations["c"]
    assert nested["supervisorIncarnation"] == c
    assert nested["incarnations"] == {"w": c}  # a restarted c has one new w, never a second w#1

    live = {
        f"{name}-{child}-{inc}" for child, inc in scenario.incarnations.items() if child != "c"
    } | {f"{name}-c-w-{c}"}
    wait_for(
        lambda: {p for p in objects.pods() if p.startswith(f"{name}-")} == live,
        timeout=30,
        what=f"only {sorted(live)} left",
    )
    assert {p for p in timeline.live() if p.startswith(f"{name}-")} == live
    assert timeline.overlaps() == []
    restarts = [e for e in objects.events(name) if e["reason"] == "Restarting"]
    assert restarts, objects.events(name)
    assert all(
        e["message"].startswith(f"{scenario.victim} exited (killed), restarting") for e in restarts
    )
    operator.check_running()

    # Gone before the next case: the operator's restarts stay as quick as in the first case.
    objects.delete(name)
    wait_for(lambda: objects.get(name) is None, timeout=60, what=f"{name} deleted")


def kill_victim(kubelet: ProcessKubelet, namespace: str, pod: str) -> None:
    kubelet.kill_container(namespace, pod, "actor", signal.SIGKILL)


# Deleting a tree stops c (the nested supervisor, which stops w), then b, then a, one at a time.
SHUTDOWN_POINTS = [
    "decided",
    "persisted",
    "supervisor-asked:1",
    "pod-stopping:1",
    "pod-stopping:2",
    "notice-sent",
]


@pytest.mark.parametrize("point", SHUTDOWN_POINTS)
def test_operator_killed_mid_shutdown_on_delete(
    point: str,
    cluster: Cluster,
    shared_operator: ArmableOperator,
    shared_namespace: str,
    timeline: PodTimeline,
) -> None:
    """Killed while a deleted tree shuts down: the shutdown finishes after the restart, still
    in reverse start order and one child at a time, and the finalizer lets the tree go."""
    objects = Objects(cluster, shared_namespace)
    operator = shared_operator
    operator.disarm()
    if operator.popen is None or operator.popen.poll() is not None:
        operator.start()
    name = f"del-{point.replace(':', '-')}"
    objects.apply(tree(name, "one_for_one"))
    objects.wait_status(name, lambda s: s.get("ready") == "3/3", what=f"{name} 3/3 ready")

    operator.arm(point)
    objects.delete(name)
    assert operator.wait_exit(60) == -signal.SIGKILL, operator.log_tail()
    operator.disarm()
    operator.start()

    wait_for(lambda: objects.get(name) is None, timeout=60, what=f"{name} deleted")
    wait_for(
        lambda: not [p for p in objects.pods() if p.startswith(f"{name}-")],
        timeout=30,
        what=f"every pod of {name} gone",
    )
    ended = [p for p in timeline.ended() if p.startswith(f"{name}-")]
    assert ended == [f"{name}-c-w-1", f"{name}-b-1", f"{name}-a-1"]
    assert not [p for p in timeline.created() if p.startswith(f"{name}-") and p.endswith("-2")]
    assert timeline.overlaps() == []
    operator.check_running()
