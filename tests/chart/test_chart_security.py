"""What `helm template` renders for docs/security.md: the NetworkPolicies (on by default) and
the optional ValidatingAdmissionPolicy. The policy's CEL runs on a real API server in
tests/e2e/install/test_e2e_admission.py; here, its shape and its values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rebeam.pids import Pid
from rebeam_operator.hosts import host_from_body
from rebeam_operator.pods import pod_manifest
from rebeam_operator.settings import Settings
from tests.chart.chart_helpers import KUBE_VERSION, by_kind, helm, render
from tests.operator.bodies import supervisor_body

Json = dict[str, Any]


def _policies(objects: list[Json]) -> dict[tuple[str, str], Json]:
    """NetworkPolicies by (namespace, name)."""
    return {
        (p["metadata"]["namespace"], p["metadata"]["name"]): p
        for p in by_kind(objects, "NetworkPolicy")
    }


def _selects(selector: Json, labels: dict[str, str]) -> bool:
    """A LabelSelector's matchLabels and Exists/DoesNotExist/In expressions against labels."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op = expr["key"], expr["operator"]
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "In" and labels.get(key) not in expr["values"]:
            return False
    return True


def _actor_pod_labels() -> dict[str, str]:
    """The labels the operator really puts on an actor pod."""
    host = host_from_body(supervisor_body())
    pid = Pid.for_incarnation("ns", "slot", 1)
    pod = pod_manifest(host, host.spec.children[0], 1, pid, 5.0, {}, Settings(), decided_seq=1)
    labels: dict[str, str] = pod["metadata"]["labels"]
    return labels


def _ports(rule: Json) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}


DNS = {("UDP", 53), ("TCP", 53)}

# --- NetworkPolicies ----------------------------------------------------------------------


def test_network_policies_are_on_by_default_and_can_be_turned_off(
    chart: Path, helm_home: Path
) -> None:
    assert _policies(render(chart, helm_home))
    assert not _policies(render(chart, helm_home, "networkPolicy.enabled=false"))


def test_operator_receives_nothing_and_reaches_dns_api_server_and_the_releases_nats(
    chart: Path, helm_home: Path
) -> None:
    objects = render(chart, helm_home)
    policy = _policies(objects)[("rebeam-system", "rb-rebeam-operator")]["spec"]
    (deployment,) = by_kind(objects, "Deployment")
    assert _selects(policy["podSelector"], deployment["spec"]["template"]["metadata"]["labels"])
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["ingress"] == []
    dns, api, nats = policy["egress"]
    assert _ports(dns) == DNS
    assert _ports(api) == {("TCP", 443), ("TCP", 6443)}
    assert _ports(nats) == {("TCP", 4222)}
    (peer,) = nats["to"]
    assert peer["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "rebeam-system"}
    }
    # The NATS chart's pod labels (name: nats, instance: the release).
    assert _selects(
        peer["podSelector"],
        {
            "app.kubernetes.io/name": "nats",
            "app.kubernetes.io/instance": "rb",
            "app.kubernetes.io/component": "nats",
        },
    )
    assert not _selects(peer["podSelector"], {"app.kubernetes.io/name": "nats"})


def test_nats_accepts_only_the_release_actor_pods_and_listed_clients(
    chart: Path, helm_home: Path
) -> None:
    objects = render(
        chart,
        helm_home,
        "operator.watchNamespaces={team-a,team-b}",
        "networkPolicy.natsClients[0].namespaceSelector.matchLabels.team=tools",
    )
    policy = _policies(objects)[("rebeam-system", "rb-rebeam-nats")]["spec"]
    assert policy["policyTypes"] == ["Ingress"]  # NATS's own egress is left alone
    own, clients = policy["ingress"]
    assert "ports" not in own  # servers and nats-box reach each other on every port
    (nats_pods,) = own["from"]
    assert nats_pods["podSelector"] == policy["podSelector"]
    assert _ports(clients) == {("TCP", 4222)}
    release, team_a, team_b, tools = clients["from"]
    (deployment,) = by_kind(objects, "Deployment")
    assert _selects(release["podSelector"], deployment["spec"]["template"]["metadata"]["labels"])
    (test_pod,) = by_kind(objects, "Pod")  # `helm test` connects to NATS too
    assert _selects(release["podSelector"], test_pod["metadata"]["labels"])
    assert "namespaceSelector" not in release  # the release namespace only
    for peer, namespace in [(team_a, "team-a"), (team_b, "team-b")]:
        assert peer["namespaceSelector"] == {
            "matchLabels": {"kubernetes.io/metadata.name": namespace}
        }
        assert _selects(peer["podSelector"], _actor_pod_labels())
    assert tools == {"namespaceSelector": {"matchLabels": {"team": "tools"}}}


