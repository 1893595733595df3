"""The soak's bank on the operator (docs/soak.md, "On Kubernetes"), short: SIGKILLs of actor
pods, the operator killed while it restarts a child, the node lost with a child killed
meanwhile. It asserts the invariants, not speed. That the node it runs on, the test kubelet,
ends each readiness probe with its container is tests/e2e/test_e2e_kubelet_probes.py's."""

from __future__ import annotations

from pathlib import Path

import pytest
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet
from tests.soak.faults import Rates
from tests.soak.kube import KubeRates, KubeSite, kube_soak
from tests.soak.manifest import Bank
from tests.soak.report import render
from tests.soak.soak import Schedule

pytestmark = pytest.mark.e2e

# 3 s baseline, 3 faults of 8 s with 4 s after each (the node's loss takes its own 8 s).
SMOKE = Schedule(3.0, 8.0, 4.0, ("kill", "operator", "node"), together=False)


@pytest.mark.timeout(240)
async def test_the_bank_on_the_operator_under_faults_breaks_no_invariant(
    cluster: Cluster,
    crds: list[str],
    kubelet: ProcessKubelet,
    nats: E2ENats,
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REBEAM_CREDENTIALS", cluster.admin_token())
    rates = Rates(kills_per_s=1.0)
    kube_rates = KubeRates(operator_every=3.0, node_down=6.0, node_every=30.0)
    site = KubeSite(cluster, kubelet, nats, namespace)
    result = await kube_soak(tmp_path, site, Bank(rate=10.0), SMOKE, rates, kube_rates)
    report = render(result)
    print(report)  # shown with the test's output (-rA) when it passes, too
    assert result.findings.violations == 0, report
    assert result.orphans == [], report
    assert result.exit_code == 0, report
    injected = {fault for _, fault, _ in result.log.entries}
    assert injected >= {"kill", "operator", "node"}, report
    assert result.findings.acknowledged > 0, report
    assert result.findings.audits > 0, report
