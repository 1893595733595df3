"""kubectl and helm work against the e2e cluster (the chart's tests will rely on both)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from infra.cluster import Cluster
from kubernetes import client

pytestmark = pytest.mark.e2e

CHART = {
    "Chart.yaml": "apiVersion: v2\nname: probe\nversion: 0.1.0\nkubeVersion: '>=1.30.0-0'\n",
    "templates/configmap.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    ),
    "values.yaml": "greeting: hello\n",
}


def test_helm_installs_and_uninstalls_a_chart(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    chart = tmp_path / "probe"
    for name, text in CHART.items():
        (chart / name).parent.mkdir(parents=True, exist_ok=True)
        (chart / name).write_text(text)

    cluster.helm(
        "install", "r1", str(chart), "--namespace", namespace, "--set", "greeting=hi", "--wait"
    )

    core = client.CoreV1Api(cluster.api_client())
    assert core.read_namespaced_config_map("r1-probe", namespace).data == {"greeting": "hi"}
    listed = json.loads(cluster.helm("list", "--namespace", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("r1", "deployed")]
    cluster.helm("uninstall", "r1", "--namespace", namespace, "--wait")
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_config_map("r1-probe", namespace)
    assert gone.value.status == 404


def test_kubectl_sees_the_node_ready(cluster: Cluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    assert ready