def test_cluster_wide_nats_admits_actor_pods_of_every_namespace(
    chart: Path, helm_home: Path
) -> None:
    objects = render(chart, helm_home)
    policy = _policies(objects)[("rebeam-system", "rb-rebeam-nats")]["spec"]
    _, actors = policy["ingress"][1]["from"]
    assert actors["namespaceSelector"] == {}
    assert _selects(actors["podSelector"], _actor_pod_labels())
    assert not _selects(actors["podSelector"], {"app.kubernetes.io/managed-by": "Helm"})
    # No namespace is known: no actor policy (the install notes warn about it).
    assert not [key for key in _policies(objects) if key[1] == "rb-rebeam-actors"]


def test_actor_pods_receive_nothing_and_reach_dns_and_nats(chart: Path, helm_home: Path) -> None:
    objects = render(
        chart,
        helm_home,
        "operator.watchNamespaces={team-a,team-b}",
        "networkPolicy.actors.namespaces={team-b,batch}",
    )
    policies = _policies(objects)
    namespaces = sorted(ns for ns, name in policies if name == "rb-rebeam-actors")
    assert namespaces == ["batch", "team-a", "team-b"]  # watched ones, listed ones, once each
    for namespace in namespaces:
        policy = policies[(namespace, "rb-rebeam-actors")]
        assert policy["metadata"]["labels"]["app.kubernetes.io/instance"] == "rb"  # uninstalled
        spec = policy["spec"]
        assert _selects(spec["podSelector"], _actor_pod_labels())
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        assert spec["ingress"] == []
        dns, nats = spec["egress"]
        assert _ports(dns) == DNS
        assert _ports(nats) == {("TCP", 4222)}
        (peer,) = nats["to"]
        assert peer["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": "rebeam-system"
        }
        assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "nats"


def test_actor_ingress_hook_for_metrics(chart: Path, helm_home: Path) -> None:
    objects = render(
        chart,
        helm_home,
        "operator.watchNamespaces={team-a}",
        "networkPolicy.actors.ingress[0].ports[0].port=9090",
        "networkPolicy.actors.ingress[0].from[0].namespaceSelector.matchLabels.role=monitoring",
    )
    spec = _policies(objects)[("team-a", "rb-rebeam-actors")]["spec"]
    assert spec["ingress"] == [
        {
            "ports": [{"port": 9090}],
            "from": [{"namespaceSelector": {"matchLabels": {"role": "monitoring"}}}],
        }
    ]


def test_external_nats_egress_goes_where_it_is_told(chart: Path, helm_home: Path) -> None:
    external = ["nats.enabled=false", "natsUrl=nats://nats.shared:4222"]
    objects = render(chart, helm_home, *external, "operator.watchNamespaces={team-a}")
    policies = _policies(objects)
    assert ("rebeam-system", "rb-rebeam-nats") not in policies  # not ours to guard
    for key in [("rebeam-system", "rb-rebeam-operator"), ("team-a", "rb-rebeam-actors")]:
        nats = policies[key]["spec"]["egress"][-1]
        assert _ports(nats) == {("TCP", 4222)}
        assert "to" not in nats  # no peers given: any address, on the NATS port only
    objects = render(
        chart,
        helm_home,
        *external,
        "operator.watchNamespaces={team-a}",
        "networkPolicy.externalNats[0].ipBlock.cidr=10.20.0.0/16",
    )
    for policy in by_kind(objects, "NetworkPolicy"):
        assert policy["spec"]["egress"][-1]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_schema_refuses_a_malformed_peer(chart: Path, helm_home: Path) -> None:
    for value, field in [
        ("networkPolicy.natsClients[0].podSelectr.matchLabels.a=b", "podSelectr"),
        ("networkPolicy.actors.namespaces={Not_A_Namespace}", "namespaces"),
        ("networkPolicy.externalNats[0].ipBlock.except={x}", "cidr"),
    ]:
        result = helm(
            "template", "rb", str(chart), "--kube-version", KUBE_VERSION,
            "--set", value, home=helm_home, check=False,
        )  # fmt: skip
        assert result.returncode != 0, value
        assert field in result.stderr, result.stderr


# --- the admission policy -----------------------------------------------------------------

