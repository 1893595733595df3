"""The chart grants the operator exactly the rules of operator/deploy/rbac.yaml, in both
modes, so that the two never drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart_helpers import REPO, by_kind, render

Json = dict[str, Any]
RBAC = REPO / "operator" / "deploy" / "rbac.yaml"


def _key(rule: Json) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return (tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(rule["verbs"]))


def _reference_rules() -> list[Json]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    rules: list[Json] = role["rules"]
    return rules


def _cluster_scoped(rule: Json) -> bool:
    return "nodes" in rule["resources"]


def test_cluster_wide_rules_are_exactly_those_of_rbac_yaml(chart: Path, helm_home: Path) -> None:
    objects = render(chart, helm_home)
    assert not by_kind(objects, "Role")
    assert not by_kind(objects, "RoleBinding")
    (role,) = by_kind(objects, "ClusterRole")
    assert [_key(r) for r in role["rules"]] == [_key(r) for r in _reference_rules()]
    assert all(set(r) == {"apiGroups", "resources", "verbs"} for r in role["rules"])
    (binding,) = by_kind(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "rb-rebeam-operator", "namespace": "rebeam-system"}
    ]


def test_namespaced_rules_together_are_exactly_those_of_rbac_yaml(
    chart: Path, helm_home: Path
) -> None:
    objects = render(chart, helm_home, "operator.watchNamespaces={team-a,team-b}")
    reference = _reference_rules()
    (cluster_role,) = by_kind(objects, "ClusterRole")
    assert [_key(r) for r in cluster_role["rules"]] == [
        _key(r) for r in reference if _cluster_scoped(r)
    ]
    roles = by_kind(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        combined = [_key(r) for r in role["rules"]] + [_key(r) for r in cluster_role["rules"]]
        assert sorted(combined) == sorted(_key(r) for r in reference)
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "rb-rebeam-operator",
        }
        assert binding["subjects"][0]["namespace"] == "rebeam-system"


def test_the_reference_service_account_name_is_the_chart_default(
    chart: Path, helm_home: Path
) -> None:
    """`helm install rebeam charts/rebeam -n rebeam-system` names things as rbac.yaml does."""
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    objects = render(chart, helm_home, release="rebeam", namespace="rebeam-system")
    (rendered,) = by_kind(objects, "ServiceAccount")
    assert rendered["metadata"]["name"] == account["metadata"]["name"]
    assert rendered["metadata"]["namespace"] == account["metadata"]["namespace"]
