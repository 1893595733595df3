"""The operator image reaches the API server as the chart runs it: in-cluster configuration
from its ServiceAccount's token, CA and namespace (mounted where the kubelet mounts them),
and the chart's security settings. (The chart's probes ask the running operator over HTTP:
tests/e2e/operator/test_operator_metrics.py.)"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest
from infra.cluster import Cluster
from kubernetes import client
from tests.chart.chart_helpers import by_kind, offline_chart, render
from tests.images.containers import pod_run_args, readable_by_container, run_once
from tools.images import Engine

pytestmark = pytest.mark.e2e

ACCOUNT = "rebeam-operator"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
# The identity the API server saw: a request the (unbound) ServiceAccount may not make is
# refused with its name in the message.
WHO_AM_I = f"""
from kubernetes import client, config
config.load_config()
try:
    client.CoreV1Api().list_namespaced_secret(open("{SA_DIR}/namespace").read())
except client.ApiException as exc:
    print(exc.status, exc.body)
"""
REACHES_API = (
    "from kubernetes import client, config; config.load_config(); client.VersionApi().get_code()"
)


def test_the_operator_image_reaches_the_api_server_with_its_token(
    images: Engine, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(cluster.api_client())
    core.create_namespaced_service_account(namespace, {"metadata": {"name": ACCOUNT}})
    configuration = cluster.api_client().configuration
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(cluster.service_account_token(namespace, ACCOUNT))
    (account / "ca.crt").write_bytes(Path(configuration.ssl_ca_cert).read_bytes())
    (account / "namespace").write_text(namespace)
    readable_by_container(account)

    chart = offline_chart(tmp_path / "chart")
    (deployment,) = by_kind(render(chart, tmp_path / "helm"), "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    empty = tmp_path / "empty"  # the operator's Secrets: not read here
    empty.mkdir()
    files = {v["name"]: empty for v in spec["volumes"] if "emptyDir" not in v}
    api = urlparse(configuration.host)
    args = pod_run_args(spec, container, files)
    args += [
        f"--volume={account}:{SA_DIR}:ro",
        f"--env=KUBERNETES_SERVICE_HOST={api.hostname}",
        f"--env=KUBERNETES_SERVICE_PORT={api.port}",
    ]
    operator = images.name("operator")

    reached = run_once(images, operator, args, ["python", "-c", REACHES_API])
    assert reached.returncode == 0, reached.stderr

    who = run_once(images, operator, args, ["python", "-c", WHO_AM_I])
    assert who.returncode == 0, who.stderr
    refusal = who.stdout.strip().splitlines()[-1]  # after the client's note on its config
    assert refusal.startswith("403 "), who.stdout
    assert f"system:serviceaccount:{namespace}:{ACCOUNT}" in refusal
