"""The operator image does its job as the chart runs it: the chart's Deployment (command, args,
env, security settings, the issuer Secret) in a container, signed in to the test API server
with the token of operator/deploy/rbac.yaml's ServiceAccount, the NATS server's issuer. It
runs the README's demo actors: the test, with the cluster admin's token (which the operator
in the container checks), calls the greeter and crashes the counter; the operator restarts
it with fresh state; `kubectl delete` shuts the tree down. The actor pods run on the process
kubelet. (The demo's own driver is left out: its short call timeouts are the demo's, and a
busy machine is not what this test is about.)"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from infra.binaries import REPO
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.hostnet import free_port
from infra.procs import WaitTimeout, wait_for
from tests.chart.chart_helpers import KUBE_VERSION, by_kind, helm, offline_chart
from tests.images.containers import Container, pod_run_args, readable_by_container
from tools.images import Engine

import rebeam

pytestmark = pytest.mark.e2e

Json = dict[str, Any]
RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
OPERATOR_NAMESPACE, ACCOUNT = "rebeam-system", "rebeam-operator"  # as rbac.yaml names them
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEMO = REPO / "examples" / "demo"
CALL_TIMEOUT = 10.0


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
            # The container shares this machine's network: a free port for its HTTP.
            "metricsPort": free_port(),
        },
        # Actor pods too, and several would want the same port.
        "metrics": {"actorPort": None},
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


def http_probe(container: Json) -> list[str]:
    """The chart's httpGet readiness probe, as a command run in the container (what the
    kubelet would ask of the operator's port)."""
    get = container["readinessProbe"]["httpGet"]
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == get["port"]]
    url = f"http://127.0.0.1:{port}{get['path']}"
    return ["python", "-c", f"import urllib.request; urllib.request.urlopen({url!r}, timeout=5)"]


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
    """examples/demo/app.yaml's greeter and counter; their pods run as processes here, with
    the demo's code."""
    manifest: Json = yaml.safe_load((DEMO / "app.yaml").read_text())
    spec = manifest["spec"]
    spec["autoShutdown"] = "never"
    spec["children"] = [c for c in spec["children"] if c["name"] in ("greeter", "counter")]
    for entry in spec["children"]:
        entry["actor"]["env"] = [{"name": "PYTHONPATH", "value": str(DEMO)}]
    return manifest


async def greet_crash_count(nats_url: str, namespace: str, restarted: Callable[[], Any]) -> None:
    """As the demo's driver does, with room for a busy machine."""
    async with rebeam.connect(nats_url, namespace=namespace):
        reply = await rebeam.call("greeter", {"hello": "image"}, timeout=CALL_TIMEOUT)
        assert reply.startswith("Hello, image!"), reply
        assert await rebeam.call("counter", "incr", timeout=CALL_TIMEOUT) == 1
        assert await rebeam.call("counter", "incr", timeout=CALL_TIMEOUT) == 2
        await rebeam.cast("counter", "crash")
        await asyncio.to_thread(restarted)
        assert await rebeam.call("counter", "incr", timeout=CALL_TIMEOUT) == 1  # fresh state


def supervisor_status(cluster: Cluster, namespace: str) -> Json:
    out = cluster.kubectl("get", "supervisor", "hello", "-n", namespace, "-o", "json", check=False)
    status: Json = json.loads(out.stdout).get("status") or {} if out.returncode == 0 else {}
    return status


def child(status: Json, name: str) -> Json:
    return next((c for c in status.get("children") or [] if c["name"] == name), {})


def wait(operator: Container, condition: Callable[[], Json | None], what: str) -> Json:
    """Wait for ``condition`` while the operator runs; a failure shows the operator's output."""

    def check() -> Json | None:
        if operator.proc.poll() is not None:
            raise AssertionError(f"the operator container ended:\n{operator.output()}")
        return condition()

    try:
        return wait_for(check, timeout=120, what=what, interval=0.2)
    except WaitTimeout as exc:
        raise AssertionError(f"{exc}; the operator's output:\n{operator.output()}") from exc


def test_the_operator_image_runs_the_demo(
    images: Engine,
    cluster: Cluster,
    crds: list[str],
    nats: E2ENats,
    app_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
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
        operator.wait_ready(http_probe(container))
        manifest = tmp_path / "app.yaml"
        manifest.write_text(yaml.safe_dump(demo_manifest()))
        cluster.kubectl("apply", "-n", app_namespace, "-f", str(manifest))

        def ready(restarts: int) -> Callable[[], Json | None]:
            def check() -> Json | None:
                status = supervisor_status(cluster, app_namespace)
                counter = child(status, "counter").get("restarts", 0)
                return status if status.get("ready") == "2/2" and counter == restarts else None

            return check

        def restarted() -> None:
            wait(operator, ready(1), "the counter restarted")

        wait(operator, ready(0), "greeter and counter ready")
        monkeypatch.setenv("REBEAM_CREDENTIALS", cluster.admin_token())
        asyncio.run(greet_crash_count(nats.url, app_namespace, restarted))
        # kubectl delete waits for the tree to be gone: the operator shut it down.
        cluster.kubectl("delete", "-n", app_namespace, "-f", str(manifest), "--timeout=60s")
        assert operator.stop() == 0, operator.output()
    finally:
        operator.remove()
    assert "Traceback" not in operator.output(), operator.output()
