"""operator.replicas: 1 keeps the single operator (Recreate, no Leases); more turns sharding
on (docs/operator.md, "Replicas and shards"): RollingUpdate, the shard settings and the pod's
name and namespace in the environment, Lease rights in the release's namespace only, and a
PodDisruptionBudget when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.chart.chart_helpers import by_kind, render

Json = dict[str, Any]


def _operator(objects: list[Json]) -> Json:
    (deployment,) = by_kind(objects, "Deployment")
    return deployment


def _env(deployment: Json) -> dict[str, Json]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_one_replica_is_the_single_operator(chart: Path, helm_home: Path) -> None:
    objects = render(chart, helm_home)
    deployment = _operator(objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "REBEAM_OPERATOR_SHARDS" not in _env(deployment)
    assert not by_kind(objects, "Role")
    assert not by_kind(objects, "PodDisruptionBudget")


def test_replicas_share_the_trees_by_shards(chart: Path, helm_home: Path) -> None:
    objects = render(
        chart,
        helm_home,
        "operator.replicas=3",
        "operator.shards=32",
        "operator.podDisruptionBudget.enabled=true",
    )
    deployment = _operator(objects)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    env = _env(deployment)
    assert env["REBEAM_OPERATOR_SHARDS"]["value"] == "32"
    assert env["REBEAM_OPERATOR_SHARD_LEASE_SECONDS"]["value"] == "15"
    assert env["REBEAM_OPERATOR_SHARD_LEASE_PREFIX"]["value"] == "rb-rebeam-operator"
    for name, field in [
        ("REBEAM_OPERATOR_POD_NAME", "metadata.name"),
        ("REBEAM_OPERATOR_POD_NAMESPACE", "metadata.namespace"),
    ]:
        assert env[name]["valueFrom"]["fieldRef"]["fieldPath"] == field
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["namespace"] == "rebeam-system"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["list", "create", "update", "delete"],
        }
    ]
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == "rb-rebeam-operator"
    (budget,) = by_kind(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    labels = deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"] == labels
