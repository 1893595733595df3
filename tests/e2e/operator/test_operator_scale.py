"""The operator's scale benchmark (scale_bench.py), on purpose and as a small smoke test; and
where the restart of a Python actor pod spends its time (``test_actor_restart_path_benchmark``).

The benchmark: ``make bench-operator``, or
``REBEAM_E2E_OPERATOR_BENCH=1 REBEAM_E2E_BENCH_SUPERVISORS=200 REBEAM_E2E_BENCH_CHILDREN=10
pytest tests/e2e/operator/test_operator_scale.py -s -k benchmark``. It prints a table; timing
targets are never asserted. The smoke test runs the same code at 3 Supervisors x 3 pods in
every ``make test``, so the benchmark's code path cannot rot unnoticed.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable
from pathlib import Path

import pytest
from bench_report import REPORT, publish
from infra.cluster import Cluster
from infra.kubelet import ProcessKubelet
from operator_helpers import Lifecycle, Objects, Operator
from scale_bench import PodClock, percentile, run_benchmark
from security_bench import SUPERVISOR, Side

pytestmark = [pytest.mark.e2e]

SUPERVISORS = int(os.environ.get("REBEAM_E2E_BENCH_SUPERVISORS", "200"))
CHILDREN = int(os.environ.get("REBEAM_E2E_BENCH_CHILDREN", "10"))
# Restarts (and floor samples) per phase: with 20, the p99 was the slowest sample.
RESTARTS = int(os.environ.get("REBEAM_E2E_BENCH_RESTARTS", "100"))
PATH_RESTARTS = 20  # a Python actor's restart takes about a second: 20 are enough for a p90
# Time for every Supervisor to get ready: 10,000 pods came at 3-5 pods/s on the shared 2-core
# machine, so the deadline grows with the size (0.4 s a pod, at least 40 minutes).
READY_TIMEOUT = max(2400.0, 0.4 * SUPERVISORS * CHILDREN)


# The steps of one restart of a Python actor pod, each from the old pod's exit (its terminated
# status on a watch) to: the replacement pod on the watch (the operator), its container
# running (the kubelet: bound, token, process started), its runtime's ready line (the Python
# process: imports, NATS connection through the issuer, slot, name, init), the pod Ready (the
# readiness probe, run once a second, and the status write), the ``started`` lifecycle event
# (the operator seeing Ready).
_STEPS = ("replacement pod", "container running", "runtime ready", "pod Ready", "started event")


def _restart_path(side: Side, clock: PodClock, rounds: int) -> list[list[float]]:
    samples: list[list[float]] = [[] for _ in _STEPS]
    side.deploy()
    for _ in range(rounds):
        new = f"{SUPERVISOR}-w-{side.incarnation + 1}"
        old = f"{SUPERVISOR}-w-{side.incarnation}"
        side.restart_once()  # waits for the ready line, the started event and the new pod
        ended = clock.ended[old]
        report = side.report
        seen = (clock.added[new], clock.started.get(new), None, clock.ready.get(new), None)
        for i, at in enumerate(seen):
            if at is not None:
                samples[i].append(at - ended)
        samples[2].append(report.to_ready[-1])
        samples[4].append(report.to_started[-1])
    return samples


def _path_lines(samples: list[list[float]]) -> list[str]:
    rows = ["| restart of a Python actor pod, from the exit | p50 | p90 |", "|---|---|---|"]
    for step, values in zip(_STEPS, samples, strict=True):
        if values:
            p50, p90 = statistics.median(values) * 1000, percentile(values, 0.9) * 1000
            rows.append(f"| {step} | {p50:.0f} ms | {p90:.0f} ms |")
    return rows


@pytest.fixture
def restart_path(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    cluster: Cluster,
    lifecycle: Lifecycle,
    namespace: str,
) -> Callable[[int], list[list[float]]]:
    """Times so many restarts of one Python actor pod, step by step (``_STEPS``)."""

    def run(rounds: int) -> list[list[float]]:
        clock = PodClock(cluster, namespace)
        try:
            samples = _restart_path(
                Side("secured", kubelet, objects, clock, lifecycle), clock, rounds
            )
        finally:
            clock.close()
        operator.check_running()
        return samples

    return run


@pytest.mark.skipif(
    not os.environ.get("REBEAM_E2E_OPERATOR_BENCH"), reason="set REBEAM_E2E_OPERATOR_BENCH=1"
)
@pytest.mark.timeout(900)
def test_actor_restart_path_benchmark(restart_path: Callable[[int], list[list[float]]]) -> None:
    publish(_path_lines(restart_path(PATH_RESTARTS)))


@pytest.mark.timeout(240)
def test_actor_restart_path_smoke(restart_path: Callable[[int], list[list[float]]]) -> None:
    samples = restart_path(2)
    for step in (0, 2, 4):  # the pod, the ready line and the started event: each restart
        assert len(samples[step]) == 2, _STEPS[step]
    assert len(_path_lines(samples)) >= 5  # the table renders


# Last: deleting its 10,000 pods afterwards loads the machine for minutes.
@pytest.mark.skipif(
    not os.environ.get("REBEAM_E2E_OPERATOR_BENCH"), reason="set REBEAM_E2E_OPERATOR_BENCH=1"
)
@pytest.mark.timeout(READY_TIMEOUT + 1200)  # the restarts and the floor, before and after
def test_scale_benchmark(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    cluster: Cluster,
    namespace: str,
) -> None:
    report = run_benchmark(
        operator=operator,
        objects=objects,
        kubelet=kubelet,
        cluster=cluster,
        namespace=namespace,
        supervisors=SUPERVISORS,
        children=CHILDREN,
        restarts=RESTARTS,
        ready_timeout=READY_TIMEOUT,
    )
    publish(report.lines())
    operator.check_running()


@pytest.mark.timeout(120)
def test_scale_smoke(
    operator: Operator,
    objects: Objects,
    kubelet: ProcessKubelet,
    cluster: Cluster,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The benchmark's code at 3 x 3, and its table into a report, as the benchmark's."""
    report = run_benchmark(
        operator=operator,
        objects=objects,
        kubelet=kubelet,
        cluster=cluster,
        namespace=namespace,
        supervisors=3,
        children=3,
        restarts=3,
        ready_timeout=60,
    )
    assert len(report.restart_idle) == len(report.restart_full) == 3
    written = tmp_path / "bench-operator.md"
    monkeypatch.setenv(REPORT, str(written))
    publish(report.lines())
    publish(["| second | table |"])
    assert written.read_text() == "\n".join(report.lines()) + "\n\n| second | table |\n"
    operator.check_running()
