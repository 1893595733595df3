"""Fixtures of the e2e tier: a real Kubernetes control plane (or an existing cluster).

- ``cluster`` (session): our own etcd + kube-apiserver + kube-controller-manager + process
  kubelet, or the cluster named by ``REBEAM_E2E_KUBECONFIG``.
- ``kubelet``: the process kubelet with its fault switches (skipped on an existing cluster).
- ``namespace``: a fresh namespace per test, deleted afterwards.
- ``crds`` (session): every CustomResourceDefinition of ``crds/`` installed and Established.
- ``nats`` (session): a secured nats-server with JetStream that pod processes reach, every
  namespace in one account as on a cluster; its ``issuer.json`` is the operator's
  ``--issuer-secrets`` (the operator is the primary issuer), and its own issuer, a secondary
  one, hands the tests' clients their credentials (:class:`E2ENats`). ``nats_url``: its URL.
- ``image``: the image put in pod specs (ignored by the process kubelet).

Missing binaries are a failure, never a skip: run ``make controlplane`` first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra.binaries import REPO
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.kubelet import ProcessKubelet

CRDS = REPO / "crds"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("e2e")
    existing = os.environ.get("REBEAM_E2E_KUBECONFIG")
    if existing:
        with Cluster.existing(Path(existing), workdir) as cluster:
            yield cluster
    else:
        with Cluster.local(workdir, crds=CRDS) as cluster:
            yield cluster


@pytest.fixture
def kubelet(cluster: Cluster) -> Iterator[ProcessKubelet]:
    if cluster.kubelet is None:
        pytest.skip("needs the process kubelet's fault switches (not on an existing cluster)")
    yield cluster.kubelet
    cluster.kubelet.clear_faults()


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = cluster.create_namespace(request.node.name)
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> list[str]:
    names = cluster.apply_crds(CRDS)
    if not names:
        pytest.fail(f"no CustomResourceDefinition in {CRDS}: run `make crds`")
    return names


@pytest.fixture(scope="session")
def nats(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ENats]:
    # Here, not at the top: the control plane does not need the SDK.
    from rebeam.auth.issuer import Issuer, shared
    from rebeam.auth.serverconf import SHARED_ACCOUNT
    from rebeam.natsd import NatsServer, ServerOptions, read_issuer_secrets

    if not cluster.local_control_plane:
        url, issuer_file = (
            os.environ.get("REBEAM_E2E_NATS_URL"),
            os.environ.get("REBEAM_E2E_NATS_ISSUER"),
        )
        if not (url and issuer_file):
            pytest.skip(
                "set REBEAM_E2E_NATS_URL to a NATS server that the cluster's pods reach and "
                "REBEAM_E2E_NATS_ISSUER to its issuer.json (rebeam nats-secrets)"
            )
        issuer = Issuer(
            url,
            read_issuer_secrets(Path(issuer_file)),
            primary=False,
            account_for=shared(SHARED_ACCOUNT),
        )
        issuer.start()
        try:
            yield E2ENats(url, Path(issuer_file), issuer)
        finally:
            issuer.stop()
        return
    workdir = tmp_path_factory.mktemp("nats")
    with NatsServer.start(
        workdir, ServerOptions(shared_account=SHARED_ACCOUNT, primary_issuer=False)
    ) as server:
        yield E2ENats(server.url, workdir / "issuer.json", server.issuer)


@pytest.fixture(scope="session")
def nats_url(nats: E2ENats) -> str:
    return nats.url


@pytest.fixture(scope="session")
def image() -> str:
    return os.environ.get("REBEAM_E2E_IMAGE", "python:3.11-slim")
