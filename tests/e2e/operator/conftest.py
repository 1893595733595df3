"""The ``operator`` fixture: ``rebeam-operator`` as a subprocess, acting with exactly the RBAC of
``operator/deploy/rbac.yaml`` (a token of its ServiceAccount, not admin), watching the test's
namespace, stopped by its pid at teardown.

``kill()`` SIGKILLs it (an operator crash at any moment) and ``start()`` runs a new one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from infra.binaries import REPO
from infra.cluster import Cluster
from infra.procs import die_with_parent, wait_for
from kubernetes import client

RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
OPERATOR_NAMESPACE = "rebeam-system"
ACCOUNT = "rebeam-operator"
GROUP, VERSION = "rebeam.io", "v1alpha1"

Json = dict[str, Any]


@pytest.fixture(scope="session")
def operator_kubeconfig(
    cluster: Cluster, crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Apply rbac.yaml as admin; a kubeconfig with a token of its ServiceAccount."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    cluster.kubectl("apply", "-f", str(RBAC))
    token = cluster.service_account_token(OPERATOR_NAMESPACE, ACCOUNT, expiration_seconds=6 * 3600)
    return cluster.token_kubeconfig(
        token, tmp_path_factory.mktemp("operator") / "kubeconfig", user=ACCOUNT
    )


class Operator:
    """One ``rebeam-operator`` process at a time; its log is ``log_path``."""

    def __init__(self, kubeconfig: Path, namespace: str, nats_url: str, workdir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.nats_url = nats_url
        self.log_path = workdir / "operator.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.lease_ttl = "3"

    def start(self) -> None:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "REBEAM_OPERATOR_LOG_FORMAT": "json",
        }
        args = [
            str(Path(sys.executable).parent / "rebeam-operator"),
            "--namespace",
            self.namespace,
            "--nats-url",
            self.nats_url,
            "--log-level",
            "DEBUG" if os.environ.get("REBEAM_E2E_OPERATOR_DEBUG") else "INFO",
            # The process kubelet gives each container a termination-message file of its own.
            "--exit-record",
            "$(REBEAM_TERMINATION_LOG)",
            "--lease-ttl",
            self.lease_ttl,
        ]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=die_with_parent,
            )

    def kill(self) -> None:
        """SIGKILL: the operator dies wherever it is."""
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def check_running(self) -> None:
        assert self.popen is not None
        assert self.popen.poll() is None, f"the operator exited:\n{self.log_tail()}"


@pytest.fixture
def operator(
    cluster: Cluster,
    namespace: str,
    nats_url: str,
    operator_kubeconfig: Path,
    tmp_path: Path,
) -> Iterator[Operator]:
    process = Operator(operator_kubeconfig, namespace, nats_url, tmp_path)
    process.start()
    try:
        yield process
    finally:
        process.stop()


class Objects:
    """Admin-side reads and writes of the test's rebeam objects and pods."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(cluster.api_client())
        self.core = client.CoreV1Api(cluster.api_client())

    def apply(self, body: Json) -> Json:
        plural = "supervisors" if body["kind"] == "Supervisor" else "actors"
        result: Json = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return result

    def get(self, name: str, plural: str = "supervisors") -> Json | None:
        try:
            result: Json = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
            return result
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str, plural: str = "supervisors") -> Json:
        obj = self.get(name, plural)
        return dict((obj or {}).get("status") or {})

    def delete(self, name: str, plural: str = "supervisors") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def pods(self) -> dict[str, Json]:
        listing = self.core.list_namespaced_pod(
            self.namespace, label_selector="app.kubernetes.io/managed-by=rebeam-operator"
        )
        return {
            p.metadata.name: self.cluster.api_client().sanitize_for_serialization(p)
            for p in listing.items
        }

    def running_pods(self) -> set[str]:
        """Pods whose container runs (alive incarnations)."""
        alive = set()
        for name, pod in self.pods().items():
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if (status.get("state") or {}).get("running"):
                    alive.add(name)
        return alive

    def events(self, name: str) -> list[Json]:
        listing = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        items = sorted(
            listing.items, key=lambda e: (e.metadata.creation_timestamp, e.metadata.name)
        )
        return [{"reason": e.reason, "message": e.message, "type": e.type} for e in items]

    def wait_status(
        self,
        name: str,
        check: Any,
        *,
        timeout: float = 60.0,
        what: str = "",
        plural: str = "supervisors",
    ) -> Json:
        def ready() -> Json | None:
            status = self.status(name, plural)
            return status if status and check(status) else None

        return wait_for(ready, timeout=timeout, what=what or f"status of {name}", interval=0.2)


@pytest.fixture
def objects(cluster: Cluster, namespace: str) -> Objects:
    return Objects(cluster, namespace)
