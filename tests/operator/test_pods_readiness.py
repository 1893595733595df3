"""pods.py for a command with a readiness block (docs/readiness.md): it runs under the
readiness entry, which writes the ready file the readiness probe reads; tcp, http and exec
become kubelet probes too, the watchdog a liveness probe."""

from __future__ import annotations

from typing import Any

from rebeam_operator.pods import READINESS_PROBE
from tests.operator.test_pods import build

Json = dict[str, Any]


def container(readiness: Json | None, **child: Any) -> Json:
    actor: Json = {"command": ["srv", "--port", "80"]}
    if readiness is not None:
        actor["readiness"] = readiness
    pod = build({"name": "c", **child, "actor": actor})
    result: Json = pod["spec"]["containers"][0]
    return result


def test_a_command_without_readiness_runs_as_it_is() -> None:
    for readiness in (None, {"spawned": {}}):
        c = container(readiness)
        assert c["command"] == ["srv", "--port", "80"]
        assert "readinessProbe" not in c
        assert "startupProbe" not in c


def test_the_entry_says_ready_through_the_ready_file() -> None:
    c = container({"notify": {}, "watchdog": {"interval": "3s"}})
    sh, dash_c, script, name, *arguments = c["command"]
    assert (sh, dash_c, name) == ("sh", "-c", "rebeam-readiness")
    assert "exec python -m rebeam.readiness" in script
    assert '3>"$HOME/.rebeam-ready"' in script
    assert arguments[arguments.index("--") :] == ["--", "srv", "--port", "80"]
    assert "--quiet" in arguments  # the ready line only: the file is read by a probe
    assert c["readinessProbe"] == READINESS_PROBE
    assert "startupProbe" not in c  # notify has no kubelet probe
    assert "livenessProbe" not in c


def test_tcp_http_exec_become_kubelet_probes() -> None:
    c = container({"tcp": {"port": 8080}}, startTimeout="10s")
    assert c["startupProbe"] == {
        "tcpSocket": {"port": 8080},
        "periodSeconds": 1,
        "failureThreshold": 11,
    }
    c = container({"http": {"port": 80, "path": "/up"}, "watchdog": {"interval": "5s"}})
    assert c["startupProbe"]["httpGet"] == {"port": 80, "path": "/up"}
    assert c["livenessProbe"] == {
        "httpGet": {"port": 80, "path": "/up"},
        "periodSeconds": 5,
        "timeoutSeconds": 5,
        "failureThreshold": 3,
    }
    c = container({"exec": {"command": ["pg_isready"]}})
    assert c["startupProbe"]["exec"] == {"command": ["pg_isready"]}
