"""The chart's metrics wiring (docs/observability.md): the operator's port, probes and
annotations, actor pods' metrics port handed to the operator, the optional PodMonitors and
dashboard ConfigMap, and the NetworkPolicy rules for scrapers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.chart.chart_helpers import CHART, by_kind, helm, render

Json = dict[str, Any]
SCRAPERS = "networkPolicy.metricsScrapers[0].namespaceSelector.matchLabels.role=monitoring"


def operator_pod(objects: list[Json]) -> Json:
    (deployment,) = by_kind(objects, "Deployment")
    pod: Json = deployment["spec"]["template"]
    return pod


def env_of(pod: Json) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_the_operator_serves_metrics_and_probes_on_one_port(chart: Path, helm_home: Path) -> None:
    pod = operator_pod(render(chart, helm_home))
    (container,) = pod["spec"]["containers"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    env = env_of(pod)
    assert env["REBEAM_OPERATOR_METRICS_PORT"] == "8080"
    assert env["REBEAM_OPERATOR_ACTOR_METRICS_PORT"] == "9464"
    assert pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    assert not by_kind(render(chart, helm_home), "PodMonitor")


def test_metrics_values_change_ports_annotations_and_actor_pods(
    chart: Path, helm_home: Path
) -> None:
    pod = operator_pod(
        render(
            chart,
            helm_home,
            "operator.metricsPort=9100",
            "metrics.actorPort=null",
            "metrics.annotations=false",
            "operator.podAnnotations.team=a",
        )
    )
    env = env_of(pod)
    assert env["REBEAM_OPERATOR_METRICS_PORT"] == "9100"
    assert "REBEAM_OPERATOR_ACTOR_METRICS_PORT" not in env
    assert pod["metadata"]["annotations"] == {"team": "a"}
    assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == 9100


def test_pod_monitors_for_the_operator_and_the_actor_pods(chart: Path, helm_home: Path) -> None:
    objects = render(
        chart,
        helm_home,
        "metrics.podMonitor.enabled=true",
        "metrics.podMonitor.labels.release=kps",
        "operator.watchNamespaces={team-a}",
    )
    operator, actors = by_kind(objects, "PodMonitor")
    for monitor in (operator, actors):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kps"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s"}
    assert operator["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert actors["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    selector = actors["spec"]["selector"]
    assert selector["matchLabels"] == {"app.kubernetes.io/managed-by": "rebeam-operator"}
    # Every namespace watched: any namespace; no actor port: no actor PodMonitor.
    (anywhere,) = by_kind(
        render(chart, helm_home, "metrics.podMonitor.enabled=true", "metrics.actorPort=null"),
        "PodMonitor",
    )
    assert anywhere["metadata"]["name"] == "rb-rebeam-operator"
    cluster = by_kind(render(chart, helm_home, "metrics.podMonitor.enabled=true"), "PodMonitor")
    assert cluster[1]["spec"]["namespaceSelector"] == {"any": True}


def test_the_dashboard_config_map_holds_the_dashboard(chart: Path, helm_home: Path) -> None:
    assert not by_kind(render(chart, helm_home), "ConfigMap")
    (config_map,) = by_kind(render(chart, helm_home, "metrics.dashboard.enabled=true"), "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "rebeam.json").read_text())
    assert json.loads(config_map["data"]["rebeam.json"]) == shipped


def test_scrapers_may_reach_the_metrics_ports_and_nothing_else(
    chart: Path, helm_home: Path
) -> None:
    policies = {
        p["metadata"]["name"]: p["spec"]
        for p in by_kind(
            render(chart, helm_home, SCRAPERS, "operator.watchNamespaces={team-a}"),
            "NetworkPolicy",
        )
    }
    peers = [{"namespaceSelector": {"matchLabels": {"role": "monitoring"}}}]
    assert policies["rb-rebeam-operator"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 8080}], "from": peers}
    ]
    assert policies["rb-rebeam-actors"]["ingress"] == [
        {"ports": [{"protocol": "TCP", "port": 9464}], "from": peers}
    ]
    # Without scrapers: no ingress at all, as before.
    plain = {
        p["metadata"]["name"]: p["spec"] for p in by_kind(render(chart, helm_home), "NetworkPolicy")
    }
    assert plain["rb-rebeam-operator"]["ingress"] == []


def test_schema_refuses_a_bad_metrics_port(chart: Path, helm_home: Path) -> None:
    result = helm(
        "template", "rb", str(chart), "--set", "metrics.actorPort=70000", home=helm_home,
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "actorPort" in result.stderr