POLICY_ON = [
    "admissionPolicy.enabled=true",
    "admissionPolicy.allowedImagePrefixes={registry.example/team/,ghcr.io/rebeam/}",
]


def _policy(objects: list[Json]) -> tuple[Json, Json]:
    (policy,) = by_kind(objects, "ValidatingAdmissionPolicy")
    (binding,) = by_kind(objects, "ValidatingAdmissionPolicyBinding")
    return policy, binding


def test_admission_policy_is_off_by_default(chart: Path, helm_home: Path) -> None:
    objects = render(chart, helm_home)
    assert not by_kind(objects, "ValidatingAdmissionPolicy")
    assert not by_kind(objects, "ValidatingAdmissionPolicyBinding")


def test_admission_policy_checks_supervisors_and_actors_but_not_the_operator(
    chart: Path, helm_home: Path
) -> None:
    policy, binding = _policy(render(chart, helm_home, *POLICY_ON))
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    (rule,) = spec["matchConstraints"]["resourceRules"]
    assert rule["apiGroups"] == ["rebeam.io"]
    assert sorted(rule["resources"]) == ["actors", "supervisors"]
    assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
    (condition,) = spec["matchConditions"]
    assert condition["expression"] == (
        "request.userInfo.username != 'system:serviceaccount:rebeam-system:rb-rebeam-operator'"
    )
    assert spec["variables"] == [
        {"name": "imagePrefixes", "expression": '["registry.example/team/","ghcr.io/rebeam/"]'}
    ]
    messages = [v["message"] for v in spec["validations"]]
    assert len(messages) == 3
    assert "registry.example/team/, ghcr.io/rebeam/" in messages[0]
    assert "ghcr.io/rebeam/actor:0.1.0" in messages[0]  # what an actor without image runs
    assert "command" in messages[1]
    assert "secretKeyRef" in messages[2]
    assert all(v["reason"] == "Forbidden" for v in spec["validations"])
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "matchResources" not in binding["spec"]  # every namespace, as the operator


def test_admission_policy_unrolls_every_nesting_level(chart: Path, helm_home: Path) -> None:
    """Actors at every depth a manifest allows are checked: c0 (the root's children) to c4
    (the children of a supervisor nested 4 deep); a supervisor below that is refused."""
    policy, _ = _policy(render(chart, helm_home, "admissionPolicy.enabled=true"))
    (no_command, _) = policy["spec"]["validations"]
    expression = no_command["expression"]
    for depth in range(5):
        assert f"!has(c{depth}.actor.command)" in expression
        assert f"[c{depth}.supervisor.childTemplate]" in expression or depth == 4
    assert "c5" not in expression
    assert "(!has(c4.supervisor) || false)" in expression
    assert expression.startswith("request.kind.kind == 'Actor' ? !has(object.spec.command) : ")


def test_admission_policy_knobs(chart: Path, helm_home: Path) -> None:
    policy, _ = _policy(
        render(
            chart,
            helm_home,
            "admissionPolicy.enabled=true",
            "admissionPolicy.forbidCommand=false",
        )
    )
    (only,) = policy["spec"]["validations"]
    assert "secretKeyRef" in only["message"]
    assert "variables" not in policy["spec"]


def test_admission_policy_binds_to_the_watched_namespaces(chart: Path, helm_home: Path) -> None:
    _, binding = _policy(
        render(chart, helm_home, *POLICY_ON, "operator.watchNamespaces={team-a,team-b}")
    )
    assert binding["spec"]["matchResources"] == {
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "In",
                    "values": ["team-a", "team-b"],
                }
            ]
        }
    }


def test_admission_policy_refusals_name_the_problem(chart: Path, helm_home: Path) -> None:
    cases = [
        (
            ["admissionPolicy.enabled=true", "admissionPolicy.forbidCommand=false",
             "admissionPolicy.forbidSecretEnv=false"],
            KUBE_VERSION,
            "restricts nothing",
        ),
        (POLICY_ON, "1.29.4", "needs Kubernetes 1.30"),
        (["admissionPolicy.allowedImagePrefixes={/etc}"], KUBE_VERSION, "allowedImagePrefixes"),
    ]  # fmt: skip
    for sets, kube_version, message in cases:
        args = [a for s in sets for a in ("--set", s)]
        result = helm(
            "template", "rb", str(chart), "--kube-version", kube_version, *args,
            home=helm_home, check=False,
        )  # fmt: skip
        assert result.returncode != 0, sets
        assert message in result.stderr, result.stderr
