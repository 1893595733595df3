"""The operator's side of actor metrics: with --actor-metrics-port, a Python actor's pod
serves its metrics there and says so (annotations, a named port); a command's pod does not
(it has no runtime). Bad ports are refused by flag and variable."""

from __future__ import annotations

from typing import Any

import pytest

from rebeam_operator.settings import Settings, parse
from tests.operator.test_pods import build, env_of

PYTHON = {"name": "w", "actor": {"module": "app:Worker"}}
COMMAND = {"name": "c", "actor": {"command": ["sleep", "300"]}}


def test_a_python_actors_pod_serves_and_announces_its_metrics() -> None:
    pod = build(PYTHON, settings=Settings(actor_metrics_port=9464))
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9464"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert env_of(pod)["REBEAM_METRICS_PORT"]["value"] == "9464"
    (container,) = pod["spec"]["containers"]
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]


@pytest.mark.parametrize(
    ("child", "settings"),
    [(COMMAND, Settings(actor_metrics_port=9464)), (PYTHON, Settings())],
    ids=["a command", "no port set"],
)
def test_no_metrics_port_without_a_runtime_or_a_setting(child: Any, settings: Settings) -> None:
    pod = build(child, settings=settings)
    assert not any(k.startswith("prometheus.io/") for k in pod["metadata"]["annotations"])
    assert "REBEAM_METRICS_PORT" not in env_of(pod)
    assert "ports" not in pod["spec"]["containers"][0]


def test_metrics_ports_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBEAM_OPERATOR_ACTOR_METRICS_PORT", "9464")
    settings = parse(["--metrics-port", "8080"])
    assert (settings.metrics_port, settings.actor_metrics_port) == (8080, 9464)
    assert parse([]).metrics_port is None


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1"])
def test_a_bad_metrics_port_is_refused_by_its_flag_and_variable(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse([f"--metrics-port={port}"])
    err = capsys.readouterr().err
    assert f"--metrics-port (or REBEAM_OPERATOR_METRICS_PORT): {port!r}: a port number" in err
