"""Our CRDs on a real API server: the examples are accepted, defaults are applied, and every
rule with a CEL twin refuses the same mistake with the same sentence as ``rebeam validate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.cluster import Cluster
from kubernetes import client
from tests.spec.rule_cases import ACTOR, RULE_CASES

from rebeam.spec.rules import RULES

pytestmark = pytest.mark.e2e

GROUP, VERSION = "rebeam.io", "v1alpha1"
ROOT = Path(__file__).parents[2]
EXAMPLES = sorted([*ROOT.glob("examples/*.yaml"), *ROOT.glob("examples/*/app.yaml")])
CEL_MESSAGES = {rule.message for rules in RULES.values() for rule in rules if rule.cel}
PLURALS = {"Supervisor": "supervisors", "Actor": "actors"}


def create(cluster: Cluster, namespace: str, resource: dict[str, Any]) -> dict[str, Any]:
    objects = client.CustomObjectsApi(cluster.api_client())
    plural = PLURALS[resource["kind"]]
    created: dict[str, Any] = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, resource
    )
    return created


def refusal(cluster: Cluster, namespace: str, resource: dict[str, Any]) -> str:
    with pytest.raises(client.ApiException) as refused:
        create(cluster, namespace, resource)
    assert refused.value.status == 422, refused.value.body
    return str(json.loads(refused.value.body)["message"])


def supervisor(spec_yaml: str, name: str = "s") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Supervisor",
        "metadata": {"name": name},
        "spec": yaml.safe_load("spec:\n" + spec_yaml)["spec"] or {},
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_is_accepted(
    cluster: Cluster, crds: list[str], namespace: str, path: Path
) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            create(cluster, namespace, document)


def test_the_api_server_applies_the_documented_defaults(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    created = create(cluster, namespace, supervisor(f"  children: [{{name: a, {ACTOR}}}]\n"))
    spec = created["spec"]
    assert (spec["strategy"], spec["intensity"], spec["period"]) == ("one_for_one", 3, "5s")
    assert spec["autoShutdown"] == "never"
    child = spec["children"][0]
    assert (child["restart"], child["significant"], child["startTimeout"]) == (
        "permanent",
        False,
        "60s",
    )


CEL_CASES = [case for case in RULE_CASES if case[1].split(": ", 1)[1] in CEL_MESSAGES]


@pytest.mark.parametrize(("spec", "expected"), CEL_CASES, ids=[c[1] for c in CEL_CASES])
def test_each_cel_rule_refuses_with_the_same_message(
    cluster: Cluster, crds: list[str], namespace: str, spec: str, expected: str
) -> None:
    path, message = expected.split(": ", 1)
    refused = refusal(cluster, namespace, supervisor(spec))
    assert message in refused
    assert path in refused


def test_every_cel_rule_has_a_case() -> None:
    covered = {case[1].split(": ", 1)[1] for case in CEL_CASES}
    assert covered == CEL_MESSAGES


def test_duplicate_child_names_are_refused_by_the_list_key(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    spec = f"  children:\n    - {{name: a, {ACTOR}}}\n    - {{name: a, {ACTOR}}}\n"
    assert "Duplicate value" in refusal(cluster, namespace, supervisor(spec))


def test_a_nested_supervisor_is_checked_by_the_schema(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    spec = (
        "  children:\n    - name: sub\n      supervisor:\n"
        f"        children: [{{name: x, restart: sometimes, {ACTOR}}}]\n"
    )
    refused = refusal(cluster, namespace, supervisor(spec))
    assert "spec.children[0].supervisor.children[0].restart" in refused
