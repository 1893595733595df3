"""What security costs a restart on Kubernetes (security_bench.py), on purpose and as a smoke.

The benchmark runs in ``make bench-operator`` (``REBEAM_E2E_OPERATOR_BENCH=1``): 20 restarts
on each side, interleaved, printed as a table with the secured / open ratio. The smoke runs
the same code for 2 rounds in every ``make test``, so the comparison cannot rot unnoticed;
it asserts only that every restart happened on both sides.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from bench_report import publish
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet
from operator_helpers import Operator
from security_bench import lines, open_side, run_paired, side

pytestmark = [pytest.mark.e2e]

ROUNDS = int(os.environ.get("REBEAM_E2E_BENCH_RESTARTS", "20"))


@pytest.fixture
def compare(
    operator: Operator,
    cluster: Cluster,
    kubelet: ProcessKubelet,
    nats: E2ENats,
    namespace: str,
    operator_kubeconfig: Path,
    tmp_path: Path,
) -> Callable[[int], list[str]]:
    """Runs the comparison for so many rounds; the table it prints."""

    def run(rounds: int) -> list[str]:
        with (
            side("secured", cluster, kubelet, nats, namespace) as secured,
            open_side(cluster, kubelet, operator_kubeconfig, tmp_path) as opened,
        ):
            run_paired(secured, opened, rounds)
        operator.check_running()
        for one in (secured, opened):
            report = one.report
            assert len(report.to_started) == len(report.to_ready) == len(report.to_pod) == rounds
        return lines(secured.report, opened.report, rounds)

    return run


@pytest.mark.skipif(
    not os.environ.get("REBEAM_E2E_OPERATOR_BENCH"), reason="set REBEAM_E2E_OPERATOR_BENCH=1"
)
@pytest.mark.timeout(1800)
def test_restart_secured_vs_open_benchmark(compare: Callable[[int], list[str]]) -> None:
    publish(compare(ROUNDS))


@pytest.mark.timeout(240)
def test_restart_secured_vs_open_smoke(compare: Callable[[int], list[str]]) -> None:
    assert len(compare(2)) == 5  # the table renders
