"""The chart's optional ValidatingAdmissionPolicy on a real API server: `helm install` with
admissionPolicy.enabled, then Supervisors and Actors that break each rule — at the top, in a
childTemplate, in a supervisor nested as deep as a manifest allows — are refused with the
rule's message, and those that keep the rules are admitted (docs/security.md).

Every object is sent with server-side dry run: admission runs in full, nothing is stored, so the
release's operator has nothing to act on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from infra.cluster import Cluster
from infra.e2enats import E2ENats
from infra.procs import wait_for
from install_helpers import apply_nats_secrets, release_values
from kubernetes import client
from tests.chart.chart_helpers import offline_chart

pytestmark = pytest.mark.e2e

RELEASE = "rbadm"
POLICY = f"{RELEASE}-rebeam-actors"
ALLOWED = "registry.example/team/"
GOOD = f"{ALLOWED}app:1"
BAD = "docker.io/library/anything:1"

IMAGE_REFUSED = f"every actor image must start with one of {ALLOWED}"
COMMAND_REFUSED = "command children are not allowed here"
SECRET_REFUSED = "must not come from a Secret"

Json = dict[str, Any]


@pytest.fixture
def app_namespace(cluster: Cluster) -> Iterator[str]:
    """The namespace the release watches, hence the one the policy is bound to."""
    name = cluster.create_namespace("adm")
    yield name
    cluster.delete_namespace(name)


def supervisor(spec: Json) -> Json:
    return {
        "apiVersion": "rebeam.io/v1alpha1",
        "kind": "Supervisor",
        "metadata": {"name": "s"},
        "spec": spec,
    }


def actor(image: str | None = GOOD, **fields: Any) -> Json:
    """A Python actor template (``module``), with ``image`` unless None."""
    body: Json = {"module": "app.mod:Actor", **fields}
    if image is not None:
        body["image"] = image
    return body


def nested(depth: int, leaf: Json) -> Json:
    """A Supervisor whose actor ``leaf`` sits under ``depth`` nested supervisors (at most 4)."""
    spec: Json = {"children": [{"name": "leaf", "actor": leaf}]}
    for level in range(depth):
        spec = {"children": [{"name": f"level{level}", "supervisor": spec}]}
    return supervisor(spec)


def dry_run(cluster: Cluster, namespace: str, body: Json) -> str | None:
    """None when the API server admits ``body``; else its refusal message."""
    objects = client.CustomObjectsApi(cluster.api_client())
    plural = {"Supervisor": "supervisors", "Actor": "actors"}[body["kind"]]
    try:
        objects.create_namespaced_custom_object(
            "rebeam.io", "v1alpha1", namespace, plural, body, dry_run="All"
        )
    except client.ApiException as exc:
        return str(json.loads(exc.body)["message"])
    return None


SECRET_ENV = [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]
OTHER_ENV = [
    {"name": "PLAIN", "value": "1"},
    {"name": "CONF", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
]


def refused_cases() -> list[tuple[Json, str]]:
    """(an object that breaks a rule, the refusal's message)."""
    template = {"name": "t", "actor": actor(BAD)}
    return [
        (supervisor({"children": [{"name": "a", "actor": actor(BAD)}]}), IMAGE_REFUSED),
        (supervisor({"strategy": "simple_one_for_one", "childTemplate": template}), IMAGE_REFUSED),
        # The CRD's schema stops typing at the second level; the policy reads on to the fourth.
        (nested(4, actor(BAD)), IMAGE_REFUSED),
        (nested(3, {"command": ["sh"]}), COMMAND_REFUSED),
        (nested(2, actor(env=SECRET_ENV)), SECRET_REFUSED),
        (
            {
                "apiVersion": "rebeam.io/v1alpha1",
                "kind": "Actor",
                "metadata": {"name": "solo"},
                "spec": actor(BAD),
            },
            IMAGE_REFUSED,
        ),
    ]


def admitted_cases() -> list[Json]:
    return [
        supervisor({"children": [{"name": "a", "actor": actor()}]}),
        supervisor({"children": [{"name": "a", "actor": actor(image=None)}]}),  # actorImage
        nested(4, actor(env=OTHER_ENV)),
    ]


def test_admission_policy_refuses_what_it_forbids_at_every_depth(
    cluster: Cluster,
    crds: list[str],
    namespace: str,
    app_namespace: str,
    nats: E2ENats,
    image: str,
    tmp_path: Path,
) -> None:
    apply_nats_secrets(cluster, namespace, nats, tmp_path)
    values = release_values(cluster, nats.url, app_namespace, image)
    values["admissionPolicy"] = {"enabled": True, "allowedImagePrefixes": [ALLOWED]}
    values["tests"] = {"enabled": False}
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    chart = offline_chart(tmp_path)
    cluster.helm("install", RELEASE, str(chart), "-n", namespace, "-f", str(values_file))
    try:
        command_child = supervisor({"children": [{"name": "c", "actor": {"command": ["sh"]}}]})
        # The API server loads a new policy and binding asynchronously: wait until it refuses.
        first = wait_for(
            lambda: dry_run(cluster, app_namespace, command_child),
            timeout=30,
            what=f"the policy {POLICY} to refuse a command child",
            interval=0.2,
        )
        assert f"ValidatingAdmissionPolicy '{POLICY}'" in first, first
        assert COMMAND_REFUSED in first, first

        for body, message in refused_cases():
            answer = dry_run(cluster, app_namespace, body)
            assert answer is not None, body
            assert message in answer, (body, answer)
        for body in admitted_cases():
            assert dry_run(cluster, app_namespace, body) is None, body

        # Bound to the watched namespace only: elsewhere the operator runs nothing anyway.
        assert dry_run(cluster, namespace, command_child) is None
    finally:
        cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False)
