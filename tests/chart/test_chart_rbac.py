"""The chart grants the operator exactly the rules of operator/deploy/rbac.yaml, in both
modes, so that the two never drift; those rules are the narrow set docs/security.md explains,
verb by verb."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart_helpers import REPO, by_kind, render

Json = dict[str, Any]
RBAC = REPO / "operator" / "deploy" / "rbac.yaml"
SECURITY = REPO / "docs" / "security.md"

# (API group, resource, verb): every one the operator uses, and nothing else.
NEEDED = {
    *(
        ("rebeam.io", resource, verb)
        for resource in ("supervisors", "actors")
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    ),
    *(
        ("rebeam.io", resource, verb)
        for resource in ("supervisors/status", "actors/status")
        for verb in ("update", "patch")
    ),
    *(("", "pods", verb) for verb in ("get", "list", "watch", "create", "delete")),
    ("", "events", "create"),
    ("", "nodes", "get"),
    ("authentication.k8s.io", "tokenreviews", "create"),
    ("authorization.k8s.io", "subjectaccessreviews", "create"),
}


def _key(rule: Json) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    return (tuple(rule["apiGroups"]), tuple(rule["resources"]), tuple(rule["verbs"]))


def _reference_rules() -> list[Json]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    rules: list[Json] = role["rules"]
    return rules


def _cluster_scoped(rule: Json) -> bool:
    return bool({"nodes", "tokenreviews", "subjectaccessreviews"} & set(rule["resources"]))


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


def _grants(rules: list[Json]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_rules_are_the_narrow_set_the_operator_uses() -> None:
    """No kopf peering, CRD or namespace access, no events.k8s.io, no reading status through
    its subresource, no update of the objects themselves, nothing on Secrets."""
    assert _grants(_reference_rules()) == NEEDED


def _documented() -> set[tuple[str, str, str]]:
    """The (group, resource, verb) rows of the table in docs/security.md, "Operator RBAC"."""
    text = SECURITY.read_text()
    section = text[text.index("## Operator RBAC") :]
    found = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[2].startswith("`"):
            continue
        group = "" if cells[0] == "(core)" else cells[0].strip("`")
        resources = re.findall(r"`([^`]+)`", cells[1])
        verbs = re.findall(r"`([^`]+)`", cells[2])
        found |= {(group, r, v) for r in resources for v in verbs}
    return found


def test_every_rule_is_documented_with_its_reason() -> None:
    assert _documented() == _grants(_reference_rules())
