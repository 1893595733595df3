"""The operator's metrics and health endpoints, and an actor pod's metrics port, on the test
control plane: /readyz turns ready, a crash and its restart show in the operator's reconcile,
supervision and restart-latency metrics, and the restarted actor's pod serves its own
series under its supervisor and child (never its pid)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from infra.hostnet import free_port
from infra.procs import wait_for
from operator_helpers import Objects, Operator, actor, child_state, supervisor
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

REBEAM = str(Path(sys.executable).parent / "rebeam")
DASHBOARD = Path(__file__).resolve().parents[3] / "charts" / "rebeam" / "dashboards" / "rebeam.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def scrape(url: str) -> Samples:
    status, text = get(url)
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def exposed(url: str) -> set[str]:
    """Every family and sample name of a scrape (a labelled family with no series yet, such
    as API errors before the first one, is exposed by its HELP and TYPE)."""
    status, text = get(url)
    assert status == 200, text
    out = set()
    for family in text_string_to_metric_families(text):
        out.add(family.name)
        out.add(family.name + "_total" if family.type == "counter" else family.name)
        out.update(s.name for s in family.samples)
    return out


def operator_panels() -> set[str]:
    """The operator's metric names the Grafana dashboard queries."""
    text = json.dumps(json.loads(DASHBOARD.read_text())["panels"])
    return set(re.findall(r"\brebeam_operator_[a-z_]+\b", text))


def value(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def test_operator_metrics_health_and_an_actor_pods_metrics(
    operator: Operator, objects: Objects, nats_url: str, namespace: str
) -> None:
    port, actor_port = free_port(), free_port()
    operator.stop()  # the fixture's, restarted with the two ports
    operator.start(
        {
            "REBEAM_OPERATOR_METRICS_PORT": str(port),
            "REBEAM_OPERATOR_ACTOR_METRICS_PORT": str(actor_port),
        }
    )
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: get(f"{base}/readyz")[0] == 200, timeout=60, what="the operator ready")
    assert get(f"{base}/healthz") == (200, "ok\n")

    objects.apply(supervisor("app", [actor("counter", "hello.counter:Counter", register="c")]))
    objects.wait_status("app", lambda s: s.get("ready") == "1/1", what="app ready")
    crash = subprocess.run(
        [REBEAM, "cast", "c", '"crash"', "--nats-url", nats_url, "--namespace", namespace],
        capture_output=True, text=True, timeout=60, env=dict(os.environ), check=False,
    )  # fmt: skip
    assert crash.returncode == 0, crash.stderr
    objects.wait_status(
        "app",
        lambda s: child_state(s, "counter").get("restarts") == 1 and s.get("ready") == "1/1",
        what="counter restarted",
    )

    def restarted(samples: Samples) -> bool:
        return value(samples, "rebeam_operator_restart_seconds_count") >= 1

    wait_for(lambda: restarted(scrape(f"{base}/metrics")), timeout=60, what="restart latency")
    seen = scrape(f"{base}/metrics")
    assert value(seen, "rebeam_operator_passes_total", result="ok") > 0
    assert value(seen, "rebeam_operator_pass_seconds_count") > 0
    assert value(seen, "rebeam_operator_ready") == 1
    assert value(seen, "rebeam_operator_drivers") == 1
    app = {"namespace": namespace, "supervisor": "app"}
    assert value(seen, "rebeam_supervisor_restarts_total", **app) == 1
    assert value(seen, "rebeam_supervisor_child_exits_total", reason="crash", **app) == 1
    assert value(seen, "rebeam_supervisor_children", state="running", **app) == 1
    assert "process_cpu_seconds_total" in {name for name, _ in seen}
    dashboard = operator_panels()
    assert len(dashboard) > 5, dashboard
    assert dashboard - exposed(f"{base}/metrics") == set()

    (pod,) = [p for p in objects.pods().values() if p["metadata"]["labels"].get(
        "rebeam.io/incarnation") == "2"]  # fmt: skip
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(actor_port)
    assert annotations["prometheus.io/scrape"] == "true"
    pods_metrics = f"http://127.0.0.1:{actor_port}/metrics"
    wait_for(lambda: get(pods_metrics)[0] == 200, timeout=60, what="the pod's metrics")
    mine = scrape(pods_metrics)
    where = {"namespace": namespace, "supervisor": "app", "child": "counter"}
    assert value(mine, "rebeam_mailbox_depth", **where) == 0
    assert ("rebeam_messages_received_total", frozenset({*where.items(), ("kind", "cast")})) in mine
