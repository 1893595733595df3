"""Fixtures of the operator e2e tests (helpers in operator_helpers.py): ``operator`` runs
``rebeam-operator`` as a subprocess with exactly the RBAC of ``operator/deploy/rbac.yaml``
(a token of its ServiceAccount, never admin), watching the test's namespace, the NATS
server's credential issuer, stopped by its pid at teardown; ``objects``, ``lifecycle`` (NATS
events) and ``watchdog`` observe.

The test is the cluster's admin: ``REBEAM_CREDENTIALS`` is the admin's bearer token, so the
``rebeam`` CLI and ``rebeam.connect`` in a test present it to the operator, which checks it
with the API server and asks RBAC what it may do, as for any person."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from operator_helpers import Lifecycle, Objects, Operator, Watchdog, operator_kubeconfig_for


@pytest.fixture(autouse=True)
def _admin_credentials(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_CREDENTIALS", cluster.admin_token())


@pytest.fixture(scope="session")
def operator_kubeconfig(
    cluster: Cluster, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    return operator_kubeconfig_for(cluster, tmp_path_factory.mktemp("operator"))


@pytest.fixture
def operator(
    cluster: Cluster,
    namespace: str,
    nats: E2ENats,
    operator_kubeconfig: Path,
    tmp_path: Path,
) -> Iterator[Operator]:
    process = Operator(operator_kubeconfig, namespace, nats, tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def objects(cluster: Cluster, namespace: str) -> Objects:
    return Objects(cluster, namespace)


@pytest.fixture
def lifecycle(nats: E2ENats, namespace: str) -> Iterator[Lifecycle]:
    events = Lifecycle(nats, namespace)
    yield events
    events.close()


@pytest.fixture
def watchdog(objects: Objects) -> Iterator[Watchdog]:
    dog = Watchdog(objects)
    yield dog
    dog.close()
