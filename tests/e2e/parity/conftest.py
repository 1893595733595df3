"""Fixtures of the parity table: ``backend`` is a fresh :class:`LocalBackend` or
:class:`ClusterBackend` per test (by the test's ``backend_name`` parameter), with a short
scratch directory the scenario's children and the test share (a unix socket's path must fit
in 108 bytes). Each process a backend starts is stopped by its own pid at teardown: the
``rebeam run`` by ``rebeam_run``, the operator here."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet
from tests.e2e.operator.operator_helpers import (
    Lifecycle,
    Objects,
    Operator,
    operator_kubeconfig_for,
)
from tests.e2e.parity.backends import ClusterBackend, LocalBackend
from tests.e2e.parity.harness import Backend
from tests.local.conftest import StartRun, rebeam_run  # noqa: F401 (the local tier's fixture)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="parity-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def parity_operator_kubeconfig(
    cluster: Cluster, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return operator_kubeconfig_for(cluster, tmp_path_factory.mktemp("parity-operator"))


@pytest.fixture
def cluster_backend(
    cluster: Cluster,
    namespace: str,
    nats: E2ENats,
    kubelet: ProcessKubelet,
    parity_operator_kubeconfig: Path,
    tmp_path: Path,
    workdir: Path,
) -> Iterator[ClusterBackend]:
    lifecycle = Lifecycle(nats, namespace)
    operator = Operator(parity_operator_kubeconfig, namespace, nats, tmp_path)
    operator.start()
    try:
        yield ClusterBackend(
            operator=operator,
            objects=Objects(cluster, namespace),
            lifecycle=lifecycle,
            kubelet=kubelet,
            nats_url=nats.url,
            admin_token=cluster.admin_token(),
            workdir=workdir,
        )
    finally:
        operator.stop()
        lifecycle.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest, workdir: Path) -> Backend:
    if request.param == "local":
        start: StartRun = request.getfixturevalue("rebeam_run")
        return LocalBackend(start, workdir)
    cluster: ClusterBackend = request.getfixturevalue("cluster_backend")
    return cluster
