"""What `helm template` renders: the hardened operator Deployment, NATS wiring, the test hook,
and values the schema refuses. NetworkPolicies and the admission policy:
test_chart_security.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.chart.chart_helpers import CHART, KUBE_VERSION, by_kind, helm, render

Json = dict[str, Any]


def _operator(objects: list[Json]) -> Json:
    (deployment,) = by_kind(objects, "Deployment")
    return deployment


def _env(container: Json) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_operator_deployment_is_one_hardened_replica(chart: Path, helm_home: Path) -> None:
    deployment = _operator(render(chart, helm_home))
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "rb-rebeam-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["command"] == ["rebeam-operator"]
    # The operator's own HTTP endpoints (docs/observability.md), not a Python process per probe.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert container["image"] == "ghcr.io/rebeam/operator:0.1.0"  # the appVersion
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()


def test_nats_from_the_dependency_by_default(chart: Path, helm_home: Path) -> None:
    (container,) = _operator(render(chart, helm_home, namespace="ops"))["spec"]["template"]["spec"][
        "containers"
    ]
    assert _env(container)["REBEAM_NATS_URL"] == "tls://rb-nats.ops.svc:4222"  # TLS: test_chart_tls
    assert "args" not in container  # every namespace
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["nats"]["enabled"] is True
    assert values["nats"]["config"]["jetstream"]["enabled"] is True


def test_external_nats_and_operator_settings_from_values(chart: Path, helm_home: Path) -> None:
    objects = render(
        chart,
        helm_home,
        "nats.enabled=false",
        "natsUrl=nats://nats.shared:4222",
        "operator.watchNamespaces={team-a,team-b}",
        "operator.leaseTTL=3",
        "operator.exitRecord=$$(REBEAM_TERMINATION_LOG)",
        "operator.actorImage=registry.example/actor:1",
    )
    (container,) = _operator(objects)["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    assert env["REBEAM_NATS_URL"] == "nats://nats.shared:4222"
    assert env["REBEAM_LEASE_TTL"] == "3"
    assert env["REBEAM_OPERATOR_EXIT_RECORD"] == "$$(REBEAM_TERMINATION_LOG)"
    assert env["REBEAM_OPERATOR_IMAGE"] == "registry.example/actor:1"
    assert container["args"] == ["--namespace=team-a", "--namespace=team-b"]


def test_no_nats_at_all_is_refused_with_a_message(chart: Path, helm_home: Path) -> None:
    result = helm(
        "template", "rb", str(chart), "--kube-version", KUBE_VERSION,
        "--set", "nats.enabled=false", home=helm_home, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "set natsUrl" in result.stderr


def test_schema_refuses_wrong_values_naming_them(chart: Path, helm_home: Path) -> None:
    for value, field in [
        ("operator.logFormat=xml", "logFormat"),
        ("operator.watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("natsUrl=http://nats:4222", "natsUrl"),
        ("operatr.image.tag=1", "operatr"),
    ]:
        result = helm(
            "template", "rb", str(chart), "--kube-version", KUBE_VERSION,
            "--set", value, home=helm_home, check=False,
        )  # fmt: skip
        assert result.returncode != 0, value
        assert field in result.stderr, result.stderr


def test_helm_test_hook_checks_nats(chart: Path, helm_home: Path) -> None:
    (pod,) = by_kind(render(chart, helm_home), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "jetstream" in container["args"][1]
    assert not by_kind(render(chart, helm_home, "tests.enabled=false"), "Pod")


def test_nats_auth_wiring(chart: Path, helm_home: Path) -> None:
    """By default the operator is the NATS server's credential issuer: the issuer Secret is
    mounted (read-only, owner-only) and named in its env; the NATS chart includes the server
    Secret; the test hook connects with a projected token, as a person does."""
    objects = render(chart, helm_home, "operator.watchNamespaces={team-a}")
    pod = _operator(objects)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container)
    assert env["REBEAM_ISSUER_SECRETS"] == "/etc/rebeam/issuer/issuer.json"
    assert env["REBEAM_NATS_ACCOUNT"] == "REBEAM"
    assert {"name": "issuer", "mountPath": "/etc/rebeam/issuer", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {
        "name": "issuer",
        "secret": {"secretName": "rebeam-nats-issuer", "defaultMode": 0o400},
    } in pod["volumes"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["nats"]["config"]["merge"] == {"$include": "./rebeam-auth/auth.conf"}
    (mount,) = [p["value"] for p in values["nats"]["container"]["patch"]]
    (volume,) = [p["value"] for p in values["nats"]["podTemplate"]["patch"]]
    assert mount["mountPath"] == "/etc/nats-config/rebeam-auth"
    assert mount["name"] == volume["name"]
    assert volume["secret"] == {"secretName": "rebeam-nats-auth"}

    (hook,) = by_kind(objects, "Pod")
    assert hook["spec"]["automountServiceAccountToken"] is False
    (source,) = hook["spec"]["volumes"][0]["projected"]["sources"]
    assert source == {"serviceAccountToken": {"path": "token", "expirationSeconds": 600}}
    hook_env = _env(hook["spec"]["containers"][0])
    assert hook_env["REBEAM_CREDENTIALS_FILE"] == "/var/run/secrets/rebeam/token"
    assert hook_env["REBEAM_NAMESPACE"] == "team-a"  # a namespace the operator runs


def test_nats_auth_off(chart: Path, helm_home: Path) -> None:
    objects = render(chart, helm_home, "natsAuth.enabled=false")
    pod = _operator(objects)["spec"]["template"]["spec"]
    assert "REBEAM_ISSUER_SECRETS" not in _env(pod["containers"][0])
    # No issuer secrets and no token: what stays is the scratch folder and the TLS CA.
    assert [v["name"] for v in pod["volumes"]] == ["tmp", "nats-ca"]
    (hook,) = by_kind(objects, "Pod")
    assert [v["name"] for v in hook["spec"]["volumes"]] == ["nats-ca"]
    assert "REBEAM_CREDENTIALS_FILE" not in _env(hook["spec"]["containers"][0])
