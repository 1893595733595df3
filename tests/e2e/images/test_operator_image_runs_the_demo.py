"""The operator image does its job as the chart runs it: the chart's Deployment (command, args,
env, security settings, the issuer Secret) in a container, signed in to the test API server
with the token of operator/deploy/rbac.yaml's ServiceAccount, the NATS server's issuer. It
runs the README's demo: the driver calls the greeter and the counter, crashes the counter, the
operator restarts it, the driver ends normally. The actor pods run on the process kubelet."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from infra.binaries import REPO
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.procs import WaitTimeout, wait_for
from tests.chart.chart_helpers import KUBE_VERSION, by_kind, helm, offline_chart
from tests.images.containers import Container, pod_run_args, readable_by_container
from tools.images import Engine

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
OPERATOR_NAMESPACE, ACCOUNT = "rebeam-system", "rebeam-operator"  # as rbac.yaml names them
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEMO = REPO / "examples" / "demo"


@pytest.fixture
def app_namespace(cluster: Cluster) -> Iterator[str]:
    name = cluster.create_namespace("image-app")
    yield name
    cluster.delete_namespace(name)


def deployment_pod(tmp_path: Path, app_namespace: str, nats_url: str) -> Json:
    """The pod template of the chart's Deployment for a release watching ``app_namespace``
    on the test's nats-server (whose chart cannot be fetched here)."""
    values = {
        "nats": {"enabled": False},
        "natsUrl": nats_url,
        "operator": {
            "watchNamespaces": [app_namespace],
            "logFormat": "text",
            # Each process-kubelet container has a termination-message file of its own.
            "exitRecord": "$$(REBEAM_TERMINATION_LOG)",
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    chart = offline_chart(tmp_path / "chart")
    out = helm(
        "template", "rb", str(chart), "-n", OPERATOR_NAMESPACE, "-f", str(values_file),
        "--kube-version", KUBE_VERSION, home=tmp_path / "helm",
    ).stdout  # fmt: skip
    objects = [doc for doc in yaml.safe_load_all(out) if doc]
    (deployment,) = by_kind(objects, "Deployment")
    spec: Json = deployment["spec"]["template"]["spec"]
    return spec


def service_account_dir(cluster: Cluster, tmp_path: Path) -> Path:
    """What the kubelet mounts for the operator's ServiceAccount (token, CA, namespace)."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    cluster.kubectl("apply", "-f", str(RBAC))
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(cluster.service_account_token(OPERATOR_NAMESPACE, ACCOUNT))
    ca = cluster.api_client().configuration.ssl_ca_cert
    (account / "ca.crt").write_bytes(Path(ca).read_bytes())
    (account / "namespace").write_text(OPERATOR_NAMESPACE)
    readable_by_container(account)
    return account


def demo_manifest() -> Json:
    """examples/demo/app.yaml, kept running after the driver ends (so that the operator in
    the image also shuts it down on delete); its pods run as processes here, with its code."""
    manifest: Json = yaml.safe_load((DEMO / "app.yaml").read_text())
    manifest["spec"]["autoShutdown"] = "never"
    for entry in manifest["spec"]["children"]:
        entry.pop("significant", None)
        entry["actor"]["env"] = [{"name": "PYTHONPATH", "value": str(DEMO)}]
    return manifest


def supervisor_status(cluster: Cluster, namespace: str) -> Json:
    out = cluster.kubectl("get", "supervisor", "hello", "-n", namespace, "-o", "json", check=False)
    status: Json = json.loads(out.stdout).get("status") or {} if out.returncode == 0 else {}
    return status


def child(status: Json, name: str) -> Json:
    return next((c for c in status.get("children") or [] if c["name"] == name), {})


def test_the_operator_image_runs_the_demo(
    images: Engine,
    cluster: Cluster,
    crds: list[str],
    nats: E2ENats,
    app_namespace: str,
    tmp_path: Path,
) -> None:
    if cluster.kubelet is None:
        pytest.skip("runs the operator container on this machine, next to the test cluster")
    spec = deployment_pod(tmp_path, app_namespace, nats.url)
    (container,) = spec["containers"]
    issuer = tmp_path / "issuer"
    issuer.mkdir()
    shutil.copy(nats.issuer_file, issuer / "issuer.json")
    readable_by_container(issuer)
    files = {"issuer": issuer}
    api = urlparse(cluster.api_client().configuration.host)
    args = pod_run_args(spec, container, files)
    args += [
        f"--volume={service_account_dir(cluster, tmp_path)}:{SA_DIR}:ro",
        f"--env=KUBERNETES_SERVICE_HOST={api.hostname}",
        f"--env=KUBERNETES_SERVICE_PORT={api.port}",
    ]
    command = [*container["command"], *container.get("args", [])]
    operator = Container.start(
        images, images.name("operator"), args, command, tmp_path / "operator.log"
    )
    try:
        operator.wait_ready(container["readinessProbe"]["exec"]["command"])
        manifest = tmp_path / "app.yaml"
        manifest.write_text(yaml.safe_dump(demo_manifest()))
        cluster.kubectl("apply", "-n", app_namespace, "-f", str(manifest))

        def demo_done() -> Json | None:
            if operator.proc.poll() is not None:
                raise AssertionError(f"the operator container ended:\n{operator.output()}")
            status = supervisor_status(cluster, app_namespace)
            return status if child(status, "driver").get("lastExit", {}).get("reason") else None

        try:
            status = wait_for(demo_done, timeout=120, what="the demo's driver to end")
        except WaitTimeout as exc:
            raise AssertionError(f"{exc}\noperator output:\n{operator.output()}") from exc
        assert child(status, "driver")["lastExit"]["reason"] == "normal", status
        assert child(status, "counter")["restarts"] == 1, status
        # kubectl delete waits for the tree to be gone: the operator shut it down.
        cluster.kubectl("delete", "-n", app_namespace, "-f", str(manifest), "--timeout=60s")
        assert operator.stop() == 0, operator.output()
    finally:
        operator.remove()
    assert "Traceback" not in operator.output(), operator.output()
