"""The API server is real: CRD schemas (OpenAPI and CEL) are enforced, RBAC is enforced."""

from __future__ import annotations

import json

import pytest
import yaml
from infra.cluster import Cluster
from infra.procs import wait_for
from kubernetes import client

pytestmark = pytest.mark.e2e

GROUP, VERSION = "rebeam.io", "v1alpha1"


def _refusal(exc: client.ApiException) -> str:
    return str(json.loads(exc.body)["message"])


def test_project_crds_are_established(cluster: Cluster, crds: list[str]) -> None:
    assert f"supervisors.{GROUP}" in crds
    assert f"actors.{GROUP}" in crds
    resources = client.CustomObjectsApi(cluster.api_client()).get_api_resources(GROUP, VERSION)
    kinds = {r.kind for r in resources.resources}
    assert {"Supervisor", "Actor"} <= kinds


def test_invalid_supervisor_is_refused_with_the_api_servers_message(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    objects = client.CustomObjectsApi(cluster.api_client())
    supervisor = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Supervisor",
        "metadata": {"name": "wrong"},
        "spec": {"strategy": "one_for_none", "children": []},
    }

    with pytest.raises(client.ApiException) as refused:
        objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "supervisors", supervisor
        )

    assert refused.value.status == 422
    message = _refusal(refused.value)
    assert "spec.strategy" in message
    assert "one_for_none" in message
    assert "one_for_one" in message  # the supported values are listed


WIDGETS = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.rebeam.io
spec:
  group: e2e.rebeam.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      subresources: {status: {}}
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
                max: {type: integer}
              x-kubernetes-validations:
                - rule: "!has(self.max) || self.size <= self.max"
                  message: size must not exceed max
"""


@pytest.fixture(scope="module")
def widgets(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CRD of our own, independent of crds/. (The garbage collector's handling of custom
    owners is proven by the ``crds`` fixture, which waits for it with a probe.)"""
    directory = tmp_path_factory.mktemp("widgets")
    (directory / "widgets.yaml").write_text(WIDGETS)
    (name,) = cluster.apply_crds(directory, wait_for_gc=False)
    return name


def test_structural_schema_and_cel_rules_are_enforced(
    cluster: Cluster, widgets: str, namespace: str
) -> None:
    """The API server enforces OpenAPI and CEL validation."""
    objects = client.CustomObjectsApi(cluster.api_client())

    def widget(name: str, spec: dict[str, int]) -> dict[str, object]:
        metadata = {"name": name}
        return {
            "apiVersion": "e2e.rebeam.io/v1",
            "kind": "Widget",
            "metadata": metadata,
            "spec": spec,
        }

    objects.create_namespaced_custom_object(
        "e2e.rebeam.io", "v1", namespace, "widgets", widget("ok", {"size": 2, "max": 3})
    )
    with pytest.raises(client.ApiException) as too_small:
        objects.create_namespaced_custom_object(
            "e2e.rebeam.io", "v1", namespace, "widgets", widget("small", {"size": 0})
        )
    assert too_small.value.status == 422
    assert "spec.size" in _refusal(too_small.value)
    with pytest.raises(client.ApiException) as too_big:
        objects.create_namespaced_custom_object(
            "e2e.rebeam.io", "v1", namespace, "widgets", widget("big", {"size": 5, "max": 3})
        )
    assert too_big.value.status == 422
    assert "size must not exceed max" in _refusal(too_big.value)


def test_restricted_service_account_is_forbidden(cluster: Cluster, namespace: str) -> None:
    """A ServiceAccount token acts with exactly the account's permissions (RBAC)."""
    admin = cluster.api_client()
    core = client.CoreV1Api(admin)
    rbac = client.RbacAuthorizationV1Api(admin)
    core.create_namespaced_service_account(
        namespace, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}
    )
    rbac.create_namespaced_role(
        namespace,
        yaml.safe_load(
            """
            apiVersion: rbac.authorization.k8s.io/v1
            kind: Role
            metadata: {name: pod-reader}
            rules: [{apiGroups: [""], resources: [pods], verbs: [get, list]}]
            """
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )
    reader = client.CoreV1Api(cluster.service_account_client(namespace, "reader"))
    user = f"system:serviceaccount:{namespace}:reader"

    def allowed() -> bool:  # RBAC caches in the API server see the binding almost at once
        try:
            reader.list_namespaced_pod(namespace)
        except client.ApiException as exc:
            if exc.status == 403:
                return False
            raise
        return True

    wait_for(allowed, timeout=10, what="the RoleBinding to take effect")

    forbidden = [
        lambda: reader.list_namespaced_secret(namespace),
        lambda: reader.list_namespaced_pod("default"),
        lambda: reader.delete_namespaced_service_account("reader", namespace),
    ]
    for attempt in forbidden:
        with pytest.raises(client.ApiException) as refused:
            attempt()
        assert refused.value.status == 403
        assert user in _refusal(refused.value)
